"""A lock with fencing numbers: members take turns at a shared resource, and a holder's crash frees it.

Run two or more members, each in its own terminal (make the key once: ``vsgroups keygen > cluster.key``):

    python examples/lock.py --name a --port 7001 --peers 7001,7002 --key cluster.key --resource log.txt
    python examples/lock.py --name b --port 7002 --peers 7001,7002 --key cluster.key --resource log.txt

Each member ``--rounds`` times takes the lock ``printer`` (``tools.LockService``), writes a line to
the shared resource file — which refuses a fencing number lower than one it has already seen, as a
real resource behind a lock should — holds it a moment, and releases it. Requests are granted in
request order, each grant with a higher fencing number than the one before.

``python examples/lock.py --demo`` does it all alone: it starts three members, SIGKILLs one while
it holds the lock (the worst moment: the lock must not stay taken, nor be given twice), and exits
0 if another member then gets the lock with a higher fencing number and the resource accepted
every write in strictly increasing fencing order (1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

import _demo  # the --demo mode's process handling (examples/_demo.py)

import vsgroups
from vsgroups.tools import LockService


def write(resource: Path, fence: int, line: str) -> bool:
    """The resource: it keeps the highest fencing number it has seen and refuses a lower one."""
    lines = resource.read_text().splitlines() if resource.exists() else []
    if lines and int(lines[-1].split()[0]) > fence:
        return False
    with resource.open("a") as f:
        f.write(f"{fence} {line}\n")
        f.flush()
        os.fsync(f.fileno())
    return True


async def member(args: argparse.Namespace) -> None:
    peers = [f"127.0.0.1:{port}" for port in args.peers.split(",")]
    async with vsgroups.Node(args.name, listen=f"127.0.0.1:{args.port}", seeds=peers,
                             key_file=args.key) as node:
        locks = await LockService.join(node, "locks")
        print(f"joined as {locks.group.member_id}", flush=True)
        for i in range(args.rounds):
            async with locks.hold("printer") as grant:
                print(f"holding printer with fence {grant.fence}", flush=True)
                await asyncio.sleep(0.2)
                grant.check()  # raises LockLost if the grant was revoked meanwhile
                accepted = write(Path(args.resource), grant.fence, f"{args.name} round {i}")
                print(f"wrote with fence {grant.fence}: {'accepted' if accepted else 'REFUSED'}", flush=True)
            await asyncio.sleep(0.05)
        print("done", flush=True)
        await asyncio.sleep(2.0)  # stay a while: the others may still want the lock


def demo() -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        resource = Path(tmp) / "resource.txt"
        extra = ["--rounds", "30", "--resource", str(resource)]
        with _demo.members(__file__, {name: extra for name in ("a", "b", "c")}) as m:
            held = m.wait_for("c", "holding printer with fence")
            m.kill("c")  # the holder, while it holds the lock
            before = int(held.split()[-1])
            later = []  # the fencing numbers a and b are granted once c is gone
            for name in ("a", "b"):
                while (line := m.wait_for(name, "holding printer with fence|done")) != "done":
                    later.append(int(line.split()[-1]))
            if not [fence for fence in later if fence > before]:
                print(f"nobody was granted the lock after the holder's crash (it held fence {before})")
                return False
        fences = [int(line.split()[0]) for line in resource.read_text().splitlines()]
        ok = fences == sorted(set(fences)) and len(fences) > 10
        print(f"the resource took {len(fences)} writes, fencing numbers "
              f"{'strictly increasing' if ok else f'NOT strictly increasing: {fences}'}")
        return ok


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=10, help="how many times to take the lock (default 10)")
    parser.add_argument("--resource", default="resource.txt", help="the shared resource file")


def main() -> int:
    return _demo.main(__doc__, "start three members, kill the holder, check the grants", member, demo,
                      options)


if __name__ == "__main__":
    sys.exit(main())
