"""News: a bulletin board whose subscribers get the recent history, then every new posting.

Run three carriers of the board and a reader, each in its own terminal (make the key once:
``vsgroups keygen > cluster.key``):

    python examples/news.py --name a --port 7001 --peers 7001,7002,7003 --key cluster.key
    python examples/news.py --name b --port 7002 --peers 7001,7002,7003 --key cluster.key
    python examples/news.py --name c --port 7003 --peers 7001,7002,7003 --key cluster.key
    python examples/news.py --name d --port 7004 --peers 7001,7002,7003 --key cluster.key --read

The carriers (``tools.Board``) keep the subject "weather" — its group's recent postings. The reader
process runs two clients: a poster, which posts 20 bulletins, and a subscriber (``tools.Reader``),
which then subscribes with a history of 5 and reads while the poster goes on to 40. The subscriber
gets bulletins 16..20 from the history, then 21..40 as they are posted, in one order, with no gap
and no duplicate — also when the carrier serving it dies and another takes over.

``python examples/news.py --demo`` does it all alone: it starts the three carriers and the reader,
SIGKILLs the subscriber's carrier mid-stream, and exits 0 if the subscriber read exactly bulletins
16..40, in order (1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import _demo  # the --demo mode's process handling (examples/_demo.py)

import vsgroups
from vsgroups.tools import Board, Reader

SUBJECT = "weather"
POSTS, HISTORY, EARLY = 40, 5, 20


async def carrier(args: argparse.Namespace, peers: list[str]) -> None:
    async with vsgroups.Node(args.name, listen=f"127.0.0.1:{args.port}", seeds=peers,
                             key_file=args.key) as node:
        group = await Board(node).carry(SUBJECT)
        print(f"joined as {group.member_id}", flush=True)
        await asyncio.Event().wait()  # serve until stopped


async def reader(args: argparse.Namespace, peers: list[str]) -> None:
    async with vsgroups.Client(f"{args.name}-poster", seeds=peers, key_file=args.key) as poster_client, \
            vsgroups.Client(args.name, seeds=peers, key_file=args.key,
                            listen=f"127.0.0.1:{args.port}") as subscriber_client:
        poster, subscriber = Reader(poster_client), Reader(subscriber_client)
        for n in range(1, EARLY + 1):
            await poster.post(SUBJECT, f"bulletin-{n}")  # returns once the board holds it
        postings = await subscriber.subscribe(SUBJECT, history=HISTORY)
        print(f"subscribed (served by {subscriber.subjects[SUBJECT].server})", flush=True)

        async def post_the_rest() -> None:
            for n in range(EARLY + 1, POSTS + 1):
                await poster.post(SUBJECT, f"bulletin-{n}")
                await asyncio.sleep(0.05)

        posting = asyncio.create_task(post_the_rest())
        async for p in postings:
            print(f"got {p.number} {p.body}", flush=True)
            if p.body == f"bulletin-{POSTS}":
                break
        await posting
        print("done", flush=True)


async def member(args: argparse.Namespace) -> None:
    ports = args.peers.split(",")
    peers = [f"127.0.0.1:{port}" for port in ports[:args.servers or len(ports)]]
    await (reader(args, peers) if args.read else carrier(args, peers))


def demo() -> bool:
    servers = ["--servers", "3"]
    with _demo.members(__file__, {"a": servers, "b": servers, "c": servers,
                                  "d": [*servers, "--read"]}) as m:
        for name in ("a", "b", "c"):
            m.wait_for(name, "joined")
        victim = m.wait_for("d", "subscribed").split()[-1].rstrip(")").split("#")[0]
        got = [m.wait_for("d", "got") for _ in range(10)]
        m.kill(victim)  # the subscriber's carrier, mid-stream
        while (line := m.wait_for("d", "got|done")) != "done":
            got.append(line)
        bodies = [line.split()[2] for line in got]
        numbers = [int(line.split()[1]) for line in got]
        expected = [f"bulletin-{n}" for n in range(EARLY - HISTORY + 1, POSTS + 1)]
        ok = bodies == expected and numbers == list(range(EARLY - HISTORY + 1, POSTS + 1))
        print(f"the subscriber read bulletins {numbers[0]}..{numbers[-1]}: the last {HISTORY} before it "
              f"subscribed, then every new one, once, in order: {ok}")
        return ok


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--read", action="store_true", help="run the poster and the subscriber")
    parser.add_argument("--servers", type=int, default=0,
                        help="how many of --peers are carriers (default: all)")


def main() -> int:
    return _demo.main(__doc__, "start three carriers and a reader, kill the reader's carrier mid-stream, "
                      "check what it read", member, demo, options)


if __name__ == "__main__":
    sys.exit(main())
