"""asyncio TCP mesh carrying the protocol core's frames between nodes.

Design
======

Connections are one-way.  To send to ``"host:port"`` a node opens its own outbound connection to
that address, lazily on the first ``send``, and only ever writes to it; every connection a node
accepts is only ever read.  No handshake is needed because payloads name their sender, and two
nodes that talk to each other simply hold two connections.  A node connects only to addresses the
caller passes to ``send``.

Sending.  ``send`` is synchronous and never blocks: it encodes the payload into authenticated wire
units (:mod:`vsgroups.transport.framing`) and appends them to the destination's queue, whose writer
task drains it into the socket; a one-unit frame that finds the queue empty and the connection up
and unpaused is written at once instead (it would be the writer's next write anyway, and this saves
the latency of waking the writer).  The writer feeds the socket only while asyncio's write buffer is
below its high-water mark (``pause_writing``/``resume_writing``), so queued bytes stay in the
queue, where the scheduler can still reorder them, instead of in a buffer it cannot.  Each batch
first starts every frame that has not started yet, in FIFO order, up to ``_BATCH_BYTES``, then sends
at least one chunk of the frames already in progress, round-robin.  A single-unit frame (a
heartbeat, an acknowledgement) therefore waits for at most about one chunk (256 KiB) plus the
socket buffers, never for a whole 16 MiB message, and large frames keep progressing under a steady
stream of small ones.  Frames to one destination may complete out of order; the core sequences its
own messages.

Failures.  A broken connection is not a failure of the peer (docs/design.md §9): the writer drops what
was queued and in flight for that destination (the core retransmits whatever matters), logs at
INFO, and reconnects once there is something new to send, waiting 50 ms after the first failure
and doubling up to 1 s while failures continue; a connection that stayed up for a second resets the
backoff.  Only the membership engine decides that a process has failed.  If a destination's queue
exceeds ``max_queue_bytes`` (a dead or slow peer), its oldest frames that have not started are
dropped; frames already partly written are finished so the receiver is never left holding half a
frame, and the newest frame is always kept.

Receiving.  Each accepted connection has its own ``FrameDecoder``; complete frames are passed to
``on_frame`` synchronously, in order of completion, from ``data_received``, and ``on_read_done``
(if given) is called after the frames of one read: the node acts on all of them together, at
once, rather than a scheduling round later.  Units that fail
authentication or are malformed are dropped and logged by the decoder; a ``FramingError`` (the
stream lost synchronisation, e.g. garbage or another protocol on the port) is logged and closes
that connection only.  An exception from ``on_frame`` is logged with its traceback and the
connection keeps reading.

The transport uses asyncio Protocols rather than streams (less overhead per read and write) and
sets TCP_NODELAY on every connection, since the core batches messages itself.  It is not thread
safe: call it from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import cast

from vsgroups.transport.framing import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_FRAME,
    UNIT_OVERHEAD,
    FrameDecoder,
    FrameEncoder,
    FramingError,
)

__all__ = ["TcpTransport", "parse_address"]

logger = logging.getLogger("vsgroups.transport")

DEFAULT_MAX_QUEUE_BYTES = 64 * 1024 * 1024
_BATCH_BYTES = 64 * 1024  # bytes gathered into one write before re-checking flow control
_INITIAL_BACKOFF = 0.05
_MAX_BACKOFF = 1.0
_CONNECT_TIMEOUT = 5.0
# What a receiver writes back, once per connection, on a connection whose frames fail authentication.
# It cannot be authenticated (the keys differ), so it is a hint for diagnosis, never acted on.
AUTH_REJECTED = b"vsgroups: your frames fail authentication here (another cluster key?)\n"
# Linux ``struct tcp_info``: eight one-byte fields, then 32-bit ones; ``tcpi_rtt`` (microseconds) is
# the sixteenth of those
_TCP_INFO_RTT = 8 + 15 * 4
_TCP_INFO_LEN = _TCP_INFO_RTT + 4


def parse_address(addr: str) -> tuple[str, int]:
    """Split ``"host:port"`` or ``"[v6addr]:port"`` into host and port; ``ValueError`` if malformed."""
    host, sep, port = addr.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"address must be 'host:port', got {addr!r}")
    return host, int(port)


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


#: Data unacknowledged for this long aborts a connection (Linux TCP_USER_TIMEOUT), so that after
#: a silent partition heals, frames flow on a fresh connection instead of waiting for the kernel's
#: retransmission backoff (minutes). The core retransmits whatever the dead connection held.
USER_TIMEOUT_MS = 3000


def _set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, USER_TIMEOUT_MS)


class TcpTransport:
    """A node's TCP endpoint: listens for frames and sends frames to ``"host:port"`` addresses."""

    def __init__(self, listen: str, key: bytes, on_frame: Callable[[bytes], None], *,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, max_frame: int = DEFAULT_MAX_FRAME,
                 max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
                 on_read_done: Callable[[], None] | None = None) -> None:
        self._listen = parse_address(listen)
        self._encoder = FrameEncoder(key, chunk_size, max_frame=max_frame)
        self._key = key
        self._on_frame = on_frame
        self._on_read_done = on_read_done
        self._max_frame = max_frame
        self._max_unit = chunk_size + UNIT_OVERHEAD
        self._max_queue_bytes = max_queue_bytes
        self._server: asyncio.Server | None = None
        self._address: str | None = None
        self._peers: dict[str, _Peer] = {}
        self._inbound: set[asyncio.Transport] = set()
        self._closed = False

    @property
    def address(self) -> str:
        """The address peers reach this node at: the listen host and the port actually bound."""
        if self._address is None:
            raise RuntimeError("TcpTransport.start() has not completed")
        return self._address

    async def start(self) -> None:
        """Bind and start accepting connections (port 0 picks a free port, see ``address``)."""
        if self._server is not None or self._closed:
            raise RuntimeError("TcpTransport.start() may be called once, before close()")
        host, port = self._listen
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _InboundProtocol(self), host, port)
        bound_port = self._server.sockets[0].getsockname()[1]
        self._address = _format_address(host, bound_port)
        logger.info("listening on %s", self._address)

    def send(self, addr: str, payload: bytes) -> None:
        """Queue ``payload`` for ``addr``; never blocks. Delivery is best effort: the core retransmits.

        Call it from the event loop's thread (the first send to an address starts its writer task).

        Raises ``PayloadTooLarge`` (a ``ValueError``) beyond ``max_frame``, ``ValueError`` for a
        malformed address and ``RuntimeError`` after ``close()``.
        """
        if self._closed:
            raise RuntimeError("TcpTransport is closed")
        units = self._encoder.encode(payload)
        peer = self._peers.get(addr)
        if peer is None:
            peer = self._peers[addr] = _Peer(addr, self._max_queue_bytes)
        peer.enqueue(units)

    def link(self, addr: str) -> str:
        """How the connection to ``addr`` stands, in words (for diagnosis): "connected", "never
        tried", or why the last attempt to connect failed."""
        peer = self._peers.get(addr)
        if peer is None:
            return "never tried"
        if peer._protocol is not None and peer._protocol.rejected:
            return "rejected: our frames fail authentication there (another cluster key?)"
        if peer._transport is not None:
            return "connected"
        return f"cannot connect ({peer.error})" if peer.error else "connecting"

    def rtt(self, addr: str) -> float | None:
        """The kernel's smoothed round-trip time of the connection to ``addr``, in seconds (Linux
        ``TCP_INFO``); None if there is no connection or the platform does not say."""
        peer = self._peers.get(addr)
        sock = peer._transport.get_extra_info("socket") if peer is not None and peer._transport else None
        if sock is None or not hasattr(socket, "TCP_INFO"):
            return None
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
        except OSError:
            return None
        if len(info) < _TCP_INFO_LEN:
            return None
        return float(struct.unpack_from("I", info, _TCP_INFO_RTT)[0]) / 1e6

    def pending_bytes(self, addr: str) -> int:
        """Bytes queued for ``addr`` and not yet accepted by the kernel (0 for an unknown address)."""
        peer = self._peers.get(addr)
        return 0 if peer is None else peer.pending_bytes()

    async def close(self) -> None:
        """Stop listening, close every connection and writer, drop queued frames. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        for transport in list(self._inbound):
            transport.abort()
        self._inbound.clear()
        tasks = [peer.task for peer in self._peers.values()]
        self._peers.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        logger.info("closed %s", self._address or "transport")


class _InboundProtocol(asyncio.Protocol):
    """One accepted connection: decode, authenticate, hand complete frames to ``on_frame``."""

    def __init__(self, owner: TcpTransport) -> None:
        self._owner = owner
        self._on_frame = owner._on_frame
        self._transport: asyncio.Transport | None = None
        self._decoder: FrameDecoder | None = None
        self._peer = "?"
        self._told = False  # AUTH_REJECTED was written

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes
        _set_nodelay(transport)
        peername = transport.get_extra_info("peername")
        self._peer = _format_address(*peername[:2]) if peername else "?"
        self._transport = transport
        self._decoder = FrameDecoder(self._owner._key, self._owner._max_frame, self._owner._max_unit,
                                     peer=self._peer)
        self._owner._inbound.add(transport)
        logger.debug("accepted connection from %s", self._peer)

    def data_received(self, data: bytes) -> None:
        assert self._decoder is not None and self._transport is not None
        try:
            frames = self._decoder.feed(data)
        except FramingError as exc:
            logger.warning("closing connection from %s: %s", self._peer, exc)
            self._transport.abort()
            return
        if not self._told and self._decoder.dropped.get("bad_tag"):
            self._told = True
            self._transport.write(AUTH_REJECTED)
        on_frame = self._on_frame
        for frame in frames:
            try:
                on_frame(frame)
            except Exception:
                logger.exception("on_frame raised on a frame from %s; connection kept", self._peer)
        if frames and self._owner._on_read_done is not None:
            try:
                self._owner._on_read_done()
            except Exception:
                logger.exception("on_read_done raised after a read from %s; connection kept", self._peer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._owner._inbound.discard(self._transport)
        logger.debug("connection from %s ended: %s", self._peer, exc or "closed")


class _OutboundProtocol(asyncio.Protocol):
    """The send-only connection to one destination; reports flow control and loss to its ``_Peer``."""

    def __init__(self, wake: asyncio.Event) -> None:
        self._wake = wake
        self.paused = False
        self.lost = False
        self.error: Exception | None = None
        self.rejected = False  # the receiver said our frames fail authentication there

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        _set_nodelay(transport)

    def data_received(self, data: bytes) -> None:
        if AUTH_REJECTED[:24] in data:  # nothing else ever comes back on a send-only connection
            self.rejected = True

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.error = exc
        self._wake.set()


class _Peer:
    """Outbound side of one destination: the frame queue, its scheduler and the writer task."""

    def __init__(self, addr: str, max_queue_bytes: int) -> None:
        self.addr = addr
        self._host, self._port = parse_address(addr)
        self._max_queue_bytes = max_queue_bytes
        self._pending: deque[deque[bytes]] = deque()  # frames not started, FIFO; each a deque of units
        self._active: deque[deque[bytes]] = deque()  # frames partly written, round-robin
        self._queued = 0  # bytes in _pending and _active
        self._wake = asyncio.Event()
        self._transport: asyncio.Transport | None = None
        self._protocol: _OutboundProtocol | None = None
        self._backoff = _INITIAL_BACKOFF
        self._retry_at = 0.0
        self.error: str | None = None  # why the last attempt to connect failed
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"vsgroups-send-{addr}")

    def enqueue(self, units: list[bytes]) -> None:
        transport, protocol = self._transport, self._protocol
        if (len(units) == 1 and transport is not None and protocol is not None and not protocol.paused
                and not protocol.lost and not (self._pending or self._active)):
            transport.write(units[0])
            return
        self._pending.append(deque(units))
        self._queued += sum(map(len, units))
        if self._queued > self._max_queue_bytes:
            self._shed()
        self._wake.set()

    def pending_bytes(self) -> int:
        transport = self._transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        return self._queued + buffered

    def _shed(self) -> None:
        frames = shed = 0
        while self._queued > self._max_queue_bytes and len(self._pending) > 1:
            size = sum(map(len, self._pending.popleft()))
            self._queued -= size
            shed += size
            frames += 1
        if frames:
            logger.debug("queue for %s over max_queue_bytes=%d: dropped %d oldest frames (%d bytes)",
                         self.addr, self._max_queue_bytes, frames, shed)

    def _next_batch(self) -> list[bytes]:
        """Units for one write: start pending frames first, then at least one in-progress chunk."""
        pending, active = self._pending, self._active
        batch: list[bytes] = []
        size = 0
        while pending and size < _BATCH_BYTES:
            units = pending.popleft()
            unit = units.popleft()
            batch.append(unit)
            size += len(unit)
            if units:
                active.append(units)
        while active:
            units = active.popleft()
            unit = units.popleft()
            batch.append(unit)
            size += len(unit)
            if units:
                active.append(units)
            if size >= _BATCH_BYTES:
                break
        self._queued -= size
        return batch

    def _drop_all(self) -> int:
        dropped = self._queued
        self._pending.clear()
        self._active.clear()
        self._queued = 0
        return dropped

    async def _wait(self) -> None:
        self._wake.clear()
        await self._wake.wait()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not (self._pending or self._active):
                await self._wait()
            delay = self._retry_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                # not asyncio.wait_for: in 3.11 it swallows a cancellation that arrives as the attempt
                # ends, and this task would then outlive close()
                async with asyncio.timeout(_CONNECT_TIMEOUT):
                    transport, protocol = await loop.create_connection(
                        lambda: _OutboundProtocol(self._wake), self._host, self._port)
            except OSError as exc:  # includes TimeoutError
                self.error = str(exc) or type(exc).__name__
                dropped = self._drop_all()
                logger.debug("cannot connect to %s (%s); dropped %d queued bytes, retry in %.2f s",
                             self.addr, str(exc) or type(exc).__name__, dropped, self._backoff)
                self._schedule_retry(loop.time())
                continue
            connected_at = loop.time()
            self.error = None
            logger.debug("connected to %s", self.addr)
            self._transport, self._protocol = transport, protocol
            try:
                await self._pump(transport, protocol)
            finally:
                self._transport = self._protocol = None
                transport.abort()
            dropped = self._drop_all()
            if loop.time() - connected_at >= _MAX_BACKOFF:
                self._backoff = _INITIAL_BACKOFF
            # a peer that stops cleanly closes its connections: only an error is news for an operator
            logger.log(logging.INFO if protocol.error or dropped else logging.DEBUG,
                       "connection to %s lost (%s); dropped %d queued bytes, will reconnect",
                       self.addr, protocol.error or "connection closed", dropped)
            self._schedule_retry(loop.time())

    def _schedule_retry(self, now: float) -> None:
        self._retry_at = now + self._backoff
        self._backoff = min(self._backoff * 2, _MAX_BACKOFF)

    async def _pump(self, transport: asyncio.Transport, protocol: _OutboundProtocol) -> None:
        """Write queued units while the connection lives and asyncio's write buffer has room."""
        while not (protocol.lost or transport.is_closing()):
            if protocol.paused or not (self._pending or self._active):
                await self._wait()
            else:
                transport.writelines(self._next_batch())
