"""Outputs of the protocol core.

The core never performs I/O: every call returns nothing and leaves these events in an outbox that
the driver (asyncio runtime or simulator) drains with ``NodeCore.take_outputs()`` and acts on in
order. The order matters: a ``NeedState`` sits exactly between the last delivery of the old view and
the first of the new one, so a driver that handles events in order snapshots the state at the join
instant.
"""

from __future__ import annotations

from dataclasses import dataclass

from .wire import ClientHello, ClientRequest, History


@dataclass(slots=True)
class Transmit:
    """Send ``data`` (one encoded frame) to the node listening at ``addr``."""

    addr: str
    data: bytes


@dataclass(slots=True)
class ViewInstalled:
    group: str
    view: str
    members: tuple[str, ...]  # age order: members[0] is the oldest, the coordinator
    prev: str | None
    primary: bool = True
    kind: str = "regular"
    state_pending: bool = False  # a joiner that does not hold the group state yet (``StateReady`` follows)
    follows: str | None = None  # evs, a primary view: the primary it was formed to succeed
    joined: tuple[str, ...] = ()  # the members it admits with the group's state (state transfer)
    domain: str = "default"  # the causality domain of the group here


@dataclass(slots=True)
class Blocked:
    """A view change out of ``view`` is under way here (this member promised a ballot): casts wait,
    and nothing more is delivered in ``view`` but through the final set, until the next view."""

    group: str
    view: str


@dataclass(slots=True)
class Sent:
    """Casts ``msgs`` were stamped and sent in ``view``, in this order (flow control and view changes
    may delay them)."""

    group: str
    msgs: list[str]
    order: str
    view: str


@dataclass(slots=True)
class Held:
    """Casts ``msgs`` wait for the rule of causality domains (``domains``): they depend on what was
    delivered up to this point of the outputs, not on what is delivered before their ``Sent``."""

    group: str
    msgs: list[str]


@dataclass(slots=True)
class Delivered:
    """Casts ``msgs`` of ``sender``, with ``payloads``, were delivered in ``view``, in this order."""

    group: str
    msgs: list[str]
    sender: str
    order: str
    view: str
    payloads: list[bytes]


@dataclass(slots=True)
class DirectReceived:
    """A point-to-point message (group RPC replies travel this way)."""

    group: str
    sender: str
    payload: bytes


@dataclass(slots=True)
class NeedState:
    """This member must snapshot the group state now and hand it to ``NodeCore.provide_state``."""

    group: str
    view: str


@dataclass(slots=True)
class StateReady:
    """A joiner received the whole state; deliveries of the new view follow this event."""

    group: str
    view: str
    data: bytes


@dataclass(slots=True)
class Flushed:
    group: str
    token: int


@dataclass(slots=True)
class Left:
    group: str


@dataclass(slots=True)
class Excluded:
    """The group went on without this member: the driver joins it again under a fresh member id
    (``NodeCore.rejoin``); the node's other groups are not affected."""

    group: str
    reason: str


@dataclass(slots=True)
class Suspicion:
    """A member of some view of this node became suspected (``suspected``: silent for ``silent``
    seconds, or a newer incarnation of it exists), or was heard from again. Only a view change
    makes it failed: this is for operators (docs/design.md §9)."""

    peer: str
    suspected: bool
    silent: float
    groups: tuple[str, ...]  # the groups whose current view lists it


@dataclass(slots=True)
class StatusRequested:
    """A tool at ``addr`` asks this node about itself (``vsgroups status``): answer with ``nonce``."""

    addr: str
    nonce: int


@dataclass(slots=True)
class PrimaryHistory:
    """evs: this member's primary history changed (docs/design.md §6.5). A node with stable storage
    writes it before it sends anything more: a member that recovers must report it again."""

    group: str
    history: History


@dataclass(slots=True)
class FromClient:
    """A client of ``group`` (``client``, listening at ``addr``) asks to be served, or sends a
    request: the server side above the core acts on it (``vsgroups.served``)."""

    group: str
    client: str
    addr: str
    msg: ClientHello | ClientRequest


Output = (
    Transmit | ViewInstalled | Blocked | Held | Sent | Delivered | DirectReceived | NeedState | StateReady
    | Flushed | Left | Excluded | PrimaryHistory | Suspicion | StatusRequested | FromClient
)
