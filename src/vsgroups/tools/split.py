"""Subdivided work (1993, the parallel search of the toolkit; docs/guide/tools.md): a query split
over the current view, each member taking its share, the shares of members that fail re-issued,
one combined answer.

A ``Split`` is a ``Cohort`` whose request is cut into shares when it is delivered: as many as the
view has members, share ``i`` going first to the ``i``-th member in id order, every member making
the same cut at the same point of the stream. Each share is then a coordinator–cohort request of
its own: if its member fails before its part is delivered, a survivor takes the share over. The
caller gets the parts, one per share, in share order, once all are delivered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..api import Node
from .cohort import Cohort

ShareHandler = Callable[[Any, int, int], Awaitable[Any]]


class Split(Cohort):
    """``split = await Split.join(node, "search", handler)`` where ``handler(payload, share,
    shares)`` answers share ``share`` of ``shares``; ``parts = await split.query(payload)``."""

    def __init__(self, node: Node, group: str, handler: ShareHandler) -> None:
        async def one_share(body: Any) -> Any:
            payload, share, shares = body
            return await handler(payload, share, shares)

        super().__init__(node, group, one_share)
        self.parts: dict[str, list[Any]] = {}  # query id: [shares, {share: part}]

    async def query(self, payload: Any) -> list[Any]:
        """The parts of every share of ``payload``, in share order."""
        parts: list[Any] = await self._ask("split", "S", payload)
        return parts

    def apply_op(self, op: list[Any], sender: str) -> Any:
        kind, rid, body = op
        if kind == "split":
            if rid not in self.parts:
                members = sorted(self.group.members)
                self.parts[rid] = [len(members), {}]
                for share, member in enumerate(members):
                    sub = f"{rid}#{share}"
                    self.pending[sub] = [[body, share, len(members)], member]
                    self._work(sub)
            return None
        if kind == "reply" and rid in self.pending and "#" in rid:
            query, _, share = rid.rpartition("#")
            shares, got = self.parts[query]
            got[int(share)] = body
            if len(got) == shares:  # the last part: the answer, at every member
                del self.parts[query]
                answer = self._results.get(query)
                if answer is not None and not answer.done():
                    answer.set_result([got[i] for i in range(shares)])
        return super().apply_op(op, sender)

    def snapshot(self) -> Any:
        parts = {rid: [shares, sorted(got.items())] for rid, (shares, got) in self.parts.items()}
        return {**super().snapshot(), "parts": parts}

    def restore(self, state: Any) -> None:
        self.parts = {rid: [n, dict(got)] for rid, (n, got) in state["parts"].items()}
        super().restore(state)
