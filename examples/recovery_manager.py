"""The recovery manager: coordinated checkpoints, and a restart from the processes that failed last.

Run three members, each in its own terminal, each with a directory of its own (make the key once:
``vsgroups keygen > cluster.key``):

    python examples/recovery_manager.py --name a --port 7001 --peers 7001,7002,7003 --key cluster.key \
        --dir /tmp/a --load
    python examples/recovery_manager.py --name b --port 7002 --peers 7001,7002,7003 --key cluster.key \
        --dir /tmp/b
    python examples/recovery_manager.py --name c --port 7003 --peers 7001,7002,7003 --key cluster.key \
        --dir /tmp/c

The members keep a running total; ``a`` adds to it and takes a coordinated checkpoint every 20
additions (``checkpoint N total T``). Kill them all (each writes its checkpoints to its
directory), and start them again: they agree on which of them failed last and the group starts
again from their newest checkpoint (``joined ... recovered from X``); a member started while the
group runs simply rejoins it.

``python examples/recovery_manager.py --demo`` does it all alone: it starts three members, SIGKILLs
c right after a checkpoint, lets a and b take more checkpoints, SIGKILLs them too (a total
failure), restarts c first — alone, with an older checkpoint — then a and b, and exits 0 if every
member restarts from a and b's newest checkpoint (1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
from typing import Any

import _demo  # the --demo mode's process handling (examples/_demo.py)

import vsgroups
from vsgroups.tools import RecoveryManager


class Total(vsgroups.Replica):
    def __init__(self) -> None:
        self.total = 0

    def apply(self, msg: vsgroups.Delivery) -> None:
        self.total += msg.payload

    def get_state(self) -> Any:
        return self.total

    def set_state(self, state: Any) -> None:
        self.total = state


async def member(args: argparse.Namespace) -> None:
    peers = [f"127.0.0.1:{port}" for port in args.peers.split(",")]
    async with vsgroups.Node(args.name, listen=f"127.0.0.1:{args.port}", seeds=peers,
                             key_file=args.key) as node:
        total = Total()
        manager = await RecoveryManager.join(node, "totals", total, args.dir)
        group = manager.group
        assert group is not None
        print(f"joined number={manager.number} total={total.total} recovered from "
              f"{manager.recovered_from or 'nobody'}", flush=True)
        while args.load and len(group.members) < 3:
            await asyncio.sleep(0.1)
        while args.load:
            for _ in range(20):
                await group.cast(1)
                await asyncio.sleep(0.01)
            await group.flush()
            number = await manager.checkpoint()
            print(f"checkpoint {number} total {total.total} members {len(group.members)}", flush=True)
        await asyncio.Event().wait()


def demo() -> bool:
    with tempfile.TemporaryDirectory() as disks:
        options = {name: ["--dir", f"{disks}/{name}"] for name in ("a", "b", "c")}
        options["a"].append("--load")
        with _demo.members(__file__, options) as m:
            for name in ("a", "b", "c"):
                m.wait_for(name, "joined")
            m.wait_for("a", "checkpoint 3 ")
            m.kill("c")  # right after a checkpoint: c holds checkpoint 3 (or 4)
            m.wait_for("a", r"checkpoint \d+ total \d+ members 2")  # a and b have gone on without c
            newest = m.wait_for("a", r"checkpoint \d+ ")
            m.kill("b")
            m.kill("a")  # a total failure: a and b failed last, with the newest checkpoint
            expected = re.match(r"checkpoint (\d+) total (\d+)", newest)
            assert expected is not None
            m.restart("c")  # back first, alone: it must wait for a and b
            m.restart("a")
            m.restart("b")
            answers = [m.wait_for(name, "joined") for name in ("a", "b", "c")]
            want = f"number={expected[1]} total={expected[2]}"
            ok = all(want in answer for answer in answers)
            print(f"every member restarted from checkpoint {expected[1]}" if ok else
                  f"wanted {want}, got {answers}")
            return ok


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", help="this member's directory: its view log and checkpoints")
    parser.add_argument("--load", action="store_true", help="add to the total, and checkpoint every 20")


def main() -> int:
    return _demo.main(__doc__, "three members, a crash, a total failure and a restart from the last to fail",
                      member, demo, options)


if __name__ == "__main__":
    sys.exit(main())
