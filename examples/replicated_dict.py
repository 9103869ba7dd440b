"""A replicated dictionary: every member writes, every member reads locally, all end with one dict.

Run two or more members, each in its own terminal (make the key once: ``vsgroups keygen > cluster.key``):

    python examples/replicated_dict.py --name a --port 7001 --peers 7001,7002 --key cluster.key
    python examples/replicated_dict.py --name b --port 7002 --peers 7001,7002 --key cluster.key

Each member ``--writes`` times sets one of a few shared keys to its name and a counter
(``tools.ReplicatedDict``: total order, so every member applies the writes in one order; a write
returns once applied here, and reads are local), then marks itself done and waits until every
member of its view is done. Writers race for the same keys, yet at the end every member prints
the same dictionary.

``python examples/replicated_dict.py --demo`` does it all alone: it starts three members, SIGKILLs
one of them while they write, and exits 0 if the two others print the same final dictionary
(1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys

import _demo  # the --demo mode's process handling (examples/_demo.py)

import vsgroups
from vsgroups.tools import ReplicatedDict


async def member(args: argparse.Namespace) -> None:
    peers = [f"127.0.0.1:{port}" for port in args.peers.split(",")]
    async with vsgroups.Node(args.name, listen=f"127.0.0.1:{args.port}", seeds=peers,
                             key_file=args.key) as node:
        shared = await ReplicatedDict.join(node, "shared")  # returns holding the current dictionary
        print(f"joined with {len(shared)} keys", flush=True)
        for i in range(args.writes):
            key = f"slot{random.randrange(3)}"
            await shared.set(key, f"{args.name}-{i}")  # returns once applied here: shared[key] is local
            await asyncio.sleep(0.02)
        await shared.set(f"done-{args.name}", True)
        while not all(shared.get(f"done-{m.split('#')[0]}") for m in shared.group.members):
            await asyncio.sleep(0.05)  # the last done marker: every member applied the same writes
        await shared.flush()
        final = {k: v for k, v in shared.items() if not str(k).startswith("done-")}
        print(f"final {json.dumps(final, sort_keys=True)}", flush=True)


def demo() -> bool:
    with _demo.members(__file__, {name: ["--writes", "60"] for name in ("a", "b", "c")}) as m:
        for name in ("a", "b", "c"):
            m.wait_for(name, "joined")
        m.kill("c")
        finals = [m.wait_for(name, "final") for name in ("a", "b")]
        print("the survivors agree" if finals[0] == finals[1] else f"the survivors disagree: {finals}")
        return finals[0] == finals[1]


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--writes", type=int, default=20, help="how many writes (default 20)")


def main() -> int:
    return _demo.main(__doc__, "start three members, kill one, compare the dictionaries", member, demo,
                      options)


if __name__ == "__main__":
    sys.exit(main())
