"""Watching members: every member learns of a failure at the same view, whatever it suspected.

Run two or more members, each in its own terminal (make the key once: ``vsgroups keygen > cluster.key``):

    python examples/watch.py --name a --port 7001 --peers 7001,7002 --key cluster.key
    python examples/watch.py --name b --port 7002 --peers 7001,7002 --key cluster.key

Each member watches the others (``tools.Watch``) and prints a line for every member that departs
— crashed, cut off or left — with the view that removed it. Stop one member (Ctrl-C) or kill it:
every other member prints the same view for it.

``python examples/watch.py --demo`` does it all alone: it starts three members, SIGKILLs one, and
exits 0 if the two others report its departure with the same view (1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import _demo  # the --demo mode's process handling (examples/_demo.py)

import vsgroups
from vsgroups.tools import Watch


async def member(args: argparse.Namespace) -> None:
    peers = [f"127.0.0.1:{port}" for port in args.peers.split(",")]
    async with vsgroups.Node(args.name, listen=f"127.0.0.1:{args.port}", seeds=peers,
                             key_file=args.key) as node:
        group = await node.join("team")
        watch = Watch(group)
        watch.on_departure(lambda member, view: print(
            f"departed {member.split('#')[0]} as of view {view.view}", flush=True))
        while len(group.members) < args.wait_for:
            await asyncio.sleep(0.1)
        print(f"watching {len(group.members) - 1} others", flush=True)
        await asyncio.Event().wait()  # watch until stopped


def demo() -> bool:
    with _demo.members(__file__, {name: ["--wait-for", "3"] for name in ("a", "b", "c")}) as m:
        for name in ("a", "b", "c"):
            m.wait_for(name, "watching 2 others")
        m.kill("c")
        seen = [m.wait_for(name, "departed c") for name in ("a", "b")]
        same = seen[0] == seen[1]
        print("both saw c go at the same view" if same else f"they disagree: {seen}")
        return same


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait-for", type=int, default=1, help="members to wait for before watching")


def main() -> int:
    return _demo.main(__doc__, "start three members, kill one, compare what the others saw", member, demo,
                      options)


if __name__ == "__main__":
    sys.exit(main())
