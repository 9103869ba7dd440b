"""Unit tests of ``core.stream.ViewStream``, the sans-IO data path of one view (docs/design.md §2–4).

Several streams of one view exchange ``Msg`` objects by hand: a message is stamped on one stream and
handed to the others as fresh decodes of its bytes (as the wire would), acknowledgements are passed
with ``on_ack`` and the sequencer's order notices with ``learn_numbers``. The randomised tests drive
the same streams through arbitrary interleavings of one simulated network.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsgroups.core.stream import ALL_TO_ALL, ViewStream
from vsgroups.core.wire import CAUSAL, FIFO, SAFE, TOTAL, Msg

GROUP = "g"
VIEW = "1.1.p0#1"
FAST = settings(max_examples=100, deadline=None, derandomize=True, database=None)


def pids(n: int) -> tuple[str, ...]:
    return tuple(f"p{i}#1" for i in range(n))


class Net:
    """``n`` streams of one view wired by hand: nothing moves unless the test moves it."""

    def __init__(self, n: int = 3, evs: bool = False) -> None:
        self.n = n
        self.members = pids(n)
        self.st = [ViewStream(GROUP, VIEW, self.members, pid, evs=evs) for pid in self.members]
        self.log: list[list[str]] = [[] for _ in range(n)]  # delivered message ids, per member
        self.casts = [0] * n
        self.notices: list[tuple[int, list[str]]] = []  # the sequencer's order notices, in order

    def cast(self, i: int, order: int = CAUSAL, casts: int = 1) -> Msg:
        mids = []
        for _ in range(casts):
            self.casts[i] += 1
            mids.append(f"{self.members[i]}:{self.casts[i]}")
        return self.st[i].stamp(mids, order, [mid.encode() for mid in mids])

    def give(self, j: int, *msgs: Msg) -> list[bool]:
        """Member j receives ``msgs`` off the wire (fresh decodes of their bytes)."""
        return [self.st[j].receive(Msg.decode(m.raw)) for m in msgs]

    def ack(self, i: int, j: int) -> None:
        """Member i's current acknowledgement reaches member j."""
        s = self.st[i]
        s.refresh_acked()
        self.st[j].on_ack(self.members[i], list(s.acked), s.known, s.clock)

    def ack_all(self) -> None:
        for i in range(self.n):
            for j in range(self.n):
                if i != j:
                    self.ack(i, j)

    def step(self, j: int, refresh: bool = True) -> list[str]:
        """Member j delivers what it can (as the engine does: stability first, then delivery)."""
        s = self.st[j]
        if refresh:
            s.refresh_stable()
        numbered: list[str] = []
        out = s.deliverable(numbered)
        if numbered:
            self.notices.append((s.known - len(numbered) + 1, numbered))
        mids = [m.mid for m in out]
        self.log[j] += mids
        return mids

    def learn(self, j: int) -> None:
        """Member j receives every order notice the sequencer has sent."""
        for first, mids in self.notices:
            self.st[j].learn_numbers(first, mids)


# -- streams: sequence numbers, vector timestamps, reception -----------------------------------------


def test_stamp_carries_seq_and_the_senders_delivered_vector() -> None:
    """1987b §4.3.2, design §3: a message carries its sender's stream number and the vector of what
    the sender had delivered; vt[sender] == seq."""
    net = Net()
    a = net.cast(0)
    assert (a.seq, a.vt) == (1, [1, 0, 0])
    net.give(1, a)
    assert net.step(1) == [a.mid]
    b = net.cast(1)
    c = net.cast(1, FIFO)
    assert (b.seq, b.vt) == (1, [1, 1, 0])
    assert (c.seq, c.vt) == (2, [1, 2, 0])
    decoded = Msg.decode(c.raw)
    assert (decoded.sender, decoded.seq, decoded.vt, decoded.mids) == (net.members[1], 2, [1, 2, 0], c.mids)


def test_own_message_is_delivered_at_once_and_counted_for_flow_control() -> None:
    """1994 spec 3 (self-delivery), design §2–3: a sender delivers its own message, and its unstable
    casts and payload bytes are counted until stable."""
    net = Net()
    m = net.cast(2, CAUSAL, casts=3)
    assert net.step(2) == [m.mid]
    assert (net.st[2].own_casts, net.st[2].own_bytes) == (3, sum(map(len, m.payloads)))


def test_fifo_hole_holds_back_later_messages_and_is_reported_as_a_gap() -> None:
    """design §2: a sender's stream is delivered in sequence order; a message beyond a hole is kept
    but waits, recv stays the contiguous prefix, and gaps() names the sender."""
    net = Net()
    a, b = net.cast(0, FIFO), net.cast(0, FIFO)
    assert net.give(1, b) == [True]
    assert net.step(1) == []
    assert net.st[1].recv[0] == 0 and net.st[1].gaps() == [0]
    assert net.give(1, a) == [True]
    assert net.st[1].recv[0] == 2 and net.st[1].gaps() == []
    assert net.step(1) == [a.mid, b.mid]


def test_receive_refuses_duplicates_strangers_and_malformed_vectors() -> None:
    """design §2–3: a message of the view is stored once; duplicates (held or already received),
    unknown senders and vectors that do not fit the view are refused."""
    net = Net()
    a, b = net.cast(0), net.cast(0)
    assert net.give(1, b, b) == [True, False]  # held above the prefix
    assert net.give(1, a, a) == [True, False]  # within the prefix
    stranger = Msg(["x#1:1"], "x#1", VIEW, 1, CAUSAL, [1, 0, 0], [b""])
    short = Msg(["p2#1:1"], "p2#1", VIEW, 1, CAUSAL, [0, 0], [b""])
    lying = Msg(["p2#1:1"], "p2#1", VIEW, 1, CAUSAL, [0, 0, 2], [b""])  # vt[sender] != seq
    assert [net.st[1].receive(m) for m in (stranger, short, lying)] == [False, False, False]
    assert net.st[1].recv == [2, 0, 0]


# -- causal order ------------------------------------------------------------------------------------


def test_causal_message_waits_for_its_causal_predecessor() -> None:
    """1987b §3.3 and §4.3.2 (CBCAST), 1994 spec 5, design §3: a causal message is not delivered before its
    causal predecessors, even from another sender."""
    net = Net()
    a = net.cast(0)
    net.give(1, a)
    net.step(1)
    b = net.cast(1)  # b depends on a
    net.give(2, b)
    assert net.step(2) == []
    net.give(2, a)
    assert net.step(2) == [a.mid, b.mid]


def test_concurrent_messages_are_delivered_as_they_arrive() -> None:
    """1991 §3.2, design §3: causal order is partial; a message concurrent with undelivered ones
    does not wait."""
    net = Net()
    a, b = net.cast(0), net.cast(1)
    net.give(2, b)
    assert net.step(2) == [b.mid]
    net.give(2, a)
    assert net.step(2) == [a.mid]


def test_acknowledgement_covers_a_message_only_with_its_causal_past() -> None:
    """design §2: an acknowledgement says "I hold m and everything m causally depends on"; a held
    message whose causal predecessor is missing is not acknowledged (so never counted stable)."""
    net = Net()
    a = net.cast(0)
    net.give(1, a)
    net.step(1)
    b = net.cast(1)
    net.give(2, b)
    net.st[2].refresh_acked()
    assert net.st[2].recv == [0, 1, 0] and net.st[2].acked == [0, 0, 0]
    net.give(2, a)
    net.st[2].refresh_acked()
    assert net.st[2].acked == [1, 1, 0]


# -- total order (sequencer) -------------------------------------------------------------------------


def test_sequencer_numbers_total_messages_and_others_wait_for_the_number() -> None:
    """1987b §3.2, design §4: a total message is delivered at a non-sequencer only once its global
    number is known; the sequencer numbers it when it becomes causally deliverable there."""
    net = Net()
    t = net.cast(1, TOTAL)
    net.give(0, t)
    net.give(2, t)
    assert net.step(1) == [] and net.step(2) == []
    assert net.step(0) == [t.mid]
    assert net.notices == [(1, [t.mid])]
    net.learn(1)
    net.learn(2)
    assert net.step(1) == [t.mid] and net.step(2) == [t.mid]


def test_total_messages_follow_the_numbers_not_the_arrival_order() -> None:
    """1987b §3.2, design §4: total messages are delivered in number order at every member, whatever
    order they arrived in; a number alone (message not yet here) holds back the higher ones."""
    net = Net()
    t1, t2 = net.cast(1, TOTAL), net.cast(2, TOTAL)
    net.give(0, t2)
    net.step(0)
    net.give(0, t1)
    net.step(0)
    assert net.log[0] == [t2.mid, t1.mid]
    net.learn(1)  # p1 knows t2 comes first but does not hold it yet
    assert net.step(1) == []
    net.give(1, t2)
    assert net.step(1) == [t2.mid, t1.mid]


def test_sequencer_numbering_is_a_causal_order() -> None:
    """1991 §3.2, design §4: the sequencer numbers a total message only once it is causally
    deliverable there (its sender's earlier messages and its causal past from others are held),
    so the numbering is a causal order."""
    net = Net()
    t1, t2 = net.cast(1, TOTAL), net.cast(1, TOTAL)
    net.give(0, t2)
    assert net.step(0) == [] and net.notices == []
    net.give(0, t1)
    assert net.step(0) == [t1.mid, t2.mid]
    assert net.notices == [(1, [t1.mid, t2.mid])]
    a = net.cast(1)
    net.give(2, t1, t2, a)
    net.learn(2)
    assert net.step(2) == [t1.mid, t2.mid, a.mid]
    t3 = net.cast(2, TOTAL)  # depends on a
    net.give(0, t3)
    assert net.step(0) == [] and len(net.notices) == 1  # not numbered while a is missing
    net.give(0, a)
    assert net.step(0) == [a.mid, t3.mid] and net.notices[-1] == (3, [t3.mid])


def test_safe_message_waits_until_every_member_holds_it_and_its_number() -> None:
    """1994 §3 step 1 and spec 7.1, design §4: a safe message is delivered only once it is stable:
    every member acknowledged holding it and knowing its number."""
    net = Net()
    s = net.cast(1, SAFE)
    net.give(0, s)
    net.give(2, s)
    net.step(0)  # numbers it
    net.learn(2)
    assert net.step(2) == []
    net.ack(0, 2)  # p0 holds it and knows the number
    assert net.step(2) == []
    net.ack(1, 2)  # p1 holds it but does not know the number yet
    assert net.step(2) == [] and net.st[2].stable[1] == 1
    net.learn(1)
    net.ack(1, 2)
    assert net.step(2) == [s.mid]


def test_safe_message_is_not_delivered_by_its_sender_before_others_hold_it() -> None:
    """1994 §3 step 1, design §4: even the sender (and the sequencer) waits for every member's
    acknowledgement of a safe message."""
    net = Net()
    s = net.cast(0, SAFE)
    assert net.step(0) == []
    net.give(1, s)
    net.learn(1)
    net.ack(1, 0)
    assert net.step(0) == []  # p2 has not acknowledged
    net.give(2, s)
    net.learn(2)
    net.ack(2, 0)
    assert net.step(0) == [s.mid]


def test_safe_message_does_not_hold_back_the_numbering_of_its_successors() -> None:
    """design §4: numbering runs ahead of delivery, so the total message after a waiting safe one
    is numbered at once (and delivered after it)."""
    net = Net()
    s, t = net.cast(1, SAFE), net.cast(2, TOTAL)
    net.give(0, s, t)
    net.step(0)
    assert net.notices == [(1, [s.mid, t.mid])]
    assert net.log[0] == []  # t waits behind s, which waits for stability
    for j in (1, 2):
        net.give(j, s if j == 2 else t)
        net.learn(j)
    net.ack_all()
    assert net.step(0) == [s.mid, t.mid]


def test_safe_message_not_collected_while_waiting_for_its_number_to_be_stable() -> None:
    """stability (design §2): a message is garbage-collected only once stable *and delivered here*;
    a safe message that waits for its number to be stable stays held and is delivered later."""
    net = Net()
    s = net.cast(1, SAFE)
    net.give(0, s)
    net.give(2, s)
    net.step(0)
    net.learn(2)
    net.ack(0, 2)
    net.ack(1, 2)  # p1 holds it (stable per sender) but does not know its number
    assert net.step(2, refresh=False) == []
    assert 1 in net.st[2].held[1]  # still held: not delivered here
    net.learn(1)
    net.ack(1, 2)
    assert net.step(2) == [s.mid]


@pytest.mark.parametrize("n", [3, ALL_TO_ALL + 2])
@FAST
@given(data=st.data())
def test_total_order_is_the_same_at_every_member_whatever_the_interleaving(
        n: int, data: st.DataObject) -> None:
    """1987b §3.2, 1994 spec 6, design §4: members that deliver the same total messages deliver them
    in the same order; every delivery sequence is causal and gap-free; a safe message is delivered
    only when every member holds it and its number; in the end everything is delivered and collected.
    With more than ALL_TO_ALL members, through the aggregator's announcements (design §2)."""
    sim = Sim(data, evs=False, n=n)
    sim.run()
    sim.check()


# -- stability and garbage collection ----------------------------------------------------------------


def test_message_is_collected_once_stable_and_delivered_here() -> None:
    """1987b §4.4, 1991 §3.2, design §2: stability: a message is garbage-collected once every member
    acknowledged it and it is delivered here; before that it can be retransmitted."""
    net = Net()
    a = net.cast(0, CAUSAL, casts=2)
    net.step(0)
    net.give(1, a)
    net.give(2, a)
    net.step(1)
    net.ack(0, 1)
    net.ack(1, 1)
    net.st[1].refresh_stable()
    assert net.st[1].stable == [0, 0, 0] and net.st[1].retransmit(0, 1, 1) == [a.raw]  # p2 not yet
    net.ack(2, 1)
    net.st[1].refresh_stable()
    assert net.st[1].stable == [1, 0, 0]
    assert net.st[1].held[0] == {} and net.st[1].retransmit(0, 1, 1) == []
    net.ack_all()
    net.st[0].refresh_stable()
    assert net.st[0].held[0] == {} and (net.st[0].own_casts, net.st[0].own_bytes) == (0, 0)


def test_stable_message_not_yet_delivered_here_is_kept() -> None:
    """1987b §4.4, design §2: a stable message still waiting for delivery here (a total message
    without its number) is not collected; once delivered, it and its number are."""
    net = Net()
    t = net.cast(1, TOTAL)
    for j in (0, 2):
        net.give(j, t)
    net.step(0)
    net.learn(1)
    net.step(1)
    net.ack_all()  # p2 has not learnt the number, so the number is not stable
    net.st[2].refresh_stable()
    assert net.st[2].stable == [0, 1, 0] and list(net.st[2].held[1]) == [1]
    assert net.st[2].retransmit(1, 1, 1) == [t.raw]
    net.learn(2)
    assert net.step(2) == [t.mid]
    net.ack_all()
    for s in net.st:
        s.refresh_stable()
        assert s.held[1] == {} and s.num_of == {} and s.collected_num == 1
    assert all(s.all_stable() for s in net.st)


def test_acknowledgements_only_grow_and_ignore_strangers() -> None:
    """design §2: acknowledgements are cumulative (a late, older one lowers nothing); one from
    oneself, a stranger or of the wrong width is ignored."""
    net = Net()
    s = net.st[0]
    s.on_ack("p1#1", [2, 3, 1], 4, 0)
    s.on_ack("p1#1", [1, 1, 1], 2, 0)
    assert s.acks[1] == [2, 3, 1] and s.ack_known[1] == 4
    s.on_ack("p0#1", [9, 9, 9], 9, 0)
    s.on_ack("zz#1", [9, 9, 9], 9, 0)
    s.on_ack("p2#1", [9, 9], 9, 0)
    assert s.acks[0] == [0, 0, 0] and s.acks[2] == [0, 0, 0] and s.ack_known == [0, 4, 0]


def test_gap_learnt_from_an_acknowledgement_is_repaired_from_a_holder_byte_for_byte() -> None:
    """design §2: a member learns from acknowledgements that a message exists (gaps), asks a member
    that acknowledged holding it (holder_of; the sender if nobody did), and gets the original bytes."""
    net = Net()
    a = net.cast(0)
    assert net.st[2].holder_of(0, 1) == 0
    net.give(1, a)
    net.ack(1, 2)
    assert net.st[2].gaps() == [0] and net.st[2].seen[0] == 1
    assert net.st[2].holder_of(0, 1) == 1
    [raw] = net.st[1].retransmit(0, 1, net.st[2].seen[0])
    assert raw == a.raw
    assert net.st[2].receive(Msg.decode(raw))
    assert net.st[2].gaps() == [] and net.step(2) == [a.mid]


# -- star views: acknowledgements through the aggregator ---------------------------------------------


def test_star_view_is_stable_only_through_the_aggregators_announcement() -> None:
    """design §2: with more than ALL_TO_ALL members, members acknowledge to the aggregator (member
    0) only; a member counts a message stable when the aggregator announces that every member
    acknowledged it, not before, and a safe message waits for that."""
    n = ALL_TO_ALL + 2
    net = Net(n, evs=True)
    assert all(s.star for s in net.st)
    assert [s.aggregates for s in net.st] == [True] + [False] * (n - 1)
    m = net.cast(2, SAFE)
    for j in range(n):
        if j != 2:
            net.give(j, m)
    for i in range(1, n - 1):  # every member but the last acknowledges
        net.ack(i, 0)
    net.st[1].on_announcement(net.st[0].announcement(False))
    assert net.st[1].stable[2] == 0 and net.step(1) == [] and 1 in net.st[1].held[2]
    net.ack(n - 1, 0)
    net.st[1].on_announcement(net.st[0].announcement(False))
    assert net.st[1].stable[2] == 1 and net.step(1) == [m.mid]
    assert net.st[1].held[2] == {}  # stable and delivered here: collected


@FAST
@given(st.lists(st.tuples(st.integers(1, 7), st.lists(st.integers(0, 6), min_size=8, max_size=8)),
                max_size=60))
def test_aggregator_keeps_stability_incrementally_equal_to_the_minimum_of_the_matrix(
        acks: list[tuple[int, list[int]]]) -> None:
    """design §2: the aggregator counts, per sender, the members at the minimum acknowledgement and
    scans a column only when the last of them moves up; the result is always the column minimum."""
    net = Net(8)
    s = net.st[0]
    for i in range(8):  # the aggregator holds six messages of every sender: its own row is all 6
        msgs = [net.cast(i) for _ in range(6)]
        if i:
            net.give(0, *msgs)
    s.refresh_stable()
    assert s.acked == [6] * 8
    for j, row in acks:
        s.on_ack(net.members[j], row, 0)
        s.refresh_stable()
        assert s.stable == [min(col) for col in zip(*s.acks, strict=True)]


def test_star_member_learns_a_gap_from_the_announcement_and_asks_the_sender_then_the_aggregator() -> None:
    """design §2: in a star view a member hears only the aggregator's summary of the others'
    acknowledgements: the highest sequence some member holds tells it of a message it missed,
    which it asks of the sender (which holds it until it is stable) and of the aggregator in turn."""
    n = ALL_TO_ALL + 2
    net = Net(n)
    m = net.cast(3)
    net.give(0, m)
    net.st[0].refresh_acked()
    net.st[1].on_announcement(net.st[0].announcement(False))
    assert net.st[1].gaps() == [3]
    assert [net.st[1].holder_of(3, 1, tries) for tries in range(3)] == [3, 0, 3]
    [raw] = net.st[0].retransmit(3, 1, 1)
    assert net.st[1].receive(Msg.decode(raw)) and net.step(1) == [m.mid]


def test_an_announcement_is_a_snapshot_that_later_stability_does_not_change() -> None:
    """design §2: the aggregator announces again only what changed since its last announcement, so
    the one it keeps must not change with the stream (a stale copy would hide new stability)."""
    n = ALL_TO_ALL + 2
    net = Net(n)
    m = net.cast(0)
    for j in range(1, n):
        net.give(j, m)
    before = net.st[0].announcement(False)
    for i in range(1, n):
        net.ack(i, 0)
    after = net.st[0].announcement(False)
    assert before.stable[0] == 0 and after.stable[0] == 1 and before != after


def test_evs_star_member_is_released_by_the_clocks_the_aggregator_relays() -> None:
    """design §2, §4 (evs): in a star view a member never hears the others' acknowledged clocks but
    from the aggregator's announcement, which relays them (and its own)."""
    n = ALL_TO_ALL + 2
    net = Net(n, evs=True)
    t = net.cast(1, TOTAL)
    for j in range(n):
        if j != 1:
            net.give(j, t)
    assert net.step(2) == []
    for i in range(3, n):
        net.ack(i, 0)
    net.st[2].on_announcement(net.st[0].announcement(False))
    assert net.step(2) == [t.mid]


# -- numbers and the report --------------------------------------------------------------------------


def test_learn_numbers_keeps_the_contiguous_count_of_known_numbers() -> None:
    """design §4: order notices may arrive out of order or twice; ``known`` counts the contiguous
    numbers known, and ``numbers_from`` answers a request for missing numbers."""
    s = ViewStream(GROUP, VIEW, pids(3), "p2#1")
    assert s.learn_numbers(3, ["p1#1:3", "p1#1:4"])
    assert s.known == 0
    assert s.learn_numbers(1, ["p1#1:1", "p1#1:2"])
    assert s.known == 4
    assert not s.learn_numbers(2, ["p1#1:2", "p1#1:3"])
    assert s.numbers_from(2) == (2, ["p1#1:2", "p1#1:3", "p1#1:4"])


def test_report_gives_vectors_held_messages_and_only_the_known_prefix_of_numbers() -> None:
    """design §5 step 2 and §4: a member reports what it delivered and holds, the bytes of the
    messages it holds, and only the known prefix of numbers (a number beyond a gap could order a
    message before its unnumbered causal predecessor)."""
    net = Net()
    a, b = net.cast(1, TOTAL), net.cast(1, TOTAL)
    net.give(2, b)
    net.st[2].learn_numbers(1, [a.mid])
    net.st[2].learn_numbers(3, ["p0#1:1"])
    report = net.st[2].report()
    assert report.delivered == [0, 0, 0] and report.recv == [0, 0, 0]
    assert report.msgs == [b.raw]
    assert report.numbers == {a.mid: 1}


# -- evs: order by (Lamport time, sender) ------------------------------------------------------------


def test_evs_lamport_time_extends_causality() -> None:
    """design §4 (evs): a message's Lamport time exceeds that of every message its
    sender had received, so the key order is a causal order."""
    net = Net(evs=True)
    a, b = net.cast(0), net.cast(0)
    assert (a.ts, b.ts) == (1, 2)
    net.give(1, b)
    c = net.cast(1)
    assert c.ts == 3 and net.st[1].clock == 3


def test_evs_total_messages_are_ordered_by_time_then_sender_position() -> None:
    """design §4 (evs): in evs mode total messages are ordered by the key (Lamport time, sender position),
    without a sequencer: concurrent messages of equal time go in sender order, at every member."""
    net = Net(evs=True)
    t0, t1 = net.cast(0, TOTAL), net.cast(1, TOTAL)
    assert t0.ts == t1.ts == 1
    net.give(2, t1)
    assert net.step(2) == []  # p0 might still send a lower key
    net.give(2, t0)
    assert net.step(2) == [t0.mid, t1.mid]
    net.give(0, t1)
    net.give(1, t0)
    net.ack(2, 0)
    net.ack(2, 1)
    assert net.step(0) == [t0.mid, t1.mid] and net.step(1) == [t0.mid, t1.mid]


def test_evs_total_message_waits_for_every_member_to_be_past_its_time() -> None:
    """design §4 (evs): a total message waits until each member is known to send only higher times from
    now on: by its latest message here, or by the clock its acknowledgement carried once the
    messages it had sent by then are here."""
    net = Net(evs=True)
    x = net.cast(0)
    t = net.cast(0, TOTAL)  # key (2, p0)
    c = net.cast(2, TOTAL)  # key (1, p2), concurrent
    net.give(2, x, t)  # p2's clock is now 2
    net.give(1, x, t)
    net.step(1)
    assert net.log[1] == [x.mid]
    net.ack(2, 1)  # clock 2, but p2 had sent c by then, which p1 does not hold
    assert net.step(1) == []
    net.give(1, c)
    assert net.step(1) == [c.mid, t.mid]


def test_evs_acknowledged_clock_releases_a_total_message() -> None:
    """design §4 (evs): a member that sent nothing bounds future keys by its acknowledged clock."""
    net = Net(evs=True)
    t = net.cast(0, TOTAL)
    net.give(1, t)
    assert net.step(1) == []
    net.give(2, t)
    net.ack(2, 1)
    assert net.step(1) == [t.mid]


def test_evs_safe_message_waits_for_stability() -> None:
    """1994 §3 step 1 and spec 7.1, design §4 (evs): in evs mode a safe message is delivered only once
    every member acknowledged holding it."""
    net = Net(evs=True)
    s = net.cast(1, SAFE)
    net.give(0, s)
    net.give(2, s)
    net.ack(0, 2)
    assert net.step(2) == []
    net.ack(1, 2)
    assert net.step(2) == [s.mid]


@pytest.mark.parametrize("n", [3, ALL_TO_ALL + 2])
@FAST
@given(data=st.data())
def test_evs_total_order_is_the_key_order_at_every_member(n: int, data: st.DataObject) -> None:
    """1994 spec 6, design §4 (evs): in evs mode every member delivers total messages in the order of the
    key (Lamport time, sender); deliveries are causal and gap-free; safe ones wait for every member
    to hold them; in the end everything is delivered and collected. With more than ALL_TO_ALL
    members, the clocks bounding the keys are relayed by the aggregator (design §2)."""
    sim = Sim(data, evs=True, n=n)
    sim.run()
    sim.check()
    totals = [m for m in sim.sent.values() if m.order >= TOTAL]
    by_key = [m.mid for m in sorted(totals, key=lambda m: (m.ts, sim.net.members.index(m.sender)))]
    assert sim.total_log(0) == by_key


# -- a simulated network for the randomised tests ----------------------------------------------------


class Sim:
    """``n`` streams and a pool of frames in flight; hypothesis picks casts, which frame arrives next
    and who acknowledges, then the network is drained until everything is stable. In a star view
    (more than ALL_TO_ALL members) acknowledgements go to the aggregator, member 0, whose
    acknowledging is an announcement to the others, and which announces its order notices too."""

    def __init__(self, data: st.DataObject, evs: bool, n: int = 3) -> None:
        self.data = data
        self.evs = evs
        self.net = Net(n, evs=evs)
        self.star = n > ALL_TO_ALL
        self.flight: list[tuple[str, int, Any]] = []
        self.sent: dict[str, Msg] = {}

    def progress(self, j: int) -> None:
        net = self.net
        before = len(net.notices)
        delivered = net.step(j)
        for first, mids in net.notices[before:]:
            if self.star:
                ann = msgspec.structs.replace(net.st[j].announcement(False), first=first, mids=mids)
                self.flight += [("ann", k, ann) for k in range(net.n) if k != j]
            else:
                self.flight += [("num", k, (first, mids)) for k in range(net.n) if k != j]
        for mid in delivered:
            msg = self.sent[mid]
            if msg.order == SAFE:
                s = net.members.index(msg.sender)
                for k, other in enumerate(net.st):  # every member holds it (and knows its number)
                    assert other.recv[s] >= msg.seq or mid in net.log[k]
                    assert self.evs or mid in other.num_of or mid in net.log[k]

    def cast(self, i: int, order: int) -> None:
        msg = self.net.cast(i, order)
        self.sent[msg.mid] = msg
        self.flight += [("data", k, msg.raw) for k in range(self.net.n) if k != i]
        self.progress(i)

    def acks(self, i: int) -> None:
        s = self.net.st[i]
        if self.star and i == 0:
            ann = s.announcement(False)
            self.flight += [("ann", k, ann) for k in range(1, self.net.n)]
            return
        s.refresh_acked()
        item = (i, list(s.acked), s.known, s.clock)
        self.flight += [("ack", k, item) for k in range(self.net.n) if k != i and not (self.star and k)]

    def arrive(self, index: int) -> None:
        kind, j, item = self.flight.pop(index)
        s = self.net.st[j]
        if kind == "data":
            s.receive(Msg.decode(item))
        elif kind == "ack":
            i, acked, known, clock = item
            s.on_ack(self.net.members[i], acked, known, clock)
        elif kind == "ann":
            s.on_announcement(item)
        else:
            s.learn_numbers(*item)
        self.progress(j)

    def run(self) -> None:
        draw = self.data.draw
        for _ in range(draw(st.integers(0, 40), label="steps")):
            action = draw(st.integers(0, 9))
            if action < 3:
                order = draw(st.sampled_from([FIFO, CAUSAL, TOTAL, SAFE]))
                self.cast(draw(st.integers(0, self.net.n - 1)), order)
            elif action < 8 and self.flight:
                self.arrive(draw(st.integers(0, len(self.flight) - 1)))
            else:
                self.acks(draw(st.integers(0, self.net.n - 1)))
        for _ in range(10):  # drain: everything arrives, then everyone acknowledges
            while self.flight:
                self.arrive(0)
            for i in range(self.net.n):
                self.acks(i)
            while self.flight:
                self.arrive(0)

    def total_log(self, j: int) -> list[str]:
        return [mid for mid in self.net.log[j] if self.sent[mid].order >= TOTAL]

    def check(self) -> None:
        net = self.net
        for j in range(net.n):
            assert sorted(net.log[j]) == sorted(self.sent), "every member delivers every message once"
            count = [0] * net.n
            for mid in net.log[j]:
                msg = self.sent[mid]
                s = net.members.index(msg.sender)
                assert msg.seq == count[s] + 1, "fifo, without gaps"
                assert all(v <= count[k] for k, v in enumerate(msg.vt) if k != s), "causal"
                count[s] = msg.seq
            assert self.total_log(j) == self.total_log(0), "total order"
            stream = net.st[j]
            assert stream.all_stable() and all(held == {} for held in stream.held)
            assert (stream.own_casts, stream.own_bytes) == (0, 0) and stream.num_of == {}
