"""A client of a group: a process outside the group that sends it requests, exactly once each.

Run three servers and a client, each in its own terminal (make the key once: ``vsgroups keygen >
cluster.key``):

    python examples/client.py --name a --port 7001 --peers 7001,7002,7003 --key cluster.key
    python examples/client.py --name b --port 7002 --peers 7001,7002,7003 --key cluster.key
    python examples/client.py --name c --port 7003 --peers 7001,7002,7003 --key cluster.key
    python examples/client.py --name d --port 7004 --peers 7001,7002,7003 --key cluster.key --client 20

The servers keep a replicated total (a ``Replica``); a ``vsgroups.Client`` is not a member — it is
in no view and counts in no quorum. It binds to one server, which casts its requests in the group;
every server applies each request once, in the group's total order, and the server serving the
client answers by multicast, so that the others know it was answered. If that server dies, the
client binds to another and sends again what was not yet delivered; the group delivers it once.

``python examples/client.py --demo`` does it all alone: it starts the three servers and a client
that adds 1..40 to the total, SIGKILLs the server the client is bound to while requests are under
way, and exits 0 if the client got every answer, each once and in order, and the final total is
exactly the sum (1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import _demo  # the --demo mode's process handling (examples/_demo.py)

import vsgroups
from vsgroups.client import Client

GROUP = "totals"


class Total(vsgroups.Replica):
    """The servers' state: a total that clients add to."""

    def __init__(self) -> None:
        self.total = 0
        self.group: vsgroups.Group | None = None

    def apply(self, msg: vsgroups.Delivery) -> None:
        if msg.kind != "client":
            return
        if msg.payload != "total":
            self.total += msg.payload
        group = self.group
        if group is not None and group.serves(msg):
            answer = [msg.payload, self.total]
            asyncio.get_running_loop().create_task(group.reply(msg, answer, multicast=True))

    def get_state(self) -> Any:
        return self.total

    def set_state(self, state: Any) -> None:
        self.total = state


async def server(args: argparse.Namespace, peers: list[str]) -> None:
    async with vsgroups.Node(args.name, listen=f"127.0.0.1:{args.port}", seeds=peers,
                             key_file=args.key) as node:
        total = Total()
        total.group = await node.join(GROUP, total)
        print(f"joined as {total.group.member_id}", flush=True)
        await asyncio.Event().wait()  # serve until stopped


async def client(args: argparse.Namespace, peers: list[str]) -> None:
    async with Client(args.name, seeds=peers, key_file=args.key, listen=f"127.0.0.1:{args.port}") as me:
        group = await me.bind(GROUP)
        print(f"bound to {group.server}", flush=True)
        for n in range(1, args.client + 1):
            added, total = await group.request(n, timeout=30)
            print(f"answer {added} total {total} (server {group.server})", flush=True)
            await asyncio.sleep(0.05)  # a steady stream: a failure strikes with requests under way
        _, total = await group.request("total", timeout=30)
        print(f"final total {total}", flush=True)


async def member(args: argparse.Namespace) -> None:
    ports = args.peers.split(",")
    peers = [f"127.0.0.1:{port}" for port in ports[:args.servers or len(ports)]]
    await (client(args, peers) if args.client else server(args, peers))


def demo() -> bool:
    servers = ["--servers", "3"]
    with _demo.members(__file__, {"a": servers, "b": servers, "c": servers,
                                  "d": [*servers, "--client", "40"]}) as m:
        for name in ("a", "b", "c"):
            m.wait_for(name, "joined")
        bound = m.wait_for("d", "bound to")
        m.wait_for("d", "answer 10 ")
        victim = bound.split()[-1].split("#")[0]
        m.kill(victim)  # the client's server, with requests under way
        answers, after = list(range(1, 11)), set[str]()  # the servers of the answers after the kill
        while (line := m.wait_for("d", "answer|final")).startswith("answer"):
            answers.append(int(line.split()[1]))
            after.add(line.split()[-1].split("#")[0])
        final = int(line.split()[-1])
        ok = answers == list(range(1, 41)) and final == sum(range(1, 41)) and bool(after - {victim})
        print(f"every answer once and in order: {answers == list(range(1, 41))}; final total {final} "
              f"(expected {sum(range(1, 41))}); served after the kill by {sorted(after - {victim})}")
        return ok


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--client", type=int, default=0, metavar="N",
                        help="be a client that adds 1..N to the total (default: be a server)")
    parser.add_argument("--servers", type=int, default=0,
                        help="how many of --peers are servers (default: all)")


def main() -> int:
    return _demo.main(__doc__, "start three servers and a client, kill the client's server mid-stream, "
                      "check the answers", member, demo, options)


if __name__ == "__main__":
    sys.exit(main())
