"""One group at one node: joining, the data path of the current view, view changes, state transfer.

This module wires the pieces together; the theory lives in the modules it uses:
``stream`` (reliable causal/total/safe delivery inside a view), ``membership`` (the consensus per
view transition), ``flush`` (the final message set of a view). State transfer follows
PROTOCOLS.md §7: the value names the state sender (the oldest surviving old member); it snapshots at
the install point, after every message of the old view and before any of the new one; the joiner
holds its deliveries until the whole state arrived, and abandons its incarnation if the sender
fails first.

Bootstrap: a joiner asks every seed; any member answers and forwards the request to its
coordinator. A node may found the group only if it was told it is a founder (the runtime makes the
first seed the founder) and has heard nothing from any member for ``found_timeout``.

EVS (``model="evs"``, 1994 §3, PROTOCOLS.md §6): a configuration per component. Its would-be
members are the unsuspected members of ours plus the *foreign* processes heard from in other
configurations of the group; the least of them proposes, every one of them must promise, and the
value (``membership.evs_value``) carries, per previous configuration, what is delivered in it and
in its transitional configuration. Merge discovery: heartbeats name every view of their sender; a
process listed in our configuration whose heartbeat names a configuration it did not come into ours
from is foreign too; whoever sees a foreign process tells its coordinator where it is (``MERGE``),
and coordinators probe the seed addresses. A member whose promise went stale (its proposer fell
silent) proposes itself, so that no member stays blocked. A joiner still waiting for its state at
the next configuration change abandons its incarnation, as in a crash: the sender keeps the state
only for the members of its own configuration. ``recover`` re-enters a group after a failure with
stable storage: a configuration of this process alone, which merges like any other.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any, NoReturn

from . import events as ev
from .flush import final_set
from .membership import Proposal, choose_value, evs_value, is_quorum, new_members
from .stream import ViewStream
from .wire import ORDERS, K, Msg, pack, unpack, view_epoch

if TYPE_CHECKING:
    from .node import NodeCore

log = logging.getLogger("vsgroups.core")

KEEP_COMMITTED = 8
JOIN_EXPIRY = 3.0


class GroupEngine:
    def __init__(
        self, node: NodeCore, name: str, seeds: list[str], founder: bool, now: float, model: str = "vs"
    ) -> None:
        if model not in ("vs", "evs"):
            raise ValueError(f"unknown group model {model!r}: use 'vs' (primary component) or 'evs'")
        self.node = node
        self.evs = model == "evs"
        self.primary = True
        self.foreign: dict[str, float] = {}  # evs: members of other configurations we hear from
        # evs: the configurations our current one succeeded, with who came from each
        self.came_from: dict[str, list[str]] = {}
        self.seeds_probed = float("-inf")
        self.promised_at = 0.0
        self.cfg = node.cfg
        self.name = name
        self.me = node.pid
        self.seeds = seeds
        self.founder = founder
        self.state = "joining"  # joining -> member -> left | excluded
        self.view_id: str | None = None
        self.members: tuple[str, ...] = ()
        self.addrs: dict[str, str] = {}
        self.stream: ViewStream | None = None
        self.pending: deque[tuple[str, int, bytes]] = deque()
        self.pending_bytes = 0
        # membership
        self.promised: tuple[int, str] | None = None
        self.accepted: tuple[tuple[int, str], dict[str, Any]] | None = None
        self.proposal: Proposal | None = None
        self.max_round = 0
        self.retry_at = 0.0
        self.joins: dict[str, tuple[str, float]] = {}
        self.leaves: set[str] = set()
        self.absent: set[str] = set()  # members that told us they are not in the group
        self.leaving = False
        self.committed: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.commit_unacked: set[str] = set()
        self.commit_retry_at = 0.0
        self.told: dict[str, float] = {}
        # joining and state transfer
        self.join_started = now
        self.request_sent = float("-inf")  # last join or leave request (both are retried)
        self.heard = False
        self.awaiting_state: str | None = None
        self.state_from: str | None = None
        self.state_chunks: dict[int, bytes] = {}
        self.state_asked = now
        self.held_events: list[ev.Output] = []
        self.state_out: dict[str, tuple[list[bytes], set[str]]] = {}
        self.future: dict[str, list[tuple[str, list[Any], bytes]]] = {}
        # data path timers
        self.ack_dirty = False
        self.ack_sent = float("-inf")
        self.acked_back: dict[str, float] = {}
        self.gap_since: dict[int, float] = {}
        self.num_gap_since: float | None = None
        self.flush_waiters: dict[int, tuple[int, tuple[str, list[int]] | None]] = {}

    # -- application calls -----------------------------------------------------------------------

    def cast(self, mid: str, order: str, payload: bytes, now: float) -> None:
        if self.state != "member" or self.leaving:
            raise_not_member(self.name, self.state, self.leaving)
        self.pending.append((mid, ORDERS.index(order), payload))
        self.pending_bytes += len(payload)
        # stamped when the node's outputs are taken: a run of casts is stamped, delivered here and
        # sent as one batch, not one pass over the data path per message
        self.node.deferred[self] = None

    def leave(self, now: float) -> None:
        if self.state == "joining":
            self._finish("left", now)
            return
        if self.state != "member" or self.leaving:
            raise_not_member(self.name, self.state, self.leaving)
        self.leaving = True
        self.leaves.add(self.me)
        self._send_leave()
        self.tick(now)

    def flush(self, token: int, counter: int, now: float) -> None:
        if self.state != "member":
            raise_not_member(self.name, self.state, self.leaving)
        self.flush_waiters[token] = (counter, None)
        self.progress(now)

    def send_direct(self, dst: str, payload: bytes) -> None:
        addr = self.addrs.get(dst) or self.node.addr_of(dst)
        if addr is None:
            raise_not_member(self.name, self.state, self.leaving, f"no address known for {dst}")
        self.node.send(addr, pack([K.DIRECT, self.name, payload]))

    def provide_state(self, view: str, data: bytes) -> None:
        value = self.committed_value_for(view)
        joiners = set(value["joiners"]) if value else set()
        size = self.cfg.state_chunk
        chunks = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
        self.state_out[view] = (chunks, joiners)
        for j in sorted(joiners):
            self._send_state(view, j, range(len(chunks)))

    def committed_value_for(self, view: str) -> dict[str, Any] | None:
        return next((v for v in self.committed.values() if v["id"] == view), None)

    # -- inputs ----------------------------------------------------------------------------------

    def on_message(self, sender: str, fields: list[Any], raw: bytes, now: float) -> None:
        kind = fields[0]
        handler = _HANDLERS.get(kind)
        if handler is None:
            log.warning("dropped a message of unknown kind %r from %s", kind, sender)
            return
        handler(self, sender, fields, raw, now)

    def on_data(self, sender: str, fields: list[Any], raw: bytes, now: float) -> None:
        view = fields[2]
        if self.stream is not None and view == self.view_id:
            if self.stream.receive(Msg.decode(fields, raw)):
                self.ack_dirty = True
                self.progress(now)
        else:
            self._maybe_future(view, sender, fields, raw)

    def on_ack(self, sender: str, fields: list[Any], raw: bytes, now: float) -> None:
        if self.stream is not None and fields[2] == self.view_id:
            self.stream.on_ack(sender, fields[3], fields[4], fields[6])
            waiting = fields[5] and now - self.acked_back.get(sender, float("-inf")) >= self.cfg.ack_refresh
            if waiting and self.promised is None:
                # the sender still waits for stability: our last acknowledgement may have been lost
                self.acked_back[sender] = now
                self.node.send_to(sender, self._ack_message())
            self.progress(now)
        else:
            self._maybe_future(fields[2], sender, fields, raw)

    def on_num(self, sender: str, fields: list[Any], raw: bytes, now: float) -> None:
        if self.stream is not None and fields[2] == self.view_id:
            if self.stream.learn_numbers(fields[3], fields[4]):
                self.ack_dirty = True
                self.progress(now)
        else:
            self._maybe_future(fields[2], sender, fields, raw)

    def on_nak(self, sender: str, fields: list[Any], raw: bytes, now: float) -> None:
        if self.stream is not None and fields[2] == self.view_id:
            for data in self.stream.retransmit(fields[3], fields[4], fields[5]):
                self.node.send_to(sender, data)

    def on_numnak(self, sender: str, fields: list[Any], raw: bytes, now: float) -> None:
        if self.stream is not None and fields[2] == self.view_id:
            first, mids = self.stream.numbers_from(fields[3])
            if mids:
                self.node.send_to(sender, pack([K.NUM, self.name, self.view_id, first, mids]))

    def on_join(self, sender: str, fields: list[Any], raw: bytes, now: float) -> None:
        pid, addr = fields[2], fields[3]
        if self.state != "member":
            return
        if pid in self.members:  # it missed the commit that added it
            value = next((v for v in self.committed.values() if pid in v["joiners"]), None)
            if value is not None and sender == pid:
                self.node.send(addr, pack([K.COMMIT, self.name, value.get("from"), value]))
            return
        self.node.learn_addr(pid, addr)
        self.joins[pid] = (addr, now)
        self.node.send(addr, pack([K.JOINACK, self.name]))
        coordinator = self._coordinator()
        if coordinator != self.me and sender == pid:
            self.node.send_to(coordinator, raw)

    def on_joinack(self, sender: str, fields: list[Any], raw: bytes, now: float) -> None:
        self.heard = True

    def on_leave(self, sender: str, fields: list[Any], raw: bytes, now: float) -> None:
        pid = fields[2]
        not_at_all = len(fields) > 3 and bool(fields[3]) and pid == sender
        if pid in self.members:
            self.leaves.add(pid)
            if not_at_all:
                self.absent.add(sender)  # not in the group at all: it will not vote
        elif not_at_all and self.foreign.pop(pid, None) is not None:
            # evs: a process we took for a member of another configuration has left the group
            # (it answers our proposal so): the proposal must not wait for its promise
            self.absent.add(pid)

    def on_prepare(self, sender: str, fields: list[Any], raw: bytes, now: float) -> None:
        view, ballot = fields[2], (fields[3][0], fields[3][1])
        if self.evs:
            if self.state == "member" and self.me in fields[4]:
                self._promise(sender, view, ballot, now)
            return
        if view == self.view_id and self.state == "member":
            if sender not in self.members:
                return
            self._promise(sender, view, ballot, now)
        else:
            self._answer_stale(sender, view, now, force=True)

    def _promise(self, sender: str, view: str, ballot: tuple[int, str], now: float) -> None:
        self.max_round = max(self.max_round, ballot[0])
        if self.promised is None or ballot >= self.promised:
            self.promised = ballot
            self.promised_at = now
            assert self.stream is not None
            report = self.stream.report()
            report["a"] = [list(self.accepted[0]), self.accepted[1]] if self.accepted else None
            report["v"] = self.view_id
            report["mem"] = list(self.members)
            report["p"] = self.primary
            report["w"] = self.awaiting_state is not None  # cannot send state to joiners yet
            self.node.send_to(sender, pack([K.PROMISE, self.name, view, list(ballot), report]))
        else:
            self.node.send_to(sender, pack([K.REJECT, self.name, view, list(self.promised)]))

    def on_promise(self, sender: str, fields: list[Any], raw: bytes, now: float) -> None:
        p = self.proposal
        if p is not None and p.phase == 1 and fields[2] == self.view_id and tuple(fields[3]) == p.ballot:
            p.promises[sender] = fields[4]
            self._try_decide(now)

    def on_reject(self, sender: str, fields: list[Any], raw: bytes, now: float) -> None:
        if fields[2] != self.view_id:
            return
        self.max_round = max(self.max_round, fields[3][0])
        if self.proposal is not None and tuple(fields[3]) > self.proposal.ballot:
            self.proposal = None
            self.retry_at = now + self.node.rng.uniform(0.5, 1.5) * self.cfg.retry_interval

    def on_accept(self, sender: str, fields: list[Any], raw: bytes, now: float) -> None:
        view, ballot, value = fields[2], (fields[3][0], fields[3][1]), fields[4]
        mine = self._moves_with(value) if self.evs else view == self.view_id
        if not mine or self.state != "member":
            if not self.evs:
                self._answer_stale(sender, view, now, force=True)
            return
        if self.promised is None or ballot >= self.promised:
            self.promised = ballot
            self.accepted = (ballot, value)
            self.node.send_to(sender, pack([K.ACCEPTED, self.name, view, list(ballot)]))
        else:
            self.node.send_to(sender, pack([K.REJECT, self.name, view, list(self.promised)]))

    def on_accepted(self, sender: str, fields: list[Any], raw: bytes, now: float) -> None:
        p = self.proposal
        if p is None or p.value is None or fields[2] != self.view_id or tuple(fields[3]) != p.ballot:
            return
        p.accepts.add(sender)
        if p.accepts >= set(p.value["voters"]) if self.evs else is_quorum(self.members, p.accepts):
            self._commit(p.value, now)

    def on_commit(self, sender: str, fields: list[Any], raw: bytes, now: float) -> None:
        prev, value = fields[2], fields[3]
        if self.state == "joining" and self.me in value["joiners"]:
            self._install(value, now, joined=True)
        elif self.evs and self.state == "member" and self._moves_with(value):
            self._apply_evs_commit(value, now)
        elif self.state == "member" and prev == self.view_id and not self.evs:
            self._apply_commit(value, now)
        elif self.state == "member" and value["id"] == self.view_id:
            pass
        else:
            return
        if self.state == "member" and value["id"] == self.view_id:
            self.node.send_to(sender, pack([K.INSTALLED, self.name, value["id"]]))

    def on_installed(self, sender: str, fields: list[Any], raw: bytes, now: float) -> None:
        if fields[2] == self.view_id:
            self.commit_unacked.discard(sender)

    def on_excluded(self, sender: str, fields: list[Any], raw: bytes, now: float) -> None:
        if self.state == "member" and fields[2] == self.view_id and not self.leaving:
            self._finish("excluded", now, f"{sender} reports view {fields[2]} was succeeded without us")

    def on_state(self, sender: str, fields: list[Any], raw: bytes, now: float) -> None:
        view, index, count, chunk = fields[2], fields[3], fields[4], fields[5]
        if view != self.awaiting_state:
            return
        self.state_chunks[index] = chunk
        self.state_asked = now
        if len(self.state_chunks) == count:
            data = b"".join(self.state_chunks[i] for i in range(count))
            self.awaiting_state = None
            self.state_chunks = {}
            self.node.send_to(sender, pack([K.STATEDONE, self.name, view]))
            self.node.emit(ev.StateReady(self.name, view, data))
            held, self.held_events = self.held_events, []
            for event in held:
                self.node.emit(event)
            self.progress(now)

    def on_statereq(self, sender: str, fields: list[Any], raw: bytes, now: float) -> None:
        out = self.state_out.get(fields[2])
        if out is not None and sender in out[1]:
            self._send_state(fields[2], sender, fields[3])

    def on_statedone(self, sender: str, fields: list[Any], raw: bytes, now: float) -> None:
        out = self.state_out.get(fields[2])
        if out is not None:
            out[1].discard(sender)
            if not out[1]:
                del self.state_out[fields[2]]

    def on_merge(self, sender: str, fields: list[Any], raw: bytes, now: float) -> None:
        pid, addr = fields[2], fields[3]
        if self.evs and isinstance(pid, str) and isinstance(addr, str) and self.node.addr_of(pid) is None:
            self.node.learn_addr(pid, addr)  # our probes reach it now, and its answers start the merge

    def on_direct(self, sender: str, fields: list[Any], raw: bytes, now: float) -> None:
        if self.state == "member":
            self._emit(ev.DirectReceived(self.name, sender, fields[2]))

    def on_heartbeat_view(self, sender: str, view: str, now: float) -> None:
        """A peer's heartbeat says which view of this group it is in."""
        if view == self.view_id or self.view_id is None:
            return
        if not self.evs:
            self._answer_stale(sender, view, now, force=False)
        elif sender not in self.members or sender not in self.came_from.get(view, ()):
            # another configuration within reach, or a member listed here (a joiner the proposer
            # took in) that went elsewhere meanwhile: merge with it. A member still in a
            # configuration ours came from just has not installed ours yet.
            if sender not in self.foreign:
                coordinator = self._coordinator()
                addr = self.node.addr_of(sender)
                if coordinator != self.me and addr is not None:
                    # the proposer of the merge may not know it: tell it where to probe
                    self.node.send_to(coordinator, pack([K.MERGE, self.name, sender, addr]))
            self.foreign[sender] = now

    # -- the data path ---------------------------------------------------------------------------

    def progress(self, now: float) -> None:
        """Deliver what is deliverable, send what flow control allows, and settle flushes."""
        stream = self.stream
        if stream is None or self.state != "member":
            return
        if self.node.batching:
            self.node.deferred[self] = None  # once per frame, not once per message
            return
        if self.promised is None:
            stream.refresh_stable()
            self._deliver_ready(stream)
            # a joiner sends only once it holds the state its casts are based on
            while self.pending and self.awaiting_state is None and self._window_open(stream):
                while self.pending and self._window_open(stream):
                    self._send_run(stream)
                self.ack_dirty = True
                stream.refresh_stable()  # alone in its view, a sender's messages are stable at once
                self._deliver_ready(stream)
        if self.ack_dirty and now - self.ack_sent >= self.cfg.ack_delay:
            self._send_ack(now)
        if self.flush_waiters:
            self._settle_flushes()

    def _deliver_ready(self, stream: ViewStream) -> None:
        numbered: list[str] = []
        for msg in stream.deliverable(numbered):
            self._deliver(msg)
        if numbered:
            first = stream.known - len(numbered) + 1  # the sequencer numbers consecutively
            self._broadcast(pack([K.NUM, self.name, self.view_id, first, numbered]))
            self.ack_dirty = True

    def _window_open(self, stream: ViewStream) -> bool:
        held = stream.own_casts
        return held == 0 or (held < self.cfg.window and stream.own_bytes < self.cfg.window_bytes)

    def _send_run(self, stream: ViewStream) -> None:
        """Stamp and send, as one message, the longest run of pending casts with one ordering that
        fits in ``batch_bytes`` (a larger cast goes alone) and in the window."""
        pending = self.pending
        order = pending[0][1]
        room = self.cfg.window - stream.own_casts
        budget = self.cfg.batch_bytes
        mids: list[str] = []
        payloads: list[bytes] = []
        size = 0
        while pending and len(mids) < room:
            mid, o, payload = pending[0]
            if o != order or (mids and size + len(payload) > budget):
                break
            pending.popleft()
            mids.append(mid)
            payloads.append(payload)
            size += len(payload)
        self.pending_bytes -= size
        msg = stream.stamp(mids, order, payloads)
        self._emit(ev.Sent(self.name, mids, ORDERS[order], stream.view))
        self._broadcast(msg.encode(self.name))

    def _deliver(self, msg: Msg, view: str | None = None) -> None:
        """Deliver the casts of ``msg`` (in ``view``; by default its own)."""
        self._emit(ev.Delivered(self.name, msg.mids, msg.sender, ORDERS[msg.order], view or msg.view,
                                msg.payloads))

    def _send_ack(self, now: float) -> None:
        stream = self.stream
        assert stream is not None
        if self.promised is not None:
            # Acknowledgements are frozen by a promise: the report we gave the proposer is all that
            # others may count as stable (and garbage-collect); F is computed from that report.
            return
        self.ack_dirty = False
        self.ack_sent = now
        self._broadcast(self._ack_message())

    def _ack_message(self) -> bytes:
        stream = self.stream
        assert stream is not None
        stream.refresh_acked()
        waiting = not stream.all_stable()
        return pack([K.ACK, self.name, self.view_id, stream.acked, stream.known, waiting, stream.clock])

    def _settle_flushes(self) -> None:
        stream = self.stream
        assert stream is not None
        pending_counter = min((int(mid.rpartition(":")[2]) for mid, _, _ in self.pending), default=None)
        for token, (counter, target) in list(self.flush_waiters.items()):
            if target is None:
                if pending_counter is not None and pending_counter <= counter:
                    continue
                target = (stream.view, list(stream.recv))
                self.flush_waiters[token] = (counter, target)
            if target[0] != stream.view or all(
                st >= t for st, t in zip(stream.stable, target[1], strict=True)
            ):
                del self.flush_waiters[token]
                self._emit(ev.Flushed(self.name, token))

    def _broadcast(self, data: bytes) -> None:
        for pid in self.members:
            if pid != self.me:
                self.node.send(self.addrs[pid], data)

    def _emit(self, event: ev.Output) -> None:
        if self.awaiting_state is not None:
            self.held_events.append(event)
        else:
            self.node.emit(event)

    def _maybe_future(self, view: str, sender: str, fields: list[Any], raw: bytes) -> None:
        """Keep messages of a view not installed here yet (its commit may still be on its way)."""
        if self.view_id is not None and view_epoch(view) <= view_epoch(self.view_id):
            return
        bucket = self.future.setdefault(view, [])
        if len(bucket) < 4 * self.cfg.window:
            bucket.append((sender, fields, raw))

    # -- timers ----------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        if self.state == "joining":
            self._tick_joining(now)
            return
        if self.state != "member":
            return
        stream = self.stream
        assert stream is not None
        if self.leaving and now - self.request_sent >= self.cfg.retry_interval:
            self._send_leave()
            self.request_sent = now
        if self.ack_dirty and now - self.ack_sent >= self.cfg.ack_delay:
            self._send_ack(now)
        elif now - self.ack_sent >= self.cfg.ack_refresh and not stream.all_stable():
            self._send_ack(now)
        self._repair_gaps(now)
        self._tick_membership(now)
        if self.awaiting_state is not None and now - self.state_asked >= 4 * self.cfg.retry_interval:
            self.state_asked = now
            assert self.state_from is not None
            missing = [i for i in range(max(self.state_chunks, default=0) + 2) if i not in self.state_chunks]
            self.node.send_to(self.state_from, pack([K.STATEREQ, self.name, self.awaiting_state, missing]))
        for view, (_, joiners) in list(self.state_out.items()):
            joiners.intersection_update(self.members)
            if not joiners:
                del self.state_out[view]
        self.progress(now)

    def _repair_gaps(self, now: float) -> None:
        stream = self.stream
        assert stream is not None
        gaps = stream.gaps()
        for s in list(self.gap_since):
            if s not in gaps:
                del self.gap_since[s]
        for s in gaps:
            since = self.gap_since.setdefault(s, now)
            if now - since >= self.cfg.nak_delay:
                self.gap_since[s] = now
                first = stream.recv[s] + 1
                holder = stream.members[stream.holder_of(s, first)]
                self.node.send_to(holder, pack([K.NAK, self.name, self.view_id, s, first, stream.seen[s]]))
        best = max(range(stream.n), key=lambda j: stream.ack_known[j])
        if stream.ack_known[best] > stream.known and best != stream.me:
            if self.num_gap_since is None:
                self.num_gap_since = now
            elif now - self.num_gap_since >= self.cfg.nak_delay:
                self.num_gap_since = now
                nak = pack([K.NUMNAK, self.name, self.view_id, stream.known + 1])
                self.node.send_to(stream.members[best], nak)
        else:
            self.num_gap_since = None

    def _tick_joining(self, now: float) -> None:
        if now - self.request_sent >= self.cfg.retry_interval:
            self.request_sent = now
            data = pack([K.JOIN, self.name, self.me, self.node.addr])
            for addr in self.seeds:
                if addr != self.node.addr:
                    self.node.send(addr, data)
        if self.heard and now - self.join_started >= self.cfg.join_timeout:
            # the group answered but never installed us (its commit to us was lost with its sender)
            self._finish("excluded", now, f"not admitted within {self.cfg.join_timeout}s; joining anew")
            return
        if self.founder and not self.heard and now - self.join_started >= self.cfg.found_timeout:
            self._install_alone(0, now, primary=True)

    def recover(self, epoch: int, now: float) -> None:
        """See ``NodeCore.recover``."""
        self._install_alone(epoch + 1, now, primary=False)

    def _install_alone(self, epoch: int, now: float, primary: bool) -> None:
        """A view of this process alone: the founding of the group, or a recovery (evs)."""
        self._install({"from": None, "id": f"{epoch}.0.{self.me}", "members": [self.me],
                       "addrs": {self.me: self.node.addr}, "state_from": None, "joiners": [self.me],
                       "voters": [], "primary": primary, "parts": {}}, now, joined=True)

    def _tick_membership(self, now: float) -> None:
        if self.commit_unacked and now >= self.commit_retry_at:
            self.commit_retry_at = now + self.cfg.retry_interval
            value = self.committed_value_for(self.view_id or "")
            if value is not None:
                data = pack([K.COMMIT, self.name, value.get("from"), value])
                for pid in sorted(self.commit_unacked):
                    if not self.node.suspects(pid):
                        self.node.send_to(pid, data)
        for pid, (_, seen) in list(self.joins.items()):
            if now - seen > JOIN_EXPIRY:
                del self.joins[pid]
        p = self.proposal
        if p is not None:
            if now - p.started >= self.cfg.proposal_timeout:
                self.proposal = None
            else:
                if now - p.last_sent >= self.cfg.retry_interval:
                    self._resend(p, now)
                if p.phase == 1:
                    self._try_decide(now)
                return
        if now < self.retry_at:
            return
        if self.evs:
            self._probe_seeds(now)
            self._maybe_propose_evs(now)
            return
        suspects = self._suspects()
        mine = self.members.index(self.me)
        if any(m not in suspects for m in self.members[:mine]):
            return
        if suspects or self.leaves or any(j not in self.members for j in self.joins) or self.promised:
            self._propose(now)

    # -- membership ------------------------------------------------------------------------------

    def _evs_targets(self, now: float) -> list[str]:
        """Who the next configuration should hold: the reachable members of ours and of every other
        configuration of the group we hear from (merge discovery, PROTOCOLS.md §6)."""
        expiry = 3 * self.cfg.probe_interval
        for pid, seen in list(self.foreign.items()):
            if now - seen > expiry or self.node.suspects(pid):
                del self.foreign[pid]
        reachable = {m for m in self.members if not self._gone(m)} | set(self.foreign)
        return sorted(reachable | {self.me})

    def _probe_seeds(self, now: float) -> None:
        """evs merge discovery: the coordinator also tells the seed addresses which configuration it
        is in, for the processes it has never heard of (one that recovered at a new address, or a
        component that formed apart from the start)."""
        if now - self.seeds_probed < self.cfg.probe_interval or self._coordinator() != self.me:
            return
        self.seeds_probed = now
        probe = pack([K.HB, None, {self.name: self.view_id}])
        for addr in self.seeds:
            if addr != self.node.addr:
                self.node.send(addr, probe)

    def _evs_proposer(self, targets: list[str]) -> str:
        """The least of ``targets`` that is not leaving: a leaver may be gone from the group already
        (it answers only a proposal, with the news that it is not a member)."""
        return next((t for t in targets if t not in self.leaves or t == self.me), targets[0])

    def _maybe_propose_evs(self, now: float) -> None:
        targets = self._evs_targets(now)
        if self.promised is not None and self.promised[1] != self.me and now - self.promised_at < (
                self.cfg.proposal_timeout):
            return  # another proposal is under way
        if self._evs_proposer(targets) != self.me and self.promised is None:
            return  # the least process of the would-be configuration proposes
        # (or one whose promise went stale: its proposer failed, and it stays blocked until some
        # proposal finishes what that one may have decided)
        changed = set(targets) != set(self.members) or any(t in self.foreign for t in targets)
        if changed or self.leaves or any(j not in self.members for j in self.joins) or self.promised:
            self._propose(now, targets)

    def _suspects(self) -> set[str]:
        return {m for m in self.members if m != self.me and self._gone(m)}

    def _gone(self, pid: str) -> bool:
        """Suspected, or it told us it is not in the group at all (a leave that went on without us)."""
        return pid in self.absent or self.node.suspects(pid)

    def _coordinator(self) -> str:
        if self.evs:
            return self._evs_proposer(self._evs_targets(self.node.now))
        suspects = self._suspects()
        return next((m for m in self.members if m not in suspects), self.me)

    def _propose(self, now: float, targets: list[str] | None = None) -> None:
        self.max_round += 1
        self.proposal = Proposal((self.max_round, self.me), now, targets=targets or [])
        self.commit_unacked.clear()
        self._resend(self.proposal, now)

    def _resend(self, p: Proposal, now: float) -> None:
        p.last_sent = now
        if p.phase == 1:
            data = pack([K.PREPARE, self.name, self.view_id, list(p.ballot), p.targets])
            targets = [m for m in p.targets or self.members if m not in p.promises]
        else:
            data = pack([K.ACCEPT, self.name, self.view_id, list(p.ballot), p.value])
            targets = [m for m in p.promises if m not in p.accepts]
        for pid in targets:
            self.node.send_to(pid, data)

    def _try_decide(self, now: float) -> None:
        p = self.proposal
        assert p is not None
        if self.evs:
            if any(m not in p.promises and not self._gone(m) for m in p.targets):
                return
            joiners = {pid: addr for pid, (addr, _) in self.joins.items()}
            addrs = {**{m: a for m in p.promises if (a := self.node.addr_of(m))}, **joiners,
                     self.me: self.node.addr}
            p.value = evs_value(p.ballot, self.me, p.promises, self.leaves, joiners, addrs)
            p.phase = 2
            self._resend(p, now)
            return
        suspects = self._suspects()
        if any(m not in suspects for m in self.members[:self.members.index(self.me)]):
            self.proposal = None  # an elder is alive after all: it coordinates (PROTOCOLS.md §5.1)
            return
        if any(m not in p.promises and m not in suspects for m in self.members):
            return
        if not is_quorum(self.members, p.promises):
            return  # cut off from the primary component: stay blocked
        value = choose_value(p.promises)
        if value is None:
            value = self._build_value(p)
        p.value = value
        p.phase = 2
        self._resend(p, now)

    def _build_value(self, p: Proposal) -> dict[str, Any]:
        joiners = {pid: addr for pid, (addr, _) in self.joins.items()}
        members, joined = new_members(self.members, set(p.promises), self.leaves, joiners)
        reports = [p.promises[m] for m in self.members if m in p.promises]
        order, msgs, _ = final_set(list(self.members), reports)
        addrs = {m: self.addrs.get(m) or joiners[m] for m in members}
        assert self.view_id is not None
        return {
            "from": self.view_id, "id": f"{view_epoch(self.view_id) + 1}.{p.ballot[0]}.{self.me}",
            "members": members, "addrs": addrs, "order": order, "msgs": msgs,
            "state_from": members[0] if joined else None, "joiners": joined, "voters": sorted(p.promises),
        }

    def _commit(self, value: dict[str, Any], now: float) -> None:
        data = pack([K.COMMIT, self.name, self.view_id, value])
        everyone = set(self.members) | set(value["members"])
        for pid in sorted(everyone - {self.me}):
            addr = self.addrs.get(pid) or value["addrs"].get(pid)
            if addr:
                self.node.send(addr, data)
        self.proposal = None
        if self.evs:
            if self._moves_with(value):
                self._apply_evs_commit(value, now)
        else:
            self._apply_commit(value, now)
        self.commit_unacked = set(value["members"]) - {self.me}
        self.commit_retry_at = now + self.cfg.retry_interval

    def _apply_commit(self, value: dict[str, Any], now: float) -> None:
        stream = self.stream
        assert stream is not None and self.view_id is not None
        self.committed[self.view_id] = value
        while len(self.committed) > KEEP_COMMITTED:
            self.committed.popitem(last=False)
        staying = self.me in value["members"]
        if not staying and not self.leaving:
            self._finish("excluded", now, f"view {value['id']} succeeded {self.view_id} without us")
            return
        if self.me not in value["voters"]:
            # A leaver the group went on without (it was suspected): F did not use its report, so
            # delivering F could skip what it lacks, and its last messages may be lost, as in a
            # crash. Fail-stop: this incarnation ends.
            self._finish("excluded", now, f"view {value['id']} succeeded {self.view_id} without our vote")
            return
        msgs = value["msgs"]
        for mid in value["order"]:
            raw = msgs[mid]
            msg = Msg.decode(unpack(raw), raw)
            s = stream.index[msg.sender]
            if msg.seq > stream.delivered[s]:
                stream.delivered[s] = msg.seq
                self._deliver(msg)
        if staying:
            self._install(value, now, joined=False)
        else:
            self._finish("left", now)

    def _moves_with(self, value: dict[str, Any]) -> bool:
        """evs: does ``value`` take us from our configuration (we are in its transitional one)?"""
        part = value["parts"].get(self.view_id)
        return part is not None and self.me in part["t"]

    def _apply_evs_commit(self, value: dict[str, Any], now: float) -> None:
        """1994 step 6, atomically: deliver what is still deliverable in the old regular
        configuration, deliver the transitional configuration and the rest of the old messages in it,
        then install the new regular configuration."""
        stream = self.stream
        assert stream is not None and self.view_id is not None
        part = value["parts"][self.view_id]
        self.committed[self.view_id] = value
        while len(self.committed) > KEEP_COMMITTED:
            self.committed.popitem(last=False)
        transitional = f"{value['id']}~{self.view_id}"
        for i, mid in enumerate(part["order"]):
            if i == part["split"]:
                self._emit(ev.ViewInstalled(self.name, transitional, tuple(part["t"]), self.view_id,
                                            primary=False, kind="transitional"))
            raw = part["msgs"][mid]
            msg = Msg.decode(unpack(raw), raw)
            s = stream.index[msg.sender]
            if msg.seq > stream.delivered[s]:
                stream.delivered[s] = msg.seq
                view = self.view_id if i < part["split"] else transitional
                self._deliver(msg, view)
        if part["split"] >= len(part["order"]):
            self._emit(ev.ViewInstalled(self.name, transitional, tuple(part["t"]), self.view_id,
                                        primary=False, kind="transitional"))
        if self.me in value["members"]:
            self._install(value, now, joined=False, prev=transitional)
        else:
            self._finish("left", now)

    def _install(self, value: dict[str, Any], now: float, joined: bool, prev: str | None = None) -> None:
        prev = prev or self.view_id
        members = tuple(value["members"])
        self.view_id = value["id"]
        self.members = members
        self.addrs = dict(value["addrs"])
        self.stream = ViewStream(self.name, value["id"], members, self.me, self.evs)
        self.state = "member"
        self.promised = None
        self.accepted = None
        self.proposal = None
        self.retry_at = 0.0
        self.primary = value.get("primary", True)
        self.came_from = {view: part["t"] for view, part in value.get("parts", {}).items()}
        for pid in members:
            self.foreign.pop(pid, None)
        self.leaves &= set(members)
        self.absent &= set(members)
        for pid in value["joiners"]:
            self.joins.pop(pid, None)
        self.gap_since.clear()
        self.num_gap_since = None
        self.node.on_view(self, now)
        self._emit(ev.ViewInstalled(self.name, value["id"], members, prev, primary=self.primary))
        if self.awaiting_state is not None and (self.evs or self.state_from not in members):
            # evs: a configuration change may have parted us from the sender, which keeps the state
            # only for the members of its own configuration
            self._finish("excluded", now, f"state sender {self.state_from} failed or parted before the state "
                         f"arrived")
            return
        if joined and value["state_from"] is not None and value["state_from"] != self.me:
            self.awaiting_state = value["id"]
            self.state_from = value["state_from"]
            self.state_asked = now
        elif value["state_from"] == self.me and value["joiners"]:
            self._emit(ev.NeedState(self.name, value["id"]))
        for view in list(self.future):
            bucket = self.future.pop(view)
            if view == self.view_id:
                for sender, fields, raw in bucket:
                    self.on_message(sender, fields, raw, now)
        self.progress(now)

    def _answer_stale(self, sender: str, view: str, now: float, force: bool) -> None:
        """``sender`` is in an older view ``view``: tell it what came next (or that it was left out)."""
        if self.view_id is None or view_epoch(view) >= view_epoch(self.view_id):
            return
        if not force and now - self.told.get(sender, float("-inf")) < 2 * self.cfg.retry_interval:
            return
        self.told[sender] = now
        value = self.committed.get(view)
        if value is not None:
            self.node.send_to(sender, pack([K.COMMIT, self.name, view, value]))
        elif sender not in self.members:
            self.node.send_to(sender, pack([K.EXCLUDED, self.name, view]))

    def _send_leave(self) -> None:
        data = pack([K.LEAVE, self.name, self.me])
        for pid in self.members:
            if pid != self.me:
                self.node.send_to(pid, data)

    def _send_state(self, view: str, joiner: str, indexes: Any) -> None:
        chunks = self.state_out[view][0]
        for i in indexes:
            if 0 <= i < len(chunks):
                self.node.send_to(joiner, pack([K.STATE, self.name, view, i, len(chunks), chunks[i]]))

    def _finish(self, state: str, now: float, reason: str = "") -> None:
        if state == "left" and self.awaiting_state is not None:
            # it delivered nothing of its views yet (they wait for the state): like a crash
            state, reason = "excluded", "left before the state transfer completed"
        self.state = state
        self.stream = None
        self.pending.clear()
        self.pending_bytes = 0
        if state == "left":
            self.node.emit(ev.Left(self.name))
        else:
            log.warning("%s excluded from group %s: %s", self.me, self.name, reason)
            self.node.emit(ev.Excluded(self.name, reason))
        self.node.on_group_finished(self)


def raise_not_member(group: str, state: str, leaving: bool, detail: str = "") -> NoReturn:
    from ..errors import NotAMember

    what = "is leaving" if leaving else {"joining": "has not finished joining", "left": "has left",
                                         "excluded": "was excluded from"}.get(state, "is not a member of")
    raise NotAMember(f"this node {what} group {group!r}" + (f": {detail}" if detail else ""))


_HANDLERS = {
    K.DATA: GroupEngine.on_data, K.ACK: GroupEngine.on_ack, K.NUM: GroupEngine.on_num,
    K.NAK: GroupEngine.on_nak, K.NUMNAK: GroupEngine.on_numnak, K.JOIN: GroupEngine.on_join,
    K.JOINACK: GroupEngine.on_joinack, K.LEAVE: GroupEngine.on_leave, K.PREPARE: GroupEngine.on_prepare,
    K.PROMISE: GroupEngine.on_promise, K.REJECT: GroupEngine.on_reject, K.ACCEPT: GroupEngine.on_accept,
    K.ACCEPTED: GroupEngine.on_accepted, K.COMMIT: GroupEngine.on_commit,
    K.INSTALLED: GroupEngine.on_installed, K.EXCLUDED: GroupEngine.on_excluded, K.STATE: GroupEngine.on_state,
    K.STATEREQ: GroupEngine.on_statereq, K.STATEDONE: GroupEngine.on_statedone,
    K.DIRECT: GroupEngine.on_direct, K.MERGE: GroupEngine.on_merge,
}
