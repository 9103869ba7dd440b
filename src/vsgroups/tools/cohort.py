"""Coordinator–cohort (1987a §3.4; docs/guide/tools.md): one member handles a request, the others
stand by and one of them takes over if it fails before replying; the caller gets one result.

A ``Cohort`` is a ``Replicated`` state machine whose state is the requests not yet answered. A
request is cast in total order; when it is delivered, every member picks the same coordinator for
it — a member of the current view chosen from the request's id — and records it. The coordinator
runs the handler and casts the reply; the cohorts watch. A view change that removes a request's
coordinator before its reply is delivered gives the request to a new coordinator, picked the same
way from the new view, which runs the handler again. The first reply delivered answers the request
at every member, so the caller gets exactly one result even if a coordinator that was taken for
failed did reply (a handler may run more than once: make it idempotent, or give the request an id
the resource checks).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..api import Node, ViewChange
from ..errors import VsgroupsError
from .replicated import Replicated

log = logging.getLogger("vsgroups.tools")

Handler = Callable[[Any], Awaitable[Any]]


class Cohort(Replicated):
    """``cohort = await Cohort.join(node, "service", handler)``; ``result = await
    cohort.request(payload)`` from any member. ``handler(payload)`` is an async function."""

    def __init__(self, node: Node, group: str, handler: Handler) -> None:
        super().__init__(node, group)
        self.handler = handler
        self.pending: dict[str, list[Any]] = {}  # request id: [payload, coordinator]
        self.handled = 0  # requests this member ran the handler for
        self._results: dict[str, asyncio.Future[Any]] = {}  # our requests (and queries: ``Split``)
        self._working: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # every handler task, kept until it is done

    async def request(self, payload: Any) -> Any:
        """Ask the group; the result of the one coordinator whose reply came first."""
        return await self._ask("request", "C", payload)

    async def _ask(self, kind: str, tag: str, payload: Any) -> Any:
        """Cast a ``kind`` operation under a fresh id and wait for its answer (``_results``)."""
        rid = f"{self.group.member_id}/{tag}{next(self._ids)}"
        result = asyncio.get_running_loop().create_future()
        self._results[rid] = result
        try:
            await self.submit([kind, rid, payload])
            return await result
        finally:
            self._results.pop(rid, None)

    def ended(self, reason: Exception) -> None:
        super().ended(reason)
        for result in self._results.values():
            if not result.done():
                result.set_exception(reason)
        for task in self._working.values():
            task.cancel()

    @staticmethod
    def coordinator(view: tuple[str, ...], rid: str) -> str:
        """The member that handles request ``rid`` in a view of these members: the same at every one."""
        digest = hashlib.sha256(rid.encode()).digest()
        return sorted(view)[int.from_bytes(digest[:8], "big") % len(view)]

    def apply_op(self, op: list[Any], sender: str) -> Any:
        kind, rid, body = op
        if kind == "request":
            if rid not in self.pending:
                self.pending[rid] = [body, self.coordinator(self.group.members, rid)]
                self._work(rid)
        elif kind == "reply":
            if self.pending.pop(rid, None) is not None:  # the first reply answers it; later ones are late
                result = self._results.get(rid)
                if result is not None and not result.done():
                    result.set_result(body)
            task = self._working.pop(rid, None)
            if task is not None:
                task.cancel()
        else:
            raise ValueError(f"unknown cohort operation {kind!r}")
        return None

    def settled_view(self, view: ViewChange) -> None:
        for rid, request in sorted(self.pending.items()):
            if request[1] not in view.members:  # its coordinator failed before its reply: take over
                request[1] = self.coordinator(view.members, rid)
                self._work(rid)

    def _work(self, rid: str) -> None:
        payload, coordinator = self.pending[rid]
        if coordinator == self.group.member_id and rid not in self._working:
            task = self._working[rid] = asyncio.get_running_loop().create_task(self._handle(rid, payload))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, rid: str, payload: Any) -> None:
        try:
            self.handled += 1
            result = await self.handler(payload)
        except Exception as exc:  # the caller hears of it, as a result
            log.exception("the handler of group %s failed on request %s", self.name, rid)
            result = {"error": repr(exc)}
        finally:
            self._working.pop(rid, None)
        with contextlib.suppress(VsgroupsError):  # this member is out: a cohort takes over
            await self.submit(["reply", rid, result])

    def snapshot(self) -> Any:
        return {"pending": self.pending}

    def restore(self, state: Any) -> None:
        self.pending = {rid: list(request) for rid, request in state["pending"].items()}
        for task in self._working.values():
            task.cancel()
        self._working = {}
        for rid in sorted(self.pending):
            self._work(rid)
