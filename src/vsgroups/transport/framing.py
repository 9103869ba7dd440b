"""Sans-IO framing: authenticated, chunked, interleavable wire units (no sockets, no asyncio).

Theory of operation
===================

The protocol core hands the transport opaque *logical frames* (``bytes``, up to ``max_frame``,
17 MiB by default).  On the wire each logical frame becomes one or more *wire units*::

    offset  size  field
    0       4     length of the rest of the unit (tag + header + body), unsigned big-endian
    4       16    tag: HMAC-SHA256(cluster key, header || body), truncated to 128 bits
    20      1     version (1)
    21      1     flags: bit 0 = LAST (this unit is the frame's final chunk); other bits must be 0
    22      4     chunk index within the frame (0, 1, 2, ...), unsigned big-endian
    26      8     frame id, unsigned big-endian, unique per encoder
    34      n     body: bytes ``[index * chunk_size, index * chunk_size + n)`` of the logical frame

A unit is therefore at most ``chunk_size + UNIT_OVERHEAD`` bytes (256 KiB + 34 by default) and a
frame of ``s`` bytes takes ``max(1, ceil(s / chunk_size))`` units.

Why chunks interleave.  A connection is a single byte stream, so without chunking a heartbeat
queued behind a 16 MiB message would wait for all 16 MiB to be written, long enough on a slow
link to be suspected (docs/design.md §9).  Because every unit names its frame, a sender may put the
units of different frames on the stream in any interleaving as long as each frame's own units
keep their order; the decoder reassembles each frame separately and returns frames in order of
*completion*, so a small frame sent after a large one may be returned first.  The core does not
rely on transport order (it sequences and retransmits its own messages).

What is dropped, and why.  Every unit is authenticated before its header is believed.  A unit
with a wrong tag (wrong cluster key, corruption, an attacker) or a malformed header is dropped,
counted in ``FrameDecoder.dropped`` under its reason and logged on the ``vsgroups.transport``
logger (WARNING the first time a decoder sees a reason, DEBUG afterwards, so a misconfigured peer
cannot flood the log).  The length prefix is the one field that must be trusted before the tag can
be checked, so a prefix larger than ``max_unit`` is not dropped but raises ``FramingError``: the
stream has lost synchronisation (garbage, another protocol, a peer with a larger chunk size) and
the connection must be closed.  Reassembly is bounded: a frame that grows beyond ``max_frame`` is
discarded (its remaining units are skipped silently), a chunk that arrives out of sequence discards
its frame, and at most ``MAX_PARTIAL_FRAMES`` frames are reassembled at once (the oldest is evicted),
so even an authenticated but buggy peer cannot exhaust memory.  Dropping is always safe because the
core retransmits.

The tag gives authenticity and integrity, not freshness: a recorded unit can be replayed, and the
core discards the resulting duplicates as it discards retransmissions.  The HMAC is computed as in
RFC 2104 from precomputed inner and outer SHA-256 states (``hashlib`` ``copy()`` of each per
unit), which yields exactly ``hmac.new(key, msg, "sha256").digest()`` at about half the cost of
copying an ``hmac.HMAC`` object.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from hmac import compare_digest

from vsgroups.errors import PayloadTooLarge

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MAX_FRAME",
    "MAX_PARTIAL_FRAMES",
    "UNIT_OVERHEAD",
    "FrameDecoder",
    "FrameEncoder",
    "FramingError",
]

logger = logging.getLogger("vsgroups.transport")

DEFAULT_CHUNK_SIZE = 256 * 1024
DEFAULT_MAX_FRAME = 17 * 1024 * 1024
MAX_PARTIAL_FRAMES = 64

VERSION = 1
FLAG_LAST = 0x01

_LEN = struct.Struct(">I")
_HEADER = struct.Struct(">BBIQ")  # version, flags, chunk index, frame id
TAG_SIZE = 16
_PREFIX = _LEN.size + TAG_SIZE  # bytes before the header
_BODY_OFFSET = _PREFIX + _HEADER.size
UNIT_OVERHEAD = _BODY_OFFSET  # bytes of a unit that are not body: 34
_MIN_LENGTH = TAG_SIZE + _HEADER.size  # smallest valid length prefix (empty body)
_MAX_FRAME_ID = 2**64 - 1


class FramingError(Exception):
    """The byte stream cannot be decoded any further; the connection carrying it must be closed."""


def _hmac_pads(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """Inner and outer SHA-256 states of HMAC (RFC 2104) for ``key``; copy both for each message."""
    if not key:
        raise ValueError("the cluster key must not be empty")
    block = hashlib.sha256().block_size
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    return hashlib.sha256(bytes(b ^ 0x36 for b in key)), hashlib.sha256(bytes(b ^ 0x5C for b in key))


class FrameEncoder:
    """Turns logical frames into authenticated wire units (see the module docstring)."""

    def __init__(self, key: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE, *,
                 max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if not 0 < chunk_size <= 2**32 - 1 - _MIN_LENGTH:
            raise ValueError(f"chunk_size must be between 1 and {2**32 - 1 - _MIN_LENGTH}, got {chunk_size}")
        self._inner, self._outer = _hmac_pads(key)
        self.chunk_size = chunk_size
        self.max_frame = max_frame
        self._next_id = 0

    def encode(self, payload: bytes) -> list[bytes]:
        """Return the wire units of one logical frame, in the order they must be sent."""
        size = len(payload)
        if size > self.max_frame:
            raise PayloadTooLarge(f"frame of {size} bytes exceeds max_frame={self.max_frame} bytes")
        frame_id = self._next_id
        self._next_id = (frame_id + 1) & _MAX_FRAME_ID
        if size <= self.chunk_size:
            return [self._unit(FLAG_LAST, 0, frame_id, payload)]
        chunk = self.chunk_size
        last_index = (size - 1) // chunk
        with memoryview(payload) as view:
            return [self._unit(FLAG_LAST if index == last_index else 0, index, frame_id,
                               view[index * chunk:(index + 1) * chunk])
                    for index in range(last_index + 1)]

    def _unit(self, flags: int, index: int, frame_id: int, body: bytes | memoryview) -> bytes:
        header = _HEADER.pack(VERSION, flags, index, frame_id)
        inner = self._inner.copy()
        inner.update(header)
        inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return b"".join((_LEN.pack(_MIN_LENGTH + len(body)), outer.digest()[:TAG_SIZE], header, body))


class _Partial:
    """A logical frame being reassembled."""

    __slots__ = ("next_index", "parts", "size", "discarding")

    def __init__(self) -> None:
        self.next_index = 0
        self.parts: list[bytes] = []
        self.size = 0
        self.discarding = False  # grew beyond max_frame: skip the rest of its units


class FrameDecoder:
    """Incremental decoder: ``feed`` bytes as they arrive, get back complete authenticated frames."""

    def __init__(self, key: bytes, max_frame: int = DEFAULT_MAX_FRAME,
                 max_unit: int = DEFAULT_CHUNK_SIZE + UNIT_OVERHEAD, *, peer: str = "?") -> None:
        if max_unit < UNIT_OVERHEAD:
            raise ValueError(f"max_unit must be at least UNIT_OVERHEAD={UNIT_OVERHEAD}, got {max_unit}")
        self._inner, self._outer = _hmac_pads(key)
        self.max_frame = max_frame
        self.max_unit = max_unit
        self.peer = peer
        self.dropped: dict[str, int] = {}
        self._buf = bytearray()
        self._partial: dict[int, _Partial] = {}
        self._error: str | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Consume ``data``; return the logical frames it completed, in order of completion.

        Raises ``FramingError`` if the stream cannot continue; the decoder is then dead and every
        later call raises it again.
        """
        if self._error is not None:
            raise FramingError(self._error)
        buf = self._buf
        if buf:
            buf += data
            src: bytes | bytearray | memoryview = buf
        else:
            src = data  # fast path: parse straight from the caller's buffer, copy only the tail
        frames: list[bytes] = []
        with memoryview(src) as view:
            consumed = self._parse(view, frames)
        if src is buf:
            del buf[:consumed]
        elif consumed < len(data):
            buf += data[consumed:]
        return frames

    def _parse(self, view: memoryview, frames: list[bytes]) -> int:
        """Decode every complete unit in ``view`` into ``frames``; return the bytes consumed."""
        unpack_len = _LEN.unpack_from
        unpack_header = _HEADER.unpack_from
        inner_pad, outer_pad = self._inner, self._outer
        partial = self._partial
        max_unit = self.max_unit
        end = len(view)
        pos = 0
        while end - pos >= _LEN.size:
            (length,) = unpack_len(view, pos)
            if length + _LEN.size > max_unit:
                self._error = (f"unit length {length + _LEN.size} from {self.peer} exceeds "
                               f"max_unit={max_unit}: stream is garbage or from an incompatible peer")
                raise FramingError(self._error)
            start = pos
            pos += _LEN.size + length
            if pos > end:
                return start  # incomplete unit: wait for more bytes
            if length < _MIN_LENGTH:
                self._drop("short_unit", f"length {length} < {_MIN_LENGTH}")
                continue
            inner = inner_pad.copy()
            inner.update(view[start + _PREFIX:pos])
            outer = outer_pad.copy()
            outer.update(inner.digest())
            if not compare_digest(outer.digest()[:TAG_SIZE], view[start + _LEN.size:start + _PREFIX]):
                self._drop("bad_tag", "authentication failed (wrong cluster key or corrupted)")
                continue
            version, flags, index, frame_id = unpack_header(view, start + _PREFIX)
            if version != VERSION or flags & ~FLAG_LAST:
                self._drop("bad_header", f"version {version}, flags {flags:#x}")
                continue
            body = view[start + _BODY_OFFSET:pos]
            state = partial.get(frame_id)
            if state is None:
                if index != 0:
                    self._drop("orphan_chunk", f"chunk {index} of frame {frame_id} without its predecessors")
                    continue
                if flags:  # single-unit frame: the hot path
                    if len(body) > self.max_frame:
                        self._drop("frame_too_large", f"{len(body)} bytes > max_frame={self.max_frame}")
                    else:
                        frames.append(bytes(body))
                    continue
                if len(partial) >= MAX_PARTIAL_FRAMES:
                    evicted = next(iter(partial))
                    del partial[evicted]
                    self._drop("too_many_partial", f"evicted frame {evicted} to reassemble frame {frame_id}")
                state = partial[frame_id] = _Partial()
            elif index != state.next_index:
                del partial[frame_id]
                self._drop("chunk_out_of_order",
                           f"frame {frame_id}: chunk {index} where {state.next_index} was expected")
                continue
            state.next_index = index + 1
            if not state.discarding:
                state.size += len(body)
                if state.size > self.max_frame:
                    self._drop("frame_too_large", f"frame {frame_id} exceeds max_frame={self.max_frame}")
                    state.discarding = True
                    state.parts = []
                else:
                    state.parts.append(bytes(body))
            if flags:
                del partial[frame_id]
                if not state.discarding:
                    frames.append(b"".join(state.parts))
        return pos

    def _drop(self, reason: str, detail: str) -> None:
        count = self.dropped.get(reason, 0) + 1
        self.dropped[reason] = count
        level = logging.WARNING if count == 1 else logging.DEBUG
        logger.log(level, "dropped unit from %s: %s (%s; %d so far)", self.peer, reason, detail, count)
