"""``tools.Token`` in the simulator: it moves by passes every member sees at the same point, and is
regenerated once, with the next generation, when its holder fails."""

from __future__ import annotations

import asyncio

from vsgroups.sim.aio import SimNetwork, SimNode, VirtualLoop, run
from vsgroups.tools import Token


async def cluster(loop: VirtualLoop, n: int,
                  model: str = "vs") -> tuple[SimNetwork, list[SimNode], list[Token]]:
    net = SimNetwork(loop, 6)
    nodes = [SimNode(net, f"p{i}", found=i == 0) for i in range(n)]
    for node in nodes:
        node.seeds = [x.sim_address for x in nodes]
        await node.start()
    return net, nodes, [await Token.join(node, "turn", model=model) for node in nodes]


def test_the_token_goes_round_and_is_regenerated_once_when_its_holder_crashes() -> None:
    async def main(loop: VirtualLoop) -> None:
        _, nodes, tokens = await cluster(loop, 3)
        assert await tokens[0].wait() == 1  # the founder holds the first one, generation 1
        assert await tokens[0].pass_on() == tokens[1].group.member_id
        await tokens[1].wait()
        await tokens[1].pass_on()
        await tokens[2].wait()
        while {t.holder for t in tokens} != {tokens[2].group.member_id}:
            await asyncio.sleep(0.01)  # the others see the pass as soon as they deliver it
        await nodes[2].abort()  # the holder crashes: the view change regenerates the token
        assert await tokens[0].wait() == 2
        while tokens[1].holder != tokens[0].group.member_id:
            await asyncio.sleep(0.01)  # p1 installs the view a moment later
        assert [t.generation for t in tokens[:2]] == [2, 2]

    run(main)


def test_an_evs_configuration_that_is_not_primary_has_no_token() -> None:
    async def main(loop: VirtualLoop) -> None:
        net, nodes, tokens = await cluster(loop, 3, model="evs")
        await tokens[0].wait()
        net.partition([nodes[0].sim_address], [n.sim_address for n in nodes[1:]])
        while tokens[0].holder is not None or tokens[1].holder == tokens[0].group.member_id:
            await asyncio.sleep(0.05)
        assert tokens[1].holder == tokens[2].holder == tokens[1].group.member_id  # regenerated there
        assert tokens[1].generation == 2
        net.heal()
        while not all(len(t.group.members) == 3 and t.settled for t in tokens):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert {t.holder for t in tokens} == {tokens[1].group.member_id}  # the primary side's

    run(main)
