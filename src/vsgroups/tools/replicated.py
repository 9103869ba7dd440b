"""A state machine replicated over one group, built on the public API alone (1987a §3;
docs/guide/tools.md).

``Replicated`` is a ``Replica`` whose operations are cast to the group and applied by every member
in delivery order (``apply_op``); ``submit`` returns an operation's result once it is applied at
this member. In total order (the default) every member applies the same operations in the same
order, so members that pass through the same views hold the same state; a joiner receives the
state by state transfer, exactly as of its join.

An evs group has no state transfer on a merge: components that ran apart come together with
different states. So a regular configuration whose members did not all come from this member's
previous configuration (a merge), or that follows a reconciliation the previous configuration did
not finish, *reconciles* first. Every member casts its state tagged with the configuration; once
the states of all members are delivered — the same states in the same order at every member, by
total order — each member adopts ``reconcile(states)`` and then applies, in their order, the
operations delivered meanwhile. The default keeps the state of the members last in the newest
primary configuration (the primary component's history wins; what a non-primary component did
apart is dropped): override ``reconcile`` to merge instead. Until then ``settled`` is False.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..api import JOIN_TIMEOUT, Delivery, Group, Node, Replica, ViewChange
from ..core.ids import view_epoch
from ..errors import GroupBlocked, NotAMember

log = logging.getLogger("vsgroups.tools")

_OP, _SYNC = "op", "sync"


@dataclass(frozen=True, slots=True)
class MemberState:
    """One member's state at a reconciliation: ``primary`` is the epoch of the newest primary
    configuration whose state it holds (-1: none), ``direct`` whether its previous configuration
    was that primary one (it did nothing apart since)."""

    sender: str
    primary: int
    direct: bool
    state: Any


class Replicated(Replica):
    """Subclasses define ``apply_op``, ``snapshot`` and ``restore`` (and may override
    ``reconcile``). Create one with ``await Tool.join(node, group, ...)``."""

    order: ClassVar[str] = "total"  # the ordering of operations, unless a call says otherwise

    def __init__(self, node: Node, group: str) -> None:
        self.node = node
        self.name = group
        self.settled = True  # False while an evs configuration reconciles (see the module docstring)
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._primary = -1  # the epoch of the newest primary configuration whose state we hold
        self._was_primary = False  # our previous regular configuration was primary
        self._transitional: set[str] | None = None  # evs: members of the transitional configuration
        self._unsettled = False  # the last reconciliation did not finish: the next configuration does one
        self._sync: ViewChange | None = None  # the configuration being reconciled
        self._states: dict[str, MemberState] = {}
        self._held: list[tuple[Any, str, str]] = []  # operations delivered during a reconciliation
        self._holder: str | None = None  # the member id whose membership our state belongs to

    @classmethod
    async def join(cls, node: Node, group: str, *args: Any, model: str = "vs",
                   timeout: float | None = JOIN_TIMEOUT, **kwargs: Any) -> Self:
        """Join ``group`` with a new tool as its replica; returns once it holds the group's state."""
        tool = cls(node, group, *args, **kwargs)
        await node.join(group, tool, model=model, timeout=timeout)
        return tool

    @property
    def group(self) -> Group:
        """This tool's membership of its group. A tool that left its group stays out of it: if the
        node joined the group again with another tool, that membership is not this one's."""
        handle = self.node.groups.get(self.name)
        if handle is None or handle.replica is not self:
            raise NotAMember(f"this {type(self).__name__} is not in group {self.name!r} (any more)")
        return handle

    async def submit(self, op: Any, order: str | None = None) -> Any:
        """Cast ``op``; return ``apply_op``'s result once this member applied it (or raise what it
        raised: every member raised the same). ``GroupBlocked`` if this member was excluded and
        joined again first: the operation may or may not have been applied elsewhere."""
        group = self.group
        rid = f"{group.member_id}/{next(self._ids)}"
        done = asyncio.get_running_loop().create_future()
        self._pending[rid] = done
        try:
            await group.cast([_OP, rid, op], order=order or self.order)
            return await done
        finally:
            self._pending.pop(rid, None)
            if done.done() and not done.cancelled():
                done.exception()  # failed while the cast waited: the caller hears the cast's own error

    async def flush(self) -> None:
        """Return once every operation this member submitted is stable (held by every member):
        call it before an action outside the group depends on them (1987a §3)."""
        await self.group.flush()

    async def leave(self) -> None:
        await self.group.leave()

    # -- what a tool defines ---------------------------------------------------------------------------

    def apply_op(self, op: Any, sender: str) -> Any:
        raise NotImplementedError

    def snapshot(self) -> Any:
        """The tool's state, msgpack-encodable (sent to joiners and cast at reconciliations)."""
        raise NotImplementedError

    def restore(self, state: Any) -> None:
        raise NotImplementedError

    def reconcile(self, states: list[MemberState]) -> Any:
        """The state a merged evs configuration adopts, from every member's (in delivery order, the
        same at every member). Default: the first of those holding the newest primary state,
        preferring one that came straight from that primary configuration."""
        best = max(states, key=lambda s: (s.primary, s.direct))
        return best.state

    def settled_view(self, view: ViewChange) -> None:
        """Every member of ``view`` holds the same state from now on (at its install, or once its
        reconciliation ended): a tool's hook for what depends on that (grants, tokens)."""

    # -- the replica hooks -------------------------------------------------------------------------------

    def get_state(self) -> Any:
        # taken as the joiner's view is installed, before anything is delivered in it: a
        # reconciliation of that view has begun here, and the joiner takes part from the start
        return {"state": self.snapshot(), "primary": self._primary, "was_primary": self._was_primary,
                "reconciling": self._sync is not None}

    def set_state(self, state: Any) -> None:
        me = self.group.member_id
        if self._holder not in (None, me):  # excluded, and joined again under a fresh member id
            self._fail_pending(GroupBlocked(f"this member was excluded from group {self.name!r} and "
                                            f"joined it again: the outcome of its operation is unknown"))
        self._holder = me
        self.restore(state["state"])
        self._primary, self._was_primary = state["primary"], state["was_primary"]
        self._transitional, self._unsettled = None, False
        view = self.group.view
        if state["reconciling"] and view is not None:
            self._sync, self._states, self._held, self.settled = view, {}, [], False
        else:
            self._sync, self.settled = None, True

    def ended(self, reason: Exception) -> None:
        self._fail_pending(reason)

    def apply(self, msg: Delivery) -> None:
        kind, tag, body = msg.payload
        if kind == _SYNC:
            self._on_state(msg.sender, tag, body)
        elif self._sync is not None:
            self._held.append((body, msg.sender, tag))
        else:
            self._apply(body, msg.sender, tag)

    def view_changed(self, view: ViewChange) -> None:
        if view.kind == "transitional":
            self._transitional = set(view.members)
            return
        came_from, self._transitional = self._transitional, None
        direct, self._was_primary = self._was_primary, view.primary
        me = self.group.member_id
        if self._holder != me:
            if view.members != (me,):
                return  # a joiner: the state it receives is as of this view's install, settled
            self._holder = me  # founding the group, alone
        if self._sync is not None:  # a reconciliation the last configuration did not finish
            self._end_sync()
            self._unsettled = True
        if came_from is not None and (self._unsettled or set(view.members) != came_from):
            self._begin_sync(view, direct)
        else:
            self._settle(view)

    # -- reconciliation (evs) ----------------------------------------------------------------------------

    def _begin_sync(self, view: ViewChange, direct: bool) -> None:
        self._sync, self._states, self._held, self.settled = view, {}, [], False
        # the joiners of the view hold the state of the member that sent it: they cast none
        mine = [self._primary, direct, self.snapshot()]
        task = asyncio.get_running_loop().create_task(self.group.cast([_SYNC, view.view, mine]))
        task.add_done_callback(_log_failure)

    def _on_state(self, sender: str, config: str, body: list[Any]) -> None:
        view = self._sync
        if view is None or config != view.view or sender in self._states:
            return  # a state cast for an earlier configuration
        primary, direct, state = body
        self._states[sender] = MemberState(sender, primary, direct, state)
        if all(m in self._states for m in view.members if m not in view.joined):
            chosen = self.reconcile(list(self._states.values()))
            self._primary = max(s.primary for s in self._states.values())
            self.restore(chosen)
            self._end_sync()
            self._unsettled = False
            self._settle(view)

    def _end_sync(self) -> None:
        held, self._held, self._sync, self._states = self._held, [], None, {}
        for op, sender, rid in held:
            self._apply(op, sender, rid)

    def _settle(self, view: ViewChange) -> None:
        self.settled = True
        if view.primary:
            self._primary = view_epoch(view.view)
        self.settled_view(view)

    def _apply(self, op: Any, sender: str, rid: str) -> None:
        try:
            result, error = self.apply_op(op, sender), None
        except Exception as exc:  # deterministic: every member raised it; the caller hears it
            result, error = None, exc
        done = self._pending.get(rid)
        if done is not None and not done.done():
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(result)

    def _fail_pending(self, exc: Exception) -> None:
        for done in self._pending.values():
            if not done.done():
                done.set_exception(exc)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.info("a reconciliation state could not be cast: %r", task.exception())
