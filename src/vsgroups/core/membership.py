"""View change as one consensus per transition (virtual synchrony, primary component).

Theory of operation (docs/design.md §5; 1987a §2, 1987b §4.2, 1994 §5).

Each transition V → V' is a single-decree Paxos instance whose acceptors are the members of V.
The decided *value* is ``{from, id, members, addrs, order, msgs, state_from, joiners}``: the new
view, the final set F of V-messages with its delivery order (``flush.final_set``), the contents of
those messages, and who sends state to the joiners. Nothing of V' exists until a value is decided.

* Trigger: a suspicion, a join or a leave. Only a member all of whose elders in V it suspects
  proposes (the oldest unsuspected member coordinates); a proposer that hears nothing conclusive
  retries with a higher ballot after ``proposal_timeout``.
* Prepare: a member promising a ballot stops sending and delivering in V (it keeps receiving and
  retransmitting) and reports what it holds and any value it accepted. It also stops
  acknowledging: what others count as stable, and so may garbage-collect, must be covered by the
  report the value is built from.
* The proposer waits until every member of V has promised or is suspected, and the promisers form
  a quorum of V: a majority, or exactly half including V's oldest member (any two such sets
  intersect). If a promise carries an accepted value, the one with the highest ballot is proposed
  again unchanged (it may already be installed somewhere); otherwise the value is built from the
  promises: V' = the promisers minus leavers, plus joiners, in age order.
* Accept by a quorum decides the value; the proposer commits it to V ∪ V' and repeats the commit
  to members of V' until they confirm. Every member delivers the part of F it has not delivered,
  in F's order, then installs V' (or, if V' leaves it out, logs its leave or learns it was excluded).
* A member that installed V' answers any later question about V's transition (a prepare, or a
  heartbeat naming V) with the decided value, so a coordinator that dies mid-change is replaced
  by the next oldest, who must finish that same value. Two different successors of V are never
  installed: every view is primary, and a minority blocks until it learns it was excluded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .flush import final_set
from .wire import view_epoch

Ballot = tuple[int, str]


def is_quorum(members: tuple[str, ...], voters: set[str] | dict[str, Any]) -> bool:
    """Majority of ``members``, or exactly half when it holds the oldest member (docs/design.md §5)."""
    k = sum(1 for m in members if m in voters)
    return 2 * k > len(members) or (2 * k == len(members) and members[0] in voters)


@dataclass
class Proposal:
    """The proposer's side of one ballot for the transition out of the current view."""

    ballot: Ballot
    started: float
    phase: int = 1
    promises: dict[str, dict[str, Any]] = field(default_factory=dict)
    accepts: set[str] = field(default_factory=set)
    value: dict[str, Any] | None = None
    last_sent: float = 0.0
    targets: list[str] = field(default_factory=list)  # evs: who must promise (all of them)


def choose_value(promises: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The accepted value with the highest ballot among the promises, if any (Paxos phase 1b)."""
    best: tuple[Ballot, dict[str, Any]] | None = None
    for report in promises.values():
        acc = report.get("a")
        if acc is not None:
            ballot = (acc[0][0], acc[0][1])
            if best is None or ballot > best[0]:
                best = (ballot, acc[1])
    return best[1] if best else None


def new_members(
    view_members: tuple[str, ...], promisers: set[str], leavers: set[str], joiners: dict[str, str]
) -> tuple[list[str], list[str]]:
    """(members of V' in age order, the joiners among them)."""
    old = [m for m in view_members if m in promisers and m not in leavers]
    if not old:
        return [], []  # nobody could give joiners the state; they ask again later
    names = {m.rpartition("#")[0] for m in old}
    joined = sorted(j for j in joiners if j not in view_members and j.rpartition("#")[0] not in names)
    return old + joined, joined


def evs_value(
    ballot: Ballot, proposer: str, promises: dict[str, dict[str, Any]], leavers: set[str],
    joiners: dict[str, str], addrs: dict[str, str],
) -> dict[str, Any]:
    """The value of an EVS configuration change (docs/design.md §6, 1994 §3).

    The promisers come from one or more previous regular configurations (a merge joins several).
    For each previous configuration C, its promisers form the transitional configuration T_C, and
    the part of the value for C is F_C — the messages of C that T_C delivers, in order — split into
    what is still delivered in C (safe in C, order known) and what is delivered in T_C. A part that
    an earlier attempt recorded binds its set and order (someone may have delivered them), not
    its membership. The new configuration is primary iff some T_C is a quorum of a primary C and
    no earlier attempt was bound (conservatively: that attempt may have made another successor
    of C primary)."""
    configs: dict[str, list[str]] = {}
    for pid in sorted(promises):
        configs.setdefault(promises[pid]["v"], []).append(pid)
    members: list[str] = []
    parts: dict[str, dict[str, Any]] = {}
    primary = False
    bound = False
    for view in sorted(configs, key=lambda v: (view_epoch(v), v)):
        transitional = configs[view]
        old = promises[transitional[0]]["mem"]
        reports = [promises[m] for m in old if m in promises and promises[m]["v"] == view]
        earlier = choose_value({m: promises[m] for m in transitional
                                if promises[m].get("a") and view in promises[m]["a"][1].get("parts", {})})
        if earlier is not None:
            # Its F was computed from its own voters' reports: a member of C that was not among them
            # may lack what precedes F, so it stays out of this configuration (it merges later).
            transitional = [m for m in transitional if m in earlier["parts"][view]["t"]]
            if not transitional:
                continue  # its members stay behind (an accepted value never binds someone it omits)
            part = dict(earlier["parts"][view], t=sorted(transitional))
            bound = True
        else:
            order, msgs, delivered = final_set(old, reports, evs=True)
            part = {"t": sorted(transitional), "order": order, "msgs": msgs,
                    "split": delivered}  # 1994 step 6b: that prefix is delivered in the old configuration
        members += [m for m in old if m in transitional and m not in leavers]
        parts[view] = part
        primary = primary or (reports[0]["p"] and is_quorum(tuple(old), set(transitional)))
    sender = next((m for m in members if not promises[m].get("w")), None)  # one that has the state
    elsewhere = {m for report in promises.values() for m in report["mem"]}  # stale requests
    joined = sorted(j for j in joiners if j not in elsewhere) if sender else []
    members += joined
    epoch = max(view_epoch(v) for v in configs) + 1
    return {
        "evs": True, "id": f"{epoch}.{ballot[0]}.{proposer}", "members": members,
        "addrs": {m: addrs[m] for m in members}, "parts": parts, "primary": primary and not bound,
        "state_from": sender if joined else None, "joiners": joined,
        "voters": sorted(m for part in parts.values() for m in part["t"]),
    }
