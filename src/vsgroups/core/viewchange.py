"""The view change of one group at one node: one consensus per transition (docs/design.md §5).

``ViewChange`` is the machinery both models share: join and leave requests, ballots, promises,
accepts and commits, and the commit repeated until every member of the new view confirms it.
``VsViewChange`` is the virtually synchronous transition with a primary component (1987a §2,
1987b §4.2, 1994 §5); ``evs.EvsConfigurationChange`` is the extended virtually synchronous one.

Theory of operation of the vs transition V → V' (the values themselves are built by ``membership``,
the final message set by ``flush``):

* Trigger: a suspicion, a join request or a leave. Only a member all of whose elders in V it
  suspects proposes (the oldest unsuspected member coordinates); a proposal that does not finish
  within ``proposal_timeout`` is abandoned, and the next one has a higher ballot.
* Prepare: a member promising a ballot stops sending and delivering in V (it keeps receiving and
  retransmitting) and stops acknowledging; its promise carries its report (what it holds and has
  delivered, ``ViewStream.report``) and any value it accepted.
* Decide: once every member of V has promised or is suspected, and the promisers are a quorum of V
  (``membership.is_quorum``), the proposer re-proposes the accepted value with the highest ballot,
  or builds one from the reports: V' = the promisers minus leavers plus joiners, and the final set
  F of V with its delivery order.
* Accept by a quorum of V decides the value; the proposer commits it to V ∪ V' and repeats the
  commit to members of V' until they confirm. Every member delivers the part of F it has not
  delivered, in F's order, then installs V' (or, left out of it, logs its leave or learns it was
  excluded).
* A member that installed V' answers any later question about V's transition (a prepare, an
  accept, or a heartbeat naming V) with the decided value or the news that it was left out, so a
  successor of a coordinator that died mid-change finishes that same value, and a member left
  behind learns its fate. Two different successors of V are never installed.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from . import events as ev
from .flush import final_set
from .ids import name_inc, view_epoch
from .membership import Proposal, choose_value, is_quorum, new_members
from .wire import (
    Accept,
    Accepted,
    Ballot,
    Commit,
    Excluded,
    History,
    Installed,
    Join,
    JoinAck,
    Leave,
    Msg,
    Prepare,
    Promise,
    Reject,
    Value,
    encode,
)

if TYPE_CHECKING:
    from .group import GroupEngine

KEEP_COMMITTED = 8  # decided values kept to answer members left behind
JOIN_EXPIRY = 3.0  # a join request not repeated for this long is forgotten


class ViewChange:
    """What both models share: requests, ballots, promises, accepts and commits."""

    def __init__(self, engine: GroupEngine) -> None:
        self.g = engine
        self.cfg = engine.cfg
        self.promised: Ballot | None = None
        self.promised_at = 0.0
        self.blocked_at = 0.0  # when the view change under way began here (its first promise)
        self.accepted: tuple[Ballot, Value] | None = None
        self.proposal: Proposal | None = None
        self.max_round = 0
        self.retry_at = 0.0
        self.joins: dict[str, tuple[str, float]] = {}  # joiner: (address, when last asked)
        self.leaves: set[str] = set()
        self.absent: set[str] = set()  # members that told us they are not in the group
        self.committed: OrderedDict[str, Value] = OrderedDict()  # view: the value that ended it
        self.commit_unacked: set[str] = set()
        self.commit_retry_at = 0.0

    # -- what the models decide differently ------------------------------------------------------

    def coordinator(self) -> str:
        raise NotImplementedError

    def takes_us(self, view: str | None, value: Value) -> bool:
        """Is ``value``, for the transition out of ``view``, one that takes us out of our view?"""
        raise NotImplementedError

    def on_prepare(self, sender: str, msg: Prepare, raw: bytes, now: float) -> None:
        raise NotImplementedError

    def _not_ours(self, sender: str, view: str, now: float) -> None:
        """An accept that is not about our current view arrived from ``sender``."""

    def _decided(self, p: Proposal) -> bool:
        raise NotImplementedError

    def _try_decide(self, now: float) -> None:
        raise NotImplementedError

    def apply(self, value: Value, now: float) -> None:
        """Deliver what the decided ``value`` says the old view ends with, then move to the new one."""
        raise NotImplementedError

    def _heard_of(self, sender: str, view: str, now: float) -> None:
        """``sender`` is in another view, ``view``, of this group."""

    def on_groups_named(self, sender: str, named: bool) -> bool:
        """A heartbeat of ``sender`` named every group it is in or joining: this one or not. True if
        that changes who is waited for here."""
        return False

    def _forget_foreign(self, pid: str) -> bool:
        """``pid`` says it is not in the group; True if we were counting on it from elsewhere."""
        return False

    def _idle(self, now: float) -> None:
        """No proposal of ours is under way: start one if the view must change."""
        raise NotImplementedError

    # -- the shared machinery --------------------------------------------------------------------

    def committed_value_for(self, view: str) -> Value | None:
        return next((v for v in self.committed.values() if v.id == view), None)

    def remember(self, view: str, value: Value) -> None:
        self.committed[view] = value
        while len(self.committed) > KEEP_COMMITTED:
            self.committed.popitem(last=False)

    def installed(self, members: tuple[str, ...], value: Value) -> None:
        """A new view: the transition out of the old one is over."""
        self.promised = None
        self.accepted = None
        self.proposal = None
        self.retry_at = 0.0
        self.leaves &= set(members)
        self.absent &= set(members)
        self.absent |= self.g.former & set(members)  # our own earlier ids: they will never vote
        for pid in value.joiners:
            self.joins.pop(pid, None)

    def history(self) -> History | None:
        """evs: this member's primary history, reported in its promises (docs/design.md §6.5)."""
        return None

    def accepting(self, value: Value) -> None:
        """``value`` is accepted here (before the acceptance is sent)."""

    def retired(self, pid: str) -> None:
        """The node of member ``pid`` is in this group under another member id now (it was excluded
        and joined again): ``pid`` will neither vote nor acknowledge here."""
        self.joins.pop(pid, None)
        if pid in self.g.members and pid != self.g.me:
            self.absent.add(pid)

    def gone(self, pid: str) -> bool:
        """Suspected, or it told us it is not in the group at all (a leave that went on without us)."""
        return pid in self.absent or self.g.host.suspects(pid)

    def suspects(self) -> set[str]:
        g = self.g
        return {m for m in g.members if m != g.me and self.gone(m)}

    def quiet(self) -> bool:
        """No view change is under way or called for here (see ``GroupEngine.quiet``)."""
        return (self.proposal is None and self.promised is None and self.accepted is None
                and not self.commit_unacked and not self.joins and not self.leaves and not self.suspects())

    def on_join(self, sender: str, msg: Join, raw: bytes, now: float) -> None:
        g = self.g
        pid, addr = msg.pid, msg.addr
        if not g.is_member or pid in g.former:
            return
        if pid in g.members:
            # It missed the commit that admitted it — if the current view did. An older value that
            # named it (it left and joins again under the same identity, evs) must not be installed
            # a second time.
            value = self.committed_value_for(g.view_id or "")
            if value is not None and pid in value.joiners and sender == pid:
                g.host.send(addr, encode(Commit(g.name, value.prev, value)))
            return
        g.host.learn_addr(pid, addr)
        self.joins[pid] = (addr, now)
        name = name_inc(pid).name
        held_by = next((m for m in g.members if name_inc(m).name == name), None)
        blocked = self.promised is not None and now - self.blocked_at > self.cfg.proposal_timeout
        g.host.send(addr, encode(JoinAck(g.name, held_by, blocked)))
        coordinator = self.coordinator()
        if coordinator != g.me and sender == pid:
            g.host.send_to(coordinator, raw)

    def on_leave(self, sender: str, msg: Leave, raw: bytes, now: float) -> None:
        pid = msg.pid
        not_at_all = msg.not_member and pid == sender
        if pid in self.g.members:
            self.leaves.add(pid)
            if not_at_all:
                self.absent.add(sender)  # not in the group at all: it will not vote
        elif not_at_all and self._forget_foreign(pid):
            self.absent.add(pid)

    def promise(self, sender: str, view: str | None, ballot: Ballot, now: float) -> None:
        g = self.g
        self.max_round = max(self.max_round, ballot[0])
        if self.promised is None or ballot >= self.promised:
            if self.promised is None and g.view_id is not None:
                g.emit(ev.Blocked(g.name, g.view_id))
                self.blocked_at = now
            self.promised = ballot
            self.promised_at = now
            assert g.stream is not None
            promise = Promise(g.name, view, ballot, g.stream.report(), self.accepted, g.view_id,
                              list(g.members), g.primary, awaiting=g.transfer.awaiting is not None,
                              history=self.history())
            g.host.send_to(sender, encode(promise))
        else:
            g.host.send_to(sender, encode(Reject(g.name, view, self.promised)))

    def on_promise(self, sender: str, msg: Promise, raw: bytes, now: float) -> None:
        p = self.proposal
        if p is not None and p.phase == 1 and msg.view == self.g.view_id and msg.ballot == p.ballot:
            p.promises[sender] = msg
            self._try_decide(now)

    def on_reject(self, sender: str, msg: Reject, raw: bytes, now: float) -> None:
        if msg.view != self.g.view_id:
            return
        self.max_round = max(self.max_round, msg.promised[0])
        if self.proposal is not None and msg.promised > self.proposal.ballot:
            self.proposal = None
            self.retry_at = now + self.g.host.rng.uniform(0.5, 1.5) * self.cfg.retry_interval

    def on_accept(self, sender: str, msg: Accept, raw: bytes, now: float) -> None:
        g = self.g
        view, ballot, value = msg.view, msg.ballot, msg.value
        if not self.takes_us(view, value) or not g.is_member:
            if view is not None:
                self._not_ours(sender, view, now)
            return
        if self.promised is None or ballot >= self.promised:
            self.promised = ballot
            self.accepted = (ballot, value)
            self.accepting(value)
            g.host.send_to(sender, encode(Accepted(g.name, view, ballot)))
        else:
            g.host.send_to(sender, encode(Reject(g.name, view, self.promised)))

    def on_accepted(self, sender: str, msg: Accepted, raw: bytes, now: float) -> None:
        p = self.proposal
        if p is None or p.value is None or msg.view != self.g.view_id or msg.ballot != p.ballot:
            return
        p.accepts.add(sender)
        if self._decided(p):
            self._commit(p.value, now)

    def on_commit(self, sender: str, msg: Commit, raw: bytes, now: float) -> None:
        g = self.g
        prev, value = msg.view, msg.value
        if g.joining and g.me in value.joiners:
            g.install(value, now, joined=True)
        elif g.is_member and self.takes_us(prev, value):
            self.apply(value, now)
        elif not (g.is_member and value.id == g.view_id):
            return
        if g.is_member and value.id == g.view_id:
            g.host.send_to(sender, encode(Installed(g.name, value.id)))

    def on_installed(self, sender: str, msg: Installed, raw: bytes, now: float) -> None:
        if msg.view == self.g.view_id:
            self.commit_unacked.discard(sender)

    def on_excluded(self, sender: str, msg: Excluded, raw: bytes, now: float) -> None:
        g = self.g
        if g.is_member and msg.view == g.view_id:
            # a leaver too: the group went on without its vote, so it may not have delivered the final
            # set of its view (ends like a crash, as in ``VsViewChange.apply``)
            g.finish_excluded(now, f"{sender} reports view {msg.view} was succeeded without us")

    def on_heartbeat_view(self, sender: str, view: str, now: float) -> None:
        """A peer's heartbeat says which view of this group it is in."""
        if view != self.g.view_id and self.g.view_id is not None:
            self._heard_of(sender, view, now)

    def propose(self, now: float, targets: list[str] | None = None) -> None:
        self.max_round += 1
        self.proposal = Proposal((self.max_round, self.g.me), now, targets=targets or [])
        self.commit_unacked.clear()
        self._resend(self.proposal, now)

    def _resend(self, p: Proposal, now: float) -> None:
        g = self.g
        p.last_sent = now
        if p.phase == 1:
            data = encode(Prepare(g.name, g.view_id, p.ballot, p.targets))
            targets = [m for m in p.targets or g.members if m not in p.promises]
        else:
            assert p.value is not None
            data = encode(Accept(g.name, g.view_id, p.ballot, p.value))
            targets = [m for m in p.promises if m not in p.accepts]
        for pid in targets:
            g.host.send_to(pid, data)

    def _commit(self, value: Value, now: float) -> None:
        g = self.g
        data = encode(Commit(g.name, g.view_id, value))
        everyone = set(g.members) | set(value.members)
        for pid in sorted(everyone - {g.me}):
            addr = g.addrs.get(pid) or value.addrs.get(pid)
            if addr:
                g.host.send(addr, data)
        self.proposal = None
        if self.takes_us(g.view_id, value):
            self.apply(value, now)
        self.commit_unacked = set(value.members) - {g.me}
        self.commit_retry_at = now + self.cfg.retry_interval

    def deliver_unseen(self, raw: bytes, view: str | None = None) -> None:
        """Deliver a message of the final set (in ``view``; by default its own) unless delivered here."""
        g = self.g
        stream = g.stream
        assert stream is not None
        msg = Msg.decode(raw)
        s = stream.index[msg.sender]
        if msg.seq > stream.delivered[s]:
            stream.delivered[s] = msg.seq
            g.data.deliver(msg, view)

    def tick(self, now: float) -> None:
        g = self.g
        if self.commit_unacked and now >= self.commit_retry_at:
            self.commit_retry_at = now + self.cfg.retry_interval
            value = self.committed_value_for(g.view_id or "")
            if value is not None:
                data = encode(Commit(g.name, value.prev, value))
                for pid in sorted(self.commit_unacked):
                    if not g.host.suspects(pid):
                        g.host.send_to(pid, data)
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
        self._idle(now)


class VsViewChange(ViewChange):
    """The transition of a view with a primary component (see the module docstring)."""

    def __init__(self, engine: GroupEngine) -> None:
        super().__init__(engine)
        self.told: dict[str, float] = {}  # when we last told a process left behind what followed

    def coordinator(self) -> str:
        suspects = self.suspects()
        return next((m for m in self.g.members if m not in suspects), self.g.me)

    def takes_us(self, view: str | None, value: Value) -> bool:
        return view == self.g.view_id

    def on_prepare(self, sender: str, msg: Prepare, raw: bytes, now: float) -> None:
        g = self.g
        view, ballot = msg.view, msg.ballot
        if view is not None and view == g.view_id and g.is_member:
            if sender in g.members:
                self.promise(sender, view, ballot, now)
        elif view is not None:
            self._answer_stale(sender, view, now, force=True)

    def _not_ours(self, sender: str, view: str, now: float) -> None:
        self._answer_stale(sender, view, now, force=True)

    def _heard_of(self, sender: str, view: str, now: float) -> None:
        self._answer_stale(sender, view, now, force=False)

    def _decided(self, p: Proposal) -> bool:
        return is_quorum(self.g.members, p.accepts)

    def _idle(self, now: float) -> None:
        g = self.g
        suspects = self.suspects()
        mine = g.members.index(g.me)
        if any(m not in suspects for m in g.members[:mine]):
            return
        if suspects or self.leaves or any(j not in g.members for j in self.joins) or self.promised:
            self.propose(now)

    def _try_decide(self, now: float) -> None:
        g = self.g
        p = self.proposal
        assert p is not None
        suspects = self.suspects()
        if any(m not in suspects for m in g.members[:g.members.index(g.me)]):
            self.proposal = None  # an elder is alive after all: it coordinates (docs/design.md §5)
            return
        if any(m not in p.promises and m not in suspects for m in g.members):
            return
        if not is_quorum(g.members, p.promises):
            return  # cut off from the primary component: stay blocked
        value = choose_value(p.promises)
        if value is None:
            value = self._build_value(p)
        p.value = value
        p.phase = 2
        self._resend(p, now)

    def _build_value(self, p: Proposal) -> Value:
        g = self.g
        joiners = {pid: addr for pid, (addr, _) in self.joins.items()}
        members, joined = new_members(g.members, set(p.promises), self.leaves, joiners)
        reports = [p.promises[m].report for m in g.members if m in p.promises]
        order, msgs, _ = final_set(list(g.members), reports)
        addrs = {m: g.addrs.get(m) or joiners[m] for m in members}
        assert g.view_id is not None
        return Value(
            prev=g.view_id, id=f"{view_epoch(g.view_id) + 1}.{p.ballot[0]}.{g.me}", members=members,
            addrs=addrs, state_from=members[0] if joined else None, joiners=joined, voters=sorted(p.promises),
            order=order, msgs=msgs)

    def apply(self, value: Value, now: float) -> None:
        g = self.g
        assert g.stream is not None and g.view_id is not None
        self.remember(g.view_id, value)
        staying = g.me in value.members
        if not staying and not g.leaving:
            g.finish_excluded(now, f"view {value.id} succeeded {g.view_id} without us")
            return
        if g.me not in value.voters:
            # A leaver the group went on without (it was suspected): F did not use its report, so
            # delivering F could skip what it lacks, and its last messages may be lost, as in a
            # crash. Fail-stop: this incarnation ends.
            g.finish_excluded(now, f"view {value.id} succeeded {g.view_id} without our vote")
            return
        for mid in value.order:
            self.deliver_unseen(value.msgs[mid])
        if staying:
            g.install(value, now, joined=False)
        else:
            g.finish_left(now)

    def _answer_stale(self, sender: str, view: str, now: float, force: bool) -> None:
        """``sender`` is in an older view ``view``: tell it what came next (or that it was left out)."""
        g = self.g
        if g.view_id is None or view_epoch(view) >= view_epoch(g.view_id):
            return
        if not force and now - self.told.get(sender, float("-inf")) < 2 * self.cfg.retry_interval:
            return
        self.told[sender] = now
        value = self.committed.get(view)
        if value is not None:
            g.host.send_to(sender, encode(Commit(g.name, view, value)))
        elif sender not in g.members:
            g.host.send_to(sender, encode(Excluded(g.name, view)))
