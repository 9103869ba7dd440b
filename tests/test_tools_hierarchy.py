"""``tools.Hierarchy`` and ``tools.HierarchyClient`` (docs/guide/hierarchy.md): the placement as a
state machine, then whole hierarchies in the simulator."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from vsgroups.sim.aio import SimClient, SimNetwork, SimNode, VirtualLoop, run
from vsgroups.sim.hierarchy_workload import _Refounding
from vsgroups.sim.workload_base import CONFIG
from vsgroups.tools import Hierarchy, HierarchyClient, ShardUnavailable
from vsgroups.tools.hierarchy import _Root, shard_of

# -- the placement, operation by operation ------------------------------------------------------------


def root(fanout: int) -> _Root:
    return _Root(None, "kv", fanout)  # type: ignore[arg-type]  # the state machine alone: no node


def test_members_are_placed_evenly_and_the_first_in_a_shard_founds_it() -> None:
    r = root(2)
    assert [r.apply_op(["place", m, f"addr-{m}"], m) for m in "abcde"] == [0, 1, 0, 1, 0]
    assert r.apply_op(["place", "a", "addr-a"], "a") == 0  # placed once
    assert [s.founder() for s in r.shards] == ["a", "b"]
    assert not r.apply_op(["holds", 0, 0, "c"], "c")  # c waits for the founder
    assert r.apply_op(["holds", 0, 0, "a"], "a") and r.shards[0].founded
    assert r.apply_op(["holds", 0, 0, "c"], "c")
    assert r.shards[0].members == ["a", "c"] and r.shards[0].joining == ["e"]


def test_a_founder_that_leaves_before_founding_takes_its_generation_with_it() -> None:
    r = root(1)
    for m in "ab":
        r.apply_op(["place", m, m], m)
    r.departed({"b"})
    shard = r.shards[0]
    assert (shard.generation, shard.founder()) == (1, "b")
    assert not r.apply_op(["holds", 0, 0, "b"], "b")  # the old generation's subgroup is not the shard's
    assert r.apply_op(["holds", 0, 1, "b"], "b")
    r.departed({"b"})  # idempotent: a joiner's state may be taken before or after the view's change
    assert (shard.generation, shard.members) == (1, ["b"])


def test_a_shard_whose_holders_all_left_is_unavailable_until_one_reclaims_it() -> None:
    r = root(2)
    for m in "abcd":
        r.apply_op(["place", m, m], m)
    for index, m in ((0, "a"), (1, "b"), (0, "c")):
        r.apply_op(["holds", index, 0, m], m)
    r.departed({"a", "c", "d"})  # b, shard 1's only holder, is gone; d was still joining it
    assert r.shards[1].unavailable and r.shards[1].joining == [] and r.shards[1].generation == 0
    assert r.placement("d") is None
    assert r.apply_op(["place", "d", "d"], "d") == 0  # placed again, in the shard that lives on
    assert not r.apply_op(["reclaim", "b2", "b", 1, 5], "b2")  # not its generation
    assert r.apply_op(["reclaim", "b2", "b", 1, 0], "b2")  # b came back, as b2, with its copy
    assert not r.shards[1].unavailable and r.shards[1].members == ["b2"]


def test_a_hierarchy_needs_a_shard() -> None:
    with pytest.raises(ValueError, match="at least one shard"):
        Hierarchy(None, "kv", 0)  # type: ignore[arg-type]


# -- whole hierarchies in the simulator ----------------------------------------------------------------


async def start(loop: VirtualLoop, n: int, cls: type[Hierarchy] = Hierarchy) -> tuple[
        SimNetwork, list[SimNode], list[Hierarchy]]:
    net = SimNetwork(loop, 7)
    nodes = [SimNode(net, f"p{i}", found=i == 0, config=CONFIG) for i in range(n)]
    for node in nodes:
        node.seeds = [m.sim_address for m in nodes]
        await node.start()
    members = [await cls.join(node, "kv", fanout=2, timeout=None) for node in nodes]
    await asyncio.gather(*(m.serving() for m in members))
    return net, nodes, members


async def client(net: SimNetwork, nodes: list[SimNode], name: str = "c") -> HierarchyClient:
    c = SimClient(net, name, [n.sim_address for n in nodes], config=CONFIG)
    await c.start()
    return HierarchyClient(c, "kv", timeout=10.0)


def test_each_item_lives_in_its_shards_subgroup_only_and_survives_its_server() -> None:
    keys = [f"k{i}" for i in range(12)]

    async def main(loop: VirtualLoop) -> tuple[Any, ...]:
        net, nodes, members = await start(loop, 6)
        kv = await client(net, nodes)
        for key in keys:
            await kv.set(key, 1)
        shard0 = next(k for k in keys if shard_of(k, 2) == 0)
        binding = kv.binding(shard0)
        assert binding is not None and binding.server is not None
        old_server = binding.server
        server = next(n for n in nodes if old_server.startswith(n.name + "#"))
        writing = loop.create_task(kv.set(shard0, 2))  # in flight when its server crashes
        await asyncio.sleep(0)
        await server.abort()
        await writing
        values = [await kv.get(key) for key in keys]
        held = [(m.shard, dict(m.items)) for m, n in zip(members, nodes, strict=True) if n is not server]
        await members[1].cast_all("hello")
        await asyncio.sleep(1.0)
        casts = [m.casts for m, n in zip(members, nodes, strict=True) if n is not server]
        return shard0, old_server, values, held, casts, kv.binding(shard0)

    shard0, old_server, values, held, casts, binding = run(main)
    assert values == [2 if k == shard0 else 1 for k in keys]
    assert binding.server != old_server  # served by another member of the subgroup since
    for shard, items in held:
        assert set(items) == {k for k in keys if shard_of(k, 2) == shard}  # its shard's, all of them
    assert sorted(s for s, _ in held) == [0, 0, 1, 1, 1]  # three per shard, less the crashed one
    assert casts == [["hello"]] * 5


def crash_a_shard(cls: type[Hierarchy]) -> tuple[Any, ...]:
    """Every member of shard 1 crashes; a new member joins, and another client reads an item of
    shard 1."""

    async def main(loop: VirtualLoop) -> tuple[Any, ...]:
        net, nodes, members = await start(loop, 6, cls)
        kv = await client(net, nodes)
        key = next(f"k{i}" for i in range(20) if shard_of(f"k{i}", 2) == 1)
        await kv.set(key, "kept")
        for node, member in zip(nodes, members, strict=True):
            if member.shard == 1:
                await node.abort()
        await asyncio.sleep(3.0)
        late = SimNode(net, "late", seeds=[n.sim_address for n in nodes], config=CONFIG)
        await late.start()
        member = await cls.join(late, "kv", fanout=2, timeout=None)
        placed = await asyncio.wait_for(member.serving(), 30)
        reader = await client(net, nodes, "reader")
        try:
            value: Any = await reader.get(key)
        except ShardUnavailable as exc:
            value = exc
        return value, placed

    return run(main)


def test_a_shard_whose_members_all_fail_is_unavailable_never_served_empty() -> None:
    value, placed = crash_a_shard(Hierarchy)
    assert isinstance(value, ShardUnavailable), value
    assert "every member of shard 1" in str(value)
    assert placed == 0  # the newcomer serves the shard that lives on


def test_refounding_an_emptied_shard_would_serve_it_empty() -> None:
    """The check can fail: a root that founds an emptied shard again answers the read with nothing
    (the simulated workload's broken variant)."""
    value, placed = crash_a_shard(_Refounding)
    assert value is None and placed == 1


def test_a_clients_key_must_be_a_string() -> None:
    async def main(loop: VirtualLoop) -> None:
        net, nodes, _ = await start(loop, 1)
        kv = await client(net, nodes)
        with pytest.raises(TypeError, match="key is a str"):
            await kv.get(17)  # type: ignore[arg-type]

    run(main)


def test_a_malformed_request_is_dropped_and_the_hierarchy_goes_on() -> None:
    from vsgroups.client import NoReply

    async def main(loop: VirtualLoop) -> list[Any]:
        net, nodes, members = await start(loop, 2)
        kv = await client(net, nodes)
        await kv.set("a", 1)
        raw = kv.client
        answers: list[Any] = []
        for group, payload in (("kv", ["locate", "zero"]), ("kv", "locate"),
                               (f"kv/{shard_of('a', 2)}.0", ["set", "a"]),
                               (f"kv/{shard_of('a', 2)}.0", ["frob", "a", 2])):
            handle = raw.groups.get(group) or await raw.bind(group)
            try:
                answers.append(await handle.request(payload, timeout=2.0))
            except NoReply:
                answers.append("no reply")
        answers.append(await kv.get("a"))
        answers.append(sorted(item for m in members for item in m.items.items()))
        return answers

    assert run(main) == ["no reply"] * 4 + [1, [("a", 1)]]
