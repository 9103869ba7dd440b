"""The API's own runtime in the simulator: ``api.Node``, and everything built on it (the toolkit,
applications), on a virtual clock and the simulated network, as a pure function of a seed.

The ``Simulation`` of ``cluster.py`` drives ``NodeCore`` objects directly, which is what the
protocol sweeps need. Code written against the public API needs the asyncio runtime itself: its
tasks, futures, timeouts and the ``Node``'s own driver. So here the runtime runs unchanged, and only
what lies beneath it is replaced:

* ``VirtualLoop`` is an asyncio event loop whose clock is virtual: when no callback is ready it
  jumps to the next timer instead of waiting for it. Nothing real happens in between (no socket,
  no thread), so a run takes its virtual time in however little real time it needs, and callbacks
  run in an order that depends only on the program and the seed.
* ``SimNetwork`` carries frames between nodes with the latency, omission faults and partitions of
  ``network.Network``; ``SimNode`` is a ``Node`` whose transport is a port on it and whose wall
  clock is the virtual one (incarnation numbers and trace times).

A crash is ``Node.abort`` (no leave, a trace without ``stop``), after which frames in flight to the
node are lost; a restart is a new ``SimNode`` of the same name.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import selectors
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

from ..api import Node
from ..client import Client
from ..transport.base import Transport
from .network import Network

T = TypeVar("T")

#: Virtual seconds since the epoch at the start of every run: incarnation numbers look like real ones.
EPOCH = 1_700_000_000.0


class Deadlock(RuntimeError):
    """Every task waits for something that nothing scheduled can bring: the run cannot go on."""


class _VirtualSelector(selectors.BaseSelector):
    """The loop's selector: no file ever becomes ready; a wait for ``timeout`` moves the clock."""

    def __init__(self, loop: VirtualLoop) -> None:
        self._loop = loop
        self._keys: dict[Any, selectors.SelectorKey] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        key = self._keys[fileobj] = selectors.SelectorKey(fileobj, fd, events, data)
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._keys.pop(fileobj)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise Deadlock("nothing is scheduled and every task waits: the run cannot go on")
        self._loop.advance(timeout)
        return []

    def get_map(self) -> Any:
        return self._keys

    def close(self) -> None:
        self._keys.clear()


class VirtualLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time (see the module docstring). Errors that reach the loop's
    exception handler (a callback or a forgotten task that failed) are kept in ``errors``."""

    def __init__(self) -> None:
        self._virtual = 0.0
        super().__init__(_VirtualSelector(self))
        self._clock_resolution = 1e-9
        self.errors: list[str] = []
        self.set_exception_handler(self._record)

    def time(self) -> float:
        return self._virtual

    def advance(self, seconds: float) -> None:
        self._virtual += seconds

    def _record(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        what = context.get("task") or context.get("future")
        self.errors.append(f"{context.get('message')}{f' ({what!r})' if what else ''}"
                           f"{f': {exc!r}' if exc else ''}")


class SimNetwork:
    """The nodes' ports, by address, over a ``Network`` (latency, faults, partitions)."""

    def __init__(self, loop: VirtualLoop, seed: int,
                 latency: tuple[float, float] = (0.0002, 0.002)) -> None:
        self.loop = loop
        self.net = Network(random.Random(f"{seed}/net"), latency)
        self.ports: dict[str, SimPort] = {}
        self.frames = 0
        self._next = 0

    def address(self) -> str:
        self._next += 1
        return f"sim:{self._next}"

    def partition(self, *components: Iterable[str]) -> None:
        """Split the network between these groups of addresses (an unnamed one is in the first)."""
        self.net.partition(components)

    def heal(self) -> None:
        self.net.reconnect()

    def _carry(self, src: str, dst: str, payload: bytes) -> None:
        self.frames += 1
        for at in self.net.arrivals(src, dst, self.loop.time()):
            self.loop.call_at(at, self._arrive, src, dst, payload)

    def _arrive(self, src: str, dst: str, payload: bytes) -> None:
        port = self.ports.get(dst)
        if port is not None and self.net.connected(src, dst):
            port.on_frame(payload)
            if port.on_read_done is not None:
                port.on_read_done()


class SimPort:
    """A node's transport on a ``SimNetwork`` (``transport.base.Transport``)."""

    def __init__(self, network: SimNetwork, address: str, on_frame: Callable[[bytes], None],
                 on_read_done: Callable[[], None] | None) -> None:
        self.network = network
        self._address = address
        self.on_frame = on_frame
        self.on_read_done = on_read_done
        self.closed = False

    @property
    def address(self) -> str:
        return self._address

    async def start(self) -> None:
        self.network.ports[self._address] = self

    def send(self, addr: str, payload: bytes) -> None:
        if self.closed:
            raise RuntimeError("the port is closed")
        self.network._carry(self._address, addr, payload)

    def link(self, addr: str) -> str:
        return "connected" if addr in self.network.ports and self.network.net.connected(
            self._address, addr) else "cannot connect (simulated)"

    def rtt(self, addr: str) -> float | None:
        return None

    def pending_bytes(self, addr: str) -> int:
        return 0

    async def close(self) -> None:
        self.closed = True
        if self.network.ports.get(self._address) is self:
            del self.network.ports[self._address]


class _Simulated:
    """What puts a ``Node`` or a ``Client`` on a ``SimNetwork``: the transport and the wall clock."""

    network: SimNetwork
    sim_address: str
    _on_frame: Callable[[bytes], None]
    _act: Callable[[], None]

    def _make_transport(self) -> Transport:
        return SimPort(self.network, self.sim_address, self._on_frame, self._act)

    def _wall_clock(self) -> float:
        return EPOCH + self.network.loop.time()


class SimNode(_Simulated, Node):
    """A ``Node`` on a ``SimNetwork``: same runtime, simulated transport, virtual wall clock. Its
    address is fixed at creation (``listen`` is ignored), so that a restart keeps it."""

    def __init__(self, network: SimNetwork, name: str, seeds: Iterable[str] = (),
                 address: str | None = None, **options: Any) -> None:
        super().__init__(name, seeds=seeds, key=b"simulated", **options)
        self.network = network
        self.sim_address = address or network.address()


class SimClient(_Simulated, Client):
    """A ``Client`` on a ``SimNetwork`` (``seeds``: the members' simulated addresses)."""

    def __init__(self, network: SimNetwork, name: str, seeds: Iterable[str], **options: Any) -> None:
        super().__init__(name, seeds, key=b"simulated", **options)
        self.network = network
        self.sim_address = network.address()


def run(main: Callable[[VirtualLoop], Coroutine[Any, Any, T]], limit: float = 600.0) -> T:
    """Run ``main(loop)`` to completion on a fresh ``VirtualLoop`` and close the loop. A run still
    going after ``limit`` virtual seconds raises ``TimeoutError`` (timers keep virtual time moving
    even when every task waits for ever)."""
    loop = VirtualLoop()

    async def bounded() -> T:
        try:
            return await asyncio.wait_for(main(loop), limit)
        except TimeoutError:
            raise TimeoutError(f"the simulated run did not end within {limit} virtual seconds") from None

    try:
        return loop.run_until_complete(bounded())
    finally:
        # as asyncio.run does: what is still pending is cancelled and given a moment to finish
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            with contextlib.suppress(Deadlock):
                loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
        loop.close()
