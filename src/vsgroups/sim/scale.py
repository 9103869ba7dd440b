"""The scaling report: ``vsgroups sim --scale 3,9,25,50,100 [--json]`` (docs/benchmarks.md, "Cost
against group size").

One group per size, on the deterministic simulator (``cluster.Simulation``, the very cores a node
runs, on a virtual clock, no faults): the members settle, stay idle a while, carry a fixed
total-order load and then a fixed safe load spread evenly over them, and finally one member
crashes. Per size it reports what grows with the group:

* frames and bytes sent per cast, over the total-order load (every frame, heartbeats included);
* CPU per delivery: the process CPU time of the total-order load divided by the deliveries it
  made (a message delivered by n members counts n times), i.e. a member's cost per message;
* idle CPU per member per virtual second (heartbeats, ticks);
* the time from the crash to the new view at every survivor, in virtual time;
* safe-delivery latency, p50 in virtual time, from a cast to its delivery at each member.

CPU times are real (``time.process_time``) and so depend on the machine; compare sizes within one
report. The rest is a function of the seed.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

from ..core import Config
from ..core import events as ev
from .cluster import SimProcess, Simulation

GROUP = "g"
RATE = 500.0  # casts per virtual second, all members together
CASTS = 500  # of each load
IDLE = 2.0  # virtual seconds of the idle measurement
SETTLE_LIMIT = 120.0  # virtual seconds for the group to form, or a load to be delivered


@dataclass(frozen=True)
class ScaleRow:
    members: int
    frames_per_cast: float
    bytes_per_cast: float
    cpu_per_delivery_us: float
    idle_cpu_per_member_us_per_s: float
    crash_to_view_ms: float
    safe_p50_ms: float

    def line(self) -> str:
        return (f"{self.members:>7} {self.frames_per_cast:>15.1f} {self.bytes_per_cast:>14.0f} "
                f"{self.cpu_per_delivery_us:>18.1f} {self.idle_cpu_per_member_us_per_s:>21.0f} "
                f"{self.crash_to_view_ms:>17.1f} {self.safe_p50_ms:>12.1f}")


HEADER = (f"{'members':>7} {'frames per cast':>15} {'bytes per cast':>14} {'CPU/delivery (µs)':>18} "
          f"{'idle CPU/member (µs/s)':>21} {'crash→view (ms)':>17} {'safe p50 (ms)':>12}")


class _Meter:
    """Counts what the members send and deliver; remembers when each safe cast was made."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.bytes = 0
        self.deliveries = 0
        self.cast_at: dict[str, float] = {}
        self.latencies: list[float] = []
        sim.listeners.append(self.observe)

    def observe(self, proc: SimProcess, out: ev.Output) -> None:
        if type(out) is ev.Transmit:
            self.bytes += len(out.data)
        elif type(out) is ev.Delivered and out.group == GROUP:
            self.deliveries += len(out.msgs)
            if out.order == "safe":
                self.latencies.extend(self.sim.now - self.cast_at[mid] for mid in out.msgs
                                      if mid in self.cast_at)


def measure(members: int, seed: int = 0, casts: int = CASTS, config: Config | None = None) -> ScaleRow:
    """One size: the figures of the module docstring."""
    sim = Simulation(seed, config=config)
    names = [f"p{i}" for i in range(members)]
    for i, name in enumerate(names):
        sim.add(name, [GROUP], founder=i == 0)
        sim.run_for(0.01)  # one after the other, as processes started by hand
    if not sim.run_until_true(sim.converged, SETTLE_LIMIT, every=0.05):
        raise RuntimeError(f"{members} members did not form one view within {SETTLE_LIMIT}s")
    meter = _Meter(sim)

    started = time.process_time()
    sim.run_for(IDLE)
    idle = (time.process_time() - started) / members / IDLE

    frames, sent, delivered = sim.frames, meter.bytes, meter.deliveries
    started = time.process_time()
    _load(sim, meter, names, casts, "total")
    cpu = time.process_time() - started
    frames_per_cast = (sim.frames - frames) / casts
    bytes_per_cast = (meter.bytes - sent) / casts
    cpu_per_delivery = cpu / max(1, meter.deliveries - delivered)

    _load(sim, meter, names, casts, "safe")
    safe_p50 = statistics.median(meter.latencies) if meter.latencies else float("nan")

    victim = names[-1]
    crashed_at = sim.now
    sim.crash(victim)
    survivors = [sim.procs[n] for n in names[:-1]]

    def new_view() -> bool:
        return all(p.views[GROUP][1] and all(not m.startswith(victim + "#") for m in p.views[GROUP][1])
                   for p in survivors)

    if not sim.run_until_true(new_view, SETTLE_LIMIT, every=0.001):
        raise RuntimeError(f"{members} members: no new view within {SETTLE_LIMIT}s of a crash")
    return ScaleRow(members, frames_per_cast, bytes_per_cast, cpu_per_delivery * 1e6, idle * 1e6,
                    (sim.now - crashed_at) * 1e3, safe_p50 * 1e3)


def _load(sim: Simulation, meter: _Meter, names: list[str], casts: int, order: str) -> None:
    """``casts`` casts at ``RATE``, from the members in turn; returns once every member delivered
    them all."""
    target = meter.deliveries + casts * len(names)
    start = sim.now
    for k in range(casts):
        sim.at(start + k / RATE, _cast, sim, meter, names[k % len(names)], k, order)
    if not sim.run_until_true(lambda: meter.deliveries >= target, SETTLE_LIMIT, every=0.01):
        raise RuntimeError(f"{len(names)} members did not deliver the {order} load within {SETTLE_LIMIT}s")


def _cast(sim: Simulation, meter: _Meter, name: str, k: int, order: str) -> None:
    mid = sim.cast(name, GROUP, k.to_bytes(4, "big") * 25, order)  # 100 bytes
    if mid is None:
        raise RuntimeError(f"{name} could not cast: the group is not settled")
    meter.cast_at[mid] = sim.now


def report(sizes: list[int], seed: int = 0, casts: int = CASTS) -> list[ScaleRow]:
    return [measure(n, seed, casts) for n in sizes]


def as_json(rows: list[ScaleRow]) -> list[dict[str, float]]:
    return [asdict(row) for row in rows]
