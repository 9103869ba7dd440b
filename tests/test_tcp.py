"""The asyncio TCP mesh over 127.0.0.1: delivery, interleaving, hostile peers, reconnection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

import pytest

from vsgroups.transport.framing import UNIT_OVERHEAD
from vsgroups.transport.tcp import TcpTransport, parse_address

KEY = b"cluster key for tests"
GUARD = 60.0  # generous upper bound so a bug fails the test instead of hanging it
MIB = 1024 * 1024


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, GUARD))


class Inbox:
    """An ``on_frame`` callback that records frames and lets a test await a condition on them."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self._changed = asyncio.Event()

    def __call__(self, frame: bytes) -> None:
        self.frames.append(frame)
        self._changed.set()

    async def until(self, condition: Callable[[list[bytes]], bool]) -> None:
        while not condition(self.frames):
            self._changed.clear()
            await self._changed.wait()


class LogWatch(logging.Handler):
    """Captures ``vsgroups.transport`` records and lets a test await one containing some text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self._changed.set()

    async def until(self, text: str) -> None:
        while not any(text in message for message in self.messages):
            self._changed.clear()
            await self._changed.wait()


@contextlib.contextmanager
def watch_log() -> Iterator[LogWatch]:
    logger = logging.getLogger("vsgroups.transport")
    watch, level = LogWatch(), logger.level
    logger.addHandler(watch)
    logger.setLevel(logging.DEBUG)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)
        logger.setLevel(level)


async def start(stack: contextlib.AsyncExitStack, on_frame: Callable[[bytes], None], *,
                key: bytes = KEY, listen: str = "127.0.0.1:0", **options: Any) -> TcpTransport:
    transport = TcpTransport(listen, key, on_frame, **options)
    stack.push_async_callback(transport.close)
    await transport.start()
    return transport


async def wait(awaitable: Awaitable[None], timeout: float = GUARD) -> None:
    await asyncio.wait_for(awaitable, timeout)


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:7001") == ("127.0.0.1", 7001)
    assert parse_address("[::1]:7001") == ("::1", 7001)
    for bad in ("127.0.0.1", ":7001", "host:x", "host:70000"):
        with pytest.raises(ValueError, match="host:port"):
            parse_address(bad)


def test_frames_flow_both_ways_and_small_frames_overtake_a_16_mib_frame() -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            inbox_a, inbox_b = Inbox(), Inbox()
            a = await start(stack, inbox_a)
            b = await start(stack, inbox_b)
            assert a.address.startswith("127.0.0.1:") and a.address != "127.0.0.1:0"
            big_ab, big_ba = os.urandom(16 * MIB), os.urandom(16 * MIB)
            small = [b"small-%d" % i for i in range(20)]
            a.send(b.address, big_ab)
            for frame in small:  # queued behind the big frame, sent between its chunks
                a.send(b.address, frame)
            b.send(a.address, big_ba)
            b.send(a.address, b"reply")
            await wait(inbox_b.until(lambda frames: len(frames) == 21))
            await wait(inbox_a.until(lambda frames: len(frames) == 2))
            assert inbox_b.frames == [*small, big_ab]
            assert inbox_a.frames == [b"reply", big_ba]
            assert a.pending_bytes(b.address) == 0 and a.pending_bytes("127.0.0.1:1") == 0

    run(main())


def test_peer_with_wrong_key_is_ignored_and_others_still_get_through() -> None:
    async def main() -> None:
        with watch_log() as log:
            async with contextlib.AsyncExitStack() as stack:
                inbox = Inbox()
                receiver = await start(stack, inbox)
                friend = await start(stack, Inbox())
                intruder = await start(stack, Inbox(), key=b"not the cluster key")
                intruder.send(receiver.address, b"evil")
                await wait(log.until("bad_tag"))
                friend.send(receiver.address, b"good")
                intruder.send(receiver.address, b"evil again")  # same connection: still open, still dropped
                friend.send(receiver.address, b"good again")
                await wait(inbox.until(lambda frames: len(frames) == 2))
                assert inbox.frames == [b"good", b"good again"]

    run(main())


def test_garbage_on_the_port_closes_that_connection_only() -> None:
    async def main() -> None:
        with watch_log() as log:
            async with contextlib.AsyncExitStack() as stack:
                inbox = Inbox()
                receiver = await start(stack, inbox)
                friend = await start(stack, Inbox())
                loop = asyncio.get_running_loop()
                with socket.socket() as raw:
                    raw.setblocking(False)
                    await loop.sock_connect(raw, parse_address(receiver.address))
                    await loop.sock_sendall(raw, b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
                    try:
                        assert await loop.sock_recv(raw, 100) == b""  # closed by the receiver
                    except ConnectionResetError:
                        pass
                assert any("closing connection" in m and "max_unit" in m for m in log.messages)
                friend.send(receiver.address, b"still served")
                await wait(inbox.until(lambda frames: frames == [b"still served"]))

    run(main())


def test_exception_in_on_frame_is_logged_and_reading_continues() -> None:
    async def main() -> None:
        inbox = Inbox()

        def on_frame(frame: bytes) -> None:
            if frame == b"boom":
                raise RuntimeError("handler bug")
            inbox(frame)

        with watch_log() as log:
            async with contextlib.AsyncExitStack() as stack:
                receiver = await start(stack, on_frame)
                sender = await start(stack, Inbox())
                sender.send(receiver.address, b"boom")
                sender.send(receiver.address, b"after")
                await wait(inbox.until(lambda frames: frames == [b"after"]))
                assert any("on_frame raised" in m for m in log.messages)

    run(main())


def test_sender_reconnects_to_a_receiver_restarted_on_the_same_port() -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            first = Inbox()
            receiver = await start(stack, first)
            address = receiver.address
            sender = await start(stack, Inbox())
            sender.send(address, b"before")
            await wait(first.until(lambda frames: frames == [b"before"]))

            await receiver.close()
            sender.send(address, b"into the void")  # dropped (broken connection or refused): no error

            second = Inbox()
            await start(stack, second, listen=address)
            # The transport may drop frames while it notices the break and reconnects; like the
            # core, keep retransmitting until one arrives.
            attempt = 0
            while not second.frames:
                sender.send(address, b"after-%d" % attempt)
                attempt += 1
                with contextlib.suppress(TimeoutError):
                    await wait(second.until(bool), timeout=0.25)
            sender.send(address, b"steady")
            await wait(second.until(lambda frames: frames[-1] == b"steady"))
            assert first.frames == [b"before"]
            assert all(f.startswith(b"after-") for f in second.frames[:-1])

    run(main())


def test_queue_overflow_sheds_oldest_frames_and_keeps_the_newest() -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            inbox = Inbox()
            receiver = await start(stack, inbox)
            sender = await start(stack, Inbox(), max_queue_bytes=10_000)
            unit = 1000 + UNIT_OVERHEAD
            for i in range(100):  # no await: the writer has not run yet, everything is queued
                sender.send(receiver.address, bytes([i]) * 1000)
            assert sender.pending_bytes(receiver.address) == 9 * unit
            await wait(inbox.until(lambda frames: len(frames) == 9))
            assert inbox.frames == [bytes([i]) * 1000 for i in range(91, 100)]

            sender.send(receiver.address, bytes(50_000))  # alone over the limit, still kept
            await wait(inbox.until(lambda frames: len(frames) == 10))

    run(main())


def test_send_limits_and_close_is_prompt_and_idempotent() -> None:
    async def main() -> None:
        transport = TcpTransport("127.0.0.1:0", KEY, Inbox(), max_frame=1000)
        try:
            await transport.start()
            with pytest.raises(ValueError, match="max_frame=1000"):
                transport.send("127.0.0.1:9", bytes(1001))
            with pytest.raises(ValueError, match="host:port"):
                transport.send("nowhere", b"x")
            transport.send("127.0.0.1:9", b"to a port nobody listens on")  # writer retries quietly
        finally:
            await wait(transport.close(), timeout=5)
        await transport.close()
        with pytest.raises(RuntimeError, match="closed"):
            transport.send("127.0.0.1:9", b"x")

    run(main())


def test_on_read_done_follows_the_frames_of_each_read() -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            calls: list[str] = []
            inbox = Inbox()

            def on_frame(frame: bytes) -> None:
                calls.append("frame")
                inbox(frame)

            receiver = await start(stack, on_frame, on_read_done=lambda: calls.append("done"))
            sender = await start(stack, Inbox())
            for i in range(200):
                sender.send(receiver.address, b"frame-%d" % i)
            await wait(inbox.until(lambda frames: len(frames) == 200))
            assert calls[-1] == "done"  # the last read, like every read, ends with on_read_done
            assert "done done" not in " ".join(calls)  # never called for a read without frames
            assert calls.count("frame") == 200 and 1 <= calls.count("done") <= 200
            assert inbox.frames == [b"frame-%d" % i for i in range(200)]

    run(main())


def test_the_transport_runs_under_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")  # installed with the test extras on Linux

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            inbox_a, inbox_b = Inbox(), Inbox()
            a = await start(stack, inbox_a)
            b = await start(stack, inbox_b)
            big = os.urandom(2 * MIB)  # several chunks: the queued path as well as the direct one
            a.send(b.address, b"first")
            a.send(b.address, big)
            b.send(a.address, b"reply")
            await wait(inbox_b.until(lambda frames: len(frames) == 2))
            await wait(inbox_a.until(lambda frames: frames == [b"reply"]))
            assert sorted(inbox_b.frames, key=len) == [b"first", big]

    uvloop.run(asyncio.wait_for(main(), GUARD))


def test_close_is_prompt_even_when_a_connection_attempt_ends_as_it_is_cancelled() -> None:
    """``asyncio.wait_for`` (3.11) swallows a cancellation that arrives as the awaited attempt ends;
    a writer that swallowed it waited for new frames forever, and ``close()`` waited for the writer.
    Each round ends the attempt a different number of loop iterations before ``close()``."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        real = loop.create_connection
        for iterations in range(6):
            gate = asyncio.Event()

            async def refused(*args: Any, gate: asyncio.Event = gate, **kwargs: Any) -> Any:
                await gate.wait()
                raise ConnectionRefusedError("refused by the test")

            transport = TcpTransport("127.0.0.1:0", KEY, Inbox())
            await transport.start()
            loop.create_connection = refused  # type: ignore[method-assign]
            try:
                transport.send("127.0.0.1:9", b"frame")
                for _ in range(3):
                    await asyncio.sleep(0)  # the writer is now waiting for the connection
                gate.set()
                for _ in range(iterations):
                    await asyncio.sleep(0)
                await asyncio.wait_for(transport.close(), 5.0)
            finally:
                loop.create_connection = real  # type: ignore[method-assign]

    run(main())
