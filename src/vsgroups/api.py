"""What applications see: ``Node``, ``Group``, ``Replica`` and the events of a group.

``Node`` runs one process incarnation: it owns the TCP transport and a sans-IO ``NodeCore``, feeds
the core with frames and ticks, and acts on its outputs in order. Replica hooks run synchronously
in delivery order, which is what makes state transfer exact: ``get_state`` is called between the last
message of the old view and the first of the new one.

If a group goes on without this process (it was cut off from the primary component, or suspected
falsely), the node joins that group again under a fresh member id and receives fresh state, while
its other groups go on (docs/design.md §1). The ``Group`` handle stays valid across the rejoin.

Shutdown is graceful (``Node.close``, leaving ``async with Node(...)``): new casts are refused, the
casts already accepted go out, every group is left in parallel, and only if every leave completes
within ``close_timeout`` does the trace end with ``stop``, the claim that the process delivered
what it owed in its last views. Otherwise, or after ``Node.abort``, it ends like a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import msgpack

from . import status
from .core import Config, NodeCore
from .core import events as ev
from .core.domains import DEFAULT as DEFAULT_DOMAIN
from .core.driver import Driver
from .core.ids import name_inc, view_epoch
from .core.wire import ORDERS, decode_history, encode
from .errors import GroupBlocked, JoinFailed, NodeClosed, NotAMember, QueryFailed, UnknownOrdering
from .metrics import MetricsServer
from .oplog import OperatorLog
from .recovery import ViewRecord
from .served import BIND, CREPLY, DIFFUSE, GONE, REQUEST, Serving
from .storage import Storage
from .trace import TraceWriter
from .transport.base import Transport
from .transport.tcp import TcpTransport, parse_address

log = logging.getLogger("vsgroups")

MAJORITY = -1
ALL = -2
_CAST, _QUERY, _REPLY = 0, 1, 2
#: ``Node.close`` waits for the leaves at most this many suspect timeouts unless told otherwise: a
#: leave is one view change, which may have to wait for a crashed member to be suspected first.
CLOSE_TIMEOUT_FACTOR = 5
JOIN_TIMEOUT = 30.0  # seconds ``Node.join`` waits by default before it says why it cannot join
#: After a clean close, frames already queued (a commit this process coordinated, its last
#: acknowledgements) get at most this many seconds to reach the kernel before the sockets close.
LINGER = 1.0


class Delivery(NamedTuple):
    """A delivered message (immutable; a named tuple, which is the cheapest immutable record).

    ``msg_id`` is ``sender:n``, unique for ever; ``sender`` is the sender's member id ``name#inc``
    (``inc``, the incarnation number, is fresh at every start of a process, so a restarted process
    is a new member); ``view`` is the view it was delivered in (see ``ViewChange``)."""

    group: str
    msg_id: str
    sender: str
    order: str
    view: str
    payload: Any
    #: "cast" (a member's cast), "client" (a client's request, cast by the member serving it:
    #: ``client`` and ``request`` say whose and which; answer with ``Group.reply``), "diffusion"
    #: (``Group.diffuse``, or a client's ``post`` — then ``client`` says whose —, which the group's
    #: clients receive too; ``request`` is its number) or
    #: "reply" (a member's ``Group.reply(..., multicast=True)`` to request ``request`` of ``client``)
    kind: str = "cast"
    client: str | None = None
    request: int = 0


@dataclass(frozen=True, slots=True)
class ViewChange:
    """A new view of the group (docs/guide/views.md).

    ``view`` is its id, ``epoch.round.proposer``: the epoch grows at each view change, ``round`` is
    the ballot that decided it and ``proposer`` the member that proposed it; ids never repeat within
    a group. ``members`` are member ids ``name#inc`` in age order (the oldest first: the
    coordinator). ``previous`` is the view this one follows here (None for the first). evs only:
    ``kind`` is ``"transitional"`` for the configuration that closes the old one, and ``primary``
    tells whether the configuration belongs to the primary component (in vs every view does).
    ``joined`` are the members this view admits with the group's state, by state transfer (the
    others come from earlier views: in evs, from this member's or, at a merge, from others)."""

    group: str
    view: str
    members: tuple[str, ...]
    previous: str | None
    kind: str = "regular"  # or "transitional" (EVS)
    primary: bool = True
    joined: tuple[str, ...] = ()


class Replica:
    """Replicated state of a group. Override what you need; hooks run in delivery order."""

    def apply(self, msg: Delivery) -> None:
        """A message was delivered."""

    def query(self, msg: Delivery) -> Any:
        """Answer a group RPC; the return value is the reply."""
        return None

    def get_state(self) -> Any:
        """The state to give a joiner, exactly as of its join (any msgpack-encodable value)."""
        return None

    def set_state(self, state: Any) -> None:
        """Install the state a joiner received (called before any message of its first view)."""

    def view_changed(self, view: ViewChange) -> None:
        """A new view was installed."""

    def block(self, view: str) -> None:
        """A view change out of ``view`` is under way: casts wait and deliveries pause until
        ``view_changed`` (the flush of virtual synchrony; JGroups calls this ``block``)."""

    def ended(self, reason: Exception) -> None:
        """This process is no longer in the group: it left (``NotAMember``) or its node stopped
        (``NodeClosed``). Nothing more is delivered; what waits on the group should give up."""

    def client_left(self, client: str) -> None:
        """A client of the group (``vsgroups.Client``) fell silent and was declared gone: every
        member hears it at the same point of the stream; nothing it sent later is delivered."""


def _encode(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _decode(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _load_key(key: bytes | str | None, key_file: str | os.PathLike[str] | None) -> bytes:
    if key is not None and key_file is not None:
        raise ValueError("give either key or key_file, not both")
    if key_file is not None:
        data = Path(key_file).read_bytes().strip()
        if not data:
            raise ValueError(f"cluster key file {key_file} is empty")
        return data
    if key is None:
        raise ValueError("a cluster key is required (key=... or key_file=...): every frame is authenticated")
    return key.encode() if isinstance(key, str) else key


class _Query:
    def __init__(self, targets: Iterable[str], wanted: int) -> None:
        self.targets = set(targets)
        self.wanted = wanted
        self.replies: dict[str, Any] = {}
        self.done = asyncio.get_running_loop().create_future()

    def update(self, members: tuple[str, ...] | None) -> None:
        answered = len(self.replies) + (len(self.targets - set(members)) if members is not None else 0)
        if not self.done.done() and (answered >= self.wanted or self.targets <= set(self.replies)):
            self.done.set_result(None)


class EventStream:
    """An async iterator over a group's events; it records from its creation until closed or the
    group is left."""

    def __init__(self, group: Group) -> None:
        self._group = group
        self._queue: asyncio.Queue[Delivery | ViewChange] = asyncio.Queue()
        group._queues.append(self._queue)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Delivery | ViewChange:
        if not self._group.active and self._queue.empty():
            self.close()
            raise StopAsyncIteration
        return await self._queue.get()

    def close(self) -> None:
        if self._queue in self._group._queues:
            self._group._queues.remove(self._queue)


class Group:
    """A handle on one joined group. Obtain it from ``Node.join``."""

    def __init__(self, node: Node, name: str, replica: Replica | None, model: str = "vs",
                 events: bool = False, domain: str = DEFAULT_DOMAIN) -> None:
        self.node = node
        self.name = name
        self.model = model
        self.domain = domain  # its causality domain at this node (``Node.join``)
        self.replica = replica if replica is not None else Replica()  # a replica may be falsy
        self.view: ViewChange | None = None
        self._joined = asyncio.Event()
        self._queues: list[asyncio.Queue[Delivery | ViewChange]] = []
        self._flushes: dict[int, asyncio.Future[None]] = {}
        self._queries: dict[str, _Query] = {}
        self._left: asyncio.Future[bool] | None = None  # leaving: True once left, False if stopped first
        self._leaving = False  # new casts are refused
        self._drained: asyncio.Event | None = None  # leaving: every cast accepted so far has been sent
        self._leaver: asyncio.Task[None] | None = None
        self._room = asyncio.Event()
        self._room.set()
        self._recovering = False  # its next view is the configuration it recovers into, alone
        self._unlogged: ev.ViewInstalled | None = None  # a joiner's first view, logged with its state
        self.active = True
        self._serving = Serving(self)  # its clients (``vsgroups.served``)
        # ``join(..., events=True)``: the stream the first ``events()`` returns, recording from the join
        self._from_join: EventStream | None = EventStream(self) if events else None

    @property
    def members(self) -> tuple[str, ...]:
        return self.view.members if self.view else ()

    @property
    def clients(self) -> dict[str, str]:
        """The group's clients (``vsgroups.Client``) and the member id serving each."""
        return {client: entry.server for client, entry in self._serving.table.clients.items()}

    def serves(self, msg: Delivery) -> bool:
        """Does this member serve the client whose request ``msg`` is (the usual one to answer it)?"""
        return msg.client is not None and self._serving.table.clients.get(msg.client) is not None and \
            self._serving.table.clients[msg.client].server == self.member_id

    @property
    def member_id(self) -> str:
        """This process's identity in the group (``name#inc``): ``Node.pid``, unless it was excluded
        from the group and joined it again under a fresh id (``Node.on_rejoin``)."""
        return self.node._core.member_id(self.name)

    async def cast(self, payload: Any, order: str = "total") -> str:
        """Multicast ``payload`` to the group; returns its message id once accepted for sending.
        Waits while this sender has a full window of unstable messages (flow control).

        Raises ``NodeClosed`` once the node is closing, and ``NotAMember`` once this process is
        leaving the group; a cast accepted before either is still sent (and delivered)."""
        if order not in ORDERS:
            raise UnknownOrdering(f"unknown ordering {order!r}: use one of {', '.join(ORDERS)}")
        while self._backlogged():
            self._room.clear()
            await self._room.wait()
        return self._send(_encode([_CAST, payload]), order)

    async def diffuse(self, payload: Any) -> str:
        """Multicast ``payload`` to the members (as a ``Delivery`` of kind "diffusion") and to every
        client of the group, in the group's order. Diffusions are safe messages: every member
        numbers them alike, and a client hears of one only once every member holds it, so none
        that a client has is ever lost by the group."""
        while self._backlogged():
            self._room.clear()
            await self._room.wait()
        return self._send(_encode([DIFFUSE, payload]), "safe")

    async def reply(self, msg: Delivery, payload: Any, multicast: bool = False) -> None:
        """Answer a client's request ``msg`` (a ``Delivery`` of kind "client"). Point to point by
        default: the client gets it unless this member fails first. ``multicast=True`` casts the
        reply: every member delivers it (a ``Delivery`` of kind "reply", so a backup knows the
        request was answered) and the member serving the client forwards it, again after a rebind
        (a safe message: the client never has a reply the members could lose)."""
        if msg.kind != "client" or msg.client is None:
            raise ValueError(f"reply answers a client's request, not a delivery of kind {msg.kind!r}")
        if msg.group != self.name:
            raise ValueError(f"the request was delivered in group {msg.group!r}, not {self.name!r}")
        if multicast:
            self._check(sending=True)
            self._send(_encode([CREPLY, msg.client, msg.request, _encode(payload)]), "safe")
        else:
            self._check()
            self._serving.reply(msg.client, msg.request, _encode(payload))

    def _cast(self, data: bytes, order: str) -> str:
        self._check(sending=True)
        return self._send(data, order)

    def _send(self, data: bytes, order: str) -> str:
        node = self.node
        mid = node._core.cast(self.name, data, order, node._now())  # the hot path: no _core_call closure
        node._schedule()
        if node._storage is not None:
            node._storage.reserve(node._core.counter)
        return mid

    def checkpoint(self) -> None:
        """Write the replica's state to the node's stable storage now (``Node(data_dir=...)``, evs
        groups; it is also written at every regular configuration). A process that recovers
        resumes from its last checkpoint."""
        self._check()
        storage = self.node._storage
        if storage is None or self.model != "evs" or self.view is None:
            raise ValueError(f"checkpoints are kept for evs groups of a node with a data_dir, not for "
                             f"{self.name!r}")
        storage.save_checkpoint(self.name, view_epoch(self.view.view), _encode(self.replica.get_state()))

    def _backlogged(self) -> bool:
        self._check(sending=True)
        return self._full()

    def _full(self) -> bool:
        core, cfg = self.node._core, self.node.config
        return core.backlog(self.name) >= cfg.window or core.backlog_bytes(self.name) >= cfg.window_bytes

    async def flush(self) -> None:
        """Return when everything this process cast (and delivered) so far is stable."""
        self._check()
        fut = asyncio.get_running_loop().create_future()
        self._flushes[self.node._core.flush(self.name, self.node._now())] = fut
        self.node._process()  # after registering: the flush may complete at once
        await fut

    async def query(
        self, payload: Any, replies: int = ALL, timeout: float = 5.0, order: str = "total"
    ) -> dict[str, Any]:
        """Group RPC: cast ``payload`` as a query and collect replies, keyed by member.

        ``replies`` is 0, a count, ``MAJORITY`` or ``ALL`` (of the members of the current view). A
        member that leaves the view counts as answered, so the call never hangs on a crash; if the
        replies do not arrive within ``timeout``, ``QueryFailed`` carries those that did."""
        self._check()
        members = self.members
        wanted = {ALL: len(members), MAJORITY: len(members) // 2 + 1}.get(replies, replies)
        if wanted < 0 or wanted > len(members):
            raise ValueError(f"replies={replies} is not 0..{len(members)}, MAJORITY or ALL")
        qid = f"{self.node.pid}/q{next(self.node._query_ids)}"
        query = _Query(members, wanted)
        self._queries[qid] = query
        try:
            self._cast(_encode([_QUERY, qid, payload]), order)
            if wanted == 0:
                return {}
            query.update(self.members)
            try:
                await asyncio.wait_for(asyncio.shield(query.done), timeout)
            except TimeoutError:
                raise QueryFailed(
                    f"query on {self.name!r} got {len(query.replies)} of {wanted} replies in {timeout}s",
                    dict(query.replies)) from None
            return dict(query.replies)
        finally:
            self._queries.pop(qid, None)

    async def leave(self) -> None:
        """Leave the group voluntarily; returns once the group installed a view without us.

        From the call on, new casts and queries to the group raise ``NotAMember``. The casts this
        process accepted before go out first (the core drops casts not yet sent when a leave
        completes); then it votes in the view change that removes it and delivers that view's last
        messages, its own among them, before its trace says ``leave``. A process in a minority
        that blocks (vs) cannot complete a leave: ``Node.close`` bounds the wait. Raises
        ``NodeClosed`` if the node stopped before the leave completed."""
        if self._left is None:
            self._check()
        if not await asyncio.shield(self._start_leaving()):
            raise NodeClosed(f"node {self.node.name} stopped before it had left group {self.name!r}")

    def _start_leaving(self) -> asyncio.Future[bool]:
        """Refuse new casts and leave once the accepted ones are sent; the future says how it ended."""
        if self._left is None:
            loop = asyncio.get_running_loop()
            self._left = loop.create_future()
            self._leaving = True
            self._room.set()  # a cast waiting for the window raises now
            self._drained = asyncio.Event()
            self._leaver = loop.create_task(self._leave_when_ready())
            self.node._schedule()  # the next round tells whether the backlog is empty already
        return self._left

    async def _leave_when_ready(self) -> None:
        node = self.node
        status = node._core.status(self.name)
        if status is not None and status.view is not None:  # not still joining
            assert self._drained is not None
            await self._drained.wait()
            # a joiner waiting for its state would end like a crash if it left now
            await self._joined.wait()
        # a group still joining is abandoned: the core calls the join off at once (and tells a
        # coordinator that admitted it meanwhile that it is not a member)
        if self.name in node._core.groups and self._left is not None and not self._left.done():
            node._core_call(lambda core, now: core.leave(self.name, now))

    def events(self) -> EventStream:
        """Deliveries and view changes of this group, in the order this process experienced them,
        from the moment of the call (not of the first iteration): ``async for e in group.events()``.

        If the group was joined with ``Node.join(..., events=True)``, the first call returns the
        stream recorded from the join instead: its first event is the view this process joined in,
        and nothing delivered since is missing, whatever the program awaited in between."""
        first, self._from_join = self._from_join, None
        return first or EventStream(self)

    def _check(self, sending: bool = False) -> None:
        node = self.node
        if node._closing and (sending or not self.active):
            state = "closed" if node._closed else "closing"
            raise NodeClosed(f"node {node.name} is {state}: it accepts no new casts or queries "
                             f"(group {self.name!r})")
        if not self.active:
            raise NotAMember(f"this node has left group {self.name!r}")
        if sending and self._leaving:
            raise NotAMember(f"this node is leaving group {self.name!r}: it accepts no new casts or queries")
        if self.name not in node._core.groups:
            raise GroupBlocked(f"group {self.name!r} is rejoining after this process was excluded")

    # -- core outputs ------------------------------------------------------------------------------

    def _publish(self, event: Delivery | ViewChange) -> None:
        for queue in self._queues:
            queue.put_nowait(event)

    def _on_delivered(self, out: ev.Delivered) -> None:
        name, sender, order, view = self.name, out.sender, out.order, out.view
        apply = self.replica.apply
        for mid, payload in zip(out.msgs, out.payloads, strict=True):
            body = _decode(payload)
            if body[0] == _CAST:
                msg = Delivery(name, mid, sender, order, view, body[1])
                apply(msg)
                if self._queues:
                    self._publish(msg)
            elif body[0] == _QUERY:
                self._answer(Delivery(name, mid, sender, order, view, body[2]), body[1])
            else:
                self._on_client_message(body, Delivery(name, mid, sender, order, view, None))

    def _on_client_message(self, body: list[Any], at: Delivery) -> None:
        """A message of the client protocol (``vsgroups.served``) was delivered."""
        serving, kind = self._serving, body[0]
        msg: Delivery | None = None
        if kind == REQUEST:
            if serving.request(body, at.sender, at.order):
                payload = _decode(body[3])
                if body[4]:  # a client's posting: a diffusion of the group, sent by the client
                    number = serving.diffused(at.msg_id, body[1], body[3])
                    msg = at._replace(kind="diffusion", client=body[1], request=number, payload=payload)
                else:
                    msg = at._replace(kind="client", client=body[1], request=body[2], payload=payload)
        elif kind == DIFFUSE:
            number = serving.diffused(at.msg_id, at.sender, _encode(body[1]))
            msg = at._replace(kind="diffusion", request=number, payload=body[1])
        elif kind == CREPLY:
            serving.replied(body)
            msg = at._replace(kind="reply", client=body[1], request=body[2], payload=_decode(body[3]))
        elif kind == BIND:
            serving.bound(body, at.sender)
        elif kind == GONE and serving.gone(body):
            try:
                self.replica.client_left(body[1])
            except Exception:  # the application's hook: the group goes on
                log.exception("the client_left hook of group %s failed", self.name)
        if msg is not None:
            self.replica.apply(msg)
            if self._queues:
                self._publish(msg)

    def _answer(self, msg: Delivery, qid: str) -> None:
        try:
            answer = self.replica.query(msg)
        except Exception as exc:  # a failing handler still answers, so the caller does not wait
            log.exception("query handler of group %s failed", self.name)
            answer = {"error": repr(exc)}
        reply = _encode([_REPLY, qid, answer])
        with contextlib.suppress(NotAMember):
            self.node._core.send_direct(self.name, msg.sender, reply, self.node._now())

    def _on_direct(self, out: ev.DirectReceived) -> None:
        body = _decode(out.payload)
        if body[0] == _REPLY and (query := self._queries.get(body[1])) is not None:
            query.replies[out.sender] = body[2]
            query.update(self.members)

    def _on_view(self, out: ev.ViewInstalled, ready: bool) -> None:
        """A view was installed; ``ready``: this member holds the group state (a joiner may not yet)."""
        self.view = ViewChange(self.name, out.view, out.members, out.prev, out.kind, out.primary, out.joined)
        recovering, self._recovering = self._recovering, False
        if self.node._storage is not None and out.kind == "regular":
            if recovering:
                # The configuration a recovered process forms alone holds no newer state than its
                # checkpoint: logging it would make it look like the last to fail. Its epoch is
                # checkpointed, so that a second recovery forms a configuration of a new id.
                self.checkpoint()
            elif ready:
                self._log_view(out)
            else:
                self._unlogged = out  # a joiner logs its first view once it holds the state
        if out.kind == "regular" and ready:
            self._serving.view(out.members)
        self.replica.view_changed(self.view)
        self._publish(self.view)
        for query in self._queries.values():
            query.update(out.members)

    async def wait_joined(self) -> None:
        """Return once this process is a member with the group state — at once, unless it is
        rejoining under a fresh member id after being excluded. Raises ``NotAMember`` (``NodeClosed``)
        if the group was left (the node closed) first."""
        await self._joined.wait()
        if not self.active:
            self._check()

    def _log_view(self, out: ev.ViewInstalled) -> None:
        """On disk before anyone hears of the view: a crash right after the application (or a peer it
        told) saw the view must still find it in the log (last-to-fail)."""
        storage = self.node._storage
        assert storage is not None
        names = (name_inc(m)[0] for m in out.members)  # last-to-fail is about processes, not incarnations
        storage.view_log(self.name).append(ViewRecord.from_view(out.view, names))
        if self.model == "evs":
            self.checkpoint()
            storage.joining(self.name, pending=False)

    def _on_ready(self) -> None:
        if self._unlogged is not None:
            self._log_view(self._unlogged)
            self._unlogged = None
        self._joined.set()

    def _end(self, left: bool, exc: Exception) -> None:
        """This process is no longer in the group: ``left`` it, or the node stopped first."""
        self.active = False
        self._fail_all(exc)
        try:
            self.replica.ended(exc)
        except Exception:  # the application's hook: the node's own cleanup goes on
            log.exception("the ended hook of group %s failed", self.name)
        if self._leaver is not None:
            self._leaver.cancel()
        if self._left is not None and not self._left.done():
            self._left.set_result(left)
        self._joined.set()  # a join under way raises
        self._room.set()  # so does a cast waiting for the window
        if self.view is not None:
            for queue in self._queues:
                queue.put_nowait(self.view)  # wakes iterators, which then end

    def _fail_all(self, exc: Exception) -> None:
        for fut in [*self._flushes.values(), *(q.done for q in self._queries.values())]:
            if not fut.done():
                fut.set_exception(exc)
        self._flushes.clear()


class Node:
    """One member process: a TCP endpoint that joins any number of groups.

    ``seeds`` are addresses of members to ask when joining; the first seed founds a group that no
    seed answers for (pass ``found=True`` to found explicitly, ``found=False`` never to).

    ``async with Node(...)`` starts the node and, on the way out, closes it gracefully: ``close``
    leaves every group, waiting at most ``close_timeout`` seconds (default ``CLOSE_TIMEOUT_FACTOR``
    times ``config.suspect_timeout``). ``abort`` stops at once instead, as a crash would.

    ``metrics_port`` serves Prometheus metrics at ``http://HOST:PORT/metrics`` (HOST: the one this
    node listens on; ``vsgroups.metrics``, which needs the ``metrics`` extra)."""

    def __init__(
        self, name: str, listen: str = "127.0.0.1:0", seeds: Iterable[str] = (), *,
        key: bytes | str | None = None,
        key_file: str | os.PathLike[str] | None = None, trace_dir: str | os.PathLike[str] | None = None,
        config: Config | None = None, found: bool | None = None, tick: float = 0.005,
        data_dir: str | os.PathLike[str] | None = None, close_timeout: float | None = None,
        metrics_port: int | None = None,
    ) -> None:
        self.name = name
        self.listen = listen
        self.seeds = list(seeds)
        self.key = _load_key(key, key_file)
        self.trace_dir = trace_dir
        self.config = config or Config()
        self.close_timeout = CLOSE_TIMEOUT_FACTOR * self.config.suspect_timeout if close_timeout is None \
            else close_timeout
        self.found = found
        self.tick_interval = tick
        self._metrics = MetricsServer(parse_address(listen)[0], metrics_port, self.status) \
            if metrics_port is not None else None
        self.groups: dict[str, Group] = {}
        # called with (group, reason) when this process was excluded from a group and joins it again
        self.on_rejoin: Callable[[str, str], None] | None = None
        self._query_ids = itertools.count(1)
        self._transport: Transport | None = None
        self._core: NodeCore
        self._trace: TraceWriter | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._closing = False  # no new casts, queries or joins; leaving every group
        self._closed = False  # stopped: the core is no longer driven
        self._close_result: asyncio.Future[bool] | None = None  # how the (first) close ended: cleanly?
        self._aborting = asyncio.Event()
        self._last_inc = 0  # the newest incarnation number used, by the node or a rejoin
        self._default_domain = DEFAULT_DOMAIN
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop
        self._storage = Storage(data_dir) if data_dir is not None else None
        self._outputs = _Outputs(self)
        self._recovered = False  # this incarnation recovered its identity from the data_dir
        self.last_views: dict[str, ViewRecord] = {}  # per group, the last view logged before this start

    @property
    def address(self) -> str:
        if self._transport is None:
            raise RuntimeError("the node is not started")
        return self._transport.address

    @property
    def pid(self) -> str:
        return self._core.pid

    def status(self) -> dict[str, Any]:
        """What ``vsgroups status`` shows of this node (``status.describe``), as a dict."""
        if self._transport is None:
            raise RuntimeError("the node is not started")
        return status.describe(self._core, self._transport, self.config)

    @property
    def recovered(self) -> bool:
        """This incarnation recovered its identifier from the ``data_dir`` (evs groups, 1994 §2)."""
        return self._recovered

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()  # graceful even when the block failed: bounded by close_timeout

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport = self._make_transport()
        await self._transport.start()
        inc, counter = int(self._wall_clock() * 1000), None
        if self._storage is not None:
            inc, counter = self._storage.identity(inc)
            self._recovered = counter is not None
        self._incarnate(inc, counter)
        self._ticker = asyncio.get_running_loop().create_task(self._tick_loop())
        if self._metrics is not None:
            await self._metrics.start()

    def _make_transport(self) -> Transport:
        """Real TCP; the simulator puts its own network here (``sim.aio``)."""
        return TcpTransport(self.listen, self.key, self._on_frame, max_frame=self.config.max_frame,
                            on_read_done=self._act)

    def _wall_clock(self) -> float:
        """Seconds since the epoch: incarnation numbers and trace times (virtual in the simulator)."""
        return time.time()

    def _incarnate(self, inc: int, counter: int | None = None) -> None:
        """A new incarnation, or (``counter``: the message ids it used) one that recovers."""
        self._core = NodeCore(self.name, inc, self.address, self.config, seed=inc, counter=counter or 0)
        self._last_inc = inc
        self._trace = TraceWriter(self.trace_dir, self.name, inc, self._wall_clock,
                                  recovered=counter is not None)

    def set_default_domain(self, domain: str) -> str:
        """Put the groups this node joins from now on without a ``domain`` into causality domain
        ``domain``; returns the previous default (``"default"`` at first).

        Causal order holds across the groups of one domain (docs/guide/domains.md): a chain of
        messages that leaves a group, passes through others and comes back is delivered in causal
        order, and so is a chain that reaches a process through two of its groups. It costs a cast
        a wait for the acknowledgements of what this node delivered in the domain's other groups;
        groups that need not wait for each other go in different domains."""
        if not isinstance(domain, str) or not domain:
            raise ValueError(f"a causality domain is a non-empty string, not {domain!r}")
        old, self._default_domain = self._default_domain, domain
        return old

    async def join(
        self, group: str, replica: Replica | None = None, timeout: float | None = JOIN_TIMEOUT,
        model: str = "vs", events: bool = False, domain: str | None = None, found: bool | None = None,
        refound: bool = False, seeds: Iterable[str] = (),
    ) -> Group:
        """Join ``group`` and return once this process is a member (with the state, if any).

        The replica's hooks see every delivery and view change. ``events=True`` also records them
        from the join for the first ``Group.events()`` stream (they are kept until it is read), so a
        program may cast, flush or query before it starts iterating and still miss nothing; later
        ``events()`` streams start when they are created.

        ``model="vs"`` (the default): only a primary component (a quorum of the last primary view)
        makes progress; a cut-off process blocks, then rejoins under a fresh member id with fresh state.
        ``model="evs"``: extended virtual synchrony; every component keeps running, each change
        delivers a transitional configuration (``ViewChange.kind``) before the new regular one, and
        components that can talk again merge (no state transfer on a merge: the application
        reconciles, as with Spread or Totem).

        ``found``: whether this node may found the group if no member answers (default: the node's
        ``found``, or being the first seed); a tool that creates groups on the fly says so per group.
        ``refound=True``: the group failed totally and this process founds it again (the recovery
        manager decided so): it may found it, and its trace says the group begins anew.

        ``seeds``: addresses of members of the group to ask, besides the node's seeds (a tool that
        knows where a group runs says so: ``tools.Hierarchy`` for its subgroups).

        ``domain``: the causality domain of the group at this node (``set_default_domain``): causal
        order holds across the groups of one domain, and groups of different domains never wait
        for each other.

        After ``timeout`` seconds (``JOIN_TIMEOUT`` by default; None waits for ever) it raises
        ``JoinFailed``, which says what is known of why: no seed reachable, frames the seeds cannot
        authenticate (another cluster key; a seed says so back, unauthenticated), no answer, the
        name held by a member that is still in the group, or the group blocked in a view change
        (no quorum). If the call fails (timeout, cancellation, the node closing: ``NodeClosed``),
        the join is called off: at once if no view of the group was installed here yet, else by
        leaving the group once its state has arrived."""
        if self._closing:
            raise NodeClosed(f"node {self.name} is closing: it joins no more groups")
        if group in self.groups:
            raise ValueError(f"this node already joined group {group!r}")
        if model not in ("vs", "evs"):
            raise ValueError(f"unknown group model {model!r}: use 'vs' (primary component) or 'evs'")
        if domain is not None and (not isinstance(domain, str) or not domain):
            raise ValueError(f"a causality domain is a non-empty string, not {domain!r}")
        if self._recovered and model != "evs":
            raise ValueError(f"this node recovered its identifier from its data_dir, so it can join only "
                             f"evs groups, not {model!r} group {group!r} (vs regards a recovered process as "
                             f"a new one: give it a fresh data_dir)")
        handle = Group(self, group, replica, model, events, domain or self._default_domain)
        self.groups[group] = handle
        if refound:
            found = True
        stored = self._storage.checkpoint(group) if self._recovered and self._storage is not None else None
        if self._storage is not None and (last := self._storage.view_log(group).last()) is not None:
            self.last_views.setdefault(group, last)
        if stored is not None:
            epoch, state = stored
            handle.replica.set_state(_decode(state))
            handle._recovering = True
            seeds = self._seed_list()
            assert self._storage is not None
            saved = self._storage.history(group)
            history = decode_history(saved) if saved is not None else None
            self._core_call(lambda core, now: core.recover(group, seeds, now, epoch, history,
                                                           domain=handle.domain))
        else:
            first_seed = self.seeds[:1] in ([], [self.address])
            # a process that was in the group before founds it again only if this call says so: the
            # node's default is for a first join (one that left and comes back while the group
            # runs elsewhere, unheard, must not found a second one)
            first_join = group not in self._core.spent
            default = (self.found if self.found is not None else first_seed) and first_join
            self._join_core(group, found if found is not None else default, also=seeds)
            if refound:  # in the file of the identity that joins (a rejoin has one of its own)
                assert self._trace is not None
                self._trace.rejoined.get(group, self._trace).write("refound", g=group)
        try:
            await asyncio.wait_for(handle.wait_joined(), timeout)
        except BaseException as exc:
            why = self._why_not_joined(group) if isinstance(exc, TimeoutError) else None
            if not handle.active:
                self.groups.pop(group, None)
            elif not self._closed:
                handle._start_leaving()  # never left running behind the application's back
            if why is not None:
                raise JoinFailed(f"{self.name} could not join group {group!r} within {timeout}s: "
                                 f"{why}") from None
            raise
        return handle

    def _why_not_joined(self, group: str) -> str:
        """What this node knows of why its join of ``group`` has not completed."""
        st = self._core.status(group)
        if st is not None and st.view is not None:
            return f"admitted in view {st.view}, but the group's state has not arrived"
        if st is not None and st.answer is not None:
            sender, held_by, blocked = st.answer
            if held_by is not None:
                return (f"{held_by}, another incarnation of {self.name!r}, is still a member: the group "
                        f"admits this one only once it has excluded that one (is a process of the same "
                        f"name still running?)")
            if blocked:
                return (f"{sender} answered, but a view change has been under way there for long: the "
                        f"group is blocked (a minority without a quorum of its last view?)")
            return f"{sender} answered, but the group has not admitted this process"
        assert self._transport is not None
        seeds = [a for a in self._seed_list() if a != self.address]
        if not seeds:
            return "no seed to ask, and this node may not found the group (found=False)"
        links = "; ".join(f"{a}: {self._transport.link(a)}" for a in seeds)
        if any(self._transport.link(a).startswith("rejected") for a in seeds):
            return f"the seeds cannot authenticate this node's frames: it holds another cluster key " \
                   f"({links})"
        if not any(self._transport.link(a) == "connected" for a in seeds):
            return f"no seed is reachable ({links})"
        return (f"no member of the group answered ({links}): none of the seeds is in the group (a group "
                f"exists once its founder, by default the first seed, has joined it)")

    def _seed_list(self, also: Iterable[str] = ()) -> list[str]:
        return list(dict.fromkeys([*self.seeds, *also])) or [self.address]

    def _join_core(self, group: str, founder: bool, also: Iterable[str] = ()) -> None:
        seeds = self._seed_list(also)
        model, domain = self.groups[group].model, self.groups[group].domain
        if self._storage is not None and model == "evs":
            self._storage.joining(group, pending=True)  # until it holds the state (see storage)
        if group not in self._core.spent:
            self._core_call(lambda core, now: core.join(group, seeds, now, founder=founder, model=model,
                                                        domain=domain))
            return
        # this process was in the group before (it left, or was excluded): a member id serves one
        # membership, so it joins under a fresh one, in a trace file of its own
        self._last_inc = inc = max(self._last_inc + 1, int(self._wall_clock() * 1000))
        assert self._trace is not None
        self._trace.rejoin(group, inc)
        if self._storage is not None:
            self._storage.rejoined(group)
        self._core_call(lambda core, now: core.rejoin(group, inc, seeds, now, model=model, founder=founder,
                                                      domain=domain))

    async def close(self, timeout: float | None = None) -> bool:
        """Stop this process gracefully; returns whether it stopped cleanly.

        From the call on, casts, queries and joins raise ``NodeClosed``, and a cast waiting for the
        flow-control window raises too; casts accepted before go out. Every group is left in
        parallel, as by ``Group.leave`` (a group still joining is abandoned: its join never
        completed, and ``join`` raises ``NodeClosed``). If every leave completes within ``timeout``
        seconds (default ``close_timeout``), the trace ends with ``leave`` for each group, then
        ``stop``, and the result is True.

        ``stop`` claims that the process delivered what it owed in its last views. So if a leave
        cannot complete in time (the process is in a minority that blocks: no view without it can be
        installed), if the process is excluded meanwhile, or if ``abort`` is called, the node stops
        anyway, its trace ends like a crash (no ``stop``) and the result is False. Idempotent:
        later calls wait for the first and return its result."""
        if self._close_result is not None:
            return await asyncio.shield(self._close_result)
        self._close_result = asyncio.get_running_loop().create_future()
        clean = False
        try:
            clean = await self._leave_all(self.close_timeout if timeout is None else timeout)
        finally:
            try:
                await self._shutdown(clean)
            finally:
                self._close_result.set_result(clean)
        return clean

    async def abort(self) -> None:
        """Stop at once, as a crash would: no group is left and the trace ends without ``stop``.
        A ``close`` under way ends now, returning False (a second SIGTERM does this to
        ``vsgroups node``)."""
        self._aborting.set()
        if self._close_result is not None:
            await asyncio.shield(self._close_result)
            return
        self._close_result = asyncio.get_running_loop().create_future()
        try:
            await self._shutdown(clean=False)
        finally:
            self._close_result.set_result(False)

    async def _leave_all(self, timeout: float) -> bool:
        """Refuse new casts and leave every group; True if every group was left within ``timeout``."""
        self._closing = True
        groups = list(self.groups.values())
        for group in groups:
            group._room.set()  # a cast waiting for the window raises NodeClosed
        if self._transport is None:
            return True  # never started
        leaves = [group._start_leaving() for group in groups]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        aborted = loop.create_task(self._aborting.wait())
        try:
            waiting: set[asyncio.Future[Any]] = {*leaves, aborted}
            while not aborted.done() and not all(f.done() for f in leaves):
                done, waiting = await asyncio.wait(waiting, timeout=max(0.0, deadline - loop.time()),
                                                   return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    stuck = ", ".join(repr(g.name) for g, f in zip(groups, leaves, strict=True)
                                      if not f.done())
                    log.warning("%s could not leave %s within %.1fs: it stops like a crash (no clean stop "
                                "in its trace)", self.pid, stuck, timeout)
                    return False
        finally:
            aborted.cancel()
        if aborted.done() and not aborted.cancelled():
            return False
        return all(f.result() for f in leaves)

    async def _shutdown(self, clean: bool) -> None:
        """Stop driving the core, close the transport and end the trace (with ``stop`` if ``clean``)."""
        self._closing = self._closed = True
        for group in self.groups.values():
            if group._leaver is not None:
                group._leaver.cancel()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._metrics is not None:
            await self._metrics.close()
        if self._transport is not None:
            if clean:
                await self._linger()
            await self._transport.close()
        if self._trace is not None:
            self._trace.close(clean=clean)
        for group in list(self.groups.values()):
            group._end(False, NodeClosed(f"node {self.name} was closed"))

    async def _linger(self) -> None:
        """Give the frames already queued (a commit this process coordinated, its last
        acknowledgements) up to ``LINGER`` seconds to reach the kernel, which sends them after the
        sockets close."""
        assert self._transport is not None
        transport, addrs = self._transport, set(self._core.addrs.values())
        deadline = self._loop.time() + LINGER
        while any(transport.pending_bytes(a) for a in addrs) and self._loop.time() < deadline:
            await asyncio.sleep(self.tick_interval)

    # -- driving the core --------------------------------------------------------------------------

    def _now(self) -> float:
        return self._loop.time()

    def _core_call(self, fn: Callable[[NodeCore, float], Any]) -> Any:
        result = fn(self._core, self._now())
        self._schedule()
        return result

    def _on_frame(self, data: bytes) -> None:
        if not self._closed:
            self._core.receive(data, self._now())  # acted on when the read is done

    def _act(self) -> None:
        """Act on the core's outputs (after a read, or in the round a call scheduled)."""
        if not self._closed:
            self._process()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._deferred)

    def _deferred(self) -> None:
        self._scheduled = False
        self._act()

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            try:
                now = self._now()
                self._core.tick(now)
                for group in self.groups.values():
                    group._serving.tick(now)
                self._process()
            except Exception:  # an application hook failed; the node must keep its timers running
                log.exception("error while handling a tick of %s", self._core.pid)

    def _process(self) -> None:
        try:
            self._outputs.drain(self._core)
            core = self._core
            for group in self.groups.values():
                if not group._room.is_set() and group.name in core.groups and not group._full():
                    group._room.set()
                drained = group._drained
                if drained is not None and not drained.is_set() and (
                        group.name not in core.groups or not core.backlog(group.name)):
                    drained.set()
        finally:
            # frames leave later, from the transport's writer tasks: a send is on disk before its
            # frame is on the wire, so a SIGKILL never loses a traced event that others saw
            if self._trace is not None:
                self._trace.flush()

    def _on_left(self, group: Group, left: bool) -> None:
        self.groups.pop(group.name, None)
        group._end(left, NotAMember(f"left group {group.name!r}"))

    def _rejoin(self, name: str, reason: str) -> None:
        """This process was excluded from group ``name``: it joins it again alone, under a fresh member
        id and with the state transferred as to any joiner, while its other groups go on."""
        group = self.groups[name]
        if self._closing or group._left is not None:
            # it was leaving anyway: the group went on without it, which ends the leave (its trace
            # says ``exclude``, a failure in its last view, so a clean stop stays true)
            log.warning("%s was excluded from group %r while leaving it: %s", group.member_id, name, reason)
            self._on_left(group, True)
            return
        old = group.member_id
        group._fail_all(GroupBlocked(f"this process was excluded from {name!r} and rejoins: {reason}"))
        group._joined.clear()
        # the group exists: never found it again; ask the members we knew as well as the seeds
        self._join_core(name, founder=False, also=sorted(self._core.addrs.values()))
        log.warning("%s was excluded from group %r and joins it again as %s: %s", old, name,
                    group.member_id, reason)
        if self.on_rejoin is not None:
            self.on_rejoin(name, reason)


class _Outputs(Driver):
    """Acts on the core's outputs for a ``Node``: the trace, the transport and the group handles."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        self.node = node
        self.oplog = OperatorLog()

    def driving(self, core: NodeCore) -> bool:
        return core is self.node._core  # after a restart, the new incarnation's outputs are next

    def observe(self, out: ev.Output) -> None:
        assert self.node._trace is not None
        self.node._trace.record(out)

    def on_transmit(self, out: ev.Transmit) -> None:
        node = self.node
        assert node._transport is not None and node._trace is not None
        # The transport may write the frame to the socket at once: what it tells others (a send
        # above all) must be in the trace first, or a SIGKILL right after could leave a delivery
        # elsewhere of a message this trace never sent
        node._trace.flush()
        node._transport.send(out.addr, out.data)

    def on_delivered(self, out: ev.Delivered) -> None:
        if (group := self.node.groups.get(out.group)) is not None:
            group._on_delivered(out)

    def on_view(self, out: ev.ViewInstalled) -> None:
        if (group := self.node.groups.get(out.group)) is not None:
            self.oplog.view(out, group.member_id)
            group._on_view(out, ready=not out.state_pending)
            if not out.state_pending:
                group._on_ready()

    def on_blocked(self, out: ev.Blocked) -> None:
        if (group := self.node.groups.get(out.group)) is not None:
            self.oplog.blocking(out)
            group.replica.block(out.view)

    def on_need_state(self, out: ev.NeedState) -> None:
        if (group := self.node.groups.get(out.group)) is not None:
            data = _encode([group.replica.get_state(), group._serving.snapshot()])
            self.core.provide_state(out.group, out.view, data, self.node._now())
            self.oplog.state_sent(out.group, out.view, len(data))

    def on_state_ready(self, out: ev.StateReady) -> None:
        if (group := self.node.groups.get(out.group)) is not None:
            self.oplog.state_received(out)
            state, clients = _decode(out.data) if out.data else (None, None)
            group.replica.set_state(state)
            group._serving.restore(clients, group.members)
            group._on_ready()

    def on_flushed(self, out: ev.Flushed) -> None:
        if (group := self.node.groups.get(out.group)) is not None:
            fut = group._flushes.pop(out.token, None)
            if fut is not None and not fut.done():
                fut.set_result(None)

    def on_direct(self, out: ev.DirectReceived) -> None:
        if (group := self.node.groups.get(out.group)) is not None:
            group._on_direct(out)

    def on_left(self, out: ev.Left) -> None:
        self.oplog.left(out.group)
        if (group := self.node.groups.get(out.group)) is not None:
            self.node._on_left(group, True)

    def on_excluded(self, out: ev.Excluded) -> None:
        self.oplog.forget(out.group)
        if out.group in self.node.groups:
            self.node._rejoin(out.group, out.reason)

    def on_status_requested(self, out: ev.StatusRequested) -> None:
        node = self.node
        assert node._transport is not None
        node._transport.send(out.addr, status.reply(out.nonce, node.status(), node.address))

    def on_suspicion(self, out: ev.Suspicion) -> None:
        self.oplog.suspicion(out)

    def on_from_client(self, out: ev.FromClient) -> None:
        if (group := self.node.groups.get(out.group)) is not None:
            group._serving.from_client(out)

    def on_history(self, out: ev.PrimaryHistory) -> None:
        # before the frames of this round leave (they follow it in the outputs): a recovered member
        # must report every primary attempt it accepted (docs/design.md §6.5)
        if self.node._storage is not None:
            self.node._storage.save_history(out.group, encode(out.history))
