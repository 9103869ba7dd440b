"""A hierarchical group: a key–value store partitioned among subgroups, with a client that never
notices a failure.

Run six members and a client, each in its own terminal (make the key once: ``vsgroups keygen >
cluster.key``):

    PEERS=7001,7002,7003,7004,7005,7006
    python examples/hierarchy.py --name a --port 7001 --peers $PEERS --key cluster.key
    ...                                          (b to f on ports 7002 to 7006)
    python examples/hierarchy.py --name g --port 7007 --peers $PEERS --key cluster.key --client 30

The members join the hierarchy ``kv`` (``tools.Hierarchy``): its root group places each member in
one of two shards, and each shard's items live in that shard's subgroup only, replicated among its
three members. The client (``tools.HierarchyClient``) asks the root where an item's shard is and
binds to that subgroup as a client; each write and read is applied in the subgroup's total order
and answered once every member holds it. If the member serving the client fails, the client is
bound to another member of the subgroup, and the operation in flight is answered all the same.

``python examples/hierarchy.py --demo`` does it all alone: it starts the six members and a client
that writes 30 items, then writes them all again, SIGKILLs the member serving the client for one
shard while the second round is under way, reads every item back, and exits 0 if every write was
acknowledged and every item holds its second value (1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import _demo  # the --demo mode's process handling (examples/_demo.py)

import vsgroups
from vsgroups.client import Client
from vsgroups.tools import Hierarchy, HierarchyClient

NAME = "kv"
FANOUT = 2


async def member(args: argparse.Namespace, peers: list[str]) -> None:
    async with vsgroups.Node(args.name, listen=f"127.0.0.1:{args.port}", seeds=peers,
                             key_file=args.key) as node:
        hierarchy = await Hierarchy.join(node, NAME, fanout=FANOUT)
        print(f"joined as {hierarchy.group.member_id}", flush=True)
        shard = await hierarchy.serving()
        print(f"serving shard {shard} in {hierarchy.subgroup}", flush=True)
        await asyncio.Event().wait()  # serve until stopped


async def client(args: argparse.Namespace, peers: list[str]) -> None:
    async with Client(args.name, seeds=peers, key_file=args.key, listen=f"127.0.0.1:{args.port}") as me:
        kv = HierarchyClient(me, NAME)
        keys = [f"item{i}" for i in range(args.client)]
        for key in keys:
            await kv.set(key, 1)
        servers = {}
        for key in keys:
            binding = kv.binding(key)
            assert binding is not None
            servers[binding.name] = binding.server
        print(f"round 1 done; servers {' '.join(f'{g}={s}' for g, s in sorted(servers.items()))}", flush=True)
        for key in keys:
            await kv.set(key, 2)
            binding = kv.binding(key)
            assert binding is not None
            print(f"wrote {key} through {binding.server}", flush=True)
            await asyncio.sleep(0.1)  # a steady stream: the failure strikes with a write under way
        values = [await kv.get(key) for key in keys]
        print(f"read back {' '.join(str(v) for v in values)}", flush=True)


async def run(args: argparse.Namespace) -> None:
    ports = args.peers.split(",")
    peers = [f"127.0.0.1:{port}" for port in ports]
    await (client(args, peers) if args.client else member(args, peers))


def demo() -> bool:
    names = ["a", "b", "c", "d", "e", "f"]
    with _demo.members(__file__, {**{n: [] for n in names}, "g": ["--client", "30"]}) as m:
        for name in names:
            m.wait_for(name, "serving shard")
        servers = m.wait_for("g", "round 1 done").split("servers ")[1].split()
        victim = servers[0].split("=")[1].split("#")[0]  # the client's server for shard 0
        m.wait_for("g", "wrote item5 ")
        m.kill(victim)
        after = set()
        while (line := m.wait_for("g", "wrote|read back")).startswith("wrote"):
            after.add(line.split()[-1].split("#")[0])
        values = line.split()[2:]
        ok = values == ["2"] * 30 and victim not in after
        print(f"every item holds its second value: {values == ['2'] * 30}; served after the kill by "
              f"{sorted(after)} (not {victim}: {victim not in after})")
        return ok


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--client", type=int, default=0, metavar="N",
                        help="be a client that writes N items twice and reads them (default: be a member)")


def main() -> int:
    return _demo.main(__doc__, "start six members and a client, kill the client's server for one shard "
                      "mid-stream, check every item", run, demo, options)


if __name__ == "__main__":
    sys.exit(main())
