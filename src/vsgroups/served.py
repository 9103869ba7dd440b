"""The server side of a group's clients (docs/guide/clients.md; the client side is ``core.client``).

Everything the members must agree on about clients is decided by deliveries, so it is the same at
every member and travels to joiners with the group's state (``ClientTable``):

* A member that a client asks to serve it casts a *bind*. At its delivery every member records who
  serves the client; the server then answers the client with the view, replays the diffusions it
  missed, and the multicast replies it may not have received.
* A client's request is cast by its server. Every member delivers the first copy of each sequence
  number only, and the member that cast a copy acknowledges it to the client once it is delivered
  and stable (every member holds it: a total-order message delivered by its sequencer alone is
  lost if the sequencer fails), so the client sends again, after a rebind, whatever could still
  be lost, and nothing twice.
* What a client hears of the group's history is stable too: diffusions and multicast replies are
  cast in safe order, so no client ever hears of a message that the group could lose.
* A server watches its clients; one silent for the suspect timeout is declared gone by a cast, so
  every member learns it at the same point of the stream (``Replica.client_left``). Its id is kept
  among the expired ones, so that nothing it sent late is ever applied.
* Diffusions are numbered in delivery order; the recent ones are kept for clients that bind again.
* At a view change, the clients of the members that left are given to the oldest member, which
  watches them (from one suspect timeout on: they need that long to notice) until they bind
  elsewhere.

Clients are served by vs groups (primary component): in evs, each component would decide alone
what a client's sequence numbers mean.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgpack

from .core.events import FromClient
from .core.wire import (
    ORDERS,
    SAFE,
    TOTAL,
    ClientAck,
    ClientDiffusion,
    ClientHello,
    ClientRefused,
    ClientReply,
    ClientView,
    ToClient,
    encode,
)
from .errors import VsgroupsError

if TYPE_CHECKING:
    from .api import Group

# the kinds of the group messages that carry the protocol (``api._CAST`` etc. are 0..2)
BIND, REQUEST, GONE, DIFFUSE, CREPLY = 3, 4, 5, 6, 7
DIFFUSION_HISTORY = 1024  # diffusions kept for clients that bind again
EXPIRED_KEPT = 10_000  # ids of clients declared gone, kept so that a late copy is never applied
REPLIES_KEPT = 256  # multicast replies kept per client, for a rebind (beyond the client's window)


def encode_payload(body: list[Any]) -> bytes:
    """A group message of the protocol, encoded as ``api`` encodes its own (msgpack lists)."""
    return msgpack.packb(body, use_bin_type=True)


@dataclass
class ClientEntry:
    server: str  # the member id that serves the client
    addr: str
    done: int = 0  # the highest request number delivered
    hello: int = 0  # the number of the client's hello it was last bound by
    replies: dict[int, bytes] = field(default_factory=dict)  # multicast replies, the most recent


@dataclass(frozen=True)
class Diffusion:
    number: int
    mid: str
    sender: str
    payload: bytes


class ClientTable:
    """The replicated record of a group's clients; changed by deliveries only."""

    def __init__(self) -> None:
        self.clients: dict[str, ClientEntry] = {}
        self.expired: dict[str, None] = {}  # insertion-ordered: the oldest go first
        self.diffusions = 0
        self.recent: deque[Diffusion] = deque(maxlen=DIFFUSION_HISTORY)

    def bind(self, client: str, addr: str, server: str, fresh: bool, hello: int = 0) -> bool | None:
        """``server`` serves ``client`` from now on (True); None if the bind answers an older
        hello than one already bound (it is ignored); False if this client incarnation is over."""
        entry = self.clients.get(client)
        if client in self.expired or entry is None and not fresh:
            return False  # a client served before that the group no longer knows was declared gone
        if entry is None:
            self.clients[client] = ClientEntry(server, addr, hello=hello)
        elif hello < entry.hello:
            return None
        else:
            entry.server, entry.addr, entry.hello = server, addr, hello
        return True

    def request(self, client: str, seq: int) -> bool | None:
        """A copy of request ``seq`` was delivered: True to apply it, False for a duplicate, None if
        the client is not served (it was declared gone)."""
        entry = self.clients.get(client)
        if entry is None:
            return None
        if seq <= entry.done:
            return False
        entry.done = seq
        return True

    def gone(self, client: str) -> bool:
        if self.clients.pop(client, None) is None:
            return False
        self.expired[client] = None
        while len(self.expired) > EXPIRED_KEPT:
            del self.expired[next(iter(self.expired))]
        return True

    def diffused(self, mid: str, sender: str, payload: bytes) -> Diffusion:
        self.diffusions += 1
        diffusion = Diffusion(self.diffusions, mid, sender, payload)
        self.recent.append(diffusion)
        return diffusion

    def replied(self, client: str, seq: int, payload: bytes) -> ClientEntry | None:
        entry = self.clients.get(client)
        if entry is not None:
            entry.replies[seq] = payload
            if len(entry.replies) > REPLIES_KEPT:
                del entry.replies[min(entry.replies)]
        return entry

    def since(self, number: int) -> list[Diffusion]:
        return [d for d in self.recent if d.number > number]

    def view(self, members: tuple[str, ...]) -> list[str]:
        """A new view: the clients of members that left go to the oldest member; returns them."""
        present = set(members)
        moved = [c for c, e in self.clients.items() if e.server not in present]
        for client in moved:
            self.clients[client].server = members[0]
        return moved

    def served_by(self, member: str) -> list[str]:
        return [c for c, e in self.clients.items() if e.server == member]

    def snapshot(self) -> Any:
        return {"clients": {c: [e.server, e.addr, e.done, [[s, r] for s, r in e.replies.items()], e.hello]
                            for c, e in self.clients.items()},
                "expired": list(self.expired), "diffusions": self.diffusions,
                "recent": [[d.number, d.mid, d.sender, d.payload] for d in self.recent]}

    def restore(self, state: Any) -> None:
        self.clients = {c: ClientEntry(server, addr, done, hello, {s: r for s, r in replies})
                        for c, (server, addr, done, replies, hello) in state["clients"].items()}
        self.expired = dict.fromkeys(state["expired"])
        self.diffusions = state["diffusions"]
        self.recent = deque((Diffusion(*d) for d in state["recent"]), maxlen=DIFFUSION_HISTORY)


class Serving:
    """One member's part: casts what its clients send, answers them at the deliveries, watches them.
    ``group`` is the ``api.Group`` it belongs to."""

    def __init__(self, group: Group) -> None:
        self.group = group
        self.table = ClientTable()
        self.declared: set[str] = set()  # clients whose departure this member cast
        self.unstable: list[tuple[str, int]] = []  # (address, seq): acknowledgements awaiting stability
        self.acker: asyncio.Task[None] | None = None

    # -- from the clients ----------------------------------------------------------------------------

    def from_client(self, out: FromClient) -> None:
        group, msg = self.group, out.msg
        if group.model != "vs":
            self._send(out.addr, ClientRefused(out.group, f"group {out.group!r} is an evs group: clients are "
                                                          f"served by vs groups"))
            return
        try:
            if isinstance(msg, ClientHello):
                bind = [BIND, out.client, out.addr, msg.fresh, msg.diffusions, msg.history, msg.hello]
                group._send(encode_payload(bind), "total")
            elif msg.order in (TOTAL, SAFE):  # a posting is safe: clients hear of it once delivered
                order = "safe" if msg.diffuse else ORDERS[msg.order]
                group._send(encode_payload([REQUEST, out.client, msg.seq, msg.payload, msg.diffuse]), order)
        except VsgroupsError as exc:  # leaving, or in a view change that excluded this member
            self._send(out.addr, ClientRefused(out.group, f"{group.member_id} cannot serve now: {exc}"))

    # -- deliveries ----------------------------------------------------------------------------------

    def bound(self, body: list[Any], sender: str) -> None:
        _, client, addr, fresh, seen, history, hello = body
        table, me = self.table, self.group.member_id
        bound = table.bind(client, addr, sender, fresh, hello)
        if bound is None:  # an older hello's, cast late
            return
        if not bound:
            if sender == me:
                self._expired(client, addr)
            return
        self.declared.discard(client)
        if sender != me:
            return
        self.group.node._core.client_heard.setdefault(client, self.group.node._now())
        # the replay: after the last ``history`` diffusions (a new client) or after the last one the
        # client received, as far back as this member still holds them
        held = table.recent[0].number - 1 if table.recent else table.diffusions
        seen = min(max(table.diffusions - history if fresh else seen, held), table.diffusions)
        self._send(addr, self._view_msg(answer=hello, diffusions=seen))
        name = self.group.name
        for d in table.since(seen):
            self._send(addr, ClientDiffusion(name, d.number, d.mid, d.sender, d.payload))
        if not fresh:
            for seq, payload in table.clients[client].replies.items():
                self._send(addr, ClientReply(name, seq, payload))

    def request(self, body: list[Any], sender: str, order: str) -> bool:
        """A copy of a client's request was delivered: True if it is the first (to apply)."""
        client, seq = body[1], body[2]
        fresh = self.table.request(client, seq)
        if sender == self.group.member_id:
            entry = self.table.clients.get(client)
            if entry is None:
                self._expired(client, None)
            elif order == "safe":  # stable already
                self._send(entry.addr, ClientAck(self.group.name, seq))
            else:
                self._ack_when_stable(entry.addr, seq)
        return bool(fresh)

    def _ack_when_stable(self, addr: str, seq: int) -> None:
        self.unstable.append((addr, seq))
        if self.acker is None or self.acker.done():
            self.acker = asyncio.get_running_loop().create_task(self._ack_stable())

    async def _ack_stable(self) -> None:
        """Acknowledge batches of requests once this member's casts so far are stable."""
        while self.unstable:
            batch, self.unstable = self.unstable, []
            try:
                await self.group.flush()
            except VsgroupsError:  # the member is leaving or was excluded: its clients bind again
                self.unstable.clear()
                return
            for addr, seq in batch:
                self._send(addr, ClientAck(self.group.name, seq))

    def gone(self, body: list[Any]) -> bool:
        client = body[1]
        entry = self.table.clients.get(client)
        if not self.table.gone(client):
            return False
        assert entry is not None
        if entry.server == self.group.member_id:
            self._expired(client, entry.addr)
        return True

    def diffused(self, mid: str, sender: str, payload: bytes) -> int:
        d = self.table.diffused(mid, sender, payload)
        me = self.group.member_id
        data = b""
        for entry in self.table.clients.values():
            if entry.server == me:
                data = data or encode(ClientDiffusion(self.group.name, d.number, mid, sender, payload))
                self._send_raw(entry.addr, data)
        return d.number

    def replied(self, body: list[Any]) -> None:
        _, client, seq, payload = body
        entry = self.table.replied(client, seq, payload)
        if entry is not None and entry.server == self.group.member_id:
            self._send(entry.addr, ClientReply(self.group.name, seq, payload))

    def view(self, members: tuple[str, ...]) -> None:
        """A view was installed here: take over the clients of members that left, tell ours."""
        core, now, me = self.group.node._core, self.group.node._now(), self.group.member_id
        self.declared.clear()  # a departure cast in the old view may be lost with it: cast again if so
        grace = now + self.group.node.config.suspect_timeout  # time to notice and bind elsewhere
        for client in self.table.view(members):
            if members[0] == me:
                core.client_heard[client] = max(core.client_heard.get(client, now), grace)
        for client in self.table.served_by(me):
            self._send(self.table.clients[client].addr, self._view_msg())

    # -- the member's own doings ---------------------------------------------------------------------

    def reply(self, client: str, seq: int, payload: bytes) -> bool:
        entry = self.table.clients.get(client)
        if entry is None:
            return False
        self._send(entry.addr, ClientReply(self.group.name, seq, payload))
        return True

    def tick(self, now: float) -> None:
        """Declare gone the clients of this member silent for the suspect timeout."""
        group = self.group
        if not self.table.clients or group.name not in group.node._core.groups:
            return
        core, timeout = group.node._core, group.node.config.suspect_timeout
        for client in self.table.served_by(group.member_id):
            if client not in self.declared and now - core.client_heard.get(client, now) > timeout:
                self.declared.add(client)
                with contextlib.suppress(VsgroupsError):
                    group._send(encode_payload([GONE, client]), "total")

    def snapshot(self) -> Any:
        return self.table.snapshot() if self.table.clients or self.table.diffusions or self.table.expired \
            else None

    def restore(self, state: Any, members: tuple[str, ...]) -> None:
        """A joiner's table, as of its join; the view it joined in changes it as it did the others'."""
        self.table = type(self.table)()  # a subclass stays (the simulator's broken variant)
        self.declared.clear()
        if state is not None:
            self.table.restore(state)
            if members:
                self.table.view(members)

    # -- internals -----------------------------------------------------------------------------------

    def _view_msg(self, answer: int | None = None, diffusions: int | None = None) -> ClientView:
        """The view for a client; ``answer``: the number of the hello it answers."""
        group = self.group
        core = group.node._core
        members = list(group.members)
        addrs = {m: (group.node.address if m == group.member_id else core.addrs.get(m, "")) for m in members}
        return ClientView(group.name, group.view.view if group.view else "", members, addrs, group.member_id,
                          self.table.diffusions if diffusions is None else diffusions, answer is not None,
                          answer or 0)

    def _expired(self, client: str, addr: str | None) -> None:
        core = self.group.node._core
        core.forget_client(client)
        if addr is not None:
            self._send(addr, ClientRefused(self.group.name, f"client {client} was declared gone by group "
                                                            f"{self.group.name!r}", expired=True))

    def _send(self, addr: str, msg: ToClient) -> None:
        self._send_raw(addr, encode(msg))

    def _send_raw(self, addr: str, data: bytes) -> None:
        node = self.group.node
        node._core.send_client(addr, data, node._now())
        node._schedule()
