"""Member processes on five hosts (network namespaces), partitioned and healed: primary-component mode.

Loopback can only kill or stop a process; a partition is different: every process keeps running,
its packets to the other side vanish, and TCP connections hang instead of breaking. These tests cut
real links (``vsgroups.netns``) between ``vsgroups node`` processes under a steady mix of fifo,
causal, total and safe casts, and check the promises of the default (VS) mode: only a majority
component installs views and delivers; the rest block, and after the heal restart as new
incarnations and rejoin with state transfer. Every run ends as in ``test_processes``: load off,
flush, one view of all five, equal state digests at one cut of the total order, clean quit, and the
trace checker (every view in a trace is primary, so it also finds any split brain) passes.

They need root and iproute2, and skip otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from vsgroups.check import check_dir
from vsgroups.netns import Network
from vsgroups.procs import Cluster, Member, digest_problems

SUSPECT = 0.6
RATE = 50  # casts per second per member
PROGRESS = 100  # deliveries each member must make to show the group works under load
BLOCKED = 3.0  # how long a split without a majority is watched: two proposal timeouts of the core
GUARD = 100.0  # the whole test; every wait has its own, shorter guard

Scenario = Callable[[Cluster, list[Member]], Awaitable[None]]


def run(tmp_path: Path, network: Network, scenario: Scenario) -> None:
    """Start a loaded member on every host (m1 on h1, ...), run ``scenario``, which must leave the
    network healed and all members in the group, then end the run and check it."""

    async def main() -> None:
        async with Cluster(tmp_path, rate=RATE, suspect_timeout=SUSPECT) as cluster:
            members = await cluster.start(len(network.hosts), [network.host(i) for i in network.hosts])
            await cluster.load(True)
            await cluster.wait_delivered(members, "kv", PROGRESS)
            await scenario(cluster, members)
            await cluster.wait_view("kv", members)
            await cluster.wait_delivered(members, "kv", PROGRESS)
            digests = await cluster.settle(members)
            problems = digest_problems(digests)
            assert not problems, "\n".join(problems)
            assert await cluster.quit_all() == [0] * len(members)
        violations = check_dir(cluster.trace_dir, live=True, model="vs")
        assert not violations, "\n".join(f"{v.prop}: {v.message} {v.evidence}" for v in violations)

    asyncio.run(asyncio.wait_for(main(), GUARD))


async def rejoined(member: Member, since: int) -> None:
    """Wait until ``member``, excluded after ``since``, restarts and rejoins with the store's state."""
    old = member.member_id("kv")
    joined = await member.wait_rejoined("kv", since)
    assert joined["pid"] != old
    assert joined["n"] > 0, f"{member.name}'s new incarnation should have received the store's state"


def views_since(member: Member, since: int) -> list[list[str]]:
    return [e["members"] for e in member.events[since:] if e["ev"] == "view" and e["g"] == "kv"]


def test_majority_goes_on_and_the_minority_rejoins_as_new_incarnations(tmp_path: Path,
                                                                     network: Network) -> None:
    """Split 3+2 with the coordinator in the minority: the majority installs a view of exactly its
    three members and keeps delivering; the two block, and rejoin as new incarnations after the heal."""

    async def scenario(cluster: Cluster, members: list[Member]) -> None:
        minority, majority = members[:2], members[2:]
        since = {m.name: m.mark() for m in members}
        network.cut([[1, 2], [3, 4, 5]])
        await cluster.wait_view("kv", majority)
        await asyncio.gather(*(m.wait_for("flushing", since[m.name], g="kv") for m in minority))
        await cluster.wait_delivered(majority, "kv", PROGRESS)
        for m in minority:
            assert views_since(m, since[m.name]) == [], f"{m.name} installed a view in the minority"
        majority_pids = {m.member_id("kv") for m in majority}
        network.heal()
        await asyncio.gather(*(rejoined(m, since[m.name]) for m in minority))
        for m in minority:
            for view in views_since(m, since[m.name]):
                assert majority_pids <= set(view), f"{m.name} installed {view} without the majority"

    run(tmp_path, network, scenario)


def test_no_majority_anywhere_blocks_everyone_until_the_heal(tmp_path: Path, network: Network) -> None:
    """Split 2+2+1: every member starts a view change and none can finish it, so no view is installed
    and nothing is delivered until the heal; then the group goes on, with the same incarnations or
    with members rejoining."""

    async def scenario(cluster: Cluster, members: list[Member]) -> None:
        since = {m.name: m.mark() for m in members}
        network.cut([[1, 2], [3, 4], [5]])
        await asyncio.gather(*(m.wait_for("flushing", since[m.name], g="kv") for m in members))
        # Everyone has promised a ballot, so stopped delivering. A negative takes watching: the
        # proposers time out and retry meanwhile, and none of them may reach a quorum.
        blocked = await cluster.delivered(members, "kv")
        await asyncio.sleep(BLOCKED)
        assert await cluster.delivered(members, "kv") == blocked
        for m in members:
            assert views_since(m, since[m.name]) == [], f"{m.name} installed a view without a majority"
        network.heal()

    run(tmp_path, network, scenario)


def test_one_way_cut_excludes_the_host_which_rejoins_after_the_heal(tmp_path: Path,
                                                                  network: Network) -> None:
    """The coordinator's outgoing packets are dropped while it still receives: the others exclude it
    and go on; after the heal it restarts as a new incarnation and rejoins."""

    async def scenario(cluster: Cluster, members: list[Member]) -> None:
        victim, *others = members
        since = victim.mark()
        for i in network.hosts[1:]:
            network.cut_one_way(1, i)
        await cluster.wait_view("kv", others)
        await cluster.wait_delivered(others, "kv", PROGRESS)
        network.heal()
        await rejoined(victim, since)

    run(tmp_path, network, scenario)


def test_exclusion_from_one_group_leaves_the_nodes_other_group_alone(tmp_path: Path,
                                                                     network: Network) -> None:
    """Issue 10, B1: m3 is in groups a (with m1, m2) and b (with m4, m5). A cut between {h1, h2} and
    {h3, h4, h5} takes m3 out of a's majority but leaves b whole: a excludes m3, and after the heal
    m3 joins a again under a fresh member id, with a's state, while b never changes view and m3
    keeps its identity there. Every trace (one file per identity) passes the checker."""

    async def main() -> None:
        async with Cluster(tmp_path, rate=RATE, suspect_timeout=SUSPECT) as cluster:
            place = {"a": [1, 2, 3], "b": [3, 4, 5]}
            members: list[Member] = []
            for i in network.hosts:  # the first member of each group founds it
                groups = [g for g, hosts in place.items() if i in hosts]
                members.append(await cluster.add(f"m{i}", network.host(i), groups=groups,
                                                 found=i in (1, 3), load_paused=False))
                for g in groups:
                    await members[-1].wait_for("joined", g=g)
            in_a = [m for m in members if "a" in m.groups]
            in_b = [m for m in members if "b" in m.groups]
            m3 = members[2]
            await cluster.wait_view("a", in_a)
            b_view = (await cluster.wait_view("b", in_b))["view"]
            await cluster.wait_delivered(in_a, "a", PROGRESS)
            since = m3.mark()
            network.cut([[1, 2], [3, 4, 5]])
            await cluster.wait_view("a", in_a[:2])
            await cluster.wait_delivered(in_a[:2], "a", PROGRESS)
            await cluster.wait_delivered(in_b, "b", PROGRESS)
            network.heal()
            joined = await m3.wait_rejoined("a", since)
            assert joined["pid"] != m3.pid and m3.member_id("b") == m3.pid
            assert joined["n"] > 0, "m3 should have received a's state under its new id"
            await cluster.wait_view("a", in_a)
            await cluster.wait_delivered(in_a, "a", PROGRESS)
            await cluster.wait_delivered(in_b, "b", PROGRESS)
            assert (m3.view("b") or {}).get("view") == b_view, "the exclusion from a changed m3's view of b"
            assert not m3.find("rejoin", since, g="b")
            problems = digest_problems(await cluster.settle(members))
            assert not problems, "\n".join(problems)
            assert await cluster.quit_all() == [0] * len(members)
        assert len(list(cluster.trace_dir.glob("m3#*.jsonl"))) == 2
        violations = check_dir(cluster.trace_dir, live=True, model="vs")
        assert not violations, "\n".join(f"{v.prop}: {v.message} {v.evidence}" for v in violations)

    asyncio.run(asyncio.wait_for(main(), GUARD))
