"""``Node.join`` gives up after its timeout with a ``JoinFailed`` that says what is known of why:
no seed reachable, no answer (a wrong cluster key looks like this), the name held by a live member,
the group blocked without a quorum; and a closed node joins nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

import vsgroups
from vsgroups.procs import free_port

FAST = vsgroups.Config(suspect_timeout=0.5)
WAIT = 3.0  # the join timeout these tests give: long enough for every answer to have arrived


def failure(scenario: Callable[[], Awaitable[None]]) -> str:
    """Run ``scenario``, which must end in ``JoinFailed``; its message."""
    async def main() -> str:
        with pytest.raises(vsgroups.JoinFailed) as failed:
            await scenario()
        assert isinstance(failed.value, TimeoutError)
        return str(failed.value)

    return asyncio.run(asyncio.wait_for(main(), 60))


def test_no_seed_reachable() -> None:
    nobody = f"127.0.0.1:{free_port()}"

    async def scenario() -> None:
        async with vsgroups.Node("p2", seeds=[nobody], key="k", found=False) as n2:
            await n2.join("g", timeout=WAIT)

    said = failure(scenario)
    assert f"could not join group 'g' within {WAIT}s: no seed is reachable ({nobody}: cannot connect" in said


def test_seeds_with_another_key_never_answer() -> None:
    async def scenario() -> None:
        async with vsgroups.Node("p1", key="right", found=True) as n1:
            await n1.join("g")
            async with vsgroups.Node("p2", seeds=[n1.address], key="wrong") as n2:
                await n2.join("g", timeout=WAIT)

    said = failure(scenario)
    assert "the seeds cannot authenticate this node's frames: it holds another cluster key" in said
    assert "rejected: our frames fail authentication there" in said


def test_the_name_held_by_a_live_member() -> None:
    """A second process named p1 asks p2 to join {p1, p2}: its newer incarnation makes p2 suspect
    the running p1, but p2 alone cannot exclude it (no quorum), so p1 stays a member and the newcomer
    is told so."""

    async def scenario() -> None:
        async with vsgroups.Node("p1", key="k", found=True, config=FAST) as n1:
            await n1.join("g")
            async with vsgroups.Node("p2", seeds=[n1.address], key="k", config=FAST) as n2:
                await n2.join("g")
                async with vsgroups.Node("p1", seeds=[n2.address], key="k", config=FAST) as again:
                    await again.join("g", timeout=WAIT)

    said = failure(scenario)
    assert "another incarnation of 'p1', is still a member" in said


def test_a_group_blocked_without_a_quorum() -> None:
    async def scenario() -> None:
        async with vsgroups.Node("p1", key="k", found=True, config=FAST) as n1:
            await n1.join("g")
            others = [vsgroups.Node(f"p{i}", seeds=[n1.address], key="k", config=FAST) for i in (2, 3)]
            for other in others:
                await other.start()
                await other.join("g")
            for other in others:
                await other.abort()  # p1 alone is no quorum of {p1, p2, p3}: it blocks
            async with vsgroups.Node("p4", seeds=[n1.address], key="k", config=FAST) as n4:
                await n4.join("g", timeout=WAIT)

    said = failure(scenario)
    assert "the group is blocked" in said


def test_a_closed_node_joins_nothing() -> None:
    async def main() -> None:
        node = vsgroups.Node("p1", key="k", found=True)
        await node.start()
        await node.close()
        with pytest.raises(vsgroups.NodeClosed, match="closing"):
            await node.join("g")

    asyncio.run(asyncio.wait_for(main(), 60))
