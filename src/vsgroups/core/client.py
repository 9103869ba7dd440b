"""The client side of a group, sans-IO: a process outside the group's views that casts to it and
hears its diffusions (the papers' ``pg_client``: 1991 §2.3, client–server groups).

Theory of operation. A client is served by one member of the group at a time, its *server*:

* **Binding.** The client sends ``ClientHello`` to a member (first the seeds, later the members of
  the last view it heard of, starting at a place its name picks, so clients spread over the
  members) and is bound once that member answers with a ``ClientView``. The member answers only
  once its cast of the binding has been delivered in the group, so every member knows who serves
  the client (``vsgroups.served``). No answer within the suspect timeout, or a ``ClientRefused``:
  the next member is tried. Hellos are numbered: a member asked earlier may cast its bind late,
  and the members ignore a bind older than the one they hold, the client an answer to any but its
  newest hello.
* **Requests.** Each request carries the next sequence number of this client incarnation and is
  kept until the group acknowledges its delivery (``ClientAck``). The server casts it in the
  group; the members deliver the first copy of each number only. So after a rebind the client
  simply sends again, in order, everything not acknowledged: what the old server had cast was
  delivered by every member or by none (virtual synchrony), and a copy that arrives twice is
  applied once. Requests are totally ordered (``total`` or ``safe``), which is what makes the
  first copies arrive in number order at every member.
* **Liveness.** A client pings its server when it has sent it nothing for a heartbeat interval;
  a server silent for the suspect timeout, or a view without it, makes the client bind to another
  member. The server watches the client the same way and, if it falls silent, casts its departure:
  the client incarnation is then *expired* (``ClientRefused(expired=True)``), and the program must
  start a new one.
* **Diffusions.** A server forwards to its clients the group's diffusions, numbered in delivery
  order. A client that binds again says the number of the last one it received, and its new
  server replays the later ones from its recent history; a number that is skipped is reported.
* **Loss.** A connection that breaks loses what it had in flight. So requests not acknowledged
  for ``retry_interval`` are sent again (the members deliver one copy); a client that sees a
  diffusion number skipped holds the later ones back and asks its server again, as at a rebind,
  for the replay (the answer says from which number the server replays: any before it that the
  client lacks are reported missed); and one that has waited long for a reply asks the same way,
  since the members keep the multicast replies for a rebind.

Inputs are method calls carrying the current time; outputs are taken with ``take_outputs()``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from . import events as ev
from .config import Config
from .ids import view_epoch
from .wire import (
    ORDER_CODE,
    ClientAck,
    ClientDiffusion,
    ClientHello,
    ClientPing,
    ClientPong,
    ClientRefused,
    ClientReply,
    ClientRequest,
    ClientView,
    DecodeError,
    Frame,
    ToClient,
    decode_frame,
    decode_to_client,
    encode,
)

CLIENT_ORDERS = ("total", "safe")  # the orders of a client's requests (see the module docstring)
REPLY_PATIENCE = 4  # retry intervals a request waits for its reply before the client asks for a replay


@dataclass(slots=True)
class Bound:
    """The client now has a server in ``group`` (at a bind, and at every view it is told of)."""

    group: str
    server: str
    view: str
    members: tuple[str, ...]


@dataclass(slots=True)
class Acked:
    group: str
    seq: int


@dataclass(slots=True)
class Replied:
    group: str
    seq: int
    payload: bytes


@dataclass(slots=True)
class Diffused:
    """Diffusion ``number`` of the group; ``missed``: how many numbers before it never arrived."""

    group: str
    number: int
    mid: str
    sender: str
    payload: bytes
    missed: int = 0


@dataclass(slots=True)
class Expired:
    """The group declared this client incarnation gone: nothing more is served to it."""

    group: str
    reason: str


ClientOutput = ev.Transmit | Bound | Acked | Replied | Diffused | Expired


@dataclass
class _Binding:
    """This client's standing in one group."""

    group: str
    seeds: list[str]
    history: int = 0  # recent diffusions to receive at the first bind
    server: str | None = None  # the member id of the server, once bound
    server_addr: str | None = None
    server_node: str | None = None  # the pid of its process: a restart at the same address is another
    view: str | None = None  # the last view heard of
    target: str | None = None  # binding: the address asked
    asked_at: float = 0.0
    attempt: int = 0
    given_up: str | None = None  # the address of the last member given up (or that refused)
    hellos: int = 0  # hellos sent (the number of the last one)
    fresh: bool = True  # never bound yet
    members: list[str] = field(default_factory=list)
    addrs: dict[str, str] = field(default_factory=dict)
    diffusions: int = 0  # the number of the last diffusion received
    next_seq: int = 0
    unacked: dict[int, ClientRequest] = field(default_factory=dict)  # in seq order
    heard: float = 0.0  # from the server
    sent: float = 0.0  # to the server
    resend_at: float = 0.0  # the unacknowledged requests go out again then
    replay_at: float | None = None  # when it asked its server for a replay (None: not waiting for one)
    lost: int = 0  # diffusions its server no longer held: reported with the next one
    awaiting: dict[int, float] = field(default_factory=dict)  # requests waiting for a reply: since when

    def candidates(self, pid: str) -> list[str]:
        """Where to ask next: the members of the last view heard of, then the seeds, each from a place
        picked by the client's id (so clients spread over the servers)."""
        start = zlib.crc32(pid.encode())
        members = [self.addrs[m] for m in self.members if m in self.addrs]
        return list(dict.fromkeys([*_turn(members, start), *_turn(self.seeds, start)]))


def _turn(items: list[str], start: int) -> list[str]:
    if not items:
        return items
    start %= len(items)
    return items[start:] + items[:start]


class ClientCore:
    """One client incarnation ``name#inc`` listening at ``addr``."""

    def __init__(self, name: str, inc: int, addr: str, config: Config | None = None) -> None:
        if "#" in name or ":" in name or not name:
            raise ValueError(f"client name {name!r} must be non-empty and contain neither '#' nor ':'")
        self.pid = f"{name}#{inc}"
        self.addr = addr
        self.cfg = config or Config()
        self.groups: dict[str, _Binding] = {}
        self.outbox: dict[str, list[bytes]] = {}
        self.outputs: list[ClientOutput] = []
        self.dropped = 0  # malformed frames
        self.now = 0.0

    # -- the program's calls -------------------------------------------------------------------------

    def bind(self, group: str, seeds: list[str], now: float, history: int = 0) -> None:
        """Become a client of ``group``, asking ``seeds`` (member addresses) first; receive the last
        ``history`` diffusions before the new ones."""
        if group in self.groups:
            raise ValueError(f"already a client of group {group!r}")
        if not seeds:
            raise ValueError(f"no seed to ask for group {group!r}: give the address of a member")
        self.now = now
        binding = self.groups[group] = _Binding(group, list(seeds), history=history)
        self._ask(binding, now)

    def unbind(self, group: str) -> None:
        self.groups.pop(group, None)

    def request(self, group: str, order: str, payload: bytes, now: float, diffuse: bool = False,
                reply: bool = False) -> int:
        """Send a request; returns its sequence number (an ``Acked`` output follows its delivery).
        ``diffuse``: a posting, which the group diffuses (it travels in safe order). ``reply``: a
        reply is awaited (``forget_reply`` once it is no longer)."""
        if order not in CLIENT_ORDERS:
            raise ValueError(f"a client's requests are totally ordered: use order 'total' or 'safe', "
                             f"not {order!r}")
        binding = self._binding(group)
        self.now = now
        binding.next_seq += 1
        code = ORDER_CODE["safe" if diffuse else order]
        msg = ClientRequest(group, binding.next_seq, code, payload, diffuse)
        if not binding.unacked:
            binding.resend_at = now + self.cfg.retry_interval
        binding.unacked[msg.seq] = msg
        if reply:
            binding.awaiting[msg.seq] = now
        if binding.server_addr is not None:
            self._send(binding, binding.server_addr, encode(msg))
        return msg.seq

    def forget_reply(self, group: str, seq: int) -> None:
        binding = self.groups.get(group)
        if binding is not None:
            binding.awaiting.pop(seq, None)

    def unacked(self, group: str) -> int:
        return len(self._binding(group).unacked)

    def server(self, group: str) -> str | None:
        return self._binding(group).server

    # -- inputs --------------------------------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> None:
        self.now = now
        try:
            frame = decode_frame(data)
            msgs = [decode_to_client(raw) for raw in frame.msgs]
        except (*DecodeError, ValueError):
            self.dropped += 1
            return
        for msg in msgs:
            self._on(frame.sender, frame.addr, msg, now)

    def tick(self, now: float) -> None:
        self.now = now
        cfg = self.cfg
        for binding in self.groups.values():
            if binding.server_addr is None:
                if now - binding.asked_at > cfg.suspect_timeout:
                    self._rebind(binding, now)
            elif now - binding.heard > cfg.suspect_timeout:
                self._rebind(binding, now)
            else:
                self._repair(binding, now)
                if now - binding.sent >= cfg.heartbeat_interval:
                    self._send(binding, binding.server_addr, encode(ClientPing(None)))

    def _repair(self, binding: _Binding, now: float) -> None:
        """What a frame lost on the way (a connection that broke) left undone: requests not
        acknowledged go out again; a replay not answered, or a reply long awaited, is asked for
        (again) — a hello to the server, as at a rebind, replays the diffusions and the multicast
        replies the client may lack."""
        cfg = self.cfg
        if binding.unacked and now >= binding.resend_at:
            assert binding.server_addr is not None
            self._resend(binding, binding.server_addr)
        if binding.replay_at is not None:
            if now - binding.replay_at > cfg.retry_interval:
                self._ask_replay(binding, now)
        elif binding.awaiting and now - min(binding.awaiting.values()) > REPLY_PATIENCE * cfg.retry_interval:
            binding.awaiting = dict.fromkeys(binding.awaiting, now)
            self._ask_replay(binding, now)

    def take_outputs(self) -> list[ClientOutput]:
        for addr, msgs in self.outbox.items():
            self.outputs.append(ev.Transmit(addr, encode(Frame(self.pid, self.addr, msgs, client=True))))
        self.outbox = {}
        out, self.outputs = self.outputs, []
        return out

    # -- internals -----------------------------------------------------------------------------------

    def _binding(self, group: str) -> _Binding:
        binding = self.groups.get(group)
        if binding is None:
            raise ValueError(f"not a client of group {group!r}")
        return binding

    def _on(self, node: str, addr: str, msg: ToClient, now: float) -> None:
        """``msg`` from the process ``node`` listening at ``addr``."""
        if isinstance(msg, ClientPong):
            for each in self.groups.values():
                if each.server_node == node:
                    each.heard = now
            return
        binding = self.groups.get(msg.group)
        if binding is None:
            return
        if isinstance(msg, ClientRefused):
            if msg.expired:
                del self.groups[msg.group]
                self.outputs.append(Expired(msg.group, msg.reason))
            elif addr == binding.target or node == binding.server_node:
                # ask the next member at the next tick after a heartbeat interval, not at once: a
                # group that refuses everywhere (it is changing views) is not flooded
                self._leave_server(binding)
                binding.asked_at = now - self.cfg.suspect_timeout + self.cfg.heartbeat_interval
            return
        serves = isinstance(msg, ClientView) and self._serves(binding, addr, msg)
        if node != binding.server_node and not serves:
            # from a server we left (or never asked): its acknowledgements and replies still count
            if isinstance(msg, ClientAck | ClientReply):
                self._answer(binding, msg)
            return
        binding.heard = now
        if isinstance(msg, ClientView):
            self._view(binding, node, addr, msg)
        elif isinstance(msg, ClientDiffusion):
            self._diffusion(binding, msg)
        else:
            self._answer(binding, msg)

    def _diffusion(self, binding: _Binding, msg: ClientDiffusion) -> None:
        gap = msg.number - binding.diffusions - 1
        if gap < 0:
            return  # a replayed one already received
        if gap:  # one was lost on the way: held back until the replay fills the gap
            if binding.replay_at is None:
                self._ask_replay(binding, self.now)
            return
        binding.diffusions = msg.number
        lost, binding.lost = binding.lost, 0
        self.outputs.append(Diffused(msg.group, msg.number, msg.mid, msg.sender, msg.payload, lost))

    def _ask_replay(self, binding: _Binding, now: float) -> None:
        assert binding.server_addr is not None
        binding.replay_at = now
        self._send(binding, binding.server_addr, self._hello(binding))

    def _replayed(self, binding: _Binding, msg: ClientView) -> None:
        """The answer to a hello: the server replays the diffusions after ``msg.diffusions`` (those
        before it that the client lacks, it no longer holds)."""
        binding.replay_at = None
        if msg.diffusions > binding.diffusions:
            binding.lost += msg.diffusions - binding.diffusions
            binding.diffusions = msg.diffusions

    def _answer(self, binding: _Binding, msg: ClientAck | ClientReply) -> None:
        if isinstance(msg, ClientAck):
            if binding.unacked.pop(msg.seq, None) is not None:
                binding.resend_at = self.now + self.cfg.retry_interval
                self.outputs.append(Acked(msg.group, msg.seq))
        else:
            binding.awaiting.pop(msg.seq, None)
            self.outputs.append(Replied(msg.group, msg.seq, msg.payload))

    @staticmethod
    def _serves(binding: _Binding, addr: str, msg: ClientView) -> bool:
        """Does this view, from another process than our server, make its sender our server? The
        member we asked answers so; and when our server leaves the group, the oldest member takes
        its clients over, with a newer view."""
        if binding.server_node is None:
            return msg.answer and msg.hello == binding.hellos
        return binding.view is None or view_epoch(msg.view) > view_epoch(binding.view)

    def _view(self, binding: _Binding, node: str, addr: str, msg: ClientView) -> None:
        binding.members, binding.addrs, binding.view = msg.members, msg.addrs, msg.view
        if node == binding.server_node:
            if msg.answer and msg.hello == binding.hellos:
                self._replayed(binding, msg)
            self.outputs.append(Bound(msg.group, msg.server, msg.view, tuple(msg.members)))
            return
        taking_over = binding.server_node is not None
        binding.server, binding.server_node, binding.server_addr = msg.server, node, addr
        binding.target = None
        if binding.fresh:  # diffusions from the point the server gives (its history) on
            binding.diffusions = msg.diffusions
            binding.replay_at = None
        elif taking_over:  # what the old server forwarded last may be missing: ask for the replay
            self._ask_replay(binding, self.now)
        else:  # the answer to the newest hello (``_serves``)
            self._replayed(binding, msg)
        binding.fresh = False
        self._resend(binding, addr)  # everything not acknowledged goes out again, in order
        self.outputs.append(Bound(msg.group, msg.server, msg.view, tuple(msg.members)))

    def _resend(self, binding: _Binding, addr: str) -> None:
        for request in binding.unacked.values():
            self._send(binding, addr, encode(request))
        binding.resend_at = self.now + self.cfg.retry_interval

    def _leave_server(self, binding: _Binding) -> None:
        """Give up the current server (or the member asked): the next ask goes to the next one."""
        binding.given_up = binding.server_addr or binding.target or binding.given_up
        binding.server = binding.server_addr = binding.server_node = binding.target = None
        binding.replay_at = None
        binding.attempt += 1

    def _rebind(self, binding: _Binding, now: float) -> None:
        self._leave_server(binding)
        self._ask(binding, now, avoid=binding.given_up)

    def _ask(self, binding: _Binding, now: float, avoid: str | None = None) -> None:
        """Ask the next candidate to serve us (never again the one just given up, if there are others)."""
        candidates = binding.candidates(self.pid)
        # the one after the member given up, so that every candidate gets its turn (counting turns
        # instead let two members take turns for ever when a refusal counted twice)
        at = candidates.index(avoid) + 1 if avoid in candidates else binding.attempt
        binding.target = candidates[at % len(candidates)]
        binding.asked_at = now
        self._send(binding, binding.target, self._hello(binding))

    @staticmethod
    def _hello(binding: _Binding) -> bytes:
        """A new hello: each has a number, and only the answer to the newest counts (a member may
        cast the bind of an older one late: the members then ignore it, or the client does)."""
        binding.hellos += 1
        return encode(ClientHello(binding.group, binding.fresh, binding.diffusions, binding.history,
                                  binding.hellos))

    def _send(self, binding: _Binding, addr: str, data: bytes) -> None:
        self.outbox.setdefault(addr, []).append(data)
        if addr == binding.server_addr:
            binding.sent = self.now
