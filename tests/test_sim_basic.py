"""Smoke tests of the protocol core inside the simulator: join, load, crash, rejoin."""

from __future__ import annotations

from vsgroups.sim import Simulation

ORDERS = ["fifo", "causal", "total", "safe"]


def converged(sim: Simulation, group: str, size: int) -> bool:
    views = {p.views.get(group) for p in sim.procs.values() if p.up}
    return len(views) == 1 and (v := views.pop()) is not None and len(v[1]) == size


def start(sim: Simulation, names: list[str]) -> None:
    sim.add(names[0], ["g"], founder=True)
    for name in names[1:]:
        sim.add(name, ["g"])
    assert sim.run_until_true(lambda: converged(sim, "g", len(names)), 20)


def load(sim: Simulation, names: list[str], rounds: int) -> None:
    for i in range(rounds):
        for name in names:
            sim.cast(name, "g", f"{name}-{i}".encode(), ORDERS[i % 4])
        sim.run_for(0.003)


def test_three_members_agree_under_mixed_load(tmp_path) -> None:
    sim = Simulation(seed=1, trace_dir=tmp_path)
    names = ["a", "b", "c"]
    start(sim, names)
    load(sim, names, 200)
    sim.run_for(1)
    assert {p.delivered for p in sim.procs.values()} == {600}
    assert len({p.digests["g"] for p in sim.procs.values()}) == 1


def test_crash_of_coordinator_and_rejoin_with_state(tmp_path) -> None:
    sim = Simulation(seed=2, trace_dir=tmp_path)
    names = ["a", "b", "c", "d", "e"]
    start(sim, names)
    load(sim, names, 50)
    sim.crash("a")
    load(sim, names[1:], 50)
    assert sim.run_until_true(lambda: converged(sim, "g", 4), 10)
    sim.restart("a")
    load(sim, names[1:], 20)
    assert sim.run_until_true(lambda: converged(sim, "g", 5), 10)
    sim.run_for(1)
    assert len({p.digests["g"] for p in sim.procs.values()}) == 1
