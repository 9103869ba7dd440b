"""The configuration change of an evs group at one node (docs/design.md §6; 1994 §2–3).

Every component of a partition keeps running, in configurations of its own. The would-be members
of the next configuration are the unsuspected members of ours plus the *foreign* processes heard
from in other configurations of the group (a merge). The least of them that is not leaving
proposes; every one of them must promise (a member promises one proposal at a time, so
configurations born of one configuration are disjoint); one that does not answer in time is
suspected and dropped, and the proposal starts again. The value (``membership.evs_value``)
carries, per previous configuration C, the transitional configuration (the members that come from
C) and the messages of C they deliver, split into what is still delivered in C and what is
delivered in the transitional configuration (1994 step 6).

Merge discovery: heartbeats name every view of their sender. A process listed in our configuration
whose heartbeat names a configuration it did not come into ours from is foreign too. Whoever sees
a foreign process tells its coordinator where it is (``MERGE``), and coordinators probe the seed
addresses, for processes never heard of (one that recovered at a new address, a component that
formed apart from the start). A member whose promise went stale (its proposer fell silent)
proposes itself, so that no member stays blocked. ``GroupEngine.recover`` re-enters a group after
a failure with stable storage in a configuration of this process alone, which merges like any
other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import events as ev
from .membership import Proposal, evs_value
from .viewchange import ViewChange
from .wire import Heartbeat, History, MergeHint, Prepare, Primary, Value, encode

if TYPE_CHECKING:
    from .group import GroupEngine


class EvsConfigurationChange(ViewChange):
    def __init__(self, engine: GroupEngine) -> None:
        super().__init__(engine)
        self.foreign: dict[str, float] = {}  # members of other configurations we hear from: when
        # the configurations our current one succeeded, with who came from each
        self.came_from: dict[str, list[str]] = {}
        self.seeds_probed = float("-inf")
        # the primary history (docs/design.md §6.5): the last primary installed here, and the
        # primary values accepted since and not installed (any may have been installed elsewhere)
        self.last_primary: Primary | None = None
        self.attempts: dict[str, Primary] = {}

    def installed(self, members: tuple[str, ...], value: Value) -> None:
        super().installed(members, value)
        self.came_from = {view: part.t for view, part in value.parts.items()}
        for pid in members:
            self.foreign.pop(pid, None)
        if value.primary:
            # the value accounted for every attempt its voters reported: they are settled
            self.last_primary = Primary(value.id, list(members))
            self.attempts.clear()
            self._history_changed()

    def history(self) -> History:
        return History(self.last_primary, list(self.attempts.values()))

    def restore(self, history: History | None) -> None:
        """A recovery: the history this member had on stable storage."""
        if history is not None:
            self.last_primary = history.last
            self.attempts = {a.id: a for a in history.attempts}

    def accepting(self, value: Value) -> None:
        if value.primary and value.id not in self.attempts:
            self.attempts[value.id] = Primary(value.id, list(value.members))
            self._history_changed()

    def _history_changed(self) -> None:
        self.g.host.emit(ev.PrimaryHistory(self.g.name, self.history()))

    def coordinator(self) -> str:
        return self._proposer(self._targets(self.g.host.now))

    def takes_us(self, view: str | None, value: Value) -> bool:
        """Does ``value`` take us from our configuration (we are in its transitional one)?"""
        part = value.parts.get(self.g.view_id or "")
        return part is not None and self.g.me in part.t

    def on_prepare(self, sender: str, msg: Prepare, raw: bytes, now: float) -> None:
        if self.g.is_member and self.g.me in msg.targets:
            self.promise(sender, msg.view, msg.ballot, now)

    def on_groups_named(self, sender: str, named: bool) -> bool:
        """A member of our configuration whose heartbeat does not name the group has left it (or was
        left out) while we did not hear of it — paused, or cut off: it will neither propose nor
        promise here, so it must not be waited for (seed 2233). One that names it is here again."""
        g = self.g
        if not g.is_member or sender == g.me:
            return False
        if not named and sender in g.members and sender not in self.absent:
            self.absent.add(sender)
            return True
        if named and sender in self.absent:
            self.absent.discard(sender)
            return True
        return False

    def _forget_foreign(self, pid: str) -> bool:
        # a process we took for a member of another configuration has left the group (it answers
        # our proposal so): the proposal must not wait for its promise
        return self.foreign.pop(pid, None) is not None

    def on_merge(self, sender: str, msg: MergeHint, raw: bytes, now: float) -> None:
        pid, addr = msg.pid, msg.addr
        host = self.g.host
        if host.addr_of(pid) is None:
            host.learn_addr(pid, addr)  # our probes reach it now, and its answers start the merge

    def _heard_of(self, sender: str, view: str, now: float) -> None:
        g = self.g
        if sender not in g.members or sender not in self.came_from.get(view, ()):
            # another configuration within reach, or a member listed here (a joiner the proposer
            # took in) that went elsewhere meanwhile: merge with it. A member still in a
            # configuration ours came from just has not installed ours yet.
            if sender not in self.foreign:
                coordinator = self.coordinator()
                addr = g.host.addr_of(sender)
                if coordinator != g.me and addr is not None:
                    # the proposer of the merge may not know it: tell it where to probe
                    g.host.send_to(coordinator, encode(MergeHint(g.name, sender, addr)))
            self.foreign[sender] = now

    def _decided(self, p: Proposal) -> bool:
        assert p.value is not None
        return p.accepts >= set(p.value.voters)

    def quiet(self) -> bool:
        return super().quiet() and not self.foreign

    def _idle(self, now: float) -> None:
        self._probe_seeds(now)
        targets = self._targets(now)
        if self.promised is not None and self.promised[1] != self.g.me and now - self.promised_at < (
                self.cfg.proposal_timeout):
            return  # another proposal is under way
        if self._proposer(targets) != self.g.me and self.promised is None:
            return  # the least process of the would-be configuration proposes
        # (or one whose promise went stale: its proposer failed, and it stays blocked until some
        # proposal finishes what that one may have decided)
        changed = set(targets) != set(self.g.members) or any(t in self.foreign for t in targets)
        if changed or self.leaves or any(j not in self.g.members for j in self.joins) or self.promised:
            self.propose(now, targets)

    def _targets(self, now: float) -> list[str]:
        """Who the next configuration should hold: the reachable members of ours and of every other
        configuration of the group we hear from."""
        g = self.g
        expiry = 3 * self.cfg.probe_interval
        for pid, seen in list(self.foreign.items()):
            if now - seen > expiry or g.host.suspects(pid):
                del self.foreign[pid]
        reachable = {m for m in g.members if not self.gone(m)} | set(self.foreign)
        return sorted(reachable | {g.me})

    def _probe_seeds(self, now: float) -> None:
        """The coordinator also tells the seed addresses which configuration it is in."""
        g = self.g
        if now - self.seeds_probed < self.cfg.probe_interval or self.coordinator() != g.me:
            return
        self.seeds_probed = now
        assert g.view_id is not None
        probe = encode(Heartbeat(None, {g.name: g.view_id}))
        for addr in g.seeds:
            if addr != g.host.addr:
                g.host.send(addr, probe)

    def _proposer(self, targets: list[str]) -> str:
        """The least of ``targets`` that is not leaving: a leaver may be gone from the group already
        (it answers only a proposal, with the news that it is not a member)."""
        return next((t for t in targets if t not in self.leaves or t == self.g.me), targets[0])

    def _try_decide(self, now: float) -> None:
        g = self.g
        p = self.proposal
        assert p is not None
        if any(m not in p.promises and not self.gone(m) for m in p.targets):
            return
        joiners = {pid: addr for pid, (addr, _) in self.joins.items()}
        addrs = {**{m: a for m in p.promises if (a := g.host.addr_of(m))}, **joiners, g.me: g.host.addr}
        p.value = evs_value(p.ballot, g.me, p.promises, self.leaves, joiners, addrs)
        p.phase = 2
        self._resend(p, now)

    def apply(self, value: Value, now: float) -> None:
        """1994 step 6, atomically: deliver what is still deliverable in the old regular
        configuration, deliver the transitional configuration and the rest of the old messages in it,
        then install the new regular configuration."""
        g = self.g
        assert g.stream is not None and g.view_id is not None
        part = value.parts[g.view_id]
        self.remember(g.view_id, value)
        transitional = f"{value.id}~{g.view_id}"
        announce = ev.ViewInstalled(g.name, transitional, tuple(part.t), g.view_id, primary=False,
                                    kind="transitional", domain=g.domain.name)
        split = part.split
        for i, mid in enumerate(part.order):
            if i == split:
                g.emit(announce)
            self.deliver_unseen(part.msgs[mid], g.view_id if i < split else transitional)
        if split >= len(part.order):
            g.emit(announce)
        if g.me in value.members:
            g.install(value, now, joined=False, prev=transitional)
        else:
            g.finish_left(now)
