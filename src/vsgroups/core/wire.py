"""Wire encoding of protocol messages (msgpack).

A frame is ``[sender pid, sender address, [msg, msg, ...]]`` where each msg is itself a packed
msgpack array ``[kind, group, ...]``. Messages are packed once and the bytes reused for every
destination and every retransmission, so a relayed message is byte-identical to the original
(docs/design.md §3: never re-stamp a message).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import msgpack

ORDERS = ("fifo", "causal", "total", "safe")
ORDER_CODE = {name: code for code, name in enumerate(ORDERS)}
FIFO, CAUSAL, TOTAL, SAFE = range(4)


class K(IntEnum):
    HB = 0  # [HB, None, {group: view id}]
    DATA = 1  # [DATA, g, view, seq, order, vt, [mid, ...], [payload, ...], lamport time (evs; else 0)]
    ACK = 2  # [ACK, g, view, acked vector, known numbers, waiting for stability, lamport clock (evs)]
    NUM = 3  # [NUM, g, view, first number, [mid, ...]]
    NAK = 4  # [NAK, g, view, sender index, from seq, to seq]
    NUMNAK = 5  # [NUMNAK, g, view, from number]
    JOIN = 6  # [JOIN, g, pid, addr]
    JOINACK = 7  # [JOINACK, g]
    LEAVE = 8  # [LEAVE, g, pid, not a member at all]
    PREPARE = 9  # [PREPARE, g, view, ballot]
    PROMISE = 10  # [PROMISE, g, view, ballot, report]
    REJECT = 11  # [REJECT, g, view, promised ballot]
    ACCEPT = 12  # [ACCEPT, g, view, ballot, value]
    ACCEPTED = 13  # [ACCEPTED, g, view, ballot]
    COMMIT = 14  # [COMMIT, g, view, value]
    INSTALLED = 15  # [INSTALLED, g, new view]
    EXCLUDED = 16  # [EXCLUDED, g, view]
    STATE = 17  # [STATE, g, view, index, count, chunk]
    STATEREQ = 18  # [STATEREQ, g, view, [missing indexes]]
    STATEDONE = 19  # [STATEDONE, g, view]
    DIRECT = 20  # [DIRECT, g, payload]
    MERGE = 21  # [MERGE, g, pid, addr]: pid, at addr, is in another configuration of g (evs)


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=False)


class Msg:
    """An application message of one view: the unit of the reliable streams (docs/design.md §2).

    One unit carries a run of casts of its sender with the same ordering (``mids`` and
    ``payloads``, at least one): the sender stamps them together, and every member delivers them
    together, in their cast order, where it would deliver the unit. Sequencing, vector timestamps,
    numbering, acknowledgements and retransmission are per unit, so their cost is shared by the
    run (1987b §4.3.2: batching). ``mid``, the first id, names the unit."""

    __slots__ = ("mid", "mids", "sender", "view", "seq", "order", "vt", "payloads", "raw", "ts")

    def __init__(
        self, mids: list[str], sender: str, view: str, seq: int, order: int, vt: list[int],
        payloads: list[bytes], raw: bytes | None = None, ts: int = 0,
    ) -> None:
        self.mid = mids[0]
        self.mids = mids
        self.sender = sender
        self.view = view
        self.seq = seq
        self.order = order
        self.vt = vt
        self.payloads = payloads
        self.raw = raw
        self.ts = ts  # evs: Lamport time, which orders total messages the same way in every component

    def encode(self, group: str) -> bytes:
        if self.raw is None:
            self.raw = pack([K.DATA, group, self.view, self.seq, self.order, self.vt, self.mids,
                             self.payloads, self.ts])
        return self.raw

    @classmethod
    def decode(cls, fields: list[Any], raw: bytes) -> Msg:
        _, _, view, seq, order, vt, mids, payloads, ts = fields
        if not (isinstance(seq, int) and isinstance(order, int) and 0 <= order < 4 and isinstance(vt, list)
                and isinstance(mids, list) and isinstance(payloads, list) and isinstance(ts, int)
                and 0 < len(mids) == len(payloads) and all(isinstance(m, str) for m in mids)
                and all(isinstance(p, bytes) for p in payloads)):
            raise ValueError("malformed DATA message")
        sender = sender_of(mids[0])
        prefix = sender + ":"
        if not all(m.startswith(prefix) for m in mids):
            raise ValueError("DATA message with casts of several senders")
        return cls(mids, sender, view, seq, order, vt, payloads, raw, ts)


def sender_of(mid: str) -> str:
    return mid.rpartition(":")[0]


def name_inc(pid: str) -> tuple[str, int]:
    name, _, inc = pid.rpartition("#")
    return name, int(inc)


def view_epoch(view_id: str) -> int:
    return int(view_id.partition(".")[0])
