"""Clients of a group (``vsgroups.Client``) in the simulator, on the same runtime code as over TCP:
atomic, exactly-once requests across a server's failure, replies, diffusions in the group's order,
a client's failure as a notification, many clients, and API misuse. Real processes: the
``examples/client.py`` and ``examples/diffusion.py`` demos (tests/test_examples.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from vsgroups import Delivery, Group, Replica, UnknownOrdering
from vsgroups.client import ClientExpired, NoReply
from vsgroups.core import Config
from vsgroups.sim.aio import SimClient, SimNetwork, SimNode, VirtualLoop, run

CONFIG = Config(suspect_timeout=0.5)


class Log(Replica):
    """Records what it applies; the member serving a client answers its requests."""

    def __init__(self) -> None:
        self.group: Group | None = None
        self.applied: list[tuple[str, Any]] = []
        self.left: list[str] = []
        self.multicast = True

    def apply(self, msg: Delivery) -> None:
        self.applied.append((msg.kind, msg.payload))
        group = self.group
        if msg.kind == "client" and group is not None and group.serves(msg) and msg.payload != "no answer":
            asyncio.get_running_loop().create_task(group.reply(msg, ["re", msg.payload], self.multicast))

    def client_left(self, client: str) -> None:
        self.left.append(client)

    def get_state(self) -> Any:
        return self.applied

    def set_state(self, state: Any) -> None:
        self.applied = [tuple(x) for x in state]


Servers = tuple[SimNetwork, list[SimNode], list[Log]]


async def servers(loop: VirtualLoop, n: int = 3, model: str = "vs") -> Servers:
    net = SimNetwork(loop, 5)
    nodes = [SimNode(net, f"s{i}", found=i == 0, config=CONFIG) for i in range(n)]
    logs = []
    for node in nodes:
        node.seeds = [x.sim_address for x in nodes]
        await node.start()
        log = Log()
        log.group = await node.join("svc", log, model=model)
        logs.append(log)
    while any(len(x.group.members) < n for x in logs if x.group):
        await asyncio.sleep(0.01)
    return net, nodes, logs


def client_requests(log: Log) -> list[Any]:
    return [p for kind, p in log.applied if kind == "client"]


def test_a_client_casts_and_requests_and_every_member_applies_each_once() -> None:
    async def main(loop: VirtualLoop) -> None:
        net, nodes, logs = await servers(loop)
        client = SimClient(net, "c", [nodes[1].sim_address], config=CONFIG)
        await client.start()
        group = await client.bind("svc")
        assert group.server in logs[0].group.members and group.members == logs[0].group.members
        await group.cast("a")
        assert await group.request("b") == ["re", "b"]
        logs[0].multicast = logs[1].multicast = logs[2].multicast = False  # point to point
        assert await group.request("c", order="safe") == ["re", "c"]
        for log in logs:
            while len(client_requests(log)) < 3:
                await asyncio.sleep(0.01)
            assert client_requests(log) == ["a", "b", "c"]
            assert log.group is not None and log.group.clients == {client.pid: group.server}
        await client.close()

    run(main)


def test_requests_in_flight_when_the_clients_server_crashes_are_delivered_once() -> None:
    """The server dies with requests under way: the client binds to another member and sends again
    what was not acknowledged; every member applies each request exactly once, in order."""
    async def main(loop: VirtualLoop) -> None:
        net, nodes, logs = await servers(loop)
        client = SimClient(net, "c", [n.sim_address for n in nodes], config=CONFIG)
        await client.start()
        group = await client.bind("svc")
        first = group.server
        casts = [loop.create_task(group.cast(i)) for i in range(30)]
        await asyncio.sleep(0.003)  # some are delivered, some only sent, some not yet sent
        victim = next(n for n in nodes if n.groups["svc"].member_id == first)
        await victim.abort()
        await asyncio.gather(*casts)
        assert await group.request("after") == ["re", "after"]
        assert group.server != first
        for log, node in zip(logs, nodes, strict=True):
            if node is not victim:
                while "after" not in client_requests(log):
                    await asyncio.sleep(0.01)
                assert client_requests(log) == [*range(30), "after"]
        await client.close()

    run(main)


def test_a_multicast_reply_reaches_every_member_and_a_missing_one_times_out() -> None:
    async def main(loop: VirtualLoop) -> None:
        net, nodes, logs = await servers(loop)
        client = SimClient(net, "c", [nodes[0].sim_address], config=CONFIG)
        await client.start()
        group = await client.bind("svc")
        await group.request("q")
        for log in logs:
            while ("reply", ["re", "q"]) not in log.applied:  # the backups know it was answered
                await asyncio.sleep(0.01)
        with pytest.raises(NoReply, match="no member of group 'svc' answered"):
            await group.request("no answer", timeout=1.0)
        await client.close()

    run(main)


def test_diffusions_reach_members_and_clients_in_the_groups_order() -> None:
    async def main(loop: VirtualLoop) -> None:
        net, nodes, logs = await servers(loop)
        clients = [SimClient(net, f"c{i}", [n.sim_address for n in nodes], config=CONFIG) for i in range(4)]
        streams = []
        for c in clients:
            await c.start()
            streams.append((await c.bind("svc", events=True)).diffusions())
        await asyncio.gather(*(n.groups["svc"].diffuse(f"{n.name}-{i}") for i in range(5) for n in nodes))
        order = []
        while len(order) < 15:
            await asyncio.sleep(0.01)
            order = [p for kind, p in logs[0].applied if kind == "diffusion"]
        for log in logs[1:]:
            while [p for kind, p in log.applied if kind == "diffusion"] != order:
                await asyncio.sleep(0.01)
        for stream in streams:
            got = [await stream.__anext__() for _ in range(15)]
            assert [d.payload for d in got] == order and [d.number for d in got] == list(range(1, 16))
            assert not any(d.missed for d in got)
        for c in clients:
            await c.close()

    run(main)


def test_a_crashed_client_is_declared_gone_at_every_member_and_an_expired_one_is_told() -> None:
    async def main(loop: VirtualLoop) -> None:
        net, nodes, logs = await servers(loop)
        client = SimClient(net, "c", [nodes[0].sim_address], config=CONFIG)
        await client.start()
        group = await client.bind("svc")
        await group.cast("x")
        pid = client.pid
        net.partition([n.sim_address for n in nodes], [client.sim_address])  # silent, as if crashed
        for log in logs:
            while log.left != [pid]:
                await asyncio.sleep(0.05)
            assert log.group is not None and log.group.clients == {}
        net.heal()  # it comes back: too late
        with pytest.raises(ClientExpired, match="declared client .* gone"):
            await group.cast("late")
        assert all(client_requests(log) == ["x"] for log in logs)  # nothing it sent late is applied
        await client.close()

    run(main)


def test_a_group_serves_many_more_clients_than_members() -> None:
    async def main(loop: VirtualLoop) -> None:
        net, nodes, logs = await servers(loop)
        clients = [SimClient(net, f"c{i}", [n.sim_address for n in nodes], config=CONFIG) for i in range(200)]
        for c in clients:
            await c.start()
        groups = await asyncio.gather(*(c.bind("svc") for c in clients))
        assert len({g.server for g in groups}) == 3  # spread over the members
        await asyncio.gather(*(g.cast(i) for i, g in enumerate(groups)))
        for log in logs:
            while len(client_requests(log)) < 200:
                await asyncio.sleep(0.05)
            assert sorted(client_requests(log)) == list(range(200))
            assert log.group is not None and len(log.group.members) == 3 and len(log.group.clients) == 200
        for c in clients:
            await c.close()

    run(main)


def test_misuse_raises_errors_that_name_the_problem() -> None:
    async def main(loop: VirtualLoop) -> None:
        net, nodes, logs = await servers(loop)
        client = SimClient(net, "c", [nodes[0].sim_address], config=CONFIG)
        await client.start()
        group = await client.bind("svc")
        with pytest.raises(UnknownOrdering, match="a client's requests are totally ordered"):
            await group.cast("x", order="fifo")
        with pytest.raises(ValueError, match="already bound to group 'svc'"):
            await client.bind("svc")
        member_group = logs[0].group
        assert member_group is not None
        cast = Delivery("svc", "s0#1:1", "s0#1", "total", "1.1.s0#1", "x")
        with pytest.raises(ValueError, match="answers a client's request, not a delivery of kind 'cast'"):
            await member_group.reply(cast, "y")
        with pytest.raises(TimeoutError, match="no member of group 'nope' served client"):
            await client.bind("nope", timeout=2.0)
        await client.close()

    run(main)


def test_an_evs_group_refuses_clients() -> None:
    async def main(loop: VirtualLoop) -> None:
        net, nodes, _ = await servers(loop, model="evs")
        client = SimClient(net, "c", [nodes[0].sim_address], config=CONFIG)
        await client.start()
        with pytest.raises(TimeoutError):
            await client.bind("svc", timeout=3.0)
        await client.close()

    run(main)


def test_a_subscriber_reads_the_history_it_asked_for_then_every_new_posting() -> None:
    """News (1987a §4.3): the last ``history`` postings, then the live ones, no gap, no duplicate;
    misuse is named."""
    from vsgroups.tools import Board, Reader

    async def main(loop: VirtualLoop) -> None:
        net, nodes, _ = await servers(loop)
        boards = [Board(node) for node in nodes]
        for board in boards:
            await board.carry("sky")
        for i in range(6):
            await boards[0].post("sky", f"early-{i}")  # a member posts (Group.diffuse), in order
        client = SimClient(net, "reader", [n.sim_address for n in nodes], config=CONFIG)
        poster = SimClient(net, "poster", [n.sim_address for n in nodes], config=CONFIG)
        await client.start()
        await poster.start()
        reader = Reader(client)
        postings = await reader.subscribe("sky", history=3)
        await Reader(poster).post("sky", "late")  # a client posts (ClientGroup.post)
        got = []
        async for p in postings:
            got.append((p.number, p.body))
            if p.body == "late":
                break
        assert got == [(4, "early-3"), (5, "early-4"), (6, "early-5"), (7, "late")]
        with pytest.raises(ValueError, match="already bound to subject 'sky'"):
            await reader.subscribe("sky")
        with pytest.raises(ValueError, match="does not carry subject 'rain'"):
            await boards[0].post("rain", "x")
        await client.close()
        await poster.close()

    run(main)
