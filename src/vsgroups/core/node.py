"""One process incarnation: the sans-IO protocol endpoint that the runtime and simulator drive.

``NodeCore`` owns what its groups share: the identity ``name#inc``, failure detection, addresses
and the outbox. A group that went on without this node (vs exclusion, a join that cannot finish)
is joined again alone under a fresh member id ``name#inc2`` (``rejoin``), while the node's other
groups keep their views: frames then carry the node's *aliases*, its member id per group where it
differs from the node's (docs/design.md §1). A peer takes the alias for the sender of that group's
messages, watches it through the node's frames, and counts the node's old identity as gone from
the group. Inputs are method calls carrying the current time; outputs accumulate and are taken
with ``take_outputs()``. Messages bound for the same address during one call leave in one frame
(batching, 1987b §4.3.2).

Failure detection (docs/design.md §9): any frame from a peer is a sign of life; a peer that watches
this node (``monitoring``: every member of a small view, a ring neighbour in a large one) and has
been sent nothing for ``heartbeat_interval`` gets a heartbeat, which names our views when they
changed (so a peer left behind in an old view learns what followed it). A watched peer silent for
``suspect_timeout`` is suspected, and the suspicion reported to every peer; an unwatched one when
it is reported and silent as long. A newer incarnation of a process proves the older one dead.
Suspicion is not a verdict: only a view change makes a process failed.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from heapq import heappop, heappush

from . import events as ev
from .config import Config
from .domains import Domains
from .group import GroupEngine, GroupStatus, raise_not_member
from .ids import name_inc
from .monitoring import rings
from .wire import (
    CONTROL,
    ORDERS,
    Accept,
    ClientHello,
    ClientPing,
    ClientPong,
    ClientRefused,
    Commit,
    DecodeError,
    Frame,
    Heartbeat,
    History,
    Leave,
    Prepare,
    StatusRequest,
    decode,
    decode_control,
    decode_frame,
    decode_to_server,
    encode,
)

ALIVE = encode(Heartbeat(None, {}))  # a heartbeat naming no view: a sign of life only

log = logging.getLogger("vsgroups.core")


@dataclass(slots=True)
class Traffic:
    """The frames (and their bytes) this node received and sent, and those it dropped as malformed:
    counters for ``vsgroups status``, for the node and per peer address."""

    frames_in: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    dropped: int = 0


class NodeCore:
    def __init__(
        self, name: str, inc: int, addr: str, config: Config | None = None, seed: int = 0, counter: int = 0
    ) -> None:
        """``counter``: message ids already used by this incarnation (it recovers from stable storage)."""
        if "#" in name or ":" in name or not name:
            raise ValueError(f"process name {name!r} must be non-empty and contain neither '#' nor ':'")
        self.name = name
        self.inc = inc
        self.pid = f"{name}#{inc}"
        self.addr = addr
        self.cfg = config or Config()
        self.rng = random.Random(f"{seed}/{self.pid}")
        self.groups: dict[str, GroupEngine] = {}
        self.domains = Domains()
        self.domain_of: dict[str, str] = {}  # group: the causality domain it was joined in
        self.counter = counter  # message ids are member:counter, unique across groups and views
        self.aliases: dict[str, str] = {}  # group: this node's member id in it, where not self.pid
        self.node_of: dict[str, str] = {}  # a peer's member id: the pid of the node it runs on
        # groups this node was in under its current member id there (it left, was excluded, or
        # called a join off): a member id serves one membership, so it joins again under a new one
        self.spent: set[str] = set()
        self.former: dict[str, set[str]] = {}  # group: this node's earlier member ids in it
        self.flush_tokens = 0
        self.addrs: dict[str, str] = {}
        self.last_heard: dict[str, float] = {}
        self.newest_inc: dict[str, int] = {name: inc}
        self.last_sent: dict[str, float] = {}
        self.last_probe = float("-inf")
        self.outbox: dict[str, list[bytes]] = {}
        self.outputs: list[ev.Output] = []
        self.loopback: list[bytes] = []
        self.batching = False
        self.deferred: dict[GroupEngine, None] = {}  # ordered: runs stay a function of the seed
        self.suspected: set[str] = set()  # members of our views suspected at the last tick
        # engines to tick at the next tick, and the quiet ones by when they are due (``tick``)
        self.awake: dict[GroupEngine, None] = {}
        self.asleep: list[tuple[float, int, GroupEngine]] = []
        self.slept = 0  # orders engines due at the same time: runs stay a function of the seed
        # what ``tick`` scans only when it is due: the members of our views (None: to be computed
        # again), the next time one of them may need a heartbeat, and may become suspected
        self.view_peers: set[str] | None = None
        # failure detection (``monitoring``): the peers' nodes we watch (and since when), the
        # members our heartbeats go to, reports of suspicion (node: when), and the nodes we
        # watch and suspect (reported in our heartbeats to every peer)
        self.monitored: dict[str, float] = {}
        self.beat_to: set[str] = set()
        self.reported: dict[str, float] = {}
        self.reporting: list[str] = []
        self.report_now = False
        self.heartbeat_due = float("-inf")
        self.watch_due = float("-inf")
        # a heartbeat names our views only when they changed since the last that did, or once
        # every probe_interval: (version of our views, when) last named to an address
        self.views_version = 0
        self.views_told: dict[str, tuple[int, float]] = {}
        # (version, the heartbeat naming them, encoded)
        self.named: tuple[int, Heartbeat | None, bytes] = (-1, None, b"")
        self.traffic = Traffic()
        self.peer_traffic: dict[str, Traffic] = {}  # by the address a peer listens on
        self.client_heard: dict[str, float] = {}  # a client of our groups: when we last heard from it
        self.now = 0.0

    # -- application calls -----------------------------------------------------------------------

    def join(
        self, group: str, seeds: list[str], now: float, founder: bool = False, model: str = "vs",
        domain: str | None = None,
    ) -> None:
        """Join ``group`` in ``model`` "vs" (primary component) or "evs" (extended virtual synchrony),
        in causality ``domain`` (by default the one every group shares: ``domains``)."""
        if group in self.groups:
            raise ValueError(f"already joining or a member of group {group!r}")
        if group in self.spent:
            raise ValueError(f"{self.member_id(group)} was in group {group!r} before: join it again under a "
                             f"fresh member id (rejoin)")
        self.now = now
        engine = GroupEngine(self, group, list(seeds), founder, now, model, self.member_id(group),
                             frozenset(self.former.get(group, ())))
        self._place(engine, domain)
        engine.tick(now)
        self._drain(now)

    def rejoin(self, group: str, inc: int, seeds: list[str], now: float, model: str = "vs",
               founder: bool = False, domain: str | None = None) -> None:
        """Join ``group`` again, as the member ``name#inc``, after this node left it, was excluded
        from it (an ``Excluded`` output) or called a join of it off: its old member id is over in
        that group (fail-stop, 1987a), not in the node's other groups. ``inc`` must be above every
        incarnation number this process has used, in any group."""
        old = self.member_id(group)
        if inc <= max(name_inc(old).inc, self.inc):
            raise ValueError(f"a member id of {self.name} must be fresh: {inc} is not above {old}")
        self.former.setdefault(group, set()).add(old)
        self.aliases[group] = f"{self.name}#{inc}"
        self.spent.discard(group)
        self.join(group, seeds, now, founder=founder, model=model, domain=domain or self.domain_of.get(group))

    def _place(self, engine: GroupEngine, domain: str | None) -> None:
        self.groups[engine.name] = engine
        self.awake[engine] = None
        self.views_version += 1
        engine.domain = self.domains.enter(engine, domain)
        self.domain_of[engine.name] = engine.domain.name

    def member_id(self, group: str) -> str:
        """This node's identity in ``group``: its pid, unless it was excluded from it and rejoined."""
        return self.aliases.get(group, self.pid)

    def recover(
        self, group: str, seeds: list[str], now: float, epoch: int, history: History | None = None,
        domain: str | None = None,
    ) -> None:
        """Recover membership of evs ``group`` after a failure, with stable storage: ``epoch`` is the
        newest configuration epoch this process installed in it, ``history`` the last
        ``PrimaryHistory`` it output for it. The process installs a singleton configuration of
        itself (1994 §2) and merges with the others as components do."""
        if group in self.groups:
            raise ValueError(f"already joining or a member of group {group!r}")
        self.now = now
        engine = GroupEngine(self, group, list(seeds), False, now, "evs", self.member_id(group))
        self._place(engine, domain or self.domain_of.get(group))
        engine.recover(epoch, now, history)
        self._drain(now)

    def leave(self, group: str, now: float) -> None:
        self.now = now
        self._group(group).leave(now)
        self._drain(now)

    def cast(self, group: str, payload: bytes, order: str, now: float) -> str:
        if order not in ORDERS:
            from ..errors import UnknownOrdering

            raise UnknownOrdering(f"unknown ordering {order!r}: use one of {', '.join(ORDERS)}")
        if len(payload) > self.cfg.max_payload:
            from ..errors import PayloadTooLarge

            raise PayloadTooLarge(
                f"payload of {len(payload)} bytes exceeds the limit of {self.cfg.max_payload}")
        engine = self._group(group)
        self.now = now
        self.counter += 1
        mid = f"{engine.me}:{self.counter}"
        try:
            engine.cast(mid, order, payload)
        except Exception:
            self.counter -= 1
            raise
        self._drain(now)
        return mid

    def backlog(self, group: str) -> int:
        """Casts accepted but not yet sent (flow control or a view change holds them)."""
        return len(self._group(group).data.pending)

    def backlog_bytes(self, group: str) -> int:
        return self._group(group).data.pending_bytes

    def status(self, group: str) -> GroupStatus | None:
        """The state of this node's membership of ``group``; None if it is not joining or a member."""
        engine = self.groups.get(group)
        return engine.status() if engine is not None else None

    def flush(self, group: str, now: float) -> int:
        """Ask for a ``Flushed`` event once everything cast so far here is stable; returns its token."""
        self.flush_tokens += 1
        self._group(group).flush(self.flush_tokens, self.counter, now)
        self._drain(now)
        return self.flush_tokens

    def send_direct(self, group: str, dst: str, payload: bytes, now: float) -> None:
        self._group(group).send_direct(dst, payload)
        self._drain(now)

    def provide_state(self, group: str, view: str, data: bytes, now: float) -> None:
        engine = self.groups.get(group)
        if engine is not None:
            engine.provide_state(view, data)
        self._drain(now)

    def peers(self) -> dict[str, tuple[str | None, float, bool]]:
        """The members of this node's views (but itself): id -> (address, seconds since last heard
        from its node, suspected)."""
        ids = {pid for e in self.groups.values() for pid in e.members} - {self.pid, *self.aliases.values()}
        heard = self.last_heard
        return {pid: (self.addrs.get(pid), self.now - heard.get(self.node_of.get(pid, pid), self.now),
                      self.suspects(pid)) for pid in sorted(ids)}

    def view_of(self, group: str) -> tuple[str | None, tuple[str, ...]]:
        engine = self._group(group)
        return engine.view_id, engine.members

    # -- inputs ----------------------------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> None:
        """Take one frame from the network. Malformed frames are dropped and logged."""
        self.now = now
        traffic = self.traffic
        traffic.frames_in += 1
        traffic.bytes_in += len(data)
        try:
            frame = decode_frame(data)
            sender = frame.sender
            if sender == CONTROL:
                self._control(frame)
                return
            if frame.client:
                self._from_client(frame, now)
                return
            name, inc = name_inc(sender)
            for member in frame.aliases.values():
                if name_inc(member)[0] != name:
                    raise ValueError(f"{sender} claims the member id {member} of another process")
        except (*DecodeError, ValueError) as exc:
            traffic.dropped += 1
            log.warning("dropped a malformed frame (%d bytes): %s", len(data), exc)
            return
        peer = self.peer_traffic.get(frame.addr)
        if peer is None:
            peer = self.peer_traffic[frame.addr] = Traffic()
        peer.frames_in += 1
        peer.bytes_in += len(data)
        if not self._heard_from(name, inc, sender, frame.addr, now):
            return
        aliases = frame.aliases
        if aliases:
            self._learn_aliases(sender, aliases, frame.addr)
        self.batching = True
        try:
            for raw in frame.msgs:
                self._dispatch(sender, raw, now, aliases)
        finally:
            self.batching = False
        self._progress_deferred(now)

    def tick(self, now: float) -> None:
        """Timers. Each costs little when nothing is due: a quiet group (``GroupEngine.quiet``)
        sleeps until its ``quiet_interval`` is over or it is woken, and peers are scanned for
        heartbeats and for suspicion only when one of them may need it; an idle node in many
        groups, or in a large one, stays cheap."""
        self.now = now
        self._watch(now, self._peers(now))  # first: the groups of a newly suspected member act now
        asleep, awake = self.asleep, self.awake
        while asleep and asleep[0][0] <= now:
            due, _, engine = heappop(asleep)
            if engine.due == due:  # not woken and put to sleep again since
                awake[engine] = None
        self.awake = {}
        for engine in awake:
            if self.groups.get(engine.name) is not engine:
                continue  # it left
            engine.tick(now)
            if engine.quiet():
                engine.due = now + engine.quiet_interval
                self.slept += 1
                heappush(asleep, (engine.due, self.slept, engine))
            else:
                engine.due = now
                self.awake[engine] = None
        self._heartbeats(now, self._peers(now))
        self._drain(now)

    def _peers(self, now: float) -> set[str]:
        """The members of our views (but ourselves), computed again after a change of view."""
        peers = self.view_peers
        if peers is None:
            peers = {pid for e in self.groups.values() if e.view_id is not None for pid in e.members}
            peers -= {self.pid, *self.aliases.values()}
            self.view_peers = peers
            self._rewatch(now, peers)
            self.heartbeat_due = self.watch_due = now
        return peers

    def _rewatch(self, now: float, peers: set[str]) -> None:
        """Whom we watch and whom our heartbeats go to, after a change of view or of suspicion."""
        views = [(e.members, e.me) for e in self.groups.values() if e.view_id is not None]
        watch, self.beat_to = rings(views, lambda m: name_inc(m).name == self.name, self.suspects)
        nodes = sorted({self.node_of.get(m, m) for m in watch})
        self.monitored = {node: self.monitored.get(node, now) for node in nodes}
        alive = {self.node_of.get(m, m) for m in peers}
        self.reported = {node: when for node, when in self.reported.items() if node in alive}

    def take_outputs(self) -> list[ev.Output]:
        """The outputs of every call since the last take. Casts are stamped and sent here, so that
        the casts between two takes go out together."""
        self._progress_deferred(self.now)
        budget = self.cfg.frame_budget
        pid, here, aliases, traffic = self.pid, self.addr, self.aliases, self.traffic
        frames: list[ev.Transmit] = []
        for addr, msgs in self.outbox.items():
            batch: list[bytes] = []
            size = 0
            for raw in msgs:
                if batch and size + len(raw) > budget:
                    frames.append(ev.Transmit(addr, encode(Frame(pid, here, batch, aliases))))
                    batch, size = [], 0
                batch.append(raw)
                size += len(raw)
            frames.append(ev.Transmit(addr, encode(Frame(pid, here, batch, aliases))))
        for t in frames:
            peer = self.peer_traffic.get(t.addr)
            if peer is None:
                peer = self.peer_traffic[t.addr] = Traffic()
            peer.frames_out += 1
            peer.bytes_out += len(t.data)
            traffic.bytes_out += len(t.data)
        traffic.frames_out += len(frames)
        self.outputs += frames
        self.outbox = {}
        out, self.outputs = self.outputs, []
        return out

    # -- the host of the group engines (``host.Host``) ----------------------------------------------

    def send(self, addr: str, data: bytes) -> None:
        if addr == self.addr:
            self.loopback.append(data)
            return
        self.outbox.setdefault(addr, []).append(data)
        self.last_sent[addr] = self.now

    def send_to(self, pid: str, data: bytes) -> None:
        if pid == self.pid or self.aliases and pid in self.aliases.values():
            self.loopback.append(data)
            return
        addr = self.addrs.get(pid)
        if addr is not None:
            self.send(addr, data)

    def addr_of(self, pid: str) -> str | None:
        return self.addrs.get(pid)

    def learn_addr(self, pid: str, addr: str) -> None:
        self.addrs[pid] = addr

    def emit(self, event: ev.Output) -> None:
        self.outputs.append(event)

    def suspects(self, pid: str) -> bool:
        if pid == self.pid or self.aliases and pid in self.aliases.values():
            return False
        node = self.node_of.get(pid, pid)  # a member id is alive while its node is
        name, inc = name_inc(node)
        if self.newest_inc.get(name, inc) > inc:
            return True
        return self.now > self._suspected_from(node)

    def _suspected_from(self, node: str) -> float:
        """When ``node`` becomes suspected if nothing is heard from it (``monitoring``)."""
        heard = self.last_heard.get(node, float("-inf"))
        since = self.monitored.get(node)
        if since is not None:
            # a neighbour we began to watch when the one before it became suspected may learn it
            # (our report) only then, and send to us from then on: two heartbeats' grace
            return max(heard + self.cfg.suspect_timeout, since + 2 * self.cfg.heartbeat_interval)
        if self.reported.get(node, float("-inf")) >= heard:
            return heard + self.cfg.suspect_timeout
        # every live process probes every process it knows each probe_interval: silence beyond
        # that is a failure (or a partition) that no watcher reported to us, e.g. because they
        # went on to a view without us
        return heard + self.cfg.suspect_timeout + self.cfg.probe_interval

    def wake(self, engine: GroupEngine) -> None:
        engine.due = self.now  # an entry for it in ``asleep`` is stale now
        self.awake[engine] = None

    def defer(self, engine: GroupEngine) -> None:
        self.deferred[engine] = None
        self.wake(engine)

    def members_installed(self, members: tuple[str, ...], addrs: dict[str, str], now: float) -> None:
        for pid in members:
            if name_inc(pid).name != self.name:  # not one of our own ids (a rejoin gives us several)
                self.addrs[pid] = addrs[pid]
                self.last_heard.setdefault(pid, now)
        self.view_peers = None
        self.views_version += 1

    def group_finished(self, engine: GroupEngine) -> None:
        self.view_peers = None
        self.views_version += 1
        if self.groups.get(engine.name) is engine:
            del self.groups[engine.name]
            self.spent.add(engine.name)
        for other in self.domains.leave(engine):  # casts held for its deliveries may go
            self.defer(other)

    # -- internals -------------------------------------------------------------------------------

    def _group(self, group: str) -> GroupEngine:
        engine = self.groups.get(group)
        if engine is None:
            raise_not_member(group, None)
        assert engine is not None
        return engine

    def _heard_from(self, name: str, inc: int, sender: str, addr: str, now: float) -> bool:
        newest = self.newest_inc.get(name)
        if newest is not None and inc < newest or name == self.name and inc != self.inc:
            return False  # an older incarnation is dead (fail-stop): its messages are ignored
        if newest is None or inc > newest:
            self.newest_inc[name] = inc
            self.watch_due = now  # an older incarnation of it is dead
        if self.suspected:
            self.watch_due = now  # it may be one of them, heard again
        self.last_heard[sender] = now
        self.addrs[sender] = addr
        return True

    def _control(self, frame: Frame) -> None:
        """A tool's request (``vsgroups status``): answered by the driver, the asker never a peer."""
        for raw in frame.msgs:
            msg = decode_control(raw)
            if isinstance(msg, StatusRequest):
                self.outputs.append(ev.StatusRequested(frame.addr, msg.nonce))

    def _from_client(self, frame: Frame, now: float) -> None:
        """A client's frame: a sign of life (answered, if a ping), its requests for the server side."""
        client, addr = frame.sender, frame.addr
        name_inc(client)  # a client id is name#inc too
        self.client_heard[client] = now
        for raw in frame.msgs:
            msg = decode_to_server(raw)
            if isinstance(msg, ClientPing):
                self.send(addr, encode(ClientPong(None)))
                continue
            engine = self.groups.get(msg.group)
            if engine is None or engine.view_id is None:
                if isinstance(msg, ClientHello):
                    self.send(addr, encode(ClientRefused(msg.group, f"{self.pid} is not a member of group "
                                                                    f"{msg.group!r}")))
                continue
            self.outputs.append(ev.FromClient(msg.group, client, addr, msg))

    def send_client(self, addr: str, data: bytes, now: float) -> None:
        """Send an encoded message to the client listening at ``addr``."""
        self.now = now
        self.send(addr, data)

    def forget_client(self, client: str) -> None:
        self.client_heard.pop(client, None)

    def _learn_aliases(self, sender: str, aliases: dict[str, str], addr: str) -> None:
        for group, member in aliases.items():
            if self.node_of.get(member) != sender:
                self.node_of[member] = sender
                self.addrs[member] = addr
            engine = self.groups.get(group)
            if engine is not None:
                # the node's earlier identities in the group (its pid, an earlier alias) are over;
                # not a later one: a frame duplicated or delayed by the network may carry an old alias
                newest = name_inc(member).inc
                for pid in engine.members:
                    if pid != member and self.node_of.get(pid, pid) == sender and name_inc(pid).inc < newest:
                        engine.change.retired(pid)
                        engine.wake()

    def _dispatch(self, node: str, raw: bytes, now: float, aliases: dict[str, str] | None = None) -> None:
        """Handle one message of the frame of ``node``; a group's message is from ``node``'s member id in
        that group (``aliases``)."""
        sender = node
        try:
            msg = decode(raw)
            if isinstance(msg, Heartbeat):
                for suspect in msg.suspects:
                    if name_inc(suspect).name != self.name:
                        self.reported[suspect] = now
                        self.watch_due = now
                for group, view in msg.views.items():
                    engine = self.groups.get(group)
                    if engine is not None and view is not None:
                        sender = aliases.get(group, node) if aliases else node
                        engine.on_heartbeat_view(sender, view, now)
                if msg.complete:
                    for engine in self.groups.values():
                        sender = aliases.get(engine.name, node) if aliases else node
                        if engine.change.on_groups_named(sender, engine.name in msg.views):
                            engine.wake()
                return
            if aliases:
                sender = aliases.get(msg.group, node)
            engine = self.groups.get(msg.group)
            if engine is not None:
                engine.on_message(sender, msg, raw, now)
            elif isinstance(msg, Prepare | Accept | Commit):
                # A view change counts on us in a group we are not in (a stale join request
                # admitted us after we left): say so, or the group would wait for us forever.
                self.send_to(sender, encode(Leave(msg.group, self.member_id(msg.group), True)))
        except (*DecodeError, ValueError) as exc:
            # malformed (or, from a peer with a bug, a message that fails its checks); anything
            # else a handler raises is a bug of this node, and must not pass for bad input
            log.warning("dropped a malformed message from %s: %r", sender, exc)

    def _progress_deferred(self, now: float) -> None:
        while self.deferred:
            engine = next(iter(self.deferred))
            del self.deferred[engine]
            engine.progress(now)
        self._drain(now)

    def _drain(self, now: float) -> None:
        """Handle messages this node sent to itself (a proposer is also an acceptor)."""
        while self.loopback:
            batch, self.loopback = self.loopback, []
            for raw in batch:
                self._dispatch(self.pid, raw, now, self.aliases)

    def _watch(self, now: float, peers: set[str]) -> None:
        """Output a ``Suspicion`` when a member of our views becomes suspected or is heard again,
        and wake the groups it is in."""
        if now < self.watch_due:
            return
        suspected = {pid for pid in peers if self.suspects(pid)}
        changed = sorted(suspected ^ (self.suspected & peers))
        for pid in changed:
            silent = now - self.last_heard.get(self.node_of.get(pid, pid), now)
            engines = [e for e in self.groups.values() if pid in e.members]
            for engine in engines:
                engine.wake()
            groups = tuple(sorted(e.name for e in engines))
            self.outputs.append(ev.Suspicion(pid, pid in suspected, silent, groups))
        self.suspected = suspected
        if changed:
            self._rewatch(now, peers)  # watch past a suspected neighbour; heartbeats to whoever does
            suspected = {pid for pid in peers if self.suspects(pid)}
        nodes = {self.node_of.get(pid, pid) for pid in suspected}
        reporting = sorted(nodes & self.monitored.keys())
        if reporting != self.reporting:
            self.reporting = reporting
            self.heartbeat_due = now
            self.report_now = bool(reporting)  # tell every peer at once, busy link or not
        self.watch_due = min((self._suspected_from(self.node_of.get(pid, pid)) for pid in peers
                              if pid not in suspected), default=float("inf"))

    def _naming_heartbeat(self) -> Heartbeat | None:
        """A heartbeat naming every group we are in or joining (None: we are in none yet)."""
        if self.named[0] != self.views_version:
            everything: dict[str, str | None] = {
                e.name: e.view_id for e in self.groups.values() if e.view_id is not None}
            # a group being joined is named too: its members must not take us for gone from it
            everything.update({e.name: None for e in self.groups.values() if e.view_id is None})
            heartbeat = Heartbeat(None, everything, complete=True)
            self.named = (self.views_version, heartbeat if any(everything.values()) else None,
                          encode(heartbeat))
        return self.named[1]

    def _heartbeats(self, now: float, views: set[str]) -> None:
        interval = self.cfg.heartbeat_interval
        probe = now - self.last_probe >= self.cfg.probe_interval
        if now < self.heartbeat_due and not probe:
            return
        # A heartbeat names all our views, not only those shared with its receiver: a peer in
        # another configuration of one of our groups learns it (merge discovery). It names them
        # only if they changed since we last named them to that peer, or every probe_interval: a
        # node in a thousand groups does not send, nor make its peers read, a thousand names ten
        # times a second.
        if not views and not probe:
            return
        naming = self._naming_heartbeat()
        if naming is None:
            return
        heartbeat = self.named[2]
        version, told = self.views_version, self.views_told
        if now >= self.heartbeat_due:
            alive = ALIVE
            if self.reporting:  # to every peer, until the view changes or the suspect is heard
                heartbeat = encode(Heartbeat(None, naming.views, True, self.reporting))
                alive = encode(Heartbeat(None, {}, suspects=self.reporting))
            due = float("inf")
            for pid in sorted(views if self.reporting else views & self.beat_to):
                addr = self.addrs.get(pid)
                if addr is None:
                    due = now + interval  # its address may come with a view of another group
                    continue
                if self.report_now or now - self.last_sent.get(addr, float("-inf")) >= interval:
                    last = told.get(addr)
                    if last is None or last[0] != version or now - last[1] >= self.cfg.probe_interval:
                        told[addr] = (version, now)
                        self.send(addr, heartbeat)
                    else:
                        self.send(addr, alive)
                due = min(due, self.last_sent[addr] + interval)
            self.heartbeat_due = due
            self.report_now = False
        if probe:
            # Merge discovery: every process we know of hears which views we are in, even one
            # whose link carries so much data that it never gets a heartbeat.
            self.last_probe = now
            for pid, addr in sorted(self.addrs.items()):
                name, inc = name_inc(pid)
                if name != self.name and self.newest_inc.get(name, inc) == inc:
                    told[addr] = (version, now)
                    self.send(addr, heartbeat)


