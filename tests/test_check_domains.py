"""The ``causal-domain`` property of the checker: chains of messages across the groups of a domain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vsgroups.check import check_dir

P1, P2, P3, P4 = "p1#0", "p2#0", "p3#0", "p4#0"


class Trace:
    """Trace lines of several processes in several groups, in each process's order."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lines: dict[str, list[dict[str, Any]]] = {}
        self.sent: dict[str, tuple[str, str, str]] = {}  # msg: (sender, group, order)
        self.counter: dict[str, int] = {}

    def emit(self, proc: str, ev: str, **fields: Any) -> int:
        name, inc = proc.split("#")
        lines = self.lines.setdefault(proc, [{"ev": "start", "p": name, "inc": int(inc), "t": 0}])
        lines.append({"ev": ev, "p": name, "inc": int(inc), "t": 0, **fields})
        return len(lines)  # the line number of this event

    def view(self, g: str, members: list[str], domain: str | None = None, kind: str = "regular",
             view: str | None = None, prev: str | None = None) -> None:
        extra = {"domain": domain} if domain is not None else {}
        for p in members:
            self.emit(p, "view", g=g, view=view or f"1.1.{g}", members=sorted(members), kind=kind,
                      primary=kind == "regular", prev=prev, **extra)

    def send(self, proc: str, g: str, order: str = "causal", past: int | None = None,
             view: str | None = None) -> str:
        n = self.counter[proc] = self.counter.get(proc, 0) + 1
        msg = f"{proc}:{n}"
        self.sent[msg] = (proc, g, order)
        extra = {"past": past} if past is not None else {}
        self.emit(proc, "send", g=g, msg=msg, order=order, view=view or f"1.1.{g}", **extra)
        return msg

    def deliver(self, proc: str, msg: str, view: str | None = None) -> int:
        sender, g, order = self.sent[msg]
        return self.emit(proc, "deliver", g=g, msg=msg, sender=sender, order=order, view=view or f"1.1.{g}")

    def stop(self, *procs: str) -> None:
        for p in procs:
            self.emit(p, "stop")

    def props(self) -> set[str]:
        self.root.mkdir(parents=True, exist_ok=True)
        for proc, lines in self.lines.items():
            (self.root / f"{proc}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
        return {v.prop for v in check_dir(self.root)}


@pytest.fixture
def trace(tmp_path: Path) -> Trace:
    return Trace(tmp_path / "trace")


def two_groups(t: Trace, g2_domain: str | None = None) -> tuple[str, str]:
    """g1 = {p1, p2, p3}, g2 = {p2, p3}; p1 casts m1, p2 delivers it and casts m2 in g2."""
    t.view("g1", [P1, P2, P3])
    t.view("g2", [P2, P3], domain=g2_domain)
    m1 = t.send(P1, "g1")
    t.deliver(P1, m1)
    t.deliver(P2, m1)
    m2 = t.send(P2, "g2")
    t.deliver(P2, m2)
    return m1, m2


def test_a_process_in_both_groups_delivers_the_chain_in_order(trace: Trace) -> None:
    m1, m2 = two_groups(trace)
    trace.deliver(P3, m1)
    trace.deliver(P3, m2)
    trace.stop(P1, P2, P3)
    assert trace.props() == set()


def test_delivering_the_later_message_of_another_group_first_is_a_violation(trace: Trace) -> None:
    m1, m2 = two_groups(trace)
    trace.deliver(P3, m2)
    trace.deliver(P3, m1)
    trace.stop(P1, P2, P3)
    assert trace.props() == {"causal-domain"}


def test_groups_of_different_domains_impose_no_order(trace: Trace) -> None:
    m1, m2 = two_groups(trace, g2_domain="apart")
    trace.deliver(P3, m2)
    trace.deliver(P3, m1)
    trace.stop(P1, P2, P3)
    assert trace.props() == set()


def test_a_fifo_delivery_need_not_wait(trace: Trace) -> None:
    """Like the per-view check: causal order binds causal, total and safe deliveries."""
    trace.view("g1", [P1, P2, P3])
    trace.view("g2", [P2, P3])
    m1 = trace.send(P1, "g1")
    trace.deliver(P1, m1)
    trace.deliver(P2, m1)
    m2 = trace.send(P2, "g2", order="fifo")
    trace.deliver(P2, m2)
    trace.deliver(P3, m2)
    trace.deliver(P3, m1)
    trace.stop(P1, P2, P3)
    assert trace.props() == set()


def test_a_held_cast_depends_only_on_what_was_delivered_before_its_past_line(trace: Trace) -> None:
    trace.view("g1", [P1, P2, P3])
    trace.view("g2", [P2, P3])
    m1 = trace.send(P1, "g1")
    trace.deliver(P1, m1)
    held_at = trace.emit(P2, "view", g="g3", view="1.1.g3", members=[P2], kind="regular", primary=True,
                         prev=None)  # any line before the delivery of m1
    trace.deliver(P2, m1)
    m2 = trace.send(P2, "g2", past=held_at)
    trace.deliver(P2, m2)
    trace.deliver(P3, m2)
    trace.deliver(P3, m1)
    trace.stop(P1, P2, P3)
    assert trace.props() == set()


def test_a_chain_that_reenters_its_group_through_two_others(trace: Trace) -> None:
    """1991 Fig. 4: m1 in g1, relayed through g2 and g3 back to a member of g1, which relays into
    g1 again; every member of g1 must deliver m1 before the re-entering m4."""
    trace.view("g1", [P1, P2, P3])
    trace.view("g2", [P2, P4])
    trace.view("g3", [P3, P4])
    m1 = trace.send(P1, "g1")
    trace.deliver(P1, m1)
    trace.deliver(P2, m1)
    m2 = trace.send(P2, "g2")
    trace.deliver(P2, m2)
    trace.deliver(P4, m2)
    m3 = trace.send(P4, "g3")
    trace.deliver(P4, m3)
    trace.deliver(P3, m3)
    m4 = trace.send(P3, "g1")
    trace.deliver(P3, m4)
    trace.deliver(P3, m1)  # p3 delivers m1 only after m3 (and its own m4): broken
    trace.deliver(P1, m4)
    trace.deliver(P2, m4)
    trace.stop(P1, P2, P3, P4)
    assert trace.props() == {"causal-domain"}


def test_a_delivery_in_a_transitional_configuration_is_owed_to_no_later_one(trace: Trace) -> None:
    """evs, 1994 §3: causality is local to a configuration and ends with a membership change."""
    m1, m2 = two_groups(trace)
    trace.deliver(P3, m2)
    trace.view("g1", [P3], kind="transitional", view="2.2.g1~1.1.g1", prev="1.1.g1")
    trace.deliver(P3, m1, view="2.2.g1~1.1.g1")
    trace.stop(P1, P2, P3)
    assert "causal-domain" not in trace.props()


def test_a_causal_cycle_across_groups_is_reported(trace: Trace) -> None:
    trace.view("g1", [P1, P2])
    trace.view("g2", [P1, P2])
    sent = {P1: "p1#0:1", P2: "p2#0:1"}
    trace.sent[sent[P1]] = (P1, "g1", "causal")
    trace.sent[sent[P2]] = (P2, "g2", "causal")
    trace.deliver(P1, sent[P2])  # each delivers the other's message before sending its own
    trace.deliver(P2, sent[P1])
    for p, g in ((P1, "g1"), (P2, "g2")):
        trace.emit(p, "send", g=g, msg=sent[p], order="causal", view=f"1.1.{g}")
    trace.stop(P1, P2)
    assert "causal-domain" in trace.props()
