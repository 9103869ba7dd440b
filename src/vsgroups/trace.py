"""Trace writer: the JSON Lines history of one process incarnation (docs/trace.md).

The asyncio runtime and the simulator both turn core outputs into trace records here, so real and
simulated runs write exactly the same format for ``vsgroups check``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from .core import events as ev


class TraceWriter:
    """``recovered``: the incarnation recovers from stable storage with its identifier (evs, 1994
    §2): its trace goes on in the same file after a ``recover`` event."""

    def __init__(self, directory: str | os.PathLike[str] | None, name: str, inc: int, clock: Any,
                 recovered: bool = False) -> None:
        self.name = name
        self.inc = inc
        self.clock = clock
        self.file: IO[str] | None = None
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

    def record(self, event: ev.Output) -> None:
        """Trace one core output (those that are not part of the history are ignored)."""
        if self.file is None:
            return
        if isinstance(event, ev.Delivered):
            for msg in event.msgs:
                self.write("deliver", g=event.group, msg=msg, sender=event.sender, order=event.order,
                           view=event.view)
        elif isinstance(event, ev.Sent):
            for msg in event.msgs:
                self.write("send", g=event.group, msg=msg, order=event.order, view=event.view)
        elif isinstance(event, ev.ViewInstalled):
            self.write("view", g=event.group, view=event.view, members=sorted(event.members), kind=event.kind,
                       primary=event.primary, prev=event.prev)
        elif isinstance(event, ev.StateReady):
            self.write("state", g=event.group, view=event.view, size=len(event.data))
        elif isinstance(event, ev.Left):
            self.write("leave", g=event.group)

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()

    def close(self, clean: bool) -> None:
        """``clean`` writes ``stop``; an abandoned or crashed incarnation ends without it."""
        if self.file is None:
            return
        if clean:
            self.write("stop")
        self.file.close()
        self.file = None
