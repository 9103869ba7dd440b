"""Which members of a group failed last: the computation behind the ISIS recovery manager.

Why it exists. When every member of a group has crashed, the group's newest state survives only on
the disks of the members that failed *last*. Restarting anyone else first would roll the group back,
so the recovering processes must first agree on who those are: the last-to-fail restart from their
own checkpoints, everyone else rejoins them by state transfer (1987a §3.6, Birman & Joseph,
"Exploiting virtual synchrony in distributed systems"; the algorithm is Skeen's, "Determining the
last process to fail", 1985).

Theory. Each member logs every view it installs on non-volatile storage (``ViewLog``) *before it acts
in that view*. Views of one lineage are installed in the same order by every member that installs
them (virtual synchrony), so each log is a prefix of one sequence V1, V2, ... restricted to the views
its owner belonged to. A recovering process queries the others; ``last_to_fail`` takes the answers
(each one's last logged view) and, as in Skeen, reduces the set of candidates until it is a set of
processes whose last views list one another as operational.

Why the members of the newest logged view V are exactly the last to fail:

* Everyone outside V failed (or left) before V: V was installed by a view change that removed them,
  or by one after that. A process that joined after V would be in a newer view, see below.
* Every member of V that logged V was still operational when V was installed and no later view
  exists to remove it, so it failed in V, at the end. These processes all logged the same last view
  and so list one another as operational: Skeen's termination condition.
* A member of V whose last logged view is older than V (or who logged nothing) crashed during the
  change to V, before it could act in V. Logically it failed before V and holds older state, so it
  is dropped from the candidates once it answers (a "stale" member).
* The answer is *stable*: once every member of V has answered, no process can have logged a newer
  view W. Take the first view after V that someone logged. Its installer r either belongs to V, but
  every member of V answered with V or older, or r joined in it, and then r received the state from
  a donor in V who acted in that view and therefore logged it first: again a member of V with a log
  newer than V. Both contradict the answers. This needs one rule from the caller: **a joiner logs
  its first view only once it holds the state** (until then it has nothing to recover anyway).
  Before every member of V has answered, a member still down may hold a newer view, which is why
  the result is ``decided`` only when ``waiting_for`` is empty.

Epoch ties. Within one lineage two different views never share an epoch. Under extended virtual
synchrony (partitioned components) they can; every process of every newest view is then a
candidate, which errs on the side of waiting for more processes. Only regular views belong in the
log: a transitional view shares its epoch with the regular view that follows it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("vsgroups.recovery")

__all__ = ["LastToFail", "ViewLog", "ViewRecord", "last_to_fail", "parse_epoch"]


def parse_epoch(view: str) -> int:
    """The epoch of a vsgroups view id: the integer before the first dot ("7.3.p1#0" -> 7)."""
    head = view.partition(".")[0]
    if not head.isdigit():  # also rejects a sign: epochs start at 0
        raise ValueError(f"view id {view!r} does not start with a non-negative integer epoch")
    return int(head)


@dataclass(frozen=True, slots=True)
class ViewRecord:
    """One installed view as logged: its id, epoch and member names."""

    view: str
    epoch: int
    members: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.view, str) or not self.view:
            raise ValueError(f"view id must be a non-empty string, got {self.view!r}")
        # bool is an int subclass; True as an epoch is a bug upstream, not epoch 1
        if not isinstance(self.epoch, int) or isinstance(self.epoch, bool):
            raise ValueError(f"view {self.view!r}: epoch must be an int, got {self.epoch!r}")
        if self.epoch < 0:
            raise ValueError(f"view {self.view!r}: negative epoch {self.epoch}")
        if not isinstance(self.members, tuple | list):
            raise ValueError(f"view {self.view!r}: members must be a sequence of names, got {self.members!r}")
        members = tuple(self.members)  # accept a list (e.g. from JSON) but store a hashable tuple
        bad = [m for m in members if not isinstance(m, str)]
        if bad:
            raise ValueError(f"view {self.view!r}: members must be process names (str), got {bad!r}")
        if not members:
            raise ValueError(f"view {self.view!r}: a view has at least one member")
        if len(set(members)) != len(members):
            raise ValueError(f"view {self.view!r}: duplicate members in {members!r}")
        object.__setattr__(self, "members", members)

    @classmethod
    def from_view(cls, view: str, members: Iterable[str]) -> ViewRecord:
        """A record whose epoch is parsed from a vsgroups view id."""
        return cls(view, parse_epoch(view), tuple(members))

    def to_json(self) -> dict[str, object]:
        return {"view": self.view, "epoch": self.epoch, "members": list(self.members)}

    @classmethod
    def from_json(cls, obj: object) -> ViewRecord:
        if not isinstance(obj, dict) or set(obj) != {"view", "epoch", "members"}:
            raise ValueError(f"not a view record: {obj!r}")
        return cls(obj["view"], obj["epoch"], obj["members"])


@dataclass(frozen=True, slots=True)
class LastToFail:
    """Outcome of ``last_to_fail``.

    ``candidates`` are the members of the newest view(s) not known to have failed before it;
    ``waiting_for`` those of them that have not answered. Once ``decided``, every candidate logged
    ``view`` last and holds the group's newest state. With no view in any answer yet there is nobody
    to wait for and nothing to decide: undecided, with both sets empty.
    """

    decided: bool
    candidates: frozenset[str]
    waiting_for: frozenset[str]
    view: ViewRecord | None  # the newest view (the smallest id among epoch ties)
    views: tuple[ViewRecord, ...] = ()  # every newest view, sorted by id: more than one only on a tie

    def chooser(self) -> str:
        """The candidate to restart from its checkpoint: min by name, so every recoverer picks the same."""
        if not self.decided:
            raise ValueError(f"undecided: waiting for {sorted(self.waiting_for)}")
        return min(self.candidates)


def last_to_fail(last_views: Mapping[str, ViewRecord | None]) -> LastToFail:
    """Skeen's last-to-fail computation over the last logged view of each process that answered.

    ``last_views[p]`` is the last view ``p`` logged, or None if it never was a member. Answers can
    arrive in any order; call again with the larger mapping after each one.
    """
    answered: dict[str, ViewRecord] = {}
    for name, rec in last_views.items():
        if not isinstance(name, str):
            raise ValueError(f"process names must be str, got {name!r}")
        if rec is None:
            continue
        if not isinstance(rec, ViewRecord):
            raise ValueError(f"{name}: last view must be a ViewRecord or None, got {rec!r}")
        # a process only logs views it installs, which list it; anything else means the caller
        # mixed up names (e.g. pids "p#1" for names "p") and every conclusion would be wrong
        if name not in rec.members:
            raise ValueError(f"{name}: its last view {rec.view!r} does not list it as a member")
        answered[name] = rec
    if not answered:
        return LastToFail(False, frozenset(), frozenset(), None)

    by_id: dict[str, ViewRecord] = {}
    for name, rec in answered.items():
        seen = by_id.setdefault(rec.view, rec)
        if seen != rec:  # the same view installed with two contents: the logs cannot be trusted
            raise ValueError(f"{name}: view {rec.view!r} logged inconsistently: {rec} vs {seen}")
    top = max(rec.epoch for rec in by_id.values())
    newest = tuple(sorted((r for r in by_id.values() if r.epoch == top), key=lambda r: r.view))

    members = frozenset(m for r in newest for m in r.members)
    # a member that answered with an older view (or none: its log never got its first view) crashed
    # during the change to the newest one (Skeen's reduction): it never acted there, so its state is
    # older than the others'
    stale = frozenset(m for m in members
                      if m in last_views and (m not in answered or answered[m].epoch < top))
    candidates = members - stale
    waiting = frozenset(m for m in candidates if m not in last_views)
    return LastToFail(not waiting, candidates, waiting, newest[0], newest)


class ViewLog:
    """Append-only log of the views one process installed in one group (JSON Lines, fsync'd).

    Only the tail matters for recovery, so the file is compacted to the last ``keep`` records once it
    holds twice as many.
    """

    def __init__(self, path: str | os.PathLike[str], records: Iterable[ViewRecord] = (), keep: int = 32):
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.path = Path(path)
        self.keep = keep
        self._records: list[ViewRecord] = list(records)[-keep:]
        self._lines = len(self._records)  # lines in the file, to know when to compact

    @classmethod
    def load(cls, path: str | os.PathLike[str], keep: int = 32) -> ViewLog:
        """Read the log at ``path`` (missing: empty), dropping a record torn by a crash mid-append."""
        p = Path(path)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            return cls(p, keep=keep)
        lines = data.split(b"\n")
        tail = lines.pop()  # bytes after the last newline: an append that never completed
        good = len(data) - len(tail)
        records: list[ViewRecord] = []
        for i, line in enumerate(lines):
            try:
                records.append(ViewRecord.from_json(json.loads(line)))
            except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                if i < len(lines) - 1:
                    # a crash only tears the end; damage further in is real corruption
                    raise ValueError(f"{p}: line {i + 1} is corrupt: {exc}") from exc
                # the newline made it but the write is garbage (e.g. zeros after a power cut)
                tail = line + b"\n" + tail
                good -= len(line) + 1
        if tail:
            # append() had not returned, so nobody acted in that view: dropping it is safe; cutting it
            # off keeps the next append from being glued onto the fragment
            log.warning("%s: ignoring torn last record (%d bytes) left by a crash", p, len(tail))
            with open(p, "r+b") as f:
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())
        vlog = cls(p, records, keep=keep)
        vlog._lines = len(records)
        return vlog

    def last(self) -> ViewRecord | None:
        return self._records[-1] if self._records else None

    @property
    def records(self) -> tuple[ViewRecord, ...]:
        return tuple(self._records)

    def append(self, record: ViewRecord) -> None:
        """Log ``record`` durably; returns only once it is on disk, so the caller may then act in it."""
        last = self.last()
        if last == record:
            return  # re-logging the view being replayed after a restart
        if last is not None and record.epoch <= last.epoch:
            raise ValueError(
                f"{self.path}: view {record.view!r} (epoch {record.epoch}) does not follow "
                f"{last.view!r} (epoch {last.epoch}): a process installs views in increasing epochs"
            )
        created = not self.path.exists()
        line = json.dumps(record.to_json(), separators=(",", ":")) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        if created:
            _fsync_dir(self.path.parent)  # a new file's directory entry must survive the crash too
        self._records.append(record)
        self._lines += 1
        if len(self._records) > self.keep:
            del self._records[: -self.keep]
        if self._lines >= 2 * self.keep:
            self._compact()

    def _compact(self) -> None:
        # write-then-rename so a crash leaves either the old file or the new one, never a mix
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for rec in self._records:
                f.write(json.dumps(rec.to_json(), separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        self._lines = len(self._records)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
