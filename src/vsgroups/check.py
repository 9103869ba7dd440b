"""History checker: did a run obey virtual synchrony?

Every process incarnation writes a trace (``docs/trace.md``): the views it installed and the messages
it sent and delivered, in the order it experienced them. This module reads the traces of one run and
verifies their contract (docs/design.md §10) against them. It is the oracle of the simulator, of the
real-process tests and of the partition tests: a run is correct when no property is violated, whatever
faults it suffered. A trace is a *history*, not a log to trust: nothing is ordered across processes
(``t`` is ignored), only each process's own sequence of events and the ids that link them.

Terms. A process is an incarnation ``name#inc`` (one file). A *configuration* is one view as installed
by one process. In EVS a regular view V may be followed at p by a transitional view T whose ``prev``
is V; V and T form p's *block*, and messages of V may be delivered in T (1994 §2). p *survives* a
block if it then installs another view of the group, leaves the group or stops cleanly; otherwise it
*crashed* in it (a trace without ``stop`` ended in a crash). An ``exclude`` line is a failure in the
identity's last view of that group alone: the process goes on in its other groups and joins that
one again under a fresh id, in a file of its own. A process may also fail and recover with
its identifier and stable storage (1994 §2): its trace goes on after a ``recover`` line, which is a
failure in every configuration it was in, so it crashed in those blocks even though it installs views
later; its next view of a group succeeds none (``prev`` null) and is the configuration {p}. A message's
*sending view* is the ``view`` of its ``send``. Each violation carries the name of the property it breaks:

``trace``           there are traces, one file per incarnation; every line is a well-formed event of that
                    incarnation, ``recover`` comes after ``start``, nothing follows ``stop`` and no view
                    of a group follows the ``exclude`` of that group.
``view-agreement``  the processes that install a view agree on its members, kind and primary flag; each
                    of them is a member, and installs it once.
``primary-order``   the regular primary views of a group form one sequence (1987b §4.2, docs/design.md §5,
                    §6.5): the processes install them in one order, each has at most one direct primary
                    successor (a primary view directly succeeds, at each process installing it, the
                    last primary view that process installed, through any non-primary configurations,
                    and the primary its ``follows`` names; successors that are not ordered are a split
                    brain), only one begins a lineage (besides those a ``refound`` begins: the
                    group founded again after a total failure), and consecutive ones share a member.
``integrity``       each delivery is of a message some trace sends, with the sender, group and order of
                    that send, at most once per process; a sender sends before it delivers its own message
                    and no delivery precedes its send through a chain of causality.
``sending-view``    a message is delivered in its sending view or in the transitional view that follows
                    it, and ``send`` / ``deliver`` name the view the process has installed.
``same-set``        processes that install a configuration and then the same next one delivered the same
                    messages in it (1987a §2, EVS Spec. 4). A transitional configuration counts as a
                    configuration, so processes passing V→T→V' agree on V and on T separately.
``self-delivery``   a sender that survives its sending view delivered its message (EVS Spec. 3).
``fifo``            a process that delivers m2 delivered every earlier message of m2's sender in m2's
                    sending view before it (every ordering is at least fifo).
``causal``          a process that delivers a causal, total or safe m2 delivered its causal past in the
                    sending view before it: vector clocks built from the senders' own histories.
``causal-domain``   a process that delivers a causal, total or safe m2 delivered before it every message of
                    m2's causality domain that precedes it through any chain of sends and deliveries in
                    the domain's groups, at any process, and that it delivers at all (1991 §4, Fig. 4;
                    ``check_domains``).
``total``           total and safe messages of a view are delivered in one order by all processes (a
                    topological sort of every process's delivery sequence); a process that crashed in
                    the view is bound only for its safe messages (1987b §3.2).
``safe``            a safe message delivered in a configuration is delivered by every process of that
                    configuration that survives it (EVS Spec. 7.1); a cycle among safe messages alone
                    is reported as ``safe`` too.
``model``           (``--model``) vs: every view is a regular primary view — a process outside the primary
                    component installs no view and delivers nothing (1994 §5). evs: a process passes from
                    one regular configuration to the next through a transitional one that follows it and
                    holds only members of it, the process among them (1994 §2, Spec. 2); one that
                    recovers passes to the regular configuration {p}.
``liveness``        (``--live``, after faults stop) per group, the latest identities that stopped in it
                    (neither left nor failed in their last view of it) ended in one view whose members are
                    exactly them, having delivered every message any of them sent in it.

Cost: one pass over the events; the causal check is O(deliveries × senders of the view), the total and
primary checks a topological sort of the delivery (view) sequences. Repeats of one fault (one process,
one view, one property) are folded into one report so that a broken run stays readable.
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .check_domains import check_domains

ORDERS = ("fifo", "causal", "total", "safe")
FIFO, CAUSAL, TOTAL, SAFE = range(4)
_ORDER_CODE = {name: code for code, name in enumerate(ORDERS)}

PROPERTIES = (
    "trace", "view-agreement", "primary-order", "integrity", "sending-view", "same-set", "self-delivery",
    "fifo", "causal", "causal-domain", "total", "safe", "model", "liveness",
)
MODELS = ("vs", "evs")

_LISTED = 5  # message ids named in one report
DEFAULT_DOMAIN = "default"


@dataclass(frozen=True)
class Violation:
    """A property the history breaks; ``evidence`` points at trace lines as ``file:line``."""

    prop: str
    message: str
    evidence: tuple[str, ...]


@dataclass(eq=False, slots=True)
class Incarnation:
    ident: str
    name: str
    number: int
    file: str
    groups: dict[str, list[Epoch]] = field(default_factory=dict)
    stop_line: int | None = None
    deliveries: int = 0
    recover_lines: list[int] = field(default_factory=list)

    def at(self, line: int) -> str:
        return f"{self.file}:{line}"


@dataclass(eq=False, slots=True)
class Epoch:
    """One view as installed by one incarnation, and what it delivered while the view was current."""

    inc: Incarnation
    g: str
    view: str
    pos: int  # index among the incarnation's views of g
    line: int
    members: tuple[str, ...]
    regular: bool
    primary: bool
    pred: str | None  # the view this one succeeds at this incarnation
    follows: str | None  # evs, a primary view: the primary view it was formed to succeed
    domain: str  # the causality domain of g at this process
    msgs: array[int] = field(default_factory=lambda: array("q"))
    lines: array[int] = field(default_factory=lambda: array("q"))
    orders: bytearray = field(default_factory=bytearray)
    leave_line: int | None = None
    recover_line: int | None = None  # the process failed in this view: its ``recover`` line
    exclude_line: int | None = None  # the group went on without the process: its ``exclude`` line
    refounded: bool = False  # a ``refound`` line precedes it: it begins the group anew

    @property
    def closed(self) -> bool:
        """No view of the group follows this one at the process without a gap: it left, or it failed."""
        return self.leave_line is not None or self.recover_line is not None or self.exclude_line is not None


@dataclass(eq=False, slots=True)
class Send:
    msg: int
    inc: Incarnation
    g: str
    view: str
    order: int
    n: int
    line: int
    epoch: Epoch | None  # the sender's current view of g; None if it was not a member (a client)
    dpos: int  # deliveries the sender had made in ``epoch`` before this send
    past: int  # its causal past in its domain is the sender's lines up to this one (``past``, or the send)


@dataclass
class Histories:
    """The traces of one run, linked by view and message ids."""

    incarnations: list[Incarnation]
    msg_ids: list[str]  # message number -> id
    sends: list[Send | None]  # message number -> its send, None if no trace sends it
    problems: list[Violation]  # what single lines of one trace already show

    @property
    def deliveries(self) -> int:
        return sum(inc.deliveries for inc in self.incarnations)

    @property
    def views(self) -> int:
        return len({(e.g, e.view) for inc in self.incarnations for es in inc.groups.values() for e in es})


class _Findings:
    """Violations found so far; repeats of one fault (same prop and key) fold into the first report."""

    def __init__(self) -> None:
        self._first: dict[tuple[str, ...], Violation] = {}
        self._repeats: Counter[tuple[str, ...]] = Counter()

    def add(self, prop: str, key: tuple[str, ...], message: str, *evidence: str) -> None:
        full = (prop, *key)
        if full in self._first:
            self._repeats[full] += 1
        else:
            self._first[full] = Violation(prop, message, evidence)

    def violations(self) -> list[Violation]:
        return [
            v if not self._repeats[key] else Violation(v.prop, f"{v.message} (and {self._repeats[key]} more)",
                                                        v.evidence)
            for key, v in self._first.items()
        ]


def _names(ids: Iterable[str]) -> str:
    listed = sorted(ids)
    more = f" and {len(listed) - _LISTED} more" if len(listed) > _LISTED else ""
    return ", ".join(listed[:_LISTED]) + more


def _parse_msg(msg: str) -> tuple[str, int] | None:
    prefix, colon, n = msg.rpartition(":")
    if not colon or not prefix or not (n.isascii() and n.isdigit()):
        return None
    return prefix, int(n)


def _order(ev: dict[str, Any]) -> int | None:
    order = ev.get("order")
    return _ORDER_CODE.get(order) if type(order) is str else None


class _Reader:
    """Reads trace files into one Histories, noting what single lines already show to be wrong."""

    def __init__(self) -> None:
        self.incarnations: dict[str, Incarnation] = {}
        self.msg_index: dict[str, int] = {}
        self.msg_ids: list[str] = []
        self.sends: list[Send | None] = []
        self.found = _Findings()

    def message(self, msg: str) -> int:
        number = self.msg_index.get(msg)
        if number is None:
            number = self.msg_index[msg] = len(self.msg_ids)
            self.msg_ids.append(msg)
            self.sends.append(None)
        return number

    def malformed(self, file: str, line: int, problem: str) -> None:
        self.found.add("trace", (file, "malformed"), f"{file}:{line}: {problem}", f"{file}:{line}")

    def read(self, path: Path) -> None:
        decode = json.JSONDecoder().decode
        trace: _TraceFile | None = None
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line, text in enumerate(lines, 1):
                try:
                    ev = decode(text)
                except ValueError as err:
                    if text.strip():
                        self.malformed(path.name, line, f"not JSON ({err})")
                    continue
                if type(ev) is not dict or type(ev.get("ev")) is not str or type(ev.get("p")) is not str \
                        or type(ev.get("inc")) is not int:
                    self.malformed(path.name, line, "not an event: needs strings ev and p and an integer inc")
                    continue
                if trace is None:
                    ident = f"{ev['p']}#{ev['inc']}"
                    other = self.incarnations.get(ident)
                    if other is not None:
                        self.found.add("trace", (path.name, "twice"),
                                       f"{path.name} is a second trace of {ident} (ignored)",
                                       f"{path.name}:{line}", other.file)
                        return
                    inc = self.incarnations[ident] = Incarnation(ident, ev["p"], ev["inc"], path.name)
                    trace = _TraceFile(self, inc)
                problem = trace.event(ev, line)
                if problem is not None:
                    self.malformed(path.name, line, problem)

    def histories(self) -> Histories:
        return Histories(list(self.incarnations.values()), self.msg_ids, self.sends, self.found.violations())


class _TraceFile:
    """Replays one incarnation's events, so each delivery and send is tied to the view then installed.

    Each handler validates the fields it uses and returns what is wrong with a malformed event.
    """

    def __init__(self, reader: _Reader, inc: Incarnation) -> None:
        self.reader = reader
        self.found = reader.found
        self.inc = inc
        self.current: dict[str, Epoch | None] = {}
        self.last_view: dict[str, str | None] = {}  # to infer prev when a view event has none
        self.started = False
        self.sent: set[int] = set()  # ids and deliveries survive a recovery: stable storage
        self.excluded: set[str] = set()  # groups this identity was excluded from: it is over in them
        self.refound: set[str] = set()  # groups whose next view it installs founds them again
        self.delivered: set[int] = set()

    def event(self, ev: dict[str, Any], line: int) -> str | None:
        inc, kind = self.inc, ev["ev"]
        if ev["p"] != inc.name or ev["inc"] != inc.number:
            return f"event of {ev['p']}#{ev['inc']} in the trace of {inc.ident}"
        if inc.stop_line is not None:
            return f"event after stop (line {inc.stop_line})"
        if kind == "deliver":
            return self.deliver(ev, line)
        if kind == "send":
            return self.send(ev, line)
        if kind == "view":
            return self.view(ev, line)
        if kind in ("leave", "exclude"):  # the membership of g ends: left, or failed in its last view
            g = ev.get("g")
            if type(g) is not str:
                return f"{kind} needs a string field g"
            ended = self.current.get(g)
            if ended is not None and kind == "leave":
                ended.leave_line = line
            elif ended is not None:
                ended.exclude_line = line
            if kind == "exclude":
                self.excluded.add(g)
            self.current[g] = self.last_view[g] = None
        elif kind == "refound":
            g = ev.get("g")
            if type(g) is not str:
                return "refound needs a string field g"
            self.refound.add(g)
        elif kind == "start":
            self.started = True
        elif kind == "recover":
            if not self.started:
                return "recover before start"
            inc.recover_lines.append(line)
            for epoch in self.current.values():
                if epoch is not None:
                    epoch.recover_line = line
            self.current.clear()
            self.last_view.clear()
        elif kind == "stop":
            inc.stop_line = line
        return None

    def view(self, ev: dict[str, Any], line: int) -> str | None:
        g, view, members, kind, primary = ev.get("g"), ev.get("view"), ev.get("members"), ev.get("kind"), \
            ev.get("primary")
        if type(g) is not str or type(view) is not str or type(primary) is not bool:
            return "view needs string fields g and view and a boolean primary"
        if type(members) is not list or not all(type(m) is str for m in members):
            return "view members must be a list of strings"
        if kind not in ("regular", "transitional"):
            return f"view kind {kind!r} is neither regular nor transitional"
        if "prev" in ev and type(ev["prev"]) not in (str, type(None)):
            return "view prev must be a string or null"
        if type(ev.get("follows")) not in (str, type(None)):
            return "view follows must be a string"
        domain = ev.get("domain", DEFAULT_DOMAIN)
        if type(domain) is not str:
            return "view domain must be a string"
        if g in self.excluded:
            return f"view of group {g} after this identity was excluded from it (a rejoin takes a new id)"
        epochs = self.inc.groups.setdefault(g, [])
        pred = ev["prev"] if "prev" in ev else self.last_view.get(g)
        epoch = Epoch(self.inc, g, view, len(epochs), line, tuple(sorted(members)), kind == "regular",
                      primary, pred, ev.get("follows"), domain, refounded=g in self.refound)
        self.refound.discard(g)
        epochs.append(epoch)
        self.current[g] = epoch
        self.last_view[g] = view
        return None

    def send(self, ev: dict[str, Any], line: int) -> str | None:
        inc, g, msg, view, order = self.inc, ev.get("g"), ev.get("msg"), ev.get("view"), _order(ev)
        if type(g) is not str or type(msg) is not str or type(view) is not str or order is None:
            return "send needs string fields g, msg and view and an order among " + "/".join(ORDERS)
        parsed = _parse_msg(msg)
        if parsed is None:
            return f"message id {msg!r} is not name#inc:n"
        past = ev.get("past", line)
        if type(past) is not int or not 0 < past <= line:
            return "send past must be the number of an earlier line"
        prefix, n = parsed
        number = self.reader.message(msg)
        if prefix != inc.ident:
            self.found.add("integrity", (inc.ident, "foreign id"),
                           f"{inc.ident} sends {msg}, an id that belongs to {prefix}", inc.at(line))
        earlier = self.reader.sends[number]
        if earlier is not None:
            self.found.add("integrity", (msg, "sent twice"), f"{msg} is sent twice",
                           earlier.inc.at(earlier.line), inc.at(line))
            return None
        epoch = self.current.get(g)
        if epoch is not None and epoch.view != view:
            self.found.add("sending-view", (inc.ident, g, epoch.view, "send"),
                           f"{inc.ident} sends {msg} stamped with view {view} while its view of group {g} is "
                           f"{epoch.view}", inc.at(line), inc.at(epoch.line))
        self.reader.sends[number] = Send(number, inc, g, view, order, n, line, epoch,
                                         len(epoch.msgs) if epoch is not None else 0, past)
        self.sent.add(number)
        return None

    def deliver(self, ev: dict[str, Any], line: int) -> str | None:
        inc, g, msg, sender, view, order = \
            self.inc, ev.get("g"), ev.get("msg"), ev.get("sender"), ev.get("view"), _order(ev)
        if type(g) is not str or type(msg) is not str or type(sender) is not str or type(view) is not str \
                or order is None:
            return "deliver needs string fields g, msg, sender and view and an order among " + \
                "/".join(ORDERS)
        prefix = msg.rpartition(":")[0]
        number = self.reader.msg_index.get(msg)
        if number is None:
            number = self.reader.message(msg)
        if prefix != sender:
            self.found.add("integrity", (inc.ident, "sender"),
                           f"{inc.ident} delivers {msg} with sender {sender}, but the id says {prefix}",
                           inc.at(line))
        if number in self.delivered:
            self.found.add("integrity", (inc.ident, "duplicate"), f"{inc.ident} delivers {msg} twice",
                           inc.at(line))
            return None
        self.delivered.add(number)
        if prefix == inc.ident and number not in self.sent:
            self.found.add("integrity", (inc.ident, "before send"),
                           f"{inc.ident} delivers its own message {msg} before sending it", inc.at(line))
        epoch = self.current.get(g)
        if epoch is None:
            self.found.add("sending-view", (inc.ident, g, "not a member"),
                           f"{inc.ident} delivers {msg} in group {g} while it has no view of {g}",
                           inc.at(line))
            return None
        if epoch.view != view:
            self.found.add("sending-view", (inc.ident, g, epoch.view, "deliver"),
                           f"{inc.ident} delivers {msg} stamped with view {view} while its view of group "
                           f"{g} is {epoch.view}", inc.at(line), inc.at(epoch.line))
        epoch.msgs.append(number)
        epoch.lines.append(line)
        epoch.orders.append(order)
        inc.deliveries += 1
        return None


def load_traces(path: str | Path) -> Histories:
    """Read every ``*.jsonl`` trace in directory ``path``; malformed lines become ``trace`` violations."""
    directory = Path(path)
    if not directory.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a trace directory", str(directory))
    reader = _Reader()
    files = sorted(directory.glob("*.jsonl"))
    if not files:
        reader.found.add("trace", (str(directory),), f"no *.jsonl traces in {directory}")
    for file in files:
        reader.read(file)
    return reader.histories()


# -----------------------------------------------------------------------------------------------------------
# Configurations and blocks


def _block(e: Epoch) -> list[Epoch]:
    """The regular configuration e belongs to, with the transitional one that follows it at e's process."""
    if e.regular:
        after = _next(e)
        if after is not None and not after.regular and after.pred == e.view:
            return [e, after]
        return [e]
    before = e.inc.groups[e.g][e.pos - 1] if e.pos > 0 else None
    if before is not None and before.regular and _next(before) is e and e.pred == before.view:
        return [before, e]
    return [e]


def _survival(block: list[Epoch]) -> int | None:
    """The line of the next view, ``leave`` or ``stop`` after the block; None if the process crashed in it
    (its trace ends in the block, or it recovers from a failure there)."""
    last = block[-1]
    if last.leave_line is not None:
        return last.leave_line
    if last.recover_line is not None or last.exclude_line is not None:
        return None
    after = _next(last)
    return after.line if after is not None else last.inc.stop_line


def _next(e: Epoch) -> Epoch | None:
    """The configuration installed right after e at its process (not after leaving the group or failing)."""
    epochs = e.inc.groups[e.g]
    return epochs[e.pos + 1] if not e.closed and e.pos + 1 < len(epochs) else None


def _delivered(block: list[Epoch]) -> set[int]:
    return set().union(*(e.msgs for e in block))


_N = TypeVar("_N", int, str)


def _reachability(edges: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    """For each node, the nodes reachable from it."""
    succ: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        succ[a].add(b)
    reach: dict[str, set[str]] = defaultdict(set)
    for start in list(succ):
        stack = list(succ[start])
        while stack:
            node = stack.pop()
            if node not in reach[start]:
                reach[start].add(node)
                stack.extend(succ.get(node, ()))
    return reach


def _find_cycle(edges: Iterable[tuple[_N, _N]]) -> list[_N] | None:
    """A cycle [a, b, ..., z] (a→b→...→z→a) of the directed graph, or None if it is acyclic."""
    succ: dict[_N, list[_N]] = defaultdict(list)
    indeg: dict[_N, int] = {}
    for a, b in edges:
        succ[a].append(b)
        indeg.setdefault(a, 0)
        indeg[b] = indeg.get(b, 0) + 1
    ready = [n for n, d in indeg.items() if d == 0]
    while ready:
        for b in succ.get(ready.pop(), ()):
            indeg[b] -= 1
            if indeg[b] == 0:
                ready.append(b)
    left = {n for n, d in indeg.items() if d > 0}
    if not left:
        return None
    # Every node left has a predecessor left: walk backwards until a node repeats.
    pred: dict[_N, _N] = {}
    for a in left:
        for b in succ.get(a, ()):
            if b in left:
                pred.setdefault(b, a)
    path: list[_N] = []
    index: dict[_N, int] = {}
    n = min(left)
    while n not in index:
        index[n] = len(path)
        path.append(n)
        n = pred[n]
    return path[index[n]:][::-1]


class _ViewMessages:
    """The messages sent in one view: per sender in sending order, and where each stands."""

    def __init__(self, sent: list[Send]) -> None:
        by_sender: dict[str, list[Send]] = defaultdict(list)
        for s in sorted(sent, key=lambda s: (s.inc.ident, s.n)):
            by_sender[s.inc.ident].append(s)
        self.by_sender = by_sender
        self.columns = list(by_sender.values())
        self.rank = {s.msg: (j, i) for j, col in enumerate(self.columns) for i, s in enumerate(col)}

    def send(self, msg: int) -> Send:
        j, i = self.rank[msg]
        return self.columns[j][i]


# -----------------------------------------------------------------------------------------------------------
# The checks


class _Checker:
    """Runs every check over one Histories; what is found accumulates in ``found``."""

    def __init__(self, histories: Histories) -> None:
        self.h = histories
        self.found = _Findings()
        self.views: dict[str, dict[str, list[Epoch]]] = defaultdict(lambda: defaultdict(list))
        for inc in histories.incarnations:
            for g, epochs in inc.groups.items():
                for e in epochs:
                    self.views[g][e.view].append(e)
        self.sent: dict[tuple[str, str], list[Send]] = defaultdict(list)
        for s in histories.sends:
            if s is not None:
                self.sent[s.g, s.view].append(s)

    def name(self, msg: int) -> str:
        return self.h.msg_ids[msg]

    def names(self, msgs: Iterable[int]) -> str:
        return _names(self.name(m) for m in msgs)

    def run(self, live: bool, model: str | None = None) -> list[Violation]:
        if model == "vs":
            self.primary_only()
        elif model == "evs":
            self.evs_structure()
        for g, views in self.views.items():
            for view, installs in views.items():
                self.view_agreement(g, view, installs)
            self.primary_order(g, views)
        self.deliveries()
        for g, views in self.views.items():
            for view, installs in views.items():
                self.view_history(g, view, installs)
        check_domains(self.h, self.found.add)
        if live:
            self.liveness()
        found = self.h.problems + self.found.violations()
        return sorted(found, key=lambda v: PROPERTIES.index(v.prop))

    def primary_only(self) -> None:
        for g, views in self.views.items():
            for view, installs in views.items():
                for e in installs:
                    if not (e.regular and e.primary):
                        what = "non-primary" if e.regular else "transitional"
                        self.found.add("model", (g, view),
                                       f"{e.inc.ident} installs {what} view {view} of group {g}: in vs mode "
                                       f"only primary views exist", e.inc.at(e.line))
                        break

    def evs_structure(self) -> None:
        for inc in self.h.incarnations:
            for g, epochs in inc.groups.items():
                for prev, e in zip(epochs, epochs[1:], strict=False):
                    if prev.recover_line is not None:
                        # 1994 §2: a process recovers with a configuration of its own, no transitional one
                        if not e.regular or e.members != (inc.ident,):
                            self.found.add("model", (g, e.view, inc.ident),
                                           f"{inc.ident} recovers into view {e.view} of group {g}, which is "
                                           f"not the regular configuration of itself alone", inc.at(e.line))
                    elif e.regular and prev.regular and e.pred is not None and e.pred == prev.view:
                        self.found.add("model", (g, e.view, inc.ident),
                                       f"{inc.ident} passes from regular view {prev.view} to {e.view} of "
                                       f"group {g} without a transitional configuration", inc.at(e.line))
                    elif not e.regular and (not prev.regular or e.pred != prev.view
                                            or not set(e.members) <= set(prev.members)):
                        self.found.add("model", (g, e.view, inc.ident),
                                       f"transitional view {e.view} of group {g} at {inc.ident} does not "
                                       f"follow its regular configuration {e.pred} or holds others than its "
                                       f"members", inc.at(e.line))

    def view_agreement(self, g: str, view: str, installs: list[Epoch]) -> None:
        seen: dict[tuple[tuple[str, ...], bool, bool], list[Epoch]] = defaultdict(list)
        for e in installs:
            seen[e.members, e.regular, e.primary].append(e)
            if e.inc.ident not in e.members:
                self.found.add("view-agreement", (g, view, e.inc.ident, "member"),
                               f"{e.inc.ident} installs view {view} of group {g}, which does not list it",
                               e.inc.at(e.line))
        if len(seen) > 1:
            versions = "; ".join(
                f"{_names(e.inc.ident for e in es)}: members [{', '.join(m)}], "
                f"{'regular' if regular else 'transitional'}, {'primary' if primary else 'non-primary'}"
                for (m, regular, primary), es in seen.items()
            )
            self.found.add("view-agreement", (g, view),
                           f"processes disagree on view {view} of group {g}: {versions}",
                           *(es[0].inc.at(es[0].line) for es in seen.values()))
        for ident, count in Counter(e.inc.ident for e in installs).items():
            if count > 1:
                self.found.add("view-agreement", (g, view, ident, "twice"),
                               f"{ident} installs view {view} of group {g} {count} times",
                               *(e.inc.at(e.line) for e in installs if e.inc.ident == ident))

    def primary_order(self, g: str, views: dict[str, list[Epoch]]) -> None:
        primaries = {v: es[0] for v, es in views.items() if es[0].regular and es[0].primary}
        if not primaries:
            return
        order: dict[tuple[str, str], Epoch] = {}  # (a, b): some process installs a, then b (as evidence)
        direct: dict[str, dict[str, Epoch]] = defaultdict(dict)  # a -> {b: evidence} for b directly after a
        for inc in self.h.incarnations:
            # A primary view succeeds, at each process that installs it, the last primary view the
            # process installed before, whatever non-primary configurations came in between: that
            # is what the process knew of the primary component (1994 §2.2; dynamic linear voting
            # forms a primary out of non-primary configurations that reunite the last one).
            # A view formed to succeed a given primary (``follows``: it accounted for that primary,
            # perhaps installed by none of its own members) succeeds that one too.
            previous: Epoch | None = None
            for e in inc.groups.get(g, []):
                if e.view not in primaries:
                    continue
                if previous is not None and previous.view != e.view:
                    order.setdefault((previous.view, e.view), e)
                    direct[previous.view].setdefault(e.view, e)
                if e.follows in primaries and e.follows != e.view:
                    order.setdefault((e.follows, e.view), e)
                    direct[e.follows].setdefault(e.view, e)
                previous = e
        edges = {**order, **{(a, b): e for a, successors in direct.items() for b, e in successors.items()}}
        reach = _reachability(edges)
        for a, successors in direct.items():
            # Several successors are legal when they are themselves ordered: in EVS a process may be
            # away from the primary component for a while and come back to a later primary view.
            rivals = [b for b in successors
                      if any(c != b and b not in reach[c] and c not in reach[b] for c in successors)]
            if rivals:
                successors = {b: successors[b] for b in rivals}
                self.found.add("primary-order", (g, a, "split"),
                               f"split brain: primary views {_names(successors)} of group {g} all directly "
                               f"succeed primary view {a}", *(e.inc.at(e.line) for e in successors.values()))
            for b, e in direct[a].items():
                if not set(primaries[a].members) & set(primaries[b].members):
                    self.found.add("primary-order", (g, a, b, "overlap"),
                                   f"consecutive primary views {a} and {b} of group {g} share no member",
                                   e.inc.at(e.line))
        followers = {b for successors in direct.values() for b in successors}
        roots = [v for v in primaries if v not in followers]
        # a group founded again after a total failure (``refound``: the recovery manager) begins a
        # lineage of its own
        if len([r for r in roots if not primaries[r].refounded]) > 1:
            self.found.add("primary-order", (g, "roots"),
                           f"split brain: primary views {_names(roots)} of group {g} each begin a lineage "
                           f"(none succeeds a primary view)",
                           *(primaries[v].inc.at(primaries[v].line) for v in roots))
        cycle = _find_cycle(edges)
        if cycle is not None:
            steps = list(zip(cycle, cycle[1:] + cycle[:1], strict=True))
            said = "; ".join(f"{edges[a, b].inc.ident} installs {a} before {b}" for a, b in steps)
            self.found.add("primary-order", (g, "cycle"),
                           f"primary views of group {g} are installed in conflicting orders: {said}",
                           *(edges[step].inc.at(edges[step].line) for step in steps))

    def deliveries(self) -> None:
        """Each delivery against its send: existence, group and order, and the view it is made in."""
        for inc in self.h.incarnations:
            for epochs in inc.groups.values():
                for e in epochs:
                    for m, line, order in zip(e.msgs, e.lines, e.orders, strict=True):
                        s = self.h.sends[m]
                        if s is None or s.g != e.g or s.order != order or (
                                s.view != e.view and (e.regular or e.pred != s.view)):
                            self.delivery(e, m, line, order, s)

    def delivery(self, e: Epoch, m: int, line: int, order: int, s: Send | None) -> None:
        p, g, where, name = e.inc.ident, e.g, e.inc.at(line), self.name(m)
        if s is None:
            self.found.add("integrity", (p, g, e.view, "unsent"),
                           f"{p} delivers {name} in view {e.view} of group {g}, but no trace sends it", where)
        elif s.g != g:
            self.found.add("integrity", (p, g, "group"),
                           f"{p} delivers {name} in group {g}, but it was sent to group {s.g}",
                           where, s.inc.at(s.line))
        else:
            if order != s.order:
                self.found.add("integrity", (p, g, "order"),
                               f"{p} delivers {name} as {ORDERS[order]}, but it was sent as "
                               f"{ORDERS[s.order]}", where, s.inc.at(s.line))
            if s.view != e.view and (e.regular or e.pred != s.view):
                self.found.add("sending-view", (p, g, e.view, "view"),
                               f"{p} delivers {name} in view {e.view} of group {g}, but it was sent in view "
                               f"{s.view}", where, s.inc.at(s.line))

    def view_history(self, g: str, w: str, installs: list[Epoch]) -> None:
        """Everything about the messages sent in, and the deliveries made in, configuration w."""
        vm = _ViewMessages(self.sent.get((g, w), []))
        clocks = self.vector_clocks(g, w, vm)
        edges: dict[tuple[int, int], tuple[Epoch, int]] = {}
        for e in installs:
            block = _block(e)
            self.delivery_order(e, block[block.index(e):], vm, clocks, _survival(block) is not None, edges)
        cycle = _find_cycle(edges)
        if cycle is not None:
            steps = list(zip(cycle, cycle[1:] + cycle[:1], strict=True))
            prop = "safe" if all(vm.send(m).order == SAFE for m in cycle) else "total"
            said = "; ".join(f"{edges[a, b][0].inc.ident} delivers {self.name(a)} before {self.name(b)}"
                             for a, b in steps)
            self.found.add(prop, (g, w),
                           f"messages of view {w} of group {g} are not delivered in one total order: {said}",
                           *(edges[step][0].inc.at(edges[step][1]) for step in steps))
        self.delivery_sets(g, w, installs, vm)

    def vector_clocks(self, g: str, w: str, vm: _ViewMessages) -> dict[int, tuple[int, ...]]:
        """Each message's causal past within w, as a count of messages per sender (its vector timestamp).

        A sender's clock takes in the clocks of the messages of w it delivered before each send, so the
        senders advance together: one waits while a message it delivered is not yet stamped by its own
        sender. If all wait, the history has a delivery that precedes its send through a causal cycle.
        """
        columns = vm.columns
        k = len(columns)
        clocks: dict[int, tuple[int, ...]] = {}
        stamped = [0] * k  # sends stamped, per sender
        running = [[0] * k for _ in range(k)]
        merged = [0] * k  # deliveries of the sender's configuration taken into its clock
        blocked: dict[int, tuple[Epoch, int]] = {}
        waiting = set(range(k))
        while waiting:
            progress = False
            for j in sorted(waiting):
                col, clock = columns[j], running[j]
                while stamped[j] < len(col):
                    s = col[stamped[j]]
                    if s.epoch is not None and s.epoch.view == w:
                        epoch, d = s.epoch, merged[j]
                        while d < s.dpos:
                            m = epoch.msgs[d]
                            if m in vm.rank:
                                past = clocks.get(m)
                                if past is not None:
                                    clock = [a if a >= b else b for a, b in zip(clock, past, strict=True)]
                                elif vm.rank[m][0] != j:  # own messages delivered before sent: integrity
                                    break
                            d += 1
                        merged[j] = d
                        if d < s.dpos:
                            blocked[j] = (epoch, d)
                            break
                    stamped[j] += 1
                    clock[j] = stamped[j]
                    clocks[s.msg] = tuple(clock)
                    progress = True
                running[j] = clock
                if stamped[j] == len(col):
                    waiting.discard(j)
            if not progress:
                j = min(waiting)
                epoch, d = blocked[j]
                sender = columns[j][stamped[j]]
                self.found.add("integrity", (g, w, "cycle"),
                               f"deliveries in view {w} of group {g} form a causal cycle (a message is "
                               f"delivered before it is sent): {epoch.inc.ident} delivers "
                               f"{self.name(epoch.msgs[d])} before sending {self.name(sender.msg)}",
                               epoch.inc.at(epoch.lines[d]), sender.inc.at(sender.line))
                merged[j] = d + 1
        return clocks

    def delivery_order(self, e: Epoch, tail: list[Epoch], vm: _ViewMessages,
                       clocks: dict[int, tuple[int, ...]], survived: bool,
                       edges: dict[tuple[int, int], tuple[Epoch, int]]) -> None:
        """fifo and causal order at one process; its total/safe delivery sequence goes into ``edges``."""
        columns = vm.columns
        k = len(columns)
        done = [0] * k  # per sender: how many of its first messages of w the process has delivered
        got: set[int] = set()
        last: int | None = None
        p, g, w = e.inc.ident, e.g, e.view
        for epoch in tail:
            for m, line in zip(epoch.msgs, epoch.lines, strict=True):
                r = vm.rank.get(m)
                if r is None:
                    continue
                j, i = r
                col = columns[j]
                s = col[i]
                if done[j] < i:
                    missing = [x for x in col[done[j]:i] if x.msg not in got]
                    self.found.add("fifo", (p, g, w),
                                   f"{p} delivers {self.name(m)} (view {w} of group {g}) before "
                                   f"{self.names(x.msg for x in missing)}, sent before it by {s.inc.ident}",
                                   epoch.inc.at(line), missing[0].inc.at(missing[0].line))
                if s.order >= CAUSAL:
                    clock = clocks[m]
                    for jj in range(k):
                        if jj != j and done[jj] < clock[jj]:
                            before = columns[jj][done[jj]]
                            self.found.add("causal", (p, g, w),
                                           f"{p} delivers {self.name(m)} (view {w} of group {g}) before its "
                                           f"causal predecessor {self.name(before.msg)}",
                                           epoch.inc.at(line), before.inc.at(before.line))
                            break
                got.add(m)
                while done[j] < len(col) and col[done[j]].msg in got:
                    done[j] += 1
                if s.order == SAFE or (s.order == TOTAL and survived):
                    if last is not None:
                        edges.setdefault((last, m), (epoch, line))
                    last = m

    def delivery_sets(self, g: str, w: str, installs: list[Epoch], vm: _ViewMessages) -> None:
        """same-set, self-delivery and safe delivery for configuration w."""
        safe: dict[int, tuple[Epoch, int]] = {}  # safe messages delivered in w -> a delivery
        for e in installs:
            for m, line in zip(e.msgs, e.lines, strict=True):
                s = self.h.sends[m]
                if s is not None and s.order == SAFE:
                    safe.setdefault(m, (e, line))
        passing: dict[str, list[tuple[Epoch, Epoch, frozenset[int]]]] = defaultdict(list)
        for e in installs:
            p = e.inc.ident
            block = _block(e)
            end = _survival(block)
            if end is not None:
                have = _delivered(block)
                lost = [m for m in safe if m not in have]
                if lost:
                    by, line = safe[lost[0]]
                    self.found.add("safe", (p, g, w),
                                   f"{p} survives view {w} of group {g} without delivering safe "
                                   f"{self.names(lost)}, delivered there by {by.inc.ident}",
                                   by.inc.at(line), e.inc.at(end))
                own = [s for s in vm.by_sender.get(p, []) if s.epoch is e and s.msg not in have]
                if own:
                    self.found.add("self-delivery", (p, g, w),
                                   f"{p} sent {self.names(s.msg for s in own)} in view {w} of group {g} and "
                                   f"survives it without delivering {'them' if len(own) > 1 else 'it'}",
                                   e.inc.at(own[0].line), e.inc.at(end))
            after = _next(e)
            if after is not None:
                passing[after.view].append((e, after, frozenset(e.msgs)))
        for w2, group in passing.items():
            counts = Counter(got for _, _, got in group)
            if len(counts) < 2:
                continue
            reference = counts.most_common(1)[0][0]
            like = [after for _, after, got in group if got == reference]
            for e, after, got in group:
                if got != reference:
                    differs = [f"lacks {self.names(reference - got)}" if reference - got else "",
                               f"also delivered {self.names(got - reference)}" if got - reference else ""]
                    self.found.add("same-set", (e.inc.ident, g, w),
                                   f"{e.inc.ident} and {_names(x.inc.ident for x in like)} pass from view "
                                   f"{w} to {w2} of group {g}, but {e.inc.ident} "
                                   f"{' and '.join(filter(None, differs))} in {w}",
                                   e.inc.at(after.line), like[0].inc.at(like[0].line))

    def liveness(self) -> None:
        # per group: a process may be in one group under a newer identity than in another (it was
        # excluded from that group alone and joined it again)
        latest: dict[tuple[str, str], int] = {}
        for inc in self.h.incarnations:
            for g in inc.groups:
                latest[inc.name, g] = max(latest.get((inc.name, g), inc.number), inc.number)
        groups = sorted({g for inc in self.h.incarnations for g in inc.groups})
        for g in groups:
            final = {
                inc.ident: inc.groups[g][-1] for inc in self.h.incarnations
                if inc.stop_line is not None and g in inc.groups and inc.number == latest[inc.name, g]
                and not inc.groups[g][-1].closed
            }
            if not final:
                continue
            ends = {e.view for e in final.values()}
            if len(ends) > 1:
                said = "; ".join(f"{p} in {e.view}" for p, e in final.items())
                self.found.add("liveness", (g, "views"),
                               f"the live processes of group {g} end in different views: {said}",
                               *(e.inc.at(e.line) for e in final.values()))
                continue
            some = next(iter(final.values()))
            if set(some.members) != set(final):
                self.found.add("liveness", (g, "members"),
                               f"the live processes of group {g} end in view {some.view} with members "
                               f"[{', '.join(some.members)}], but the live processes are "
                               f"[{', '.join(sorted(final))}]",
                               some.inc.at(some.line))
            sent = [s for s in self.sent.get((g, some.view), []) if s.inc.ident in final]
            for p, e in final.items():
                have = _delivered(_block(e))
                lost = [s for s in sent if s.msg not in have]
                if lost:
                    self.found.add("liveness", (g, p),
                                   f"{p} ends in view {e.view} of group {g} without delivering "
                                   f"{self.names(s.msg for s in lost)}, sent there by live processes",
                                   lost[0].inc.at(lost[0].line), e.inc.at(e.inc.stop_line or e.line))


def check(histories: Histories, *, live: bool = False, model: str | None = None) -> list[Violation]:
    """Every violation of the properties (module docstring) in ``histories``, ordered by property.

    ``live`` adds the liveness property: use it for runs whose faults stopped before the end.
    ``model`` ("vs" or "evs") adds the property of the groups' model.
    """
    if model is not None and model not in MODELS:
        raise ValueError(f"unknown model {model!r}: use {' or '.join(MODELS)}")
    return _Checker(histories).run(live, model)


def check_dir(path: str | Path, *, live: bool = False, model: str | None = None) -> list[Violation]:
    return check(load_traces(path), live=live, model=model)


def main(argv: Sequence[str] | None = None) -> int:
    """``vsgroups check DIR [--live]``: 0 if the run is correct, 1 if not, 2 if it cannot be read."""
    parser = argparse.ArgumentParser(
        prog="vsgroups check", description="Check a run's traces against the virtual synchrony properties.")
    parser.add_argument("dir", type=Path, help="directory of *.jsonl traces, one per process incarnation")
    parser.add_argument("--live", action="store_true",
                        help="also require that live processes converged (for runs whose faults stopped)")
    parser.add_argument("--model", choices=MODELS,
                        help="also check the structure of the groups' model: vs (primary views only) or evs")
    args = parser.parse_args(argv)
    try:
        histories = load_traces(args.dir)
    except OSError as err:
        print(f"vsgroups check: {err}", file=sys.stderr)
        return 2
    violations = check(histories, live=args.live, model=args.model)
    for v in violations:
        print(f"{v.prop}: {v.message}")
        if v.evidence:
            print(f"    at {', '.join(v.evidence)}")
    if violations:
        print(f"FAILED: {len(violations)} violation{'s' if len(violations) > 1 else ''}")
        return 1
    print(f"OK: {len(histories.incarnations)} processes, {histories.deliveries} deliveries, "
          f"{histories.views} views checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
