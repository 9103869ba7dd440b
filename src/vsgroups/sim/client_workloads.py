"""Seeded fault runs of a group's clients: ``vsgroups sim --workload client`` (docs/guide/clients.md).

The members of a vs group serve a handful of clients (``vsgroups.Client`` on the simulated
network) while the faults of ``sim.workloads`` strike the members; the clients also crash now and
then, and come back as new incarnations. Every client casts and sends requests whose reply comes
point to point or by multicast, and reads the group's diffusions, which the members send at
random. What must hold:

* every member applies each client request at most once, a client's requests in the order it
  made them, without a gap; every cast a client saw return is applied by every member at the end
  (atomicity, exactly once, even when its server failed);
* a reply is the answer to its own request, and a request answered by multicast is answered even
  if the member that should have answered fails (another, which saw it pending, does);
* each client receives the group's diffusions in the group's numbering, none with another's
  payload, none skipped, and a live client has them all at the end;
* a client that crashed is declared gone by every member, and one that runs is served.

The broken variant applies a duplicate of a request (a copy resent after a rebind) a second time.
``--workload diffusion`` runs diffusion groups the same way: members that diffuse, clients that
only listen.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import TYPE_CHECKING, Any

from ..api import Delivery, Replica, ViewChange
from ..client import ClientExpired, ClientGroup, NoReply
from ..errors import VsgroupsError
from ..served import ClientTable, Serving
from .aio import SimClient, SimNode
from .workload_base import CONFIG, Problems, Workload

if TYPE_CHECKING:
    from .workloads import _Run

GROUP = "tool"
REQUEST_TIMEOUT = 5.0  # virtual seconds: a failure's detection, a rebind and a takeover fit in it


class _Server(Replica):
    """A member's part: a log of what it applied; it answers the requests of the clients it serves,
    and takes over the multicast answers of a member that failed before giving them."""

    def __init__(self, node: SimNode) -> None:
        self.node = node
        self.log: list[list[Any]] = []  # ["client", client, seq, id] and ["diffusion", number, payload]
        self.pending: dict[str, Delivery] = {}  # multicast requests not yet answered, by id
        self.settled = True  # what ``sim.workloads`` waits for (a plain group is always settled)
        self.diffused = 0

    @property
    def group(self) -> Any:
        return self.node.groups[GROUP]

    def snapshot(self) -> Any:
        return self.log

    async def leave(self) -> None:
        await self.group.leave()

    def apply(self, msg: Delivery) -> None:
        if msg.kind == "client":
            self.log.append(["client", msg.client, msg.request, msg.payload["id"]])
            if msg.payload["multicast"]:
                self.pending[msg.payload["id"]] = msg
            if self.group.serves(msg):
                self._answer(msg)
        elif msg.kind == "reply":
            self.pending.pop(msg.payload[1]["id"], None)
        elif msg.kind == "diffusion":
            self.log.append(["diffusion", msg.request, msg.payload])

    def view_changed(self, view: ViewChange) -> None:
        # the requests still pending were answered by nobody yet: the members now serving their
        # clients answer them (a second answer is harmless: the client takes the first)
        for msg in list(self.pending.values()):
            if self.group.serves(msg):
                self._answer(msg)

    def _answer(self, msg: Delivery) -> None:
        group = self.group  # the handle: the node may have left the group when the task runs
        reply = [group.member_id, msg.payload]

        async def answer() -> None:
            with contextlib.suppress(VsgroupsError):
                await group.reply(msg, reply, multicast=msg.payload["multicast"])

        asyncio.get_running_loop().create_task(answer())

    def get_state(self) -> Any:
        return [self.log, [[m.client, m.request, m.payload, m.msg_id, m.sender, m.view]
                           for m in self.pending.values()]]

    def set_state(self, state: Any) -> None:
        self.log = state[0]
        self.pending = {p["id"]: Delivery(GROUP, mid, sender, "total", view, p, "client", client, seq)
                        for client, seq, p, mid, sender, view in state[1]}


class _NoDedup(ClientTable):
    """Applies every copy of a request, the second copy of a resent one too."""

    def request(self, client: str, seq: int) -> bool | None:
        entry = self.clients.get(client)
        if entry is None:
            return None
        entry.done = max(entry.done, seq)
        return True


class _Actor:
    """One simulated client process, across its incarnations."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.client: SimClient | None = None
        self.group: ClientGroup | None = None
        self.task: asyncio.Task[None] | None = None
        self.received: dict[str, list[tuple[int, Any, int]]] = {}  # incarnation: diffusions
        self.ended: list[str] = []  # incarnations that crashed or were declared gone
        self.steps = 0
        self.stopped = False  # the load is over
        self.resting = False  # ...and this actor's last operation is done

    def incarnations_ended(self) -> set[str]:
        ended = set(self.ended)
        if self.group is not None and not self.group.active and self.client is not None:
            ended.add(self.client.pid)  # declared gone while resting
        return ended


class ClientWorkload(Workload):
    tool = broken = _Server  # the broken variant is in the members' client table (``_NoDedup``)
    models = ("vs",)

    def __init__(self, broken: bool, problems: Problems) -> None:
        super().__init__(broken, problems)
        self.broken_variant = broken
        self.actors: list[_Actor] = []
        self.acked: set[str] = set()  # ids of casts that returned: their delivery was acknowledged
        self.run: _Run | None = None
        self.rng = random.Random(0)

    async def join(self, node: SimNode, model: str) -> Any:
        server = _Server(node)
        group = await node.join(GROUP, server, model=model, timeout=None)
        if self.broken_variant:
            group._serving.table.__class__ = _NoDedup
        return server

    async def operate(self, tool: Any, rng: random.Random) -> None:
        if rng.random() < 0.3:
            tool.diffused += 1
            await tool.group.diffuse(f"{tool.group.member_id}/d{tool.diffused}")

    # -- the clients ---------------------------------------------------------------------------------

    def begin(self, run: _Run) -> None:
        self.run = run
        self.rng = random.Random(f"{run.spec.seed}/clients")
        for i in range(self.rng.randint(3, 6)):
            actor = _Actor(f"c{i + 1}")
            self.actors.append(actor)
            actor.task = run.loop.create_task(self._live(actor))
            actor.task.add_done_callback(run._failed)

    async def _live(self, actor: _Actor) -> None:
        """Incarnation after incarnation: bind, then load until a crash (or the group expires it)."""
        assert self.run is not None
        run = self.run
        rng = random.Random(f"{run.spec.seed}/client/{actor.name}")
        while not actor.stopped:
            client = actor.client = SimClient(run.net, actor.name, run.addresses, config=CONFIG)
            await client.start()
            try:
                group = actor.group = await self._bind(client, rng)
                received = actor.received[client.pid] = []
                follower = run.loop.create_task(self._follow(group, received))
                try:
                    if await self._load(actor, group, rng):  # the load is over: rest, bound, until closed
                        actor.resting = True
                        await asyncio.Event().wait()
                finally:
                    follower.cancel()
            except ClientExpired:
                actor.ended.append(client.pid)
            finally:
                await client.close()
            await asyncio.sleep(rng.uniform(0.2, 0.8))
        actor.resting = True

    async def _bind(self, client: SimClient, rng: random.Random) -> ClientGroup:
        return await client.bind(GROUP, timeout=None, events=True)

    async def _follow(self, group: ClientGroup, received: list[tuple[int, Any, int]]) -> None:
        async for d in group.diffusions():
            received.append((d.number, d.payload, d.missed))

    async def _load(self, actor: _Actor, group: ClientGroup, rng: random.Random) -> bool:
        """Steps of load until a crash (False) or the end of the load (True)."""
        assert actor.client is not None and self.run is not None
        pid = actor.client.pid
        while not actor.stopped:
            await asyncio.sleep(rng.expovariate(1 / 0.04))
            if actor.stopped:
                break
            if rng.random() < 0.02:  # a crash: the group must notice it by itself
                actor.ended.append(pid)
                return False
            actor.steps += 1
            self.run.outcome.ops += 1
            await self._step(f"{pid}/{actor.steps}", group, rng)
        return True

    async def _step(self, rid: str, group: ClientGroup, rng: random.Random) -> None:
        """A cast, or a request answered point to point or by multicast."""
        payload = {"id": rid, "multicast": rng.random() < 0.5}
        if rng.random() < 0.4:
            await group.cast(payload)
            self.acked.add(rid)
            return
        try:
            reply = await group.request(payload, timeout=REQUEST_TIMEOUT)
        except NoReply:
            if payload["multicast"]:
                self.problems.add(f"request {rid}, answered by multicast, got no answer within "
                                  f"{REQUEST_TIMEOUT}s")
            return  # a point-to-point answer is lost with the member that should send it
        if reply[1] != payload:
            self.problems.add(f"request {payload} was answered {reply}")

    def stop_load(self) -> None:
        for actor in self.actors:
            actor.stopped = True

    def _ended(self) -> set[str]:
        return {pid for a in self.actors for pid in a.incarnations_ended()}

    def quiet(self, tools: list[Any]) -> bool:
        """Every client rests (its last request is done), has every diffusion, and those that
        crashed are declared gone."""
        if not all(a.resting for a in self.actors):
            return False
        count = sum(1 for entry in tools[0].log if entry[0] == "diffusion") if tools else 0
        ended = self._ended()
        for actor in self.actors:
            if actor.client is not None and actor.client.pid not in ended and actor.group is not None:
                if actor.group.last_diffusion < count:
                    return False
        return not any(ended & set(t.group.clients) for t in tools)

    async def close(self) -> None:
        for actor in self.actors:
            if actor.task is not None:
                actor.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await actor.task

    # -- the check -----------------------------------------------------------------------------------

    def check(self, tools: list[Any]) -> None:
        super().check(tools)
        for tool in tools:
            self._check_log(tool)
        diffusions = {}
        for entry in tools[0].log if tools else []:
            if entry[0] == "diffusion":
                diffusions[entry[1]] = entry[2]
        if sorted(diffusions) != list(range(1, len(diffusions) + 1)):
            self.problems.add(f"the diffusions are not numbered 1..n: {sorted(diffusions)}")
        ended = self._ended()
        for actor in self.actors:
            for pid, received in actor.received.items():
                self._check_received(pid, received, diffusions)
            if actor.client is not None and actor.client.pid not in ended and actor.group is not None:
                if actor.group.last_diffusion != len(diffusions):
                    self.problems.add(f"client {actor.client.pid} ends at diffusion "
                                      f"{actor.group.last_diffusion} of {len(diffusions)}")
        for tool in tools:
            still = ended & set(tool.group.clients)
            if still:
                self.problems.add(f"{tool.group.member_id} still serves clients that crashed: "
                                  f"{sorted(still)}")

    def _check_log(self, tool: Any) -> None:
        member = tool.group.member_id
        seen: dict[str, int] = {}
        applied: dict[str, int] = {}
        for entry in tool.log:
            if entry[0] != "client":
                continue
            _, client, seq, rid = entry
            applied[rid] = applied.get(rid, 0) + 1
            if seq != seen.get(client, 0) + 1:
                self.problems.add(f"{member} applied request {seq} of {client} after {seen.get(client, 0)}")
            seen[client] = max(seen.get(client, 0), seq)
        twice = sorted(rid for rid, n in applied.items() if n > 1)
        if twice:
            self.problems.add(f"{member} applied requests more than once: {twice[:5]}")
        lost = sorted(self.acked - set(applied))
        if lost:
            self.problems.add(f"{member} never applied requests whose delivery was acknowledged: {lost[:5]}")

    def _check_received(self, pid: str, received: list[tuple[int, Any, int]],
                        diffusions: dict[int, Any]) -> None:
        for number, payload, missed in received:
            if diffusions.get(number) != payload:
                self.problems.add(f"client {pid} received diffusion {number} as {payload!r}, the group "
                                  f"delivered {diffusions.get(number)!r}")
            if missed:
                self.problems.add(f"client {pid} missed {missed} diffusions before number {number}")


class _NoReplay(Serving):
    """A server that binds a client again without replaying the diffusions it missed."""

    def bound(self, body: list[Any], sender: str) -> None:
        super().bound([*body[:3], True, *body[4:]], sender)  # as if the client were new


class DiffusionWorkload(ClientWorkload):
    """Diffusion groups (1991 §2.3): the members diffuse, the clients only listen, across the
    members' faults and their own crashes. The check is the client workload's; the broken variant
    does not replay to a client that binds again what it missed."""

    async def join(self, node: SimNode, model: str) -> Any:
        server = _Server(node)
        group = await node.join(GROUP, server, model=model, timeout=None)
        if self.broken_variant:
            group._serving.__class__ = _NoReplay
        return server

    async def operate(self, tool: Any, rng: random.Random) -> None:
        tool.diffused += 1
        await tool.group.diffuse(f"{tool.group.member_id}/d{tool.diffused}")

    async def _step(self, rid: str, group: ClientGroup, rng: random.Random) -> None:
        pass  # a listener


class _NoHistory(Serving):
    """A board that replays no history to a new subscriber."""

    def bound(self, body: list[Any], sender: str) -> None:
        super().bound([*body[:5], 0, *body[6:]], sender)


class NewsWorkload(DiffusionWorkload):
    """News (1987a §4.3): members and clients post, subscribers come and go (each incarnation of a
    client subscribes anew, with a history of 0 to 30 postings). Besides the client workload's
    checks, a subscriber's stream begins with the history it asked for: its first posting is at
    most ``history`` before the last one the board had delivered when it subscribed. The broken
    variant replays no history."""

    def __init__(self, broken: bool, problems: Problems) -> None:
        super().__init__(broken, problems)
        self.asked: dict[str, tuple[int, int]] = {}  # client: (history, postings delivered by then)

    async def join(self, node: SimNode, model: str) -> Any:
        server = _Server(node)
        group = await node.join(GROUP, server, model=model, timeout=None)
        if self.broken_variant:
            group._serving.__class__ = _NoHistory
        return server

    async def operate(self, tool: Any, rng: random.Random) -> None:
        if rng.random() < 0.5:
            await super().operate(tool, rng)

    async def _bind(self, client: SimClient, rng: random.Random) -> ClientGroup:
        history = rng.randint(0, 30)
        group = await client.bind(GROUP, timeout=None, events=True, history=history)
        assert self.run is not None
        # the board's count when the bind returned: the server numbered the history before it
        delivered = max(sum(1 for e in m.tool.log if e[0] == "diffusion")
                        for m in self.run.members.values() if m.tool is not None)
        self.asked[client.pid] = (history, delivered)
        return group

    async def _step(self, rid: str, group: ClientGroup, rng: random.Random) -> None:
        if rng.random() < 0.3:
            await group.post(rid)

    def check(self, tools: list[Any]) -> None:
        super().check(tools)
        for actor in self.actors:
            for pid, received in actor.received.items():
                history, delivered = self.asked[pid]
                first = received[0][0] if received else None
                if history and delivered and (first is None or first > max(1, delivered - history + 1)):
                    self.problems.add(f"subscriber {pid} asked for {history} postings of history with "
                                      f"{delivered} delivered, and its stream begins at {first}")
