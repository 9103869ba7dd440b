"""The simulated network: per-link latency, omission faults and partitions, all drawn from one seed.

Each directed link between two processes behaves like a TCP connection: frames arrive in the order
they were sent, after a latency drawn from the link's own distribution (a fixed propagation delay,
chosen per link, plus exponential jitter). On top of that the network suffers *omission* faults,
never Byzantine ones — a frame arrives intact or not at all:

* **loss**: frames are dropped in bursts (one loss drops up to three more frames of that link), as a
  connection that breaks and reconnects would lose what it had in flight;
* **duplication**: a frame arrives twice (a retransmission after a reconnect);
* **reordering**: a frame escapes the link's FIFO order and arrives after later ones;
* **delay spikes**: a link's latency jumps for a while (congestion, a stalled connection), long
  enough sometimes to cause a false suspicion;
* **partitions**: the processes are split into components; a frame between components is dropped
  when sent and when it would arrive.

Degradations are *episodes*: they affect a set of links until a virtual deadline, so the protocol
sees bursts of trouble and then calm, which is what its repair mechanisms (acknowledgements,
negative acknowledgements, retries) are built for.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

#: The degradations a link can suffer; the value of each is a rate, or a duration for "spike".
DEGRADATIONS = ("loss", "dup", "reorder", "spike")
#: A reordered frame is held back by up to this long (enough for later frames to overtake it).
REORDER_HOLD = 0.05
#: A duplicate arrives up to this long after the original.
DUP_LAG = 0.02
#: A loss drops up to this many further frames of the same link (a burst).
BURST = 3


@dataclass(slots=True)
class Link:
    """One direction between two processes: its latency distribution and current degradations."""

    base: float  # propagation delay, fixed for the link
    jitter: float  # mean of the exponential jitter added to every frame
    free_at: float = 0.0  # FIFO: no frame arrives before the previous one
    burst: int = 0  # frames still to lose in the current loss burst
    episodes: dict[str, tuple[float, float]] = field(default_factory=dict)  # kind -> (value, until)


class Network:
    def __init__(self, rng: random.Random, latency: tuple[float, float] = (0.0002, 0.002)) -> None:
        self.rng = rng
        self.latency = latency
        self.links: dict[tuple[str, str], Link] = {}
        self.cut: dict[str, int] | None = None  # process name -> component, while partitioned

    def link(self, src: str, dst: str) -> Link:
        link = self.links.get((src, dst))
        if link is None:
            lo, hi = self.latency
            base = self.rng.uniform(lo, hi)
            link = self.links[src, dst] = Link(base, base * self.rng.uniform(0.1, 1.0))
        return link

    def connected(self, a: str, b: str) -> bool:
        cut = self.cut
        return cut is None or cut.get(a, 0) == cut.get(b, 0)

    def arrivals(self, src: str, dst: str, now: float) -> tuple[float, ...]:
        """When a frame sent now from src to dst arrives: no time if it is lost, two if duplicated."""
        if not self.connected(src, dst):
            return ()
        link = self.link(src, dst)
        rng = self.rng
        at = now + link.base + rng.expovariate(1.0 / link.jitter)
        if not link.episodes:
            at = link.free_at = max(at, link.free_at)
            return (at,)
        episodes = {kind: rate for kind, (rate, until) in link.episodes.items() if now < until}
        if len(episodes) != len(link.episodes):
            link.episodes = {kind: v for kind, v in link.episodes.items() if now < v[1]}
        if link.burst or rng.random() < episodes.get("loss", 0.0):
            link.burst = link.burst - 1 if link.burst else rng.randint(0, BURST)
            return ()
        at += episodes.get("spike", 0.0)
        if rng.random() < episodes.get("reorder", 0.0):
            at += rng.uniform(0.0, REORDER_HOLD)  # outside the FIFO order of the link
        else:
            at = link.free_at = max(at, link.free_at)
        if rng.random() < episodes.get("dup", 0.0):
            return (at, at + rng.uniform(0.0, DUP_LAG))
        return (at,)

    def degrade(self, kind: str, links: Iterable[tuple[str, str]], value: float, until: float) -> None:
        if kind not in DEGRADATIONS:
            raise ValueError(f"unknown degradation {kind!r}: use one of {', '.join(DEGRADATIONS)}")
        for src, dst in links:
            self.link(src, dst).episodes[kind] = (value, until)

    def partition(self, components: Iterable[Iterable[str]]) -> None:
        """Split the network; a process named in no component is in the first one."""
        self.cut = {name: i for i, component in enumerate(components) for name in component}

    def reconnect(self) -> None:
        """End the partition."""
        self.cut = None

    def calm(self) -> None:
        """End every degradation."""
        for link in self.links.values():
            link.episodes.clear()
            link.burst = 0
