"""The final message set of a view: what survivors deliver before the next view (the flush).

Theory of operation (docs/design.md §5; 1994 §3 step 6a, 1987b §4.5). Every member that
promised a ballot for the transition V → V' reported, for its view V: how many messages it has
delivered from each sender (``delivered``), the contiguous prefix it holds of each sender's stream
(``recv``), the messages it still holds (not yet garbage-collected) and the global numbers it knows.

* Per sender, the final set F runs from the lowest ``delivered`` among the reporters (everything
  below that every reporter has delivered) up to the longest contiguous prefix held by any of them.
  A message some reporter has not delivered is never garbage-collected anywhere unless it is stable,
  and a stable message is held by every reporter that has not delivered it, so its contents are
  always in some report.
* Messages whose causal predecessors are missing are cut (with everything after them in their
  sender's stream) until nothing changes. A reporter's own messages and everything it delivered
  survive the cut: it held their causal past.
* F is ordered by one topological sort of causal precedence and the known global numbers, ties
  broken by number and then by (sender position, sequence), except that messages some reporter
  already delivered come first (they are closed under both orders, so they form a prefix); total
  messages nobody numbered come
  after every numbered one, because a member may already have delivered numbered messages while
  those waited for a number. Numbering was causal and the numbers known form a prefix (the
  sequencer announces them in order), so no numbered message depends on an unnumbered one and the
  graph is acyclic; every member that delivered some numbered messages delivered them in number
  order, which this order preserves. Each member delivers, in this order, the messages of F it has not yet
  delivered — so all of V's survivors end V having delivered exactly F.
* EVS (1994 §3 step 6): F is computed per component, from the reports of the members that came
  from V with the proposer (the transitional configuration). The causal cut discards what may
  depend on a message the component does not hold. F is ordered by (already delivered by some
  reporter, key) where the key (Lamport time, sender position) is the one ``stream`` orders total
  messages by: a causal order, and the same order in every component, so components that deliver
  the same total messages of V deliver them alike. The delivered-first messages form a prefix
  (a reporter that delivered a total message delivered every total message with a lower key) and
  are delivered in V itself; the rest in the transitional configuration.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from .wire import TOTAL, Msg, StreamReport


class FinalSetGap(AssertionError):
    """The reports leave a hole in the final set: an invariant of the streams was broken."""


def final_set(
    members: Sequence[str], reports: Sequence[StreamReport], evs: bool = False
) -> tuple[list[str], dict[str, bytes], int]:
    """Return (F's delivery order as message ids, the encoded messages of that order by id, how many
    of the first ones some reporter already delivered)."""
    n = len(members)
    held: dict[tuple[int, int], Msg] = {}
    numbers: dict[str, int] = {}
    for report in reports:
        for raw in report.msgs:
            msg = Msg.decode(raw)
            held.setdefault((members.index(msg.sender), msg.seq), msg)
        numbers.update(report.numbers)
    lo = [min(r.delivered[s] for r in reports) for s in range(n)]
    hi = [max(r.recv[s] for r in reports) for s in range(n)]
    for s in range(n):
        while (s, hi[s] + 1) in held:
            hi[s] += 1
        for k in range(lo[s] + 1, hi[s] + 1):
            if (s, k) not in held:
                # Cannot happen by the argument above. If it does, the stability invariant is broken
                # somewhere, and truncating F here would silently drop messages some member may have
                # delivered: refuse to decide instead.
                raise FinalSetGap(f"message {k} of {members[s]} is in no report, though some reporter "
                                  f"holds its stream up to {hi[s]} and every reporter delivered "
                                  f"{lo[s]}: the final set would have a hole")
    changed = True
    while changed:
        changed = False
        for s in range(n):
            for k in range(lo[s] + 1, hi[s] + 1):
                vt = held[(s, k)].vt
                if any(vt[j] > hi[j] for j in range(n) if j != s):
                    hi[s] = k - 1
                    changed = True
                    break
    todo = [held[(s, k)] for s in range(n) for k in range(lo[s] + 1, hi[s] + 1)]
    seen = [max(r.delivered[s] for r in reports) for s in range(n)]
    index = {m: s for s, m in enumerate(members)}
    if evs:
        todo.sort(key=lambda m: (m.seq > seen[index[m.sender]], m.ts, index[m.sender]))
        order = [m.mid for m in todo]
    else:
        order = _order(todo, members, numbers, seen)
    delivered = sum(m.seq <= seen[index[m.sender]] for m in todo)
    return order, {m.mid: m.raw for m in todo if m.raw is not None}, delivered


def _order(todo: list[Msg], members: Sequence[str], numbers: dict[str, int], seen: list[int]) -> list[str]:
    index = {(members.index(m.sender), m.seq): m for m in todo}
    succs: dict[str, list[str]] = {m.mid: [] for m in todo}
    indegree = dict.fromkeys(succs, 0)

    def edge(a: str, b: str) -> None:
        succs[a].append(b)
        indegree[b] += 1

    for (s, k), m in index.items():
        for j, v in enumerate(m.vt):
            pred = index.get((j, k - 1) if j == s else (j, v))
            if pred is not None:
                edge(pred.mid, m.mid)
    numbered = sorted((numbers[m.mid], m.mid) for m in todo if m.mid in numbers)
    for (_, a), (_, b) in zip(numbered, numbered[1:], strict=False):
        edge(a, b)
    if numbered:
        last = numbered[-1][1]
        for m in todo:
            if m.order >= TOTAL and m.mid not in numbers:
                edge(last, m.mid)

    def key(m: Msg) -> tuple[bool, int, int, int]:
        # what some reporter delivered comes first (a down-closed set: it stays a prefix)
        later = m.seq > seen[members.index(m.sender)]
        num = numbers.get(m.mid)
        return (later, 0, num, 0) if num is not None else (later, 1, members.index(m.sender), m.seq)

    by_id = {m.mid: m for m in todo}
    ready = [(key(m), m.mid) for m in todo if indegree[m.mid] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, mid = heapq.heappop(ready)
        order.append(mid)
        for nxt in succs[mid]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                heapq.heappush(ready, (key(by_id[nxt]), nxt))
    if len(order) != len(todo):
        raise AssertionError("cycle in the final order: numbering was not causal")
    return order

