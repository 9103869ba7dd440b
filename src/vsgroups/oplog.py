"""The operator's log of a node: what happened to its groups, in INFO lines a person can read.

The core's outputs say what happened; this turns the few that an operator cares about into log
records of the ``vsgroups.groups`` logger: a group founded or joined, each view change (who came,
who went, primary or not), a view change under way (casts wait) and its end, suspicions and
recoveries from them, state transfers with their size and duration, leaves and exclusions. Every
record carries the structured fields ``group``, ``view`` and ``peer`` (None where they do not
apply), for log pipelines: ``logging.Formatter("%(group)s %(view)s %(message)s")`` works on all,
and ``JsonFormatter`` writes every record (of any logger) as one JSON object per line.
Nothing here runs per message.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

from .core import events as ev

log = logging.getLogger("vsgroups.groups")


def _info(message: str, *args: object, group: str | None = None, view: str | None = None,
          peer: str | None = None, level: int = logging.INFO) -> None:
    log.log(level, message, *args, extra={"group": group, "view": view, "peer": peer})


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, the
    structured fields ``group``, ``view`` and ``peer`` where the record has them, and ``exception``
    (the traceback) if any. ``vsgroups node --log-format json`` uses it; so can any program::

        handler.setFormatter(vsgroups.oplog.JsonFormatter())
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        for field in ("group", "view", "peer"):
            if hasattr(record, field):
                out[field] = getattr(record, field)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _names(pids: set[str] | tuple[str, ...]) -> str:
    return ", ".join(sorted(pids)) or "none"


class OperatorLog:
    """Kept by one node; fed by its output driver."""

    def __init__(self) -> None:
        self.members: dict[str, tuple[str, ...]] = {}  # group: members of its last regular view here
        self.blocked: dict[str, float] = {}  # group: when a view change began
        self.awaiting: dict[str, float] = {}  # group: when its view was installed without the state

    def view(self, out: ev.ViewInstalled, me: str) -> None:
        g = out.group
        began = self.blocked.pop(g, None)
        took = f" after {time.monotonic() - began:.3f}s blocked" if began is not None else ""
        kind = "primary" if out.primary else "non-primary"
        if out.kind == "transitional":
            _info("group %s: transitional configuration %s (%s) closes the old one%s", g, out.view,
                  _names(out.members), took, group=g, view=out.view)
            return
        before = self.members.get(g)
        self.members[g] = out.members
        if before is None:
            how = ("founded" if out.members == (me,) and out.prev is None and not out.state_pending
                   else "joined")
            _info("group %s: %s as %s in %s view %s: members %s%s", g, how, me, kind, out.view,
                  _names(out.members), " (waiting for the state)" if out.state_pending else "", group=g,
                  view=out.view)
        else:
            came, went = set(out.members) - set(before), set(before) - set(out.members)
            _info("group %s: %s view %s of %d: joined %s, gone %s%s", g, kind, out.view, len(out.members),
                  _names(came), _names(went), took, group=g, view=out.view)
        if out.state_pending:
            self.awaiting[g] = time.monotonic()

    def blocking(self, out: ev.Blocked) -> None:
        self.blocked[out.group] = time.monotonic()
        _info("group %s: view change under way out of %s; casts wait", out.group, out.view, group=out.group,
              view=out.view)

    def state_sent(self, group: str, view: str, size: int) -> None:
        _info("group %s: sending the state (%d bytes) to the joiners of view %s", group, size, view,
              group=group, view=view)

    def state_received(self, out: ev.StateReady) -> None:
        began = self.awaiting.pop(out.group, None)
        took = f" in {time.monotonic() - began:.3f}s" if began is not None else ""
        _info("group %s: received the state (%d bytes)%s", out.group, len(out.data), took, group=out.group,
              view=out.view)

    def suspicion(self, out: ev.Suspicion) -> None:
        groups = ", ".join(out.groups)
        if out.suspected:
            _info("suspect %s (silent for %.2fs), a member of %s", out.peer, out.silent, groups,
                  peer=out.peer, level=logging.WARNING)
        else:
            _info("heard from %s again, a member of %s", out.peer, groups, peer=out.peer)

    def left(self, group: str) -> None:
        self.forget(group)
        _info("group %s: left", group, group=group)

    def forget(self, group: str) -> None:
        """The membership ended (left or excluded): a later view of the group is a new join."""
        self.members.pop(group, None)
        self.blocked.pop(group, None)
        self.awaiting.pop(group, None)
