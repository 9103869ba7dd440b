"""The data path of one group at one node: casts in, messages out, deliveries, acknowledgements,
repair of gaps, flow control and ``flush``.

The theory of the streams lives in ``stream`` (docs/design.md §2–4); this module drives the stream
of the current view from the engine's inputs and timers:

* Casts wait in ``pending`` until the node's outputs are taken; then a run of casts with one
  ordering is stamped and sent as one message unit (batching, 1987b §4.3.2), as far as the window
  allows (flow control counts a sender's unstable casts and bytes).
* Deliveries, order notices and acknowledgements are computed once per frame, not once per
  message (the node defers ``progress`` while a frame is handled).
* A promise (a view change under way, §5) stops sending and delivering in the view, and freezes
  acknowledgements: what others count as stable must be covered by the report the promise gave.
* A joiner sends nothing until it holds the state its casts are based on (§7).
* In a view of more than ``stream.ALL_TO_ALL`` members, acknowledgements go to the aggregator only,
  which announces stability (``Announcement``) within ``ack_delay`` of a change; a member whose
  acknowledgement says it waits is answered at once, and asks the aggregator to solicit fresh
  acknowledgements from every member (one may have been lost).
* Gaps are repaired by negative acknowledgements to a member that acknowledged holding the
  missing messages (in a star view, the sender and the aggregator in turn); a gap in the global
  numbers by a request to a member that knows more.
* ``flush`` completes once everything cast here up to the call (sent or still pending) is stable.
* In a causality domain of several groups, a cast is stamped only once the rule of ``domains``
  allows it; acknowledgements report what a member has delivered, for the others' rule.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import msgspec

from . import events as ev
from .ids import MessageId
from .stream import ViewStream
from .wire import ORDERS, Ack, Announcement, Data, Msg, Nak, Num, NumNak, encode

if TYPE_CHECKING:
    from .domains import Barrier
    from .group import GroupEngine


class DataPath:
    def __init__(self, engine: GroupEngine) -> None:
        self.g = engine
        self.cfg = engine.cfg
        self.pending: deque[tuple[str, int, bytes]] = deque()  # (message id, ordering, payload)
        self.pending_bytes = 0
        self.ack_dirty = False
        self.ack_sent = float("-inf")
        self.acked_back: dict[str, float] = {}
        self.gap_since: dict[int, tuple[float, int]] = {}  # per sender with a gap: (since, requests)
        self.announced: Announcement | None = None  # the aggregator's latest announcement
        self.solicited = False  # the aggregator heard a member wait since its last announcement
        self.numbers_due: list[str] = []  # ...and gave these global numbers since (in order)
        self.num_gap_since: float | None = None
        self.flush_waiters: dict[int, tuple[int, tuple[str, list[int]] | None]] = {}
        self.retransmitted = 0  # messages sent again on request (NAK), for ``vsgroups status``
        # causality domains (``domains``): casts below ``cleared`` may go; a barrier holds the others
        self.cleared = 0
        self.barrier: Barrier | None = None
        self.confirmed: tuple[str, list[int]] | None = None  # (view, vector) delivered everywhere

    def cast(self, mid: str, order: str, payload: bytes) -> None:
        self.pending.append((mid, ORDERS.index(order), payload))
        self.pending_bytes += len(payload)
        # stamped when the node's outputs are taken: a run of casts is stamped, delivered here and
        # sent as one batch, not one pass over the data path per message
        self.g.host.defer(self.g)

    def first_counter(self) -> int:
        """The node's cast counter of the oldest pending cast."""
        return MessageId.parse(self.pending[0][0]).counter

    def flush(self, token: int, counter: int, now: float) -> None:
        self.flush_waiters[token] = (counter, None)
        self.progress(now)

    def new_view(self) -> None:
        self.gap_since.clear()
        self.num_gap_since = None
        self.announced = None
        self.solicited = False
        self.numbers_due = []

    def drop_pending(self) -> None:
        self.pending.clear()
        self.pending_bytes = 0
        self.barrier = None

    # -- inputs ----------------------------------------------------------------------------------

    def on_data(self, sender: str, msg: Data, raw: bytes, now: float) -> None:
        g = self.g
        if g.stream is not None and msg.view == g.view_id:
            if g.stream.receive(Msg.of(msg, raw)):
                self.ack_dirty = True
                self.progress(now)
        else:
            g.keep_for_later(msg.view, sender, msg, raw)

    def on_ack(self, sender: str, msg: Ack, raw: bytes, now: float) -> None:
        g = self.g
        if g.stream is not None and msg.view == g.view_id:
            stream = g.stream
            stream.on_ack(sender, msg.acked, msg.known, msg.clock, msg.delivered)
            if stream.star:
                self.ack_dirty = True  # the announcement may change
                self.solicited = self.solicited or msg.waiting
            if g.domain.waiting:  # another group's casts may wait for what this says was delivered
                g.poke_domain()
            self._answer(sender, msg.waiting, now)
            self.progress(now)
        else:
            g.keep_for_later(msg.view, sender, msg, raw)

    def on_announcement(self, sender: str, msg: Announcement, raw: bytes, now: float) -> None:
        g = self.g
        if g.stream is not None and msg.view == g.view_id:
            if sender != g.stream.members[0]:
                return
            g.stream.on_announcement(msg)
            if g.domain.waiting:
                g.poke_domain()
            self._answer(sender, msg.waiting, now)
            self.progress(now)
        else:
            g.keep_for_later(msg.view, sender, msg, raw)

    def _answer(self, sender: str, waiting: bool, now: float) -> None:
        """``sender`` waits (for stability, or for deliveries): our last word to it may have been
        lost, so say it again, once per ``ack_refresh``."""
        if waiting and self.g.change.promised is None \
                and now - self.acked_back.get(sender, float("-inf")) >= self.cfg.ack_refresh:
            self.acked_back[sender] = now
            self.g.host.send_to(sender, self._ack_message())

    def on_num(self, sender: str, msg: Num, raw: bytes, now: float) -> None:
        g = self.g
        if g.stream is not None and msg.view == g.view_id:
            if g.stream.learn_numbers(msg.first, msg.mids):
                self.ack_dirty = True
                self.progress(now)
        else:
            g.keep_for_later(msg.view, sender, msg, raw)

    def on_nak(self, sender: str, msg: Nak, raw: bytes, now: float) -> None:
        g = self.g
        if g.stream is not None and msg.view == g.view_id:
            for data in g.stream.retransmit(msg.sender, msg.first, msg.last):
                g.host.send_to(sender, data)
                self.retransmitted += 1

    def on_numnak(self, sender: str, msg: NumNak, raw: bytes, now: float) -> None:
        g = self.g
        if g.stream is not None and msg.view == g.view_id:
            first, mids = g.stream.numbers_from(msg.first)
            if mids:
                g.host.send_to(sender, encode(Num(g.name, msg.view, first, mids)))

    # -- progress --------------------------------------------------------------------------------

    def progress(self, now: float) -> None:
        """Deliver what is deliverable, send what flow control allows, and settle flushes."""
        g = self.g
        stream = g.stream
        if stream is None or not g.is_member:
            return
        if g.host.batching:
            g.host.defer(g)  # once per frame, not once per message
            return
        if g.change.promised is None:
            stream.refresh_stable()
            self._deliver_ready(stream)
            # a joiner sends only once it holds the state its casts are based on
            sent = False
            while self.pending and g.transfer.awaiting is None and self._window_open(stream) \
                    and self._may_send():
                while self.pending and self._window_open(stream) and self._may_send():
                    self._send_run(stream)
                sent = self.ack_dirty = True
                stream.refresh_stable()  # alone in its view, a sender's messages are stable at once
                self._deliver_ready(stream)
            if sent and g.domain.waiting:
                g.poke_domain()  # an older cast of the domain went: younger ones elsewhere may follow
        if self.ack_dirty and now - self.ack_sent >= self.cfg.ack_delay:
            self.send_ack(now)
        if self.flush_waiters:
            self._settle_flushes(stream)

    def _may_send(self) -> bool:
        """The rule of causality domains (``domains``) for the first pending cast."""
        g = self.g
        if len(g.domain.groups) < 2:
            return True
        counter = self.first_counter()
        if counter < self.cleared:
            return True
        upto = g.domain.may_send(g, counter, g.host.counter)
        if upto is None:
            return False
        self.cleared = upto
        return True

    def _deliver_ready(self, stream: ViewStream) -> None:
        if self.g.domain.leaving and self.g.domain.holds(self.g):
            return  # a leaver delivers the final set of the group it leaves first (``domains``)
        numbered: list[str] = []
        delivered = stream.deliverable(numbered)
        if delivered:
            self.ack_dirty = True  # what a member delivered counts for the others' causality domains
        for msg in delivered:
            self.deliver(msg)
        if numbered and stream.star:
            # with the next announcement, at once if none went within ack_delay: a lone cast is
            # ordered without delay, while a stream of them shares announcements
            self.numbers_due += numbered
            self.ack_dirty = True
        elif numbered:
            first = stream.known - len(numbered) + 1  # the sequencer numbers consecutively
            self.broadcast(encode(Num(self.g.name, stream.view, first, numbered)))
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
        cleared = self.cleared if len(self.g.domain.groups) > 1 else 0
        while pending and len(mids) < room:
            mid, o, payload = pending[0]
            if o != order or (mids and size + len(payload) > budget):
                break
            if cleared and mids and MessageId.parse(mid).counter >= cleared:
                break  # made after the barrier: the next one covers it
            pending.popleft()
            mids.append(mid)
            payloads.append(payload)
            size += len(payload)
        self.pending_bytes -= size
        msg = stream.stamp(mids, order, payloads)
        g = self.g
        g.emit(ev.Sent(g.name, mids, ORDERS[order], stream.view))
        self.broadcast(msg.encode(g.name))

    def deliver(self, msg: Msg, view: str | None = None) -> None:
        """Deliver the casts of ``msg`` (in ``view``; by default its own)."""
        self.g.emit(ev.Delivered(self.g.name, msg.mids, msg.sender, ORDERS[msg.order], view or msg.view,
                                 msg.payloads))

    def broadcast(self, data: bytes) -> None:
        g = self.g
        for pid in g.members:
            if pid != g.me:
                g.host.send(g.addrs[pid], data)

    # -- acknowledgements, repair, flush ---------------------------------------------------------

    def send_ack(self, now: float) -> None:
        if self.g.change.promised is not None:
            # Acknowledgements are frozen by a promise: the report we gave the proposer is all that
            # others may count as stable (and garbage-collect); F is computed from that report.
            return
        self.ack_dirty = False
        self.ack_sent = now
        stream = self.g.stream
        assert stream is not None
        if not stream.star:
            self.broadcast(self._ack_message())
        elif not stream.aggregates:
            self.g.host.send_to(stream.members[0], self._ack_message())
        else:
            # aggregating: announce stability and the numbers given since the last announcement,
            # unless nothing changed and nobody waits
            numbered, self.numbers_due = self.numbers_due, []
            announcement = stream.announcement(self._waiting(stream) or self.solicited)
            if numbered or announcement != self.announced or announcement.waiting:
                self.announced = announcement
                self.solicited = False
                if numbered:  # the sequencer numbers consecutively
                    first = stream.known - len(numbered) + 1
                    announcement = msgspec.structs.replace(announcement, first=first, mids=numbered)
                self.broadcast(encode(announcement))

    def _ack_message(self) -> bytes:
        """Our acknowledgement, or, aggregating in a star view, our announcement."""
        g = self.g
        stream = g.stream
        assert stream is not None
        if stream.star and stream.aggregates:
            return encode(stream.announcement(self._waiting(stream) or self.solicited))
        stream.refresh_acked()
        # a joiner holds its deliveries from the application until the state is here: none count yet
        delivered = stream.delivered if g.transfer.awaiting is None else []
        waiting = self._waiting(stream)
        return encode(Ack(g.name, stream.view, stream.acked, stream.known, waiting, stream.clock, delivered))

    def _waiting(self, stream: ViewStream) -> bool:
        return not stream.all_stable() or self.awaited()

    def awaited(self) -> bool:
        """Does a barrier of another group of the domain wait for deliveries here?"""
        g = self.g
        return any(need[0] is g for other in g.domain.waiting if (b := other.data.barrier) is not None
                   for need in b.needs)

    def _settle_flushes(self, stream: ViewStream) -> None:
        pending_counter = min((MessageId.parse(mid).counter for mid, _, _ in self.pending), default=None)
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
                self.g.emit(ev.Flushed(self.g.name, token))

    def quiet(self) -> bool:
        """Nothing to send, repeat, repair or wait for (see ``GroupEngine.quiet``)."""
        stream = self.g.stream
        if (self.pending or self.ack_dirty or self.flush_waiters or self.barrier is not None or self.gap_since
                or self.num_gap_since is not None or self.solicited or self.numbers_due):
            return False
        return stream is not None and not self._waiting(stream) and self.g not in self.g.domain.waiting

    def tick(self, stream: ViewStream, now: float) -> None:
        """Repeat acknowledgements while something is unstable, and repair gaps."""
        if self.ack_dirty and now - self.ack_sent >= self.cfg.ack_delay:
            self.send_ack(now)
        elif now - self.ack_sent >= self.cfg.ack_refresh and (self._waiting(stream) or self.solicited):
            self.send_ack(now)  # ``waiting`` asks the others to answer: ours or theirs may be lost
        self._repair_gaps(stream, now)

    def _repair_gaps(self, stream: ViewStream, now: float) -> None:
        g = self.g
        gaps = stream.gaps()
        for s in list(self.gap_since):
            if s not in gaps:
                del self.gap_since[s]
        for s in gaps:
            since, tries = self.gap_since.setdefault(s, (now, 0))
            if now - since >= self.cfg.nak_delay:
                self.gap_since[s] = (now, tries + 1)
                first = stream.recv[s] + 1
                holder = stream.members[stream.holder_of(s, first, tries)]
                g.host.send_to(holder, encode(Nak(g.name, stream.view, s, first, stream.seen[s])))
        best = stream.number_holder()
        if best is not None:
            if self.num_gap_since is None:
                self.num_gap_since = now
            elif now - self.num_gap_since >= self.cfg.nak_delay:
                self.num_gap_since = now
                nak = encode(NumNak(g.name, stream.view, stream.known + 1))
                g.host.send_to(stream.members[best], nak)
        else:
            self.num_gap_since = None
