"""The API's own runtime on the simulator (``sim.aio``): ``api.Node`` unchanged, on a virtual clock
and the simulated network — deterministic, bounded, and checked like any run."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

import vsgroups
from vsgroups.check import check_dir
from vsgroups.sim.aio import SimNetwork, SimNode, VirtualLoop, run


class Counter(vsgroups.Replica):
    def __init__(self) -> None:
        self.total = 0

    def apply(self, msg: vsgroups.Delivery) -> None:
        self.total += msg.payload

    def get_state(self) -> int:
        return self.total

    def set_state(self, state: int) -> None:
        self.total = state

    def query(self, msg: vsgroups.Delivery) -> int:
        return self.total


def counting(trace: Path, seed: int) -> tuple[list[int], list[int], float]:
    """Three nodes count to 90, one crashes, the two others answer a query."""
    async def main(loop: VirtualLoop) -> tuple[list[int], list[int], float]:
        net = SimNetwork(loop, seed)
        nodes = [SimNode(net, f"p{i}", trace_dir=trace, found=i == 0) for i in range(3)]
        for node in nodes:
            node.seeds = [n.sim_address for n in nodes]
            await node.start()
        counters = [Counter() for _ in nodes]
        groups = [await n.join("c", c) for n, c in zip(nodes, counters, strict=True)]
        for i in range(90):
            await groups[i % 3].cast(1)
        for group in groups:
            await group.flush()
        await nodes[2].abort()  # a crash
        answers = await groups[0].query("total?")
        for node in nodes[:2]:
            await node.close()
        assert loop.errors == []
        return [c.total for c in counters], sorted(answers.values()), loop.time()

    return run(main)


def test_a_run_is_a_function_of_its_seed(tmp_path: Path) -> None:
    digests = []
    for attempt in ("a", "b"):
        trace = tmp_path / attempt
        trace.mkdir()
        totals, answers, virtual = counting(trace, seed=5)
        assert totals == [90, 90, 90] and answers == [90, 90]
        assert 1.0 < virtual < 30.0  # the crash is detected after the suspect timeout, virtually
        assert check_dir(trace) == []
        digests.append(hashlib.sha256(b"".join(p.read_bytes() for p in sorted(trace.iterdir()))).digest())
    assert digests[0] == digests[1]


def test_a_run_that_waits_for_ever_ends_at_its_virtual_limit() -> None:
    async def main(loop: VirtualLoop) -> None:
        node = SimNode(SimNetwork(loop, 1), "p0", found=True)
        await node.start()
        await node.join("g")
        await asyncio.Event().wait()  # nothing will ever set it; the node's timers keep time moving

    with pytest.raises(TimeoutError, match="did not end within 5.0 virtual seconds"):
        run(main, limit=5.0)
