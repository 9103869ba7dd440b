"""Hierarchical groups (1991 §2.3; docs/guide/hierarchy.md): a conceptually large group made of
small subgroups, here a key–value store whose items are partitioned among them.

Theory of operation. Every member process of a hierarchy ``name`` is a member of its *root* group
``name``, a ``Replicated`` state machine that holds only the placement: which root members serve
which of the ``fanout`` shards, each shard's *generation*, and whether it is founded or unavailable.
The items of shard ``i`` live in one subgroup only, ``name/i.g`` (``g`` its generation): one primary
copy per item, replicated among that subgroup's members, which apply the clients' operations in
the subgroup's total order and answer them by a multicast reply (so no client ever reads or
acknowledges what the subgroup could lose). Data traffic and state transfer stay inside a
subgroup; the root carries placement, lookups and the rare whole-group multicast
(``Hierarchy.cast_all``).

All placement decisions are operations of the root's total order, or its view changes, so every
root member makes them at the same point:

* ``place``: a member without a shard gets the available shard with the fewest members (the lowest
  index on a tie). The first member placed in a shard that was never founded is its *founder*: it
  alone may found the subgroup, then says so (``holds``, as every member does once it holds the
  items). The others placed there join only once the shard is founded. A founder that leaves the
  root's view before its ``holds`` is delivered takes its generation with it: the shard's next
  member founds generation ``g + 1`` (nothing was ever served by the old one — a client is bound
  to a shard only once it is founded).
* A founded shard whose members have all left the root's view is *unavailable*, never founded
  again: its members may be alive on the other side of a partition and still serve it, and a
  second copy would let the item's history fork. If one of them comes back (it was cut off and
  joins the root again under a fresh member id), it *reclaims* the shard with its copy; if none
  ever does, the shard's items are gone with its members, and the clients are told so
  (``ShardUnavailable``) rather than served an empty copy.
* A member the root's view dropped, and that rejoined it, reclaims its shard if its subgroup is
  still that shard's, and otherwise leaves the subgroup and is placed anew.

A client (``HierarchyClient``) asks the root where an item's shard is (any root member answers
from the placement) and binds to that subgroup as a client (``vsgroups.Client``), which follows the
subgroup's views and moves to another member when its server fails: the client is re-bound when
its subgroup changes or fails without the program noticing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from dataclasses import dataclass, field
from typing import Any, Self

from ..api import JOIN_TIMEOUT, Delivery, Group, Node, Replica, ViewChange
from ..client import Client, ClientGroup, NoReply
from ..errors import NodeClosed, NotAMember, VsgroupsError
from .replicated import Replicated

log = logging.getLogger("vsgroups.tools")

FANOUT = 4  # shards of a hierarchy, unless its first member says otherwise
LOCATE_TIMEOUT = 2.0  # seconds a client waits for the root's answer before asking again
SHARD_CHECK = 1.0  # seconds between a waiting client's lookups of its shard (has it become unavailable?)
LOCATE_RETRY = 0.1  # seconds between a client's lookups of a shard that is not founded yet


class ShardUnavailable(VsgroupsError):
    """Every member of the item's shard left the root's view: the item is unavailable until one of
    them comes back, and gone if none does (its subgroup is never founded again)."""


def shard_of(key: str, fanout: int) -> int:
    """The shard of an item: the same in every process and every run (``hash`` is salted)."""
    return zlib.crc32(key.encode()) % fanout


@dataclass
class Shard:
    """The root's record of one shard (its part of the placement)."""

    generation: int = 0
    members: list[str] = field(default_factory=list)  # root member ids holding its items
    joining: list[str] = field(default_factory=list)  # placed there, not holding them yet (in order)
    founded: bool = False
    unavailable: bool = False

    def subgroup(self, name: str, index: int) -> str:
        return f"{name}/{index}.{self.generation}"

    def size(self) -> int:
        return len(self.members) + len(self.joining)

    def founder(self) -> str | None:
        """The member that may found the shard's subgroup: the first placed, if it was never founded."""
        return self.joining[0] if not self.founded and self.joining else None


class _Root(Replicated):
    """The placement, replicated over the root group; it answers the clients' lookups."""

    def __init__(self, node: Node, group: str, fanout: int) -> None:
        super().__init__(node, group)
        self.shards = [Shard() for _ in range(fanout)]
        self.addresses: dict[str, str] = {}  # root member id: the address of its node
        self.casts: list[Any] = []  # whole-group multicasts (``Hierarchy.cast_all``), in order
        self.version = 0  # counts the changes of the placement
        self.over = False  # this process left the root, or its node stopped
        self._waiters: list[asyncio.Future[None]] = []

    def placement(self, member: str) -> int | None:
        return next((i for i, s in enumerate(self.shards) if member in s.members or member in s.joining),
                    None)

    async def wait_change(self, since: int, also: asyncio.Future[Any] | None = None) -> None:
        """Return once the placement changed after version ``since`` (or ``also`` is done)."""
        if self.version != since:
            return
        change = asyncio.get_running_loop().create_future()
        self._waiters.append(change)
        waits: list[asyncio.Future[Any]] = [change, *([also] if also is not None else [])]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)

    def _changed(self) -> None:
        self.version += 1
        waiters, self._waiters = self._waiters, []
        for change in waiters:
            if not change.done():
                change.set_result(None)

    def apply_op(self, op: Any, sender: str) -> Any:
        kind = op[0]
        result: Any = None
        changed = True
        if kind == "place":
            _, member, address = op
            result = self.placement(member)
            open_ = [i for i, s in enumerate(self.shards) if not s.unavailable]
            changed = result is None and bool(open_)
            if changed:
                result = min(open_, key=lambda i: (self.shards[i].size(), i))
                self.shards[result].joining.append(member)
                self.addresses[member] = address
        elif kind == "holds":  # a placed member holds the shard's items (its founder: founded it)
            _, index, generation, member = op
            shard = self.shards[index]
            result = shard.generation == generation and member in shard.joining and \
                (shard.founded or shard.founder() == member)
            changed = result
            if result:
                shard.joining.remove(member)
                shard.members.append(member)
                shard.founded = True
        elif kind == "reclaim":  # a holder the root dropped came back, with the shard's items
            _, member, address, index, generation = op
            shard = self.shards[index]
            result = changed = shard.founded and shard.generation == generation and \
                self.placement(member) is None
            if result:
                shard.members.append(member)
                shard.unavailable = False
                self.addresses[member] = address
        elif kind == "cast":
            self.casts.append(op[1])
        else:
            raise ValueError(f"unknown placement operation {kind!r}")
        if changed:  # (an operation that changed nothing must not wake the loops that submit them)
            self._changed()
        return result

    def ended(self, reason: Exception) -> None:
        super().ended(reason)
        self.over = True
        self._changed()

    def view_changed(self, view: ViewChange) -> None:
        super().view_changed(view)
        if view.kind == "regular":
            self.departed(set(view.members))
            self._changed()

    def departed(self, present: set[str]) -> None:
        """Forget the members that left the root's view. Idempotent: a joiner's state may have been
        taken before or after the members ran it for the joiner's first view."""
        for shard in self.shards:
            founder = shard.founder()
            shard.members = [m for m in shard.members if m in present]
            shard.joining = [m for m in shard.joining if m in present]
            if founder is not None and founder not in present:
                shard.generation += 1  # the next member placed there founds a new subgroup
            if shard.founded and not shard.members:
                self.emptied(shard)
        self.addresses = {m: a for m, a in self.addresses.items() if m in present}

    def emptied(self, shard: Shard) -> None:
        """A founded shard has no holder left: unavailable (never founded again, see the module
        docstring); those still joining it are placed elsewhere."""
        shard.unavailable = True
        shard.joining = []

    def apply(self, msg: Delivery) -> None:
        if msg.kind != "client":
            super().apply(msg)
            return
        index = _request(msg.payload, ("locate",), int)  # a client's lookup: ["locate", index]
        if index is None or not 0 <= index < len(self.shards):
            log.warning("hierarchy %s: dropped a malformed lookup from client %s: %r", self.name, msg.client,
                        msg.payload)
            return
        if self.group.serves(msg):
            shard = self.shards[index]
            answer = [len(self.shards), shard.generation, shard.founded, shard.unavailable,
                      [self.addresses[m] for m in shard.members if m in self.addresses]]
            task = asyncio.get_running_loop().create_task(self.group.reply(msg, answer))
            task.add_done_callback(_quiet)

    def snapshot(self) -> Any:
        return [[[s.generation, s.members, s.joining, s.founded, s.unavailable] for s in self.shards],
                sorted(self.addresses.items()), self.casts]

    def restore(self, state: Any) -> None:
        shards, addresses, casts = state
        self.shards = [Shard(g, list(ms), list(js), f, u) for g, ms, js, f, u in shards]
        self.addresses = dict(addresses)
        self.casts = list(casts)
        self._changed()


class _Items(Replica):
    """One subgroup's items: a member applies the clients' operations in the subgroup's total order
    and the one serving the client answers by multicast; a request still unanswered at a view change
    is answered by the member that now serves its client (the oldest, for a failed server's)."""

    def __init__(self, node: Node, name: str) -> None:
        self.node = node
        self.name = name
        self.items: dict[str, Any] = {}
        self.pending: dict[tuple[str, int], Any] = {}  # (client, request): result, until its reply

    @property
    def group(self) -> Group:
        return self.node.groups[self.name]

    def apply(self, msg: Delivery) -> None:
        if msg.kind == "client" and msg.client is not None:
            key = _request(msg.payload, ("get", "set", "delete"), str)
            if key is None:
                log.warning("hierarchy %s: dropped a malformed request from client %s: %r", self.name,
                            msg.client, msg.payload)
                return
            op = msg.payload[0]
            if op == "set":
                self.items[key] = msg.payload[2]
            elif op == "delete":
                self.items.pop(key, None)
            result = self.items.get(key)
            self.pending[(msg.client, msg.request)] = result
            if self.group.serves(msg):
                self._answer(msg.client, msg.request, result)
        elif msg.kind == "reply" and msg.client is not None:
            self.pending.pop((msg.client, msg.request), None)

    def view_changed(self, view: ViewChange) -> None:
        for (client, request), result in list(self.pending.items()):
            if self._serves(client):
                self._answer(client, request, result)

    def client_left(self, client: str) -> None:
        self.pending = {k: r for k, r in self.pending.items() if k[0] != client}

    def _serves(self, client: str) -> bool:
        return self.group.serves(self._stand_in(client))

    def _stand_in(self, client: str, request: int = 0) -> Delivery:
        """What ``Group.serves`` and ``Group.reply`` read of a client's request: whose, and which."""
        return Delivery(self.name, "", "", "total", "", None, "client", client, request)

    def _answer(self, client: str, request: int, result: Any) -> None:
        group = self.group  # the handle: the node may have left the subgroup when the task runs
        task = asyncio.get_running_loop().create_task(
            group.reply(self._stand_in(client, request), result, multicast=True))
        task.add_done_callback(_quiet)

    def get_state(self) -> Any:
        return [self.items, [[c, r, result] for (c, r), result in self.pending.items()]]

    def set_state(self, state: Any) -> None:
        self.items = dict(state[0])
        self.pending = {(c, r): result for c, r, result in state[1]}


class Hierarchy:
    """A member process's part: ``h = await Hierarchy.join(node, "kv")``. The member is placed in a
    shard and serves it (``shard``, ``items``) while the hierarchy runs; ``cast_all`` multicasts to
    every member of the hierarchy. ``fanout`` is the number of shards, fixed by the member that
    founds the root (the others take the root's)."""

    root_type: type[_Root] = _Root

    def __init__(self, node: Node, name: str, fanout: int) -> None:
        if fanout < 1:
            raise ValueError(f"a hierarchy has at least one shard, not {fanout}")
        self.node = node
        self.name = name
        self.root = self.root_type(node, name, fanout)
        self.shard: int | None = None  # the shard this member serves (or joins)
        self.subgroup: str | None = None  # the name of its subgroup
        self.served: _Items | None = None
        self._joining: asyncio.Task[Any] | None = None
        self._runner: asyncio.Task[None] | None = None

    @classmethod
    async def join(cls, node: Node, name: str, fanout: int = FANOUT, *,
                   timeout: float | None = JOIN_TIMEOUT) -> Self:
        """Join hierarchy ``name`` (its root group, a vs group); returns once this member holds the
        placement. It is placed and joins its subgroup in the background: ``await h.serving()``."""
        hierarchy = cls(node, name, fanout)
        await node.join(name, hierarchy.root, timeout=timeout)
        hierarchy._runner = asyncio.get_running_loop().create_task(hierarchy._run())
        return hierarchy

    # -- what a program uses --------------------------------------------------------------------------

    @property
    def group(self) -> Group:
        """The root group (every member of the hierarchy is in it)."""
        return self.root.group

    @property
    def settled(self) -> bool:
        return self.root.settled

    @property
    def items(self) -> dict[str, Any]:
        """The items of this member's shard (empty while it does not hold one)."""
        return self.served.items if self.served is not None and self._holds_state() else {}

    @property
    def shards(self) -> list[Shard]:
        return self.root.shards

    @property
    def casts(self) -> list[Any]:
        """The whole-group multicasts delivered here, in the root's order."""
        return self.root.casts

    async def serving(self) -> int:
        """Wait until the root records this member as holding a shard's items; the shard's index."""
        while True:
            seen = self.root.version
            placed = self.root.placement(self.group.member_id)
            if placed is not None and self.group.member_id in self.root.shards[placed].members:
                return placed
            await self.root.wait_change(seen)

    async def cast_all(self, payload: Any) -> None:
        """Multicast to the whole hierarchy (through the root, in its total order); every member
        finds it in ``casts``. Rarely needed: a shard's traffic stays in its subgroup."""
        await self.root.submit(["cast", payload])

    def snapshot(self) -> Any:
        return self.root.snapshot()

    async def leave(self) -> None:
        """Leave the subgroup (its other members keep the shard) and the root; returns once the root
        installed a view without this member. The last member of a shard that leaves makes it
        unavailable: its items go with it."""
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        await self._drop()
        await self.root.leave()

    # -- the member's placement loop -----------------------------------------------------------------

    async def _run(self) -> None:
        """Follow the placement: be placed, join the shard's subgroup when it is this member's turn,
        say when it holds the items, reclaim the shard after a rejoin of the root, drop a stale
        subgroup."""
        while not self.root.over:
            seen = self.root.version
            try:
                await self._step()
            except NodeClosed:
                return
            except VsgroupsError as exc:  # the root blocked or was rejoined: its next change says
                log.info("hierarchy %s: %r; following the placement again", self.name, exc)
            joining = self._joining if self._joining is not None and not self._joining.done() else None
            await self.root.wait_change(seen, joining)

    async def _step(self) -> None:
        root = self.root
        me = root.group.member_id
        placed = root.placement(me)
        if self.shard is not None:
            shard = root.shards[self.shard]
            current = self.subgroup == shard.subgroup(self.name, self.shard)
            failed = self._join_failed()
            if placed == self.shard and current and not failed:
                if self._holds_state() and me in shard.joining:
                    await root.submit(["holds", self.shard, shard.generation, me])
                return
            if placed is None and current and shard.founded and self._in_subgroup():
                # the root dropped us (we rejoined it under a fresh id): our copy is the shard's
                await root.submit(["reclaim", me, self.node.address, self.shard, shard.generation])
                return
            await self._drop()
            if failed:
                return  # (logged) try again at the next change of the placement
        if placed is None:
            placed = await root.submit(["place", me, self.node.address])
            if placed is None:
                return  # every shard is unavailable: nothing to serve
        shard = root.shards[placed]
        if shard.founded or shard.founder() == me:
            self._start_join(placed, shard, founder=not shard.founded)

    def _holds_state(self) -> bool:
        joined = self._joining
        return joined is not None and joined.done() and not joined.cancelled() and joined.exception() is None

    def _in_subgroup(self) -> bool:
        """Do we hold the subgroup's items now (not rejoining it after an exclusion, with a stale
        copy)?"""
        handle = self.node.groups.get(self.subgroup) if self.subgroup is not None else None
        return self._holds_state() and handle is not None and handle.view is not None and \
            handle.member_id in handle.view.members

    def _join_failed(self) -> bool:
        joined = self._joining
        if joined is None or not joined.done() or self._holds_state():
            return False
        exc = joined.exception() if not joined.cancelled() else None
        if isinstance(exc, NodeClosed):
            raise exc  # the node is closing: nothing more to serve
        log.warning("hierarchy %s: joining %s failed: %r", self.name, self.subgroup, exc)
        return True

    def _start_join(self, index: int, shard: Shard, founder: bool) -> None:
        name = shard.subgroup(self.name, index)
        self.shard, self.subgroup = index, name
        self.served = items = _Items(self.node, name)
        holders = [self.root.addresses[m] for m in shard.members if m in self.root.addresses]
        # a causality domain of its own: nothing in the hierarchy relies on causal order across its
        # groups, and a subgroup that blocks (or a leave of it that cannot complete) must not hold
        # up the root or the node's other groups (docs/guide/domains.md)
        self._joining = asyncio.get_running_loop().create_task(
            self.node.join(name, items, timeout=None, found=founder, seeds=holders, domain=name))
        self._joining.add_done_callback(_quiet)

    async def _drop(self) -> None:
        """Stop serving the subgroup: call the join off if it is still under way, else leave — in
        the background, since a subgroup that lost its quorum cannot complete a leave (vs)."""
        joining, name = self._joining, self.subgroup
        self.shard = self.subgroup = self.served = self._joining = None
        if joining is not None and not joining.done():
            joining.cancel()
            with contextlib.suppress(asyncio.CancelledError, VsgroupsError):
                await joining
        handle = self.node.groups.get(name) if name is not None else None
        if handle is not None and handle.active:
            asyncio.get_running_loop().create_task(handle.leave()).add_done_callback(_quiet)


class HierarchyClient:
    """A client's part: ``kv = HierarchyClient(client, "kv")``, then ``await kv.set(key, value)``,
    ``await kv.get(key)``, ``await kv.delete(key)``. Each operation goes to the subgroup of the
    item's shard, in its total order, and returns once that subgroup applied it (every member holds
    it). Raises ``ShardUnavailable`` if the shard has no member, ``NoReply`` if its subgroup did
    not answer within ``timeout`` (the operation may still be applied)."""

    def __init__(self, client: Client, name: str, timeout: float = 30.0) -> None:
        self.client = client
        self.name = name
        self.timeout = timeout
        self.fanout: int | None = None
        self._root: ClientGroup | None = None
        self._bound: dict[int, ClientGroup] = {}  # shard: its subgroup, while the binding is current

    async def get(self, key: str) -> Any:
        return await self._call(["get", key])

    async def set(self, key: str, value: Any) -> None:
        await self._call(["set", key, value])

    async def delete(self, key: str) -> None:
        await self._call(["delete", key])

    def binding(self, key: str) -> ClientGroup | None:
        """This client's binding to the subgroup of ``key``'s shard (its ``name``, ``server`` and
        ``members``), or None before the shard's first use."""
        return self._bound.get(shard_of(key, self.fanout)) if self.fanout else None

    async def close(self) -> None:
        for group in [*self._bound.values(), *([self._root] if self._root else [])]:
            if group.active:
                await group.unbind()
        self._bound.clear()
        self._root = None

    async def _call(self, op: list[Any]) -> Any:
        if not isinstance(op[1], str):
            raise TypeError(f"an item's key is a str, not {type(op[1]).__name__}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        fanout = self.fanout or (await self._locate(0, deadline))[0]
        index = shard_of(op[1], fanout)
        group = await self._subgroup(index, deadline)
        request = loop.create_task(group.request(op, timeout=max(0.0, deadline - loop.time())))
        try:
            while not request.done():
                # a subgroup whose members all failed never answers: the root says so meanwhile
                await asyncio.wait([request], timeout=SHARD_CHECK)
                if not request.done():
                    await self._locate(index, deadline)
            return request.result()
        except (NoReply, NotAMember):
            self._bound.pop(index, None)
            raise
        finally:
            if not request.done():
                request.cancel()
            elif not request.cancelled():
                request.exception()  # retrieved: the caller heard why it gave up

    async def _subgroup(self, index: int, deadline: float) -> ClientGroup:
        group = self._bound.get(index)
        if group is not None and group.active:
            return group
        loop = asyncio.get_running_loop()
        while True:
            fanout, generation, founded, unavailable, addresses = await self._locate(index, deadline)
            if founded and addresses:
                name = f"{self.name}/{index}.{generation}"
                stale = self.client.groups.get(name)
                if stale is not None:
                    await stale.unbind()
                left = deadline - loop.time()
                try:
                    group = await self.client.bind(name, seeds=addresses, timeout=min(SHARD_CHECK, left))
                except TimeoutError:
                    if left <= SHARD_CHECK:
                        raise NoReply(f"no member of shard {index} of hierarchy {self.name!r} served this "
                                      f"client within {self.timeout}s") from None
                    continue  # its members may have changed: ask the root again
                self._bound[index] = group
                return group
            # not founded yet (its founder is joining): ask again shortly, within the deadline
            await asyncio.sleep(min(LOCATE_RETRY, max(0.0, deadline - loop.time())))

    async def _locate(self, index: int, deadline: float) -> list[Any]:
        """The root's answer for ``index``: [fanout, generation, founded, unavailable, addresses]."""
        loop = asyncio.get_running_loop()
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise NoReply(f"the root of hierarchy {self.name!r} did not place shard {index} within "
                              f"{self.timeout}s")
            if self._root is None or not self._root.active:
                self._root = await self.client.bind(self.name, timeout=left)
            try:
                answer = await self._root.request(["locate", index], timeout=min(LOCATE_TIMEOUT, left))
            except NoReply:
                continue  # its server failed before answering: the client is bound again
            self.fanout = answer[0]
            if answer[3]:
                raise ShardUnavailable(f"every member of shard {index} of hierarchy {self.name!r} left: "
                                       f"its items are unavailable (gone if none comes back)")
            return list(answer)


def _request(payload: Any, kinds: tuple[str, ...], argument: type) -> Any:
    """The argument of a client's request ``[kind, argument, ...]``, or None if it is malformed (every
    member finds it so alike, and drops it)."""
    if isinstance(payload, list) and len(payload) in (2, 3) and payload[0] in kinds and \
            isinstance(payload[1], argument) and (len(payload) == 3) == (payload[0] == "set"):
        return payload[1]
    return None


def _quiet(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("hierarchy: %r", task.exception())
