"""Causality across the groups of one causality domain (1991 §4–5; docs/design.md §14).

A chain of causally related messages may leave a group, pass through other groups and re-enter it
(1991 Fig. 4); causal order must hold at the re-entry, and at a process that belongs to two groups
of the chain, without the programmer doing anything. Groups are partitioned into causality domains
and causality is kept only within one: groups not placed in a domain share the node's default one,
and a group alone in its domain costs nothing here.

Theory of operation: the conservative rule. A process sends a message in group g of domain D only
once every message it delivered or sent in the other groups of D has been delivered by every member
of those groups — or that group has installed another view here since, and virtual synchrony gave
every survivor of the old view the same deliveries. By induction on the sends, every message in the
causal past of a message m of D (through any chain of sends and deliveries in D's groups, at any
process) was delivered by every member of its group before m was sent: a chain that re-enters a
group finds its first message delivered there already, and a process in two groups of a chain
delivers the earlier message first. Within one group, the vector timestamps of ``stream`` order
the rest. Nothing extra travels with the messages: acknowledgements report what each member has
delivered, and the sender waits for them.

* A group's casts leave in the order they were made across the domain: its first pending cast
  waits while another group of the domain holds an older one (the older is in its causal past).
* A *barrier* covers the pending casts made before it: for each other group of the domain with
  deliveries or sends not yet known to be delivered everywhere, it records the view and the
  delivered vector (this member's own sends counted) to wait for. It is taken once and never
  grows, so a steady stream of deliveries elsewhere cannot starve a cast.
* A view change of a group a barrier waits for ends the wait once every member of the new view has
  acknowledged in it: virtual synchrony made each deliver the old view's messages before installing
  the new one. A joiner acknowledges so only once its state is here: until then it holds back the
  deliveries of the views installed meanwhile, so a barrier waits for it even in a view where
  nothing was delivered yet. A member that left the group, or was excluded from it, stops waiting
  for it: it is failed in its last view there, and chains it starts from its deliveries in that
  view oblige no one.
* A member that leaves a group delivers that view's final set only as the leave completes, after
  the others installed the next view: a chain that left through one of them may reach the leaver
  first. So from its leave request until the leave completes, it delivers nothing in the domain's
  other groups (they go on once it is out; nothing it owes the group it leaves waits for them).
* A cast held by a barrier depends only on what was delivered before the barrier: ``Held`` says
  so, in the order of the outputs (the trace marks its ``send`` with that point).

Deadlock freedom: a barrier waits only for deliveries of messages already sent, which never wait
for a barrier, and for older casts, whose barriers wait only for older ones still.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .group import GroupEngine

DEFAULT = "default"


@dataclass(slots=True)
class Barrier:
    """What a group's casts made before ``upto`` wait for (see the module docstring)."""

    upto: int  # covers the casts whose counter is below this
    needs: list[tuple[GroupEngine, str, list[int]]]  # (other group, its view, delivered vector)


@dataclass(eq=False, slots=True)
class Domain:
    name: str
    groups: dict[GroupEngine, None] = field(default_factory=dict)  # ordered: runs follow the seed
    waiting: dict[GroupEngine, None] = field(default_factory=dict)  # casts held by the rule
    leaving: dict[GroupEngine, None] = field(default_factory=dict)  # groups this member is leaving

    def holds(self, engine: GroupEngine) -> bool:
        """Are ``engine``'s deliveries held back because this member is leaving another group?"""
        return any(other is not engine for other in self.leaving)

    def may_send(self, engine: GroupEngine, counter: int, last_counter: int) -> int | None:
        """May ``engine`` stamp its first pending cast (``counter``)? The bound below which its
        casts may go, or None to wait; ``last_counter`` is the newest cast of the node."""
        data = engine.data
        older = last_counter + 1
        for other in self.groups:
            if other is not engine and other.data.pending:
                older = min(older, other.data.first_counter())
        if older < counter:
            self.waiting[engine] = None  # an older cast elsewhere goes first
            return None
        barrier = data.barrier
        if barrier is None:
            barrier = Barrier(older, [need for other in self.groups if other is not engine
                                      if (need := _need(other)) is not None])
        barrier.needs = [need for need in barrier.needs if not _met(self, *need)]
        for other, _, _ in barrier.needs:
            other.wake()  # it acknowledges, asking its members for theirs, while it is awaited
        if barrier.needs:
            if data.barrier is None:
                data.barrier = barrier
                engine.held(barrier.upto)
            self.waiting[engine] = None
            return None
        data.barrier = None
        self.waiting.pop(engine, None)
        return barrier.upto

    def changed(self, engine: GroupEngine) -> list[GroupEngine]:
        """Something ``engine`` did may let the domain's held casts go: the groups to look again."""
        return [other for other in self.waiting if other is not engine]


def _need(other: GroupEngine) -> tuple[GroupEngine, str, list[int]] | None:
    stream = other.stream
    if stream is None or not other.is_member:
        return None
    need = stream.delivered.copy()
    need[stream.me] = stream.seq
    # nothing delivered in this view yet, but a member that has not acknowledged in it with the
    # state (a joiner still waiting for it) may not have delivered the previous view's messages
    if (not any(need) and all(stream.heard)) or other.data.confirmed == (stream.view, need):
        return None
    return other, stream.view, need


def _met(domain: Domain, other: GroupEngine, view: str, need: list[int]) -> bool:
    stream = other.stream
    if other not in domain.groups or stream is None:
        return True  # this member left the group or was excluded from it (docs/design.md §14)
    if stream.view != view:
        # a later view: its members delivered the old view's final set before installing it, and
        # each says it installed it by acknowledging in it (our acknowledgement asks them to)
        if all(stream.heard):
            return True
        other.data.ack_dirty = True
        return False
    if not all(stream.heard) or not stream.delivered_everywhere(need):
        return False
    other.data.confirmed = (view, need)
    return True


class Domains:
    """The causality domains of one node's groups."""

    def __init__(self, kind: type[Domain] = Domain) -> None:
        self.kind = kind  # the simulator's broken core passes a Domain that does not wait
        self.by_name: dict[str, Domain] = {}

    def enter(self, engine: GroupEngine, name: str | None) -> Domain:
        name = name or DEFAULT
        domain = self.by_name.get(name)
        if domain is None:
            domain = self.by_name[name] = self.kind(name)
        domain.groups[engine] = None
        return domain

    def leave(self, engine: GroupEngine) -> list[GroupEngine]:
        """``engine`` is over: the groups whose held casts or deliveries may now go."""
        domain = engine.domain
        domain.groups.pop(engine, None)
        domain.waiting.pop(engine, None)
        held = domain.leaving.pop(engine, None) is not None
        if not domain.groups:
            self.by_name.pop(domain.name, None)
        return list(domain.groups if held else domain.waiting)
