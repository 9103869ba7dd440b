"""One group at one node: its lifecycle, its current view, and the dispatch of its messages.

A ``GroupEngine`` is the state machine of one process's membership of one group. It holds what
the protocols of the group share — the lifecycle state, the current view (id, members, their
addresses, primary or not, and its ``ViewStream``) — and hands every message to the module of its
protocol (docs/design.md):

  ``datapath``    casts, deliveries, acknowledgements, repair, flow control, flush (§2–4)
  ``viewchange``  the vs view change: one consensus per transition (§5)
  ``evs``         the evs configuration change: merges, foreign processes, transitional sets (§6)
  ``transfer``    state transfer to joiners (§7)

The engine sees its node only through ``host.Host``.

Lifecycle (``State``; the table ``TRANSITIONS`` lists every legal move):

  JOINING ──install──▶ MEMBER ──leave──▶ LEAVING
     │                   │                  │
     └──────────┬────────┴──────────────────┘
                ▼
        LEFT | EXCLUDED  (final: the engine takes no more inputs)

* JOINING: the joiner asks every seed for admission, repeatedly; any member answers (``JOINACK``)
  and forwards the request to its coordinator. A node may found the group only if it was told it
  is a founder (the runtime makes the first seed the founder) and it heard nothing from any member
  for ``found_timeout``. A joiner the group answered but did not admit within ``join_timeout`` (the
  view that admitted it may have been committed by a member that then died) ends as EXCLUDED and
  joins again under a fresh member id.
* MEMBER: installed in a view (a joiner may still wait for its state: see ``transfer``).
* LEAVING: it asks to leave once no joiner waits for state from it (it may be the only holder of
  the state left); it still votes in the transition that removes it and delivers its final set,
  then it is LEFT.
* EXCLUDED: the group went on without it (vs), or its join or state transfer failed. In vs the
  incarnation is over (fail-stop): the driver starts a new one.

Messages of a view not installed here yet are kept (its commit may still be on its way) and
handled once it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, NoReturn

from . import events as ev
from .datapath import DataPath
from .domains import DEFAULT, Domain
from .evs import EvsConfigurationChange
from .host import Host
from .ids import MessageId, view_epoch
from .stream import ViewStream
from .transfer import StateTransfer
from .viewchange import ViewChange, VsViewChange
from .wire import (
    Accept,
    Accepted,
    Ack,
    Announcement,
    Commit,
    Data,
    Direct,
    Excluded,
    History,
    Installed,
    Join,
    JoinAck,
    Leave,
    MergeHint,
    Message,
    Nak,
    Num,
    NumNak,
    Prepare,
    Promise,
    Reject,
    StateChunk,
    StateDone,
    StateRequest,
    Value,
    encode,
)

log = logging.getLogger("vsgroups.core")

Handler = Callable[[str, Any, bytes, float], None]  # (sender, message, its encoding, now)


class State(Enum):
    JOINING = "joining"
    MEMBER = "member"
    LEAVING = "leaving"
    LEFT = "left"
    EXCLUDED = "excluded"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.JOINING: frozenset({State.MEMBER, State.LEFT, State.EXCLUDED}),
    State.MEMBER: frozenset({State.LEAVING, State.EXCLUDED}),
    State.LEAVING: frozenset({State.LEFT, State.EXCLUDED}),
    State.LEFT: frozenset(),
    State.EXCLUDED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class GroupStatus:
    """What a driver may know of a group engine (``NodeCore.status``)."""

    group: str
    model: str
    state: str  # a ``State`` value
    view: str | None
    members: tuple[str, ...]
    primary: bool
    blocked: bool  # a view change is under way: sends and deliveries wait for it
    awaiting_state: bool  # a joiner that does not hold the group state yet
    backlog: int  # casts accepted but not yet sent
    backlog_bytes: int
    accepted: tuple[str, tuple[str, ...]] | None  # a successor view accepted here: (id, members)
    # a joiner: the last answer to its request (who, the member holding its name, blocked there)
    answer: tuple[str, str | None, bool] | None = None
    unstable: int = 0  # messages of the view held until every member has them (any sender)
    own_unstable: int = 0  # this member's casts among them (flow control counts these)
    retransmitted: int = 0  # messages this member sent again on request

    @property
    def can_cast(self) -> bool:
        return self.state == State.MEMBER.value


class GroupEngine:
    def __init__(
        self, host: Host, name: str, seeds: list[str], founder: bool, now: float, model: str = "vs",
        me: str | None = None, former: frozenset[str] = frozenset(),
    ) -> None:
        """``me``: this member's id in the group; the host's pid unless it joins again (``rejoin``),
        and then ``former`` are its earlier ids in the group: over, never to be waited for."""
        if model not in ("vs", "evs"):
            raise ValueError(f"unknown group model {model!r}: use 'vs' (primary component) or 'evs'")
        self.host = host
        self.cfg = host.cfg
        self.name = name
        self.me = me or host.pid
        self.former = former
        self.model = model
        self.evs = model == "evs"
        self.seeds = seeds
        self.founder = founder
        self.state = State.JOINING
        # when the node ticks this engine next, if it is quiet (``NodeCore.tick``)
        self.due = 0.0
        self.domain = Domain(DEFAULT, {self: None})  # its causality domain: the node places it
        # the current view
        self.view_id: str | None = None
        self.members: tuple[str, ...] = ()
        self.addrs: dict[str, str] = {}
        self.primary = True
        self.stream: ViewStream | None = None
        # joining (and leaving: both requests are repeated on one timer)
        self.join_started = now
        self.request_sent = float("-inf")
        self.leave_started = 0.0
        self.heard = False
        self.answer: tuple[str, str | None, bool] | None = None  # see GroupStatus.answer
        self.future: dict[str, list[tuple[str, Message, bytes]]] = {}
        # the protocols
        self.data = DataPath(self)
        self.change: ViewChange = EvsConfigurationChange(self) if self.evs else VsViewChange(self)
        self.transfer = StateTransfer(self, now)
        data, change, transfer = self.data, self.change, self.transfer
        self.handlers: dict[type, Handler] = {
            Data: data.on_data, Ack: data.on_ack, Announcement: data.on_announcement, Num: data.on_num,
            Nak: data.on_nak, NumNak: data.on_numnak, Join: change.on_join, JoinAck: self.on_joinack,
            Leave: change.on_leave, Prepare: change.on_prepare, Promise: change.on_promise,
            Reject: change.on_reject, Accept: change.on_accept, Accepted: change.on_accepted,
            Commit: change.on_commit, Installed: change.on_installed, Excluded: change.on_excluded,
            StateChunk: transfer.on_state, StateRequest: transfer.on_statereq,
            StateDone: transfer.on_statedone, Direct: self.on_direct,
        }
        if isinstance(change, EvsConfigurationChange):
            self.handlers[MergeHint] = change.on_merge

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def joining(self) -> bool:
        return self.state is State.JOINING

    @property
    def is_member(self) -> bool:
        """Installed in a view, leaving or not."""
        return self.state is State.MEMBER or self.state is State.LEAVING

    @property
    def leaving(self) -> bool:
        return self.state is State.LEAVING

    def _to(self, state: State) -> None:
        if state not in TRANSITIONS[self.state]:
            raise AssertionError(
                f"group {self.name!r}: no transition from {self.state.value} to {state.value}")
        self.state = state

    def status(self) -> GroupStatus:
        value = self.change.accepted[1] if self.change.accepted is not None else None
        accepted = (value.id, tuple(value.members)) if value is not None else None
        return GroupStatus(
            self.name, self.model, self.state.value, self.view_id, self.members, self.primary,
            self.change.promised is not None, self.transfer.awaiting is not None, len(self.data.pending),
            self.data.pending_bytes, accepted, self.answer,
            sum(len(held) for held in self.stream.held) if self.stream is not None else 0,
            self.stream.own_casts if self.stream is not None else 0, self.data.retransmitted)

    # -- application calls -----------------------------------------------------------------------

    def cast(self, mid: str, order: str, payload: bytes) -> None:
        if self.state is not State.MEMBER:
            raise_not_member(self.name, self.state)
        self.data.cast(mid, order, payload)

    def leave(self, now: float) -> None:
        if self.joining:
            self.finish_left(now)
            return
        if self.state is not State.MEMBER:
            raise_not_member(self.name, self.state)
        self._to(State.LEAVING)
        self.wake()
        self.domain.leaving[self] = None  # until it is out, its other groups of the domain deliver nothing
        self.request_sent = float("-inf")
        self.leave_started = now
        self.tick(now)

    def flush(self, token: int, counter: int, now: float) -> None:
        if not self.is_member:
            raise_not_member(self.name, self.state)
        self.wake()
        self.data.flush(token, counter, now)

    def send_direct(self, dst: str, payload: bytes) -> None:
        addr = self.addrs.get(dst) or self.host.addr_of(dst)
        if addr is None:
            raise_not_member(self.name, self.state, f"no address known for {dst}")
        self.host.send(addr, encode(Direct(self.name, payload)))

    def provide_state(self, view: str, data: bytes) -> None:
        self.wake()
        self.transfer.provide(view, data)

    def recover(self, epoch: int, now: float, history: History | None) -> None:
        """See ``NodeCore.recover``."""
        assert isinstance(self.change, EvsConfigurationChange)
        self.wake()
        self.change.restore(history)
        self._install_alone(epoch + 1, now, primary=False)

    # -- inputs ----------------------------------------------------------------------------------

    def on_message(self, sender: str, msg: Message, raw: bytes, now: float) -> None:
        self.wake()
        handler = self.handlers.get(type(msg))
        if handler is None:
            log.warning("dropped a %s message from %s: not one of a %s group", type(msg).__name__, sender,
                        self.model)
            return
        handler(sender, msg, raw, now)

    def on_heartbeat_view(self, sender: str, view: str, now: float) -> None:
        if view != self.view_id:
            self.wake()
        self.change.on_heartbeat_view(sender, view, now)

    def on_joinack(self, sender: str, msg: JoinAck, raw: bytes, now: float) -> None:
        self.heard = True
        self.answer = (sender, msg.held_by, msg.blocked)

    def on_direct(self, sender: str, msg: Direct, raw: bytes, now: float) -> None:
        if self.is_member:
            self.emit(ev.DirectReceived(self.name, sender, msg.payload))

    def keep_for_later(self, view: str, sender: str, msg: Message, raw: bytes) -> None:
        """Keep messages of a view not installed here yet (its commit may still be on its way)."""
        if self.view_id is not None and view_epoch(view) <= view_epoch(self.view_id):
            return
        bucket = self.future.setdefault(view, [])
        if len(bucket) < 4 * self.cfg.window:
            bucket.append((sender, msg, raw))

    # -- timers ----------------------------------------------------------------------------------

    def wake(self) -> None:
        """Something happened here: tick at the node's next tick, quiet or not."""
        self.host.wake(self)

    def quiet(self) -> bool:
        """Nothing here waits for a timer: no view change under way or called for (no member
        suspected), no join, leave or state transfer, nothing unstable, pending or missing. A quiet
        engine is ticked only every ``quiet_interval``, and at once after an input or when one of its
        members becomes suspected (``NodeCore.tick``): a node carries thousands of idle groups."""
        if not self.is_member:
            return not self.joining
        return not self.leaving and self.data.quiet() and self.change.quiet() and self.transfer.quiet()

    @property
    def quiet_interval(self) -> float:
        """How often a quiet engine is ticked: in evs, as often as its coordinator probes its seeds
        (merge discovery); in vs, as a safety net only."""
        return self.cfg.probe_interval if self.evs else self.cfg.suspect_timeout

    def tick(self, now: float) -> None:
        if self.joining:
            self._tick_joining(now)
            return
        if not self.is_member:
            return
        stream = self.stream
        assert stream is not None
        if self.leaving and now - self.request_sent >= self.cfg.retry_interval:
            self.request_sent = now
            if self.transfer.out and now - self.leave_started < self.cfg.join_timeout:
                # a joiner may hold no state but what we send it: we may be the only holder left
                # (a joiner that never completes gives up after join_timeout; so do we)
                self.transfer.remind()
            else:
                self.change.leaves.add(self.me)
                self._send_leave()
        self.data.tick(stream, now)
        self.change.tick(now)
        self.transfer.tick(now)
        self.progress(now)

    def progress(self, now: float) -> None:
        self.data.progress(now)

    def _tick_joining(self, now: float) -> None:
        if now - self.request_sent >= self.cfg.retry_interval:
            self.request_sent = now
            data = encode(Join(self.name, self.me, self.host.addr))
            for addr in self.seeds:
                if addr != self.host.addr:
                    self.host.send(addr, data)
        if self.heard and now - self.join_started >= self.cfg.join_timeout:
            # the group answered but never installed us (its commit to us was lost with its sender)
            self.finish_excluded(now, f"not admitted within {self.cfg.join_timeout}s; joining anew")
            return
        if self.founder and not self.heard and now - self.join_started >= self.cfg.found_timeout:
            self._install_alone(0, now, primary=True)

    def _send_leave(self) -> None:
        data = encode(Leave(self.name, self.me))
        for pid in self.members:
            if pid != self.me:
                self.host.send_to(pid, data)

    # -- views -----------------------------------------------------------------------------------

    def _install_alone(self, epoch: int, now: float, primary: bool) -> None:
        """A view of this process alone: the founding of the group, or a recovery (evs)."""
        me = self.me
        alone = Value(prev=None, id=f"{epoch}.0.{me}", members=[me], addrs={me: self.host.addr},
                      state_from=None, joiners=[me], voters=[], primary=primary)
        self.install(alone, now, joined=True)

    def install(self, value: Value, now: float, joined: bool, prev: str | None = None) -> None:
        """Install the view a decided ``value`` describes (after delivering the old view's final set)."""
        prev = prev or self.view_id
        members = tuple(value.members)
        self.view_id = value.id
        self.members = members
        self.addrs = dict(value.addrs)
        self.stream = ViewStream(self.name, value.id, members, self.me, self.evs)
        if self.joining:
            self._to(State.MEMBER)
        self.primary = value.primary
        self.change.installed(members, value)
        self.data.new_view()
        self.host.members_installed(members, self.addrs, now)
        pending = joined and value.state_from is not None and value.state_from != self.me
        self.emit(ev.ViewInstalled(self.name, value.id, members, prev, primary=self.primary,
                                   state_pending=pending, follows=value.follows,
                                   joined=tuple(value.joiners) if value.state_from is not None else (),
                                   domain=self.domain.name))
        if self.domain.waiting:
            self.poke_domain()  # casts held for deliveries of the old view may go
        if not self.transfer.installed(value, joined, now):
            return
        for view in list(self.future):
            bucket = self.future.pop(view)
            if view == self.view_id:
                for sender, msg, raw in bucket:
                    self.on_message(sender, msg, raw, now)
        self.progress(now)

    def held(self, upto: int) -> None:
        """A barrier of the causality domain holds the pending casts made before ``upto``."""
        mids = [mid for mid, _, _ in self.data.pending if MessageId.parse(mid).counter < upto]
        self.emit(ev.Held(self.name, mids))

    def poke_domain(self) -> None:
        """Something here may let casts of the domain's other groups go: they look again."""
        for other in self.domain.changed(self):
            self.host.defer(other)

    def emit(self, event: ev.Output) -> None:
        """An output of this group's view; a joiner holds them until its state has arrived."""
        if not self.transfer.hold(event):
            self.host.emit(event)

    def finish_left(self, now: float) -> None:
        if self.transfer.awaiting is not None:
            # it delivered nothing of its views yet (they wait for the state): like a crash
            self.finish_excluded(now, "left before the state transfer completed")
            return
        self._finish(State.LEFT)
        self.host.emit(ev.Left(self.name))
        self.host.group_finished(self)

    def finish_excluded(self, now: float, reason: str) -> None:
        self._finish(State.EXCLUDED)
        log.warning("%s excluded from group %s: %s", self.me, self.name, reason)
        self.host.emit(ev.Excluded(self.name, reason))
        self.host.group_finished(self)

    def _finish(self, state: State) -> None:
        self._to(state)
        self.stream = None
        self.data.drop_pending()


_NOT_MEMBER = {State.JOINING: "has not finished joining", State.LEAVING: "is leaving", State.LEFT: "has left",
               State.EXCLUDED: "was excluded from"}


def raise_not_member(group: str, state: State | None, detail: str = "") -> NoReturn:
    from ..errors import NotAMember

    what = _NOT_MEMBER.get(state, "is not a member of") if state is not None else "is not a member of"
    raise NotAMember(f"this node {what} group {group!r}" + (f": {detail}" if detail else ""))
