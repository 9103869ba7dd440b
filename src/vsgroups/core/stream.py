"""The data path of one view: reliable per-sender streams, causal, total and safe delivery,
stability and garbage collection.

Theory of operation (docs/design.md §2–4; 1987b §3, 1991 §3).

* Every message of view V carries its sender's stream number ``seq`` and a vector timestamp ``vt``
  fixed at cast time: ``vt[j]`` is the number of messages from member j the sender had delivered,
  ``vt[sender] == seq``. Member p delivers m from s when ``vt[s] == delivered[s] + 1`` and
  ``vt[j] <= delivered[j]`` for every other j (CBCAST). Fifo messages follow the same rule, which is
  stronger than fifo and keeps every outgoing vector honest.
* Total and safe messages are causal messages that also need a global number. The sequencer (the
  oldest member of V) numbers a total message when it becomes causally deliverable there, so the
  numbering is a causal order; numbers travel as order notices, which are metadata applied on
  receipt, never causal messages (a notice that waited for the message it orders would deadlock).
  A total message is delivered when causally deliverable and every lower number has been delivered;
  a safe one additionally waits until it is stable: every member holds it and its number.
* EVS mode orders total and safe messages without a sequencer, by their *key* (Lamport time,
  sender position): the key travels in the message, so every component that holds two messages
  orders them alike, whatever the partition took away (a sequencer's numbers would be known on
  one side only). Lamport time extends causality, so the key order is a causal order. A total
  message is delivered when causally deliverable, every held total message with a lower key is
  delivered, and every member is known to send only higher times from now on (``bound``: its
  latest message here, or the clock its acknowledgement carried once the messages it had sent
  by then are here).
* ``recv[s]`` is the contiguous prefix of s's stream held here. An acknowledgement says "I hold m
  and everything m causally depends on" (``acked[s]``: the longest prefix of s's stream whose causal
  pasts are held too) and carries the contiguous count of known numbers. A message is stable when
  every member acknowledged it — so every survivor can give it, with its causal past, to the flush
  of the view — and is dropped once it is stable and delivered here. Everything not dropped can
  be retransmitted, by any holder, byte for byte.
* Who hears acknowledgements. In a view of at most ``ALL_TO_ALL`` members every member acknowledges
  to every other and computes stability itself. In a larger view (``star``) members acknowledge to
  the *aggregator* only, the oldest member, which computes stability and announces it
  (``announcement``, applied by the others with ``on_announcement``): a cast then costs a linear
  number of frames, not a quadratic one, for one more hop before stability (docs/design.md §2).
  The announcement also relays what the others would have read in each other's acknowledgements:
  the highest sequence some member holds (gap repair), the numbers some member knows, what every
  member delivered (causality domains) and, in evs, every member's acknowledged clock.
* Stability is kept incrementally where acknowledgements are counted: per sender, the minimum
  acknowledgement and how many members are at it; only when the last of them moves up is the
  column scanned again, so a cast costs the aggregator O(n), not a scan of the n×n matrix.

Invariants: ``delivered[s] <= recv[s]``; held messages are exactly those of ``s`` with sequence in
``(min(stable[s], delivered[s]), recv[s]]`` plus out-of-order arrivals above ``recv[s]``.
"""

from __future__ import annotations

from heapq import heappop, heappush
from operator import le

from .wire import SAFE, TOTAL, Announcement, Msg, StreamReport

#: Views of at most this many members acknowledge all-to-all; larger ones through the aggregator.
ALL_TO_ALL = 4


class ViewStream:
    __slots__ = (
        "group", "view", "members", "index", "me", "n", "sequencer", "held", "recv", "delivered", "seq",
        "num_of", "mid_of_num", "known", "numbered", "acks", "ack_known", "stable", "stable_num",
        "collected", "collected_num", "seen", "ordered", "dirty", "own_bytes", "own_casts", "acked", "evs",
        "clock", "last_ts", "ack_clock", "ack_seq", "totals", "delivered_by", "heard", "star", "aggregates",
        "at_min", "rising", "known_max", "delivered_low",
    )

    def __init__(self, group: str, view: str, members: tuple[str, ...], me: str, evs: bool = False) -> None:
        self.group = group
        self.evs = evs
        self.view = view
        self.members = members
        self.index = {pid: i for i, pid in enumerate(members)}
        self.me = self.index[me]
        n = self.n = len(members)
        self.sequencer = self.me == 0 and not evs
        self.star = n > ALL_TO_ALL
        self.aggregates = not self.star or self.me == 0  # hears every member's acknowledgements
        self.held: list[dict[int, Msg]] = [{} for _ in range(n)]
        self.recv = [0] * n
        self.delivered = [0] * n
        self.seq = 0
        self.num_of: dict[str, int] = {}
        self.mid_of_num: dict[int, str] = {}
        self.known = 0  # contiguous count of global numbers known here
        self.numbered = 0  # global numbers delivered here
        self.acks = [[0] * n for _ in range(n)]
        self.acked = [0] * n  # what we acknowledge: held with its causal past (see refresh_acked)
        self.acks[self.me] = self.acked
        self.ack_known = [0] * n
        self.stable = [0] * n
        self.stable_num = 0
        self.at_min = [n] * n  # per sender, how many members acknowledged exactly stable[s]
        self.rising: list[int] = []  # senders whose stable entry may have risen (at_min reached 0)
        self.known_max = 0  # the most global numbers some member is known to know
        self.delivered_low = [0] * n  # not aggregating: what every member delivered, per sender
        self.collected = [0] * n  # per sender, everything up to here is dropped
        self.collected_num = 0
        self.seen = [0] * n  # highest sequence known to exist, per sender (for gap repair)
        self.ordered = [0] * n  # the sequencer's numbering frontier (see _number)
        self.dirty = True  # acknowledgements changed since stability was last computed
        self.own_bytes = 0  # payload bytes of our own messages still held (flow control)...
        self.own_casts = 0  # ...and how many casts they carry
        # evs ordering (see the module docstring)
        self.clock = 0  # Lamport time: the highest time sent or received here
        self.last_ts = [0] * n  # per sender, the time of its message recv[s]
        self.ack_clock = [0] * n  # per member, the clock of its latest acknowledgement...
        self.ack_seq = [0] * n  # ...and how many messages it had sent by then
        self.totals: list[tuple[int, int, int]] = []  # undelivered total messages held: (time, sender, seq)
        # per member, what its acknowledgements say it delivered (causality domains, ``domains``)
        self.delivered_by = [[0] * n for _ in range(n)]
        self.delivered_by[self.me] = self.delivered
        # per member, it acknowledged in this view with the group's state: it delivers in this view
        self.heard = [False] * n
        self.heard[self.me] = True

    # -- sending and receiving -------------------------------------------------------------------

    def stamp(self, mids: list[str], order: int, payloads: list[bytes]) -> Msg:
        self.seq += 1
        vt = self.delivered.copy()
        vt[self.me] = self.seq
        ts = 0
        if self.evs:
            self.clock = ts = self.last_ts[self.me] = self.clock + 1
            if order >= TOTAL:
                heappush(self.totals, (ts, self.me, self.seq))
        msg = Msg(mids, self.members[self.me], self.view, self.seq, order, vt, payloads, ts=ts)
        msg.encode(self.group)
        self.held[self.me][self.seq] = msg
        self.recv[self.me] = self.seen[self.me] = self.seq
        self._raise(self.acked, self.me, self.seq)
        self.dirty = True
        self.own_bytes += sum(map(len, payloads))
        self.own_casts += len(mids)
        return msg

    def receive(self, msg: Msg) -> bool:
        """Store a message of this view; False if it is a duplicate or malformed."""
        s = self.index.get(msg.sender)
        if s is None or len(msg.vt) != self.n or msg.vt[s] != msg.seq or msg.seq <= self.recv[s]:
            return False
        stream = self.held[s]
        if msg.seq in stream:
            return False
        stream[msg.seq] = msg
        if msg.seq > self.seen[s]:
            self.seen[s] = msg.seq
        if self.evs:
            if msg.ts > self.clock:
                self.clock = msg.ts
            if msg.order >= TOTAL:
                heappush(self.totals, (msg.ts, s, msg.seq))
        k = self.recv[s]
        while k + 1 in stream:
            k += 1
        if k != self.recv[s]:
            self.recv[s] = k
            self.last_ts[s] = stream[k].ts
            self.dirty = True
        return True

    def learn_numbers(self, first: int, mids: list[str]) -> bool:
        changed = False
        for num, mid in enumerate(mids, first):
            if num > self.collected_num and num not in self.mid_of_num:
                self.mid_of_num[num] = mid
                self.num_of[mid] = num
                changed = True
        while self.known + 1 in self.mid_of_num:
            self.known += 1
        self.dirty = self.dirty or changed
        return changed

    def numbers_from(self, first: int) -> tuple[int, list[str]]:
        first = max(first, self.collected_num + 1)
        mids = []
        num = first
        while num in self.mid_of_num:
            mids.append(self.mid_of_num[num])
            num += 1
        return first, mids

    def on_ack(self, member: str, recv: list[int], known: int, clock: int = 0,
               delivered: list[int] | None = None) -> None:
        j = self.index.get(member)
        if j is None or j == self.me or len(recv) != self.n:
            return
        if delivered is not None and len(delivered) == self.n:  # empty: a joiner without the state
            self.heard[j] = True
            row = self.delivered_by[j]
            for s, k in enumerate(delivered):
                if k > row[s]:
                    row[s] = k
        if clock > self.ack_clock[j]:  # a later acknowledgement (clock and sent count only grow)
            self.ack_clock[j] = clock
            self.ack_seq[j] = recv[j]
        row = self.acks[j]
        self.dirty = True
        seen = self.seen
        for s, k in enumerate(recv):
            if k > row[s]:
                self._raise(row, s, k)
                if k > seen[s]:
                    seen[s] = k
        if known > self.ack_known[j]:
            self.ack_known[j] = known
            if known > self.known_max:
                self.known_max = known

    def _raise(self, row: list[int], s: int, k: int) -> None:
        """A member's acknowledgement of sender s rises to k (> row[s]): keep the count at the
        minimum, and note the column when its last member at the minimum leaves it."""
        if row[s] == self.stable[s] and self.aggregates:
            self.at_min[s] -= 1
            if not self.at_min[s]:
                self.rising.append(s)
        row[s] = k

    def announcement(self, waiting: bool) -> Announcement:
        """What the aggregator of a star view tells the others (see the module docstring)."""
        self.refresh_stable()
        evs = self.evs
        me = self.me
        clocks, sent = (self.ack_clock.copy(), self.ack_seq.copy()) if evs else ([], [])
        if evs:
            clocks[me], sent[me] = self.clock, self.seq
        # copies: the lists change in place, and the data path compares announcements
        return Announcement(self.group, self.view, self.stable.copy(), self.stable_num, self.seen.copy(),
                            self.known_max, self.lowest_delivered(), all(self.heard), waiting, clocks, sent)

    def on_announcement(self, ann: Announcement) -> None:
        """Apply the aggregator's announcement (everything in it only grows)."""
        n = self.n
        if self.aggregates or not (len(ann.stable) == len(ann.seen) == len(ann.delivered) == n):
            return
        if ann.mids:
            self.learn_numbers(ann.first, ann.mids)
        if ann.heard and not all(self.heard):
            self.heard = [True] * n
        self.delivered_low = list(map(max, self.delivered_low, ann.delivered))
        self.seen = list(map(max, self.seen, ann.seen))
        if ann.known > self.known_max:
            self.known_max = ann.known
        if self.evs and len(ann.clocks) == len(ann.sent) == n:
            for j, clock in enumerate(ann.clocks):
                if clock > self.ack_clock[j]:
                    self.ack_clock[j] = clock
                    self.ack_seq[j] = ann.sent[j]
        stable = list(map(max, self.stable, ann.stable))
        if stable != self.stable or ann.stable_num > self.stable_num:
            self.stable = stable
            self.stable_num = max(self.stable_num, ann.stable_num)
            self.collect()

    def refresh_acked(self) -> None:
        acked, recv, n = self.acked, self.recv, self.n
        for s in range(n):
            stream = self.held[s]
            k = acked[s]
            while k < recv[s]:
                msg = stream.get(k + 1)
                if msg is not None and any(msg.vt[j] > recv[j] for j in range(n) if j != s):
                    break
                k += 1  # held, or already collected (hence stable)
            if k != acked[s]:
                self._raise(acked, s, k)
                self.dirty = True

    def refresh_stable(self) -> None:
        self.refresh_acked()
        if not self.dirty:
            return
        self.dirty = False
        if not self.aggregates:
            return  # stability comes from the aggregator's announcements
        rose = False
        stable, at_min, acks = self.stable, self.at_min, self.acks
        for s in self.rising:
            column = [row[s] for row in acks]
            stable[s] = low = min(column)
            at_min[s] = column.count(low)
            rose = True
        self.rising.clear()
        self.ack_known[self.me] = self.known
        if self.known > self.known_max:
            self.known_max = self.known
        stable_num = min(self.ack_known)
        if rose or stable_num != self.stable_num:
            self.stable_num = stable_num
            self.collect()

    # -- delivery --------------------------------------------------------------------------------

    def deliverable(self, new_numbers: list[str]) -> list[Msg]:
        """Deliver everything deliverable now, in a causal (and total) order. The sequencer appends
        the ids it numbers to ``new_numbers``; they must be announced in that order."""
        if self.sequencer:
            self._number(new_numbers)
            if new_numbers:
                # numbers known here count for the stability of safe messages; refreshed before the
                # loop, never inside it, where a tentative delivery would let ``collect`` drop the
                # message being tried
                self.refresh_stable()
        out: list[Msg] = []
        delivered = self.delivered
        progress = True
        while progress:
            progress = False
            for s, stream in enumerate(self.held):
                while (msg := stream.get(delivered[s] + 1)) is not None:
                    k = msg.seq
                    delivered[s] = k  # tentatively, so that one vector comparison checks every entry
                    if not all(map(le, msg.vt, delivered)) or not self._ordered(msg, s, k):
                        delivered[s] = k - 1
                        break
                    out.append(msg)
                    progress = True
        if out:
            self.collect()
        return out

    def _ordered(self, msg: Msg, s: int, k: int) -> bool:
        """May ``msg`` (causally deliverable) be delivered as far as total and safe order go?"""
        if msg.order < TOTAL:
            return True
        if self.evs:
            return self._key_ordered(msg, s, k)
        num = self.num_of.get(msg.mid)
        if num is None or num != self.numbered + 1:
            return False
        if msg.order == SAFE:
            if self.stable_num < num or self.stable[s] < k:
                return False
        self.numbered = num
        return True

    def _key_ordered(self, msg: Msg, s: int, k: int) -> bool:
        totals = self.totals
        if totals[0][1] != s or totals[0][2] != k:
            return False  # a total message with a lower key is held and undelivered
        ts, recv = msg.ts, self.recv
        for j in range(self.n):
            if j != s and j != self.me and self.last_ts[j] < ts and (
                    self.ack_clock[j] < ts or recv[j] < self.ack_seq[j]):
                return False  # j may still send a message with a lower key
        if msg.order == SAFE:
            if self.stable[s] < k:
                return False
        heappop(totals)
        return True

    def _number(self, new_numbers: list[str]) -> None:
        """Number total and safe messages in a causal order of everything held here, as if every
        message were delivered as soon as it is causally deliverable. Numbering runs ahead of
        delivery, so a safe message waiting for stability does not hold back the numbering of its
        successors (they become stable together)."""
        ordered = self.ordered
        n = self.n
        progress = True
        while progress:
            progress = False
            for s in range(n):
                stream = self.held[s]
                while (msg := stream.get(ordered[s] + 1)) is not None:
                    ordered[s] += 1
                    if not all(map(le, msg.vt, ordered)):
                        ordered[s] -= 1
                        break
                    if msg.order >= TOTAL and msg.mid not in self.num_of:
                        self.known += 1
                        self.dirty = True
                        self.num_of[msg.mid] = self.known
                        self.mid_of_num[self.known] = msg.mid
                        new_numbers.append(msg.mid)
                    progress = True

    def collect(self) -> None:
        """Drop what is stable and delivered here."""
        for s in range(self.n):
            limit = min(self.stable[s], self.delivered[s])
            stream = self.held[s]
            for k in range(self.collected[s] + 1, limit + 1):
                msg = stream.pop(k, None)
                if msg is not None and s == self.me:
                    self.own_bytes -= sum(map(len, msg.payloads))
                    self.own_casts -= len(msg.mids)
            if limit > self.collected[s]:
                self.collected[s] = limit
        limit = min(self.stable_num, self.numbered)
        for num in range(self.collected_num + 1, limit + 1):
            mid = self.mid_of_num.pop(num, None)
            if mid is not None:
                self.num_of.pop(mid, None)
        if limit > self.collected_num:
            self.collected_num = limit

    # -- queries ---------------------------------------------------------------------------------

    def lowest_delivered(self) -> list[int]:
        """Per sender, how many of its messages every member is known to have delivered."""
        if not self.aggregates:
            return self.delivered_low
        return list(map(min, *self.delivered_by)) if self.n > 1 else list(self.delivered)

    def delivered_everywhere(self, need: list[int]) -> bool:
        """Has every member said it delivered, from each sender s, at least ``need[s]`` messages?"""
        return all(low >= k for low, k in zip(self.lowest_delivered(), need, strict=True))

    def all_stable(self) -> bool:
        self.refresh_stable()
        return self.stable_num >= self.known and all(
            st >= rc for st, rc in zip(self.stable, self.recv, strict=True))

    def retransmit(self, s: int, first: int, last: int) -> list[bytes]:
        stream = self.held[s] if 0 <= s < self.n else {}
        return [m.raw for k in range(first, last + 1) if (m := stream.get(k)) is not None and m.raw]

    def gaps(self) -> list[int]:
        """Senders whose stream has a hole here that some member (or the sender) can fill."""
        return [s for s in range(self.n) if self.seen[s] > self.recv[s]]

    def holder_of(self, s: int, k: int, tries: int = 0) -> int:
        """A member to ask for message k of sender s, at the ``tries``-th request: one that
        acknowledged holding it; not aggregating, the sender (which holds it until it is stable)
        and the aggregator in turn."""
        if not self.aggregates:
            return 0 if tries % 2 and s != 0 and self.me != 0 else s
        for j in range(self.n):
            if j != self.me and self.acks[j][s] >= k:
                return j
        return s

    def number_holder(self) -> int | None:
        """A member that knows global numbers unknown here, if one is known to."""
        if self.known_max <= self.known:
            return None
        if not self.aggregates:
            return 0  # the aggregator, the sequencer too in vs, heard of them
        best = max(range(self.n), key=self.ack_known.__getitem__)
        return best if best != self.me else None

    def report(self) -> StreamReport:
        """What this member tells a proposer of the view change (docs/design.md §5)."""
        self.refresh_stable()
        return StreamReport(
            delivered=list(self.delivered),
            recv=list(self.recv),
            msgs=[m.raw for stream in self.held for m in stream.values() if m.raw],
            # only the known prefix: a number beyond a gap may order after a causal predecessor
            # whose number is missing, and F's order must stay acyclic
            numbers={mid: num for mid, num in self.num_of.items() if num <= self.known},
        )
