"""``Client``: use a group from outside it (docs/guide/clients.md; 1991 §2.3, client–server groups).

A client is not a member: it is in no view and counts in no quorum, and a group can have many
more clients than members. It casts to the group with the atomicity a member gets (a request
reaches every member or none, exactly once, even if the member it entered through fails), waits
for a reply, follows the group's views and hears the group's diffusions; when its server fails it
binds to another member without the program noticing. The protocol is ``core.client`` (this side)
and ``vsgroups.served`` (the members' side); this module drives the client's core over the
transport, as ``api.Node`` drives a member's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .api import _decode, _encode, _load_key
from .core import Config
from .core import events as ev
from .core.client import CLIENT_ORDERS, Acked, Bound, ClientCore, Diffused, Expired, Replied
from .errors import NotAMember, UnknownOrdering, VsgroupsError
from .transport.base import Transport
from .transport.tcp import TcpTransport

log = logging.getLogger("vsgroups.client")

BIND_TIMEOUT = 30.0  # seconds ``Client.bind`` waits by default for a member to serve it
WINDOW = 64  # requests a client has under way in a group before ``cast`` waits


class ClientExpired(NotAMember):
    """The group declared this client gone (it was silent for the suspect timeout): nothing it sends
    is delivered any more. Start a new ``Client``; the outcome of its requests in flight is unknown."""


class NoReply(VsgroupsError, TimeoutError):
    """No member answered a client's request within the timeout (the request is delivered all the
    same, once, unless the client stops first)."""


@dataclass(frozen=True, slots=True)
class Diffusion:
    """A server's ``Group.diffuse``, as a client receives it. ``number`` counts the group's
    diffusions in delivery order; ``missed`` is how many before it never reached this client (its
    server changed and the new one no longer held them: rare, see docs/guide/clients.md)."""

    group: str
    number: int
    msg_id: str
    sender: str
    payload: Any
    missed: int = 0


class ClientGroup:
    """A client's handle on one group. Obtain it from ``Client.bind``."""

    def __init__(self, client: Client, name: str, events: bool) -> None:
        self.client = client
        self.name = name
        self.members: tuple[str, ...] = ()  # the group's view, as the client's server told it
        self.view: str | None = None
        self.server: str | None = None  # the member serving this client
        self.active = True
        self._bound = asyncio.Event()
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._room = asyncio.Event()
        self._room.set()
        self._streams: list[asyncio.Queue[Diffusion | None]] = []
        self._from_bind: asyncio.Queue[Diffusion | None] | None = self._stream() if events else None
        self._error: VsgroupsError | None = None

    @property
    def last_diffusion(self) -> int:
        """The number of the group's last diffusion this client holds: the last it received, or
        the last the group had delivered when it bound (it receives those after)."""
        binding = self.client._core.groups.get(self.name)
        return binding.diffusions if binding is not None else 0

    async def cast(self, payload: Any, order: str = "total") -> None:
        """Send ``payload`` to the group; returns once the group delivered it (every member did, or
        will: it is atomic). Waits while ``WINDOW`` requests are under way."""
        await (await self._submit(payload, order))[1]

    async def post(self, payload: Any) -> None:
        """Post ``payload`` to the group: it is delivered once, as a cast is, and diffused — to every
        member as a ``Delivery`` of kind "diffusion" (with ``client`` set) and to every client as a
        ``Diffusion`` (news: 1987a §4.3). Returns once the group delivered it."""
        await (await self._submit(payload, "safe", diffuse=True))[1]

    async def request(self, payload: Any, order: str = "total", timeout: float = 5.0) -> Any:
        """Send ``payload`` and return the first reply a member sends (``Group.reply``). The request
        is delivered once, as a cast is (if no member answers, it goes on to be delivered); the reply
        comes as soon as the member answers, without waiting for the request to be stable: a
        point-to-point reply is that member's word, which the group may not share if it fails right
        after (a multicast reply is stable, hence the group's). Raises ``NoReply`` after ``timeout``
        seconds."""
        seq, _ = await self._submit(payload, order, reply=True)
        reply = self._replies[seq] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                return await reply
        except TimeoutError:
            raise NoReply(f"no member of group {self.name!r} answered request {seq} within {timeout}s") \
                from None
        finally:
            self._replies.pop(seq, None)
            if self.active:
                self.client._core.forget_reply(self.name, seq)

    def diffusions(self) -> _Diffusions:
        """The group's diffusions from now on: ``async for d in group.diffusions()``. If the group was
        bound with ``events=True``, the first call returns those recorded from the bind instead."""
        first, self._from_bind = self._from_bind, None
        return _Diffusions(self, first or self._stream())

    async def unbind(self) -> None:
        """Stop being a client of the group (the group declares it gone once it is silent)."""
        self._end(NotAMember(f"this client unbound from group {self.name!r}"))
        self.client._core.unbind(self.name)

    # -- internals -----------------------------------------------------------------------------------

    async def _submit(self, payload: Any, order: str, diffuse: bool = False,
                      reply: bool = False) -> tuple[int, asyncio.Future[None]]:
        """Send a request; its number, and the future its acknowledgement completes."""
        if order not in CLIENT_ORDERS:
            raise UnknownOrdering(f"a client's requests are totally ordered: use 'total' or 'safe', not "
                                  f"{order!r}")
        while self._check() and len(self._acks) >= self.client.window:
            self._room.clear()
            await self._room.wait()
        client = self.client
        data = _encode(payload)
        seq: int = client._call(lambda core, now: core.request(self.name, order, data, now, diffuse, reply))
        acked = self._acks[seq] = asyncio.get_running_loop().create_future()
        return seq, acked

    def _check(self) -> bool:
        if self._error is not None:
            raise self._error
        return True

    def _stream(self) -> asyncio.Queue[Diffusion | None]:
        queue: asyncio.Queue[Diffusion | None] = asyncio.Queue()
        self._streams.append(queue)
        return queue

    def _on(self, out: Bound | Acked | Replied | Diffused | Expired) -> None:
        if isinstance(out, Acked):
            fut = self._acks.pop(out.seq, None)
            if fut is not None and not fut.done():
                fut.set_result(None)
            self._room.set()
        elif isinstance(out, Replied):
            reply = self._replies.get(out.seq)
            if reply is not None and not reply.done():
                reply.set_result(_decode(out.payload))
        elif isinstance(out, Diffused):
            d = Diffusion(out.group, out.number, out.mid, out.sender, _decode(out.payload), out.missed)
            for queue in self._streams:
                queue.put_nowait(d)
        elif isinstance(out, Bound):
            self.server, self.view, self.members = out.server, out.view, out.members
            self._bound.set()
        else:
            self._end(ClientExpired(f"group {self.name!r} declared client {self.client.pid} gone: "
                                    f"{out.reason}"))

    def _end(self, exc: VsgroupsError) -> None:
        if not self.active:
            return
        self.active = False
        self._error = exc
        self.client.groups.pop(self.name, None)
        for fut in [*self._acks.values(), *self._replies.values()]:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: a call that gave up waiting (a timeout) never will
        self._acks.clear()
        self._room.set()
        self._bound.set()
        for queue in self._streams:
            queue.put_nowait(None)


class _Diffusions:
    """An async iterator over a client's diffusions; it ends when the client leaves the group."""

    def __init__(self, group: ClientGroup, queue: asyncio.Queue[Diffusion | None]) -> None:
        self._group = group
        self._queue = queue

    def __aiter__(self) -> _Diffusions:
        return self

    async def __anext__(self) -> Diffusion:
        item = await self._queue.get()
        if item is None:
            self.close()
            raise StopAsyncIteration
        return item

    def close(self) -> None:
        if self._queue in self._group._streams:
            self._group._streams.remove(self._queue)


class Client:
    """A client process: ``async with Client("c1", seeds=[...], key_file=...) as client:``, then
    ``group = await client.bind("kv")``. ``seeds`` are addresses of members; the cluster key is the
    members' (every frame is authenticated). ``listen`` is where the members' answers arrive."""

    def __init__(self, name: str, seeds: Iterable[str], *, key: bytes | str | None = None,
                 key_file: str | os.PathLike[str] | None = None, listen: str = "127.0.0.1:0",
                 config: Config | None = None, tick: float = 0.005, window: int = WINDOW) -> None:
        self.name = name
        self.seeds = list(seeds)
        self.key = _load_key(key, key_file)
        self.listen = listen
        self.config = config or Config()
        self.tick_interval = tick
        self.window = window
        self.groups: dict[str, ClientGroup] = {}
        self._core: ClientCore
        self._transport: Transport | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop

    @property
    def pid(self) -> str:
        return self._core.pid

    @property
    def address(self) -> str:
        if self._transport is None:
            raise RuntimeError("the client is not started")
        return self._transport.address

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport = self._make_transport()
        await self._transport.start()
        inc = int(self._wall_clock() * 1000)
        self._core = ClientCore(self.name, inc, self._transport.address, self.config)
        self._ticker = self._loop.create_task(self._tick_loop())

    async def bind(self, group: str, timeout: float | None = BIND_TIMEOUT, events: bool = False,
                   history: int = 0, seeds: Iterable[str] | None = None) -> ClientGroup:
        """Become a client of ``group``; returns once a member serves this client. ``events=True``
        records the group's diffusions from the bind for the first ``diffusions()`` stream, which then
        begins with the last ``history`` diffusions before the bind (as many as the members still
        hold, up to ``served.DIFFUSION_HISTORY``): a subscriber's replay, with no gap and no duplicate
        between it and what follows. ``seeds``: addresses of the group's members to ask instead of
        the client's seeds (a group that runs on some of the nodes only: ``tools.HierarchyClient``)."""
        if self._transport is None:
            raise RuntimeError("start the client first (async with Client(...))")
        if group in self.groups:
            raise ValueError(f"this client is already bound to group {group!r}")
        handle = self.groups[group] = ClientGroup(self, group, events)
        asked = list(seeds) if seeds is not None else self.seeds
        self._call(lambda core, now: core.bind(group, asked, now, history))
        try:
            async with asyncio.timeout(timeout):
                await handle._bound.wait()
        except TimeoutError:
            await handle.unbind()
            raise TimeoutError(f"no member of group {group!r} served client {self.pid} within {timeout}s "
                               f"(seeds {', '.join(asked)})") from None
        handle._check()
        return handle

    async def close(self) -> None:
        for group in list(self.groups.values()):
            group._end(NotAMember(f"client {self.name} was closed"))
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._transport is not None:
            await self._transport.close()

    # -- driving the core ----------------------------------------------------------------------------

    def _make_transport(self) -> Transport:
        """Real TCP; the simulator puts its own network here (``sim.aio``)."""
        return TcpTransport(self.listen, self.key, self._on_frame, max_frame=self.config.max_frame,
                            on_read_done=self._act)

    def _wall_clock(self) -> float:
        return time.time()

    def _now(self) -> float:
        return self._loop.time()

    def _call(self, fn: Any) -> Any:
        result = fn(self._core, self._now())
        self._schedule()
        return result

    def _on_frame(self, data: bytes) -> None:
        self._core.receive(data, self._now())

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._deferred)

    def _deferred(self) -> None:
        self._scheduled = False
        self._act()

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            self._core.tick(self._now())
            self._act()

    def _act(self) -> None:
        """Act on the core's outputs (after a read, a tick, or in the round a call scheduled)."""
        assert self._transport is not None
        for out in self._core.take_outputs():
            if isinstance(out, ev.Transmit):
                self._transport.send(out.addr, out.data)
            elif (group := self.groups.get(out.group)) is not None:
                group._on(out)
