"""Random fault scenarios within the fault model, each a pure function of its ``Spec`` (a seed).

The fault model — what vsgroups promises to survive, and so what the generator may do:

* **fail-stop processes**: a process crashes (its incarnation ends for good) and may restart as a
  new incarnation; a process pauses (no timers, no input) long enough to be falsely suspected,
  after which the group may exclude it and it rejoins as a new incarnation.
* **omission**: frames are lost (in bursts), duplicated, reordered or delayed by latency spikes; a
  frame that arrives is the frame that was sent.
* **partitions** into arbitrary sets of components, and heals.
* **membership changes**: brand-new processes join, members leave groups voluntarily and join
  other groups; each process belongs to 1–3 of the scenario's groups. The groups share one
  causality domain, so every cast after deliveries in another group is a chain across groups
  (1991 §4); in a quarter of the runs (``APART``) the last group has a domain of its own.
* **no Byzantine behaviour**: no corrupted, forged or replayed-from-an-old-incarnation frames that
  the transport would not produce, no process that lies.

A group in primary-component mode legitimately blocks forever once a quorum of its current view is
dead, and a run that ends that way proves nothing. So permanent faults (crashes, leaves) are drawn
only when every view a group may currently be in (the newest installed, or a successor already
accepted) keeps a quorum of live incarnations — counting as dead every process *at risk*: one that
is paused, behind a long latency spike, cut off from a group's primary side, left behind by a view
change it has not heard of yet, joining, or waiting for state, because the group may exclude it
(or it may give up joining), and ending one incarnation ends the process's membership of all its
groups. Temporary faults (partitions, pauses, long spikes)
obey the same rule, and partitions and pauses also keep, for every group, a quorum of the newest
view up, unpaused and in one component — except for a fraction (``BLOCKING``) that cut every quorum
and so make the group wait for the heal. Faults stop after ``duration``; then the final phase
heals the network, restarts crashed processes, lets pauses end and requires *convergence*: within
``CONVERGE_LIMIT`` virtual seconds every group has one view, installed by exactly the live
processes that belong to it, keeps it for ``SETTLE`` seconds (no suspicion pending), and every
cast is sent and stable (a cast held by its causality domain may leave well after the load). Every
process then stops cleanly and the checker verifies the traces, with the liveness property; the
members of each group must also hold the same replicated state. ``docs/simulation.md`` has the
rates and ranges of every fault.

With ``model="evs"`` every group runs in extended virtual synchrony: no component ever blocks, so
no quorum limits the faults, and the replicated states are not compared (components that merge
keep what each did apart; reconciling it is the application's business in EVS). Half the crashed
processes recover with their identifier and stable storage (1994 §2) instead of restarting as new
incarnations.
"""

from __future__ import annotations

import random
import tempfile
import time
import traceback
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..check import Violation, check_dir
from ..core import Config
from ..core.ids import name_inc, view_epoch
from ..core.membership import is_quorum
from .cluster import Simulation

ORDERS = ("fifo", "causal", "total", "safe")
MODELS = ("vs", "evs")
FAULTS = ("crash", "partition", "pause", "loss", "dup", "reorder", "spike", "join", "leave")
GROUPS = ("a", "b", "c")
#: Protocol timings of every simulated run: fast failure detection keeps runs short in virtual time.
CONFIG = Config(heartbeat_interval=0.05, suspect_timeout=0.5, proposal_timeout=1.0, found_timeout=0.5,
                ack_delay=0.01)
DURATION = 4.0  # virtual seconds of workload and faults
WARMUP = 1.0  # the groups form before the first fault
TICK = 0.01  # timer resolution of the simulated processes
RATE = 40.0  # cast bursts per second per process
FAULT_EVERY = 0.35  # mean virtual time between faults
MAX_JOINERS = 2  # brand-new processes per run
BLOCKING = 0.1  # fraction of partitions and pauses allowed to cut every quorum of a group
SHORT_SPIKE = 0.2  # longest spike on links of several processes: shorter than suspicion
CONVERGE_LIMIT = 30.0
SETTLE = 1.5  # three suspicion timeouts
SIZES = (8, 8, 64, 64, 300, 2000)
APART = 0.25  # fraction of runs whose last group is in a causality domain of its own


@dataclass(frozen=True)
class Spec:
    """What a run is a function of. ``nodes`` None draws 5–7 from the seed."""

    seed: int
    nodes: int | None = None
    faults: tuple[str, ...] = FAULTS
    duration: float = DURATION
    model: str = "vs"
    broken: bool = False  # the core that ignores causality across groups: the checker must fail it

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}: use {' or '.join(MODELS)}")
        unknown = [f for f in self.faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault kind {', '.join(unknown)}: use {','.join(FAULTS)}")
        if self.nodes is not None and self.nodes < 1:
            raise ValueError("a scenario needs at least one node")

    def options(self) -> str:
        """The command-line options beyond ``--seed`` that reproduce this spec."""
        opts = [] if self.nodes is None else [f"--nodes {self.nodes}"]
        if self.model != "vs":
            opts.append(f"--model {self.model}")
        if self.faults != FAULTS:
            opts.append(f"--faults {','.join(self.faults) or 'none'}")
        if self.duration != DURATION:
            opts.append(f"--duration {self.duration:g}")
        if self.broken:
            opts.append("--broken")
        return " ".join(opts)

    def command(self) -> str:
        return " ".join(filter(None, [f"vsgroups sim --seed {self.seed}", self.options()]))


@dataclass
class Outcome:
    spec: Spec
    nodes: int = 0
    converged: bool = False
    converge_time: float | None = None  # virtual seconds from the final heal to a stable convergence
    digests_agree: bool | None = None  # None: not compared (evs, where components diverge)
    violations: list[Violation] = field(default_factory=list)
    error: str | None = None  # the traceback, if the simulated code raised
    log: list[tuple[float, str]] = field(default_factory=list)  # faults and membership changes
    processes: int = 0  # initial nodes and brand-new joiners
    incarnations: int = 0
    faults: int = 0
    casts: int = 0
    deliveries: int = 0
    frames: int = 0
    end_time: float = 0.0  # virtual
    cpu_time: float = 0.0  # CPU seconds spent simulating (real seconds on an idle core)
    check_time: float = 0.0  # CPU seconds spent checking the traces

    @property
    def ok(self) -> bool:
        return (self.error is None and self.converged and self.digests_agree is not False
                and not self.violations)

    def problems(self) -> list[str]:
        if self.error is not None:
            return [f"exception: {self.error.strip().splitlines()[-1]}\n{self.error}"]
        out = [f"{v.prop}: {v.message}" + (f"\n    at {', '.join(v.evidence[:4])}" if v.evidence else "")
               for v in self.violations]
        if not self.converged:
            out.append(f"convergence: the live processes did not converge on one view per group within "
                       f"{CONVERGE_LIMIT:g}s of the final heal")
        elif self.digests_agree is False:
            out.append("state: the members of a group ended with different replicated states")
        return out


def run(spec: Spec, trace_dir: str | Path | None = None) -> Outcome:
    """Run ``spec``, writing traces to ``trace_dir`` (a temporary directory if None), and check them."""
    if trace_dir is None:
        with tempfile.TemporaryDirectory(prefix="vsgroups-sim-") as tmp:
            return run(spec, tmp)
    started = time.process_time()
    scenario = _Run(spec, trace_dir)
    outcome = scenario.outcome
    try:
        scenario.execute()
    except Exception:  # a crash of the protocol core is a finding like any violation
        outcome.error = traceback.format_exc()
        scenario.sim.abandon()
    checked = time.process_time()
    outcome.cpu_time = checked - started
    if outcome.error is None:
        outcome.violations = check_dir(trace_dir, live=True, model=spec.model)
        outcome.check_time = time.process_time() - checked
    return outcome


class _Run:
    """One scenario: the workload and fault events it schedules on a simulation, then the final phase."""

    def __init__(self, spec: Spec, trace_dir: str | Path | None) -> None:
        self.spec = spec
        self.rng = random.Random(f"{spec.seed}/scenario")
        drawn = self.rng.choice((5, 6, 7))
        # drawn apart from the scenario's other choices, so the rest of a seed's run does not move
        domains = {GROUPS[-1]: "apart"} if random.Random(f"{spec.seed}/domains").random() < APART else {}
        self.sim = Simulation(seed=spec.seed, config=CONFIG, trace_dir=trace_dir, tick=TICK, model=spec.model,
                              domains=domains, broken=spec.broken)
        self.evs = spec.model == "evs"
        self.outcome = Outcome(spec, nodes=spec.nodes or drawn)
        self.t_end = spec.duration
        self.final = False
        self.partitions = 0  # partitions so far: a heal ends only the partition that scheduled it
        self.spiked: dict[str, float] = {}  # process -> end of a spike that may get it suspected

    def execute(self) -> None:
        self.start(self.outcome.nodes)
        if self.spec.faults:
            self.sim.at(WARMUP + self.rng.expovariate(1 / FAULT_EVERY), self.fault)
        self.sim.run_until(self.t_end)
        self.finish()

    # -- setup and workload ----------------------------------------------------------------------

    def start(self, nodes: int) -> None:
        for group, domain in self.sim.domains.items():
            self.log(f"group {group} in causality domain {domain}")
        rng = self.rng
        names = [f"n{i + 1}" for i in range(nodes)]
        member_of = {name: rng.sample(GROUPS, rng.randint(1, len(GROUPS))) for name in names}
        for group in GROUPS:  # every group starts with at least three members (or every node)
            lacking = [n for n in names if group not in member_of[n]]
            rng.shuffle(lacking)
            while lacking and sum(group in gs for gs in member_of.values()) < 3:
                member_of[lacking.pop()].append(group)
        founded: set[str] = set()
        for name in names:
            groups = sorted(member_of[name])
            self.add(name, groups, [g for g in groups if g not in founded])
            founded.update(groups)

    def add(self, name: str, groups: list[str], founds: Iterable[str] = ()) -> None:
        self.sim.add(name, groups, founder=founds)
        self.log(f"start {name} in {', '.join(groups)}")
        self.sim.at(self.sim.now + self.rng.expovariate(RATE), self.cast, name)

    def cast(self, name: str) -> None:
        if self.sim.now >= self.t_end:
            return
        proc = self.sim.procs[name]
        rng = self.rng
        if proc.groups:
            group = rng.choice(proc.groups)
            order = rng.choice(ORDERS)
            for _ in range(rng.choice((1, 1, 1, 2, 4))):  # applications cast in bursts too
                if self.sim.cast(name, group, rng.randbytes(rng.choice(SIZES)), order) is not None:
                    self.outcome.casts += 1
        self.sim.at(self.sim.now + rng.expovariate(RATE), self.cast, name)

    def log(self, what: str) -> None:
        self.outcome.log.append((round(self.sim.now, 6), what))

    # -- faults ----------------------------------------------------------------------------------

    def fault(self) -> None:
        sim, rng = self.sim, self.rng
        if sim.now >= self.t_end:
            return
        kind = rng.choice(self.spec.faults)
        logged = len(self.outcome.log)
        getattr(self, f"fault_{kind}")()
        self.outcome.faults += len(self.outcome.log) > logged
        sim.at(sim.now + rng.expovariate(1 / FAULT_EVERY), self.fault)

    def fault_crash(self) -> None:
        sim, rng = self.sim, self.rng
        risk = self.at_risk()
        victims = [p.name for p in sim.live() if self.survivable(risk | {p.name})]
        if not victims:
            return
        victim = rng.choice(victims)
        self.log(f"crash {sim.procs[victim].pid}")
        sim.crash(victim)
        if rng.random() < 0.7:
            sim.at(sim.now + rng.uniform(0.2, 3.0), self.restart, victim)

    def restart(self, name: str, final: bool = False) -> None:
        """Restart a crashed process: as a new incarnation, or (evs, half the time) with its identifier
        and stable storage."""
        if (self.final and not final) or self.sim.procs[name].up:
            return
        if self.evs and self.rng.random() < 0.5 and self.sim.recoverable(name):
            self.sim.recover(name)
            self.log(f"recover {self.sim.procs[name].pid} from stable storage{' (final)' if final else ''}")
        else:
            self.sim.restart(name)
            self.log(f"restart {name} as {self.sim.procs[name].pid}{' (final)' if final else ''}")

    def fault_partition(self) -> None:
        sim, rng = self.sim, self.rng
        count = rng.choice((2, 2, 3))
        components: list[list[str]] = [[] for _ in range(count)]
        for name in sim.procs:
            components[rng.randrange(count)].append(name)
        components = [c for c in components if c]
        blocking = rng.random() < BLOCKING
        if len(components) < 2 or not self.survivable(self.at_risk(components)) or not (
                blocking or self.progresses(components, self.paused())):
            return
        sim.partition(*components)
        self.partitions += 1
        duration = rng.uniform(0.3, 2.0)
        self.log(f"partition {' | '.join(' '.join(c) for c in components)} for {duration:.2f}s")
        sim.at(sim.now + duration, self.heal, self.partitions)

    def heal(self, partition: int) -> None:
        if not self.final and partition == self.partitions:
            self.sim.net.reconnect()
            self.log("heal partition")

    def fault_pause(self) -> None:
        sim, rng = self.sim, self.rng
        paused = self.paused()
        victim = rng.choice([p.name for p in sim.live()])
        blocking = rng.random() < BLOCKING
        if victim in paused or not self.survivable(self.at_risk() | {victim}) or not (
                blocking or self.progresses(self.components(), paused | {victim})):
            return
        duration = rng.uniform(0.1, 1.5)
        sim.pause(victim, duration)
        self.log(f"pause {sim.procs[victim].pid} for {duration:.2f}s")

    def fault_join(self) -> None:
        sim, rng = self.sim, self.rng
        if len(sim.procs) - self.outcome.nodes < MAX_JOINERS and rng.random() < 0.5:
            name = f"n{len(sim.procs) + 1}"
            if sim.net.cut is not None:  # it starts in one of the components
                sim.net.cut[name] = rng.randrange(max(sim.net.cut.values()) + 1)
            self.add(name, sorted(rng.sample(GROUPS, rng.randint(1, 2))))
            return
        options = [(p.name, g) for p in sim.live() if not sim.paused(p.name)
                   for g in GROUPS if g not in p.groups and g not in p.core.groups]
        if options:
            name, group = rng.choice(options)
            sim.join(name, group)
            self.log(f"{sim.procs[name].pid} joins {group}")

    def fault_leave(self) -> None:
        sim, rng = self.sim, self.rng
        risk = self.at_risk()
        options = [(p.name, g) for p in sim.live() for g in p.groups
                   if g in p.views and not sim.paused(p.name) and self.survivable(risk | {p.name}, [g])]
        if options:
            name, group = rng.choice(options)
            self.log(f"{sim.procs[name].pid} leaves {group}")
            sim.leave(name, group)

    def fault_loss(self) -> None:
        self.degrade("loss", self.rng.uniform(0.005, 0.02))  # bursts make that 1.25-5% of frames

    def fault_dup(self) -> None:
        self.degrade("dup", self.rng.uniform(0.01, 0.1))

    def fault_reorder(self) -> None:
        self.degrade("reorder", self.rng.uniform(0.05, 0.3))

    def fault_spike(self) -> None:
        self.degrade("spike", self.rng.uniform(0.02, 0.8), self.rng.uniform(0.05, 0.5))

    def degrade(self, kind: str, value: float, duration: float | None = None) -> None:
        """Degrade the links of one process (both ways), or a random third of all links. Only the
        former may suffer spikes long enough for a false suspicion (one process at risk)."""
        sim, rng = self.sim, self.rng
        names = list(sim.procs)
        duration = rng.uniform(0.2, 1.5) if duration is None else duration
        if rng.random() < 0.5:
            one = rng.choice(names)
            if kind == "spike" and not self.survivable(self.at_risk() | {one}):
                return
            links = [(one, n) for n in names if n != one] + [(n, one) for n in names if n != one]
            where = f"links of {one}"
            if kind == "spike":
                self.spiked[one] = max(self.spiked.get(one, 0.0), sim.now + duration + value)
        else:
            links = [(a, b) for a in names for b in names if a != b and rng.random() < 0.33]
            where = f"{len(links)} links"
            if kind == "spike":
                value = min(value, SHORT_SPIKE)
        sim.degrade(kind, links, value, duration)
        self.log(f"{kind} {value:.3g} on {where} for {duration:.2f}s")

    # -- the fault model's limits ----------------------------------------------------------------

    def views(self, group: str) -> list[tuple[str, ...]]:
        """Member lists of the views ``group`` may be in now: the newest installed at a live process,
        and successors already accepted (decided perhaps, installed nowhere yet)."""
        installed: list[tuple[int, tuple[str, ...]]] = []
        accepted: list[tuple[int, tuple[str, ...]]] = []  # may never be decided: the view stays too
        for proc in self.sim.live():
            status = proc.core.status(group)
            if status is None or status.view is None:
                continue
            installed.append((view_epoch(status.view), status.members))
            if status.accepted is not None:
                view, members = status.accepted
                accepted.append((view_epoch(view), members))
        newest = max((epoch for epoch, _ in installed), default=0)
        return [members for epoch, members in installed + accepted if epoch >= newest]

    def alive(self, pid: str, group: str) -> bool:
        """Is member ``pid`` of ``group`` up (its process running, under that id in that group)?"""
        proc = self.sim.procs.get(name_inc(pid).name)
        return proc is not None and proc.up and proc.member_id(group) == pid

    def survivable(self, lost: set[str], groups: Iterable[str] | None = None) -> bool:
        """Would every view ``groups`` (all by default) may be in keep a quorum of live incarnations
        if the processes named in ``lost`` died? EVS groups never block, but one whose every member
        is gone is gone (nobody founds it again): it must keep a live member that has its state."""
        if self.evs:
            return all(any(p.name not in lost and (st := p.core.status(group)) is not None
                           and st.can_cast and not st.awaiting_state
                           for p in self.sim.live())
                       for group in (self.sim.groups() if groups is None else groups))
        return all(
            is_quorum(members, {m for m in members if self.alive(m, group) and name_inc(m)[0] not in lost})
            for group in (self.sim.groups() if groups is None else groups) for members in self.views(group)
        )

    def progresses(self, components: list[list[str]], paused: Collection[str]) -> bool:
        """Would every group keep a quorum of its views up, unpaused and in one component?"""
        return self.evs or all(self.primary_side(group, members, components, paused) is not None
                   for group in self.sim.groups() for members in self.views(group))

    def primary_side(self, group: str, members: tuple[str, ...], components: list[list[str]],
                     paused: Collection[str] = ()) -> list[str] | None:
        for component in components:
            usable = {m for m in members if self.alive(m, group) and name_inc(m)[0] in component
                      and name_inc(m)[0] not in paused}
            if is_quorum(members, usable):
                return component
        return None

    def at_risk(self, components: list[list[str]] | None = None) -> set[str]:
        """Processes whose incarnation may end without a crash: a member of any group that the group
        may exclude or has excluded already (paused, behind a long latency spike, left behind, or cut
        off from the group's primary side by the partition ``components``, the current one by
        default — every member if no side holds a quorum, since whichever side forms one first at
        the heal excludes the others), or a joiner
        that may give up. Such a process counts as lost in *every* group: an over-approximation
        (an exclusion ends its membership of that group alone) that keeps the bound simple."""
        sim = self.sim
        risk = {p.name for p in sim.live() for group in p.core.groups
                if (st := p.core.status(group)) is not None and (st.state == "joining" or st.awaiting_state)}
        if self.evs:
            return risk  # evs excludes nobody: partitions, pauses and spikes only split configurations
        risk |= self.paused() | {name for name, until in self.spiked.items() if until > sim.now}
        risk |= self.left_behind()
        components = self.components() if components is None else components
        if len(components) < 2:
            return risk
        for group in sim.groups():
            for members in self.views(group):
                side = self.primary_side(group, members, components) or []  # no side: anyone may win the heal
                risk |= {name_inc(m)[0] for m in members if name_inc(m)[0] not in side}
        return risk

    def left_behind(self) -> set[str]:
        """Processes still in a view of some group that the group has already succeeded without
        them: they will learn that they were excluded, and restart."""
        newest: dict[str, tuple[int, tuple[str, ...]]] = {}
        for proc in self.sim.live():
            for group, e in proc.core.groups.items():
                if e.view_id is not None:
                    newest[group] = max(newest.get(group, (-1, ())), (view_epoch(e.view_id), e.members))
        return {p.name for p in self.sim.live() for group, e in p.core.groups.items()
                if e.view_id is not None and view_epoch(e.view_id) < newest[group][0]
                and e.me not in newest[group][1]}

    def paused(self) -> set[str]:
        return {p.name for p in self.sim.live() if self.sim.paused(p.name)}

    def components(self) -> list[list[str]]:
        cut = self.sim.net.cut
        if cut is None:
            return [list(self.sim.procs)]
        return [[n for n in self.sim.procs if cut.get(n, 0) == i] for i in range(max(cut.values()) + 1)]

    # -- the final phase -------------------------------------------------------------------------

    def finish(self) -> None:
        sim, outcome = self.sim, self.outcome
        self.final = True
        sim.heal()
        self.log("final heal")
        for proc in list(sim.procs.values()):
            self.restart(proc.name, final=True)
        sim.run_until(max(p.paused_until for p in sim.procs.values()))
        healed = sim.now
        deadline = healed + CONVERGE_LIMIT
        while sim.now < deadline and not outcome.converged:
            if sim.run_until_true(sim.converged, deadline - sim.now, every=0.05):
                converged_at = sim.now
                sim.run_for(SETTLE)  # still converged once every suspicion that could be pending fired
                # and every cast made is out and stable: the processes stop owing nothing
                if sim.run_until_true(sim.quiet, deadline - sim.now, every=0.05) and sim.converged():
                    outcome.converged = True
                    outcome.converge_time = converged_at - healed
        if not self.evs:
            outcome.digests_agree = all(
                len({p.digests.get(g) for p in sim.live() if g in p.groups}) <= 1 for g in sim.groups())
        outcome.deliveries = sum(p.delivered for p in sim.procs.values())
        outcome.processes = len(sim.procs)
        outcome.incarnations = sum(p.incarnations for p in sim.procs.values())
        outcome.frames = sim.frames
        outcome.end_time = sim.now
        sim.stop_all()
