"""A token that moves between the members of a group (1987a §3.3; docs/guide/tools.md).

The token is the replicated state of a ``Replicated`` state machine: who holds it, and its
*generation*. Its holder passes it on by a cast (in safe order, like a lock's requests: what any
member delivers, every survivor delivers), so every member sees it move at the same point of the
stream. If the holder fails or leaves, the view change that removes it regenerates the token —
once, since every member does it at that same point — for the oldest member of the new view, with
the next generation: a resource that remembers the highest generation it has seen can refuse a
holder from before.

In evs only a primary configuration has the token: one that is not primary holds none (its holder
is told, as with a lock), and a merge keeps the primary side's token.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..api import Node, ViewChange
from .replicated import Replicated


class Token(Replicated):
    """``token = await Token.join(node, "turn")``; ``await token.wait()`` until this member holds it,
    then ``await token.pass_to(member_id)`` (or ``pass_on()`` to the next member in age order)."""

    order = "safe"

    def __init__(self, node: Node, group: str) -> None:
        super().__init__(node, group)
        self.holder: str | None = None  # the member holding the token (None: none has it here)
        self.generation = 0  # one more at each regeneration
        self.passes = 0  # moves so far
        self._changed = asyncio.Event()
        self._ended: Exception | None = None

    @property
    def mine(self) -> bool:
        return self.holder is not None and self.holder == self.group.member_id

    async def wait(self) -> int:
        """Return (the token's generation) once this member holds the token."""
        while not self.mine:
            if self._ended is not None:
                raise self._ended
            self._changed.clear()
            await self._changed.wait()
        return self.generation

    def ended(self, reason: Exception) -> None:
        super().ended(reason)
        self._ended = reason
        self._changed.set()

    async def pass_to(self, member: str) -> None:
        """Hand the token to ``member`` (ignored by all if this member does not hold it then)."""
        if member not in self.group.members:
            raise ValueError(f"{member} is not a member of group {self.name!r}")
        await self.submit(["pass", member])

    async def pass_on(self) -> str:
        """Hand the token to the next member in age order (wrapping round); returns that member."""
        members = self.group.members
        me = self.group.member_id
        nxt = members[(members.index(me) + 1) % len(members)]
        await self.pass_to(nxt)
        return nxt

    def apply_op(self, op: list[Any], sender: str) -> Any:
        kind, member = op
        if kind != "pass":
            raise ValueError(f"unknown token operation {kind!r}")
        if sender == self.holder and self.settled and member in self.group.members:
            self.holder = member
            self.passes += 1
            self._moved()
        return None

    def settled_view(self, view: ViewChange) -> None:
        if not view.primary:
            self.holder = None  # not the primary component: no token here
        elif self.holder not in view.members:
            self.holder = view.members[0]  # regenerated, once: every member does it here
            self.generation += 1
        self._moved()

    def view_changed(self, view: ViewChange) -> None:
        if view.kind == "regular" and not view.primary:
            self.holder = None  # outside the primary component, even before the state is settled
            self._moved()
        super().view_changed(view)

    def _moved(self) -> None:
        self._changed.set()
        self.moved(self.holder, self.generation)

    def moved(self, holder: str | None, generation: int) -> None:
        """A hook: the token is now at ``holder`` (every member calls it at the same point)."""

    def snapshot(self) -> Any:
        return {"holder": self.holder, "generation": self.generation, "passes": self.passes}

    def restore(self, state: Any) -> None:
        self.holder, self.generation, self.passes = state["holder"], state["generation"], state["passes"]
        self._changed.set()
