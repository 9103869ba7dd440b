"""The floor under vsgroups' latency: an asyncio round trip between two processes over loopback TCP.

One process sends 100 bytes and waits for them to come back, 20,000 times; nothing else happens
(no framing, no HMAC, no protocol). ``--one-way`` uses one connection per direction, as vsgroups'
transport does; ``--third`` also sends every message to a third process that only reads it, as a
group of three does. docs/benchmarks.md compares the total-order round trip with this.

    python scripts/asyncio_floor.py [--one-way] [--third]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Callable

ROUNDS, WARMUP, SIZE = 20_000, 1_000, 100


def _nodelay(transport: asyncio.BaseTransport) -> None:
    transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Reader(asyncio.Protocol):
    transport: asyncio.Transport

    def __init__(self, on_data: Callable[[_Reader, bytes], None]) -> None:
        self.on_data = on_data

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        _nodelay(transport)
        self.transport = transport  # type: ignore[assignment]  # a socket transport

    def data_received(self, data: bytes) -> None:
        self.on_data(self, data)


async def _connect(port: int, on_data: Callable[[_Reader, bytes], None]) -> _Reader:
    loop = asyncio.get_running_loop()
    for _ in range(100):
        try:
            return (await loop.create_connection(lambda: _Reader(on_data), "127.0.0.1", port))[1]
        except OSError:
            await asyncio.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


async def _serve(role: str, port: int, back: int) -> None:
    """echo: send what arrives back (on the same connection, or to ``back``); sink: drop it."""
    loop = asyncio.get_running_loop()
    out: list[_Reader] = []

    def on_data(reader: _Reader, data: bytes) -> None:
        if role == "echo":
            (out[0].transport if out else reader.transport).write(data)

    server = await loop.create_server(lambda: _Reader(on_data), "127.0.0.1", port)
    print("ready", flush=True)
    if back:
        out.append(await _connect(back, lambda r, d: None))
    async with server:
        await asyncio.sleep(3600)


async def _ping(echo: int, home: int, sink: int) -> list[float]:
    loop = asyncio.get_running_loop()
    waiting: list[asyncio.Future[float]] = []

    def on_data(reader: _Reader, data: bytes) -> None:
        if waiting and not waiting[0].done():
            waiting[0].set_result(time.perf_counter())

    if home:
        await loop.create_server(lambda: _Reader(on_data), "127.0.0.1", home)
    peer = await _connect(echo, on_data)
    third = await _connect(sink, on_data) if sink else None
    await asyncio.sleep(0.2)  # the echo's connection back, if any, is up
    samples = []
    for _ in range(ROUNDS):
        fut = loop.create_future()
        waiting[:] = [fut]
        t0 = time.perf_counter()
        peer.transport.write(b"x" * SIZE)
        if third is not None:
            third.transport.write(b"x" * SIZE)
        samples.append(await fut - t0)
    return sorted(samples[WARMUP:])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one-way", action="store_true", help="one connection per direction")
    parser.add_argument("--third", action="store_true", help="a third process receives every message")
    parser.add_argument("--serve", nargs=3, metavar=("ROLE", "PORT", "BACK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        role, port, back = args.serve
        asyncio.run(_serve(role, int(port), int(back)))
        return
    echo, home, sink = _free_port(), _free_port() if args.one_way else 0, _free_port() if args.third else 0
    children = [subprocess.Popen([sys.executable, __file__, "--serve", "echo", str(echo), str(home)],
                                 stdout=subprocess.PIPE, text=True)]
    if sink:
        children.append(subprocess.Popen([sys.executable, __file__, "--serve", "sink", str(sink), "0"],
                                         stdout=subprocess.PIPE, text=True))
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        s = asyncio.run(_ping(echo, home, sink))
        n = len(s)
        print(f"asyncio round trip, {SIZE} B, one-way={args.one_way}, third={args.third}: "
              f"p50 {s[n // 2] * 1e6:.0f} us, p99 {s[int(n * 0.99)] * 1e6:.0f} us over {n}")
    finally:
        for child in children:
            child.kill()
            child.wait()


if __name__ == "__main__":
    main()
