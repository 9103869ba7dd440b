"""Subdivided work: a search split over the members of a group, a dead member's share re-issued.

Run two or more members, each in its own terminal (make the key once: ``vsgroups keygen > cluster.key``):

    python examples/parallel_search.py --name a --port 7001 --peers 7001,7002 --key cluster.key --ask 5
    python examples/parallel_search.py --name b --port 7002 --peers 7001,7002 --key cluster.key

The group searches the numbers below 3,000 for those whose digits add up to a target
(``tools.Split``): every query is cut into one share per member of the view, each member searches
its share (every n-th number) and the caller gets the parts, one per share. If a member dies in the
middle of its share, a survivor searches that share again.

``python examples/parallel_search.py --demo`` does it all alone: it starts three members, lets
``a`` ask, SIGKILLs ``c`` in the middle of a share, and exits 0 if every answer is the complete
one (checked against a search done alone), 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import _demo  # the --demo mode's process handling (examples/_demo.py)

import vsgroups
from vsgroups.tools import Split

LIMIT = 3000


def digits_add_up(n: int, target: int) -> bool:
    return sum(map(int, str(n))) == target


async def member(args: argparse.Namespace) -> None:
    peers = [f"127.0.0.1:{port}" for port in args.peers.split(",")]

    async def search(target: int, share: int, shares: int) -> list[int]:
        print(f"searching share {share} of {shares} for {target}", flush=True)
        await asyncio.sleep(0.5)  # a slow search: a crash may strike meanwhile
        return [n for n in range(share, LIMIT, shares) if digits_add_up(n, target)]

    async with vsgroups.Node(args.name, listen=f"127.0.0.1:{args.port}", seeds=peers,
                             key_file=args.key) as node:
        split = await Split.join(node, "search", search)
        print(f"joined as {split.group.member_id}", flush=True)
        while len(split.group.members) < args.wait_for:
            await asyncio.sleep(0.1)
        for target in range(1, args.ask + 1):
            parts = await split.query(target)
            found = sorted(n for part in parts for n in part)
            complete = found == [n for n in range(LIMIT) if digits_add_up(n, target)]
            print(f"target {target}: {len(found)} numbers in {len(parts)} shares, "
                  f"{'complete' if complete else 'INCOMPLETE'}", flush=True)
        if args.ask:
            print("done", flush=True)
        await asyncio.Event().wait()  # serve until stopped


def demo() -> bool:
    with _demo.members(__file__, {"a": ["--ask", "8", "--wait-for", "3"], "b": [], "c": []}) as m:
        for name in ("b", "c"):
            m.wait_for(name, "joined")
        m.wait_for("c", "searching share")
        m.kill("c")  # in the middle of its share
        answers = []
        while (line := m.wait_for("a", "target|done")) != "done":
            answers.append(line)
        ok = len(answers) == 8 and all(a.endswith("complete") for a in answers)
        print("every answer complete" if ok else f"answers: {answers}")
        return ok


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ask", type=int, default=0, help="searches to run (default: none, serve)")
    parser.add_argument("--wait-for", type=int, default=1, help="members to wait for before asking")


def main() -> int:
    return _demo.main(__doc__, "start three members, kill one mid-share, check the answers", member, demo,
                      options)


if __name__ == "__main__":
    sys.exit(main())
