"""Coordinator–cohort: one member handles each request, the others stand by and take over if it dies.

Run two or more members, each in its own terminal (make the key once: ``vsgroups keygen > cluster.key``):

    python examples/coordinator_cohort.py --name a --port 7001 --peers 7001,7002 --key cluster.key --ask 10
    python examples/coordinator_cohort.py --name b --port 7002 --peers 7001,7002 --key cluster.key

Every member serves requests (``tools.Cohort``): the coordinator of a request, picked from the view
and the request's id the same way at every member, works on it for a moment and replies. A member
started with ``--ask N`` sends N requests and prints each result with the member that produced it.
If a coordinator dies before its reply, a cohort takes the request over; the caller still gets
exactly one result.

``python examples/coordinator_cohort.py --demo`` does it all alone: it starts three members, lets
``a`` ask, SIGKILLs the coordinator of a request while it works on it, and exits 0 if ``a`` still
gets that request's result, from another member, and every result once (1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import _demo  # the --demo mode's process handling (examples/_demo.py)

import vsgroups
from vsgroups.tools import Cohort


async def member(args: argparse.Namespace) -> None:
    peers = [f"127.0.0.1:{port}" for port in args.peers.split(",")]

    async def handle(n: Any) -> Any:
        print(f"handling request {n}", flush=True)
        await asyncio.sleep(0.5)  # the work: a crash may strike meanwhile
        return f"{n} squared is {n * n}, by {args.name}"

    async with vsgroups.Node(args.name, listen=f"127.0.0.1:{args.port}", seeds=peers,
                             key_file=args.key) as node:
        cohort = await Cohort.join(node, "squares", handle)
        print(f"joined as {cohort.group.member_id}", flush=True)
        while len(cohort.group.members) < args.wait_for:
            await asyncio.sleep(0.1)
        for n in range(args.ask):
            print(f"result {await cohort.request(n)}", flush=True)
        if args.ask:
            print("done", flush=True)
        await asyncio.Event().wait()  # serve until stopped


def demo() -> bool:
    members = {"a": ["--ask", "30", "--wait-for", "3"], "b": [], "c": []}
    with _demo.members(__file__, members) as m:
        for name in ("b", "c"):
            m.wait_for(name, "joined")
        line = m.wait_for("c", "handling request")
        m.kill("c")  # the coordinator of a request, while it works on it
        lost = int(line.split()[-1])
        results = []
        while (line := m.wait_for("a", "result|done")) != "done":
            results.append(line)
        numbers = [int(r.split()[1]) for r in results]
        taken_over = [r for r in results if int(r.split()[1]) == lost]
        ok = numbers == list(range(30)) and len(taken_over) == 1 and not taken_over[0].endswith("by c")
        print(f"request {lost}: {taken_over}; every result once: {numbers == list(range(30))}")
        return ok


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ask", type=int, default=0, help="requests to send (default: none, serve)")
    parser.add_argument("--wait-for", type=int, default=1, help="members to wait for before asking")


def main() -> int:
    return _demo.main(__doc__, "start three members, kill a coordinator mid-request, check the results",
                      member, demo, options)


if __name__ == "__main__":
    sys.exit(main())
