"""Simulated processes on a virtual clock: the driver that replaces the asyncio runtime.

A ``Simulation`` is a discrete-event loop (a heap of timed actions) over ``NodeCore`` objects — the
very protocol objects the TCP runtime drives — and a ``Network`` (``network.py``) that carries their
frames. Everything random comes from the seed, and nothing reads the real clock, so a run is a pure
function of its seed and inputs: the same seed writes byte-identical traces.

Process faults, all fail-stop: a *crash* ends an incarnation (its trace has no ``stop``; frames in
flight to it are lost with its connections); a *restart* starts the process again as the next
incarnation, which rejoins the groups the process belongs to; a *pause* freezes a process (no
timers, no frame handling, no casts; frames wait in its socket buffer) as a long GC or a swapped-out
process would, and may get it falsely suspected. A process that learns it was excluded from a
group joins that group again under a fresh member id (``NodeCore.rejoin``), as ``api.Node`` does,
while its other groups go on.
Joins and voluntary leaves change the set of groups a process belongs to.

Each process keeps a toy replicated state per group — a digest chained over the totally ordered
messages it delivered, handed to joiners by state transfer — so that the members of a group can be
compared at the end.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import Config, NodeCore
from ..core import events as ev
from ..core.domains import Domain, Domains
from ..core.driver import Driver
from ..core.group import GroupEngine
from ..core.ids import view_epoch
from ..core.wire import History
from ..trace import TraceWriter
from .network import Network


@dataclass(eq=False)
class SimProcess:
    name: str
    addr: str
    groups: list[str]  # the groups this process belongs to (joined, or joining)
    founds: frozenset[str]  # groups its first incarnation may found
    core: NodeCore
    trace: TraceWriter
    up: bool = True
    boots: int = 0  # crashes so far: frames sent to an earlier boot are lost with its connections
    paused_until: float = 0.0
    digests: dict[str, str] = field(default_factory=dict)
    views: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    histories: dict[str, History] = field(default_factory=dict)  # evs: on "stable storage"
    delivered: int = 0
    incarnations: int = 1
    last_inc: int = 0  # the highest incarnation number used so far, by the node or a rejoin

    def member_id(self, group: str) -> str:
        return self.core.member_id(group)

    @property
    def pid(self) -> str:
        return self.core.pid


class Simulation:
    def __init__(
        self, seed: int = 0, config: Config | None = None, trace_dir: str | Path | None = None,
        latency: tuple[float, float] = (0.0002, 0.002), tick: float = 0.005, model: str = "vs",
        domains: dict[str, str] | None = None, broken: bool = False,
    ) -> None:
        """``domains``: the causality domain of a group (the default one if absent); ``broken``:
        every node runs the core that ignores causality across groups (the checker must catch it)."""
        self.seed = seed
        self.model = model  # of every group: "vs" (primary component) or "evs"
        self.domains = domains or {}
        self.broken = broken
        self.cfg = config or Config()
        self.trace_dir = trace_dir
        self.tick_interval = tick
        self.rng = random.Random(f"{seed}/sim")
        self.net = Network(random.Random(f"{seed}/net"), latency)
        self.now = 0.0
        self.queue: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self.counter = 0
        self.procs: dict[str, SimProcess] = {}
        self.by_addr: dict[str, SimProcess] = {}
        self.frames = 0
        self.listeners: list[Callable[[SimProcess, ev.Output], None]] = []
        self.drivers: dict[str, _Outputs] = {}

    # -- scheduling ------------------------------------------------------------------------------

    def at(self, when: float, action: Callable[..., None], *args: Any) -> None:
        self.counter += 1
        heapq.heappush(self.queue, (when, self.counter, action, args))

    def run_until(self, until: float) -> None:
        queue, pop = self.queue, heapq.heappop
        while queue and queue[0][0] <= until:
            when, _, action, args = pop(queue)
            self.now = when
            action(*args)
        self.now = max(self.now, until)

    def run_for(self, duration: float) -> None:
        self.run_until(self.now + duration)

    def run_until_true(self, predicate: Callable[[], bool], limit: float, every: float | None = None) -> bool:
        """Advance until ``predicate()`` holds (checked every ``every``, a tick by default) or ``limit``
        virtual seconds pass."""
        step = every or self.tick_interval
        deadline = self.now + limit
        while self.now < deadline:
            if predicate():
                return True
            self.run_until(min(self.now + step, deadline))
        return predicate()

    # -- processes -------------------------------------------------------------------------------

    def add(self, name: str, groups: Iterable[str], founder: bool | Iterable[str] = False) -> SimProcess:
        """Start a brand-new process that joins ``groups``; ``founder`` (True: all of them) names the
        groups it may found if it hears from no member."""
        addr = f"sim:{len(self.procs) + 1}"
        groups = list(groups)
        founds = frozenset(groups if founder is True else () if founder is False else founder)
        proc = SimProcess(name, addr, groups, founds, *self._incarnate(name, addr, 0))
        self.procs[name] = proc
        self.by_addr[addr] = proc
        self.drivers[name] = _Outputs(self, proc)
        self._start(proc)
        return proc

    def _incarnate(
        self, name: str, addr: str, inc: int, counter: int | None = None
    ) -> tuple[NodeCore, TraceWriter]:
        """``counter``: the message ids an incarnation that recovers has used (None: a new one)."""
        core = NodeCore(name, inc, addr, self.cfg, seed=self.seed, counter=counter or 0)
        if self.broken:
            core.domains = Domains(_IgnoresOtherGroups)
        return core, TraceWriter(self.trace_dir, name, inc, lambda: self.now, recovered=counter is not None)

    def _seeds(self) -> list[str]:
        return [p.addr for p in self.procs.values()]

    def _start(self, proc: SimProcess, stored: dict[str, int] | None = None) -> None:
        """Join every group of ``proc``; recover those in ``stored`` (group: newest epoch) instead."""
        # a restarted or recovered process remembers that its groups exist: it never founds them
        first = proc.incarnations == 1 and stored is None
        seeds = self._seeds()
        for group in proc.groups:
            if stored is not None and group in stored:
                proc.core.recover(group, seeds, self.now, stored[group], proc.histories.get(group),
                                  domain=self.domains.get(group))
                continue
            proc.views.pop(group, None)
            proc.histories.pop(group, None)
            proc.digests[group] = ""
            proc.core.join(group, seeds, self.now, founder=first and group in proc.founds, model=self.model,
                           domain=self.domains.get(group))
        self._handle(proc)
        self.at(self.now + self.rng.uniform(0, self.tick_interval), self._tick, proc, proc.core)

    def _tick(self, proc: SimProcess, core: NodeCore) -> None:
        if proc.core is not core or not proc.up:
            return
        if self.now >= proc.paused_until:
            core.tick(self.now)
            self._handle(proc)
        self.at(max(self.now + self.tick_interval, proc.paused_until), self._tick, proc, core)

    def _next_incarnation(self, proc: SimProcess) -> None:
        proc.last_inc += 1
        proc.core, proc.trace = self._incarnate(proc.name, proc.addr, proc.last_inc)
        proc.incarnations += 1
        proc.views.clear()
        proc.histories.clear()
        self._start(proc)

    def crash(self, name: str) -> None:
        proc = self.procs[name]
        proc.up = False
        proc.boots += 1
        proc.paused_until = 0.0
        proc.trace.close(clean=False)

    def restart(self, name: str) -> None:
        """Start a crashed process again as a new incarnation."""
        proc = self.procs[name]
        if proc.up:
            raise ValueError(f"{name} is running: crash it first")
        proc.up = True
        self._next_incarnation(proc)

    def recover(self, name: str) -> None:
        """Start a crashed process again with its identifier and its stable storage (evs groups only,
        1994 §2): it recovers the groups it was a member of with the state it had (every delivery is
        taken to be written through to storage), and joins the others anew."""
        proc = self.procs[name]
        if proc.up:
            raise ValueError(f"{name} is running: crash it first")
        if self.model != "evs":
            raise ValueError("only evs groups recover with stable storage; vs processes restart")
        proc.up = True
        old = proc.core  # what it had in memory stands for what it had on disk
        stored = {group: view_epoch(st.view) for group in old.groups
                  if (st := old.status(group)) is not None and st.state == "member" and not st.awaiting_state
                  and st.view is not None}
        proc.core, proc.trace = self._incarnate(proc.name, proc.addr, old.inc, old.counter)
        self._start(proc, stored)

    def recoverable(self, name: str) -> bool:
        """Can ``name`` recover its identifier? Not if it installed a view of some group without having
        its state yet: nothing of that group is on stable storage, and it may not join it again under
        an identity the group still counts as a member that acknowledged its messages (seed 20224)."""
        core = self.procs[name].core
        if core.aliases:
            return False  # it joined a group again under another id: its storage names the old one
        return not any((st := core.status(group)) is not None and st.state == "member" and st.awaiting_state
                       for group in core.groups)

    def pause(self, name: str, duration: float) -> None:
        proc = self.procs[name]
        proc.paused_until = max(proc.paused_until, self.now + duration)

    def paused(self, name: str) -> bool:
        return self.now < self.procs[name].paused_until

    def partition(self, *components: Iterable[str]) -> None:
        self.net.partition(components)

    def heal(self) -> None:
        """End the partition and every network degradation."""
        self.net.reconnect()
        self.net.calm()

    def degrade(self, kind: str, links: Iterable[tuple[str, str]], value: float, duration: float) -> None:
        """Degrade ``links`` (pairs of process names) for ``duration``: see ``network.DEGRADATIONS``."""
        self.net.degrade(kind, links, value, self.now + duration)

    def abandon(self) -> None:
        """Close every trace as if the processes crashed (the run cannot go on)."""
        for proc in self.procs.values():
            proc.trace.close(clean=False)
            proc.up = False

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.up:
                proc.trace.close(clean=True)
                proc.up = False

    # -- application -----------------------------------------------------------------------------

    def cast(self, name: str, group: str, payload: bytes, order: str) -> str | None:
        """Cast if ``name`` is up, unpaused and a member of ``group``; the message id, or None."""
        proc = self.procs[name]
        status = proc.core.status(group)
        if not proc.up or self.now < proc.paused_until or status is None or not status.can_cast:
            return None
        mid = proc.core.cast(group, payload, order, self.now)
        self._handle(proc)
        return mid

    def join(self, name: str, group: str) -> None:
        """A running process joins one more group."""
        proc = self.procs[name]
        if group in proc.groups:
            raise ValueError(f"{name} already belongs to group {group!r}")
        proc.groups.append(group)
        if group in proc.core.spent:  # it was in the group before: a fresh member id
            self._join_again(proc, group)
        else:
            proc.digests[group] = ""
            proc.core.join(group, self._seeds(), self.now, model=self.model, domain=self.domains.get(group))
        self._handle(proc)

    def leave(self, name: str, group: str) -> None:
        proc = self.procs[name]
        proc.groups.remove(group)
        if group in proc.core.groups:
            proc.core.leave(group, self.now)
            self._handle(proc)

    # -- observation -----------------------------------------------------------------------------

    def live(self) -> list[SimProcess]:
        return [p for p in self.procs.values() if p.up]

    def groups(self) -> list[str]:
        return sorted({g for p in self.procs.values() for g in p.groups})

    def converged(self) -> bool:
        """Every group has one view, installed by exactly the live processes that belong to it."""
        live = self.live()
        for group in self.groups():
            members = sorted(p.member_id(group) for p in live if group in p.groups)
            views = {p.views.get(group) for p in live if group in p.groups}
            if len(views) != 1:
                return False
            view = views.pop()
            if view is None or sorted(view[1]) != members:
                return False
        return True

    def quiet(self) -> bool:
        """No live process holds a cast it has not sent yet, or a message not stable yet (a cast
        held by its causality domain may wait long after the load stopped)."""
        for p in self.live():
            for group in p.core.groups:
                status = p.core.status(group)
                if status is not None and (status.backlog or status.unstable):
                    return False
        return True

    def summary(self) -> dict[str, Any]:
        return {name: {"up": p.up, "views": p.views, "digests": p.digests} for name, p in self.procs.items()}

    # -- plumbing --------------------------------------------------------------------------------

    def _handle(self, proc: SimProcess) -> None:
        self.drivers[proc.name].drain(proc.core)

    def _rejoin(self, proc: SimProcess, group: str) -> None:
        """``proc`` was excluded from ``group``: it joins it again under a fresh member id."""
        proc.views.pop(group, None)
        proc.histories.pop(group, None)
        if group not in proc.groups:
            proc.digests.pop(group, None)
            return  # it was leaving the group anyway: that ends the leave
        self._join_again(proc, group)

    def _join_again(self, proc: SimProcess, group: str) -> None:
        """``proc`` joins ``group``, which it was in before, under a fresh member id."""
        proc.last_inc += 1
        proc.trace.rejoin(group, proc.last_inc)
        proc.digests[group] = ""
        proc.core.rejoin(group, proc.last_inc, self._seeds(), self.now, model=self.model)

    def _transmit(self, proc: SimProcess, out: ev.Transmit) -> None:
        dst = self.by_addr.get(out.addr)
        if dst is not None:
            self.frames += 1
            for when in self.net.arrivals(proc.name, dst.name, self.now):
                self.at(when, self._arrive, proc.name, dst, dst.boots, out.data)

    def _arrive(self, src: str, dst: SimProcess, boots: int, data: bytes) -> None:
        if not dst.up or dst.boots != boots or not self.net.connected(src, dst.name):
            return
        if self.now < dst.paused_until:
            self.at(dst.paused_until, self._arrive, src, dst, boots, data)
            return
        dst.core.receive(data, self.now)
        self._handle(dst)


class _IgnoresOtherGroups(Domain):
    """The broken core (``--broken``): a cast goes at once, whatever its sender delivered in the
    domain's other groups — causal order across groups is lost."""

    def may_send(self, engine: GroupEngine, counter: int, last_counter: int) -> int | None:
        return last_counter + 1


class _Outputs(Driver):
    """Acts on one simulated process's outputs: the network, the trace, the toy replicated state."""

    def __init__(self, sim: Simulation, proc: SimProcess) -> None:
        super().__init__()
        self.sim = sim
        self.proc = proc

    def observe(self, out: ev.Output) -> None:
        for listener in self.sim.listeners:
            listener(self.proc, out)
        if type(out) is not ev.Transmit:  # the commonest output, and no part of the history
            self.proc.trace.record(out)

    def on_transmit(self, out: ev.Transmit) -> None:
        self.sim._transmit(self.proc, out)

    def on_delivered(self, out: ev.Delivered) -> None:
        proc = self.proc
        proc.delivered += len(out.msgs)
        if out.order in ("total", "safe"):  # the replicated state: only totally ordered updates
            for mid, payload in zip(out.msgs, out.payloads, strict=True):
                proc.digests[out.group] = hashlib.sha256(
                    (proc.digests[out.group] + mid).encode() + payload).hexdigest()[:16]

    def on_view(self, out: ev.ViewInstalled) -> None:
        self.proc.views[out.group] = (out.view, out.members)

    def on_need_state(self, out: ev.NeedState) -> None:
        self.core.provide_state(out.group, out.view, self.proc.digests[out.group].encode(), self.sim.now)

    def on_state_ready(self, out: ev.StateReady) -> None:
        self.proc.digests[out.group] = out.data.decode()

    def on_left(self, out: ev.Left) -> None:
        self.proc.views.pop(out.group, None)
        self.proc.digests.pop(out.group, None)
        self.proc.histories.pop(out.group, None)

    def on_history(self, out: ev.PrimaryHistory) -> None:
        self.proc.histories[out.group] = out.history

    def on_excluded(self, out: ev.Excluded) -> None:
        self.sim._rejoin(self.proc, out.group)
