"""A diffusion group: servers multicast to every member and every client, in the group's order.

Run three servers and a listening client, each in its own terminal (make the key once:
``vsgroups keygen > cluster.key``):

    python examples/diffusion.py --name a --port 7001 --peers 7001,7002,7003 --key cluster.key
    python examples/diffusion.py --name b --port 7002 --peers 7001,7002,7003 --key cluster.key
    python examples/diffusion.py --name c --port 7003 --peers 7001,7002,7003 --key cluster.key
    python examples/diffusion.py --name d --port 7004 --peers 7001,7002,7003 --key cluster.key --listen

Every server diffuses a tick every 100 ms (``Group.diffuse``) until the group has delivered 90;
each diffusion is delivered to the members and forwarded to the clients, numbered in the group's
order. The client (``vsgroups.Client``, not a member) prints what it receives. If its server dies,
it binds to another, which replays what it missed: it sees every number once, in order, with the
same tick the members delivered under that number.

``python examples/diffusion.py --demo`` does it all alone: it starts the three servers and the
client, SIGKILLs the client's server mid-stream, and exits 0 if the client received consecutive
numbers with no gap and no duplicate up to 90, each with the tick a surviving server delivered
under it (1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import _demo  # the --demo mode's process handling (examples/_demo.py)

import vsgroups
from vsgroups.client import Client

GROUP = "ticker"
TICKS = 90


class Ticks(vsgroups.Replica):
    def __init__(self) -> None:
        self.delivered = 0

    def apply(self, msg: vsgroups.Delivery) -> None:
        if msg.kind == "diffusion":
            self.delivered = msg.request  # its number in the group's order
            print(f"delivered {msg.request} {msg.payload}", flush=True)

    def get_state(self) -> int:
        return self.delivered

    def set_state(self, state: int) -> None:
        self.delivered = state


async def server(args: argparse.Namespace, peers: list[str]) -> None:
    async with vsgroups.Node(args.name, listen=f"127.0.0.1:{args.port}", seeds=peers,
                             key_file=args.key) as node:
        ticks = Ticks()
        group = await node.join(GROUP, ticks)
        print(f"joined as {group.member_id}", flush=True)
        while len(group.members) < 3:
            await asyncio.sleep(0.1)
        n = 0
        while ticks.delivered < TICKS:
            n += 1
            await group.diffuse(f"{args.name}-{n}")
            await asyncio.sleep(0.1)
        await asyncio.Event().wait()  # serve until stopped


async def listener(args: argparse.Namespace, peers: list[str]) -> None:
    async with Client(args.name, seeds=peers, key_file=args.key, listen=f"127.0.0.1:{args.port}") as me:
        group = await me.bind(GROUP, events=True)
        print(f"bound to {group.server}", flush=True)
        async for d in group.diffusions():
            print(f"got {d.number} {d.payload} missed {d.missed}", flush=True)
            if d.number >= TICKS:
                break
        print("done", flush=True)


async def member(args: argparse.Namespace) -> None:
    ports = args.peers.split(",")
    peers = [f"127.0.0.1:{port}" for port in ports[:args.servers or len(ports)]]
    await (listener(args, peers) if args.listen else server(args, peers))


def demo() -> bool:
    servers = ["--servers", "3"]
    with _demo.members(__file__, {"a": servers, "b": servers, "c": servers,
                                  "d": [*servers, "--listen"]}) as m:
        for name in ("a", "b", "c"):
            m.wait_for(name, "joined")
        victim = m.wait_for("d", "bound to").split()[-1].split("#")[0]
        got = [m.wait_for("d", "got") for _ in range(20)]
        m.kill(victim)  # the client's server, mid-stream
        while (line := m.wait_for("d", "got|done")) != "done":
            got.append(line)
        survivor = next(name for name in ("a", "b", "c") if name != victim)
        delivered: dict[int, str] = {}
        while not delivered or max(delivered) < TICKS:
            _, number, tick = m.wait_for(survivor, "delivered").split()
            delivered[int(number)] = tick
        numbers = [int(line.split()[1]) for line in got]
        consecutive = numbers == list(range(numbers[0], numbers[0] + len(numbers))) and numbers[-1] >= TICKS
        same = all(delivered.get(int(n)) == tick for _, n, tick, _, _ in (line.split() for line in got))
        missed = sum(int(line.split()[-1]) for line in got)
        print(f"client: numbers {numbers[0]}..{numbers[-1]}, consecutive: {consecutive}; the ticks "
              f"{survivor} delivered: {same}; missed: {missed}")
        return consecutive and same and not missed


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", action="store_true", help="be a client that prints the diffusions")
    parser.add_argument("--servers", type=int, default=0,
                        help="how many of --peers are servers (default: all)")


def main() -> int:
    return _demo.main(__doc__, "start three servers and a client, kill the client's server mid-stream, "
                      "check what the client received", member, demo, options)


if __name__ == "__main__":
    sys.exit(main())
