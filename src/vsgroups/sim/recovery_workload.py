"""Seeded fault runs of the recovery manager: ``vsgroups sim --workload recovery``
(docs/guide/recovery-manager.md).

The members of a vs group keep a running total under ``RecoveryManager``, each with a directory of
its own that survives its crashes, and take coordinated checkpoints now and then, while the member
faults of ``sim.workloads`` strike (a member that restarts finds the group alive and just rejoins).
Then the group fails totally, one member after the other, a checkpoint being taken by the
survivors between two failures, so the members' disks hold older and newer checkpoints. They come
back in the order they failed, the first alone for long enough to open the recovery meeting
itself. What must hold: the group restarts from the newest checkpoint — the state every member
holds at the end is the state of the highest-numbered checkpoint on any disk, with that number.

The broken variant does not wait for the processes that failed last: it restarts the group from
the newest checkpoint among the processes that came back, which is the first failed one's.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..api import Delivery, Replica
from ..recovery import LastToFail, ViewRecord
from ..tools.recovery_manager import MEETING_WAIT, RecoveryManager
from .aio import SimNode
from .workload_base import Problems, Workload

if TYPE_CHECKING:
    from .workloads import _Run


class Total(Replica):
    """The managed state of the runs (and of the recovery manager's tests): a sum of the casts."""

    def __init__(self) -> None:
        self.total = 0

    def apply(self, msg: Delivery) -> None:
        self.total += msg.payload

    def get_state(self) -> Any:
        return self.total

    def set_state(self, state: Any) -> None:
        self.total = state


class _Managed(RecoveryManager):
    """What the run needs of a member's tool: its state, leaving, and being settled."""

    settled = True

    def snapshot(self) -> Any:
        replica = self.replica
        assert isinstance(replica, Total)
        return [self.number, replica.total]

    async def leave(self) -> None:
        assert self.group is not None
        await self.group.leave()


def _impatient(last_views: Mapping[str, ViewRecord | None]) -> LastToFail:
    answered = frozenset(name for name, view in last_views.items() if view is not None)
    return LastToFail(True, answered, frozenset(), None)


class _Impatient(_Managed):
    """Decides as soon as anyone answered: restarts from the newest checkpoint of those back."""

    last_to_fail = staticmethod(_impatient)


class RecoveryWorkload(Workload):
    tool, broken = _Managed, _Impatient
    models = ("vs",)

    def __init__(self, broken: bool, problems: Problems) -> None:
        super().__init__(broken, problems)
        self.expected: tuple[int, int] | None = None  # the newest checkpoint on any disk: (number, state)

    async def join(self, node: SimNode, model: str) -> Any:
        # each member's disk, among the run's traces (a temporary directory unless kept)
        disk = Path(node.trace_dir or ".") / "disks" / node.name
        return await self.cls.join(node, "tool", Total(), disk, model=model)

    async def operate(self, tool: Any, rng: random.Random) -> None:
        if rng.random() < 0.1:
            await tool.checkpoint()
        else:
            await tool.group.cast(rng.randint(1, 9))

    async def after(self, run: _Run, tools: list[Any]) -> list[Any]:
        """The total failure, one member after the other, and the restart (see the module docstring)."""
        rng = random.Random(f"{run.spec.seed}/total-failure")
        members = list(run.members.values())
        rng.shuffle(members)
        for i, member in enumerate(members):
            if 0 < i < len(members) - 1:  # the survivors write a newer one (the last alone cannot:
                await members[-1].tool.checkpoint()  # it is no quorum of its view)
            await member.node.abort()
            await asyncio.sleep(rng.uniform(1.0, 2.0))  # the others log a view without it
        stored = [m.tool.stored() for m in members if m.tool is not None]
        self.expected = max((s for s in stored if s is not None), default=(0, 0))
        for member in members:
            member.node = run._node(member.name, member.node.sim_address)
            await member.node.start()

        async def back(member: Any, delay: float) -> None:
            await asyncio.sleep(delay)
            member.tool = await self.join(member.node, "vs")

        await asyncio.gather(*(back(m, 0.0 if i == 0 else MEETING_WAIT + 5 + rng.uniform(0, 1))
                               for i, m in enumerate(members)))
        return [m.tool for m in members]

    def check(self, tools: list[Any]) -> None:
        super().check(tools)
        assert self.expected is not None
        for tool in tools:
            if tuple(tool.snapshot()) != self.expected:
                self.problems.add(f"{tool.group.member_id} restarts from checkpoint {tool.snapshot()}, not "
                                  f"from the newest one {list(self.expected)} (recovered from "
                                  f"{tool.recovered_from})")
