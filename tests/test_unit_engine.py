"""Unit tests of the group engine (``core.group`` and the protocol modules it dispatches to:
``datapath``, ``viewchange``, ``evs``, ``transfer``) on a fake host.

No ``NodeCore``, no simulator, no sockets: each engine runs on a ``FakeHost`` that records what the
engine sends (decoded with ``wire.decode``, so tests assert on typed messages) and emits, and whose
suspicions and clock the test sets. Several engines are wired by hand through ``Net``, which hands
the recorded sends of one engine to the others' ``on_message`` (docs/design.md §11: an engine sees
its node only through ``host.Host``). Each test's docstring names the section or property it checks.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import pytest

from vsgroups.core import events as ev
from vsgroups.core.config import Config
from vsgroups.core.group import TRANSITIONS, GroupEngine, State
from vsgroups.core.stream import ViewStream
from vsgroups.core.wire import (
    CAUSAL,
    TOTAL,
    Accept,
    Accepted,
    Ack,
    Commit,
    Data,
    Excluded,
    Heartbeat,
    History,
    Installed,
    Join,
    JoinAck,
    Leave,
    MergeHint,
    Message,
    Nak,
    Num,
    Part,
    Prepare,
    Primary,
    Promise,
    Reject,
    StateChunk,
    StateDone,
    StateRequest,
    Value,
    decode,
    encode,
)
from vsgroups.errors import NotAMember

GROUP = "g"
A, B, C, D, J = "a#1", "b#1", "c#1", "d#1", "j#1"
DIRECTORY = {pid: f"{pid[0]}:7000" for pid in (A, B, C, D, J)}  # pid -> the address it listens at

M = TypeVar("M")


# -- the fake host -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Out:
    """One message an engine sent: to ``pid`` (by process, or the process listening at ``addr``)."""

    pid: str | None
    addr: str | None
    msg: Message
    raw: bytes


class FakeHost:
    """``host.Host`` for one engine: records sends and outputs; suspicions and time are the test's."""

    def __init__(self, pid: str, cfg: Config | None = None) -> None:
        self.pid = pid
        self.addr = DIRECTORY[pid]
        self.cfg = cfg or Config()
        self.rng = random.Random(0)
        self.counter = 0
        self.now = 0.0
        self.batching = False
        self.known: dict[str, str] = dict(DIRECTORY)  # what addr_of answers
        self.out: list[Out] = []
        self.events: list[ev.Output] = []
        self.deferred: list[GroupEngine] = []
        self.suspected: set[str] = set()
        self.watched: list[tuple[tuple[str, ...], dict[str, str]]] = []
        self.finished: list[GroupEngine] = []

    # Host
    def send(self, addr: str, data: bytes) -> None:
        pid = next((p for p, a in self.known.items() if a == addr), None)
        self.out.append(Out(pid, addr, decode(data), data))

    def send_to(self, pid: str, data: bytes) -> None:
        self.out.append(Out(pid, self.known.get(pid), decode(data), data))

    def addr_of(self, pid: str) -> str | None:
        return self.known.get(pid)

    def learn_addr(self, pid: str, addr: str) -> None:
        self.known[pid] = addr

    def suspects(self, pid: str) -> bool:
        return pid in self.suspected

    def emit(self, event: ev.Output) -> None:
        self.events.append(event)

    def wake(self, engine: GroupEngine) -> None:
        pass  # the tests tick the engine themselves

    def defer(self, engine: GroupEngine) -> None:
        self.deferred.append(engine)

    def members_installed(self, members: tuple[str, ...], addrs: dict[str, str], now: float) -> None:
        self.watched.append((members, addrs))

    def group_finished(self, engine: GroupEngine) -> None:
        self.finished.append(engine)

    # for the tests
    def run_deferred(self) -> None:
        """What ``NodeCore.take_outputs`` does first: progress every engine that asked for it."""
        while self.deferred:
            self.deferred.pop(0).progress(self.now)

    def take(self) -> list[Out]:
        out, self.out = self.out, []
        return out

    def sent(self, kind: type[M], to: str | None = None) -> list[M]:
        """The messages of type ``kind`` sent so far (to process ``to``, if given)."""
        return [o.msg for o in self.out if isinstance(o.msg, kind) and (to is None or o.pid == to)]

    def recipients(self, kind: type) -> list[str]:
        """Who the messages of type ``kind`` went to (``@addr`` for an address of no known process)."""
        return [o.pid or f"@{o.addr}" for o in self.out if isinstance(o.msg, kind)]

    def of(self, kind: type[M]) -> list[M]:
        return [e for e in self.events if isinstance(e, kind)]


def engine(pid: str, *, model: str = "vs", founder: bool = False, seeds: list[str] | None = None,
           cfg: Config | None = None, now: float = 0.0) -> tuple[GroupEngine, FakeHost]:
    host = FakeHost(pid, cfg)
    host.now = now
    return GroupEngine(host, GROUP, seeds or [], founder, now, model), host


def host_of(g: GroupEngine) -> FakeHost:
    assert isinstance(g.host, FakeHost)
    return g.host


def view_value(view: str, members: Iterable[str], prev: str | None = None, **changes: Any) -> Value:
    """The value of a vs view (or, with ``parts``, an evs configuration): by default voted by all of
    its members, with no joiners and an empty final set."""
    members = list(members)
    value = Value(prev=prev, id=view, members=members, addrs={m: DIRECTORY[m] for m in members},
                  state_from=None, joiners=[], voters=sorted(members))
    return msgspec.structs.replace(value, **changes)


def install(g: GroupEngine, view: str, members: Iterable[str], now: float = 0.0) -> None:
    """Put ``g`` in ``view`` directly, as an old member (no state transfer), and forget the outputs."""
    g.install(view_value(view, members), now, joined=False)
    host = host_of(g)
    host.events.clear()
    host.take()


def feed(g: GroupEngine, sender: str, msg: Message, now: float | None = None) -> None:
    """Hand ``msg`` from ``sender`` to ``g`` as its node would (decoded, with its encoding)."""
    host = host_of(g)
    if now is not None:
        host.now = now
    raw = encode(msg)
    g.on_message(sender, decode(raw), raw, host.now)


def feed_raw(g: GroupEngine, sender: str, raw: bytes, now: float | None = None) -> None:
    host = host_of(g)
    if now is not None:
        host.now = now
    g.on_message(sender, decode(raw), raw, host.now)


def stamp(view: str, members: tuple[str, ...], sender: str, count: int, order: int = CAUSAL,
          evs: bool = False, first: int = 1) -> list[bytes]:
    """``count`` units of ``sender`` in ``view``, one cast each, as its stream encodes them (ids
    ``sender:first``, ...), each sent before anything of the others was delivered there."""
    stream = ViewStream(GROUP, view, members, sender, evs)
    out: list[bytes] = []
    for i in range(first, first + count):
        msg = stream.stamp([f"{sender}:{i}"], order, [f"{sender}/{i}".encode()])
        assert msg.raw is not None
        out.append(msg.raw)
    return out


def kinds(events: list[ev.Output]) -> list[str]:
    """A compact picture of an output sequence, for asserting on orders of events."""
    out: list[str] = []
    for e in events:
        if isinstance(e, ev.Delivered):
            out.append(f"deliver {','.join(e.msgs)} in {e.view}")
        elif isinstance(e, ev.ViewInstalled):
            out.append(f"{e.kind} {e.view}")
        elif isinstance(e, ev.Blocked):
            out.append(f"blocked {e.view}")
        elif isinstance(e, ev.PrimaryHistory):
            continue  # evs bookkeeping for stable storage, checked on its own
        else:
            out.append(type(e).__name__)
    return out


class Net:
    """A few engines wired by hand: the recorded sends of each are handed to the others."""

    def __init__(self, model: str = "vs", cfg: Config | None = None) -> None:
        self.model = model
        self.cfg = cfg or Config()
        self.engines: dict[str, GroupEngine] = {}
        self.cut: set[str] = set()  # processes whose traffic is lost, both ways
        self.log: list[tuple[str, Out]] = []  # (sender, message): everything sent, lost or not
        self.now = 0.0

    def add(self, pid: str, founder: bool = False, seeds: list[str] | None = None) -> GroupEngine:
        g, _ = engine(pid, model=self.model, founder=founder, seeds=seeds, cfg=self.cfg, now=self.now)
        self.engines[pid] = g
        return g

    def view(self, view: str, members: tuple[str, ...]) -> None:
        for pid in members:
            install(self.engines.get(pid) or self.add(pid), view, members, self.now)

    def live(self) -> list[GroupEngine]:
        return [g for _, g in sorted(self.engines.items()) if not host_of(g).finished]

    def step(self) -> int:
        """Deliver every message sent so far (a node's loopback included); how many were delivered."""
        moved = 0
        for g in self.live():
            host_of(g).run_deferred()
        batch = [(g.me, o) for g in self.live() for o in host_of(g).take()]
        self.log += batch
        for src, o in batch:
            dst = self.engines.get(o.pid or "")
            if dst is None or host_of(dst).finished or {src, o.pid} & self.cut:
                continue
            moved += 1
            host_of(dst).now = self.now
            if isinstance(o.msg, Heartbeat):  # as NodeCore hands a heartbeat to its engines
                view = o.msg.views.get(GROUP)
                if view is not None:
                    dst.on_heartbeat_view(src, view, self.now)
                if o.msg.complete:
                    dst.change.on_groups_named(src, GROUP in o.msg.views)
            else:
                dst.on_message(src, o.msg, o.raw, self.now)
        return moved

    def run(self, now: float | None = None, rounds: int = 50) -> None:
        if now is not None:
            self.set_time(now)
        for _ in range(rounds):
            if not self.step():
                return
        raise AssertionError("the engines never went quiet")

    def sent(self, src: str, kind: type[M], to: str | None = None) -> list[M]:
        """What ``src`` sent of type ``kind`` (to ``to``, if given), through this net."""
        return [o.msg for s, o in self.log
                if s == src and isinstance(o.msg, kind) and (to is None or o.pid == to)]

    def tick(self, now: float) -> None:
        self.set_time(now)
        for g in self.live():
            g.tick(now)
        self.run()

    def set_time(self, now: float) -> None:
        self.now = now
        for g in self.engines.values():
            host_of(g).now = now


V1 = "1.0.a#1"  # the views of the tests: epoch.round.proposer
V2 = "2.1.a#1"
V3 = "3.1.b#1"


# -- lifecycle (group.py, docs/design.md §7 bootstrap, §11) -----------------------------------------


def test_a_founder_that_hears_nothing_founds_the_group_after_found_timeout() -> None:
    """design §7 Bootstrap: a founder candidate that heard nothing for ``found_timeout`` installs
    the founding view ``0.0.pid`` of itself alone (primary); before that it only asks the seeds, and
    a node that is not a founder candidate never founds."""
    cfg = Config()
    g, host = engine(A, founder=True, seeds=[DIRECTORY[A], DIRECTORY[B]], cfg=cfg)
    other, other_host = engine(C, founder=False, seeds=[DIRECTORY[B]], cfg=cfg)
    g.tick(0.0)
    assert host.sent(Join, to=B) == [Join(GROUP, A, DIRECTORY[A])]  # every seed but itself
    assert host.recipients(Join) == [B]
    g.tick(cfg.found_timeout - 0.01)
    assert g.state is State.JOINING and g.view_id is None and not host.events
    g.tick(cfg.found_timeout)
    assert g.state is State.MEMBER
    assert host.events == [ev.ViewInstalled(GROUP, f"0.0.{A}", (A,), None, primary=True)]
    assert host.watched == [((A,), {A: DIRECTORY[A]})]
    for t in (0.0, cfg.found_timeout, 5 * cfg.found_timeout):
        other.tick(t)
    assert other.state is State.JOINING and not other_host.events


def test_a_joiner_the_group_answered_does_not_found_and_gives_up_after_join_timeout() -> None:
    """design §7 Joining: a joiner that heard a ``JOINACK`` never founds a second group; if it is not
    admitted within ``join_timeout`` it ends EXCLUDED (to start over as a new incarnation)."""
    cfg = Config()
    g, host = engine(A, founder=True, seeds=[DIRECTORY[B]], cfg=cfg)
    g.tick(0.0)
    feed(g, B, JoinAck(GROUP), now=0.1)
    g.tick(cfg.found_timeout + 0.5)
    assert g.state is State.JOINING and g.view_id is None
    g.tick(cfg.join_timeout - 0.01)
    assert g.state is State.JOINING
    g.tick(cfg.join_timeout)
    assert g.state is State.EXCLUDED
    assert [type(e) for e in host.events] == [ev.Excluded]
    assert host.finished == [g]


def test_cast_before_joining_raises_not_a_member_naming_the_state() -> None:
    """design §11 lifecycle: a cast needs the MEMBER state; a joiner is told it has not finished
    joining, and nothing is queued."""
    g, _ = engine(A)
    with pytest.raises(NotAMember, match="has not finished joining group 'g'"):
        g.cast(f"{A}:1", "causal", b"x")
    with pytest.raises(NotAMember, match="has not finished joining"):
        g.flush(1, 0, 0.0)
    assert not g.data.pending


def test_leave_while_joining_ends_left() -> None:
    """design §11 lifecycle (JOINING → LEFT): a joiner that leaves is LEFT at once, emits ``Left``
    and tells its node it is finished; it takes no more requests."""
    g, host = engine(A, seeds=[DIRECTORY[B]])
    g.tick(0.0)
    g.leave(0.1)
    assert g.state is State.LEFT
    assert host.events == [ev.Left(GROUP)]
    assert host.finished == [g]
    with pytest.raises(NotAMember, match="has left"):
        g.cast(f"{A}:1", "fifo", b"x")


def test_the_transition_table_is_the_documented_lifecycle_and_illegal_moves_raise() -> None:
    """design §11: ``TRANSITIONS`` is joining → member → leaving → left, excluded from any of them,
    and final states have no way out; ``GroupEngine._to`` refuses every move the table lacks."""
    legal = {
        (State.JOINING, State.MEMBER), (State.JOINING, State.LEFT), (State.JOINING, State.EXCLUDED),
        (State.MEMBER, State.LEAVING), (State.MEMBER, State.EXCLUDED),
        (State.LEAVING, State.LEFT), (State.LEAVING, State.EXCLUDED),
    }
    assert {(s, t) for s, targets in TRANSITIONS.items() for t in targets} == legal
    g, _ = engine(A)
    for s in State:
        for t in State:
            g.state = s
            if (s, t) in legal:
                g._to(t)
                assert g.state is t
            else:
                with pytest.raises(AssertionError, match=f"no transition from {s.value} to {t.value}"):
                    g._to(t)
                assert g.state is s


def test_leave_makes_a_member_leaving_tells_the_members_and_refuses_casts() -> None:
    """design §5 Leaves: ``leave()`` → LEAVING, ``LEAVE`` goes to every other member and is repeated
    every ``retry_interval``; casts are refused ("is leaving"), a flush is still allowed."""
    g, host = engine(A)
    install(g, V1, (A, B, C))
    g.leave(1.0)
    assert g.state is State.LEAVING and A in g.change.leaves
    assert set(host.recipients(Leave)) == {B, C}
    assert all(m == Leave(GROUP, A) for m in host.sent(Leave))
    assert not g.status().can_cast
    with pytest.raises(NotAMember, match="is leaving group 'g'"):
        g.cast(f"{A}:1", "causal", b"x")
    g.flush(1, 0, 1.0)  # allowed while leaving
    host.take()
    g.tick(1.0 + g.cfg.retry_interval / 2)
    assert not host.sent(Leave)
    g.tick(1.0 + 2 * g.cfg.retry_interval)
    assert set(host.recipients(Leave)) == {B, C}


def test_status_reflects_view_state_blocked_accepted_and_backlog() -> None:
    """design §11: ``status()`` is what a driver sees: view, members, state, blocked by a promise,
    the accepted successor, and the backlog of casts not yet sent."""
    g, _ = engine(A)
    s = g.status()
    assert (s.state, s.view, s.members, s.blocked, s.backlog, s.can_cast) == ("joining", None, (), False, 0,
                                                                              False)
    install(g, V1, (A, B))
    s = g.status()
    assert (s.state, s.view, s.members, s.primary, s.blocked, s.awaiting_state) == (
        "member", V1, (A, B), True, False, False)
    assert s.can_cast and s.accepted is None
    g.cast(f"{A}:1", "causal", b"12345")
    g.cast(f"{A}:2", "total", b"678")
    assert (g.status().backlog, g.status().backlog_bytes) == (2, 8)
    feed(g, B, Prepare(GROUP, V1, (1, B), []))
    assert g.status().blocked
    successor = view_value(V2, (A, B), prev=V1)
    feed(g, B, Accept(GROUP, V1, (1, B), successor))
    assert g.status().accepted == (V2, (A, B))
    host_of(g).run_deferred()
    assert g.status().backlog == 2  # blocked: nothing is stamped during the change


# -- the data path (datapath.py, docs/design.md §2–4) -----------------------------------------------


def test_casts_wait_for_progress_then_a_run_of_one_ordering_goes_out_as_one_unit() -> None:
    """1987b §4.3.2, design §2 Units: casts wait in ``pending`` (the engine asks its host to defer
    progress) and are stamped together: one ``Data`` unit per run of consecutive casts with one
    ordering, sent to every other member, each announced by a ``Sent`` event."""
    g, host = engine(A)
    install(g, V1, (A, B, C))
    for i, order in enumerate(["causal", "causal", "causal", "total", "causal"], 1):
        g.cast(f"{A}:{i}", order, f"p{i}".encode())
    assert host.deferred and host.deferred[0] is g
    assert not host.out and not host.events  # nothing leaves before the outputs are taken
    host.run_deferred()
    units = host.sent(Data, to=B)
    assert [(u.seq, u.order, u.mids, u.payloads) for u in units] == [
        (1, CAUSAL, [f"{A}:1", f"{A}:2", f"{A}:3"], [b"p1", b"p2", b"p3"]),
        (2, TOTAL, [f"{A}:4"], [b"p4"]),
        (3, CAUSAL, [f"{A}:5"], [b"p5"]),
    ]
    assert host.sent(Data, to=C) == units
    assert [e.msgs for e in host.of(ev.Sent)] == [[f"{A}:1", f"{A}:2", f"{A}:3"], [f"{A}:4"], [f"{A}:5"]]
    assert not g.data.pending


def test_a_unit_holds_at_most_batch_bytes_and_a_larger_cast_goes_alone() -> None:
    """design §2 Units: a unit carries up to ``batch_bytes`` of payload; a larger cast goes alone."""
    g, host = engine(A, cfg=Config(batch_bytes=10))
    install(g, V1, (A, B))
    for i, size in enumerate([4, 4, 4, 30, 2], 1):
        g.cast(f"{A}:{i}", "fifo", b"x" * size)
    host.run_deferred()
    assert [u.mids for u in host.sent(Data, to=B)] == [
        [f"{A}:1", f"{A}:2"], [f"{A}:3"], [f"{A}:4"], [f"{A}:5"]]


def test_a_promise_stops_sending_and_delivering_and_freezes_acks_but_not_retransmission() -> None:
    """design §5 step 2: a member that promised stops stamping casts, stops delivering and stops
    acknowledging (so nothing becomes stable that its report does not cover); it still receives
    and retransmits, byte for byte."""
    g, host = engine(B)
    install(g, V1, (A, B, C))
    feed(g, A, Prepare(GROUP, V1, (1, A), []), now=1.0)
    assert [p.ballot for p in host.sent(Promise, to=A)] == [(1, A)]
    host.take()
    (raw,) = stamp(V1, (A, B, C), C, 1)
    feed_raw(g, C, raw, now=1.01)
    g.cast(f"{B}:1", "causal", b"x")
    host.run_deferred()
    # "still waiting": normally answered
    feed(g, A, Ack(GROUP, V1, [0, 0, 1], 0, True, 0, [0, 0, 0]), now=1.02)
    for t in (1.05, 1.5, 2.0):
        g.tick(t)
    assert not host.sent(Data) and not host.sent(Ack)
    assert not host.of(ev.Delivered) and not host.of(ev.Sent)
    assert g.status().backlog == 1 and g.status().blocked
    feed(g, A, Nak(GROUP, V1, 2, 1, 1), now=2.0)
    assert [o.raw for o in host.out if o.pid == A and isinstance(o.msg, Data)] == [raw]


def test_a_joiner_awaiting_state_sends_no_casts_and_holds_its_events_until_the_state_is_complete() -> None:
    """design §7 State transfer: a joiner emits ``ViewInstalled`` at once, then holds every output
    of its view until ``StateReady``; meanwhile it does not send its casts, but it acknowledges.
    Once the last chunk arrives it confirms (``STATEDONE``) and releases the held events in order."""
    g, host = engine(J, seeds=[DIRECTORY[A]])
    value = view_value(V2, (A, B, J), prev=V1, state_from=A, joiners=[J])
    feed(g, A, Commit(GROUP, V1, value), now=1.0)
    assert kinds(host.events) == [f"regular {V2}"]
    assert host.of(ev.ViewInstalled)[0].state_pending  # the driver learns the state is still to come
    assert g.transfer.awaiting == V2 and g.status().awaiting_state and g.status().can_cast
    (raw,) = stamp(V2, (A, B, J), A, 1)
    feed_raw(g, A, raw, now=1.01)
    g.cast(f"{J}:1", "causal", b"mine")
    host.run_deferred()
    g.tick(1.05)
    assert not host.sent(Data) and not host.of(ev.Sent)
    assert host.sent(Ack, to=A)  # it acknowledges while it waits
    assert kinds(host.events) == [f"regular {V2}"]  # the delivery is held
    host.take()
    feed(g, A, StateChunk(GROUP, V2, 1, 2, b"-tail"), now=1.1)
    assert g.transfer.awaiting == V2 and len(host.events) == 1
    feed(g, A, StateChunk(GROUP, V2, 0, 2, b"head"), now=1.1)
    assert g.transfer.awaiting is None
    assert host.sent(StateDone, to=A) == [StateDone(GROUP, V2)]
    assert kinds(host.events) == [f"regular {V2}", "StateReady", f"deliver {A}:1 in {V2}", "Sent",
                                  f"deliver {J}:1 in {V2}"]
    assert host.of(ev.StateReady) == [ev.StateReady(GROUP, V2, b"head-tail")]
    assert [d.mids for d in host.sent(Data, to=A)] == [[f"{J}:1"]]


@pytest.mark.parametrize("acked_by_b", [True, False], ids=["holder", "no-holder"])
def test_a_gap_is_repaired_after_nak_delay_from_a_member_that_acknowledged_holding_it(
        acked_by_b: bool) -> None:
    """design §2 Retransmission: a gap that lasts ``nak_delay`` sends a ``NAK`` to a member whose
    acknowledgement shows it holds the missing message, or to its sender if none does."""
    g, host = engine(C)
    install(g, V1, (A, B, C))
    one, two = stamp(V1, (A, B, C), A, 2)
    feed_raw(g, A, two, now=1.0)  # a:1 is missing
    if acked_by_b:
        feed(g, B, Ack(GROUP, V1, [2, 0, 0], 0, False, 0, [0, 0, 0]), now=1.0)
    g.tick(1.0)
    g.tick(1.0 + g.cfg.nak_delay / 2)
    assert not host.sent(Nak)
    g.tick(1.0 + g.cfg.nak_delay)
    holder = B if acked_by_b else A
    assert host.recipients(Nak) == [holder]
    assert host.sent(Nak) == [Nak(GROUP, V1, 0, 1, 2)]
    assert not host.of(ev.Delivered)
    feed_raw(g, holder, one, now=1.05)
    assert [e.msgs for e in host.of(ev.Delivered)] == [[f"{A}:1"], [f"{A}:2"]]


def test_flush_completes_once_everything_cast_before_it_is_stable() -> None:
    """design §2 Pitfalls (``flush``): a flush waits until every cast made before it has been
    stamped (here the flow-control window holds one back), then until what was received at that
    moment is stable (acknowledged by every member)."""
    g, host = engine(A, cfg=Config(window=1))
    install(g, V1, (A, B))
    g.cast(f"{A}:1", "causal", b"x")
    g.cast(f"{A}:2", "causal", b"y")
    host.run_deferred()
    assert [u.mids for u in host.sent(Data, to=B)] == [[f"{A}:1"]]  # the window holds a:2 back
    g.flush(7, 2, 0.1)
    feed(g, B, Ack(GROUP, V1, [0, 0], 0, False, 0, [0, 0]), now=0.2)
    assert not host.of(ev.Flushed)
    feed(g, B, Ack(GROUP, V1, [1, 0], 0, False, 0, [0, 0]), now=0.3)  # a:1 stable: the window lets a:2 go
    assert [u.mids for u in host.sent(Data, to=B)] == [[f"{A}:1"], [f"{A}:2"]]
    assert not host.of(ev.Flushed)
    feed(g, B, Ack(GROUP, V1, [2, 0], 0, False, 0, [0, 0]), now=0.4)
    assert host.of(ev.Flushed) == [ev.Flushed(GROUP, 7)]
    g.flush(8, 2, 0.5)  # nothing unstable left: at once
    assert host.of(ev.Flushed)[-1] == ev.Flushed(GROUP, 8)


def test_the_sequencer_numbers_total_units_and_others_deliver_them_only_once_numbered() -> None:
    """1991 §3.2, design §4 (vs): the oldest member numbers a total unit when it is causally
    deliverable there and announces the number (``NUM``); another member holds a total unit until
    it knows its number, whatever arrived first."""
    members = (A, B, C)
    (b1,) = stamp(V1, members, B, 1, order=TOTAL)
    a, ha = engine(A)
    c, hc = engine(C)
    install(a, V1, members)
    install(c, V1, members)
    feed_raw(a, B, b1, now=0.1)
    assert kinds(ha.events) == [f"deliver {B}:1 in {V1}"]
    assert ha.sent(Num, to=C) == [Num(GROUP, V1, 1, [f"{B}:1"])]
    feed_raw(c, B, b1, now=0.1)
    assert not hc.events  # no number yet
    (num,) = ha.sent(Num, to=C)
    feed(c, A, num, now=0.2)
    assert kinds(hc.events) == [f"deliver {B}:1 in {V1}"]


def test_a_frame_is_handled_before_the_engine_makes_progress() -> None:
    """design §11: while the node handles a frame (``host.batching``), an engine defers its progress
    (deliveries, acknowledgements) to the end of the frame instead of running it per message."""
    g, host = engine(C)
    install(g, V1, (A, B, C))
    host.batching = True
    for raw in stamp(V1, (A, B, C), A, 3):
        feed_raw(g, A, raw, now=0.1)
    assert not host.events and not host.out and g in host.deferred
    host.batching = False
    host.run_deferred()
    assert [e.msgs for e in host.of(ev.Delivered)] == [[f"{A}:1"], [f"{A}:2"], [f"{A}:3"]]
    assert len(host.sent(Ack, to=A)) == 1


def test_an_acknowledgement_saying_it_still_waits_is_answered_at_once() -> None:
    """design §2 Acknowledgement: an acknowledgement whose sender still waits for stability is
    answered with ours at once (the last may have been lost), at most once per ``ack_refresh``."""
    g, host = engine(A)
    install(g, V1, (A, B))
    feed(g, B, Ack(GROUP, V1, [0, 0], 0, True, 0, [0, 0]), now=1.0)
    assert host.sent(Ack, to=B) == [Ack(GROUP, V1, [0, 0], 0, False, 0, [0, 0])]
    host.take()
    feed(g, B, Ack(GROUP, V1, [0, 0], 0, True, 0, [0, 0]), now=1.0 + g.cfg.ack_refresh / 2)
    feed(g, B, Ack(GROUP, V1, [0, 0], 0, False, 0, [0, 0]), now=1.0 + g.cfg.ack_refresh)
    assert not host.sent(Ack)
    feed(g, B, Ack(GROUP, V1, [0, 0], 0, True, 0, [0, 0]), now=1.0 + g.cfg.ack_refresh + 0.01)
    assert host.recipients(Ack) == [B]


# -- the vs view change (viewchange.py, docs/design.md §5) ------------------------------------------


def test_the_oldest_unsuspected_member_proposes_when_a_member_is_suspected() -> None:
    """design §5 step 1: a member proposes only if it suspects every member older than itself; the
    oldest unsuspected member sends ``PREPARE`` to the members when one is suspected."""
    a, ha = engine(A)
    b, hb = engine(B)
    for g in (a, b):
        install(g, V1, (A, B, C))
    a.tick(0.1)
    b.tick(0.1)
    assert not ha.sent(Prepare) and not hb.sent(Prepare)  # nobody suspected: no change
    ha.suspected.add(C)
    hb.suspected.add(C)
    a.tick(0.2)
    b.tick(0.2)
    assert not hb.sent(Prepare)  # its elder a is alive: a coordinates
    assert sorted(ha.recipients(Prepare)) == [A, B, C]
    assert ha.sent(Prepare, to=B) == [Prepare(GROUP, V1, (1, A), [])]
    hb.suspected.add(A)
    b.tick(0.3)
    assert sorted(hb.recipients(Prepare)) == [A, B, C]
    assert hb.sent(Prepare)[0].ballot == (1, B)


def test_a_member_promises_a_higher_ballot_and_rejects_a_lower_one() -> None:
    """design §5 step 2 (Paxos 1b): a member promises a ballot at least as high as any it promised,
    with its report; a lower ballot gets ``REJECT`` naming the promised one; non-members are ignored."""
    g, host = engine(B)
    install(g, V1, (A, B, C))
    feed(g, A, Prepare(GROUP, V1, (2, A), []), now=1.0)
    (promise,) = host.sent(Promise, to=A)
    assert (promise.view, promise.ballot, promise.at, promise.members, promise.accepted) == (
        V1, (2, A), V1, [A, B, C], None)
    assert promise.report.delivered == [0, 0, 0]
    feed(g, C, Prepare(GROUP, V1, (1, C), []))
    assert host.sent(Reject, to=C) == [Reject(GROUP, V1, (2, A))]
    assert not host.sent(Promise, to=C)
    feed(g, C, Prepare(GROUP, V1, (3, C), []))
    assert [p.ballot for p in host.sent(Promise, to=C)] == [(3, C)]
    feed(g, D, Prepare(GROUP, V1, (9, D), []))
    assert not [o for o in host.out if o.pid == D]
    assert g.change.promised == (3, C)


def test_the_proposer_decides_only_with_a_quorum_of_promises() -> None:
    """design §5 step 3, ``is_quorum``: with every member promised or suspected, a proposer holding
    exactly half of the view without its oldest member stays blocked; with a majority it sends
    ``ACCEPT``, and acceptance by a quorum decides: the survivors install the same new view."""
    net = Net()
    net.view(V1, (A, B, C, D))
    b, c = net.engines[B], net.engines[C]
    host_of(b).suspected |= {A, C}
    net.cut = {A, C}
    net.tick(0.1)
    assert b.change.proposal is not None and set(b.change.proposal.promises) == {B, D}
    assert b.change.proposal.phase == 1 and not host_of(b).sent(Accept)
    net.tick(0.2)
    assert b.view_id == V1 and b.change.proposal.phase == 1  # stays blocked: {b, d} is no quorum
    assert not net.sent(B, Accept)
    net.cut = {A}  # c is heard again (though still suspected): its promise makes a majority
    net.tick(0.5)  # b repeats its prepare to those that have not promised
    assert [(e.view, e.members) for e in host_of(b).of(ev.ViewInstalled)] == [(f"2.1.{B}", (B, C, D))]
    for pid in (C, D):
        assert [e.view for e in host_of(net.engines[pid]).of(ev.ViewInstalled)] == [f"2.1.{B}"]
    assert c.view_id == f"2.1.{B}"


def test_a_value_accepted_by_a_promiser_is_proposed_again_unchanged() -> None:
    """design §5 step 3 (Paxos 1b, ``choose_value``): if a promise carries an accepted value, the
    proposer proposes that value again unchanged (same id and members, same F), under its own
    higher ballot, instead of building one."""
    net = Net()
    net.view(V1, (A, B, C))
    c = net.engines[C]
    earlier = view_value("2.1.a#1", (A, B, C), prev=V1)  # b would build 2.1.b#1 of (b, c)
    feed(c, A, Accept(GROUP, V1, (1, A), earlier), now=0.05)  # a accepted it too, then died
    assert host_of(c).sent(Accepted, to=A) == [Accepted(GROUP, V1, (1, A))]
    net.cut = {A}
    host_of(net.engines[B]).suspected.add(A)
    host_of(c).suspected.add(A)
    net.tick(0.1)
    b = net.engines[B]
    assert not b.change.proposal  # decided and committed
    installs = [e for g in (b, c) for e in host_of(g).of(ev.ViewInstalled)]
    assert [(e.view, e.members) for e in installs] == [("2.1.a#1", (A, B, C))] * 2
    assert {a.ballot for a in net.sent(B, Accept)} == {(1, B)}


def test_a_commit_delivers_the_undelivered_part_of_F_in_F_order_then_installs() -> None:
    """1987a §2, design §5 step 5: on ``COMMIT`` a member delivers the messages of F it has not
    delivered yet, in F's order (not its own), then installs the new view and confirms it."""
    g, host = engine(C)
    install(g, V1, (A, B, C))
    a1, a2 = stamp(V1, (A, B, C), A, 2)
    (b1,) = stamp(V1, (A, B, C), B, 1)
    feed_raw(g, A, a1, now=0.1)
    assert kinds(host.events) == [f"deliver {A}:1 in {V1}"]
    host.events.clear()
    order = [f"{B}:1", f"{A}:1", f"{A}:2"]
    value = view_value(V2, (A, B, C), prev=V1, order=order,
                       msgs={f"{B}:1": b1, f"{A}:1": a1, f"{A}:2": a2})
    feed(g, A, Commit(GROUP, V1, value), now=0.2)
    assert kinds(host.events) == [f"deliver {B}:1 in {V1}", f"deliver {A}:2 in {V1}", f"regular {V2}"]
    assert host.sent(Installed, to=A) == [Installed(GROUP, V2)]
    assert g.view_id == V2 and g.stream is not None and g.stream.view == V2


@pytest.mark.parametrize(
    ("leaving", "voted", "final"),
    [(False, True, State.EXCLUDED), (True, True, State.LEFT), (True, False, State.EXCLUDED)],
    ids=["left-out", "leaver-voted", "leaver-not-voted"],
)
def test_a_member_left_out_of_a_committed_value_ends_excluded_unless_it_left_and_voted(
        leaving: bool, voted: bool, final: State) -> None:
    """design §5 step 5 and Leaves: a member that the committed view leaves out ends EXCLUDED
    (fail-stop), unless it asked to leave and voted: then it delivers F and ends LEFT."""
    g, host = engine(C)
    install(g, V1, (A, B, C))
    if leaving:
        g.leave(0.1)
    (b1,) = stamp(V1, (A, B, C), B, 1)
    value = view_value(V2, (A, B), prev=V1, voters=[A, B, C] if voted else [A, B], order=[f"{B}:1"],
                       msgs={f"{B}:1": b1})
    feed(g, A, Commit(GROUP, V1, value), now=0.2)
    assert g.state is final and host.finished == [g]
    if final is State.LEFT:
        assert kinds(host.events) == [f"deliver {B}:1 in {V1}", "Left"]
    else:
        assert kinds(host.events) == ["Excluded"]
    assert not host.sent(Installed)


def test_a_leaver_told_that_its_view_went_on_without_it_ends_excluded() -> None:
    """design §5 Leaves and Coordinator failure: a leaver the group went on without ends as
    excluded; a member holding no value for the asker's view answers ``EXCLUDED``, so that notice
    must end a leaver too (nothing else will: its prepares and heartbeats get the same answer)."""
    g, host = engine(C)
    install(g, V1, (A, B, C))
    g.leave(1.0)
    feed(g, A, Excluded(GROUP, V1), now=2.0)
    for t in (2.5, 5.0, 10.0):
        g.tick(t)
    assert g.state is State.EXCLUDED and host.finished == [g]


def test_a_stale_member_is_told_the_decided_commit_or_that_it_was_excluded() -> None:
    """design §5 Coordinator failure, ``_answer_stale``: a member that installed V' answers a
    heartbeat or a prepare naming an older view with that view's decided ``COMMIT`` (heartbeats at
    most once per 2 × ``retry_interval``), or, holding no value for it, tells a process outside its
    view ``EXCLUDED``; a heartbeat naming its current view gets no answer."""
    g, host = engine(A)
    install(g, V1, (A, B, C))
    successor = view_value(V2, (A, B), prev=V1)
    feed(g, B, Commit(GROUP, V1, successor), now=1.0)
    assert g.view_id == V2
    host.take()
    g.on_heartbeat_view(C, V1, 1.1)
    assert host.sent(Commit, to=C) == [Commit(GROUP, V1, successor)]
    host.take()
    g.on_heartbeat_view(C, V1, 1.1 + g.cfg.retry_interval)
    assert not host.out  # told recently
    feed(g, C, Prepare(GROUP, V1, (5, C), []), now=1.2)  # a prepare is always answered
    assert host.sent(Commit, to=C) == [Commit(GROUP, V1, successor)]
    assert not host.sent(Promise)
    host.take()
    g.on_heartbeat_view(D, "0.0.d#1", 1.3)
    assert host.sent(Excluded, to=D) == [Excluded(GROUP, "0.0.d#1")]
    host.take()
    g.on_heartbeat_view(B, V2, 1.4)
    g.on_heartbeat_view(J, "7.0.j#1", 1.4)  # a newer view is no stale one
    assert not host.out


def test_a_stale_member_given_the_commit_that_left_it_out_ends_excluded() -> None:
    """design §5 (members left behind) and §9: two engines wired together: a member that missed the
    change hears the current view in a heartbeat exchange, gets the decided commit, and ends
    EXCLUDED; one told ``EXCLUDED`` for its view ends so too."""
    a, ha = engine(A)
    c, hc = engine(C)
    install(a, V1, (A, B, C))
    install(c, V1, (A, B, C))
    feed(a, B, Commit(GROUP, V1, view_value(V2, (A, B), prev=V1)), now=1.0)
    ha.take()
    a.on_heartbeat_view(C, V1, 1.1)
    for o in ha.take():
        if o.pid == C:
            c.on_message(A, o.msg, o.raw, 1.1)
    assert c.state is State.EXCLUDED and hc.of(ev.Excluded)
    d, hd = engine(D)
    install(d, V1, (A, B, D))
    feed(d, A, Excluded(GROUP, V1), now=1.2)
    assert d.state is State.EXCLUDED and hd.finished == [d]


def test_a_join_is_acknowledged_forwarded_to_the_coordinator_and_admitted() -> None:
    """design §7 Joining: a member answers a ``JOIN`` with ``JOINACK`` and forwards it to its
    coordinator, which admits the joiner after the old members; the oldest old member sends the
    state (``NeedState``) and the joiner holds everything until it has the state."""
    net = Net()
    net.view(V1, (A, B))
    j = net.add(J, seeds=[DIRECTORY[B]])
    b = net.engines[B]
    net.cut = {A}
    net.tick(0.1)
    assert J in b.change.joins and j.heard
    assert net.sent(B, JoinAck, to=J) == [JoinAck(GROUP)]
    assert net.sent(B, Join, to=A) == [Join(GROUP, J, DIRECTORY[J])]  # forwarded (lost: a is cut)
    assert b.change.proposal is None and not net.sent(B, Prepare)  # b is no coordinator
    net.cut = set()
    net.tick(0.4)  # j asks again after retry_interval; b forwards the request to a
    a = net.engines[A]
    assert J in a.change.joins and a.view_id == V1
    net.tick(0.45)  # a proposes, and the view change runs to its end
    admitted = f"2.1.{A}"
    assert (a.view_id, a.members) == (admitted, (A, B, J))
    assert kinds(host_of(a).events) == [f"blocked {V1}", f"regular {admitted}", "NeedState"]
    assert kinds(host_of(j).events) == [f"regular {admitted}"] and j.transfer.sender == A
    a.provide_state(admitted, b"state")
    net.run(0.46)
    assert host_of(j).of(ev.StateReady) == [ev.StateReady(GROUP, admitted, b"state")]
    assert not j.status().awaiting_state


def test_a_join_from_an_admitted_member_gets_the_commit_that_admitted_it() -> None:
    """design §7 Joining: if the commit that admitted a joiner was lost, its repeated ``JOIN`` brings
    back that commit (sent to the address it asked from)."""
    a, ha = engine(A)
    install(a, V1, (A, B))
    admitting = view_value(V2, (A, B, J), prev=V1, state_from=A, joiners=[J])
    feed(a, B, Commit(GROUP, V1, admitting), now=1.0)
    ha.take()
    feed(a, J, Join(GROUP, J, DIRECTORY[J]), now=1.1)
    assert ha.sent(Commit, to=J) == [Commit(GROUP, V1, admitting)]
    assert not ha.sent(JoinAck)
    ha.take()
    feed(a, B, Join(GROUP, J, DIRECTORY[J]), now=1.2)  # relayed by someone else: not answered
    assert not ha.out


def test_a_join_from_a_member_admitted_by_an_older_view_gets_no_stale_commit() -> None:
    """design §7 Joining and §5 (two successors of a view are never installed): only the commit of
    the current view may bring back a member that missed it; the commit of a view the group has
    already left would make the joiner install a view that is over (and wait for a state nobody
    holds any more)."""
    a, ha = engine(A)
    install(a, V1, (A, B))
    feed(a, B, Commit(GROUP, V1, view_value(V2, (A, B, J), prev=V1, state_from=A, joiners=[J])), now=1.0)
    feed(a, B, Commit(GROUP, V2, view_value(V3, (A, B, J), prev=V2)), now=1.5)
    assert a.view_id == V3
    ha.take()
    feed(a, J, Join(GROUP, J, DIRECTORY[J]), now=2.0)
    assert all(c.value.id == a.view_id for c in ha.sent(Commit))


# -- evs (evs.py, docs/design.md §6) -------------------------------------------------------------------


def test_evs_a_prepare_whose_targets_include_us_is_promised() -> None:
    """design §6.1: in evs every target must promise, and only targets do: a prepare naming us is
    promised (whoever sends it, even from another configuration); one that does not is ignored."""
    g, host = engine(B, model="evs")
    install(g, V1, (A, B, C))
    feed(g, C, Prepare(GROUP, V1, (1, C), [A, C]), now=0.1)
    assert not host.out
    feed(g, D, Prepare(GROUP, "1.0.d#1", (1, D), [B, D]), now=0.1)
    (promise,) = host.sent(Promise, to=D)
    assert (promise.ballot, promise.at, promise.members) == ((1, D), V1, [A, B, C])


@pytest.mark.parametrize("split", [0, 1, 3])
def test_evs_a_commit_delivers_up_to_the_split_then_the_transitional_configuration_then_the_new_one(
        split: int) -> None:
    """1994 §3 step 6, design §6.2: a commit delivers ``order[:split]`` in the old configuration C,
    announces the transitional configuration ``new~C`` (kind="transitional", members T_C,
    non-primary), delivers the rest of F_C in it, and installs the new regular configuration with
    the transitional one as its previous."""
    g, host = engine(B, model="evs")
    install(g, V1, (A, B, C))
    a1, a2 = stamp(V1, (A, B, C), A, 2, order=TOTAL, evs=True)
    (c1,) = stamp(V1, (A, B, C), C, 1, evs=True)
    order = [f"{A}:1", f"{C}:1", f"{A}:2"]
    part = Part([B, C], order, {f"{A}:1": a1, f"{A}:2": a2, f"{C}:1": c1}, split)
    new = "2.4.b#1"
    value = view_value(new, (B, C), voters=[B, C], primary=False, parts={V1: part})
    feed(g, C, Commit(GROUP, None, value), now=0.5)
    transitional = f"{new}~{V1}"
    delivered = [f"deliver {mid} in {V1 if i < split else transitional}" for i, mid in enumerate(order)]
    assert kinds(host.events) == [*delivered[:split], f"transitional {transitional}", *delivered[split:],
                                  f"regular {new}"]
    trans, regular = host.of(ev.ViewInstalled)
    assert (trans.members, trans.prev, trans.primary) == ((B, C), V1, False)
    assert (regular.members, regular.prev, regular.kind) == ((B, C), transitional, "regular")
    assert host.sent(Installed, to=C) == [Installed(GROUP, new)]


def test_evs_a_foreign_process_becomes_a_target_and_the_least_target_proposes() -> None:
    """design §6.3 and §6.1: a process heard (in a heartbeat) in another configuration becomes a
    target; a member that is not the coordinator tells its coordinator where it is (``MERGE``); the
    least target proposes, with a prepare naming every target."""
    b, hb = engine(B, model="evs")
    c, hc = engine(C, model="evs")
    a, ha = engine(A, model="evs")
    theirs, mine = "1.0.b#1", "1.0.a#1"
    for g in (b, c):
        install(g, theirs, (B, C))
    install(a, mine, (A,))
    for g in (a, b, c):
        host_of(g).now = 0.1
    c.on_heartbeat_view(A, mine, 0.1)
    assert hc.sent(MergeHint, to=B) == [MergeHint(GROUP, A, DIRECTORY[A])]
    b.on_heartbeat_view(A, mine, 0.1)
    assert b.change.coordinator() == A
    b.tick(0.1)
    assert not hb.sent(Prepare)  # a is the least target: a proposes
    a.on_heartbeat_view(B, theirs, 0.1)
    a.on_heartbeat_view(C, theirs, 0.1)
    a.tick(0.1)
    assert sorted(ha.recipients(Prepare)) == [A, B, C]
    assert all(p.targets == [A, B, C] and p.ballot == (1, A) for p in ha.sent(Prepare))


def merged_components() -> tuple[Net, str, str]:
    """{b, c} in configuration 1.0.b#1 and {a} in 1.0.a#1 hear of each other and merge."""
    net = Net(model="evs")
    theirs, mine = "1.0.b#1", "1.0.a#1"
    net.view(theirs, (B, C))
    net.view(mine, (A,))
    net.set_time(0.1)
    for pid in (B, C):
        net.engines[pid].on_heartbeat_view(A, mine, 0.1)
        net.engines[A].on_heartbeat_view(pid, theirs, 0.1)
    net.tick(0.1)
    return net, theirs, mine


def test_evs_a_primary_value_is_an_attempt_until_installed_then_the_last_primary() -> None:
    """design §6.5: a member records a primary value it accepts as an attempt (output before its
    acceptance leaves, for stable storage), and installing it makes it the last primary and settles
    the attempts; its promises report that history."""
    net, theirs, mine = merged_components()
    g = net.engines[B]
    merged = Primary(f"2.1.{A}", [A, B, C])
    assert g.primary and g.view_id == merged.id
    histories = [e.history for e in host_of(g).events if isinstance(e, ev.PrimaryHistory)]
    assert [(h.last, h.attempts) for h in histories[-2:]] == [
        (Primary(theirs, [B, C]), [merged]), (merged, [])]
    assert g.change.history() == histories[-1]
    assert net.sent(B, Promise)[-1].history == History(Primary(theirs, [B, C]), [])


def test_evs_two_configurations_merge_through_a_transitional_configuration_each() -> None:
    """1994 §2–3, design §6.2–6.3: two components that hear each other merge into one configuration
    whose epoch exceeds both; each side passes through its own transitional configuration."""
    net, theirs, mine = merged_components()
    merged = f"2.1.{A}"
    for pid, came in ((A, mine), (B, theirs), (C, theirs)):
        g = net.engines[pid]
        assert (g.view_id, g.members) == (merged, (A, B, C))
        assert kinds(host_of(g).events) == [f"blocked {came}", f"transitional {merged}~{came}",
                                            f"regular {merged}"]


def test_evs_a_member_whose_complete_heartbeat_does_not_name_the_group_is_not_waited_for() -> None:
    """design §6.1 (every target must promise, or drop out as gone): a member of our configuration
    whose complete heartbeat names every group of its sender but not this one has left it unseen
    (paused, cut off): it is absent, drops out of the targets, and the next configuration forms
    without it; naming the group again brings it back. Non-members and ourselves are ignored."""
    net = Net(model="evs")
    net.view(V1, (A, B, C))
    a = net.engines[A]
    a.change.on_groups_named(C, False)
    assert a.change.absent == {C}
    a.change.on_groups_named(C, True)
    a.change.on_groups_named(D, False)
    a.change.on_groups_named(A, False)
    assert not a.change.absent
    net.cut = {C}  # c is silent here, but not suspected (yet)
    net.tick(0.1)
    assert a.view_id == V1 and a.change.proposal is None  # nothing changed: nobody is gone
    for pid in (A, B):
        net.engines[pid].change.on_groups_named(C, False)
    net.tick(0.2)
    new = f"2.1.{A}"
    for pid in (A, B):
        g = net.engines[pid]
        assert (g.view_id, g.members) == (new, (A, B))
        assert kinds(host_of(g).events) == [f"blocked {V1}", f"transitional {new}~{V1}", f"regular {new}"]


# -- state transfer (transfer.py, docs/design.md §7) --------------------------------------------------


def test_the_state_sender_asks_for_the_state_between_the_old_views_deliveries_and_the_new_ones() -> None:
    """1987a §3.2, design §7 and §11: the state sender emits ``NeedState`` after every delivery of
    the old view (F) and right after ``ViewInstalled``, before any delivery of the new view — even
    of a message of the new view that arrived before the commit."""
    g, host = engine(A)
    install(g, V1, (A, B))
    (b1,) = stamp(V1, (A, B), B, 1)
    (early,) = stamp(V2, (A, B, J), B, 1, first=2)
    feed_raw(g, B, early, now=0.1)  # of the next view: kept until it is installed
    assert not host.events
    value = view_value(V2, (A, B, J), prev=V1, state_from=A, joiners=[J], order=[f"{B}:1"],
                       msgs={f"{B}:1": b1})
    feed(g, B, Commit(GROUP, V1, value), now=0.2)
    assert kinds(host.events) == [f"deliver {B}:1 in {V1}", f"regular {V2}", "NeedState",
                                  f"deliver {B}:2 in {V2}"]
    assert host.of(ev.NeedState) == [ev.NeedState(GROUP, V2)]
    assert not host.of(ev.ViewInstalled)[0].state_pending  # the sender holds the state


def test_the_state_goes_in_chunks_of_state_chunk_and_is_resent_on_request_until_done() -> None:
    """design §7: the state travels to each joiner in ``state_chunk``-byte chunks; a ``STATEREQ``
    gets the missing chunks again (only for a joiner of that view); ``STATEDONE`` releases them.
    An empty state is one empty chunk (or the joiner would wait forever)."""
    g, host = engine(A, cfg=Config(state_chunk=4))
    install(g, V1, (A, B))
    feed(g, B, Commit(GROUP, V1, view_value(V2, (A, B, J), prev=V1, state_from=A, joiners=[J])), now=0.2)
    host.take()
    g.provide_state(V2, b"0123456789")
    assert host.recipients(StateChunk) == [J] * 3
    assert host.sent(StateChunk) == [StateChunk(GROUP, V2, 0, 3, b"0123"),
                                     StateChunk(GROUP, V2, 1, 3, b"4567"), StateChunk(GROUP, V2, 2, 3, b"89")]
    host.take()
    feed(g, J, StateRequest(GROUP, V2, [1, 5]), now=0.3)
    assert host.sent(StateChunk, to=J) == [StateChunk(GROUP, V2, 1, 3, b"4567")]
    host.take()
    feed(g, B, StateRequest(GROUP, V2, [0]), now=0.3)  # not a joiner of V2
    assert not host.out
    feed(g, J, StateDone(GROUP, V2), now=0.4)
    feed(g, J, StateRequest(GROUP, V2, [0]), now=0.5)
    assert not host.out and V2 not in g.transfer.out
    g.provide_state(V2, b"")  # even an empty state is sent, as one empty chunk
    assert host.sent(StateChunk, to=J) == [StateChunk(GROUP, V2, 0, 1, b"")]


def test_a_joiner_asks_again_for_missing_chunks_after_four_retry_intervals() -> None:
    """design §7: a joiner that received no chunk for 4 × ``retry_interval`` asks its state sender
    again (``STATEREQ``) for the chunks it lacks, and not for those it holds."""
    g, host = engine(J, seeds=[DIRECTORY[A]])
    feed(g, A, Commit(GROUP, V1, view_value(V2, (A, B, J), prev=V1, state_from=A, joiners=[J])), now=1.0)
    feed(g, A, StateChunk(GROUP, V2, 0, 3, b"abc"), now=1.5)
    wait = 4 * g.cfg.retry_interval
    host.take()
    g.tick(1.5 + wait - 0.01)
    assert not host.sent(StateRequest)
    g.tick(1.5 + wait)
    (request,) = host.sent(StateRequest, to=A)
    assert request.view == V2 and 1 in request.missing and 0 not in request.missing
    host.take()
    g.tick(1.5 + wait + 0.1)
    assert not host.sent(StateRequest)  # not again at once


@pytest.mark.parametrize("sender_stays", [False, True], ids=["sender-gone", "sender-stays"])
def test_a_joiner_whose_state_sender_is_not_in_the_next_view_ends_excluded(sender_stays: bool) -> None:
    """design §7 (vs): a joiner still waiting for its state abandons its incarnation (EXCLUDED) if a
    view change drops its state sender; if the sender stays, it keeps waiting."""
    g, host = engine(J, seeds=[DIRECTORY[A]])
    feed(g, A, Commit(GROUP, V1, view_value(V2, (A, B, J), prev=V1, state_from=A, joiners=[J])), now=1.0)
    assert g.transfer.awaiting == V2
    nxt = (A, B, J) if sender_stays else (B, J)
    feed(g, B, Commit(GROUP, V2, view_value(V3, nxt, prev=V2)), now=1.2)
    if sender_stays:
        assert g.state is State.MEMBER and g.view_id == V3 and g.transfer.awaiting == V2
        assert not host.of(ev.Excluded)
    else:
        assert g.state is State.EXCLUDED and host.finished == [g]
        assert [type(e) for e in host.events] == [ev.ViewInstalled, ev.Excluded]


def test_a_state_sender_that_leaves_first_completes_its_pending_state_transfers() -> None:
    """Issue 10 B5, design §7: the only holder of the state that leaves while a joiner waits for it
    asks to leave only once the joiner confirmed the state (``STATEDONE``), so the joiner never ends
    up with no group; meanwhile it reminds the joiner with the last chunk, which also draws a
    confirmation that was lost."""
    g, host = engine(A, cfg=Config(state_chunk=4))
    install(g, V1, (A,))
    feed(g, A, Commit(GROUP, V1, view_value(V2, (A, J), prev=V1, state_from=A, joiners=[J])), now=0.2)
    g.provide_state(V2, b"0123456789")
    host.take()
    host.now = 0.3
    g.leave(host.now)
    assert g.status().state == "leaving" and not host.sent(Leave) and A not in g.change.leaves
    assert host.sent(StateChunk, to=J) == [StateChunk(GROUP, V2, 2, 3, b"89")]  # a reminder
    host.take()
    host.now += g.cfg.retry_interval
    g.tick(host.now)
    assert host.sent(StateChunk, to=J) == [StateChunk(GROUP, V2, 2, 3, b"89")] and not host.sent(Leave)
    host.take()
    feed(g, J, StateDone(GROUP, V2), now=host.now + 0.01)
    host.now += g.cfg.retry_interval
    g.tick(host.now)
    assert host.sent(Leave, to=J) == [Leave(GROUP, A)] and A in g.change.leaves


def test_a_joiner_confirms_again_a_state_it_already_received() -> None:
    """design §7: a chunk sent to a member that already holds the group state — its ``STATEDONE`` was
    lost, or a value named it a joiner in a configuration it never installed — is confirmed, so that
    the sender (perhaps a leaver waiting for it) does not wait; the chunk changes nothing."""
    g, host = engine(J, seeds=[DIRECTORY[A]])
    feed(g, A, Commit(GROUP, V1, view_value(V2, (A, J), prev=V1, state_from=A, joiners=[J])), now=1.0)
    feed(g, A, StateChunk(GROUP, V2, 0, 1, b"s"), now=1.1)
    assert host.of(ev.StateReady) == [ev.StateReady(GROUP, V2, b"s")]
    host.take()
    feed(g, A, StateChunk(GROUP, V2, 0, 1, b"s"), now=1.2)
    assert host.sent(StateDone, to=A) == [StateDone(GROUP, V2)]
    assert host.of(ev.StateReady) == [ev.StateReady(GROUP, V2, b"s")]
