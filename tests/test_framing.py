"""The sans-IO framing codec: round trips, interleaving, authentication, and hostile input."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsgroups.transport.framing import (
    DEFAULT_MAX_FRAME,
    MAX_PARTIAL_FRAMES,
    UNIT_OVERHEAD,
    FrameDecoder,
    FrameEncoder,
    FramingError,
)

KEY = b"cluster key for tests"
MIB = 1024 * 1024


def roundtrip(payload: bytes, chunk_size: int = 256 * 1024) -> list[bytes]:
    units = FrameEncoder(KEY, chunk_size).encode(payload)
    return FrameDecoder(KEY, max_unit=chunk_size + UNIT_OVERHEAD).feed(b"".join(units))


@pytest.mark.parametrize("size", [0, 1, 100, 1024, 256 * 1024, 256 * 1024 + 1, 3 * MIB + 7])
def test_round_trip(size: int) -> None:
    payload = os.urandom(size)
    assert roundtrip(payload) == [payload]


def test_round_trip_16_mib_fed_in_network_sized_reads() -> None:
    payload = os.urandom(16 * MIB)
    units = FrameEncoder(KEY).encode(payload)
    assert len(units) == 64 and all(len(u) <= 256 * 1024 + UNIT_OVERHEAD for u in units)
    stream = b"".join(units)
    decoder = FrameDecoder(KEY)
    frames = [f for i in range(0, len(stream), 65536) for f in decoder.feed(stream[i:i + 65536])]
    assert frames == [payload]
    assert decoder.dropped == {}


def test_tag_is_standard_truncated_hmac_sha256() -> None:
    (unit,) = FrameEncoder(KEY).encode(b"payload")
    (length,) = struct.unpack_from(">I", unit)
    assert length == len(unit) - 4
    assert unit[4:20] == hmac.new(KEY, unit[20:], hashlib.sha256).digest()[:16]
    long_key = os.urandom(100)  # longer than a SHA-256 block: hashed first, as RFC 2104 says
    (unit,) = FrameEncoder(long_key).encode(b"payload")
    assert unit[4:20] == hmac.new(long_key, unit[20:], hashlib.sha256).digest()[:16]


def test_several_frames_in_one_feed_come_out_in_order() -> None:
    encoder = FrameEncoder(KEY)
    payloads = [os.urandom(n) for n in (5, 0, 300, 70_000)]
    assert FrameDecoder(KEY).feed(b"".join(u for p in payloads for u in encoder.encode(p))) == payloads


def test_chunks_of_two_frames_interleave() -> None:
    encoder = FrameEncoder(KEY, chunk_size=1000)
    big, small = os.urandom(5500), os.urandom(2500)
    big_units, small_units = encoder.encode(big), encoder.encode(small)
    assert (len(big_units), len(small_units)) == (6, 3)
    interleaved = [big_units[0], small_units[0], big_units[1], small_units[1], small_units[2]] + big_units[2:]
    decoder = FrameDecoder(KEY, max_unit=1000 + UNIT_OVERHEAD)
    assert [f for u in interleaved for f in decoder.feed(u)] == [small, big]


def test_empty_key_is_rejected() -> None:
    with pytest.raises(ValueError, match="key"):
        FrameEncoder(b"")


def test_payload_over_max_frame_raises_value_error_naming_the_limit() -> None:
    encoder = FrameEncoder(KEY, max_frame=1000)
    encoder.encode(bytes(1000))
    with pytest.raises(ValueError, match="max_frame=1000"):
        encoder.encode(bytes(1001))
    with pytest.raises(ValueError, match=f"max_frame={DEFAULT_MAX_FRAME}"):
        FrameEncoder(KEY).encode(bytes(DEFAULT_MAX_FRAME + 1))


def test_wrong_key_is_dropped_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    decoder = FrameDecoder(KEY, peer="10.0.0.9:7000")
    intruder = FrameEncoder(b"some other key")
    with caplog.at_level(logging.DEBUG, logger="vsgroups.transport"):
        assert decoder.feed(b"".join(intruder.encode(b"evil")) * 3) == []
    assert decoder.dropped == {"bad_tag": 3}
    assert "bad_tag" in caplog.text and "10.0.0.9:7000" in caplog.text
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    good = FrameEncoder(KEY).encode(b"fine")
    assert decoder.feed(good[0]) == [b"fine"]  # the stream stays usable


@pytest.mark.parametrize("offset", [4, 12, 20, 21, 25, 30, 40])  # tag, header fields, body
def test_flipped_byte_is_dropped(offset: int) -> None:
    encoder = FrameEncoder(KEY)
    corrupt = bytearray(encoder.encode(b"x" * 20)[0])
    corrupt[offset] ^= 0x01
    after = encoder.encode(b"next")[0]
    decoder = FrameDecoder(KEY)
    assert decoder.feed(bytes(corrupt) + after) == [b"next"]
    assert decoder.dropped == {"bad_tag": 1}


def test_authenticated_but_malformed_header_is_dropped() -> None:
    # A peer speaking a future version with the right key: authentic, but not understood.
    header = struct.pack(">BBIQ", 2, 1, 0, 0)
    tag = hmac.new(KEY, header + b"body", hashlib.sha256).digest()[:16]
    unit = struct.pack(">I", 16 + len(header) + 4) + tag + header + b"body"
    decoder = FrameDecoder(KEY)
    assert decoder.feed(unit) == []
    assert decoder.dropped == {"bad_header": 1}


def test_truncated_input_waits_for_the_rest() -> None:
    (unit,) = FrameEncoder(KEY).encode(b"hello world")
    decoder = FrameDecoder(KEY)
    for i in range(len(unit) - 1):
        assert decoder.feed(unit[i:i + 1]) == []
    assert decoder.feed(unit[-1:]) == [b"hello world"]
    assert decoder.dropped == {}


def test_oversized_length_prefix_raises_and_the_decoder_stays_dead() -> None:
    decoder = FrameDecoder(KEY, max_unit=1000 + UNIT_OVERHEAD)
    big = FrameEncoder(KEY, chunk_size=2000).encode(bytes(1500))[0]  # peer with a larger chunk size
    with pytest.raises(FramingError, match="max_unit"):
        decoder.feed(big)
    with pytest.raises(FramingError):
        decoder.feed(FrameEncoder(KEY).encode(b"ok")[0])


def test_http_request_on_the_port_is_a_framing_error() -> None:
    with pytest.raises(FramingError):
        FrameDecoder(KEY).feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


def test_garbage_with_small_lengths_is_dropped_not_raised() -> None:
    garbage = struct.pack(">I", 3) + b"abc" + struct.pack(">I", 40) + os.urandom(40)
    decoder = FrameDecoder(KEY)
    assert decoder.feed(garbage) == []
    assert decoder.dropped == {"short_unit": 1, "bad_tag": 1}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_garbage_never_yields_frames_or_unexpected_errors(garbage: bytes) -> None:
    decoder = FrameDecoder(KEY)
    try:
        assert decoder.feed(garbage) == []
    except FramingError:
        pass


def test_reassembly_beyond_max_frame_is_dropped_once_and_stream_continues() -> None:
    encoder = FrameEncoder(KEY, chunk_size=100)
    decoder = FrameDecoder(KEY, max_frame=250, max_unit=100 + UNIT_OVERHEAD)
    stream = b"".join(encoder.encode(bytes(1000)) + encoder.encode(b"after"))
    assert decoder.feed(stream) == [b"after"]
    assert decoder.dropped == {"frame_too_large": 1}


def test_chunk_without_its_predecessors_is_dropped() -> None:
    units = FrameEncoder(KEY, chunk_size=10).encode(bytes(30))
    decoder = FrameDecoder(KEY, max_unit=10 + UNIT_OVERHEAD)
    assert decoder.feed(units[1] + units[2]) == []
    assert decoder.dropped == {"orphan_chunk": 2}


def test_chunk_out_of_sequence_discards_the_frame() -> None:
    units = FrameEncoder(KEY, chunk_size=10).encode(bytes(40))
    decoder = FrameDecoder(KEY, max_unit=10 + UNIT_OVERHEAD)
    assert decoder.feed(units[0] + units[2] + units[1] + units[3]) == []
    assert decoder.dropped == {"chunk_out_of_order": 1, "orphan_chunk": 2}


def test_concurrent_reassemblies_are_bounded() -> None:
    encoder = FrameEncoder(KEY, chunk_size=10)
    frames = [encoder.encode(bytes([i]) * 20) for i in range(MAX_PARTIAL_FRAMES + 1)]
    decoder = FrameDecoder(KEY, max_unit=10 + UNIT_OVERHEAD)
    assert decoder.feed(b"".join(units[0] for units in frames)) == []  # 65 first halves
    assert decoder.dropped == {"too_many_partial": 1}  # frame 0 was evicted
    completed = decoder.feed(b"".join(units[1] for units in frames))
    assert completed == [bytes([i]) * 20 for i in range(1, MAX_PARTIAL_FRAMES + 1)]
    assert decoder.dropped == {"too_many_partial": 1, "orphan_chunk": 1}


def _stream(payloads: list[bytes], chunk_size: int, seed: int) -> bytes:
    """Encode ``payloads`` and interleave their units randomly, keeping each frame's own order."""
    encoder = FrameEncoder(KEY, chunk_size)
    queues = [encoder.encode(p) for p in payloads]
    rng = random.Random(seed)
    out = []
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        out.append(queue.pop(0))
    return b"".join(out)


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=6),
    chunk_size=st.integers(min_value=1, max_value=64),
    seed=st.integers(min_value=0, max_value=2**32),
    cuts=st.lists(st.integers(min_value=0, max_value=10**6), max_size=30),
)
def test_any_split_of_a_valid_stream_decodes_to_the_same_frames(
        payloads: list[bytes], chunk_size: int, seed: int, cuts: list[int]) -> None:
    stream = _stream(payloads, chunk_size, seed)
    whole = FrameDecoder(KEY, max_unit=chunk_size + UNIT_OVERHEAD).feed(stream)
    assert sorted(whole) == sorted(payloads)
    decoder = FrameDecoder(KEY, max_unit=chunk_size + UNIT_OVERHEAD)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    pieces = [stream[a:b] for a, b in zip(points, points[1:], strict=False)]
    assert [f for piece in pieces for f in decoder.feed(bytearray(piece))] == whole
    assert decoder.dropped == {}
