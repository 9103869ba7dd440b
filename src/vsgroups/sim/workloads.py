"""Seeded fault runs of the toolkit: ``vsgroups sim --workload TOOL``.

Each tool of ``vsgroups.tools`` runs as the very code a program runs over TCP, on the API's own
runtime in the simulator (``aio``), on 3–5 nodes that use it at random while faults strike:
crashes (and restarts as new incarnations), partitions and heals, frame loss, duplication and delay
spikes, brand-new nodes joining, members leaving and coming back. Then the network heals, every
node rejoins, the group settles into one view, and the tool's own guarantee is checked — along the
way (per view) and at the end — besides the trace checker (``vsgroups check``).

In vs a group blocks, legitimately, once a quorum of its view is gone; such a run proves nothing.
So vs runs disturb one node at a time (a crash, a partition that cuts it off, a leave) and let the
group settle before the next; evs runs take any faults, since every component goes on.

Every tool comes with a *broken* variant (``--broken``): the same tool with one deliberate mistake,
which the check must catch in some seeds — the proof that the check can fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api import ViewChange
from ..check import check_dir
from ..errors import VsgroupsError
from ..tools import Cohort, LockService, ReplicatedDict, Split, Token, Watch
from .aio import SimNetwork, SimNode, VirtualLoop, run
from .client_workloads import ClientWorkload, DiffusionWorkload, NewsWorkload
from .hierarchy_workload import HierarchyWorkload
from .recovery_workload import RecoveryWorkload
from .workload_base import CONFIG, FINAL_LIMIT, Problems, Workload, _digest, _Recording


@dataclass(frozen=True)
class WorkloadSpec:
    """One run: a pure function of these fields."""

    seed: int
    tool: str
    model: str = "vs"
    duration: float = 4.0  # virtual seconds of load and faults
    broken: bool = False

    def __post_init__(self) -> None:
        if self.tool not in WORKLOADS:
            raise ValueError(f"unknown workload {self.tool!r}: use one of {', '.join(WORKLOADS)}")
        if self.model not in WORKLOADS[self.tool].models:
            models = " or ".join(WORKLOADS[self.tool].models)
            raise ValueError(f"the {self.tool} workload runs in model {models}, not {self.model!r}")

    def command(self) -> str:
        extra = f" --model {self.model}" if self.model != "vs" else ""
        extra += " --broken" if self.broken else ""
        return f"vsgroups sim --workload {self.tool} --seed {self.seed}{extra}"


@dataclass
class WorkloadOutcome:
    spec: WorkloadSpec
    problems_found: list[str] = field(default_factory=list)  # the tool's guarantee, and the trace checker
    ops: int = 0
    faults: int = 0
    incarnations: int = 0
    virtual: float = 0.0
    cpu_time: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems_found

    def problems(self) -> list[str]:
        return self.problems_found

    def verdict(self) -> str:
        return (f"seed {self.spec.seed}: {'OK' if self.ok else 'FAILED'} - {self.spec.tool} "
                f"({self.spec.model}{', broken' if self.spec.broken else ''}), {self.incarnations} "
                f"incarnations, {self.faults} faults, {self.ops} operations; {self.virtual:.1f}s "
                f"virtual in {self.cpu_time:.2f}s of CPU")


# -- the tools under test ------------------------------------------------------------------------------


class _CheckedDict(_Recording, ReplicatedDict):
    def snapshot(self) -> Any:
        return sorted(super().snapshot(), key=repr)


class _BrokenDict(_CheckedDict):
    """Updates in fifo order: each sender's in its order, but two senders' writes to one key may be
    applied in different orders at different members."""

    order = "fifo"


class DictWorkload(Workload):
    """Random writes (set, delete, update) to a few keys from every member; every member that
    settles a view holds the same dictionary then, and at the end all members hold the same one."""

    tool: type[Any] = _CheckedDict
    broken: type[Any] = _BrokenDict

    async def operate(self, tool: Any, rng: random.Random) -> None:
        key = f"k{rng.randrange(4)}"
        roll = rng.random()
        if roll < 0.7:
            await tool.set(key, rng.randrange(1000))
        elif roll < 0.85:
            await tool.delete(key)
        else:
            await tool.update({key: rng.randrange(1000), f"k{rng.randrange(4)}": "u"})


class _CheckedLocks(_Recording, LockService):
    grants: Callable[[str, str, str, int, list[Any]], None] = staticmethod(
        lambda member, resource, request, fence, holders: None)

    def granted(self, resource: str, request: str, member: str, fence: int) -> None:
        holders = [r for r in self.queues[resource] if r[2] is not None]  # with this grant
        self.grants(self.group.member_id, resource, request, fence, holders)


class _BrokenLocks(_CheckedLocks):
    """A lock granted on request receipt rather than in one order: requests in fifo order, so
    members queue two members' requests in different orders and give one fencing number to
    different requests."""

    order = "fifo"


class LockWorkload(Workload):
    """Every member acquires one of two locks (to read, shared, or to write), holds it a moment and
    releases it. A writer never holds a lock with another holder. Each fencing
    number is granted to one request, the same at every member that grants it, and every member
    grants in increasing order (no two holders with one number, no stale number reused); members
    that settle a view hold the same queues then, and all the same at the end."""

    tool, broken = _CheckedLocks, _BrokenLocks

    def __init__(self, broken: bool, problems: Problems) -> None:
        super().__init__(broken, problems)
        self.fences: dict[int, tuple[str, str]] = {}  # fence: (resource, request)
        self.last: dict[str, int] = {}  # member: the last fencing number it granted

    async def join(self, node: SimNode, model: str) -> Any:
        tool = await super().join(node, model)
        tool.grants = self._granted
        return tool

    def _granted(self, member: str, resource: str, request: str, fence: int, holders: list[Any]) -> None:
        writers = [r[0] for r in holders if not r[3]]
        if writers and (len(holders) > len(writers) or len(writers) > 1):  # r0 and r1 are locks
            self.problems.add(f"{member} granted {resource} to writer {writers} with other holders "
                              f"{[r[0] for r in holders]}")
        first = self.fences.setdefault(fence, (resource, request))
        if first != (resource, request):
            self.problems.add(f"fencing number {fence} granted to {first} and, at {member}, to "
                              f"{(resource, request)}")
        if fence <= self.last.get(member, 0):
            self.problems.add(f"{member} granted fencing number {fence} after {self.last[member]}")
        self.last[member] = fence

    async def operate(self, tool: Any, rng: random.Random) -> None:
        grant = await asyncio.wait_for(tool.acquire(f"r{rng.randrange(2)}", shared=rng.random() < 0.4), 2.0)
        try:
            await asyncio.sleep(rng.uniform(0.0, 0.05))
        finally:
            await tool.release(grant)


class _SuspicionWatch(Watch):
    """Departures from the failure detector instead of the views: a member learns of one when it
    suspects it, at a point of its own, perhaps in a view that still holds it."""

    def __init__(self, group: Any) -> None:
        super().__init__(group)
        self._reported: set[str] = set()
        self._poll = asyncio.get_running_loop().create_task(self._suspect())

    async def _suspect(self) -> None:
        core = self.group.node._core
        while True:
            await asyncio.sleep(0.005)
            view = self.group.view
            for member in sorted(self._members - self._reported):
                if view is not None and core.suspects(member):
                    self._reported.add(member)
                    self._departed([member], view)

    async def _follow(self) -> None:
        async for event in self._events:
            if isinstance(event, ViewChange) and event.kind == "regular":
                self._members = set(event.members)


class WatchWorkload(DictWorkload):
    """Every member watches every other (``tools.Watch``) while the dictionary workload runs. A
    departure is reported with a view that no longer holds the member, and (vs) two watchers that
    saw the member go from one view learn of it at the same next view."""

    tool, broken = _CheckedDict, _CheckedDict

    def __init__(self, broken: bool, problems: Problems) -> None:
        super().__init__(broken, problems)
        self.watch_cls = _SuspicionWatch if broken else Watch
        self.model = "vs"
        self.learned: dict[tuple[str, str], dict[str, str]] = {}  # (member, view before): watcher: view

    async def join(self, node: SimNode, model: str) -> Any:
        self.model = model
        tool = await super().join(node, model)
        watcher = tool.group.member_id

        def departed(member: str, view: ViewChange) -> None:
            if member in view.members:
                self.problems.add(f"{watcher} was told {member} departed in view {view.view}, which "
                                  f"holds it")
            before = (view.previous or "").rpartition("~")[2]  # the regular view it came from
            if before and member != watcher:  # not a joiner's first view, nor its own exclusion
                self.learned.setdefault((member, before), {})[watcher] = view.view

        self.watch_cls(tool.group).on_departure(departed)
        return tool

    def check(self, tools: list[Any]) -> None:
        super().check(tools)
        if self.model == "evs":
            return  # members of one configuration may go to different ones: each learns at its own
        for (member, before), views in sorted(self.learned.items()):
            if len(set(views.values())) > 1:
                self.problems.add(f"watchers that saw {member} in view {before} learned of its departure "
                                  f"at different views: {views}")


class _CheckedToken(_Recording, Token):
    moves: Callable[[str, str | None, int, str], None] = staticmethod(lambda member, holder, gen, view: None)

    def moved(self, holder: str | None, generation: int) -> None:
        view = self.group.view
        self.moves(self.group.member_id, holder, generation, view.view if view else "")


class _BrokenToken(_CheckedToken):
    """A token regenerated by whoever notices that its holder is gone, on its own: each member
    that sees the holder's view change makes itself the holder."""

    def settled_view(self, view: ViewChange) -> None:
        if view.primary and self.holder not in view.members:
            self.holder = self.group.member_id
            self.generation += 1
        super().settled_view(view)


class TokenWorkload(Workload):
    """The holder passes the token on after a moment; the others wait for it. Members that settle
    a view agree on the holder, who is a member of it (one token), and a generation never goes
    back at any member."""

    tool, broken = _CheckedToken, _BrokenToken

    def __init__(self, broken: bool, problems: Problems) -> None:
        super().__init__(broken, problems)
        self.generations: dict[str, int] = {}  # member: the last generation it saw

    async def join(self, node: SimNode, model: str) -> Any:
        tool = await super().join(node, model)
        tool.moves = self._moved
        return tool

    def _moved(self, member: str, holder: str | None, generation: int, view: str) -> None:
        if generation < self.generations.get(member, 0):
            self.problems.add(f"{member} saw the token's generation go back to {generation}")
        self.generations[member] = generation

    async def operate(self, tool: Any, rng: random.Random) -> None:
        await asyncio.wait_for(tool.wait(), 2.0)
        await asyncio.sleep(rng.uniform(0.0, 0.03))
        await tool.pass_on()

    def check(self, tools: list[Any]) -> None:
        super().check(tools)  # members that settle a view agree on the holder there
        holders = {t.group.member_id: t.holder for t in tools}
        view = tools[0].group.view if tools else None
        if view is not None and not view.primary:  # evs: the primary component can be lost for good
            if set(holders.values()) != {None}:
                self.problems.add(f"a token outside the primary component: {holders}")
        elif view is None or len(set(holders.values())) != 1 or \
                next(iter(holders.values())) not in view.members:
            self.problems.add(f"the members end without one token held by one of them: {holders}")


class _CheckedCohort(_Recording, Cohort):
    replies: Callable[[str, str, Any, str], None] = staticmethod(lambda member, rid, result, view: None)

    def apply_op(self, op: list[Any], sender: str) -> Any:
        if op[0] == "reply" and op[1] in self.pending:  # the reply that answers it here
            view = self.group.view
            self.replies(self.group.member_id, op[1], op[2], view.view if view else "")
        return super().apply_op(op, sender)


class _BrokenCohort(_CheckedCohort):
    """No cohort takes over: a request whose coordinator fails is never answered."""

    def settled_view(self, view: ViewChange) -> None:
        pass


class CohortWorkload(Workload):
    """Members send requests; the handler answers with the handling member's id. The members that
    survive take the same reply for a request (in evs: those that take it in one configuration), so
    the caller gets one result, theirs; and at the end no request of a member still running is
    unanswered. (A member that fails may have taken another reply first: a total order binds only
    the members that survive.)"""

    tool: type[Any] = _CheckedCohort
    broken: type[Any] = _BrokenCohort

    def __init__(self, broken: bool, problems: Problems) -> None:
        super().__init__(broken, problems)
        self.answers: list[tuple[str, str, Any, str]] = []  # member, request, reply, view
        self.model = "vs"

    async def join(self, node: SimNode, model: str) -> Any:
        self.model = model
        async def handler(payload: Any) -> Any:
            await asyncio.sleep(0.02)  # some work: a crash may strike meanwhile
            return [node.name, payload]

        tool = await self.cls.join(node, "tool", handler, model=model, timeout=None)
        tool.record = self._record
        tool.replies = lambda member, rid, result, view: self.answers.append((member, rid, result, view))
        return tool

    async def operate(self, tool: Any, rng: random.Random) -> None:
        await asyncio.wait_for(tool.request(rng.randrange(1000)), 3.0)

    def _stuck(self, tool: Any, members: set[str]) -> list[str]:
        return [rid for rid in tool.pending if rid.rpartition("/")[0] in members]

    def quiet(self, tools: list[Any]) -> bool:
        members = {t.group.member_id for t in tools}
        return not any(self._stuck(t, members) for t in tools)

    def check(self, tools: list[Any]) -> None:
        super().check(tools)
        members = {t.group.member_id for t in tools}
        taken: dict[tuple[str, str], dict[str, Any]] = {}
        for member, rid, result, view in self.answers:
            if member in members:
                key = (rid, view if self.model == "evs" else "")
                taken.setdefault(key, {})[member] = result
        for (rid, view), results in sorted(taken.items()):
            if len({repr(r) for r in results.values()}) > 1:
                where = f" in view {view}" if view else ""
                self.problems.add(f"request {rid} was answered differently{where}: {results}")
        for tool in tools:
            stuck = self._stuck(tool, members)
            if stuck:
                self.problems.add(f"requests of running members never answered, at "
                                  f"{tool.group.member_id}: {stuck}")


class _CheckedSplit(_Recording, Split):
    pass


class _BrokenSplit(_CheckedSplit):
    """The shares of a member that fails are not re-issued: its queries never complete."""

    def settled_view(self, view: ViewChange) -> None:
        pass


class SplitWorkload(CohortWorkload):
    """Members send queries split over the view; each share answers ``payload * 100 + share``. Every
    answer holds each share's part once, in order, and no share of a running member's query is
    left unanswered at the end."""

    tool, broken = _CheckedSplit, _BrokenSplit

    async def join(self, node: SimNode, model: str) -> Any:
        self.model = model

        async def share(payload: Any, i: int, shares: int) -> Any:
            await asyncio.sleep(0.02)  # some work: a crash may strike meanwhile
            return payload * 100 + i

        tool = await self.cls.join(node, "tool", share, model=model, timeout=None)
        tool.record = self._record
        return tool

    async def operate(self, tool: Any, rng: random.Random) -> None:
        payload = rng.randrange(1000)
        parts = await asyncio.wait_for(tool.query(payload), 3.0)
        if parts != [payload * 100 + i for i in range(len(parts))] or not parts:
            self.problems.add(f"query {payload} was answered {parts}")


WORKLOADS: dict[str, type[Workload]] = {
    "cohort": CohortWorkload, "dict": DictWorkload, "lock": LockWorkload, "split": SplitWorkload,
    "token": TokenWorkload, "watch": WatchWorkload, "client": ClientWorkload,
    "diffusion": DiffusionWorkload, "news": NewsWorkload, "recovery": RecoveryWorkload,
    "hierarchy": HierarchyWorkload,
}


# -- the run -----------------------------------------------------------------------------------------


class _Member:
    def __init__(self, name: str, node: SimNode) -> None:
        self.name = name
        self.node = node
        self.tool: Any = None
        self.client: asyncio.Task[None] | None = None


class _Run:
    def __init__(self, spec: WorkloadSpec, loop: VirtualLoop, trace_dir: Path, outcome: WorkloadOutcome,
                 problems: Problems) -> None:
        self.spec = spec
        self.loop = loop
        self.trace_dir = trace_dir
        self.outcome = outcome
        self.rng = random.Random(f"{spec.seed}/workload")
        self.net = SimNetwork(loop, spec.seed)
        self.workload = WORKLOADS[spec.tool](spec.broken, problems)
        self.members: dict[str, _Member] = {}
        self.addresses: list[str] = []
        self.down: set[str] = set()  # crashed, not yet restarted
        self.away: set[str] = set()  # left the group, not yet back
        self.cut = False  # a partition is on
        self.names = 0

    def _node(self, name: str, address: str | None = None) -> SimNode:
        node = SimNode(self.net, name, address=address, trace_dir=self.trace_dir, config=CONFIG, found=False)
        node.seeds = self.addresses  # shared: a node asks every node there is when it joins
        self.outcome.incarnations += 1
        return node

    async def start(self) -> None:
        for _ in range(self.rng.randint(*self.workload.nodes)):
            self.names += 1
            name = f"n{self.names}"
            node = self._node(name)
            self.addresses.append(node.sim_address)
            self.members[name] = _Member(name, node)
        first = True
        for member in self.members.values():
            member.node.found = first
            first = False
            await member.node.start()
            await self._join(member)
        self.workload.begin(self)

    async def _join(self, member: _Member) -> None:
        member.tool = await self.workload.join(member.node, self.spec.model)
        member.client = self.loop.create_task(self._client(member))
        member.client.add_done_callback(self._failed)

    async def _client(self, member: _Member) -> None:
        rng = random.Random(f"{self.spec.seed}/client/{member.name}/{self.outcome.incarnations}")
        while True:
            await asyncio.sleep(rng.expovariate(1 / 0.05))
            try:
                await self.workload.operate(member.tool, rng)
                self.outcome.ops += 1
            except (VsgroupsError, TimeoutError):
                await asyncio.sleep(0.2)  # blocked, excluded, leaving, waiting long: try again later

    # -- faults ---------------------------------------------------------------------------------------

    def _calm(self) -> bool:
        """vs: nothing disturbed now, and the group in one view of every running member."""
        up = [m for m in self.members.values() if m.name not in self.down | self.away]
        views = {m.tool.group.view.view if m.tool and m.tool.group.view else None for m in up}
        return not (self.down or self.away or self.cut) and len(views) == 1 and None not in views

    async def faults(self) -> None:
        end = self.loop.time() + self.spec.duration
        while self.loop.time() < end:
            await asyncio.sleep(self.rng.uniform(0.2, 0.6))
            if self.spec.model == "vs" and not self._calm():
                continue
            kind = self.rng.choice(["crash", "partition", "loss", "dup", "spike", "join", "leave"])
            self.outcome.faults += 1
            await getattr(self, f"fault_{kind}")()

    def _take_out(self, into: set[str]) -> _Member | None:
        """A running member (never the last), its load stopped, marked as down or away."""
        up = [m for m in self.members.values() if m.name not in self.down | self.away and m.tool]
        if len(up) < 2:
            return None
        member = self.rng.choice(up)
        into.add(member.name)
        if member.client is not None:
            member.client.cancel()
        return member

    async def fault_crash(self) -> None:
        member = self._take_out(self.down)
        if member is not None:
            await self.crash(member)

    async def crash(self, member: _Member) -> None:
        """Crash ``member``; it restarts a moment later as a new incarnation."""
        self.down.add(member.name)
        if member.client is not None:
            member.client.cancel()
        await member.node.abort()
        self.loop.call_later(self.rng.uniform(0.5, 1.5), self._spawn, self._restart(member))

    async def _restart(self, member: _Member) -> None:
        member.node = self._node(member.name, member.node.sim_address)
        await member.node.start()
        await self._join(member)
        self.down.discard(member.name)

    async def fault_partition(self) -> None:
        addrs = [m.node.sim_address for m in self.members.values()]
        self.rng.shuffle(addrs)
        cut = 1 if self.spec.model == "vs" else self.rng.randint(1, len(addrs) - 1)
        self.net.partition(addrs[cut:], addrs[:cut])  # vs: one node alone, the majority goes on
        self.cut = True
        self.loop.call_later(self.rng.uniform(0.5, 1.5), self._heal)

    def _heal(self) -> None:
        self.net.heal()
        self.cut = False

    async def fault_loss(self) -> None:
        self._degrade("loss", self.rng.uniform(0.01, 0.1))

    async def fault_dup(self) -> None:
        self._degrade("dup", self.rng.uniform(0.01, 0.1))

    async def fault_spike(self) -> None:
        self._degrade("spike", self.rng.uniform(0.01, 0.2))

    def _degrade(self, kind: str, value: float) -> None:
        addrs = [m.node.sim_address for m in self.members.values()]
        links = [(a, b) for a in addrs for b in addrs if a != b and self.rng.random() < 0.5]
        self.net.net.degrade(kind, links, value, self.loop.time() + self.rng.uniform(0.2, 1.0))

    async def fault_join(self) -> None:
        if len(self.members) >= 7:
            return
        self.names += 1
        name = f"n{self.names}"
        node = self._node(name)
        self.addresses.append(node.sim_address)
        member = self.members[name] = _Member(name, node)
        self.away.add(name)  # until it holds the state
        await node.start()
        self._spawn(self._come_back(member))

    async def fault_leave(self) -> None:
        member = self._take_out(self.away)
        if member is None:
            return
        with contextlib.suppress(VsgroupsError):
            await member.tool.leave()
        self.loop.call_later(self.rng.uniform(0.3, 1.0), self._spawn, self._come_back(member))

    async def _come_back(self, member: _Member) -> None:
        await self._join(member)
        self.away.discard(member.name)

    def _spawn(self, work: Any) -> None:
        self.loop.create_task(work).add_done_callback(self._failed)

    def _failed(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.workload.problems.add(f"a task of the run failed: {task.exception()!r}")

    # -- the end --------------------------------------------------------------------------------------

    async def finish(self) -> list[Any]:
        """Heal, let every node come back, wait for one settled view of all, stop the load."""
        self.net.heal()
        self.net.net.calm()
        self.cut = False
        deadline = self.loop.time() + FINAL_LIMIT
        while self.loop.time() < deadline:
            await asyncio.sleep(0.05)
            if self._calm() and all(m.tool.settled and m.tool.group.view.kind == "regular" and
                                    len(m.tool.group.members) == len(self.members)
                                    for m in self.members.values()):
                break
        else:
            views = {m.name: (m.tool.group.view, m.tool.settled) if m.tool else None
                     for m in self.members.values()}
            self.workload.problems.add(f"the group did not settle into one view of all {len(self.members)} "
                                       f"nodes within {FINAL_LIMIT}s of the final heal: {views}")
        for member in self.members.values():
            if member.client is not None:
                member.client.cancel()
        self.workload.stop_load()
        tools = [m.tool for m in self.members.values()]
        while self.loop.time() < deadline + 10:  # the operations in flight are applied everywhere
            if len({_digest(t.snapshot()) for t in tools}) == 1 and self.workload.quiet(tools):
                break
            await asyncio.sleep(0.01)
        return tools


def run_workload(spec: WorkloadSpec, trace_dir: str | Path | None = None) -> WorkloadOutcome:
    outcome = WorkloadOutcome(spec)
    problems = Problems()
    started = time.process_time()
    with tempfile.TemporaryDirectory(prefix="vsgroups-workload-") as tmp:
        traces = Path(trace_dir) if trace_dir is not None else Path(tmp)
        traces.mkdir(parents=True, exist_ok=True)

        async def main(loop: VirtualLoop) -> None:
            sim = _Run(spec, loop, traces, outcome, problems)
            await sim.start()
            await sim.faults()
            tools = await sim.workload.after(sim, await sim.finish())
            sim.workload.check(tools)
            await sim.workload.close()
            for member in sim.members.values():
                await member.node.close()
            outcome.virtual = loop.time()
            problems.found.update(dict.fromkeys(loop.errors))

        try:
            run(main, limit=spec.duration + 120)
        except Exception as exc:  # the run itself broke: that is a finding too
            problems.add(f"the run raised {exc!r}")
        outcome.cpu_time = time.process_time() - started
        problems.found.update(dict.fromkeys(
            str(v) for v in check_dir(traces, live=False, model=spec.model)))
    outcome.problems_found = list(problems.found)
    return outcome
