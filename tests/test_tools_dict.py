"""``tools.ReplicatedDict`` in the simulator (the same code as over TCP): convergence through views,
state transfer, reconciliation of an evs merge, and its misuse errors."""

from __future__ import annotations

import asyncio

import pytest

from vsgroups.errors import NotAMember
from vsgroups.sim.aio import SimNetwork, SimNode, VirtualLoop, run
from vsgroups.tools import ReplicatedDict


async def cluster(loop: VirtualLoop, n: int, model: str = "vs",
                  seed: int = 1) -> tuple[SimNetwork, list[SimNode], list[ReplicatedDict]]:
    net = SimNetwork(loop, seed)
    nodes = [SimNode(net, f"p{i}", found=i == 0) for i in range(n)]
    for node in nodes:
        node.seeds = [x.sim_address for x in nodes]
        await node.start()
    return net, nodes, [await ReplicatedDict.join(node, "d", model=model) for node in nodes]


async def settle(dicts: list[ReplicatedDict]) -> None:
    """Every member writes a marker; return once every member applied every marker (so everything
    each wrote before)."""
    for d in dicts:
        await d.set("marker-" + d.node.name, True)
    markers = {"marker-" + d.node.name for d in dicts}
    while not all(markers <= set(d) for d in dicts):
        await asyncio.sleep(0.01)  # virtual time: the members' timers and frames go on meanwhile


def test_members_converge_through_a_crash_and_a_joiner_gets_the_state() -> None:
    """1987a §3: updates in total order, applied by every member at one point of the stream;
    a joiner receives the state exactly as of its join (state transfer)."""
    async def main(loop: VirtualLoop) -> list[dict[object, object]]:
        net, nodes, dicts = await cluster(loop, 3)
        for i in range(60):
            await dicts[i % 3].set(f"k{i % 7}", i)
        assert await dicts[0].delete("k0") is True and await dicts[1].delete("k0") is False
        await nodes[2].abort()
        await dicts[0].update({"after": 1, "k1": "x"})
        late = SimNode(net, "p3", seeds=[nodes[0].sim_address])
        await late.start()
        dicts.append(await ReplicatedDict.join(late, "d"))
        await dicts[3].set("joiner", 3)
        live = [dicts[0], dicts[1], dicts[3]]
        await settle(live)
        return [dict(d) for d in live]

    states = run(main)
    assert states[0] == states[1] == states[2]
    assert states[0]["k1"] == "x" and "k0" not in states[0] and states[0]["joiner"] == 3


def test_an_evs_merge_adopts_the_primary_components_state() -> None:
    """docs/guide/tools.md: no state transfer on an evs merge; the members reconcile, and the
    state of the newest primary configuration wins (what the minority did apart is dropped)."""
    async def main(loop: VirtualLoop) -> list[dict[object, object]]:
        net, nodes, dicts = await cluster(loop, 3, model="evs")
        await dicts[0].set("k", "before")
        await settle(dicts)
        net.partition([nodes[0].sim_address], [n.sim_address for n in nodes[1:]])
        while not all(len(d.group.members) < 3 for d in dicts):
            await asyncio.sleep(0.1)
        assert [d.group.view.primary for d in dicts if d.group.view] == [False, True, True]
        await dicts[0].set("k", "minority")
        await dicts[1].set("k", "majority")
        assert dicts[0]["k"] == "minority" and dicts[2]["k"] == "majority"  # each side goes on
        net.heal()
        while not all(len(d.group.members) == 3 and d.settled for d in dicts):
            await asyncio.sleep(0.1)
        await settle(dicts)
        return [dict(d) for d in dicts]

    states = run(main)
    assert states[0] == states[1] == states[2] and states[0]["k"] == "majority"


def test_misuse_names_the_problem() -> None:
    async def main(loop: VirtualLoop) -> None:
        _, _, (d,) = await cluster(loop, 1)
        with pytest.raises(TypeError, match="key must be a str, int"):
            await d.set(("a", "tuple"), 1)  # type: ignore[arg-type]
        with pytest.raises(KeyError):
            d["missing"]
        await d.leave()
        with pytest.raises(Exception, match="not in group 'd'|has left group 'd'"):
            await d.set("k", 1)

    run(main)


def test_a_dict_that_left_its_group_does_not_act_in_a_later_membership() -> None:
    """A tool whose member left the group stays out of it, even once the node joined the group again
    with another tool (the lock workload's seed 932: an old lock's cancelled acquire cast its release
    through the new membership, and its call hung for ever)."""
    async def main(loop: VirtualLoop) -> tuple[str, dict[object, object]]:
        _, nodes, dicts = await cluster(loop, 2)
        old = dicts[1]
        await old.set("before", 1)
        await old.leave()
        new = await ReplicatedDict.join(nodes[1], "d")
        try:
            await old.set("stale", 2)
        except NotAMember as exc:
            refused = str(exc)
        else:
            refused = ""
        await settle([dicts[0], new])
        return refused, dict(new)

    refused, state = run(main)
    assert "not in group 'd'" in refused
    assert "stale" not in state and state["before"] == 1
