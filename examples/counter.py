"""A replicated counter: every member adds to it, every member ends with the same total.

Run two or more members, each in its own terminal (make the key once: ``vsgroups keygen > cluster.key``):

    python examples/counter.py --name a --port 7001 --peers 7001,7002 --key cluster.key
    python examples/counter.py --name b --port 7002 --peers 7001,7002 --key cluster.key

Each member adds 1 to the counter ``--adds`` times (total order: every member applies the adds in
one order) and prints every view change and its total. It then flushes (what it cast is stable),
asks the group for its total (group RPC: every member answers at the same point of the stream, so
the answers agree), says it is done and waits until every member of its view is done too. The done
markers are totally ordered with the adds, so at the last one every member has applied the same
adds: the totals it prints agree, whoever crashed meanwhile.

``python examples/counter.py --demo`` does it all alone: it starts three members, SIGKILLs one of
them while they count, and exits 0 if the two others install a view without it and print the same
final total (1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import _demo  # the --demo mode's process handling (examples/_demo.py)

import vsgroups


class Counter(vsgroups.Replica):  # its hooks run in delivery order, the same at every member
    def __init__(self) -> None:
        self.total = 0
        self.done: set[str] = set()  # members that finished adding

    def apply(self, msg: vsgroups.Delivery) -> None:
        if msg.payload == "done":
            self.done.add(msg.sender)
        else:
            self.total += msg.payload

    def get_state(self) -> object:  # snapshotted at a joiner's join instant
        return {"total": self.total, "done": sorted(self.done)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.total, self.done = state["total"], set(state["done"])

    def query(self, msg: vsgroups.Delivery) -> object:  # answers group RPC
        return self.total


async def member(args: argparse.Namespace) -> None:
    peers = [f"127.0.0.1:{port}" for port in args.peers.split(",")]
    counter = Counter()
    async with vsgroups.Node(args.name, listen=f"127.0.0.1:{args.port}", seeds=peers,
                             key_file=args.key) as node:
        group = await node.join("counter", counter, events=True)  # returns holding the state

        async def watch() -> None:
            async for event in group.events():  # every view change and delivery, from the join on
                if isinstance(event, vsgroups.ViewChange):
                    names = ",".join(sorted(m.split("#")[0] for m in event.members))
                    print(f"view {names} total {counter.total}", flush=True)
                if set(group.members) <= counter.done:  # the last of them is done: totals agree
                    print(f"final total {counter.total}", flush=True)
                    return

        watching = asyncio.create_task(watch())
        for _ in range(args.adds):
            await group.cast(1, order="total")  # waits only for flow control
            await asyncio.sleep(0.05)
        await group.flush()  # everything this member cast is stable: every member holds it
        # a query in total order is answered by each member at the same point of the adds
        answers = await group.query("total?", replies=vsgroups.MAJORITY)
        print(f"a majority answers {sorted(set(answers.values()))}", flush=True)
        await group.cast("done", order="total")
        await watching


def demo() -> bool:
    with _demo.members(__file__, {name: ["--adds", "40"] for name in ("a", "b", "c")}) as m:
        for name in ("a", "b", "c"):  # everyone is in: views of a, b and c
            m.wait_for(name, "view a,b,c")
        m.kill("c")
        finals = []
        for name in ("a", "b"):
            m.wait_for(name, "view a,b ")
            finals.append(m.wait_for(name, "final total"))
        print("the survivors agree" if finals[0] == finals[1] else f"the survivors disagree: {finals}")
        return finals[0] == finals[1]


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adds", type=int, default=20, help="how many times to add 1 (default 20)")


def main() -> int:
    return _demo.main(__doc__, "start three members, kill one, check the totals", member, demo, options)


if __name__ == "__main__":
    sys.exit(main())
