"""``tools.Watch`` in the simulator: a departure is learned at the view that removes the member."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import vsgroups
from vsgroups.sim.aio import SimNetwork, SimNode, VirtualLoop, run
from vsgroups.tools import Watch


def test_every_watcher_learns_of_a_crash_and_a_leave_at_the_same_view() -> None:
    async def main(loop: VirtualLoop) -> None:
        net = SimNetwork(loop, 4)
        nodes = [SimNode(net, f"p{i}", found=i == 0) for i in range(4)]
        for node in nodes:
            node.seeds = [n.sim_address for n in nodes]
            await node.start()
        groups = [await n.join("g") for n in nodes]
        while any(len(g.members) < 4 for g in groups):  # the last join's view installed everywhere
            await asyncio.sleep(0.01)  # virtual time
        watches = [Watch(g) for g in groups[:2]]
        crashed, leaver = groups[3].member_id, groups[2].member_id
        told: list[tuple[int, str, str]] = []
        def telling(i: int) -> Callable[[str, vsgroups.ViewChange], None]:
            return lambda member, view: told.append((i, member, view.view))

        for i, watch in enumerate(watches):
            watch.on_departure(telling(i))
        crash_seen = [w.member(crashed) for w in watches]
        leave_seen = [w.process("p2") for w in watches]
        await nodes[3].abort()
        views = await asyncio.gather(*crash_seen)
        assert views[0] == views[1] and crashed not in views[0].members
        await groups[2].leave()
        left = await asyncio.gather(*leave_seen)
        assert left[0].view == left[1].view and leaver not in left[0].members
        assert sorted(told) == sorted([(0, crashed, views[0].view), (0, leaver, left[0].view),
                                       (1, crashed, views[0].view), (1, leaver, left[0].view)])
        already = watches[0].member(crashed)  # gone before the call: at once, with the current view
        assert already.done() and already.result() == groups[0].view
        for watch in watches:
            watch.close()
        for node in nodes[:3]:
            await node.close()

    run(main)


def test_a_watch_on_a_node_without_the_group_names_the_problem() -> None:
    async def main(loop: VirtualLoop) -> None:
        node = SimNode(SimNetwork(loop, 1), "p0", found=True)
        await node.start()
        group = await node.join("g")
        await group.leave()
        try:
            Watch(group).member("x#1")
        except vsgroups.NotAMember as exc:
            assert "has left group 'g'" in str(exc)
        else:
            raise AssertionError("a watch on a group this node left was accepted")
        await node.close()

    run(main)
