"""Unit tests of ``core.flush.final_set``: the messages of a view its survivors deliver before the
next view, and their order (docs/design.md §5.1, §6.2; 1994 §3 step 6, 1987b §4.5).

Reports are the real ``ViewStream.report()`` of streams driven by hand (or through a random
network in the randomised tests), so the inputs are those a view change would see.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from vsgroups.core.flush import final_set
from vsgroups.core.stream import ViewStream
from vsgroups.core.wire import CAUSAL, FIFO, SAFE, TOTAL, Msg

GROUP = "g"
VIEW = "1.1.p0#1"
FAST = settings(max_examples=150, deadline=None, derandomize=True, database=None)


class Net:
    """``n`` streams of one view wired by hand (the same harness as test_unit_stream)."""

    def __init__(self, n: int, evs: bool = False) -> None:
        self.n = n
        self.members = tuple(f"p{i}#1" for i in range(n))
        self.st = [ViewStream(GROUP, VIEW, self.members, pid, evs=evs) for pid in self.members]
        self.log: list[list[str]] = [[] for _ in range(n)]
        self.casts = [0] * n
        self.notices: list[tuple[int, list[str]]] = []
        self.sent: dict[str, Msg] = {}

    def cast(self, i: int, order: int = CAUSAL) -> Msg:
        self.casts[i] += 1
        mid = f"{self.members[i]}:{self.casts[i]}"
        msg = self.sent[mid] = self.st[i].stamp([mid], order, [mid.encode()])
        return msg

    def give(self, j: int, *msgs: Msg) -> None:
        for m in msgs:
            self.st[j].receive(Msg.decode(m.raw))

    def step(self, j: int) -> list[str]:
        s = self.st[j]
        s.refresh_stable()
        numbered: list[str] = []
        mids = [m.mid for m in s.deliverable(numbered)]
        if numbered:
            self.notices.append((s.known - len(numbered) + 1, numbered))
        self.log[j] += mids
        return mids

    def learn(self, j: int, *notices: tuple[int, list[str]]) -> None:
        for first, mids in notices or self.notices:
            self.st[j].learn_numbers(first, mids)

    def final(self, reporters: list[int], evs: bool = False) -> tuple[list[str], dict[str, bytes], int]:
        return final_set(list(self.members), [self.st[j].report() for j in reporters], evs=evs)


# -- the set -----------------------------------------------------------------------------------------


def test_final_set_runs_from_the_lowest_delivered_to_the_longest_prefix_held() -> None:
    """design §5.1: per sender, F runs from what every reporter delivered (excluded) up to the
    longest contiguous prefix held, pieced together from several reports; it carries the bytes."""
    net = Net(3)
    a, b, c = net.cast(0), net.cast(0), net.cast(0)
    net.give(1, a, b)
    net.give(2, a, c)  # c out of order: p2 lacks b
    net.step(1)
    net.step(2)
    assert net.log[1] == [a.mid, b.mid] and net.log[2] == [a.mid]
    order, msgs, delivered = net.final([1, 2])
    assert order == [b.mid, c.mid] and delivered == 1
    assert msgs == {b.mid: b.raw, c.mid: c.raw}
    assert net.final([2])[0] == []  # alone, p2 cannot fill its hole: c is not in F


def test_final_set_keeps_every_reporters_own_messages() -> None:
    """1994 spec 3 and §3.2 (self-delivery), design §5.1: the final set keeps every reporter's own
    messages, with the causal past the reporter delivered before sending them, even if nobody else
    got them."""
    net = Net(4)
    a = net.cast(0)
    net.give(2, a)
    net.step(2)
    m1, m2 = net.cast(2), net.cast(2, FIFO)  # depend on a, which p1 and p3 never got
    net.step(2)
    order, msgs, delivered = net.final([1, 2, 3])
    assert order == [a.mid, m1.mid, m2.mid] and set(msgs) == set(order) and delivered == 3


def test_final_set_cuts_a_message_whose_causal_predecessor_no_reporter_holds() -> None:
    """1994 §3 step 6a and §3.1, design §5.1: a message whose causal predecessor no reporter holds
    is cut, with everything that follows it in its sender's stream or depends on it; the rest stays."""
    net = Net(5)
    a = net.cast(0)
    net.give(1, a)
    net.step(1)
    b1, b2 = net.cast(1), net.cast(1, FIFO)
    net.give(2, a, b1)
    net.step(2)
    c = net.cast(2)  # depends on a and b1
    d = net.cast(3)  # concurrent: stays
    net.step(3)
    net.give(3, b1, b2, c)  # p3 holds b1, b2, c but not a
    net.give(4, c, d)
    order, msgs, delivered = net.final([3, 4])  # p0, p1, p2 are gone
    assert order == [d.mid] and set(msgs) == {d.mid} and delivered == 1


def test_final_set_keeps_a_message_whose_predecessor_some_reporter_holds() -> None:
    """1994 §3 step 6a, design §5.1: the cut only removes what depends on a message that no reporter holds."""
    net = Net(4)
    a = net.cast(0)
    net.give(1, a)
    net.step(1)
    b = net.cast(1)
    net.give(2, b)
    net.give(3, a)  # p3 holds a (and delivers it); p2 holds b without a
    net.step(3)
    order, _, delivered = net.final([2, 3])
    assert order == [a.mid, b.mid] and delivered == 1


# -- the order ---------------------------------------------------------------------------------------


def test_final_order_follows_the_numbers_where_causality_leaves_a_choice() -> None:
    """design §5.1, 1987b §3.2: F's order is a topological order of causality *and* the known
    numbers: a numbered message waiting for its causal predecessor still precedes a higher number."""
    net = Net(4)
    c = net.cast(3)
    t2 = net.cast(3, TOTAL)  # after c in p3's stream
    t1 = net.cast(1, TOTAL)
    net.give(0, c, t2)
    net.step(0)
    net.give(0, t1)
    net.step(0)  # the sequencer has numbered t2 (1) then t1 (2); it and p3 die
    assert net.notices == [(1, [t2.mid]), (2, [t1.mid])]
    net.give(2, c, t2, t1)  # p2 received them after promising: it delivers nothing more (design §5 step 2)
    net.learn(2)
    net.learn(1)
    order, _, delivered = net.final([1, 2])
    assert order == [c.mid, t2.mid, t1.mid] and delivered == 0


def test_final_order_puts_unnumbered_total_messages_after_every_numbered_one() -> None:
    """design §5.1: total messages nobody knows a number for come after every numbered one (a
    member may have delivered the numbered ones while these waited for a number)."""
    net = Net(4)
    c = net.cast(2)
    t2 = net.cast(2, TOTAL)
    t1 = net.cast(1, TOTAL)
    net.give(0, c, t2)
    net.step(0)  # numbers t2 only, then dies
    net.give(3, c, t2, t1)
    net.learn(3)
    order, _, _ = net.final([1, 2, 3])
    assert order == [c.mid, t2.mid, t1.mid]


def test_final_order_puts_what_some_reporter_delivered_first() -> None:
    """design §5.1: messages some reporter already delivered come first (a prefix, counted in
    the third result), even where the tie-break would put them later."""
    net = Net(4)
    x = net.cast(2)
    net.give(1, x)
    net.step(1)  # p1 delivers x
    y = net.cast(0)
    net.give(3, y)  # p3 holds y, not yet delivered by anyone but p0
    order, _, delivered = net.final([1, 3])
    assert order == [x.mid, y.mid] and delivered == 1


def test_final_order_stays_acyclic_when_a_reporter_missed_a_number() -> None:
    """design §4 and §5.1: a reporter that knows a number beyond a gap reports only the known
    prefix, so F's graph of causality and numbers stays acyclic."""
    net = Net(4)
    t1, t2 = net.cast(1, TOTAL), net.cast(1, TOTAL)
    net.give(0, t1)
    net.step(0)
    net.give(0, t2)
    net.step(0)
    assert net.notices == [(1, [t1.mid]), (2, [t2.mid])]
    net.give(2, t1, t2)
    net.learn(2, net.notices[1])  # p2 knows number 2 but not 1
    order, _, _ = net.final([2, 3])
    assert order == [t1.mid, t2.mid]


def test_evs_final_order_is_delivered_first_then_lamport_time_then_sender() -> None:
    """1994 §3 step 6, design §6.2: in evs mode F is ordered by (delivered by some reporter, Lamport
    time, sender position), the key total messages are delivered by in every component."""
    net = Net(4, evs=True)
    c1 = [net.cast(1) for _ in range(3)]  # times 1, 2, 3
    t1 = net.cast(1, TOTAL)  # time 4
    t0 = net.cast(0, TOTAL)  # time 1
    t3 = net.cast(3, TOTAL)  # time 1
    net.give(2, *c1)
    net.step(2)  # p2 delivers p1's causal messages
    net.give(2, t1, t0)
    order, msgs, delivered = net.final([2, 3], evs=True)
    assert order == [m.mid for m in (*c1, t0, t3, t1)] and delivered == 3
    assert set(msgs) == set(order)


# -- randomised: virtual synchrony of the flush ------------------------------------------------------


def groups(n: int) -> list[list[int]]:
    """Every nonempty set of members: the reporters (or a component) of a view change."""
    return [[j for j in range(n) if mask >> j & 1] for mask in range(1, 1 << n)]


@FAST
@given(st.randoms(use_true_random=False))
def test_survivors_end_the_view_having_delivered_exactly_f_in_one_order(rng: random.Random) -> None:
    """1987a §2, 1994 specs 3-6, design §5.1: after a random history, for every set of reporters,
    each can deliver the part of F it has not delivered, in F's order, as a fifo and causal
    continuation of what it delivered; all end with the same messages, total ones in the same order;
    every reporter's own messages are among them; F's order is a topological order of causality and
    known numbers, with what some reporter delivered as a prefix."""
    sim = Sim(rng, evs=False)
    sim.run()
    for reporters in groups(sim.net.n):
        finals = sim.check_final(reporters, evs=False)
        totals = [[mid for mid in f if sim.net.sent[mid].order >= TOTAL] for f in finals]
        assert all(set(f) == set(finals[0]) for f in finals) and all(t == totals[0] for t in totals)


@FAST
@given(st.randoms(use_true_random=False))
def test_evs_components_deliver_common_total_messages_in_the_same_order(rng: random.Random) -> None:
    """1994 specs 4-6 and §3 step 6, design §6.2: after a random history, whatever the components,
    each computes F from its own reporters; its members end with the same messages, a causal
    continuation of what each delivered; total messages delivered in two components are delivered in
    the same order in both."""
    sim = Sim(rng, evs=True)
    sim.run()
    ends = {}
    for component in groups(sim.net.n):
        finals = sim.check_final(component, evs=True)
        assert all(set(f) == set(finals[0]) for f in finals)
        ends[tuple(component)] = [[mid for mid in f if sim.net.sent[mid].order >= TOTAL] for f in finals]
    for a, ends_a in ends.items():
        for b, ends_b in ends.items():
            if not set(a) & set(b):
                for x in ends_a:
                    for y in ends_b:
                        common = set(x) & set(y)
                        assert [m for m in x if m in common] == [m for m in y if m in common]


class Sim:
    """A random history of a view: casts, frames arriving in any order, acknowledgements; then the
    view ends, and whatever is still in flight is lost."""

    def __init__(self, rng: random.Random, evs: bool) -> None:
        self.rng = rng
        self.net = Net(4, evs=evs)
        self.flight: list[tuple[str, int, Any]] = []

    def progress(self, j: int) -> None:
        before = len(self.net.notices)
        self.net.step(j)
        for notice in self.net.notices[before:]:
            self.flight += [("num", k, notice) for k in range(self.net.n) if k != j]

    def run(self) -> None:
        rng, net = self.rng, self.net
        for _ in range(rng.randint(0, 40)):
            action = rng.randrange(10)
            if action < 3:
                i = rng.randrange(net.n)
                msg = net.cast(i, rng.choice([FIFO, CAUSAL, TOTAL, SAFE]))
                self.flight += [("data", k, msg) for k in range(net.n) if k != i]
                self.progress(i)
            elif action < 8 and self.flight:
                kind, j, item = self.flight.pop(rng.randrange(len(self.flight)))
                if kind == "data":
                    net.give(j, item)
                elif kind == "ack":
                    net.st[j].on_ack(*item)
                else:
                    net.st[j].learn_numbers(*item)
                self.progress(j)
            else:
                i = rng.randrange(net.n)
                s = net.st[i]
                s.refresh_acked()
                item = (net.members[i], list(s.acked), s.known, s.clock)
                self.flight += [("ack", k, item) for k in range(net.n) if k != i]

    def check_final(self, reporters: list[int], evs: bool) -> list[list[str]]:
        """Check F for these reporters; return each reporter's whole delivery sequence of the view."""
        net = self.net
        reports = [net.st[j].report() for j in reporters]
        order, msgs, delivered = final_set(list(net.members), reports, evs=evs)
        assert len(set(order)) == len(order) and set(msgs) == set(order)
        assert all(Msg.decode(msgs[mid]).mid == mid for mid in order)
        index = {pid: s for s, pid in enumerate(net.members)}
        somebody = {mid for j in reporters for mid in net.log[j]}
        assert [mid in somebody for mid in order] == [True] * delivered + [False] * (len(order) - delivered)
        position = {mid: p for p, mid in enumerate(order)}
        numbers: dict[str, int] = {}
        for report in reports:
            numbers.update(report.numbers)
        numbered = sorted((numbers[mid], mid) for mid in order if mid in numbers)
        if not evs:
            assert [mid for _, mid in numbered] == sorted((mid for _, mid in numbered), key=position.get)
        for mid in order:  # causal: every predecessor in F comes earlier (here a unit's id ends in its seq)
            m = net.sent[mid]
            for j, v in enumerate(m.vt):
                pred = f"{net.members[j]}:{v - 1 if j == index[m.sender] else v}" if v else None
                if pred in position and pred != mid:
                    assert position[pred] < position[mid]
        finals = []
        for j in reporters:
            done = list(net.log[j])
            count = list(net.st[j].delivered)
            for mid in order:
                m = net.sent[mid]
                s = index[m.sender]
                if m.seq > count[s]:
                    assert m.seq == count[s] + 1, "no gap in a sender's stream"
                    assert all(v <= count[k] for k, v in enumerate(m.vt) if k != s), "causal"
                    count[s] = m.seq
                    done.append(mid)
            assert all(mid in done for mid in net.sent if mid.startswith(net.members[j] + ":")), (
                "self-delivery")
            finals.append(done)
        return finals
