"""The values of a view change: who may decide, which value wins, what the next view holds.

Pure functions over the promises a proposer collected; the engines that run the consensus are
``viewchange`` (vs) and ``evs`` (docs/design.md §5, §6; 1987a §2, 1987b §4.2, 1994 §3, §5).

* ``is_quorum``: a majority of the view, or exactly half holding its oldest member; any two such
  sets of one view intersect, so two successors of a view are never both decided.
* ``choose_value``: a promise that carries an accepted value binds the proposer to the one with the
  highest ballot (it may be installed somewhere already).
* ``new_members``: the next vs view is the promisers minus leavers, in age order, plus the joiners
  (none whose name already has an incarnation in the view), at most as many as the old members, so
  that the old members alone stay a quorum if the joiners crash at once.
* ``evs_value``: the value of an evs configuration change (see its docstring); ``reunites``: the
  dynamic linear voting rule that makes a merged configuration primary again.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

import msgspec

from .flush import final_set
from .ids import ProcessId, ViewId, name_inc, view_epoch
from .wire import Ballot, Part, Primary, Promise, Value


def is_quorum(members: tuple[str, ...], voters: Collection[str]) -> bool:
    """Majority of ``members``, or exactly half when it holds the oldest member (docs/design.md §5)."""
    k = sum(1 for m in members if m in voters)
    return 2 * k > len(members) or (2 * k == len(members) and members[0] in voters)


@dataclass
class Proposal:
    """The proposer's side of one ballot for the transition out of the current view."""

    ballot: Ballot
    started: float
    phase: int = 1
    promises: dict[str, Promise] = field(default_factory=dict)
    accepts: set[str] = field(default_factory=set)
    value: Value | None = None
    last_sent: float = 0.0
    targets: list[str] = field(default_factory=list)  # evs: who must promise (all of them)


def choose_value(promises: dict[str, Promise]) -> Value | None:
    """The accepted value with the highest ballot among the promises, if any (Paxos phase 1b)."""
    best: tuple[Ballot, Value] | None = None
    for promise in promises.values():
        if promise.accepted is not None and (best is None or promise.accepted[0] > best[0]):
            best = promise.accepted
    return best[1] if best else None


def new_members(
    view_members: tuple[str, ...], promisers: set[str], leavers: set[str], joiners: dict[str, str]
) -> tuple[list[str], list[str]]:
    """(members of V' in age order, the joiners among them).

    At most as many joiners as old members are admitted at once: the old members, oldest first,
    then stay a quorum of V' by themselves, so joiners that crash right after their admission cannot
    block the group (the others are admitted by the next transition)."""
    old = [m for m in view_members if m in promisers and m not in leavers]
    if not old:
        return [], []  # nobody could give joiners the state; they ask again later
    names = {name_inc(m).name for m in old}
    joined = newest_ids(j for j in joiners if j not in view_members and name_inc(j).name not in names)
    joined = joined[:len(old)]
    return old + joined, joined


def newest_ids(pids: Iterable[str]) -> list[str]:
    """``pids`` keeping only the newest id of each process, sorted: a process that asked to join
    under an id and then under a fresh one (it gave the first up) is admitted once, as the latter."""
    newest: dict[str, ProcessId] = {}
    for pid in pids:
        parsed = name_inc(pid)
        if parsed.name not in newest or parsed.inc > newest[parsed.name].inc:
            newest[parsed.name] = parsed
    return sorted(f"{p.name}#{p.inc}" for p in newest.values())


def _age(config: Primary) -> tuple[int, str]:
    return view_epoch(config.id), config.id


def reunites(promises: dict[str, Promise], stayers: Collection[str]) -> str | None:
    """Dynamic linear voting (docs/design.md §6.5): the last primary L the new configuration
    succeeds, if it may — else None. L is the newest primary configuration any promiser installed
    last. The ``stayers`` (the promisers that pass into the new configuration) must include a
    quorum of L, so that two rival successors of L share a member, and one that installed L, so
    that some process installs L and then the new one (1994 §2.2: primaries ordered by precedence,
    consecutive ones sharing a member). A primary value newer than L that a promiser accepted and
    did not install (an *attempt*) may have been installed by its proposer, which commits as soon as
    every voter accepted; its proposer must be among the promisers: then it installed it (and
    reports it as its last, so it is not newer than L) or never will (its promise carries it as
    accepted, which binds the new value, or it has moved on). An attempt whose proposer is gone may
    be a primary nobody can succeed in order: the group waits for the proposer."""
    histories = {pid: p.history for pid, p in promises.items() if p.history is not None}
    known = [h.last for h in histories.values() if h.last is not None]
    if not known:
        return None
    newest = max(known, key=_age)
    installers = {pid for pid, h in histories.items() if h.last is not None and h.last.id == newest.id}
    if not installers & set(stayers) or not is_quorum(tuple(newest.members), stayers):
        return None
    attempts = {a.id for h in histories.values() for a in h.attempts if _age(a) > _age(newest)}
    if any(ViewId.parse(a).proposer not in promises for a in attempts):
        return None
    return newest.id


def evs_value(
    ballot: Ballot, proposer: str, promises: dict[str, Promise], leavers: set[str],
    joiners: dict[str, str], addrs: dict[str, str],
) -> Value:
    """The value of an EVS configuration change (docs/design.md §6, 1994 §3).

    The promisers come from one or more previous regular configurations (a merge joins several).
    For each previous configuration C, its promisers form the transitional configuration T_C, and
    the part of the value for C is F_C — the messages of C that T_C delivers, in order — split into
    what is still delivered in C (safe in C, order known) and what is delivered in T_C. A part that
    an earlier attempt recorded binds its set and order (someone may have delivered them), not
    its membership. The new configuration is primary iff no earlier attempt was bound
    (conservatively: that attempt may have made another successor of C primary), the proposer stays
    in it (it installs the configuration as it commits it), and either the proposer's own T_C is a
    quorum of a primary C or the promisers reunite the last primary (``reunites``)."""
    configs: dict[str, list[str]] = {}
    for pid in sorted(promises):
        at = promises[pid].at
        assert at is not None  # only members promise
        configs.setdefault(at, []).append(pid)
    members: list[str] = []
    parts: dict[str, Part] = {}
    follows: str | None = None  # the primary configuration the new one continues, if any
    bound = False
    for view in sorted(configs, key=lambda v: (view_epoch(v), v)):
        transitional = configs[view]
        old = promises[transitional[0]].members
        reports = [promises[m] for m in old if m in promises and promises[m].at == view]
        earlier = choose_value({m: p for m in transitional
                                if (p := promises[m]).accepted is not None and view in p.accepted[1].parts})
        if earlier is not None:
            # Its F was computed from its own voters' reports: a member of C that was not among them
            # may lack what precedes F, so it stays out of this configuration (it merges later).
            transitional = [m for m in transitional if m in earlier.parts[view].t]
            if not transitional:
                continue  # its members stay behind (an accepted value never binds someone it omits)
            part = msgspec.structs.replace(earlier.parts[view], t=sorted(transitional))
            bound = True
        else:
            order, msgs, delivered = final_set(old, [r.report for r in reports], evs=True)
            # 1994 step 6b: the prefix some member delivered is delivered in the old configuration
            part = Part(sorted(transitional), order, msgs, delivered)
        members += [m for m in old if m in transitional and m not in leavers]
        parts[view] = part
        # A quorum of a primary C counts only through the proposer's own configuration: it installs
        # the new configuration as it commits it, so some process passes from C into it and it keeps
        # a member of C (a quorum of C elsewhere may never learn the commit).
        if proposer in transitional and reports[0].primary and is_quorum(tuple(old), set(transitional)):
            follows = view
    sender = next((m for m in members if not promises[m].awaiting), None)  # one that has the state
    elsewhere = {m for promise in promises.values() for m in promise.members}  # stale requests
    joined = newest_ids(j for j in joiners if j not in elsewhere) if sender else []
    members += joined
    stayers = [m for m in members if m in promises]
    follows = follows or reunites(promises, stayers)
    primary = follows is not None and proposer in members and not bound
    epoch = max(view_epoch(v) for v in configs) + 1
    return Value(
        prev=None, id=f"{epoch}.{ballot[0]}.{proposer}", members=members,
        addrs={m: addrs[m] for m in members}, state_from=sender if joined else None, joiners=joined,
        voters=sorted(m for part in parts.values() for m in part.t), primary=primary, parts=parts,
        follows=follows if primary else None)
