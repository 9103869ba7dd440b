"""Extended virtual synchrony: a group that keeps running on every side of a partition, and merges.

Run two or more members, each in its own terminal (make the key once: ``vsgroups keygen > cluster.key``):

    python examples/evs.py --name a --port 7001 --peers 7001,7002,7003 --key cluster.key
    python examples/evs.py --name b --port 7002 --peers 7001,7002,7003 --key cluster.key
    python examples/evs.py --name c --port 7003 --peers 7001,7002,7003 --key cluster.key

Each member chats (a message every half second) and prints every configuration it installs:
``regular`` ones, and before each the ``transitional`` one that closes the last (the members that
come along, and the old messages delivered in it). Cut a member off — suspend it with Ctrl-Z for a
few seconds, then ``fg`` — and watch: the others go on in a configuration without it, it finds
itself alone when it wakes, and the two components merge again. Nobody blocks and nobody restarts:
in evs a configuration change ends a configuration, not a process. ``primary`` marks the primary
component. Each member ends after ``--seconds``.

``python examples/evs.py --demo`` does this with three members and SIGSTOP/SIGCONT, and exits 0
if they split, go on on both sides and merge back into one configuration (1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import _demo  # the --demo mode's process handling (examples/_demo.py)

import vsgroups


async def member(args: argparse.Namespace) -> None:
    peers = [f"127.0.0.1:{port}" for port in args.peers.split(",")]
    config = vsgroups.Config(suspect_timeout=0.5)  # notice a suspended member quickly
    async with vsgroups.Node(args.name, listen=f"127.0.0.1:{args.port}", seeds=peers,
                             key_file=args.key, config=config) as node:
        group = await node.join("chat", model="evs", events=True)

        async def show() -> None:
            async for event in group.events():
                if isinstance(event, vsgroups.ViewChange):
                    names = ",".join(sorted(m.split("#")[0] for m in event.members))
                    primary = " primary" if event.primary and event.kind == "regular" else ""
                    print(f"{event.kind} {names}{primary}", flush=True)

        shown = asyncio.create_task(show())
        for n in range(int(args.seconds * 2)):
            await group.cast(f"{args.name} says {n}", order="causal")
            await asyncio.sleep(0.5)
        shown.cancel()


def demo() -> bool:
    with _demo.members(__file__, {name: ["--seconds", "30"] for name in ("a", "b", "c")}) as m:
        for name in ("a", "b", "c"):
            m.wait_for(name, "regular a,b,c")
        m.kill("c", signal.SIGSTOP)  # c is cut off: a and b go on without it
        m.wait_for("a", "regular a,b ")
        m.kill("c", signal.SIGCONT)
        m.wait_for("c", "transitional c$")  # c wakes alone: its configuration ends
        m.wait_for("c", "regular a,b,c")  # and the components merge
        m.wait_for("a", "regular a,b,c")
        return True


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to chat (default 60)")


def main() -> int:
    return _demo.main(__doc__, "three members, one cut off and back", member, demo, options)


if __name__ == "__main__":
    sys.exit(main())
