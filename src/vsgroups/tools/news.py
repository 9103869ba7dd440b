"""News: a bulletin board of subjects (1987a §4.3; the NEWS service of the 1993 paper), on
diffusion groups (docs/guide/clients.md).

Each subject is a group, ``news/<subject>``, whose members keep its recent postings: they are the
group's diffusions, which every member holds (the last ``served.DIFFUSION_HISTORY``) and hands to
joiners with the group's state. A subscriber is a client of that group bound with a history: it
receives the last postings first, then every new one, with no gap and no duplicate between the two,
and none missed when its server fails. Postings come from clients (``Reader.post``) or members
(``Board.post``); every subscriber sees them in one order, the group's, numbered alike: a board is
totally ordered, which also makes it causally consistent (a reply is never read before what it
answers). A causal-only board would save the ordering round but lose the common numbering that
lets a subscriber change server without a gap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ..api import Group, Node
from ..client import Client, ClientGroup

PREFIX = "news/"
HISTORY = 20  # postings a subscriber receives from before its subscription, by default


@dataclass(frozen=True)
class Posting:
    subject: str
    number: int  # its place in the subject's order: 1, 2, 3, ...
    sender: str  # the member or client id that posted it
    body: Any


class Board:
    """A member process's part: it carries some subjects (keeps their history, serves their
    subscribers) and may post to them."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.subjects: dict[str, Group] = {}

    async def carry(self, subject: str) -> Group:
        """Join the subject's group (the first carrier of a subject founds it)."""
        if subject not in self.subjects:
            self.subjects[subject] = await self.node.join(PREFIX + subject)
        return self.subjects[subject]

    async def post(self, subject: str, body: Any) -> None:
        group = self.subjects.get(subject)
        if group is None:
            raise ValueError(f"this board does not carry subject {subject!r}: call carry({subject!r}) first")
        await group.diffuse(body)


class Reader:
    """A client process's part: subscribe to subjects and post to them (``vsgroups.Client``)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.subjects: dict[str, ClientGroup] = {}

    async def subscribe(self, subject: str, history: int = HISTORY) -> AsyncIterator[Posting]:
        """The subject's last ``history`` postings, then every new one: ``async for p in await
        reader.subscribe("sports")``. The subscription is made when the call returns, before the
        first iteration, so nothing posted meanwhile is missed. Subscribe before posting to a
        subject: the history is replayed when the reader first binds to it."""
        if subject in self.subjects:
            raise ValueError(f"this reader is already bound to subject {subject!r} (a subject is "
                             f"subscribed to once, before posting to it)")
        group = await self.client.bind(PREFIX + subject, events=True, history=history)
        self.subjects[subject] = group
        return self._postings(subject, group)

    async def post(self, subject: str, body: Any) -> None:
        """Post to the subject; returns once the board delivered it (every carrier holds it)."""
        group = self.subjects.get(subject)
        if group is None:
            group = self.subjects[subject] = await self.client.bind(PREFIX + subject)
        await group.post(body)

    @staticmethod
    async def _postings(subject: str, group: ClientGroup) -> AsyncIterator[Posting]:
        async for d in group.diffusions():
            yield Posting(subject, d.number, d.sender, d.payload)
