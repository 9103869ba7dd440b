"""Member processes on five hosts (network namespaces), partitioned and healed: extended virtual synchrony.

``test_partitions`` checks the default (VS) mode over real cut links, where only a majority component
goes on. The EVS model promises the opposite on the same faults, and the simulator alone cannot show
that it keeps the promise over real TCP, where a cut hangs connections instead of breaking them: every
component keeps running. On a partition each side installs a transitional configuration (the members
that came with it from the previous regular one) and then a regular configuration of its component,
and goes on delivering; after the heal the components merge into one regular configuration of the
same incarnations, without restarts.

The steady mix of fifo, causal, total and safe casts runs throughout. Components diverge (a merge does
not reconcile application state), so the state digests are not compared; every run still ends with
load off, flush, one view of all five, clean quit, and the trace checker in EVS mode (with liveness),
which also verifies the regular/transitional structure of every member's views.

They need root and iproute2, and skip otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from vsgroups.check import check_dir
from vsgroups.netns import Network
from vsgroups.procs import Cluster, Event, Member

GROUP = "kv"
SUSPECT = 0.6
RATE = 50  # casts per second per member
PROGRESS = 100  # deliveries each member must make to show its component works under load
GUARD = 90.0  # the whole test; every wait has its own, shorter guard

Scenario = Callable[[Cluster, list[Member]], Awaitable[None]]


def run(tmp_path: Path, network: Network, scenario: Scenario) -> None:
    """Start a loaded EVS member on every host (m1 on h1, ...), run ``scenario``, which must leave the
    network healed and all members merged, then end the run and check it."""

    async def main() -> None:
        async with Cluster(tmp_path, rate=RATE, suspect_timeout=SUSPECT, model="evs") as cluster:
            members = await cluster.start(len(network.hosts), [network.host(i) for i in network.hosts])
            pids = [m.pid for m in members]
            await cluster.load(True)
            await cluster.wait_delivered(members, GROUP, PROGRESS)
            await scenario(cluster, members)
            await cluster.wait_delivered(members, GROUP, PROGRESS)
            # Flushing lets every member deliver what the others sent in the final view, which the
            # checker's liveness property demands; the digests are not collected (they diverged).
            await cluster.load(False)
            await asyncio.gather(*(m.command("flush", "flushed") for m in members))
            await cluster.wait_view(GROUP, members)
            assert [m.pid for m in members] == pids, "a member restarted: EVS merges the same incarnations"
            restarts = [f"{m.name}: {e}" for m in members for e in m.events if e.get("ev") == "rejoin"]
            assert not restarts, "EVS never excludes a member, yet:\n" + "\n".join(restarts)
            assert await cluster.quit_all() == [0] * len(members)
        violations = check_dir(cluster.trace_dir, live=True, model="evs")
        assert not violations, f"{len(violations)} violations in {cluster.trace_dir}:\n" + "\n".join(
            f"{v.prop}: {v.message} {v.evidence}" for v in violations)

    asyncio.run(asyncio.wait_for(main(), GUARD))


def views_since(member: Member, since: int) -> list[Event]:
    return [e for e in member.events[since:] if e.get("ev") == "view" and e.get("g") == GROUP]


async def configuration(cluster: Cluster, side: Sequence[Member], since: dict[str, int]) -> Event:
    """Wait until every member of ``side`` has, as its latest view since its mark, one and the same
    regular configuration holding exactly ``side``, and check how each member got there: it left the
    view it held at the mark through a transitional configuration, and entered the new regular one
    from a transitional configuration holding exactly the members that came with it from its previous
    regular configuration (those of ``side`` whose previous regular configuration is the same).
    Returns the regular view.

    A side may get there in several steps (a member that suspects its peers one by one, components
    that discover each other one by one, a member pulled from its component into another before all
    merge), each through its own transitional configuration; the checker verifies the steps in
    between. ``Cluster.wait_view`` would not do: a transitional configuration of exactly ``side`` is a
    view of exactly them too, and may be the latest for a moment."""
    pids = {m.pid for m in side}

    def agreed() -> Event | None:
        cluster.require_alive(side)
        latest = [views[-1] if (views := views_since(m, since[m.name])) else None for m in side]
        first = latest[0]
        if first is None or any(v is None or v["view"] != first["view"] or v["kind"] != "regular"
                                for v in latest):
            return None
        return first if set(first["members"]) == pids else None

    names = ", ".join(m.name for m in side)
    regular = await cluster.until(agreed, what=f"one regular configuration of {GROUP} holding {names}")
    entered: dict[str, tuple[Event, Event, str]] = {}  # name: transitional, previous regular, history
    for m in side:
        every = views_since(m, 0)
        views = views_since(m, since[m.name])
        steps = " ".join(f"{v['kind']}:{v['view']}{sorted(v['members'])}" for v in every)
        before = every[-len(views) - 1]
        assert views[0]["kind"] == "transitional" and views[0]["prev"] == before["view"], \
            f"{m.name} left view {before['view']} without a transitional configuration: {steps}"
        at = len(every) - len(views) + next(i for i, v in enumerate(views) if v["view"] == regular["view"])
        assert every[at - 1]["kind"] == "transitional", \
            f"{m.name} installed {regular['view']} right after a regular configuration: {steps}"
        came = next(v for v in reversed(every[:at - 1]) if v["kind"] == "regular")
        entered[m.name] = every[at - 1], came, steps
    for m in side:
        transitional, came, steps = entered[m.name]
        along = sorted(str(x.pid) for x in side if entered[x.name][1]["view"] == came["view"])
        assert sorted(transitional["members"]) == along, \
            f"{m.name}'s transitional configuration before {regular['view']} does not hold exactly " \
            f"{along}, who came with it from {came['view']}: {steps}"
    return regular


async def progress(cluster: Cluster, components: Sequence[Sequence[Member]]) -> None:
    """Every component delivers ``PROGRESS`` more messages, all measured from the same moment: they
    run side by side, not one after the other."""
    await asyncio.gather(*(cluster.wait_delivered(c, GROUP, PROGRESS) for c in components))


def marks(members: Sequence[Member]) -> dict[str, int]:
    return {m.name: m.mark() for m in members}


async def partition_and_heal(network: Network, cluster: Cluster, members: list[Member],
                             components: list[list[Member]], cut: Callable[[], None]) -> None:
    """``cut()`` the network into ``components``: each forms a configuration of exactly its members
    and keeps delivering, side by side; after the heal all of them merge, with the same incarnations."""
    since = marks(members)
    cut()
    for component in components:
        await configuration(cluster, component, since)
    await progress(cluster, components)
    since = marks(members)
    network.heal()
    await configuration(cluster, members, since)


def test_split_three_two_both_sides_go_on_and_merge(tmp_path: Path, network: Network) -> None:
    """Split 3+2 with the coordinator in the smaller side: each side installs a configuration of its
    own members after a transitional one, and both keep delivering; after the heal the same five
    incarnations merge."""

    async def scenario(cluster: Cluster, members: list[Member]) -> None:
        await partition_and_heal(network, cluster, members, [members[:2], members[2:]],
                                 lambda: network.cut([[1, 2], [3, 4, 5]]))

    run(tmp_path, network, scenario)


def test_split_two_two_one_every_component_goes_on_and_merges(tmp_path: Path, network: Network) -> None:
    """Split 2+2+1, where no side has a majority: all three components go on, the singleton delivering
    its own casts alone, and merge after the heal."""

    async def scenario(cluster: Cluster, members: list[Member]) -> None:
        await partition_and_heal(network, cluster, members, [members[:2], members[2:4], members[4:]],
                                 lambda: network.cut([[1, 2], [3, 4], [5]]))

    run(tmp_path, network, scenario)


def test_one_way_cut_splits_off_the_host_which_merges_after_the_heal(tmp_path: Path,
                                                                    network: Network) -> None:
    """The coordinator's outgoing packets are dropped while it still receives: the others form a
    configuration without it and go on, it forms its own, and after the heal the same incarnations
    merge."""

    def cut() -> None:
        for i in network.hosts[1:]:
            network.cut_one_way(1, i)

    async def scenario(cluster: Cluster, members: list[Member]) -> None:
        victim, *others = members
        await partition_and_heal(network, cluster, members, [others, [victim]], cut)

    run(tmp_path, network, scenario)
