"""Stable storage of one node (``Node(data_dir=...)``): what survives a crash of the process.

The 1994 EVS model lets a process fail and recover "with its stable storage intact and the same
identifier"; it then installs a configuration of itself alone and merges with the others as a
component would (1994 §2). VS regards a recovered process as a new one (1987a, 1993: fail-stop), so
only evs groups recover this way. What a node keeps, in its directory:

* ``identity.json`` — its incarnation number and a bound on the message ids it may have used.
  Message ids ``name#inc:n`` must never repeat, so ids are reserved in blocks, each written (and
  fsynced) before its first id is used; a recovered node starts above the last reservation. A node
  keeps its identifier only if it has evs checkpoints to recover; otherwise it starts a new
  incarnation.
* ``<group>.checkpoint`` — per evs group, the epoch of the newest configuration installed and the
  replica's state, written at every regular configuration and at ``Group.checkpoint()``. A
  recovered node resumes from it: the state is that of its last checkpoint (a checkpoint after
  every delivery would make every delivery a disk write).
* ``<group>.history`` — per evs group, the member's primary history (``wire.History``: the last
  primary configuration it installed and the primary attempts it accepted since), written before
  the member's next message leaves, so that a recovered member reports it again (docs/design.md
  §6.5).
* ``<group>.views.jsonl`` — the log of regular views of every group (``recovery.ViewLog``), which
  the last-to-fail rule of the recovery manager reads (1987a §3.6).
* ``<group>.joining`` — an evs group this node joined and holds no state of yet. A node that
  crashes with one cannot recover its identifier: the group may count it as a member that
  acknowledged messages it never kept, so it starts a new incarnation and joins as a new member.
* ``<group>.rejoined`` — a group this node was excluded from and joined again under a fresh member
  id. Its checkpoint belongs to that id, not to the node's identifier, so the node cannot recover
  its identifier either.

Files are replaced atomically (write, fsync, rename), so a crash leaves the old or the new version.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .recovery import ViewLog

ID_BLOCK = 1 << 16  # message ids reserved per write of identity.json


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Storage:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.inc = 0
        self.reserved = 0
        self.logs: dict[str, ViewLog] = {}

    def identity(self, fresh_inc: int) -> tuple[int, int | None]:
        """(incarnation, first message counter): the stored identity if the node has evs groups to
        recover, or ``fresh_inc`` and None (a new incarnation, as vs wants after any restart)."""
        path = self.dir / "identity.json"
        if (not path.exists() or not any(self.dir.glob("*.checkpoint")) or any(self.dir.glob("*.joining"))
                or any(self.dir.glob("*.rejoined"))):
            self.renew(fresh_inc)
            return fresh_inc, None
        stored = json.loads(path.read_text())
        self.inc, self.reserved = int(stored["inc"]), int(stored["reserved"])
        counter = self.reserved
        self.reserve(counter)
        return self.inc, counter

    def renew(self, inc: int) -> None:
        """The node starts a new incarnation: the old identity, and what it could recover, are over."""
        self.inc, self.reserved = inc, 0
        self.reserve(0)
        for kind in ("checkpoint", "joining", "rejoined", "history"):
            for old in self.dir.glob(f"*.{kind}"):
                old.unlink()

    def reserve(self, counter: int) -> None:
        """Called with the message counter after each cast: reserve the next block in time."""
        if counter >= self.reserved - 1:
            self.reserved = counter + ID_BLOCK
            _replace(self.dir / "identity.json",
                     json.dumps({"inc": self.inc, "reserved": self.reserved}).encode())

    def joining(self, group: str, pending: bool) -> None:
        """Mark ``group`` as joined without its state yet (``pending``), or clear the mark."""
        path = self.dir / f"{_safe(group)}.joining"
        if pending:
            _replace(path, b"")
        else:
            path.unlink(missing_ok=True)

    def rejoined(self, group: str) -> None:
        """Mark ``group`` as joined again under a fresh member id (see the module docstring)."""
        _replace(self.dir / f"{_safe(group)}.rejoined", b"")

    def save_checkpoint(self, group: str, epoch: int, state: bytes) -> None:
        _replace(self._checkpoint(group), json.dumps({"epoch": epoch, "state": state.hex()}).encode())

    def checkpoint(self, group: str) -> tuple[int, bytes] | None:
        """(newest epoch, replica state) of ``group``, if this node keeps one."""
        path = self._checkpoint(group)
        if not path.exists():
            return None
        stored: dict[str, Any] = json.loads(path.read_text())
        return int(stored["epoch"]), bytes.fromhex(stored["state"])

    def save_history(self, group: str, history: bytes) -> None:
        _replace(self.dir / f"{_safe(group)}.history", history)

    def history(self, group: str) -> bytes | None:
        path = self.dir / f"{_safe(group)}.history"
        return path.read_bytes() if path.exists() else None

    def view_log(self, group: str) -> ViewLog:
        log = self.logs.get(group)
        if log is None:
            log = self.logs[group] = ViewLog.load(self.dir / f"{_safe(group)}.views.jsonl")
        return log

    def _checkpoint(self, group: str) -> Path:
        return self.dir / f"{_safe(group)}.checkpoint"


def _safe(group: str) -> str:
    """A file name for a group name (group names are arbitrary strings)."""
    return group.encode().hex()
