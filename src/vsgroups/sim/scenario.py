"""Random fault scenarios within the fault model, each a pure function of its seed.

The fault model (what vsgroups promises to survive): fail-stop crashes and restarts as new
incarnations, omission (frames lost when a connection breaks), network partitions and heals, and
pauses long enough to cause false suspicion. No Byzantine behaviour. In VS mode only a primary
component (a quorum of the last primary view) makes progress; faults are drawn so that a majority
of the processes is up and connected most of the time, otherwise the group blocks (correctly) and
the run proves nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from ..core import Config
from ..core.membership import is_quorum
from ..core.wire import view_epoch
from .cluster import Simulation

ORDERS = ("fifo", "causal", "total", "safe")


@dataclass
class Outcome:
    seed: int
    converged: bool
    digests_agree: bool
    delivered: int
    faults: list[str] = field(default_factory=list)
    end_time: float = 0.0

    @property
    def ok(self) -> bool:
        return self.converged and self.digests_agree


def run_scenario(
    seed: int, nodes: int = 5, duration: float = 6.0, trace_dir: str | Path | None = None,
    rate: float = 300.0, fault_every: float = 0.7,
) -> Outcome:
    """Run one random scenario; ``rate`` is casts per second per process."""
    rng = random.Random(seed)
    cfg = Config(suspect_timeout=0.5, heartbeat_interval=0.05, proposal_timeout=1.0, found_timeout=0.5)
    sim = Simulation(seed=seed, config=cfg, trace_dir=trace_dir)
    names = [f"n{i + 1}" for i in range(nodes)]
    sim.add(names[0], ["g"], founder=True)
    for name in names[1:]:
        sim.add(name, ["g"])
    outcome = Outcome(seed, False, False, 0)
    step = 0.005
    casts_per_step = rate * step
    next_fault = 1.5 + rng.expovariate(1 / fault_every)
    partition_until = -1.0
    t_end = duration
    while sim.now < t_end:
        for name in names:
            proc = sim.procs[name]
            if proc.up and sim.now >= proc.paused_until and rng.random() < casts_per_step:
                sim.cast(name, "g", rng.randbytes(rng.choice((8, 64, 300))), rng.choice(ORDERS))
        if sim.now >= next_fault:
            outcome.faults.append(_fault(sim, rng, names))
            next_fault = sim.now + rng.expovariate(1 / fault_every)
            if sim.components is not None and partition_until < sim.now:
                partition_until = sim.now + rng.uniform(0.3, 2.0)
        if sim.components is not None and sim.now >= partition_until:
            sim.heal()
            outcome.faults.append(f"{sim.now:.3f} heal")
        sim.run_for(step)
    sim.heal()
    for name in names:
        if not sim.procs[name].up:
            sim.restart(name)
            outcome.faults.append(f"{sim.now:.3f} restart {name} (final)")

    def converged() -> bool:
        views = {p.views.get("g") for p in sim.procs.values()}
        if len(views) != 1:
            return False
        view = views.pop()
        return view is not None and len(view[1]) == nodes

    sim.run_until(max(p.paused_until for p in sim.procs.values()))
    deadline = sim.now + 30.0
    while sim.now < deadline and not outcome.converged:
        # converged, and still so after every suspicion that could be pending has fired
        outcome.converged = sim.run_until_true(converged, deadline - sim.now)
        sim.run_for(3 * cfg.suspect_timeout)
        outcome.converged = outcome.converged and converged()
    outcome.end_time = sim.now
    outcome.digests_agree = len({p.digests.get("g") for p in sim.procs.values()}) == 1
    outcome.delivered = sum(p.delivered for p in sim.procs.values())
    sim.stop_all()
    return outcome


def _fault(sim: Simulation, rng: random.Random, names: list[str]) -> str:
    up = [n for n in names if sim.procs[n].up]
    down = [n for n in names if not sim.procs[n].up]
    kind = rng.choice(("crash", "restart", "pause", "partition"))
    if kind == "crash" and up:
        victim = rng.choice(up)
        if _keeps_primary(sim, {victim}):
            sim.crash(victim)
            return f"{sim.now:.3f} crash {victim}"
    if kind in ("crash", "restart") and down:
        victim = rng.choice(down)
        sim.restart(victim)
        return f"{sim.now:.3f} restart {victim}"
    if kind == "pause":
        victim = rng.choice(up)
        if _keeps_primary(sim, {victim}):
            duration = rng.uniform(0.2, 1.5)
            sim.pause(victim, duration)
            return f"{sim.now:.3f} pause {victim} {duration:.2f}s"
    if kind == "partition" and sim.components is None:
        minority = set(rng.sample(names, rng.randint(1, (len(names) - 1) // 2)))
        if _keeps_primary(sim, minority):
            sim.partition(minority, [n for n in names if n not in minority])
            return f"{sim.now:.3f} partition {sorted(minority)}"
    return f"{sim.now:.3f} nothing"


def _keeps_primary(sim: Simulation, lost: set[str]) -> bool:
    """Would a quorum of the newest view stay up, unpaused and connected without ``lost``?

    The fault model lets a majority of the primary view survive; losing more blocks the group for
    good (correctly), and a blocked run proves nothing about convergence."""
    views = [p.views["g"] for p in sim.procs.values() if p.up and "g" in p.views]
    if not views:
        return False
    members = max(views, key=lambda v: view_epoch(v[0]))[1]
    alive = set()
    for pid in members:
        name, _, inc = pid.rpartition("#")
        proc = sim.procs[name]
        if (proc.up and proc.core.inc == int(inc) and name not in lost and sim.now >= proc.paused_until
                and sim.components is None):
            alive.add(pid)
    return is_quorum(members, alive)
