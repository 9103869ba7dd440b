"""The history checker: correct histories pass, and every property can fail."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from vsgroups.check import ORDERS, Violation, check, check_dir, load_traces, main

G = "g"


class Run:
    """The traces of one run, written event by event as each process would."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.casts: dict[str, dict[str, Any]] = {}
        self.counters: dict[str, int] = {}
        self.garbage: dict[str, str] = {}  # raw text to append to a process's trace

    def emit(self, proc: str, ev: str, **fields: Any) -> None:
        name, inc = proc.split("#")
        if proc not in self.events:
            self.events[proc] = [{"ev": "start", "p": name, "inc": int(inc), "t": 0.0}]
        self.events[proc].append({"ev": ev, "p": name, "inc": int(inc), "t": 0.0, **fields})

    def view(self, view: str, members: Iterable[str], *, at: Iterable[str] | None = None,
             prev: str | None = None, kind: str = "regular", primary: bool = True) -> None:
        """``at`` (default: the members) install ``view``; old members pass ``prev``, joiners None."""
        listed = sorted(members)
        for p in listed if at is None else at:
            self.emit(p, "view", g=G, view=view, members=listed, kind=kind, primary=primary, prev=prev)

    def send(self, proc: str, view: str, order: str = "fifo") -> str:
        n = self.counters[proc] = self.counters.get(proc, 0) + 1
        msg = f"{proc}:{n}"
        self.casts[msg] = {"g": G, "order": order, "sender": proc}
        self.emit(proc, "send", g=G, msg=msg, order=order, view=view)
        return msg

    def deliver(self, procs: Iterable[str], msg: str, view: str) -> None:
        for p in procs:
            self.emit(p, "deliver", msg=msg, view=view, **self.casts[msg])

    def cast(self, proc: str, view: str, order: str, to: Iterable[str]) -> str:
        msg = self.send(proc, view, order)
        self.deliver(to, msg, view)
        return msg

    def leave(self, proc: str) -> None:
        self.emit(proc, "leave", g=G)

    def recover(self, proc: str) -> None:
        """``proc`` failed (its views end in a crash) and recovers with its identifier: same file."""
        self.emit(proc, "recover")

    def stop(self, *procs: str) -> None:
        for p in procs:
            self.emit(p, "stop")

    def write(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        for proc, events in self.events.items():
            lines = "".join(json.dumps(e) + "\n" for e in events) + self.garbage.get(proc, "")
            (self.root / f"{proc}.jsonl").write_text(lines, encoding="utf-8")
        return self.root


P1, P2, P3, P4 = "p1#0", "p2#0", "p3#0", "p4#0"


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return Run(tmp_path / "trace")


def props(run: Run, live: bool = False, model: str | None = None) -> set[str]:
    return {v.prop for v in check_dir(run.write(), live=live, model=model)}


def good_history(run: Run) -> None:
    """Three processes in v1, every ordering and a causal chain; p3 crashes; p4 joins in v3."""
    three = [P1, P2, P3]
    run.view("v1", three)
    run.cast(P1, "v1", "fifo", three)
    c1 = run.cast(P1, "v1", "causal", [P1, P2])
    c2 = run.cast(P2, "v1", "causal", [P2, P1])  # p2 delivered c1 before sending c2
    run.deliver([P3], c1, "v1")
    run.deliver([P3], c2, "v1")
    t1 = run.send(P1, "v1", "total")
    t2 = run.send(P3, "v1", "total")
    run.deliver(three, t1, "v1")
    run.deliver(three, t2, "v1")
    s1 = run.send(P2, "v1", "safe")
    run.deliver([P3], s1, "v1")
    late = run.send(P3, "v1", "fifo")  # p3 crashes right after sending
    run.deliver([P1, P2], s1, "v1")  # the survivors must deliver the safe message p3 delivered
    run.deliver([P1, P2], late, "v1")
    run.view("v2", [P1, P2], prev="v1")
    for order in ORDERS:
        run.cast(P1, "v2", order, [P1, P2])
        run.cast(P2, "v2", order, [P1, P2])
    run.view("v3", [P1, P2, P4], at=[P1, P2], prev="v2")
    run.view("v3", [P1, P2, P4], at=[P4], prev=None)
    m = run.send(P4, "v3", "total")
    run.cast(P2, "v3", "safe", [P4, P1, P2])
    run.deliver([P4, P1, P2], m, "v3")
    run.stop(P1, P2, P4)


def test_correct_history_passes(run: Run) -> None:
    good_history(run)
    histories = load_traces(run.write())
    assert check(histories, live=True) == []
    assert len(histories.incarnations) == 4
    assert histories.views == 3
    assert histories.deliveries == 42


def test_evs_transitional_configurations_pass(run: Run) -> None:
    """A partition in EVS: p1 and p2 deliver p1's safe message in their transitional configuration."""
    run.view("v1", [P1, P2, P3])
    s = run.send(P1, "v1", "safe")
    run.view("t1", [P1, P2], prev="v1", kind="transitional", primary=False)
    run.deliver([P1, P2], s, "t1")
    run.view("v2", [P1, P2], prev="t1")
    run.view("t2", [P3], prev="v1", kind="transitional", primary=False)
    run.view("v3", [P3], prev="t2", primary=False)
    run.stop(P1, P2, P3)
    assert props(run) == set()


def test_crashed_process_is_exempt_from_total_order(run: Run) -> None:
    run.view("v1", [P1, P2, P3])
    a = run.send(P1, "v1", "total")
    b = run.send(P2, "v1", "total")
    run.deliver([P1, P2], a, "v1")
    run.deliver([P3], b, "v1")
    run.deliver([P1, P2], b, "v1")
    run.deliver([P3], a, "v1")  # the order p3 used died with it
    run.view("v2", [P1, P2], prev="v1")
    run.stop(P1, P2)
    assert props(run, live=True) == set()


def crash_and_recover(run: Run, recover: bool = True) -> None:
    """p3 delivers messages of v1 the others never deliver, in its own total order, and sends one it never
    delivers; then it fails and recovers alone in s1 while p1 and p2 move on to v2; then all merge."""
    three = [P1, P2, P3]
    run.view("v1", three)
    run.cast(P3, "v1", "fifo", [P3])
    run.send(P3, "v1", "fifo")
    a, b = run.send(P1, "v1", "total"), run.send(P2, "v1", "total")
    run.deliver([P1, P2], a, "v1")
    run.deliver([P3], b, "v1")
    run.deliver([P3], a, "v1")
    run.deliver([P1, P2], b, "v1")
    if recover:
        run.recover(P3)
    run.view("s1", [P3], prev=None, primary=False)
    run.view("t12", [P1, P2], prev="v1", kind="transitional", primary=False)
    run.view("v2", [P1, P2], prev="t12")
    run.cast(P1, "v2", "safe", [P1, P2])
    run.view("t2", [P1, P2], prev="v2", kind="transitional", primary=False)
    run.view("t3", [P3], prev="s1", kind="transitional", primary=False)
    run.view("v3", three, at=[P1, P2], prev="t2")
    run.view("v3", three, at=[P3], prev="t3")
    run.cast(P3, "v3", "total", [P3, P1, P2])
    run.stop(*three)


def test_recovered_process_crashed_in_its_views(run: Run) -> None:
    crash_and_recover(run)
    histories = load_traces(run.write())
    assert check(histories, live=True, model="evs") == []
    assert histories.incarnations[2].ident == P3
    assert len(histories.incarnations) == 3


def test_without_recover_the_process_survives_its_view(run: Run) -> None:
    crash_and_recover(run, recover=False)
    violations = check_dir(run.write(), live=True, model="evs")
    assert {v.prop for v in violations} == {"self-delivery", "total"}, violations
    assert all(P3 in v.message for v in violations)


def test_several_recoveries_in_one_file(run: Run) -> None:
    run.view("v1", [P1])
    run.cast(P1, "v1", "safe", [P1])
    run.recover(P1)
    run.view("s1", [P1], prev=None, primary=False)
    run.cast(P1, "s1", "total", [P1])
    run.recover(P1)
    run.view("s2", [P1], prev=None, primary=False)
    assert run.cast(P1, "s2", "causal", [P1]) == f"{P1}:3"  # ids go on across recoveries
    run.stop(P1)
    assert props(run, live=True, model="evs") == set()


def test_recovery_keeps_at_most_once_delivery(run: Run) -> None:
    run.view("v1", [P1, P2])
    m = run.cast(P1, "v1", "fifo", [P1, P2])
    run.recover(P2)
    run.view("s1", [P2], prev=None, primary=False)
    run.emit(P2, "deliver", msg=m, view="s1", **run.casts[m])
    run.view("v2", [P1], at=[P1], prev="v1", primary=False)
    run.stop(P1, P2)
    assert props(run) == {"integrity"}


def test_clean_restart_leaves_old_incarnation_out_of_liveness(run: Run) -> None:
    run.view("v1", [P1, P2])
    run.stop(P1)
    run.view("v2", [P2], at=[P2], prev="v1")
    run.view("v3", ["p1#1", P2], at=[P2], prev="v2")
    run.view("v3", ["p1#1", P2], at=["p1#1"])
    run.stop(P2, "p1#1")
    assert props(run, live=True) == set()


@pytest.mark.parametrize("excluded", [True, False])
def test_exclusion_ends_the_membership_of_that_group_only(run: Run, excluded: bool) -> None:
    """p3 is excluded from g (its own last message undelivered) and joins it again as p3#1, while it
    stops cleanly as p3#0: ``exclude`` is a failure in its last view of g, so the stop claims nothing
    there. Without the line, the same history breaks self-delivery."""
    three = [P1, P2, P3]
    run.view("v1", three)
    lost = run.send(P3, "v1", "total")
    run.deliver([P1, P2], lost, "v1")
    if excluded:
        run.emit(P3, "exclude", g=G)
    run.view("v2", [P1, P2], at=[P1, P2], prev="v1")
    again = ["p3#1", P1, P2]
    run.view("v3", again, at=[P1, P2], prev="v2")
    run.view("v3", again, at=["p3#1"])
    run.cast("p3#1", "v3", "total", again)
    run.stop(P1, P2, P3, "p3#1")
    if excluded:
        assert props(run, live=True) == set()
    else:
        assert "self-delivery" in props(run, live=True)


@pytest.mark.parametrize("follows", ["v2", None, "v1"])
def test_a_primary_formed_after_an_attempt_that_only_its_proposer_installed(run: Run,
                                                                          follows: str | None) -> None:
    """evs, design §6.5: p1 installs primary v2 and crashes before p2 and p3 learn the commit; they
    pass through a non-primary configuration, and with p1#1 form primary v4, which accounts for the
    attempt v2 (``follows``). Without that field nothing orders v2 before v4: both succeed v1, a
    split brain as far as the traces show; claiming v1 instead does not hide it either."""
    three = [P1, P2, P3]
    run.view("v1", three)
    run.view("v2", three, at=[P1], prev="v1")
    run.view("x3", [P2, P3], at=[P2, P3], prev="v1", primary=False)
    four = ["p1#1", P2, P3]
    extra = {"follows": follows} if follows is not None else {}
    for p in four:
        run.emit(p, "view", g=G, view="v4", members=sorted(four), kind="regular", primary=True,
                 prev=None if p == "p1#1" else "x3", **extra)
    run.stop(*four)
    assert props(run, live=True) == (set() if follows == "v2" else {"primary-order"})


# --------------------------------------------------------------------------------------------------
# One broken history per property (several for some), each flagged with exactly that property.


def bad_json(run: Run) -> None:
    good_history(run)
    run.garbage[P2] = '{"ev": "deliver", "p": \n'



def event_after_stop(run: Run) -> None:
    run.view("v1", [P1])
    run.stop(P1)
    run.emit(P1, "leave", g=G)


def view_after_exclude(run: Run) -> None:
    run.view("v1", [P1, P2])
    run.emit(P1, "exclude", g=G)
    run.view("v2", [P1, P2], prev="v1")  # a rejoin takes a fresh id: p1#0 is over in g


def recover_before_start(run: Run) -> None:
    run.recover(P1)
    del run.events[P1][0]  # the start line Run writes first
    run.stop(P1)


def recover_after_stop(run: Run) -> None:
    run.view("v1", [P1])
    run.stop(P1)
    run.recover(P1)


def view_without_members(run: Run) -> None:
    run.view("v1", [P1])
    run.emit(P1, "view", g=G, view="v2", kind="regular", primary=True)
    run.stop(P1)


def views_disagree(run: Run) -> None:
    run.view("v1", [P1, P2], at=[P1])
    run.view("v1", [P1, P2], at=[P2], primary=False)
    run.stop(P1, P2)


def view_without_installer(run: Run) -> None:
    run.view("v1", [P1, P2])
    run.view("v1", [P1, P2], at=[P3])
    run.stop(P1, P2, P3)


def view_installed_twice(run: Run) -> None:
    run.view("v1", [P1])
    run.view("v1", [P1])
    run.stop(P1)


def split_brain(run: Run) -> None:
    run.view("v1", [P1, P2, P3, P4])
    run.view("v2", [P1, P2], prev="v1")
    run.view("v3", [P3, P4], prev="v1")
    run.stop(P1, P2, P3, P4)


def two_founders(run: Run) -> None:
    run.view("v1", [P1])
    run.view("v2", [P2])
    run.stop(P1, P2)


def primary_views_in_two_orders(run: Run) -> None:
    run.view("v1", [P1, P2], at=[P1])
    run.view("v2", [P1, P2], at=[P1], prev="v1")
    run.view("v2", [P1, P2], at=[P2])
    run.view("v1", [P1, P2], at=[P2], prev="v2")
    run.stop(P1, P2)


def disjoint_primary_views(run: Run) -> None:
    run.view("v1", [P1])
    run.view("v2", [P2], prev="v1")
    run.stop(P1, P2)


def duplicate_delivery(run: Run) -> None:
    run.view("v1", [P1, P2])
    m = run.cast(P1, "v1", "fifo", [P1, P2])
    run.deliver([P2], m, "v1")
    run.stop(P1, P2)


def invented_delivery(run: Run) -> None:
    run.view("v1", [P1, P2])
    run.emit(P2, "deliver", g=G, msg="p9#0:1", sender="p9#0", order="fifo", view="v1")
    run.stop(P1, P2)


def wrong_sender(run: Run) -> None:
    run.view("v1", [P1, P2])
    m = run.cast(P1, "v1", "fifo", [P1])
    run.emit(P2, "deliver", g=G, msg=m, sender=P3, order="fifo", view="v1")
    run.stop(P1, P2)


def wrong_order(run: Run) -> None:
    run.view("v1", [P1, P2])
    m = run.cast(P1, "v1", "fifo", [P1])
    run.emit(P2, "deliver", g=G, msg=m, sender=P1, order="total", view="v1")
    run.stop(P1, P2)


def own_message_before_send(run: Run) -> None:
    run.view("v1", [P1])
    run.emit(P1, "deliver", g=G, msg=f"{P1}:1", sender=P1, order="fifo", view="v1")
    run.emit(P1, "send", g=G, msg=f"{P1}:1", order="fifo", view="v1")
    run.stop(P1)


def sent_twice(run: Run) -> None:
    run.view("v1", [P1])
    m = run.cast(P1, "v1", "fifo", [P1])
    run.emit(P1, "send", g=G, msg=m, order="fifo", view="v1")
    run.stop(P1)


def causal_cycle(run: Run) -> None:
    """Each process delivers the other's message before sending the one it depends on."""
    run.view("v1", [P1, P2])
    a, b = f"{P1}:1", f"{P2}:1"
    run.casts[a] = {"g": G, "order": "fifo", "sender": P1}
    run.casts[b] = {"g": G, "order": "fifo", "sender": P2}
    run.deliver([P1], b, "v1")
    run.emit(P1, "send", g=G, msg=a, order="fifo", view="v1")
    run.deliver([P2], a, "v1")
    run.emit(P2, "send", g=G, msg=b, order="fifo", view="v1")
    run.deliver([P1], a, "v1")
    run.deliver([P2], b, "v1")
    run.stop(P1, P2)


def delivered_in_later_view(run: Run) -> None:
    run.view("v1", [P1, P2, P3])
    m = run.send(P3, "v1")  # and p3 crashes
    run.view("v2", [P1, P2], prev="v1")
    run.deliver([P1, P2], m, "v2")
    run.stop(P1, P2)


def delivery_stamped_with_other_view(run: Run) -> None:
    run.view("v1", [P1, P2])
    m = run.cast(P1, "v1", "fifo", [P1])
    run.deliver([P2], m, "v0")
    run.stop(P1, P2)


def different_sets(run: Run) -> None:
    run.view("v1", [P1, P2, P3])
    m = run.send(P3, "v1")  # and p3 crashes
    run.deliver([P1], m, "v1")
    run.view("v2", [P1, P2], prev="v1")
    run.stop(P1, P2)


def sender_moves_on_without_own_message(run: Run) -> None:
    run.view("v1", [P1, P2])
    run.send(P1, "v1", "causal")
    run.view("v2", [P1, P2], prev="v1")
    run.stop(P1, P2)


def sender_stops_without_own_message(run: Run) -> None:
    run.view("v1", [P1])
    run.send(P1, "v1", "total")
    run.stop(P1)


def fifo_reversed(run: Run) -> None:
    run.view("v1", [P1, P2])
    a, b = run.send(P1, "v1"), run.send(P1, "v1")
    run.deliver([P1], a, "v1")
    run.deliver([P1, P2], b, "v1")
    run.deliver([P2], a, "v1")
    run.stop(P1, P2)


def causal_reversed(run: Run) -> None:
    """p2 sends b after delivering a; p3 delivers b first."""
    run.view("v1", [P1, P2, P3])
    a = run.cast(P1, "v1", "causal", [P1, P2])
    b = run.cast(P2, "v1", "causal", [P2, P1, P3])
    run.deliver([P3], a, "v1")
    assert b
    run.stop(P1, P2, P3)


def causal_reversed_transitively(run: Run) -> None:
    """a → b (p2 delivered a) → c (p3 delivered b): p4 delivers c before a."""
    run.view("v1", [P1, P2, P3, P4])
    a = run.cast(P1, "v1", "fifo", [P1, P2])
    b = run.cast(P2, "v1", "fifo", [P2, P3, P1, P4])
    c = run.cast(P3, "v1", "causal", [P3, P1, P2, P4])
    run.deliver([P3, P4], a, "v1")
    assert b and c
    run.stop(P1, P2, P3, P4)


def total_disagreement(run: Run) -> None:
    run.view("v1", [P1, P2])
    a, b = run.send(P1, "v1", "total"), run.send(P2, "v1", "total")
    run.deliver([P1], a, "v1")
    run.deliver([P1, P2], b, "v1")
    run.deliver([P2], a, "v1")
    run.stop(P1, P2)


def total_cycle_across_three(run: Run) -> None:
    """No two processes disagree on a pair, yet no single order exists: a < b < c < a."""
    run.view("v1", [P1, P2, P3])
    a, b, c = (run.send(p, "v1", "total") for p in (P1, P2, P3))
    for first, second, at in ((a, b, P1), (b, c, P2), (c, a, P3)):
        run.deliver([at], first, "v1")
        run.deliver([at], second, "v1")
    run.stop(P1, P2, P3)


def safe_missing_at_leaver(run: Run) -> None:
    run.view("v1", [P1, P2])
    run.cast(P1, "v1", "safe", [P1])
    run.leave(P2)
    run.stop(P1, P2)


def safe_order_broken_by_crashed_process(run: Run) -> None:
    run.view("v1", [P1, P2, P3])
    a, b = run.send(P1, "v1", "safe"), run.send(P2, "v1", "safe")
    run.deliver([P1, P2], a, "v1")
    run.deliver([P3], b, "v1")
    run.deliver([P1, P2], b, "v1")
    run.deliver([P3], a, "v1")
    run.view("v2", [P1, P2], prev="v1")
    run.stop(P1, P2)


BROKEN: dict[str, list[Callable[[Run], None]]] = {
    "trace": [bad_json, event_after_stop, view_after_exclude, recover_before_start, recover_after_stop,
              view_without_members],
    "view-agreement": [views_disagree, view_without_installer, view_installed_twice],
    "primary-order": [split_brain, two_founders, primary_views_in_two_orders, disjoint_primary_views],
    "integrity": [duplicate_delivery, invented_delivery, wrong_sender, wrong_order, own_message_before_send,
                  sent_twice, causal_cycle],
    "sending-view": [delivered_in_later_view, delivery_stamped_with_other_view],
    "same-set": [different_sets],
    "self-delivery": [sender_moves_on_without_own_message, sender_stops_without_own_message],
    "fifo": [fifo_reversed],
    "causal": [causal_reversed, causal_reversed_transitively],
    "total": [total_disagreement, total_cycle_across_three],
    "safe": [safe_missing_at_leaver, safe_order_broken_by_crashed_process],
}


CASES = [(prop, build) for prop, builds in BROKEN.items() for build in builds]


@pytest.mark.parametrize(("prop", "build"), CASES, ids=lambda x: x if isinstance(x, str) else x.__name__)
def test_broken_history_is_flagged(run: Run, prop: str, build: Callable[[Run], None]) -> None:
    build(run)
    violations = check_dir(run.write())
    assert {v.prop for v in violations} == {prop}, violations
    for v in violations:
        assert v.message
        assert all(e.split(":")[0].endswith(".jsonl") for e in v.evidence), v


def crashed_member_in_final_view(run: Run) -> None:
    run.view("v1", [P1, P2, P3])
    run.stop(P1, P2)


def live_processes_end_apart(run: Run) -> None:
    run.view("v1", [P1, P2])
    run.view("v2", [P1], at=[P1], prev="v1", primary=False)
    run.view("v3", [P2], at=[P2], prev="v1", primary=False)
    run.stop(P1, P2)


def final_message_not_delivered(run: Run) -> None:
    run.view("v1", [P1, P2])
    run.cast(P1, "v1", "fifo", [P1])
    run.stop(P1, P2)


@pytest.mark.parametrize("build", [crashed_member_in_final_view, live_processes_end_apart,
                                   final_message_not_delivered], ids=lambda f: f.__name__)
def test_liveness_is_checked_only_when_asked(run: Run, build: Callable[[Run], None]) -> None:
    build(run)
    assert props(run) == set()
    assert props(run, live=True) == {"liveness"}


def test_evidence_points_at_the_lines(run: Run) -> None:
    fifo_reversed(run)
    [v] = check_dir(run.write())
    message = f"{P2} delivers {P1}:2 (view v1 of group g) before {P1}:1, sent before it by {P1}"
    assert v == Violation("fifo", message, (f"{P2}.jsonl:3", f"{P1}.jsonl:3"))


def test_repeats_of_one_fault_are_folded(run: Run) -> None:
    run.view("v1", [P1, P2])
    msgs = [run.send(P1, "v1") for _ in range(10)]
    for m in msgs:
        run.deliver([P1], m, "v1")
    for m in reversed(msgs):
        run.deliver([P2], m, "v1")
    run.stop(P1, P2)
    [v] = check_dir(run.write())
    assert v.prop == "fifo"
    assert v.message.endswith("(and 8 more)")


def test_empty_directory_is_a_violation(tmp_path: Path) -> None:
    assert [v.prop for v in check_dir(tmp_path)] == ["trace"]


# --------------------------------------------------------------------------------------------------
# The command


def test_main_reports_ok(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    good_history(run)
    assert main([str(run.write()), "--live"]) == 0
    assert capsys.readouterr().out == "OK: 4 processes, 42 deliveries, 3 views checked\n"


def test_main_reports_violations(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    fifo_reversed(run)
    assert main([str(run.write())]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"fifo: {P2} delivers {P1}:2")
    assert out[1] == f"    at {P2}.jsonl:3, {P1}.jsonl:3"
    assert out[-1] == "FAILED: 1 violation"


def test_main_live_flag(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    crashed_member_in_final_view(run)
    path = str(run.write())
    assert main([path]) == 0
    assert main([path, "--live"]) == 1
    assert "liveness: " in capsys.readouterr().out


def test_main_without_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_module_runs_as_script(run: Run) -> None:
    fifo_reversed(run)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "vsgroups.check", str(run.write())], env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert done.stdout.startswith("fifo: ")


# --------------------------------------------------------------------------------------------------
# Random correct histories


def simulate(rng: random.Random, run: Run) -> None:
    """A correct history: casts of every order delivered in one global order per view; crashes, leaves,
    joins, restarts and recoveries as view changes, each after a flush that gives every survivor the whole
    view. A recovered process installs its own configuration, then joins from it."""
    incarnations: dict[str, int] = {}

    def fresh(name: str) -> str:
        incarnations[name] = incarnations.get(name, -1) + 1
        return f"{name}#{incarnations[name]}"

    alive = [fresh(f"p{i}") for i in range(1, rng.randint(1, 4) + 1)]
    crashed: list[str] = []  # incarnations
    view, number = "v1", 1
    run.view(view, alive)
    log: list[str] = []  # messages of the view, in the order everyone delivers them
    done = dict.fromkeys(alive, 0)

    def catch_up(p: str) -> None:
        for m in log[done[p]:]:
            run.deliver([p], m, view)
        done[p] = len(log)

    for _ in range(rng.randint(0, 40)):
        r = rng.random()
        if r < 0.45:
            log.append(run.send(rng.choice(alive), view, rng.choice(ORDERS)))
        elif r < 0.8:
            p = rng.choice(alive)
            if done[p] < len(log):
                run.deliver([p], log[done[p]], view)
                done[p] += 1
        else:
            change = rng.choice(["crash", "leave", "join", "restart", "recover"])
            joiner, joiner_prev = None, None
            if change in ("crash", "leave") and len(alive) > 1:
                p = rng.choice(alive)
                alive.remove(p)
                if change == "leave":
                    catch_up(p)
                    run.leave(p)
                    run.stop(p)
                else:
                    crashed.append(p)
            elif change == "join":
                joiner = fresh(f"p{len(incarnations) + 1}")
            elif change == "restart" and crashed:
                joiner = fresh(crashed.pop(rng.randrange(len(crashed))).split("#")[0])
            elif change == "recover" and crashed:
                joiner = crashed.pop(rng.randrange(len(crashed)))
                joiner_prev = f"s{number}"
                run.recover(joiner)
                run.view(joiner_prev, [joiner], prev=None, primary=False)
            for p in alive:
                catch_up(p)
            old, number = view, number + 1
            view = f"v{number}"
            run.view(view, alive + ([joiner] if joiner else []), at=alive, prev=old)
            if joiner:
                run.view(view, alive + [joiner], at=[joiner], prev=joiner_prev)
                alive.append(joiner)
            log, done = [], dict.fromkeys(alive, 0)
    for p in alive:
        catch_up(p)
    run.stop(*alive)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_random_correct_histories_pass(rng: random.Random) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(Path(tmp))
        simulate(rng, run)
        assert check_dir(run.write(), live=True) == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.data())
def test_reordering_a_senders_messages_breaks_fifo(rng: random.Random, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(Path(tmp))
        simulate(rng, run)
        pairs = [
            (proc, i, j)
            for proc, events in run.events.items()
            for i, a in enumerate(events)
            for j, b in enumerate(events)
            if i < j and a["ev"] == b["ev"] == "deliver"
            and (a["sender"], a["view"]) == (b["sender"], b["view"])
        ]
        assume(pairs)
        proc, i, j = data.draw(st.sampled_from(pairs))
        events = run.events[proc]
        events[i], events[j] = events[j], events[i]
        assert "fifo" in {v.prop for v in check_dir(run.write())}


def test_model_property_holds_for_each_models_histories(run: Run) -> None:
    test_evs_transitional_configurations_pass(run)
    assert props(run, model="evs") == set()
    assert props(run, model="vs") == {"model"}  # vs has no transitional or non-primary views
    good = Run(run.root.parent / "vs")
    good_history(good)
    assert {v.prop for v in check_dir(good.write(), model="vs")} == set()


def regular_to_regular(run: Run) -> None:
    run.view("v1", [P1, P2])
    run.view("v2", [P1], at=[P1], prev="v1", primary=False)
    run.stop(P1)


def transitional_with_a_stranger(run: Run) -> None:
    run.view("v1", [P1, P2])
    run.view("t1", [P1, P3], at=[P1], prev="v1", kind="transitional", primary=False)
    run.view("v2", [P1], at=[P1], prev="t1", primary=False)
    run.stop(P1)


def recovers_with_others(run: Run) -> None:
    run.view("v1", [P1, P2])
    run.recover(P1)
    run.view("v2", [P1, P2], at=[P1], prev=None, primary=False)
    run.stop(P1, P2)


@pytest.mark.parametrize("build", [regular_to_regular, transitional_with_a_stranger, recovers_with_others],
                         ids=lambda f: f.__name__)
def test_evs_structure_is_checked(run: Run, build: Callable[[Run], None]) -> None:
    build(run)
    assert props(run) == set()
    assert props(run, model="evs") == {"model"}


def test_unknown_model_is_an_error(run: Run) -> None:
    good_history(run)
    with pytest.raises(ValueError, match="unknown model 'x'"):
        check_dir(run.write(), model="x")


@pytest.mark.parametrize("refound", [True, False])
def test_a_group_founded_again_after_a_total_failure_begins_a_lineage_of_its_own(run: Run,
                                                                                  refound: bool) -> None:
    """The recovery manager founds the group again (``refound``) once every member failed; without
    that line a second lineage is a split brain."""
    run.view("v1", [P1, P2])
    run.cast(P1, "v1", "total", [P1, P2])  # both crash in v1
    if refound:
        run.emit(P3, "refound", g=G)
    run.view("w1", [P3])
    run.stop(P3)
    assert ("primary-order" in props(run)) is not refound
