"""Exceptions raised to users of vsgroups; each name says what happened."""

from __future__ import annotations

from typing import Any


class VsgroupsError(Exception):
    """Base class of every vsgroups error."""


class NotAMember(VsgroupsError):
    """The operation needs membership of a group this node has not joined, or has left."""


class NodeClosed(NotAMember):
    """The node is closing or closed: it accepts no new casts, queries or joins. A ``NotAMember``,
    since a closing node is leaving every group it belongs to."""


class JoinFailed(VsgroupsError, TimeoutError):
    """``Node.join`` gave up: its message says what is known of why (no seed reachable, frames the
    seeds cannot authenticate — another cluster key —, no answer from reachable seeds, the name held
    by a live member, the group blocked without a quorum). A ``TimeoutError`` too."""


class GroupBlocked(VsgroupsError):
    """This process was cut off from the group's primary component; it rejoins under a fresh member id."""


class UnknownOrdering(VsgroupsError, ValueError):
    """``order`` was not one of fifo, causal, total or safe."""


class PayloadTooLarge(VsgroupsError, ValueError):
    """A payload exceeds the configured maximum message size."""


class QueryFailed(VsgroupsError):
    """A group RPC did not collect the replies it asked for; ``replies`` holds those that arrived."""

    def __init__(self, message: str, replies: dict[str, Any]) -> None:
        super().__init__(message)
        self.replies = replies
