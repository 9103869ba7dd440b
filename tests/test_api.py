"""The asyncio API in one process over real TCP on loopback: join with state, casts, flush,
query, leave, and the errors of misuse."""

from __future__ import annotations

import asyncio

import pytest

import vsgroups


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

    async def main() -> None:
        async with vsgroups.Node("p1", key="k", found=True) as n1:
            b1 = Blob()
            g1 = await n1.join("b", b1)
            await g1.cast(big, order="fifo")
            async with vsgroups.Node("p2", seeds=[n1.address], key="k") as n2:
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
