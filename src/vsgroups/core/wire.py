"""The protocol's messages, as typed records, and their encoding (msgpack, through msgspec).

A frame is ``Frame(sender pid, sender address, [encoded message, ...], aliases)``; each message is encoded
once, and its bytes are reused for every destination and every retransmission, so a relayed
message is byte-identical to the original (docs/design.md §3: never re-stamp a message).

Every message is a ``msgspec.Struct`` encoded as a msgpack array whose first element is its kind
(``K``) and whose second is its group. Decoding checks the type of every field before an engine
sees the message, so a handler never meets a field of the wrong type; what decoding cannot check
(ranges, membership of the sender) the handlers do. The values and reports of a view change are
records too (``Value``, ``Part``, ``StreamReport``).
"""

from __future__ import annotations

from enum import IntEnum

import msgspec

from .ids import sender_of

ORDERS = ("fifo", "causal", "total", "safe")
ORDER_CODE = {name: code for code, name in enumerate(ORDERS)}
FIFO, CAUSAL, TOTAL, SAFE = range(4)

Ballot = tuple[int, str]  # (round, proposer): compared as a tuple


class K(IntEnum):
    HB = 0
    DATA = 1
    ACK = 2
    NUM = 3
    NAK = 4
    NUMNAK = 5
    JOIN = 6
    JOINACK = 7
    LEAVE = 8
    PREPARE = 9
    PROMISE = 10
    REJECT = 11
    ACCEPT = 12
    ACCEPTED = 13
    COMMIT = 14
    INSTALLED = 15
    EXCLUDED = 16
    STATE = 17
    STATEREQ = 18
    STATEDONE = 19
    DIRECT = 20
    MERGE = 21
    STATUS = 22
    STATUSREPLY = 23
    CHELLO = 24
    CREQUEST = 25
    CPING = 26
    CVIEW = 27
    CACK = 28
    CREPLY = 29
    CDIFFUSION = 30
    CREFUSED = 31
    CPONG = 32
    ANNOUNCE = 33


class Frame(msgspec.Struct, array_like=True, omit_defaults=True):
    sender: str  # pid of the sending incarnation
    addr: str  # where it listens
    msgs: list[bytes]  # encoded messages
    # group: the sender's member id in it, where that is not ``sender`` (it was excluded from the
    # group and joined it again under a fresh identity, docs/design.md §1); usually empty, and then
    # not on the wire at all
    aliases: dict[str, str] = {}
    client: bool = False  # from a client of a group (``vsgroups.Client``), not a peer process


class _Message(msgspec.Struct, array_like=True, frozen=True):
    pass


# -- the data path (docs/design.md §2-4) ---------------------------------------------------------

class Heartbeat(_Message, frozen=True, tag=int(K.HB)):
    """A sign of life naming views of its sender (merge discovery and stale views)."""

    group: None
    views: dict[str, str | None]  # group: view id (None: joining it)
    complete: bool = False  # it names every group its sender is in or joining (a probe names one)
    suspects: list[str] = []  # processes its sender watches and suspects (``monitoring``)


class Data(_Message, frozen=True, tag=int(K.DATA)):
    """A run of casts of one sender with one ordering: the unit of the streams (see ``wire.Msg``)."""

    group: str
    view: str
    seq: int
    order: int
    vt: list[int]
    mids: list[str]
    payloads: list[bytes]
    ts: int  # evs: Lamport time (0 in vs)


class Ack(_Message, frozen=True, tag=int(K.ACK)):
    group: str
    view: str
    acked: list[int]  # per sender, the prefix held with its causal past
    known: int  # contiguous count of global numbers known
    waiting: bool  # the sender still waits for stability (or for deliveries: causality domains)
    clock: int  # evs: Lamport clock
    delivered: list[int]  # per sender, the prefix delivered here (causality domains); [] before the state


class Announcement(_Message, frozen=True, tag=int(K.ANNOUNCE)):
    """Stability in a view of more than ``stream.ALL_TO_ALL`` members, from its aggregator (the
    oldest member, which alone hears the others' acknowledgements) to the others."""

    group: str
    view: str
    stable: list[int]  # per sender, the prefix every member acknowledged
    stable_num: int  # global numbers every member knows
    seen: list[int]  # per sender, the highest sequence some member holds (gap repair)
    known: int  # the most global numbers some member knows (repair of the numbers)
    delivered: list[int]  # per sender, the prefix every member delivered (causality domains)
    heard: bool  # every member acknowledged in this view with the state
    waiting: bool  # the aggregator asks for fresh acknowledgements (a lost one, or someone waits)
    clocks: list[int]  # evs: per member, the clock of its latest acknowledgement...
    sent: list[int]  # ...and how many messages it had sent by then (both empty in vs)
    first: int = 0  # vs: the aggregator is the sequencer, and announces the numbers it just gave
    mids: list[str] = []  # (an order notice, ``Num``, travelling with the announcement)


class Num(_Message, frozen=True, tag=int(K.NUM)):
    """Order notice: messages ``mids`` hold global numbers ``first``, ``first + 1``, ..."""

    group: str
    view: str
    first: int
    mids: list[str]


class Nak(_Message, frozen=True, tag=int(K.NAK)):
    group: str
    view: str
    sender: int  # index of the sender in the view
    first: int
    last: int


class NumNak(_Message, frozen=True, tag=int(K.NUMNAK)):
    group: str
    view: str
    first: int


class Direct(_Message, frozen=True, tag=int(K.DIRECT)):
    """Point to point (group RPC replies)."""

    group: str
    payload: bytes


# -- joining and leaving (docs/design.md §5, §7) ---------------------------------------------------

class Join(_Message, frozen=True, tag=int(K.JOIN)):
    group: str
    pid: str
    addr: str


class JoinAck(_Message, frozen=True, tag=int(K.JOINACK), omit_defaults=True):
    """A member heard a join request. What it knows of why the joiner may wait, for diagnosis only
    (the coordinator decides): another incarnation of the joiner's name is a member, or a view
    change is under way here that has not ended."""

    group: str
    held_by: str | None = None
    blocked: bool = False


class Leave(_Message, frozen=True, tag=int(K.LEAVE)):
    group: str
    pid: str
    not_member: bool = False  # "pid is not in the group at all" (only from pid itself)


class MergeHint(_Message, frozen=True, tag=int(K.MERGE)):
    """evs: ``pid``, at ``addr``, is in another configuration of the group."""

    group: str
    pid: str
    addr: str


# -- the view change (docs/design.md §5, §6) -------------------------------------------------------

class Primary(msgspec.Struct, array_like=True, frozen=True):
    """evs: a primary configuration, installed or attempted (docs/design.md §6.5)."""

    id: str
    members: list[str]


class History(msgspec.Struct, array_like=True, frozen=True):
    """evs: what a member knows of the primary component (docs/design.md §6.5): the last primary
    configuration it installed, and the primary configurations it accepted since and did not install
    (*attempts*: each may have been installed elsewhere). Kept on stable storage."""

    last: Primary | None = None
    attempts: list[Primary] = []


class Part(msgspec.Struct, array_like=True, frozen=True):
    """evs: what a value says of one previous configuration C."""

    t: list[str]  # the transitional configuration: the members that come from C
    order: list[str]  # the messages of C they deliver, in order...
    msgs: dict[str, bytes]  # ...and their encodings
    split: int  # the first ``split`` are delivered in C, the rest in the transitional configuration


class Value(msgspec.Struct, array_like=True, frozen=True, omit_defaults=True):
    """The decided value of a transition: the next view and how the old one ends."""

    prev: str | None  # the view it succeeds (vs; None for the view of a founder or a recovery)
    id: str
    members: list[str]  # age order
    addrs: dict[str, str]
    state_from: str | None  # who sends the state to the joiners
    joiners: list[str]
    voters: list[str]  # whose reports it was built from
    primary: bool = True
    order: list[str] = []  # vs: the final set F of the old view, in delivery order...
    msgs: dict[str, bytes] = {}  # ...and its messages
    parts: dict[str, Part] = {}  # evs: per previous configuration
    follows: str | None = None  # evs, a primary value: the primary configuration it succeeds


class StreamReport(msgspec.Struct, array_like=True, frozen=True):
    """What a member's stream holds, for the final set (``ViewStream.report``)."""

    delivered: list[int]
    recv: list[int]
    msgs: list[bytes]  # every message still held
    numbers: dict[str, int]  # the known prefix of global numbers


class Prepare(_Message, frozen=True, tag=int(K.PREPARE)):
    group: str
    view: str | None
    ballot: Ballot
    targets: list[str]  # evs: who must promise


class Promise(_Message, frozen=True, tag=int(K.PROMISE), omit_defaults=True):
    group: str
    view: str | None
    ballot: Ballot
    report: StreamReport
    accepted: tuple[Ballot, Value] | None  # the value accepted for this transition, if any
    at: str | None  # the promiser's view (evs: several configurations merge)
    members: list[str]  # its members
    primary: bool
    awaiting: bool  # a joiner without the state yet: it cannot send state to others
    history: History | None = None  # evs: the promiser's primary history


class Reject(_Message, frozen=True, tag=int(K.REJECT)):
    group: str
    view: str | None
    promised: Ballot


class Accept(_Message, frozen=True, tag=int(K.ACCEPT)):
    group: str
    view: str | None
    ballot: Ballot
    value: Value


class Accepted(_Message, frozen=True, tag=int(K.ACCEPTED)):
    group: str
    view: str | None
    ballot: Ballot


class Commit(_Message, frozen=True, tag=int(K.COMMIT)):
    group: str
    view: str | None  # the view it ends
    value: Value


class Installed(_Message, frozen=True, tag=int(K.INSTALLED)):
    group: str
    view: str


class Excluded(_Message, frozen=True, tag=int(K.EXCLUDED)):
    """``view`` was succeeded without the receiver."""

    group: str
    view: str


# -- state transfer (docs/design.md §7) ------------------------------------------------------------

class StateChunk(_Message, frozen=True, tag=int(K.STATE)):
    group: str
    view: str
    index: int
    count: int
    chunk: bytes


class StateRequest(_Message, frozen=True, tag=int(K.STATEREQ)):
    group: str
    view: str
    missing: list[int]


class StateDone(_Message, frozen=True, tag=int(K.STATEDONE)):
    group: str
    view: str


Message = (
    Heartbeat | Data | Ack | Announcement | Num | Nak | NumNak | Join | JoinAck | Leave | Prepare | Promise
    | Reject | Accept | Accepted | Commit | Installed | Excluded | StateChunk | StateRequest | StateDone
    | Direct | MergeHint
)

# -- control: a tool asking a node about itself (``vsgroups status``) --------------------------------
#
# A control frame's sender is ``CONTROL``, which is no process id: the node answers it without
# taking the asker for a peer (no failure detection, no heartbeats to it).

CONTROL = ""


class StatusRequest(_Message, frozen=True, tag=int(K.STATUS)):
    group: None
    nonce: int


class StatusReply(_Message, frozen=True, tag=int(K.STATUSREPLY)):
    group: None
    nonce: int
    status: bytes  # JSON: see ``vsgroups.status``


# -- clients of a group (docs/guide/clients.md) --------------------------------------------------------
#
# A client is a process outside the group's views. Its frames (``Frame.client``) carry only these
# messages, and a node never takes their sender for a peer: no failure detection, no heartbeats.
# The server side of the protocol lives above the core (``vsgroups.served``): the core carries the
# messages, answers pings and remembers when each client was last heard.


class ClientHello(_Message, frozen=True, tag=int(K.CHELLO)):
    """A client asks the receiver to serve it in ``group``."""

    group: str
    fresh: bool  # this client incarnation was never served in the group
    diffusions: int  # the number of the last diffusion it received (the server replays the later ones)
    history: int = 0  # fresh: how many of the group's recent diffusions to replay first (news)
    hello: int = 0  # the client's count of its hellos: a member answers only the newest it heard


class ClientRequest(_Message, frozen=True, tag=int(K.CREQUEST)):
    """A client's cast or request, for its server to cast in the group (a retransmission after a
    rebind has the same ``seq``: the servers deliver the first copy only)."""

    group: str
    seq: int
    order: int
    payload: bytes
    diffuse: bool = False  # a posting: the group diffuses it to its members and clients


class ClientPing(_Message, frozen=True, tag=int(K.CPING)):
    group: None


class ClientPong(_Message, frozen=True, tag=int(K.CPONG)):
    group: None


class ClientView(_Message, frozen=True, tag=int(K.CVIEW)):
    """The group's view, from the member serving the client (``server``)."""

    group: str
    view: str
    members: list[str]
    addrs: dict[str, str]
    server: str
    diffusions: int  # a new client's starting point: it receives the diffusions numbered after it
    answer: bool = False  # it answers the client's hello: the replay of what the client missed follows
    hello: int = 0  # the number of the hello it answers


class ClientAck(_Message, frozen=True, tag=int(K.CACK)):
    """The client's ``seq`` was delivered in the group (not retransmitted again)."""

    group: str
    seq: int


class ClientReply(_Message, frozen=True, tag=int(K.CREPLY)):
    """A server's answer to the client's request ``seq``."""

    group: str
    seq: int
    payload: bytes


class ClientDiffusion(_Message, frozen=True, tag=int(K.CDIFFUSION)):
    """The group's diffusion number ``number`` (they are numbered in delivery order)."""

    group: str
    number: int
    mid: str
    sender: str
    payload: bytes


class ClientRefused(_Message, frozen=True, tag=int(K.CREFUSED)):
    """The receiver does not serve the client in ``group``; ``expired``: no member will, as this
    client incarnation was declared gone (its outcome is final: it must start anew)."""

    group: str
    reason: str
    expired: bool = False


ToServer = ClientHello | ClientRequest | ClientPing
ToClient = ClientView | ClientAck | ClientReply | ClientDiffusion | ClientRefused | ClientPong

encode = msgspec.msgpack.Encoder().encode
decode_to_server = msgspec.msgpack.Decoder(ToServer).decode
decode_to_client = msgspec.msgpack.Decoder(ToClient).decode
decode_control = msgspec.msgpack.Decoder(StatusRequest | StatusReply).decode
decode_frame = msgspec.msgpack.Decoder(Frame).decode
decode_history = msgspec.msgpack.Decoder(History).decode
decode = msgspec.msgpack.Decoder(Message).decode
decode_data = msgspec.msgpack.Decoder(Data).decode
DecodeError = (msgspec.DecodeError, msgspec.ValidationError)


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
            self.raw = encode(Data(group, self.view, self.seq, self.order, self.vt, self.mids, self.payloads,
                                   self.ts))
        return self.raw

    @classmethod
    def of(cls, data: Data, raw: bytes) -> Msg:
        """The unit a received ``Data`` message carries (``raw``: its encoding)."""
        mids = data.mids
        if not (0 <= data.order < 4 and 0 < len(mids) == len(data.payloads)):
            raise ValueError("malformed DATA message")
        sender = sender_of(mids[0])
        prefix = sender + ":"
        if not all(m.startswith(prefix) for m in mids):
            raise ValueError("DATA message with casts of several senders")
        return cls(mids, sender, data.view, data.seq, data.order, data.vt, data.payloads, raw, data.ts)

    @classmethod
    def decode(cls, raw: bytes) -> Msg:
        return cls.of(decode_data(raw), raw)
