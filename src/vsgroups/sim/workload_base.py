"""What every simulated workload shares (``sim.workloads`` runs them): the checks' record of
problems, and the base of a workload — how members join the thing under test, use it, and what
must hold of their states."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from ..api import ViewChange
from ..core import Config

if TYPE_CHECKING:
    from .aio import SimNode
    from .workloads import _Run

MODELS = ("vs", "evs")
FINAL_LIMIT = 30.0  # virtual seconds for the group to settle after the final heal
CONFIG = Config(suspect_timeout=0.5)

class Problems:
    """What a run found wrong, each once."""

    def __init__(self) -> None:
        self.found: dict[str, None] = {}

    def add(self, text: str) -> None:
        self.found.setdefault(text, None)


def _digest(state: Any) -> str:
    return hashlib.sha256(msgpack.packb(state, default=repr)).hexdigest()[:16]


class _Recording:
    """Mixed into a tool: records its state each time a view settles here (the per-view check) —
    while it is current: a reconciliation that ends in the transitional configuration after its
    own (evs) ends in another state by design (nothing is granted there, say), like its component's."""

    record: Callable[[str, str, str], None] = staticmethod(lambda view, member, digest: None)
    group: Any
    snapshot: Callable[[], Any]  # the tool's

    def settled_view(self, view: ViewChange) -> None:
        super().settled_view(view)  # type: ignore[misc]
        current = self.group.view
        if current is not None and current.view == view.view:
            self.record(view.view, self.group.member_id, _digest(self.snapshot()))


class Workload:
    """A tool under test: how members join it and use it, and what must hold."""

    tool: type[Any]
    broken: type[Any]
    models: tuple[str, ...] = MODELS  # the group models it runs in
    nodes = (3, 5)  # how many nodes a run starts with, at least and at most

    def __init__(self, broken: bool, problems: Problems) -> None:
        self.cls = self.broken if broken else self.tool
        self.problems = problems
        self.at_view: dict[str, dict[str, str]] = {}  # view: member: digest

    async def join(self, node: SimNode, model: str) -> Any:
        tool = await self.cls.join(node, "tool", model=model, timeout=None)
        tool.record = self._record
        return tool

    def _record(self, view: str, member: str, digest: str) -> None:
        self.at_view.setdefault(view, {})[member] = digest

    async def operate(self, tool: Any, rng: random.Random) -> None:
        raise NotImplementedError

    def begin(self, run: _Run) -> None:
        """The first members have joined: a workload with actors of its own starts them."""

    async def after(self, run: _Run, tools: list[Any]) -> list[Any]:
        """After the load, before the check: a workload's own epilogue (the tools to check)."""
        return tools

    def stop_load(self) -> None:
        """The end: the load stops (the members' own is cancelled by the run)."""

    async def close(self) -> None:
        """After the check: stop the workload's own actors."""

    def quiet(self, tools: list[Any]) -> bool:
        """Nothing of the load is still under way (the end waits for it, within its limit)."""
        return True

    def check(self, tools: list[Any]) -> None:
        for view, digests in sorted(self.at_view.items()):
            if len(set(digests.values())) > 1:
                self.problems.add(f"members that settled view {view} hold different states: {digests}")
        finals = {t.group.member_id: _digest(t.snapshot()) for t in tools}
        if len(set(finals.values())) > 1:
            self.problems.add(f"the members end with different states: {finals}")


