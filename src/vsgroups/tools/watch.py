"""Watch the members of a group (1987a §3; docs/guide/tools.md): learn of a member's failure or
departure at the view change that removes it.

A failure detector's suspicion is a guess, and two processes may guess differently. A view is not:
every member installs the same views in the same order, at the same point of the stream of
messages (virtual synchrony). So ``Watch`` reports a departure with the first view that no longer
holds the member, and every member that watches learns it at that same view — whether the member
crashed, was cut off, or left.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..api import Group, ViewChange
from ..core.ids import name_inc
from ..errors import NotAMember


class Watch:
    """``watch = Watch(group)``; ``view = await watch.member(pid)``, ``await watch.process(name)``
    (every incarnation of the process), or ``watch.on_departure(callback)`` for every departure.
    ``close()`` ends it; so does the end of this member's membership."""

    def __init__(self, group: Group) -> None:
        if not group.active:
            raise NotAMember(f"this node has left group {group.name!r}: there is nothing to watch")
        self.group = group
        self._events = group.events()
        self._members = set(group.members)
        self._waiting: list[tuple[Callable[[ViewChange], bool], asyncio.Future[ViewChange]]] = []
        self._callbacks: list[Callable[[str, ViewChange], None]] = []
        self._task = asyncio.get_running_loop().create_task(self._follow())

    def member(self, member: str) -> asyncio.Future[ViewChange]:
        """The first view without ``member`` (at once if the current view lacks it already)."""
        return self._until(lambda view: member not in view.members)

    def process(self, name: str) -> asyncio.Future[ViewChange]:
        """The first view with no incarnation of the process ``name``."""
        return self._until(lambda view: all(name_inc(m).name != name for m in view.members))

    def on_departure(self, callback: Callable[[str, ViewChange], None]) -> None:
        """``callback(member, view)`` for every member a view drops, from now on."""
        self._callbacks.append(callback)

    def close(self) -> None:
        self._task.cancel()
        for _, future in self._waiting:
            future.cancel()

    def _departed(self, members: list[str], view: ViewChange) -> None:
        for member in members:
            for callback in self._callbacks:
                callback(member, view)

    def _until(self, gone: Callable[[ViewChange], bool]) -> asyncio.Future[ViewChange]:
        future = asyncio.get_running_loop().create_future()
        view = self.group.view
        if view is not None and gone(view):
            future.set_result(view)
        else:
            self._waiting.append((gone, future))
        return future

    async def _follow(self) -> None:
        async for event in self._events:
            if not isinstance(event, ViewChange) or event.kind != "regular":
                continue
            self._departed(sorted(self._members - set(event.members)), event)
            self._members = set(event.members)
            still = []
            for gone, future in self._waiting:
                if future.done():
                    continue
                if gone(event):
                    future.set_result(event)
                else:
                    still.append((gone, future))
            self._waiting = still
