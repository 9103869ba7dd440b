"""Many groups per node: ``vsgroups sim --groups 1000 [--json]`` (docs/benchmarks.md, "Many groups
per node").

ISIS applications use many small, overlapping groups — one per object — so a process is in a great
many of them at once (1991 §2.3). This report runs that case on the deterministic simulator (the
very cores a node runs, on a virtual clock): five processes and ``groups`` groups, each with three
to five of them drawn from the seed, each group in a causality domain of its own (independent
objects; in one shared domain every cast would wait for the deliveries of every other group,
docs/guide/domains.md), and measures what an idle group costs a node:

* the virtual time until every group has formed (the processes start together and join every
  group they belong to; the first member of each founds it);
* memory per group membership: the Python heap the protocol cores hold once every group has
  formed (``tracemalloc``, allocations made by ``vsgroups.core``), divided by the memberships;
* idle CPU per group membership and per node, per virtual second (heartbeats and timers only);
* a light load — one total-order cast per group per virtual second, from its members in turn —
  delivered everywhere, and its CPU per delivery;
* a crash of one process: the longest time, over the groups it was in, from the crash to the
  new view at every survivor, against ``suspect_timeout``.

CPU times are real (``time.process_time``) and so depend on the machine; the rest is a function of
the seed.
"""

from __future__ import annotations

import random
import time
import tracemalloc
from dataclasses import asdict, dataclass

from ..core import events as ev
from .cluster import SimProcess, Simulation

NODES = 5
IDLE = 2.0  # virtual seconds of the idle measurement
LOAD = 2.0  # virtual seconds of the light load: one cast per group per second
SETTLE_LIMIT = 120.0


@dataclass(frozen=True)
class ManyGroups:
    groups: int
    nodes: int
    memberships: int
    formed_s: float  # virtual seconds until every group formed
    memory_per_membership_kib: float
    idle_cpu_per_membership_us_per_s: float
    idle_cpu_per_node_ms_per_s: float
    load_cpu_per_delivery_us: float
    crash_groups: int  # groups the crashed process was in
    crash_to_views_ms: float  # the slowest of them, at every survivor
    suspect_timeout_ms: float

    def text(self) -> str:
        return "\n".join([
            f"{self.groups} groups on {self.nodes} processes, {self.memberships} memberships "
            f"({self.memberships / self.nodes:.0f} groups per process)",
            f"every group formed after   {self.formed_s:.2f} s (virtual)",
            f"memory per membership      {self.memory_per_membership_kib:.1f} KiB (protocol cores' heap)",
            f"idle CPU per membership    {self.idle_cpu_per_membership_us_per_s:.1f} µs/s",
            f"idle CPU per process       {self.idle_cpu_per_node_ms_per_s:.1f} ms/s",
            f"light load, CPU/delivery   {self.load_cpu_per_delivery_us:.1f} µs "
            "(one cast per group per second)",
            f"crash of a process in {self.crash_groups} groups: every one of them has its new view after "
            f"{self.crash_to_views_ms:.0f} ms (suspicion timeout {self.suspect_timeout_ms:.0f} ms)",
        ])


def measure(groups: int, seed: int = 0) -> ManyGroups:
    rng = random.Random(f"{seed}/many-groups")
    names = [f"p{i}" for i in range(NODES)]
    # a group's founder is its first member in start order, so every other member's seeds hold it
    members = {f"g{k}": sorted(rng.sample(names, rng.randint(3, min(5, NODES)))) for k in range(groups)}
    tracemalloc.start()
    try:
        sim = Simulation(seed, domains={group: group for group in members})
        start = sim.now
        for name in names:
            mine = [g for g, ms in members.items() if name in ms]
            sim.add(name, mine, founder=[g for g in mine if members[g][0] == name])
        if not sim.run_until_true(sim.converged, SETTLE_LIMIT, every=0.05):
            raise RuntimeError(f"{groups} groups did not all form within {SETTLE_LIMIT}s")
        formed = sim.now - start
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    core = snapshot.filter_traces([tracemalloc.Filter(True, "*/vsgroups/core/*")])
    memberships = sum(len(ms) for ms in members.values())
    memory = sum(stat.size for stat in core.statistics("filename")) / memberships

    sim.run_for(1.0)  # the joins' last acknowledgements and state transfers settle
    started = time.process_time()
    sim.run_for(IDLE)
    idle = time.process_time() - started

    deliveries = [0]

    def count(proc: SimProcess, out: ev.Output) -> None:
        if type(out) is ev.Delivered:
            deliveries[0] += len(out.msgs)

    sim.listeners.append(count)
    casts = 0
    for second in range(int(LOAD)):
        for k, (group, ms) in enumerate(members.items()):
            sim.at(sim.now + second + k / groups, _cast, sim, ms[(second + k) % len(ms)], group)
            casts += len(ms)  # deliveries expected
    started = time.process_time()
    if not sim.run_until_true(lambda: deliveries[0] >= casts, SETTLE_LIMIT, every=0.05):
        raise RuntimeError(f"the light load was not delivered within {SETTLE_LIMIT}s")
    load_cpu = time.process_time() - started
    sim.listeners.remove(count)

    victim = names[-1]
    theirs = [g for g, ms in members.items() if victim in ms]
    crashed_at = sim.now
    sim.crash(victim)
    survivors = [sim.procs[n] for n in names[:-1]]

    def new_views() -> bool:
        return all(all(not m.startswith(victim + "#") for m in p.views[g][1])
                   for p in survivors for g in theirs if g in p.groups)

    if not sim.run_until_true(new_views, SETTLE_LIMIT, every=0.001):
        raise RuntimeError(f"no new view in every group of {victim} within {SETTLE_LIMIT}s of its crash")
    return ManyGroups(
        groups, NODES, memberships, formed, memory / 1024, idle / memberships / IDLE * 1e6,
        idle / NODES / IDLE * 1e3, load_cpu / max(1, casts) * 1e6, len(theirs), (sim.now - crashed_at) * 1e3,
        sim.cfg.suspect_timeout * 1e3)


def _cast(sim: Simulation, name: str, group: str) -> None:
    if sim.cast(name, group, b"x" * 100, "total") is None:
        raise RuntimeError(f"{name} could not cast in {group}: the group is not settled")


def as_json(result: ManyGroups) -> dict[str, float]:
    return asdict(result)
