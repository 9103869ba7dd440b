"""Causality across groups within causality domains (1991 §4–5), in the simulator.

The chain of 1991 Fig. 4: a message leaves a group, passes through other groups and re-enters it.
Here a casts m1 in g1 = {a, b, c}; b relays it by m2 in g2 = {b, d}; d relays m2 by m3 in
g3 = {c, d}. The link from a to c is slow, so without the rule c would deliver m3 before m1, its
causal predecessor. Each relay is the application's cast on delivery, as a program would do it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vsgroups.check import check_dir
from vsgroups.core import events as ev
from vsgroups.sim import Simulation
from vsgroups.sim.cluster import SimProcess

GROUPS = {"a": ["g1"], "b": ["g1", "g2"], "c": ["g1", "g3"], "d": ["g2", "g3"]}
RELAY = {b"m1": ("b", "g2", b"m2"), b"m2": ("d", "g3", b"m3")}


def chain(tmp_path: Path, domains: dict[str, str] | None = None, broken: bool = False,
          order: str = "causal") -> tuple[dict[str, set[str]], dict[str, list[tuple[str, bytes]]]]:
    """Run the chain; the view ids each group went through after forming, and each process's
    deliveries (group, payload) in order."""
    sim = Simulation(seed=7, trace_dir=tmp_path, domains=domains, broken=broken)
    seen: dict[str, list[tuple[str, bytes]]] = {name: [] for name in GROUPS}

    def listener(proc: SimProcess, out: ev.Output) -> None:
        if isinstance(out, ev.Delivered):
            for payload in out.payloads:
                seen[proc.name].append((out.group, payload))
                relay = RELAY.get(payload)
                if relay is not None and relay[0] == proc.name:
                    sim.at(sim.now, sim.cast, relay[0], relay[1], relay[2], order)

    sim.listeners.append(listener)
    founded: set[str] = set()
    for name, groups in GROUPS.items():
        sim.add(name, groups, founder=[g for g in groups if g not in founded])
        founded.update(groups)
    assert sim.run_until_true(lambda: all(len(p.views.get(g, ("", ()))[1]) == 2 + (g == "g1")
                                          for p in sim.procs.values() for g in p.groups), 20)
    for name in GROUPS:  # traffic in every group first: every member has delivered something
        for group in GROUPS[name]:
            sim.cast(name, group, f"warm-{name}".encode(), order)
    sim.run_for(0.5)
    sim.degrade("spike", [("a", "c")], 0.3, 1.0)
    formed = views(sim)
    sim.cast("a", "g1", b"m1", order)
    sim.run_for(2.0)
    sim.stop_all()
    after = views(sim)
    return {g: formed[g] | after[g] for g in formed}, seen


def views(sim: Simulation) -> dict[str, set[str]]:
    return {g: {p.views[g][0] for p in sim.procs.values() if g in p.views} for g in ("g1", "g2", "g3")}


def position(seen: list[tuple[str, bytes]], payload: bytes) -> int:
    return next(i for i, (_, p) in enumerate(seen) if p == payload)


@pytest.mark.parametrize("order", ["fifo", "causal", "total", "safe"])
def test_a_chain_that_leaves_a_group_and_reenters_it_keeps_causal_order(tmp_path: Path, order: str) -> None:
    _, seen = chain(tmp_path, order=order)
    assert position(seen["c"], b"m1") < position(seen["c"], b"m3")
    assert check_dir(tmp_path) == []


def test_the_core_that_ignores_other_groups_breaks_the_chain_and_the_checker_says_so(tmp_path: Path) -> None:
    _, seen = chain(tmp_path, broken=True)
    assert position(seen["c"], b"m3") < position(seen["c"], b"m1")
    assert {v.prop for v in check_dir(tmp_path)} == {"causal-domain"}


def test_groups_of_different_domains_do_not_wait_for_each_other(tmp_path: Path) -> None:
    """With g2 and g3 in a domain of their own the relays go at once: m3 overtakes m1 at c, and the
    checker, which keeps causality only within a domain, accepts it."""
    _, seen = chain(tmp_path, domains={"g2": "relay", "g3": "relay"})
    assert position(seen["c"], b"m3") < position(seen["c"], b"m1")
    assert check_dir(tmp_path) == []


def test_the_relay_waits_for_acknowledgements_not_for_a_view_change(tmp_path: Path) -> None:
    """The held casts go once the members said they delivered what the relay had: the chain ends
    everywhere with the groups in the views they formed in (the slow link is not suspected)."""
    went_through, seen = chain(tmp_path)
    assert all(("g3", b"m3") in seen[name] for name in ("c", "d"))
    assert all(len(ids) == 1 for ids in went_through.values()), went_through


def test_a_barrier_waits_for_a_joiner_without_its_state_even_before_a_delivery_in_its_view() -> None:
    """Member a sent m1 in group g (view 2, members a and j), then g installed view 3 with a and the
    joiner j, which still waits for its state: it holds m1 back, undelivered, until the state comes.
    Nothing was delivered in view 3 yet, but a cast of a in another group of the domain must still
    wait for j's acknowledgement in view 3 with the state, or it could reach j before m1 does
    (found by the hierarchy workload, when its subgroups shared the root's domain)."""
    from types import SimpleNamespace

    from vsgroups.core.domains import Domain, _met, _need
    from vsgroups.core.stream import ViewStream

    class Engine:  # what the rule reads of a group's engine
        def __init__(self, stream: ViewStream) -> None:
            self.stream, self.is_member = stream, True
            self.data = SimpleNamespace(confirmed=None, ack_dirty=False)

    stream = ViewStream("g", "3.3.a#1", ("a#1", "j#1"), "a#1")
    engine = Engine(stream)
    domain = Domain("default", groups={engine: None})  # type: ignore[dict-item]
    need = _need(engine)  # type: ignore[arg-type]
    assert need is not None, "nothing to wait for: j's view-2 deliveries are taken for done"
    assert not _met(domain, *need)
    stream.on_ack("j#1", [0, 0], 0, delivered=[])  # j acknowledges, still without the state
    assert not _met(domain, *need)
    stream.on_ack("j#1", [0, 0], 0, delivered=[0, 0])  # the state is there: m1 was delivered first
    assert _met(domain, *need) and _need(engine) is None  # type: ignore[arg-type]


def test_a_quiet_group_that_a_barrier_waits_for_is_woken_at_once() -> None:
    """A group with nothing to do sleeps until its quiet interval is over (docs/design.md §11). A
    cast in another group of its causality domain that waits for it (here: its members have not
    all acknowledged in its new view yet) wakes it, so that it asks them at once: the cast is
    delivered in milliseconds, not after the quiet interval (it took a second when the barrier
    did not wake it)."""
    sim = Simulation(2)
    for i in range(3):
        sim.add(f"p{i}", ["a", "b"], founder=i == 0)
    assert sim.run_until_true(sim.converged, 30, every=0.05)
    sim.run_for(3.0)  # both groups quiet and asleep
    assert not all(sim.procs["p2"].core.groups["b"].stream.heard)  # type: ignore[union-attr]
    delivered: dict[str, set[str]] = {}

    def observe(proc: SimProcess, out: ev.Output) -> None:
        if type(out) is ev.Delivered:
            for mid in out.msgs:
                delivered.setdefault(mid, set()).add(proc.name)

    sim.listeners.append(observe)
    start = sim.now
    mid = sim.cast("p1", "a", b"x", "total")
    assert mid is not None
    assert sim.run_until_true(lambda: len(delivered.get(mid, ())) == 3, 5, every=0.001)
    assert sim.now - start < 0.1
