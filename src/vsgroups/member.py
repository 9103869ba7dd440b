"""``vsgroups node``: one member process, driven by a controller over stdin and stdout.

Multi-process tests and the demo need real OS processes that can be SIGKILLed, SIGSTOPped and
restarted, running a service whose replicas can be compared afterwards. This is that process: a
``vsgroups.Node`` whose groups each run a small replicated key-value store, an optional steady
workload of casts in every ordering, and a line protocol for a controller (``vsgroups.procs``).

Stdout carries one JSON object per line, each with an ``ev`` field: ``ready`` (listening, with the
process identity and address, and whether it recovered from its ``--data-dir``), ``view`` (members in
age order: the coordinator first), ``joined`` (member of the group, with its state, and the last view
it logged before this start, with the process's member id ``pid`` in the group), ``rejoin`` (the
process was excluded from group ``g`` and joins it again as the member ``pid``; its other groups go
on), ``flushing (the core promised a ballot: a view change is under way), ``eof`` (stdin
ended), ``stopping`` (a graceful stop began, with its ``reason``), ``stopped`` (with ``clean``: every
group was left), and the answers to commands. Logs go to stderr.

Stdin carries commands, one per line: ``load on|off``, ``flush``, ``digest``, ``stats``,
``leave G`` and ``quit``. End of input ends the command channel, not the node: the process runs
until it is signalled (or told to ``quit``). ``--rate`` starts the workload at once; with
``--load-paused`` it waits for ``load on``.

Stopping is graceful: SIGTERM, SIGINT, ``quit`` (or, with ``--parent-pid``, the controller's exit)
stop the workload and close the node (``Node.close``): casts already accepted go out, every group is
left, and the trace ends with ``leave`` per group, then ``stop``; the exit status is 0. If the
leaves do not complete within ``--close-timeout`` (a minority that blocks cannot leave), the node
stops anyway, its trace ends like a crash (no ``stop``) and the exit status is 3. A second SIGTERM
or SIGINT during the graceful stop forces it: the node stops at once, its trace ends like a crash,
and the exit status is 128 + the signal number. A failed task makes the status 1.

The store applies only total and safe messages (puts), so equal digests at a consistent cut show
that every replica applied the same puts in the same order; fifo and causal casts are there for the
trace checker. ``digest`` is a group RPC: each replica answers when the query is delivered, at the
same point of the total order everywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import hashlib
import itertools
import json
import logging
import os
import random
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from .api import ALL, CLOSE_TIMEOUT_FACTOR, Delivery, Group, Node, Replica, ViewChange
from .core import Config
from .core.wire import ORDERS
from .errors import GroupBlocked, NotAMember, QueryFailed
from .oplog import JsonFormatter

KEYS = 64  # members write overlapping keys, so the final values depend on the delivery order
RETRY = 0.05
QUERY_TIMEOUT = 10.0
CHECKPOINT = 0.2
PARENT_POLL = 0.5
EXIT_UNCLEAN = 3  # the node stopped without having left every group: its trace ends like a crash

log = logging.getLogger("vsgroups.member")


def emit(ev: str, **fields: Any) -> None:
    """One status line for the controller."""
    with contextlib.suppress(BrokenPipeError):  # the controller is gone; we run until signalled
        print(json.dumps({"ev": ev, **fields}, separators=(",", ":")), flush=True)


class KvStore(Replica):
    """A replicated dict: total and safe casts ``{"k", "v", "pad"}`` are puts."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.data: dict[str, str] = {}
        self.delivered = 0

    def apply(self, msg: Delivery) -> None:
        self.delivered += 1
        if msg.order in ("total", "safe"):
            self.data[msg.payload["k"]] = msg.payload["v"]

    def get_state(self) -> dict[str, str]:
        return dict(self.data)

    def set_state(self, state: Any) -> None:
        self.data = dict(state or {})

    def query(self, msg: Delivery) -> dict[str, Any]:
        return {"digest": self.digest(), "n": len(self.data)}

    def view_changed(self, view: ViewChange) -> None:
        emit("view", g=self.group, view=view.view, members=list(view.members), prev=view.previous,
             kind=view.kind, primary=view.primary)

    def block(self, view: str) -> None:
        emit("flushing", g=self.group, view=view)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(sorted(self.data.items())).encode()).hexdigest()


class _Membership:
    """This process's part in one group: its store, whether it is joined now, its workload."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.store = KvStore(name)
        self.handle: Group | None = None
        self.ready = asyncio.Event()  # joined with state, in the current incarnation
        self.casting = asyncio.Lock()  # held while the workload is inside a cast
        self.load: asyncio.Task[None] | None = None

    async def wait_ready(self) -> Group:
        await self.ready.wait()
        assert self.handle is not None
        return self.handle


class Member:
    """The member process: a node, its groups, the workload and the command loop."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        config = Config() if args.suspect_timeout is None else Config(suspect_timeout=args.suspect_timeout)
        self.node = Node(args.name, listen=args.listen, seeds=args.seeds, key_file=args.key_file,
                         trace_dir=args.trace, config=config, found=True if args.found else None,
                         data_dir=args.data_dir, close_timeout=args.close_timeout,
                         metrics_port=args.metrics_port)
        self.node.on_rejoin = self._on_rejoin
        self.groups = {name: _Membership(name) for name in args.groups}
        self.load_on = asyncio.Event()
        self.stopping = asyncio.Event()
        self.reason = ""  # why the member stops
        self.force = asyncio.Event()  # a signal during the graceful stop: stop at once
        self.forced_by: int | None = None
        self.failed = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self.rng = random.Random()
        self.pad = bytes(args.size)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a task of the member failed", exc_info=task.exception())
            self.failed = True
            self.request_stop("a task failed")

    def request_stop(self, reason: str) -> None:
        if not self.stopping.is_set():
            self.reason = reason
            self.stopping.set()

    def _signalled(self, sig: int) -> None:
        if self.stopping.is_set():
            self.forced_by = sig  # during the graceful stop: force it
            self.force.set()
        else:
            self.request_stop(signal.Signals(sig).name)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._signalled, sig)
        await self.node.start()
        emit("ready", pid=self.node.pid, addr=self.node.address, recovered=self.node.recovered)
        self._read_commands(loop)
        if self.args.parent_pid is not None:
            self.spawn(self._watch_parent(self.args.parent_pid))
        if self.args.data_dir is not None and self.args.model == "evs":
            self.spawn(self._checkpoints())
        for m in self.groups.values():
            self.spawn(self._join(m))
            m.load = self.spawn(self._load(m))
        if not self.args.load_paused:
            self.load_on.set()
        clean = False
        try:
            await self.stopping.wait()
        finally:
            clean = await self._stop()
        if self.failed:
            return 1
        if self.forced_by is not None:
            return 128 + self.forced_by
        return 0 if clean else EXIT_UNCLEAN

    async def _stop(self) -> bool:
        """Stop the workload and close the node gracefully, unless a signal forces it meanwhile;
        True if every group was left (the trace ends with ``stop``)."""
        emit("stopping", reason=self.reason or "cancelled")
        for task in list(self.tasks):
            task.cancel()  # the workload first: no cast starts from here on
        close = asyncio.ensure_future(self.node.close())
        force = asyncio.ensure_future(self.force.wait())
        try:
            await asyncio.wait({close, force}, return_when=asyncio.FIRST_COMPLETED)
            if not close.done():
                await self.node.abort()  # the close under way ends now, like a crash
        finally:
            force.cancel()
        clean = await close
        for task in list(self.tasks):
            task.cancel()  # commands that arrived during the stop
        emit("stopped", clean=clean)
        return clean

    # -- joining and restarting --------------------------------------------------------------------

    async def _join(self, m: _Membership) -> None:
        # a daemon waits for its group as long as it takes (a controller bounds its waits)
        m.handle = await self.node.join(m.name, m.store, model=self.args.model, timeout=None)
        self._joined(m)

    async def _watch_parent(self, pid: int) -> None:
        """Stop gracefully once the controller that started this process has exited (the process
        is no longer its child), so that a controller that dies leaves no members behind."""
        while os.getppid() == pid:
            await asyncio.sleep(PARENT_POLL)
        self.request_stop(f"the parent process {pid} exited")

    async def _rejoined(self, m: _Membership) -> None:
        assert m.handle is not None
        await m.handle.wait_joined()
        self._joined(m)

    def _joined(self, m: _Membership) -> None:
        m.ready.set()
        last = self.node.last_views.get(m.name)
        assert m.handle is not None
        emit("joined", g=m.name, pid=m.handle.member_id, n=len(m.store.data),
             last_view=last.to_json() if last is not None else None)

    def _on_rejoin(self, group: str, reason: str) -> None:
        m = self.groups[group]
        m.handle = self.node.groups[group]  # set even if the first join never returned
        emit("rejoin", g=group, pid=m.handle.member_id, reason=reason)
        m.ready.clear()
        self.spawn(self._rejoined(m))

    async def _checkpoints(self) -> None:
        """Write each store to stable storage every ``CHECKPOINT`` seconds: a process that recovers
        resumes from there (the node itself writes one only at each configuration change)."""
        while True:
            await asyncio.sleep(CHECKPOINT)
            for m in self.groups.values():
                if m.ready.is_set() and m.handle is not None:
                    with contextlib.suppress(NotAMember, GroupBlocked):
                        m.handle.checkpoint()

    # -- workload ----------------------------------------------------------------------------------

    async def _load(self, m: _Membership) -> None:
        """Cast ``--rate`` messages a second while the load is on, cycling through ``--orders``."""
        if self.args.rate <= 0:
            return
        loop = asyncio.get_running_loop()
        orders = itertools.cycle(self.args.orders)
        interval = 1.0 / self.args.rate
        seq = itertools.count(1)
        next_at = loop.time()
        while True:
            await self.load_on.wait()
            handle = await m.wait_ready()
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            next_at = max(next_at + interval, loop.time() - interval)  # no burst after a stall
            async with m.casting:
                if not self.load_on.is_set():
                    continue
                payload = {"k": f"k{self.rng.randrange(KEYS)}", "v": f"{self.node.pid}:{next(seq)}",
                           "pad": self.pad}
                try:
                    await handle.cast(payload, next(orders))
                except (GroupBlocked, NotAMember):
                    pass  # excluded or rejoining: wait_ready() holds the workload until joined again
            if not m.ready.is_set():
                await asyncio.sleep(RETRY)

    # -- commands ----------------------------------------------------------------------------------

    def _read_commands(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read stdin in a daemon thread: it works for pipes, files and terminals alike, and a thread
        blocked in ``readline`` must not hold up the exit."""

        def reader() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: we are exiting anyway
                for line in sys.stdin:
                    loop.call_soon_threadsafe(self._command, line.strip())
                # the end of the commands, not of the node: it runs until signalled
                loop.call_soon_threadsafe(emit, "eof")

        threading.Thread(target=reader, name="stdin", daemon=True).start()

    def _command(self, line: str) -> None:
        word, _, arg = line.partition(" ")
        commands: dict[str, Callable[[str], Coroutine[Any, Any, None]]] = {
            "load": self._cmd_load, "flush": self._cmd_flush, "digest": self._cmd_digest,
            "stats": self._cmd_stats, "leave": self._cmd_leave,
        }
        if self.stopping.is_set():
            if word:
                emit("error", error=f"stopping: {line!r} ignored")
        elif word == "quit":
            self.request_stop("quit")
        elif word in commands:
            self.spawn(commands[word](arg.strip()))
        elif word:
            emit("error", error=f"unknown command {line!r}")

    async def _cmd_load(self, arg: str) -> None:
        if arg not in ("on", "off"):
            emit("error", error=f"load takes 'on' or 'off', not {arg!r}")
            return
        if arg == "on":
            self.load_on.set()
        else:
            self.load_on.clear()
            for m in self.groups.values():
                async with m.casting:
                    pass  # a cast under way has finished: nothing more will be sent
        emit("load", on=arg == "on")

    async def _cmd_flush(self, arg: str) -> None:
        for m in list(self.groups.values()):
            while True:
                handle = await m.wait_ready()
                try:
                    await handle.flush()
                    break
                except (GroupBlocked, NotAMember):
                    await asyncio.sleep(RETRY)
        emit("flushed")

    async def _cmd_digest(self, arg: str) -> None:
        for m in list(self.groups.values()):
            handle = await m.wait_ready()
            try:
                replies = await handle.query(None, replies=ALL, timeout=QUERY_TIMEOUT)
                error = None
            except (QueryFailed, GroupBlocked, NotAMember) as exc:
                replies = getattr(exc, "replies", {})
                error = str(exc)
            mine = replies.get(handle.member_id, {"digest": m.store.digest(), "n": len(m.store.data)})
            emit("digest", g=m.name, pid=handle.member_id, digest=mine["digest"], n=mine["n"],
                 replies={pid: r["digest"] for pid, r in replies.items()}, error=error)

    async def _cmd_stats(self, arg: str) -> None:
        for m in self.groups.values():
            emit("stats", g=m.name, delivered=m.store.delivered, n=len(m.store.data))

    async def _cmd_leave(self, arg: str) -> None:
        m = self.groups.get(arg)
        if m is None:
            emit("error", error=f"not a member of group {arg!r}")
            return
        if m.load is not None:
            m.load.cancel()
        handle = await m.wait_ready()
        del self.groups[arg]
        await handle.leave()
        emit("left", g=arg)


def _address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected host:port, got {value!r}")
    return value


def _orders(value: str) -> list[str]:
    orders = [o for o in value.split(",") if o]
    unknown = [o for o in orders if o not in ORDERS]
    if unknown or not orders:
        raise argparse.ArgumentTypeError(f"orders are a comma-separated list of {', '.join(ORDERS)}")
    return orders


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="vsgroups node", description="Run one member process of a replicated key-value service: "
        "JSON status lines on stdout, commands (load on|off, flush, digest, stats, leave G, quit) on stdin. "
        "Runs until SIGTERM/SIGINT or quit, then leaves its groups; a second signal forces the stop.")
    parser.add_argument("--name", required=True, help="process name (the identity is name#incarnation)")
    parser.add_argument("--listen", type=_address, default="127.0.0.1:0", help="host:port to listen on")
    parser.add_argument("--seeds", type=lambda v: [_address(a) for a in v.split(",") if a], default=[],
                        help="comma-separated addresses of members to ask when joining")
    parser.add_argument("--groups", type=lambda v: [g for g in v.split(",") if g], default=["kv"],
                        help="comma-separated groups to join (default: kv)")
    parser.add_argument("--key-file", required=True, help="file holding the cluster key (frames are HMACed)")
    parser.add_argument("--trace", metavar="DIR", help="write this process's trace to DIR")
    parser.add_argument("--found", action="store_true", help="found the groups if no member answers")
    parser.add_argument("--model", choices=("vs", "evs"), default="vs",
                        help="vs: primary component (default); evs: extended virtual synchrony")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="stable storage: evs groups recover from it with the same identifier")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="casts per second per group (0: none), from the start unless --load-paused")
    parser.add_argument("--load-paused", action="store_true",
                        help="start the --rate workload only on the command 'load on'")
    parser.add_argument("--size", type=int, default=100, help="padding bytes per cast")
    parser.add_argument("--orders", type=_orders, default=list(ORDERS), help="orderings to cycle through")
    parser.add_argument("--suspect-timeout", type=float, help="seconds of silence before a peer is suspected")
    parser.add_argument("--metrics-port", type=int,
                        help="serve Prometheus metrics at http://HOST:PORT/metrics (needs vsgroups[metrics])")
    parser.add_argument("--close-timeout", type=float,
                        help="seconds a graceful stop waits for the groups to be left before it stops like a "
                        f"crash (default: {CLOSE_TIMEOUT_FACTOR} suspect timeouts)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info",
                        help="least severe log records written to stderr (default info: the operator's "
                        "lines of founding, joins, view changes, suspicions, state transfers)")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="stderr log lines as text, or as one JSON object each (with the fields group, "
                        "view and peer)")
    parser.add_argument("--parent-pid", type=int, metavar="PID",
                        help="stop gracefully when process PID (the controller that started this one) exits")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if args.log_format == "json"
                         else logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # a controller's "why are you stuck?"

    async def run() -> int:
        return await Member(args).run()

    return asyncio.run(run())
