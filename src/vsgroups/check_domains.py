"""The ``causal-domain`` property of ``vsgroups check``: causal order across the groups of one
causality domain (1991 §4–5, docs/design.md §14).

The per-view ``causal`` check orders the messages of one view by that view's vector clocks. A chain
of messages may also leave a group, pass through other groups and come back (1991 Fig. 4), or reach
a process through two of its groups. This check follows every chain of sends and deliveries in the
groups of one domain, at every process: a message's causal past is what its sender had sent or
delivered in the domain before it — up to the send's ``past`` line when the cast waited for its
domain — and, transitively, the causal past of those messages. A process that delivers a causal,
total or safe m2 must have delivered before it every message of m2's causal past that it delivers
at all.

A membership change ends causal obligations, as in 1994 §3 ("local to a single configuration and
terminated by a membership change"), for the processes it takes out: a delivery in a transitional
configuration, in a view that the process then fails in (it crashes, recovers or is excluded), or
in a view that another member left for a view without it (evs: the process may go on delivering
in its regular configuration before it notices), is not one that a later delivery must wait for;
and a process that leaves a group of the domain, is excluded from one or recovers begins a new
causal history there — what it sent and delivered before does not order what it sends after. So
a process is a trace file cut at each of those lines. Vector clocks count each process's sends in
the domain. A domain whose messages all travel in one group is left to the per-view check.
Cost: O(deliveries × processes that send in the domain).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .check import Epoch, Histories, Incarnation

CAUSAL = 1
SEND, DELIVER = 0, 1
ORDER = 3  # the bits of a delivery's flags that hold its order...
UNOWED = 4  # ...and a delivery no later one must wait for

Report = Callable[..., None]  # (prop, key, message, *evidence)


@dataclass(eq=False, slots=True)
class _Process:
    inc: Incarnation
    events: list[tuple[int, int, int, int]] = field(default_factory=list)  # (line, kind, msg, flags or past)
    col: int = -1  # its column in the vector clocks, if it sends in the domain
    pos: int = 0
    sends: int = 0
    clock: list[int] = field(default_factory=list)
    pasts: list[int] = field(default_factory=list)  # lines whose clock a later send needs
    snaps: dict[int, list[int]] = field(default_factory=dict)


def check_domains(h: Histories, report: Report) -> None:
    groups: dict[str, set[str]] = defaultdict(set)
    for inc in h.incarnations:
        for g, epochs in inc.groups.items():
            for e in epochs:
                groups[e.domain].add(g)
    for domain, names in sorted(groups.items()):
        if len(names) > 1:
            _check(h, domain, report)


def _check(h: Histories, domain: str, report: Report) -> None:
    procs: dict[tuple[str, int], _Process] = {}

    cuts = {inc.ident: _cuts(inc, domain) for inc in h.incarnations}

    def process(inc: Incarnation, line: int) -> _Process:
        key = (inc.ident, bisect_right(cuts[inc.ident], line))
        p = procs.get(key)
        if p is None:
            p = procs[key] = _Process(inc)
        return p

    left_out = _left_out(h)
    ours: set[int] = set()
    for s in h.sends:
        if s is not None and s.epoch is not None and s.epoch.domain == domain:
            ours.add(s.msg)
            p = process(s.inc, s.line)
            p.events.append((s.line, SEND, s.msg, s.past))
            if s.past < s.line:
                p.pasts.append(s.past)
    for inc in h.incarnations:
        for epochs in inc.groups.values():
            for e in epochs:
                if e.domain == domain:
                    flags = _flags(e, left_out)
                    for m, line, order in zip(e.msgs, e.lines, e.orders, strict=True):
                        if m in ours:
                            process(inc, line).events.append((line, DELIVER, m, order | flags))
    senders = [p for p in procs.values() if any(kind == SEND for _, kind, _, _ in p.events)]
    for col, p in enumerate(senders):
        p.col = col
    width = len(senders)
    for p in procs.values():
        p.events.sort()
        p.pasts.sort()
        p.clock = [0] * width
    origin: dict[int, tuple[int, int]] = {}
    clocks = _clocks(h, domain, list(procs.values()), origin, report)
    if clocks is None:
        return
    at = {place: msg for msg, place in origin.items()}
    for p in procs.values():
        _delivery_order(h, domain, p, clocks, origin, at, width, report)


def _cuts(inc: Incarnation, domain: str) -> list[int]:
    """The lines where the process begins a new causal history in ``domain``: it recovers, leaves a
    group of the domain or is excluded from one."""
    ends = [line for epochs in inc.groups.values() for e in epochs if e.domain == domain
            for line in (e.leave_line, e.exclude_line) if line is not None]
    return sorted(inc.recover_lines + ends)


def _left_out(h: Histories) -> set[tuple[str, str, str]]:
    """(group, view, process): a member of the view that another member's next regular view left
    out — a membership change separated them (evs: it may go on delivering the old view's messages
    for a while, in its regular configuration, before it notices)."""
    from .check import _next

    out: set[tuple[str, str, str]] = set()
    for inc in h.incarnations:
        for g, epochs in inc.groups.items():
            for e in epochs:
                after = _next(e)
                while after is not None and not after.regular:
                    after = _next(after)
                if e.regular and after is not None:
                    out.update((g, e.view, m) for m in e.members if m not in after.members)
    return out


def _flags(e: Epoch, left_out: set[tuple[str, str, str]]) -> int:
    from .check import _block, _survival

    owed = e.regular and _survival(_block(e)) is not None and (e.g, e.view, e.inc.ident) not in left_out
    return 0 if owed else UNOWED


def _clocks(h: Histories, domain: str, procs: list[_Process], origin: dict[int, tuple[int, int]],
            report: Report) -> dict[int, list[int]] | None:
    """Each message's vector clock, and in ``origin`` its sender's column and its index among the
    sender's sends; None (reported) if the deliveries form a causal cycle."""
    clocks: dict[int, list[int]] = {}
    progress = True
    while progress:
        progress = False
        for p in procs:
            events, clock = p.events, p.clock
            while p.pos < len(events):
                line, kind, msg, extra = events[p.pos]
                while p.pasts and p.pasts[0] < line:  # the clock as it was at a line a send depends on
                    p.snaps[p.pasts.pop(0)] = clock.copy()
                if kind == SEND:
                    p.sends += 1
                    mine = p.snaps.get(extra, clock).copy()
                    mine[p.col] = clock[p.col] = p.sends
                    clocks[msg] = mine
                    origin[msg] = (p.col, p.sends)
                else:
                    theirs = clocks.get(msg)
                    if theirs is None:
                        break  # its send is not replayed yet
                    p.clock = clock = [a if a >= b else b for a, b in zip(clock, theirs, strict=True)]
                p.pos += 1
                progress = True
    stuck = [p for p in procs if p.pos < len(p.events)]
    if stuck:
        p = stuck[0]
        line, _, msg, _ = p.events[p.pos]
        report("causal-domain", (domain, "cycle"),
               f"deliveries in causality domain {domain} form a causal cycle: {p.inc.ident} delivers "
               f"{h.msg_ids[msg]} before a chain of messages from it reaches the sender",
               p.inc.at(line))
        return None
    return clocks


def _delivery_order(h: Histories, domain: str, p: _Process, clocks: dict[int, list[int]],
                    origin: dict[int, tuple[int, int]], at: dict[tuple[int, int], int], width: int,
                    report: Report) -> None:
    """At p: every message of the domain that causally precedes a causal, total or safe delivery and
    that p delivers at all is delivered before it."""
    sends = h.sends
    later: list[list[int]] = [[] for _ in range(width)]  # per sender, the indices p ever delivers
    deliveries = []
    for line, kind, msg, flags in p.events:
        if kind == DELIVER:
            col, index = origin[msg]
            if not flags & UNOWED:
                later[col].append(index)
            deliveries.append((line, msg, flags))
    for indices in later:
        indices.sort()
    done: list[set[int]] = [set() for _ in range(width)]
    prefix = [0] * width  # per sender, how many of ``later`` are delivered, in index order
    for line, msg, flags in deliveries:
        col, index = origin[msg]
        if flags & ORDER >= CAUSAL:
            clock = clocks[msg]
            for c in range(width):
                k = clock[c] if c != col else index - 1
                pending = later[c]
                if k and prefix[c] < len(pending) and pending[prefix[c]] <= k:
                    missing = at[c, pending[prefix[c]]]
                    before, after = sends[missing], sends[msg]
                    assert before is not None and after is not None
                    report("causal-domain", (p.inc.ident, domain),
                           f"{p.inc.ident} delivers {h.msg_ids[msg]} (group {after.g}) before "
                           f"{h.msg_ids[missing]} (group {before.g}), which precedes it in causality domain "
                           f"{domain}", p.inc.at(line), before.inc.at(before.line))
                    break
        if flags & UNOWED:
            continue
        done[col].add(index)
        pending = later[col]
        while prefix[col] < len(pending) and pending[prefix[col]] in done[col]:
            prefix[col] += 1
