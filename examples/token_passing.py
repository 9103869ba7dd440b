"""A token passed round a group, and regenerated once when its holder dies.

Run two or more members, each in its own terminal (make the key once: ``vsgroups keygen > cluster.key``):

    python examples/token_passing.py --name a --port 7001 --peers 7001,7002 --key cluster.key
    python examples/token_passing.py --name b --port 7002 --peers 7001,7002 --key cluster.key

Each member waits for the token (``tools.Token``), holds it a moment, and passes it on to the next
member; it prints every time it gets it, with the token's generation. If the holder dies, the view
change that removes it regenerates the token — once — for the oldest member left, with the next
generation: a resource that remembers the highest generation it has seen can refuse the old holder.

``python examples/token_passing.py --demo`` does it all alone: it starts three members, SIGKILLs one while
it holds the token, and exits 0 if another member then gets it with the next generation (1
otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import _demo  # the --demo mode's process handling (examples/_demo.py)

import vsgroups
from vsgroups.tools import Token


async def member(args: argparse.Namespace) -> None:
    peers = [f"127.0.0.1:{port}" for port in args.peers.split(",")]
    async with vsgroups.Node(args.name, listen=f"127.0.0.1:{args.port}", seeds=peers,
                             key_file=args.key) as node:
        token = await Token.join(node, "turn")
        print(f"joined as {token.group.member_id}", flush=True)
        for _ in range(args.turns):
            generation = await token.wait()
            print(f"holding the token, generation {generation}", flush=True)
            await asyncio.sleep(0.3)
            if len(token.group.members) > 1:
                await token.pass_on()
        print("done", flush=True)


def demo() -> bool:
    with _demo.members(__file__, {name: ["--turns", "1000"] for name in ("a", "b", "c")}) as m:
        for name in ("a", "b", "c"):
            m.wait_for(name, "joined")
        held = m.wait_for("b", "holding the token")
        m.kill("b")  # the holder, while it holds the token
        generation = int(held.split()[-1])
        # a gets the token again, sooner or later: once it was regenerated, the next generation
        while (seen := int(m.wait_for("a", "holding the token").split()[-1])) <= generation:
            pass  # a turn from before the crash (printed then, read only now)
        print(f"a holds the token of generation {seen}, after generation {generation} died with b")
        return seen == generation + 1


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--turns", type=int, default=20, help="how many times to hold the token (default 20)")


def main() -> int:
    return _demo.main(__doc__, "start three members, kill the holder, check the regeneration", member, demo,
                      options)


if __name__ == "__main__":
    sys.exit(main())
