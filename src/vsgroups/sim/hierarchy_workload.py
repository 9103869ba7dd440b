"""Seeded fault runs of a hierarchical group: ``vsgroups sim --workload hierarchy``
(docs/guide/hierarchy.md).

Six or seven members form a hierarchy of two shards (``tools.Hierarchy``) while the faults of
``sim.workloads`` strike them; a few clients (``tools.HierarchyClient``, crashing now and then and
coming back) write items of their own with increasing values and read anyone's. What must hold:

* one copy per item: every answer about a shard comes from one subgroup, the shard's only lineage
  (a shard is never founded a second time while its first copy may live);
* no acknowledged write is lost or rolled back: a read returns at least the value of the item's
  last write acknowledged before the read began, and nothing not yet written — unless the shard is
  reported unavailable (``ShardUnavailable``), never served empty or stale instead;
* at the end, every member placed in a shard holds it, the members holding a shard hold the same
  items, and a final read of every item whose shard is available returns its last acknowledged
  value (or a later write's) — except in a subgroup that lost the quorum of its view (two failures
  in three: a joiner whose state sender was cut off gives up too), which blocks by design.

Besides the run's faults, most seeds (70%) crash every member of one shard at once (the root keeps
its quorum). The broken variant founds such a shard again, empty, under a new generation — what a
placement service that takes a departure for a death would do.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..client import ClientExpired, NoReply
from ..core.membership import is_quorum
from ..errors import VsgroupsError
from ..tools.hierarchy import Hierarchy, HierarchyClient, Shard, ShardUnavailable, _Root, shard_of
from .aio import SimClient, SimNode
from .workload_base import CONFIG, Problems, Workload

if TYPE_CHECKING:
    from .workloads import _Run

NAME = "tool"
FANOUT = 2
KEYS = 3  # items each client writes
TIMEOUT = 8.0  # virtual seconds a client operation may take: a failover and a rebind fit in it
SETTLE = 20.0  # virtual seconds for the subgroups to settle after the run's own end


class _RefoundingRoot(_Root):
    def emptied(self, shard: Shard) -> None:
        shard.generation += 1
        shard.founded = False


class _Refounding(Hierarchy):
    root_type = _RefoundingRoot


@dataclass
class _Item:
    """One item's history, as its writer and the readers saw it (virtual times)."""

    issued: list[tuple[int, float]] = field(default_factory=list)  # (value, when its write began)
    acked: list[tuple[int, float]] = field(default_factory=list)  # (value, when its write returned)


class HierarchyWorkload(Workload):
    tool = Hierarchy
    broken = _Refounding
    models = ("vs",)
    # two shards of three: a vs subgroup of two blocks when its oldest member fails (a quorum is a
    # majority, or half with the oldest member), and so would its shard
    nodes = (6, 7)

    def __init__(self, broken: bool, problems: Problems) -> None:
        super().__init__(broken, problems)
        self.items: dict[str, _Item] = {}
        self.reads: list[tuple[str, float, float, Any, str]] = []  # key, began, returned, value, subgroup
        self.lineages: dict[int, set[str]] = {}  # shard: the subgroups that answered about it
        self.unavailable = 0
        self.stopped = False
        self.tasks: list[asyncio.Task[None]] = []
        self.resting: set[str] = set()
        self.run: _Run | None = None

    async def join(self, node: SimNode, model: str) -> Any:
        return await self.cls.join(node, NAME, fanout=FANOUT, timeout=None)

    async def operate(self, tool: Any, rng: random.Random) -> None:
        if rng.random() < 0.1:
            await tool.cast_all(f"{tool.group.member_id}@{asyncio.get_running_loop().time():.3f}")

    # -- the clients ---------------------------------------------------------------------------------

    def begin(self, run: _Run) -> None:
        self.run = run
        rng = random.Random(f"{run.spec.seed}/hierarchy")
        for i in range(rng.randint(2, 4)):
            task = run.loop.create_task(self._live(f"c{i + 1}"))
            task.add_done_callback(run._failed)
            self.tasks.append(task)
        if rng.random() < 0.7:
            run._spawn(self._crash_a_shard(run, rng))

    async def _crash_a_shard(self, run: _Run, rng: random.Random) -> None:
        """A correlated failure: every member of one shard's subgroup crashes at once (a rack that loses
        power), while the root keeps its quorum. The shard's items are gone: the clients must be
        told so, never served an empty copy."""
        await asyncio.sleep(rng.uniform(1.0, run.spec.duration - 1.0))
        while not run._calm():
            await asyncio.sleep(0.05)
        up = [m for m in run.members.values() if m.tool is not None and m.name not in run.down | run.away]
        index = rng.randrange(FANOUT)
        placed = [m for m in up if m.tool.shard == index]  # holding the shard or joining it
        oldest = up[0].tool.group.members[0]  # the root keeps a quorum: a majority, or half with it
        quorum = 2 * len(placed) < len(up) or (2 * len(placed) == len(up) and
                                                all(m.tool.group.member_id != oldest for m in placed))
        if placed and quorum:
            for member in placed:
                await run.crash(member)

    async def _live(self, name: str) -> None:
        """Incarnation after incarnation, until the load stops: operate, crash now and then."""
        assert self.run is not None
        run = self.run
        rng = random.Random(f"{run.spec.seed}/client/{name}")
        value = 0
        while not self.stopped:
            client = SimClient(run.net, name, run.addresses, config=CONFIG)
            await client.start()
            kv = HierarchyClient(client, NAME, timeout=TIMEOUT)
            try:
                while not self.stopped and rng.random() > 0.02:  # else a crash
                    await asyncio.sleep(rng.expovariate(1 / 0.05))
                    run.outcome.ops += 1
                    if rng.random() < 0.5:
                        value += 1
                        await self._write(kv, f"{name}/k{rng.randrange(KEYS)}", value)
                    else:
                        await self._read(kv, f"c{rng.randint(1, 4)}/k{rng.randrange(KEYS)}")
            except ClientExpired:
                pass  # the group took this incarnation for dead: a new one comes
            finally:
                await client.close()
            await asyncio.sleep(rng.uniform(0.2, 0.8))
        self.resting.add(name)

    async def _write(self, kv: HierarchyClient, key: str, value: int) -> None:
        loop = asyncio.get_running_loop()
        item = self.items.setdefault(key, _Item())
        item.issued.append((value, loop.time()))
        try:
            await kv.set(key, value)
        except (ShardUnavailable, NoReply):
            self.unavailable += 1  # its outcome is unknown: a later read may see it or not
            return
        item.acked.append((value, loop.time()))
        self._answered(kv, key)

    async def _read(self, kv: HierarchyClient, key: str) -> None:
        began = asyncio.get_running_loop().time()
        try:
            value = await kv.get(key)
        except (ShardUnavailable, NoReply):
            self.unavailable += 1
            return
        self.reads.append((key, began, asyncio.get_running_loop().time(), value, self._answered(kv, key)))

    def _answered(self, kv: HierarchyClient, key: str) -> str:
        binding = kv.binding(key)
        subgroup = binding.name if binding is not None else "?"
        self.lineages.setdefault(shard_of(key, FANOUT), set()).add(subgroup)
        return subgroup

    def stop_load(self) -> None:
        self.stopped = True

    def quiet(self, tools: list[Any]) -> bool:
        return all(task.done() for task in self.tasks)

    async def after(self, run: _Run, tools: list[Any]) -> list[Any]:
        """Let every shard's members settle, then read every item once more, from a fresh client."""
        loop = run.loop
        deadline = loop.time() + SETTLE
        while loop.time() < deadline and not self._settled(tools):
            await asyncio.sleep(0.05)
        client = SimClient(run.net, "final", run.addresses, config=CONFIG)
        await client.start()
        kv = HierarchyClient(client, NAME, timeout=TIMEOUT)
        blocked = {name.rpartition(".")[0] for name in self._blocked(tools)}  # "tool/<shard>"
        try:
            for key in sorted(self.items):
                if f"{NAME}/{shard_of(key, FANOUT)}" in blocked:
                    continue
                with contextlib.suppress(ShardUnavailable):
                    await self._read(kv, key)
        except (NoReply, VsgroupsError) as exc:
            self.problems.add(f"after the run, a client could not read the items: {exc!r}")
        finally:
            await client.close()
        return tools

    def _settled(self, tools: list[Any]) -> bool:
        shards = tools[0].shards if tools else []
        blocked = self._blocked(tools)
        placing = any(s.joining for i, s in enumerate(shards)
                      if not s.unavailable and s.subgroup(NAME, i) not in blocked)
        return not placing and all(len(set(held.values())) <= 1
                                   for held in self._held(tools, blocked).values())

    @staticmethod
    def _held(tools: list[Any], blocked: set[str]) -> dict[str, dict[str, str]]:
        """subgroup: {member: its items}, of the members the root records as holding a shard (less
        the ``blocked`` subgroups)."""
        shards = tools[0].shards if tools else []
        held: dict[str, dict[str, str]] = {}
        for tool in tools:
            if tool.shard is not None and tool.group.member_id in shards[tool.shard].members and \
                    tool.subgroup not in blocked:
                held.setdefault(tool.subgroup, {})[tool.group.member_id] = repr(sorted(tool.items.items()))
        return held

    @staticmethod
    def _blocked(tools: list[Any]) -> set[str]:
        """Subgroups blocked for good: fewer than a quorum of the view their members hold are still
        in it (two failures in a subgroup of three: a joiner whose state sender was cut off gives up
        too). A vs group then blocks by design; its shard is safe but unavailable, so what the
        check demands of its progress does not apply."""
        present: dict[str, set[str]] = {}
        views: dict[str, tuple[str, ...]] = {}
        for tool in tools:
            handle = tool.node.groups.get(tool.subgroup) if tool.subgroup is not None else None
            if handle is not None:
                present.setdefault(tool.subgroup, set()).add(handle.member_id)
                if handle.view is not None:
                    views[tool.subgroup] = handle.view.members
        return {name for name, members in views.items() if not is_quorum(members, present[name])}

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the check -----------------------------------------------------------------------------------

    def check(self, tools: list[Any]) -> None:
        super().check(tools)  # the root: every member holds the same placement
        for shard, subgroups in sorted(self.lineages.items()):
            if len(subgroups) > 1:
                self.problems.add(f"shard {shard} was served by more than one subgroup: {sorted(subgroups)}")
        for key, began, returned, value, subgroup in self.reads:
            self._check_read(key, began, returned, value, subgroup)
        blocked = self._blocked(tools)
        for index, shard in enumerate(tools[0].shards if tools else []):
            if shard.joining and shard.subgroup(NAME, index) not in blocked:
                self.problems.add(f"members placed in shard {index} never came to hold it: {shard.joining}")
        for subgroup, held in sorted(self._held(tools, blocked).items()):
            if len(set(held.values())) > 1:
                self.problems.add(f"the members of {subgroup} end with different items: {held}")

    def _check_read(self, key: str, began: float, returned: float, value: Any, subgroup: str) -> None:
        item = self.items.get(key, _Item())
        before = [v for v, at in item.acked if at <= began]
        floor = max(before) if before else None
        written = {v for v, at in item.issued if at <= returned}
        if floor is not None and (value is None or value < floor):
            self.problems.add(f"a read of {key} from {subgroup} returned {value!r}, but {floor} was "
                              f"acknowledged before it began")
        elif value is not None and value not in written:
            self.problems.add(f"a read of {key} from {subgroup} returned {value!r}, never written")
