"""Trace writer: the JSON Lines history of one process incarnation (docs/trace.md).

One file per identity: a node that was excluded from a group and joined it again under a fresh
member id (``NodeCore.rejoin``) writes that group's events to the new identity's file from then on.

The asyncio runtime and the simulator both turn core outputs into trace records here, so real and
simulated runs write exactly the same format for ``vsgroups check``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from .core import events as ev
from .core.domains import DEFAULT as DEFAULT_DOMAIN


class TraceWriter:
    """``recovered``: the incarnation recovers from stable storage with its identifier (evs, 1994
    §2): its trace goes on in the same file after a ``recover`` event."""

    def __init__(self, directory: str | os.PathLike[str] | None, name: str, inc: int, clock: Any,
                 recovered: bool = False) -> None:
        self.directory = directory
        self.name = name
        self.inc = inc
        self.clock = clock
        self.rejoined: dict[str, TraceWriter] = {}  # group: the file of the identity that rejoined it
        self.file: IO[str] | None = None
        self.unflushed = False  # records written since the last flush
        self.lines = 0
        self.held_at: dict[str, int] = {}  # a cast held by its causality domain: the line it depends on
        if directory is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
            self.file = open(Path(directory) / f"{name}#{inc}.jsonl", "a" if recovered else "w",  # noqa: SIM115
                             buffering=1 << 16)
        self.write("recover" if recovered else "start")

    def write(self, event: str, **fields: Any) -> None:
        if self.file is None:
            return
        record = {"ev": event, "p": self.name, "inc": self.inc, "t": round(self.clock(), 6), **fields}
        self.file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.unflushed = True
        self.lines += 1

    def rejoin(self, group: str, inc: int) -> None:
        """The node joins ``group`` again as ``name#inc``: a new file holds that group's events."""
        old = self.rejoined.get(group)
        if old is not None:
            # its only group ended (``leave`` or ``exclude`` says how): the identity is over
            old.close(clean=True)
        self.rejoined[group] = TraceWriter(self.directory, self.name, inc, self.clock)

    def record(self, event: ev.Output) -> None:
        """Trace one core output (those that are not part of the history are ignored)."""
        if self.rejoined and (other := self.rejoined.get(getattr(event, "group", ""))) is not None:
            other.record(event)
            return
        if self.file is None:
            return
        if isinstance(event, ev.Delivered):
            for msg in event.msgs:
                self.write("deliver", g=event.group, msg=msg, sender=event.sender, order=event.order,
                           view=event.view)
        elif isinstance(event, ev.Sent):
            held_at = self.held_at
            for msg in event.msgs:
                past = held_at.pop(msg, None) if held_at else None
                extra: dict[str, Any] = {"past": past} if past is not None and past < self.lines else {}
                self.write("send", g=event.group, msg=msg, order=event.order, view=event.view, **extra)
        elif isinstance(event, ev.Held):
            for msg in event.msgs:
                self.held_at[msg] = self.lines
        elif isinstance(event, ev.ViewInstalled):
            view_extra: dict[str, Any] = {"follows": event.follows} if event.follows is not None else {}
            if event.domain != DEFAULT_DOMAIN:
                view_extra["domain"] = event.domain
            self.write("view", g=event.group, view=event.view, members=sorted(event.members), kind=event.kind,
                       primary=event.primary, prev=event.prev, **view_extra)
        elif isinstance(event, ev.StateReady):
            self.write("state", g=event.group, view=event.view, size=len(event.data))
        elif isinstance(event, ev.Left):
            self.write("leave", g=event.group)
        elif isinstance(event, ev.Excluded):
            self.write("exclude", g=event.group)

    def flush(self) -> None:
        for other in self.rejoined.values():
            other.flush()
        if self.file is not None and self.unflushed:
            self.file.flush()
            self.unflushed = False

    def close(self, clean: bool) -> None:
        """``clean`` writes ``stop``; an abandoned or crashed incarnation ends without it."""
        for other in self.rejoined.values():
            other.close(clean)
        if self.file is None:
            return
        if clean:
            self.write("stop")
        self.file.close()
        self.file = None
