"""A readable, time-ordered account of one simulated run, for the person debugging a failing seed.

It merges the traces of every incarnation (by virtual time, each file in its own order) with the
scenario's log of faults and membership changes. Views, joins, leaves, state transfers, starts and
stops appear one per line; sends and deliveries are summarised per process, group and view, on the
line where that process leaves the view. A trace without ``stop`` ends in a crash or an exclusion.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class _Tally:
    view: str
    sent: int = 0
    delivered: int = 0

    def line(self, group: str) -> str:
        return f"{group}: sent {self.sent}, delivered {self.delivered} in view {self.view}"


def timeline(trace_dir: str | Path, log: Iterable[tuple[float, str]] = ()) -> list[str]:
    """The run's events as lines ``time  who  what``, in virtual time order."""
    entries: list[tuple[float, int, str, str]] = [(t, -1, "scenario", what) for t, what in log]
    for rank, path in enumerate(sorted(Path(trace_dir).glob("*.jsonl"))):
        entries.extend((t, rank, path.stem, what) for t, what in _process(path))
    entries.sort(key=lambda e: (e[0], e[1]))  # stable: each file keeps its own order
    width = max((len(who) for _, _, who, _ in entries), default=0)
    return [f"{t:9.4f}  {who:<{width}}  {what}" for t, _, who, what in entries]


def _process(path: Path) -> list[tuple[float, str]]:
    out: list[tuple[float, str]] = []
    tallies: dict[str, _Tally] = {}
    t = 0.0
    stopped = False
    with path.open() as lines:
        for raw in lines:
            ev: dict[str, Any] = json.loads(raw)
            t = float(ev.get("t", t))
            kind, group = ev.get("ev"), ev.get("g", "")
            tally = tallies.get(group)
            if kind == "send" and tally is not None:
                tally.sent += 1
            elif kind == "deliver" and tally is not None:
                tally.delivered += 1
            elif kind == "view":
                if tally is not None:
                    out.append((t, tally.line(group)))
                tallies[group] = _Tally(ev["view"])
                kind_flag = "" if ev.get("kind", "regular") == "regular" else f" {ev['kind']}"
                primary = "" if ev.get("primary", True) else " non-primary"
                after = f"after {ev['prev']}" if ev.get("prev") else "(joined)"
                out.append((t, f"{group}: installs view {ev['view']}{kind_flag}{primary} "
                               f"[{' '.join(ev['members'])}] {after}"))
            elif kind == "state":
                out.append((t, f"{group}: receives state of view {ev['view']} ({ev['size']} bytes)"))
            elif kind == "leave":
                if tally is not None:
                    out.append((t, tally.line(group)))
                    del tallies[group]
                out.append((t, f"{group}: leaves"))
            elif kind in ("start", "stop", "recover"):
                stopped = kind == "stop"
                if kind != "start":  # a recovery follows a crash, which ended every view
                    out.extend((t, tally.line(g)) for g, tally in sorted(tallies.items()))
                    tallies.clear()
                out.append((t, "recovers from stable storage" if kind == "recover" else kind))
    if not stopped:
        out.extend((t, tally.line(g)) for g, tally in sorted(tallies.items()))
        out.append((t, "trace ends without stop (crashed, or excluded and restarted)"))
    return out
