"""Identities: of process incarnations, messages and views (docs/design.md §1).

On the wire and as keys the ids are strings — ``name#inc``, ``name#inc:counter`` and
``epoch.round.proposer`` (a transitional configuration: ``new~old``) — because they are hashed,
sorted and traced far more often than they are taken apart. Where the core needs their parts, it
parses them into these small named types; process and view ids are few, so their parses are
cached and each is parsed once.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple


class ProcessId(NamedTuple):
    """An incarnation: ``name#inc``; ``inc`` grows with every restart (vs) and never repeats."""

    name: str
    inc: int

    @staticmethod
    @lru_cache(maxsize=4096)
    def parse(pid: str) -> ProcessId:
        name, sep, inc = pid.rpartition("#")
        if not sep or not name:
            raise ValueError(f"{pid!r} is not a process id (name#inc)")
        return ProcessId(name, int(inc))


class MessageId(NamedTuple):
    """A cast: ``name#inc:counter``, counted per incarnation across its groups and views."""

    sender: str
    counter: int

    @staticmethod
    def parse(mid: str) -> MessageId:
        sender, sep, counter = mid.rpartition(":")
        if not sep:
            raise ValueError(f"{mid!r} is not a message id (name#inc:counter)")
        return MessageId(sender, int(counter))


class ViewId(NamedTuple):
    """A view: ``epoch.round.proposer``, chosen with the value that creates it (§5)."""

    epoch: int
    round: int
    proposer: str

    @staticmethod
    @lru_cache(maxsize=4096)
    def parse(view: str) -> ViewId:
        epoch, _, rest = view.partition(".")
        rnd, _, proposer = rest.partition(".")
        return ViewId(int(epoch), int(rnd or 0), proposer)


def name_inc(pid: str) -> ProcessId:
    return ProcessId.parse(pid)


def view_epoch(view: str) -> int:
    """The epoch of a view id (of the new view, for a transitional configuration ``new~old``)."""
    return ViewId.parse(view).epoch


def sender_of(mid: str) -> str:
    return mid.rpartition(":")[0]
