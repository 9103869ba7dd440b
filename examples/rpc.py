"""Group RPC: ask every member of a group at once, and get one answer per member of the view.

Run two or more members, each in its own terminal (make the key once: ``vsgroups keygen > cluster.key``):

    python examples/rpc.py --name a --port 7001 --peers 7001,7002 --key cluster.key --ask 10
    python examples/rpc.py --name b --port 7002 --peers 7001,7002 --key cluster.key

Every member answers queries with its name and how many it has answered. A member started with
``--ask N`` sends N queries, one every half second, to all members (``replies=ALL``), prints the
answers, and ends. A query is totally ordered with the group's view changes: a member that fails
before answering is simply out of the next view, and counts as answered, so a query never hangs on
a crash (a ``timeout`` bounds it too). The others run until stopped (Ctrl-C).

``python examples/rpc.py --demo`` starts three members, SIGKILLs one while the first keeps asking,
and exits 0 if the later queries are answered by exactly the two survivors (1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import _demo  # the --demo mode's process handling (examples/_demo.py)

import vsgroups


class Server(vsgroups.Replica):
    def __init__(self, name: str) -> None:
        self.name = name
        self.answered = 0

    def query(self, msg: vsgroups.Delivery) -> dict[str, object]:  # runs at every member, in order
        self.answered += 1
        return {"name": self.name, "answered": self.answered}


async def member(args: argparse.Namespace) -> None:
    peers = [f"127.0.0.1:{port}" for port in args.peers.split(",")]
    async with vsgroups.Node(args.name, listen=f"127.0.0.1:{args.port}", seeds=peers,
                             key_file=args.key) as node:
        group = await node.join("rpc", Server(args.name))
        print(f"joined as {group.member_id}", flush=True)
        for _ in range(args.ask):
            replies = await group.query("who is there?", replies=vsgroups.ALL, timeout=5.0)
            names = ",".join(sorted(reply["name"] for reply in replies.values()))
            print(f"answered by {names}", flush=True)
            await asyncio.sleep(0.5)
        if not args.ask:
            await asyncio.Event().wait()  # serve until stopped


def demo() -> bool:
    with _demo.members(__file__, {"a": ["--ask", "40"], "b": [], "c": []}) as m:
        m.wait_for("a", "answered by a,b,c$")
        m.kill("c")
        m.wait_for("a", "answered by a,b$")  # the query under way counts c as answered once it is out
        return True


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ask", type=int, default=0, help="queries to send, then end (default: none, serve)")


def main() -> int:
    return _demo.main(__doc__, "start three members, kill one, check the answers", member, demo, options)


if __name__ == "__main__":
    sys.exit(main())
