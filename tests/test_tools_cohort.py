"""``tools.Cohort`` and ``tools.Split`` in the simulator: one coordinator handles a request (or a
share of a split query); if it fails before its reply, a cohort takes over; the caller gets exactly
one result (one part per share)."""

from __future__ import annotations

import asyncio
from typing import Any

from vsgroups.sim.aio import SimNetwork, SimNode, VirtualLoop, run
from vsgroups.tools import Cohort, Split


async def cohorts(loop: VirtualLoop, n: int, handler_of: Any) -> tuple[list[SimNode], list[Cohort]]:
    net = SimNetwork(loop, 8)
    nodes = [SimNode(net, f"p{i}", found=i == 0) for i in range(n)]
    for node in nodes:
        node.seeds = [x.sim_address for x in nodes]
        await node.start()
    return nodes, [await Cohort.join(node, "svc", handler_of(node.name)) for node in nodes]


def test_a_cohort_takes_over_when_the_coordinator_fails_before_its_reply() -> None:
    """1987a §3.4. p0 asks until a request's coordinator is another member; that coordinator hangs
    and is killed; a cohort runs the request again and its reply is the one result."""
    async def main(loop: VirtualLoop) -> None:
        handled: list[tuple[str, Any]] = []
        hung: dict[str, str] = {}
        never = asyncio.Event()

        def handler_of(name: str) -> Any:
            async def handler(payload: Any) -> Any:
                handled.append((name, payload))
                if name != "p0" and not hung:
                    hung[name] = payload
                    await never.wait()  # the coordinator hangs: it will be killed
                return f"{name} handled {payload}"
            return handler

        nodes, members = await cohorts(loop, 3, handler_of)
        for payload in range(20):
            request = loop.create_task(members[0].request(payload))
            while not handled or handled[-1][1] != payload:
                await asyncio.sleep(0.01)
            if hung:
                break
            await request
        (victim,) = hung
        await next(n for n in nodes if n.name == victim).abort()  # the coordinator crashes mid-request
        result = await request
        takers = [name for name, p in handled if p == payload]
        assert takers[0] == victim and len(takers) == 2 and takers[1] != victim
        assert result == f"{takers[1]} handled {payload}"
        while any(c.pending for c in members if c.node.name != victim):
            await asyncio.sleep(0.01)  # the other survivor delivers the reply a moment later

    run(main)


def test_the_caller_gets_one_result_and_a_late_reply_changes_nothing() -> None:
    async def main(loop: VirtualLoop) -> None:
        def handler_of(name: str) -> Any:
            async def handler(payload: Any) -> Any:
                return payload * 2
            return handler

        _, members = await cohorts(loop, 2, handler_of)
        assert [await members[i % 2].request(i) for i in range(6)] == [0, 2, 4, 6, 8, 10]
        await members[1].submit(["reply", "nobody/C1", "late"])  # a reply for nothing pending: ignored
        assert all(not c.pending for c in members)

    run(main)


def test_a_split_query_is_answered_share_by_share_and_a_failed_share_re_issued() -> None:
    """1993 (parallel search): the query is cut into one share per member; the member that takes
    share 1 is killed mid-share; a survivor takes it over; the answer has every part once."""
    async def main(loop: VirtualLoop) -> None:
        net = SimNetwork(loop, 10)
        nodes = [SimNode(net, f"p{i}", found=i == 0) for i in range(3)]
        for node in nodes:
            node.seeds = [x.sim_address for x in nodes]
            await node.start()
        never = asyncio.Event()
        ran: list[tuple[str, int]] = []

        def share_of(name: str) -> Any:
            async def share(payload: Any, i: int, shares: int) -> Any:
                ran.append((name, i))
                if name == "p2":
                    await never.wait()  # p2 hangs on its share: it will be killed
                return f"{payload}/{i} of {shares} by {name}"
            return share

        splits = [await Split.join(n, "search", share_of(n.name)) for n in nodes]
        query = loop.create_task(splits[0].query("q"))
        while ("p2", 2) not in ran:
            await asyncio.sleep(0.01)
        await nodes[2].abort()
        parts = await query
        assert [p.split(" by ")[0] for p in parts] == ["q/0 of 3", "q/1 of 3", "q/2 of 3"]
        assert not parts[2].endswith("p2") and sorted(i for _, i in ran) == [0, 1, 2, 2]

    run(main)
