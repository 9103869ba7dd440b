"""A virtual network of simulated processes on a virtual clock.

Links are FIFO like TCP connections, with a seeded latency. Faults: crash (the process stops
without a trace ``stop``), partitions (frames across a cut are dropped, as a broken TCP connection
would drop them), and pauses. A process that learns it was excluded restarts as a new incarnation
and rejoins its groups, as the runtime does. Each process keeps a toy replicated state per group
(a digest chained over every delivered message) so that state transfer can be checked.
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
from ..trace import TraceWriter


@dataclass
class SimProcess:
    name: str
    addr: str
    groups: list[str]
    founder: bool
    core: NodeCore
    trace: TraceWriter
    up: bool = True
    paused_until: float = 0.0
    digests: dict[str, str] = field(default_factory=dict)
    views: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    delivered: int = 0
    incarnations: int = 1


class Simulation:
    def __init__(
        self, seed: int = 0, config: Config | None = None, trace_dir: str | Path | None = None,
        latency: tuple[float, float] = (0.0002, 0.002), tick: float = 0.005,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.cfg = config or Config()
        self.trace_dir = trace_dir
        self.latency = latency
        self.tick_interval = tick
        self.now = 0.0
        self.queue: list[tuple[float, int, Callable[[], None]]] = []
        self.counter = 0
        self.procs: dict[str, SimProcess] = {}
        self.by_addr: dict[str, SimProcess] = {}
        self.link_free: dict[tuple[str, str], float] = {}
        self.components: list[set[str]] | None = None
        self.listeners: list[Callable[[SimProcess, ev.Output], None]] = []

    # -- scheduling ------------------------------------------------------------------------------

    def at(self, when: float, action: Callable[[], None]) -> None:
        self.counter += 1
        heapq.heappush(self.queue, (when, self.counter, action))

    def run_until(self, until: float) -> None:
        while self.queue and self.queue[0][0] <= until:
            when, _, action = heapq.heappop(self.queue)
            self.now = when
            action()
        self.now = max(self.now, until)

    def run_for(self, duration: float) -> None:
        self.run_until(self.now + duration)

    def run_until_true(self, predicate: Callable[[], bool], limit: float) -> bool:
        """Advance until ``predicate()`` holds (checked every tick) or ``limit`` virtual seconds pass."""
        deadline = self.now + limit
        while self.now < deadline:
            if predicate():
                return True
            self.run_for(self.tick_interval)
        return predicate()

    # -- processes -------------------------------------------------------------------------------

    def add(self, name: str, groups: Iterable[str], founder: bool = False) -> SimProcess:
        addr = f"sim:{len(self.procs) + 1}"
        proc = SimProcess(name, addr, list(groups), founder, *self._incarnate(name, addr, 0))
        self.procs[name] = proc
        self.by_addr[addr] = proc
        self._start(proc)
        return proc

    def _incarnate(self, name: str, addr: str, inc: int) -> tuple[NodeCore, TraceWriter]:
        core = NodeCore(name, inc, addr, self.cfg, seed=self.seed)
        return core, TraceWriter(self.trace_dir, name, inc, lambda: self.now)

    def _start(self, proc: SimProcess) -> None:
        seeds = [p.addr for p in self.procs.values()]
        founder = proc.founder and proc.incarnations == 1  # its disk remembers that the group exists
        for group in proc.groups:
            proc.digests[group] = ""
            proc.core.join(group, seeds, self.now, founder=founder)
        self._handle(proc)
        self._schedule_tick(proc, proc.core)

    def _schedule_tick(self, proc: SimProcess, core: NodeCore) -> None:
        def tick() -> None:
            if proc.core is not core or not proc.up:
                return
            if self.now >= proc.paused_until:
                core.tick(self.now)
                self._handle(proc)
            self.at(self.now + self.tick_interval, tick)

        self.at(self.now + self.rng.uniform(0, self.tick_interval), tick)

    def crash(self, name: str) -> None:
        proc = self.procs[name]
        proc.up = False
        proc.trace.close(clean=False)

    def restart(self, name: str) -> None:
        """Start a crashed process again as a new incarnation."""
        proc = self.procs[name]
        proc.incarnations += 1
        proc.core, proc.trace = self._incarnate(name, proc.addr, proc.core.inc + 1)
        proc.up = True
        proc.views.clear()
        self._start(proc)

    def pause(self, name: str, duration: float) -> None:
        self.procs[name].paused_until = self.now + duration

    def partition(self, *components: Iterable[str]) -> None:
        self.components = [set(c) for c in components]

    def heal(self) -> None:
        self.components = None

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.up:
                proc.trace.close(clean=True)
                proc.up = False

    # -- application -----------------------------------------------------------------------------

    def cast(self, name: str, group: str, payload: bytes, order: str) -> str | None:
        proc = self.procs[name]
        if not proc.up or group not in proc.core.groups or proc.core.groups[group].state != "member":
            return None
        mid = proc.core.cast(group, payload, order, self.now)
        self._handle(proc)
        return mid

    def leave(self, name: str, group: str) -> None:
        proc = self.procs[name]
        proc.core.leave(group, self.now)
        self._handle(proc)

    # -- plumbing --------------------------------------------------------------------------------

    def _connected(self, a: str, b: str) -> bool:
        if self.components is None:
            return True
        return any(a in c and b in c for c in self.components)

    def _handle(self, proc: SimProcess) -> None:
        core = proc.core
        outputs = core.take_outputs()
        while outputs:
            for out in outputs:
                self._output(proc, core, out)
            if proc.core is not core:
                return
            outputs = core.take_outputs()

    def _output(self, proc: SimProcess, core: NodeCore, out: ev.Output) -> None:
        proc.trace.record(out)
        for listener in self.listeners:
            listener(proc, out)
        if isinstance(out, ev.Transmit):
            self._transmit(proc, out)
        elif isinstance(out, ev.Delivered):
            proc.delivered += 1
            if out.order in ("total", "safe"):  # the replicated state: only totally ordered updates
                proc.digests[out.group] = hashlib.sha256(
                    (proc.digests[out.group] + out.msg).encode() + out.payload).hexdigest()[:16]
        elif isinstance(out, ev.ViewInstalled):
            proc.views[out.group] = (out.view, out.members)
        elif isinstance(out, ev.NeedState):
            core.provide_state(out.group, out.view, proc.digests[out.group].encode(), self.now)
        elif isinstance(out, ev.StateReady):
            proc.digests[out.group] = out.data.decode()
        elif isinstance(out, ev.Excluded) and proc.core is core:
            proc.trace.close(clean=False)
            proc.core, proc.trace = self._incarnate(proc.name, proc.addr, core.inc + 1)
            proc.incarnations += 1
            proc.views.clear()
            self._start(proc)

    def _transmit(self, proc: SimProcess, out: ev.Transmit) -> None:
        dst = self.by_addr.get(out.addr)
        if dst is None or not self._connected(proc.name, dst.name):
            return
        link = (proc.addr, out.addr)
        arrival = max(self.now + self.rng.uniform(*self.latency), self.link_free.get(link, 0.0))
        self.link_free[link] = arrival
        src_name = proc.name

        def arrive() -> None:
            if dst.up and self._connected(src_name, dst.name):
                if self.now < dst.paused_until:
                    self.at(dst.paused_until, arrive)
                    return
                dst.core.receive(out.data, self.now)
                self._handle(dst)

        self.at(arrival, arrive)

    def summary(self) -> dict[str, Any]:
        return {name: {"up": p.up, "views": p.views, "digests": p.digests} for name, p in self.procs.items()}
