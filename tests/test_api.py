"""The asyncio API in one process over real TCP on loopback: join with state, casts, flush,
query, leave, graceful and abrupt close, and the errors of misuse."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import vsgroups
from vsgroups.check import check_dir
from vsgroups.procs import free_port


class Counter(vsgroups.Replica):
    def __init__(self) -> None:
        self.n = 0

    def apply(self, msg: vsgroups.Delivery) -> None:
        self.n += msg.payload["add"]

    def get_state(self) -> dict[str, int]:
        return {"n": self.n}

    def set_state(self, state: dict[str, int]) -> None:
        self.n = state["n"]

    def query(self, msg: vsgroups.Delivery) -> int:
        return self.n


def run(coro) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))


def test_join_with_state_cast_flush_query_leave() -> None:
    async def main() -> None:
        async with vsgroups.Node("p1", key="k", found=True) as n1:
            g1 = await n1.join("c", Counter())
            for _ in range(50):
                await g1.cast({"add": 1})
            async with vsgroups.Node("p2", seeds=[n1.address], key="k") as n2:
                c2 = Counter()
                g2 = await n2.join("c", c2)
                assert c2.n == 50  # the state as of the join instant; later casts follow it
                assert set(g2.members) == {n1.pid, n2.pid}
                for _ in range(50):
                    await g2.cast({"add": 2}, order="safe")
                await g2.flush()
                replies = await g2.query({}, replies=vsgroups.ALL)
                assert replies == {n1.pid: 150, n2.pid: 150}
                await g2.leave()
                with pytest.raises(vsgroups.NotAMember):
                    await g2.cast({"add": 1})
            assert g1.members == (n1.pid,)

    run(main())


def test_misuse_raises_named_errors() -> None:
    async def main() -> None:
        async with vsgroups.Node("p1", key="k", found=True) as n1:
            g1 = await n1.join("c")
            with pytest.raises(vsgroups.UnknownOrdering):
                await g1.cast(b"x", order="sorted")
            with pytest.raises(ValueError, match="already joined"):
                await n1.join("c")
            with pytest.raises(vsgroups.NotAMember):
                n1._core.cast("other", b"x", "fifo", 0.0)
        with pytest.raises(ValueError, match="cluster key"):
            vsgroups.Node("p3")

    run(main())


def test_a_16_mib_message_and_a_large_state_pass_intact() -> None:
    big = bytes(range(256)) * (16 * 4096 - 64)  # just under the 16 MiB default limit

    class Blob(vsgroups.Replica):
        def __init__(self) -> None:
            self.blobs: list[bytes] = []

        def apply(self, msg: vsgroups.Delivery) -> None:
            self.blobs.append(msg.payload)

        def get_state(self) -> list[bytes]:
            return self.blobs

        def set_state(self, state: list[bytes]) -> None:
            self.blobs = state

    # Both nodes share one event loop, which each 16 MiB message stalls: on a starved machine that
    # can outlast the default suspicion, and an excluded sender's cast is lost by design
    patient = vsgroups.Config(suspect_timeout=10.0)

    async def main() -> None:
        async with vsgroups.Node("p1", key="k", found=True, config=patient) as n1:
            b1 = Blob()
            g1 = await n1.join("b", b1)
            await g1.cast(big, order="fifo")
            async with vsgroups.Node("p2", seeds=[n1.address], key="k", config=patient) as n2:
                b2 = Blob()
                g2 = await n2.join("b", b2)
                assert b2.blobs == [big]  # a 16 MiB state, streamed in chunks
                events = g1.events()
                await g2.cast(big[::-1], order="safe")
                async for event in events:
                    if isinstance(event, vsgroups.Delivery):
                        break
                await g2.flush()
                assert b1.blobs == b2.blobs == [big, big[::-1]]
            with pytest.raises(vsgroups.PayloadTooLarge):
                await g1.cast(big + bytes(1 << 15))

    run(main())


# --- closing a node ----------------------------------------------------------------------------------


def trace(directory: Path, pid: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (directory / f"{pid}.jsonl").read_text().splitlines()]


def tail(events: list[dict[str, Any]], n: int) -> list[tuple[str, str | None]]:
    return [(e["ev"], e.get("g")) for e in events[-n:]]


def test_leaving_async_with_node_leaves_every_group_after_delivering_its_casts(tmp_path: Path) -> None:
    """Leaving the ``async with`` block refuses new casts, sends and delivers those accepted, and leaves
    both groups: the other member has installed a view without it by then (it coordinates the view
    change), and the trace has a ``leave`` per group after that group's last deliveries, then ``stop``
    (the casts alternate between two groups of one causality domain, so one drains after the other)."""

    async def main() -> None:
        async with vsgroups.Node("p1", key="k", found=True, trace_dir=tmp_path) as n1:
            c1, d1 = Counter(), Counter()
            g1, h1 = await n1.join("c", c1), await n1.join("d", d1)
            async with vsgroups.Node("p2", seeds=[n1.address], key="k", trace_dir=tmp_path) as n2:
                c2 = Counter()
                g2, h2 = await n2.join("c", c2), await n2.join("d")
                assert set(g1.members) == set(h1.members) == {n1.pid, n2.pid}
                gone = n2.pid
                for _ in range(30):  # safe casts, not flushed: unstable when the block ends
                    await g2.cast({"add": 1}, order="safe")
                    await h2.cast({"add": 1}, order="total")
                closing = asyncio.get_running_loop().create_task(n2.close())
                await asyncio.sleep(0)  # close() has begun: it refuses new casts at once
                with pytest.raises(vsgroups.NodeClosed):
                    await g2.cast({"add": 1})
                assert await closing is True
            assert g1.members == h1.members == (n1.pid,)
            assert c2.n == 30, "the leaver delivered its own casts before leaving"
            assert c1.n == d1.n == 30
            with pytest.raises(vsgroups.NodeClosed):
                await g2.cast({"add": 1})
        events = tail(trace(tmp_path, gone), 1000)
        assert events[-1] == ("stop", None)
        for group in "cd":  # each leave follows that group's last deliveries (the two may interleave)
            assert events.count(("leave", group)) == 1
            assert events.index(("leave", group)) > max(i for i, e in enumerate(events) if e[1] == group
                                                        and e[0] != "leave")
        violations = check_dir(tmp_path, live=True, model="vs")
        assert not violations, "\n".join(f"{v.prop}: {v.message} {v.evidence}" for v in violations)

    run(main())


def test_close_in_a_blocked_minority_gives_up_and_ends_like_a_crash(tmp_path: Path) -> None:
    """p2 cannot leave once p1 (the oldest of two) has crashed: half of the view without its oldest
    member is no quorum, so no view without p2 can be installed. ``close`` gives up after its timeout,
    returns False and writes no ``stop``: the trace ends like a crash."""
    config = vsgroups.Config(suspect_timeout=0.3)

    async def main() -> None:
        n1 = vsgroups.Node("p1", key="k", found=True, trace_dir=tmp_path, config=config)
        await n1.start()
        async with vsgroups.Node("p2", seeds=[n1.address], key="k", trace_dir=tmp_path, config=config,
                                 close_timeout=1.5) as n2:
            await n1.join("c")
            g2 = await n2.join("c")
            await g2.cast({"add": 1}, order="safe")
            await n1.abort()
            assert await n2.close() is False
            pids = n1.pid, n2.pid
        assert await n2.close() is False, "later calls return the first one's result"
        for pid in pids:
            assert trace(tmp_path, pid)[-1]["ev"] not in ("leave", "stop"), pid
        violations = check_dir(tmp_path, model="vs")
        assert not violations, "\n".join(f"{v.prop}: {v.message} {v.evidence}" for v in violations)

    run(main())


def test_abort_ends_a_close_under_way(tmp_path: Path) -> None:
    config = vsgroups.Config(suspect_timeout=0.3)

    async def main() -> None:
        async with vsgroups.Node("p1", key="k", found=True, trace_dir=tmp_path, config=config) as n1:
            await n1.join("c")
            n2 = vsgroups.Node("p2", seeds=[n1.address], key="k", trace_dir=tmp_path, config=config)
            await n2.start()
            await n2.join("c")
            await n1.abort()  # p2 alone cannot leave: its close would wait out the whole timeout
            closing = asyncio.get_running_loop().create_task(n2.close(timeout=60))
            await asyncio.sleep(0)
            await asyncio.wait_for(n2.abort(), 10)
            assert await closing is False
            assert trace(tmp_path, n2.pid)[-1]["ev"] != "stop"

    run(main())


def test_a_join_under_way_at_close_is_abandoned(tmp_path: Path) -> None:
    """Nobody answers the join (the seed is a closed port), so it is still under way at close: it is
    called off, ``join`` raises ``NodeClosed`` and the stop is clean (the process had no view)."""

    async def main() -> None:
        node = vsgroups.Node("p1", seeds=[f"127.0.0.1:{free_port()}"], key="k", found=False,
                             trace_dir=tmp_path)
        await node.start()
        joining = asyncio.get_running_loop().create_task(node.join("c"))
        await asyncio.sleep(0)  # join() has registered the group and asked the seed
        assert await node.close() is True
        with pytest.raises(vsgroups.NodeClosed):
            await joining
        assert [e["ev"] for e in trace(tmp_path, node.pid)] == ["start", "leave", "stop"]

    run(main())


def test_a_replica_hears_block_before_the_view_change_it_announces() -> None:
    """Virtual synchrony's flush is visible to the application: ``Replica.block`` names the view a
    change is leaving, before ``view_changed`` delivers the next one (JGroups' block/viewAccepted)."""
    heard: list[tuple[str, str]] = []

    class Watch(vsgroups.Replica):
        def block(self, view: str) -> None:
            heard.append(("block", view))

        def view_changed(self, view: vsgroups.ViewChange) -> None:
            heard.append(("view", view.view))

    async def main() -> None:
        async with vsgroups.Node("a", key=b"k", found=True) as a:
            group = await a.join("g", Watch(), timeout=30)
            first = group.view
            assert first is not None
            async with vsgroups.Node("b", key=b"k", seeds=[a.address], found=False) as b:
                await b.join("g", timeout=30)
                await asyncio.wait_for(_until(lambda: len(group.members) == 2), 30)
            await asyncio.wait_for(_until(lambda: len(group.members) == 1), 30)

    run(main())
    views = [v for kind, v in heard if kind == "view"]
    blocks = [v for kind, v in heard if kind == "block"]
    # each change was announced from the view it left: b's join, b's leave, and a's own leave at close
    assert len(views) == 3 and blocks == views, heard
    assert [kind for kind, _ in heard] == ["view", "block"] * 3, heard


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


def test_events_from_the_join_instant_miss_nothing_awaited_before_the_first_iteration() -> None:
    """issue 11: with ``join(..., events=True)`` the first ``events()`` stream starts with the view
    this process joined in and holds every delivery since, though the program cast and flushed
    first; a stream opened later starts at its creation (the documented rule)."""

    async def main() -> None:
        async with vsgroups.Node("p1", key="k", found=True) as n1:
            g1 = await n1.join("e", events=True)
            for i in range(3):
                await g1.cast(i)
            await g1.flush()
            first = g1.events()  # the stream recorded from the join
            later = g1.events()  # a new one, from now on
            got: list[Any] = []
            async for event in first:
                got.append(event.members if isinstance(event, vsgroups.ViewChange) else event.payload)
                if len(got) == 4:
                    break
            assert got == [(n1.pid,), 0, 1, 2]
            await g1.cast("after")
            event = await later.__anext__()
            assert isinstance(event, vsgroups.Delivery) and event.payload == "after"

    run(main())
