"""Locks and counting semaphores with fencing numbers (1987a §3.3; docs/guide/tools.md).

A ``LockService`` is a ``Replicated`` state machine on one group that serves any number of named
resources, each with a capacity (1: a lock; N: a counting semaphore). The state is, per resource,
the queue of requests in request order. Requests and releases are cast in safe order, so every
member holds the same queue. A request is *exclusive* (a writer) or *shared* (a reader): the head
of a queue holds the resource — up to ``capacity`` exclusive requests, or any number of shared
ones, never both — and a request becomes a holder, it is *granted*, at the same point of the
stream at every member. Each
grant carries a fencing number, one more than the service's previous grant, so a resource that
remembers the highest number it has seen can refuse a stale holder.

* Fair: requests are granted in request order (a reader never overtakes a waiting writer).
* A holder's failure releases its grants at the view change that removes it (its member id is
  gone from the view; every member drops its requests at that point).
* Grants only in the primary component. A vs group runs only there. In evs a configuration that
  is not primary grants nothing and revokes the grants it holds (their holders learn it: the
  primary side may grant the resource to someone else); at a merge the members reconcile
  (``Replicated``): the primary component's queue wins, so a merge never leaves two holders, and a
  request lost with a non-primary side is made again by its requester.
* Fencing numbers are never given twice, in evs either: a member that delivers in the transitional
  configuration after a primary one what others delivered in the primary configuration itself
  (and granted) skips the numbers those grants took, and a merge keeps the highest number any
  member reached.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..api import Node, ViewChange
from ..errors import VsgroupsError
from .replicated import MemberState, Replicated


class LockLost(VsgroupsError):
    """The grant was revoked: its holder left the primary component (or was excluded), so another
    member may hold the resource now. Its fencing number is stale."""


@dataclass
class Grant:
    """A resource held by this member: show ``fence`` to the resource with every use."""

    resource: str
    request: str
    fence: int
    shared: bool = False
    lost: asyncio.Event = field(default_factory=asyncio.Event, repr=False)  # set if revoked

    def check(self) -> None:
        """Raise ``LockLost`` if the grant was revoked (call it before each use of the resource)."""
        if self.lost.is_set():
            raise LockLost(f"the grant of {self.resource!r} (fencing number {self.fence}) was revoked")


class LockService(Replicated):
    """``locks = await LockService.join(node, "locks")``; then ``async with locks.hold("printer") as
    grant: ...`` or ``grant = await locks.acquire("printer")`` ... ``await locks.release(grant)``."""

    # Safe order: a request or release is delivered only once every member holds it, so a grant
    # that any member computes — even one that fails right after — is computed by every member that
    # survives, with the same fencing number. In total order a member could be granted a resource
    # on a request that it alone delivered before it failed, and act on it.
    order = "safe"

    def __init__(self, node: Node, group: str, capacities: dict[str, int] | None = None) -> None:
        super().__init__(node, group)
        self.capacities = dict(capacities or {})  # resource: capacity (default 1: a lock)
        self.fence = 0  # the fencing number of the service's last grant
        # resource: [[request id, member, fence or None, shared], ...] in request order
        self.queues: dict[str, list[list[Any]]] = {}
        self.released: set[str] = set()  # request ids given up: a late copy of their acquire is void
        self.granting = True  # grants may be made: the configuration is a regular primary one
        self.shadowing = False  # a transitional configuration after a primary one (see ``_grant``)
        self._granted: dict[str, asyncio.Future[Grant]] = {}  # our requests waiting for their grant
        self._grants: dict[str, Grant] = {}  # our grants, by request id
        self._wanted: dict[str, tuple[str, bool]] = {}  # our requests not released: id -> (resource, shared)

    # -- the application's calls -------------------------------------------------------------------

    async def acquire(self, resource: str, shared: bool = False) -> Grant:
        """Queue a request for ``resource`` and return its grant once it is at the head (within the
        capacity). ``shared=True`` asks for a read grant, held with other readers but no writer.
        Cancelling the call withdraws the request."""
        rid = f"{self.group.member_id}/L{next(self._ids)}"
        granted = asyncio.get_running_loop().create_future()
        self._granted[rid] = granted
        self._wanted[rid] = (resource, shared)
        try:
            await self.submit(["acquire", resource, rid, shared])
            return await granted
        except (Exception, asyncio.CancelledError):
            self._granted.pop(rid, None)
            if granted.done() and not granted.cancelled():
                granted.exception()  # failed with the cast (the node stopped): the caller hears its error
            if self._wanted.pop(rid, None) is not None:
                with contextlib.suppress(VsgroupsError):
                    await asyncio.shield(self.submit(["release", resource, rid]))
            raise

    async def release(self, grant: Grant) -> None:
        """Give ``grant`` up (nothing happens if it was lost meanwhile)."""
        self._wanted.pop(grant.request, None)
        self._grants.pop(grant.request, None)
        await self.submit(["release", grant.resource, grant.request])

    @contextlib.asynccontextmanager
    async def hold(self, resource: str, shared: bool = False) -> AsyncIterator[Grant]:
        grant = await self.acquire(resource, shared)
        try:
            yield grant
        finally:
            with contextlib.suppress(VsgroupsError):
                await self.release(grant)

    def holders(self, resource: str) -> list[tuple[str, int]]:
        """(member id, fencing number) of the holders of ``resource``, as this member knows them."""
        return [(r[1], r[2]) for r in self.queues.get(resource, []) if r[2] is not None]

    # -- the state machine -------------------------------------------------------------------------

    def apply_op(self, op: list[Any], sender: str) -> Any:
        kind, resource, rid, *shared = op
        queue = self.queues.setdefault(resource, [])
        if kind == "acquire":
            if rid not in self.released and not any(r[0] == rid for r in queue):
                queue.append([rid, sender, None, bool(shared and shared[0])])
        elif kind == "release":
            queue[:] = [r for r in queue if r[0] != rid]
            self.released.add(rid)
        else:
            raise ValueError(f"unknown lock operation {kind!r}")
        self._grant()
        return None

    def settled_view(self, view: ViewChange) -> None:
        members = set(view.members)
        for queue in self.queues.values():
            queue[:] = [r for r in queue if r[1] in members]  # a holder's failure releases its grants
        self.released = {rid for rid in self.released if rid.rpartition("/")[0] in members}
        # a reconciliation may end after its configuration did, in the transitional one that
        # follows it (the lock workload's seed 8 of evs): grants only while it is still current
        current = self.group.view
        self.granting = view.primary and current is not None and current.view == view.view
        self.shadowing = False
        if not view.primary:
            for queue in self.queues.values():
                for request in queue:
                    request[2] = None  # a configuration that is not primary holds nothing
        self._notice()
        self._grant()
        self._ask_again()

    def ended(self, reason: Exception) -> None:
        super().ended(reason)
        for waiting in self._granted.values():
            if not waiting.done():
                waiting.set_exception(reason)
        for grant in self._grants.values():
            grant.lost.set()  # the resource may go to another member now
        self._granted.clear()
        self._grants.clear()

    def view_changed(self, view: ViewChange) -> None:
        if not view.primary:
            # no grant from here on: not in a transitional configuration (its members may deliver
            # what others of the old one do not), nor in a regular one that is not primary
            self.shadowing = view.kind == "transitional" and self.granting
            self.granting = False
        super().view_changed(view)

    def _grant(self) -> None:
        if not (self.granting and self.settled):
            if self.shadowing and self.settled:
                # the transitional configuration after a primary one: a member that delivered this
                # operation in the primary configuration itself granted what it allowed, with the
                # next fencing numbers; they are skipped here, never to be given again (the lock
                # workload's seed 237 of evs)
                self.fence += sum(1 for _ in self._heads())
            return
        for resource, request in self._heads():
            self.fence += 1
            request[2] = self.fence
            self.granted(resource, request[0], request[1], self.fence)
        self._notice()

    def _heads(self) -> Iterator[tuple[str, list[Any]]]:
        """The requests the head of each queue now admits that hold nothing yet, in order."""
        for resource, queue in self.queues.items():
            capacity = self.capacities.get(resource, 1)
            writers = readers = 0  # ahead in the queue, all holders: the head is granted, in order
            for request in queue:
                if request[3]:
                    if writers:
                        break
                    readers += 1
                else:
                    if readers or writers == capacity:
                        break
                    writers += 1
                if request[2] is None:
                    yield resource, request

    def granted(self, resource: str, request: str, member: str, fence: int) -> None:
        """A hook: ``resource`` was granted to ``request`` of ``member`` with fencing number ``fence``
        (every member calls it for every grant, at the same point of the stream)."""

    def _notice(self) -> None:
        """Tell our waiting requests of their grants and our holders of their losses."""
        mine = {r[0]: (resource, r[2], r[3]) for resource, queue in self.queues.items() for r in queue}
        for rid, grant in list(self._grants.items()):
            if mine.get(rid, (None, None, False))[1] != grant.fence:
                del self._grants[rid]
                grant.lost.set()
        for rid, waiting in list(self._granted.items()):
            resource, fence, shared = mine.get(rid, (None, None, False))
            if fence is not None and resource is not None:
                del self._granted[rid]
                grant = self._grants[rid] = Grant(resource, rid, fence, shared)
                if not waiting.done():
                    waiting.set_result(grant)

    def _ask_again(self) -> None:
        """Requests of ours that a reconciliation dropped (they were made on a non-primary side) are
        made again; an acquire of a request already queued, or released, does nothing."""
        queued = {r[0] for queue in self.queues.values() for r in queue}
        for rid in self._granted:
            if rid not in queued and rid in self._wanted:
                resource, shared = self._wanted[rid]
                task = asyncio.get_running_loop().create_task(self.submit(["acquire", resource, rid, shared]))
                task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def reconcile(self, states: list[MemberState]) -> Any:
        """The primary component's queues, with the highest fencing number any member reached: the
        members that delivered a grant in the primary configuration itself hold a higher number than
        one that delivered its request only in the transitional configuration after it (where
        nothing is granted), and that number may be in use — it must never be granted again (the
        lock workload's seed 104 of evs)."""
        chosen = dict(super().reconcile(states))
        chosen["fence"] = max(s.state["fence"] for s in states)
        return chosen

    def snapshot(self) -> Any:
        return {"fence": self.fence, "queues": self.queues, "released": sorted(self.released)}

    def restore(self, state: Any) -> None:
        self.fence = state["fence"]
        self.queues = {resource: [list(r) for r in queue] for resource, queue in state["queues"].items()}
        self.released = set(state["released"])
        self._notice()
