"""``vsgroups bench``: throughput, latency and resource use of real member processes on loopback.

Why a separate program and not timed unit tests: numbers only mean something when
they come from a fixed workload, in separate OS processes talking real TCP, measured the same way
as the systems we compare against (Corosync CPG, JGroups, pysyncobj, etcd: ``make bench-compare``).
So this module does what the anchor drivers do, with the public API only:

* The driver starts N bench workers (``python -m vsgroups.bench worker``), each a ``vsgroups.Node``
  on a free 127.0.0.1 port joined to one group with a ``Replica`` that counts deliveries. It talks
  to them over stdin/stdout JSON lines and stops every one by its PID when it is done, even when a
  run fails.
* Throughput: all members (or one, not the sequencer) cast as fast as flow control allows from a
  shared wall-clock start; every member counts the messages it delivers (its own included) whose
  delivery falls inside ``[start + warm-up, start + warm-up + duration)``, and senders go on casting
  for ``tail`` seconds after the window, so the window sees steady state only. After each workload
  every member flushes, so the next one starts quiet. The driver samples ``/proc/<pid>/stat``
  (CPU) and ``/proc/<pid>/status`` (VmRSS, VmHWM) of every member at both edges of the window:
  CPU per delivered message, and RSS at the start and the end of sustained load
  (memory must stay flat).
* Latency: one member that is not the sequencer (so total order pays its real path) casts one
  message at a time and waits for its own delivery; group RPC is the round trip of a ``query``
  with ``ALL`` replies. p50/p99/max after a warm-up.

* The toolkit (``vsgroups.tools``), in groups of their own on the same members: updates per second
  of a ``ReplicatedDict`` written by every member (several writers each, as the throughput
  window above), the round trip of a ``LockService`` acquire and release, and of a ``Cohort``
  request, from one member one at a time.

* Causality across groups (``--only domains``, not in the default run): the members join three
  groups more, two in the default causality domain and one in a domain of its own, and run the
  throughput and latency workloads with every cast going to one group, or switching between two
  groups of one domain (each switch waits for the rule of docs/guide/domains.md), or between two
  groups of different domains (which never wait): throughput switches every ``RUN`` casts, the
  latency probe (one cast at a time) at every cast.

* Clients (``--only clients``, not in the default run): the members serve a group of their own,
  and ``--clients`` client processes' worth of ``vsgroups.Client`` (hosted 100 to a process,
  ``python -m vsgroups.bench clients``) each send requests one at a time, answered point to point
  by the member serving them, through the throughput workloads' warm-up, window and tail: the
  requests answered per second, and the round trips' percentiles.

``--profile DIR`` runs every worker under cProfile and writes ``DIR/<name>.pstats`` and the top of
it as text, to find where the hot path spends its time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .api import ALL, Delivery, Group, Node, Replica, ViewChange
from .client import Client
from .core import Config
from .core.wire import ORDERS
from .procs import free_port
from .tools import Cohort, LockService, ReplicatedDict

GROUP = "bench"
TOOL_GROUPS = {"dict": "bench-dict", "lock": "bench-lock", "cohort": "bench-cohort"}
WORKLOADS = ("tput", "lat", "rpc", "tools", "clients", "domains")  # the last two only with --only
DOMAIN_GROUPS = {"bench-d1": None, "bench-d2": None, "bench-d3": "apart"}  # group: its causality domain
# where the casts of a domains step go: the groups, taken in turn, and how many casts go to one in a row
# (throughput switches every RUN casts; latency, one cast at a time, at every cast)
SPREADS = {"one group": ["bench-d1"], "two groups, one domain": ["bench-d1", "bench-d2"],
           "two groups, two domains": ["bench-d1", "bench-d3"]}
RUN = 100
CLIENT_GROUP = "bench-clients"
CLIENTS_PER_HOST = 100  # client processes host this many clients each
SAMPLES_LINE = 256 << 20  # the longest line a client process writes: every round trip it timed
DICT_WRITERS = 16  # concurrent ReplicatedDict.set loops per member in the dict workload
LAT_WARMUP = 100  # latency and RPC round trips discarded before measuring
GUARD = 60.0  # last-resort timeout of one reply beyond the time a workload needs
START_LEAD = 0.5  # the window's wall-clock start is this far after the command leaves
PROFILE_ENV = "VSGROUPS_BENCH_PROFILE"
PROFILE_LINES = 40


# -- worker ----------------------------------------------------------------------------------------


def _emit(ev: str, **fields: Any) -> None:
    print(json.dumps({"ev": ev, **fields}, separators=(",", ":")), flush=True)


class _Counter(Replica):
    """Counts deliveries inside the measuring window; tells a latency probe its own message arrived."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.lo = self.hi = 0.0
        self.window = 0
        self.views = 0
        self.waiting: tuple[int, asyncio.Future[float]] | None = None

    def apply(self, msg: Delivery) -> None:
        t = time.time()
        if self.lo <= t < self.hi:
            self.window += 1
        waiting = self.waiting
        if waiting is not None and msg.sender == self.node.groups[msg.group].member_id:
            payload = msg.payload
            if isinstance(payload, list) and payload[0] == waiting[0] and not waiting[1].done():
                waiting[1].set_result(time.perf_counter())

    def view_changed(self, view: ViewChange) -> None:
        self.views += 1
        _emit("view", view=view.view, n=len(view.members))


class _CountingDict(ReplicatedDict):
    """A replicated dictionary that counts the updates it applies inside the measuring window."""

    def __init__(self, node: Node, group: str) -> None:
        super().__init__(node, group)
        self.lo = self.hi = 0.0
        self.window = 0

    def apply_op(self, op: list[Any], sender: str) -> Any:
        if self.lo <= time.time() < self.hi:
            self.window += 1
        return super().apply_op(op, sender)


async def _echo(payload: Any) -> Any:
    return payload


class _Answer(Replica):
    """The members' side of the clients workload: the member serving a client answers it."""

    def __init__(self) -> None:
        self.group: Group | None = None

    def apply(self, msg: Delivery) -> None:
        group = self.group
        if msg.kind == "client" and group is not None and group.serves(msg):
            asyncio.get_running_loop().create_task(group.reply(msg, msg.payload))


def _percentiles(samples: list[float]) -> dict[str, float]:
    """p50/p99/max/mean in microseconds, with the anchors' index rule (``s[n // 2]``, ``s[int(n * .99)]``)."""
    s = sorted(samples)
    n = len(s)
    if not n:
        return {"n": 0, "p50_us": 0.0, "p99_us": 0.0, "max_us": 0.0, "mean_us": 0.0}
    return {"n": n, "p50_us": s[n // 2] * 1e6, "p99_us": s[int(n * 0.99)] * 1e6, "max_us": s[-1] * 1e6,
            "mean_us": sum(s) / n * 1e6}


class _Worker:
    """One bench member: a node in the bench group, running the driver's commands one at a time."""

    def __init__(self, args: argparse.Namespace) -> None:
        config = Config() if args.suspect_timeout is None else Config(suspect_timeout=args.suspect_timeout)
        self.node = Node(args.name, listen=args.listen, seeds=args.seeds, key_file=args.key_file,
                         config=config, found=True if args.found else None)
        self.counter = _Counter(self.node)
        self.group: Group | None = None
        self.dict: _CountingDict | None = None
        self.locks: LockService | None = None
        self.cohort: Cohort | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        await self.node.start()
        try:
            self.group = await self.node.join(GROUP, replica=self.counter)
            _emit("joined", pid=self.node.pid)
            handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
                "tput": self._tput, "lat": self._lat, "rpc": self._rpc, "dict": self._dict,
                "lock": self._lock, "cohort": self._cohort, "tools-join": self._tools_join,
                "wait-groups": self._wait_groups, "serve": self._serve, "domains-join": self._domains_join}
            while line := await reader.readline():
                cmd = json.loads(line)
                if cmd["cmd"] == "quit":
                    break
                _emit(cmd["cmd"], **await handlers[cmd["cmd"]](cmd))
        finally:
            await self.node.close()

    def _groups(self, cmd: dict[str, Any]) -> list[Group]:
        """The groups a step's casts go to, in turn: the bench group unless it names others."""
        return [self.node.groups[g] for g in cmd.get("groups", [GROUP])]

    async def _tput(self, cmd: dict[str, Any]) -> dict[str, Any]:
        counter, groups = self.counter, self._groups(cmd)
        start = cmd["start"]
        counter.window = 0
        counter.lo = start + cmd["warm"]
        counter.hi = counter.lo + cmd["duration"]
        end = counter.hi + cmd["tail"]
        views = counter.views
        await asyncio.sleep(max(0.0, start - time.time()))
        sent = 0
        if cmd["send"]:
            payload, order, spread, run = bytes(cmd["size"]), cmd["order"], len(groups), RUN
            while time.time() < end:
                await groups[sent // run % spread].cast(payload, order)
                sent += 1
        else:
            await asyncio.sleep(max(0.0, end - time.time()))
        for group in groups:
            await group.flush()
        return {"delivered": counter.window, "sent": sent, "views": counter.views - views}

    async def _lat(self, cmd: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        groups = self._groups(cmd)
        pad, order = bytes(cmd["size"]), cmd["order"]
        samples = []
        for i in range(cmd["count"] + LAT_WARMUP):
            arrived: asyncio.Future[float] = loop.create_future()
            self.counter.waiting = (i, arrived)
            t0 = time.perf_counter()
            await groups[i % len(groups)].cast([i, pad], order)
            t1 = await asyncio.wait_for(arrived, GUARD)
            if i >= LAT_WARMUP:
                samples.append(t1 - t0)
        self.counter.waiting = None
        return _percentiles(samples)

    async def _rpc(self, cmd: dict[str, Any]) -> dict[str, Any]:
        group = self.group
        assert group is not None
        pad = bytes(cmd["size"])
        return await _round_trips(cmd["count"], lambda: group.query(pad, replies=ALL, timeout=GUARD))

    async def _tools_join(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.dict = await _CountingDict.join(self.node, TOOL_GROUPS["dict"])
        self.locks = await LockService.join(self.node, TOOL_GROUPS["lock"])
        self.cohort = await Cohort.join(self.node, TOOL_GROUPS["cohort"], _echo)
        return {}

    async def _domains_join(self, cmd: dict[str, Any]) -> dict[str, Any]:
        for group, domain in DOMAIN_GROUPS.items():
            await self.node.join(group, replica=self.counter, domain=domain)
        return {}

    async def _serve(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Join the group the clients workload's clients use."""
        answer = _Answer()
        answer.group = await self.node.join(CLIENT_GROUP, answer)
        return {}

    async def _wait_groups(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Return once the view here of every group of ``groups`` has all ``n`` members."""
        deadline = time.monotonic() + GUARD
        while any(len(self.node.groups[g].members) < cmd["n"] for g in cmd["groups"]):
            if time.monotonic() > deadline:
                raise BenchError(f"groups {cmd['groups']} did not reach {cmd['n']} members in {GUARD:.0f}s")
            await asyncio.sleep(0.02)
        return {}

    async def _dict(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Like ``_tput``, with ``DICT_WRITERS`` loops of ``ReplicatedDict.set`` (each waits for its
        update to be applied here) instead of one loop of casts."""
        d = self.dict
        assert d is not None
        d.window = 0
        d.lo = cmd["start"] + cmd["warm"]
        d.hi = d.lo + cmd["duration"]
        end = d.hi + cmd["tail"]
        views = self.counter.views
        await asyncio.sleep(max(0.0, cmd["start"] - time.time()))
        value = bytes(cmd["size"])

        async def writer(key: str) -> int:
            sets = 0
            while time.time() < end:
                await d.set(key, value)
                sets += 1
            return sets

        me = self.node.name
        sent = sum(await asyncio.gather(*(writer(f"{me}/{w}") for w in range(DICT_WRITERS)))) \
            if cmd["send"] else 0
        await asyncio.sleep(max(0.0, end - time.time()))
        await d.flush()
        return {"delivered": d.window, "sent": sent, "views": self.counter.views - views}

    async def _lock(self, cmd: dict[str, Any]) -> dict[str, Any]:
        locks = self.locks
        assert locks is not None

        async def cycle() -> None:
            await locks.release(await locks.acquire("bench"))

        return await _round_trips(cmd["count"], cycle)

    async def _cohort(self, cmd: dict[str, Any]) -> dict[str, Any]:
        cohort = self.cohort
        assert cohort is not None
        pad = bytes(cmd["size"])
        return await _round_trips(cmd["count"], lambda: cohort.request(pad))


async def _round_trips(count: int, call: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    """Await ``call`` ``LAT_WARMUP + count`` times in turn; the percentiles of the last ``count``."""
    samples = []
    for i in range(count + LAT_WARMUP):
        t0 = time.perf_counter()
        await call()
        if i >= LAT_WARMUP:
            samples.append(time.perf_counter() - t0)
    return _percentiles(samples)


class _ClientHost:
    """A process hosting many clients of the clients workload, driven like a worker."""

    def __init__(self, args: argparse.Namespace) -> None:
        config = Config() if args.suspect_timeout is None else Config(suspect_timeout=args.suspect_timeout)
        self.clients = [Client(f"{args.name}-{i}", args.seeds, key_file=args.key_file, config=config)
                        for i in range(args.count)]

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        try:
            for client in self.clients:
                await client.start()
            groups = await asyncio.gather(*(c.bind(CLIENT_GROUP) for c in self.clients))
            _emit("bound", servers=sorted({g.server or "" for g in groups}))
            while line := await reader.readline():
                cmd = json.loads(line)
                if cmd["cmd"] == "quit":
                    break
                _emit("load", **await self._load(groups, cmd))
        finally:
            for client in self.clients:
                await client.close()

    async def _load(self, groups: list[Any], cmd: dict[str, Any]) -> dict[str, Any]:
        """Every client sends requests one at a time until the tail ends; the round trips that end
        inside the window are the sample (in microseconds)."""
        lo = cmd["start"] + cmd["warm"]
        hi, end = lo + cmd["duration"], lo + cmd["duration"] + cmd["tail"]
        pad = bytes(cmd["size"])
        samples: list[int] = []
        await asyncio.sleep(max(0.0, cmd["start"] - time.time()))

        async def one(group: Any) -> None:
            while time.time() < end:
                t0 = time.perf_counter()
                await group.request(pad, timeout=GUARD)
                if lo <= time.time() < hi:
                    samples.append(int((time.perf_counter() - t0) * 1e6))

        await asyncio.gather(*(one(g) for g in groups))
        return {"samples": samples}


def clients_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vsgroups.bench clients",
                                     description="Clients for the clients workload of `vsgroups bench`.")
    parser.add_argument("--name", required=True)
    parser.add_argument("--seeds", type=lambda v: v.split(","), required=True)
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--suspect-timeout", type=float)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_ClientHost(args).run())
    return 0


def worker_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vsgroups.bench worker",
                                     description="One bench member, driven by `vsgroups bench`.")
    parser.add_argument("--name", required=True)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--seeds", type=lambda v: v.split(","), required=True)
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--found", action="store_true")
    parser.add_argument("--suspect-timeout", type=float)
    args = parser.parse_args(argv)
    profile_dir = os.environ.get(PROFILE_ENV)
    profiler = cProfile.Profile() if profile_dir else None
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # unwind, so the profile is written
    try:
        if profiler is not None:
            profiler.enable()
        asyncio.run(_Worker(args).run())
    except KeyboardInterrupt:
        pass
    finally:
        if profiler is not None and profile_dir:
            profiler.disable()
            _write_profile(profiler, Path(profile_dir), args.name)
    return 0


def _write_profile(profiler: cProfile.Profile, directory: Path, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(directory / f"{name}.pstats")
    text = io.StringIO()
    for key in ("tottime", "cumulative"):
        pstats.Stats(profiler, stream=text).strip_dirs().sort_stats(key).print_stats(PROFILE_LINES)
    (directory / f"{name}.txt").write_text(text.getvalue())


# -- driver ----------------------------------------------------------------------------------------


@dataclass
class Options:
    members: list[int] = field(default_factory=lambda: [3])
    sizes: list[int] = field(default_factory=lambda: [100, 1000, 65536])
    orders: list[str] = field(default_factory=lambda: list(ORDERS))
    senders: list[str] = field(default_factory=lambda: ["all", "one"])
    workloads: list[str] = field(default_factory=lambda: list(WORKLOADS[:4]))
    clients: list[int] = field(default_factory=lambda: [1, 50, 200])
    duration: float = 10.0
    warmup: float = 3.0
    tail: float = 2.0
    latency_count: int = 2000
    suspect_timeout: float | None = None
    profile: str | None = None


def _proc_sample(pid: int) -> dict[str, float]:
    """CPU seconds, VmRSS and VmHWM (MiB) of a process, from /proc (empty where there is no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    fields = stat.rpartition(")")[2].split()
    sample = {"cpu_s": (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            sample[key] = int(value.split()[0]) / 1024
    return sample


class BenchError(RuntimeError):
    """A member process failed or the group broke up during a workload."""


class _Proc:
    """The driver's handle on one worker process."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log
        self.pid = ""
        self.view_size = 0
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                event = json.loads(line)
            except ValueError:  # not ours (a stray print): the worker's protocol lines are JSON
                continue
            if event["ev"] == "view":
                self.view_size = event["n"]
            await self.events.put(event)
        await self.events.put({"ev": "exit"})

    async def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        await self.proc.stdin.drain()

    async def expect(self, ev: str, timeout: float) -> dict[str, Any]:
        try:
            async with asyncio.timeout(timeout):
                while (event := await self.events.get())["ev"] != ev:
                    if event["ev"] == "exit":
                        raise BenchError(f"{self.name} exited:\n{self.log_tail()}")
        except TimeoutError:
            raise BenchError(f"{self.name}: no {ev!r} within {timeout:.0f}s:\n{self.log_tail()}") from None
        return event

    async def stop(self) -> None:
        """Wait for the process to exit (after ``quit``); kill it by its PID after a grace period."""
        try:
            await asyncio.wait_for(self.proc.wait(), 10.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def sample(self) -> dict[str, float]:
        return _proc_sample(self.proc.pid)


class _Progress:
    """A progress bar on stderr: redrawn in place on a terminal, one line per step otherwise."""

    def __init__(self, total: float) -> None:
        self.total = max(total, 1e-9)
        self.done = 0.0
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()

    def step(self, label: str, cost: float) -> None:
        """Announce a step expected to take ``cost`` seconds; the bar counts the previous one done."""
        frac = min(self.done / self.total, 1.0)
        bar = "#" * int(frac * 30)
        elapsed = time.monotonic() - self.started
        left = max(self.total - self.done, 0.0)
        text = f"[{bar:<30}] {frac:4.0%} {elapsed:5.0f}s elapsed, ~{left:4.0f}s left  {label}"
        if self.tty:
            sys.stderr.write("\r\x1b[K" + text)
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()
        self.done += cost

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _plan(opts: Options) -> list[dict[str, Any]]:
    """Every workload of one cluster, in the order they run."""
    steps: list[dict[str, Any]] = []
    if "tput" in opts.workloads:
        for senders in opts.senders:
            for size in opts.sizes:
                for order in opts.orders:
                    steps.append({"cmd": "tput", "order": order, "size": size, "senders": senders})
    if "lat" in opts.workloads:
        for size in opts.sizes:
            for order in opts.orders:
                steps.append({"cmd": "lat", "order": order, "size": size})
    if "rpc" in opts.workloads:
        for size in opts.sizes:
            steps.append({"cmd": "rpc", "size": size})
    if "clients" in opts.workloads:
        steps += [{"cmd": "clients", "clients": count, "size": opts.sizes[0]} for count in opts.clients]
    if "domains" in opts.workloads:  # the first size: the cost is a wait per switch, not bytes
        for order in opts.orders:
            steps += [{"cmd": cmd, "order": order, "size": opts.sizes[0], "senders": "all", "spread": spread,
                       "groups": groups} for cmd in ("tput", "lat") for spread, groups in SPREADS.items()]
    if "tools" in opts.workloads:  # the first size only: the tools' costs are round trips, not bytes
        size = opts.sizes[0]
        steps += [{"cmd": "dict", "order": ReplicatedDict.order, "size": size, "senders": "all"},
                  {"cmd": "lock", "order": LockService.order, "size": 0},
                  {"cmd": "cohort", "order": Cohort.order, "size": size}]
    return steps


def _cost(step: dict[str, Any], opts: Options) -> float:
    """A guess of a step's seconds, for the progress bar only."""
    if step["cmd"] in ("tput", "dict", "clients"):
        return START_LEAD + opts.warmup + opts.duration + opts.tail + 0.5 + step.get("clients", 0) * 0.02
    per = {"fifo": 1e-4, "causal": 1e-4, "total": 5e-4, "safe": 3e-3}.get(step.get("order", ""), 1e-3)
    return (opts.latency_count + LAT_WARMUP) * per * (2 if step["cmd"] == "lock" else 1)


class _Cluster:
    """N worker processes in one group; every process is killed by its PID on the way out."""

    def __init__(self, n: int, workdir: Path, opts: Options) -> None:
        self.n = n
        self.workdir = workdir
        self.opts = opts
        self.procs: list[_Proc] = []
        self.addrs: list[str] = []
        self.tools = False  # the tool groups are joined
        self.serving = False  # the clients workload's group is joined
        self.domains = False  # the domains workload's groups are joined

    async def start(self) -> None:
        key = self.workdir / "cluster.key"
        key.write_text(os.urandom(32).hex())
        addrs = self.addrs = [f"127.0.0.1:{free_port()}" for _ in range(self.n)]
        env = dict(os.environ)
        if self.opts.profile:
            env[PROFILE_ENV] = str(Path(self.opts.profile).resolve() / f"n{self.n}")
        for i, addr in enumerate(addrs):
            name = f"b{i + 1}"
            argv = [sys.executable, "-m", "vsgroups.bench", "worker", "--name", name, "--listen", addr,
                    "--seeds", ",".join(addrs), "--key-file", str(key)]
            if i == 0:
                argv.append("--found")
            if self.opts.suspect_timeout is not None:
                argv += ["--suspect-timeout", str(self.opts.suspect_timeout)]
            log = self.workdir / f"{name}-n{self.n}.log"
            with open(log, "wb") as err:
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err, env=env)
            self.procs.append(_Proc(name, proc, log))
            if i == 0:  # the founder first: it is the oldest member, hence the sequencer
                self.procs[0].pid = (await self.procs[0].expect("joined", GUARD))["pid"]
        for p in self.procs[1:]:
            p.pid = (await p.expect("joined", GUARD))["pid"]
        deadline = time.monotonic() + GUARD
        while any(p.view_size != self.n for p in self.procs):
            if time.monotonic() > deadline:
                raise BenchError(f"the {self.n} members did not form one view within {GUARD:.0f}s")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Ask every worker to quit; whatever is still running after a grace period is killed."""
        for p in self.procs:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await p.send({"cmd": "quit"})
        for p in self.procs:
            await p.stop()

    async def join_tools(self) -> None:
        """Every member joins the tool groups, the oldest first (it founds them)."""
        if not self.tools:
            await self._join_all("tools-join", list(TOOL_GROUPS.values()))
            self.tools = True

    async def join_domains(self) -> None:
        if not self.domains:
            await self._join_all("domains-join", list(DOMAIN_GROUPS))
            self.domains = True

    async def _join_all(self, cmd: str, groups: list[str]) -> None:
        """Every member runs ``cmd`` (joining ``groups``), the oldest first; then all wait for full views."""
        for p in self.procs:
            await p.send({"cmd": cmd})
            await p.expect(cmd, GUARD)
        for p in self.procs:
            await p.send({"cmd": "wait-groups", "n": self.n, "groups": groups})
        for p in self.procs:
            await p.expect("wait-groups", GUARD)

    async def clients(self, step: dict[str, Any]) -> dict[str, Any]:
        """``step["clients"]`` clients send requests through the members for a window."""
        if not self.serving:
            await self._join_all("serve", [CLIENT_GROUP])
            self.serving = True
        opts, count = self.opts, step["clients"]
        seeds = ",".join(self.addrs)
        hosts: list[_Proc] = []
        try:
            for i, first in enumerate(range(0, count, CLIENTS_PER_HOST)):
                argv = [sys.executable, "-m", "vsgroups.bench", "clients", "--name", f"c{count}h{i}",
                        "--seeds", seeds, "--key-file", str(self.workdir / "cluster.key"),
                        "--count", str(min(CLIENTS_PER_HOST, count - first))]
                if opts.suspect_timeout is not None:
                    argv += ["--suspect-timeout", str(opts.suspect_timeout)]
                log = self.workdir / f"clients-{count}-{i}.log"
                with open(log, "wb") as err:
                    proc = await asyncio.create_subprocess_exec(  # its one line of samples is long
                        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err,
                        limit=SAMPLES_LINE)
                hosts.append(_Proc(f"clients {i}", proc, log))
            for host in hosts:
                await host.expect("bound", GUARD)
            start = time.time() + START_LEAD
            lo, hi = start + opts.warmup, start + opts.warmup + opts.duration
            for host in hosts:
                await host.send({"cmd": "load", "size": step["size"], "start": start, "warm": opts.warmup,
                                 "duration": opts.duration, "tail": opts.tail})
            await asyncio.sleep(max(0.0, lo - time.time()))
            before = [p.sample() for p in self.procs]
            await asyncio.sleep(max(0.0, hi - time.time()))
            after = [p.sample() for p in self.procs]
            samples = [s for host in hosts for s in (await host.expect("load", opts.tail + GUARD))["samples"]]
        finally:
            for host in hosts:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await host.send({"cmd": "quit"})
            for host in hosts:
                await host.stop()
        if any(p.view_size != self.n for p in self.procs):
            raise BenchError(f"the view changed during {step}")
        row: dict[str, Any] = {**step, "members": self.n, "requests_per_s": len(samples) / opts.duration,
                               **_percentiles([x / 1e6 for x in samples])}
        if all(before) and all(after) and samples:
            cpu = sum(a["cpu_s"] - b["cpu_s"] for a, b in zip(after, before, strict=True))
            row["member_cpu_us_per_request"] = cpu / len(samples) * 1e6
        return row

    async def tput(self, step: dict[str, Any]) -> dict[str, Any]:
        """A throughput window: casts (``tput``) or dictionary updates (``dict``) from the senders."""
        opts = self.opts
        start = time.time() + START_LEAD
        lo, hi = start + opts.warmup, start + opts.warmup + opts.duration
        senders = self.procs if step["senders"] == "all" else self.procs[-1:]
        for p in self.procs:
            await p.send({**step, "send": p in senders, "start": start, "warm": opts.warmup,
                          "duration": opts.duration, "tail": opts.tail})
        await asyncio.sleep(max(0.0, lo - time.time()))
        before = [p.sample() for p in self.procs]
        await asyncio.sleep(max(0.0, hi - time.time()))
        after = [p.sample() for p in self.procs]
        replies = [await p.expect(step["cmd"], opts.tail + GUARD) for p in self.procs]
        if any(r["views"] for r in replies) or any(p.view_size != self.n for p in self.procs):
            raise BenchError(f"the view changed during {step}: raise --suspect-timeout on a loaded machine")
        rates = [r["delivered"] / opts.duration for r in replies]
        row: dict[str, Any] = {
            **step, "members": self.n, "msgs_per_s": sum(rates) / len(rates), "min": min(rates),
            "max": max(rates), "MB_per_s": sum(rates) / len(rates) * step["size"] / 1e6,
            "sent": sum(r["sent"] for r in replies), "per_member": rates,
        }
        if all(before) and all(after):
            cpu = [(a["cpu_s"] - b["cpu_s"]) / max(r["delivered"], 1) * 1000
                   for a, b, r in zip(after, before, replies, strict=True)]
            row.update(cpu_s_per_1k=sum(cpu) / len(cpu),
                       rss_start_mib=max(b["VmRSS"] for b in before),
                       rss_end_mib=max(a["VmRSS"] for a in after),
                       peak_rss_mib=max(a["VmHWM"] for a in after))
        return row

    async def probe(self, step: dict[str, Any]) -> dict[str, Any]:
        """Round trips (latency, RPC, a tool's call) from the youngest member (never the sequencer)."""
        pinger = self.procs[-1]
        await pinger.send({**step, "count": self.opts.latency_count})
        reply = await pinger.expect(step["cmd"], GUARD + self.opts.latency_count * 0.05)
        if any(p.view_size != self.n for p in self.procs):
            raise BenchError(f"the view changed during {step}")
        return {**step, "members": self.n, **{k: v for k, v in reply.items() if k != "ev"}}

    def kill(self) -> None:
        for p in self.procs:
            if p.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.proc.pid, signal.SIGKILL)


async def run(opts: Options, progress: bool = True) -> dict[str, Any]:
    """Run every workload for every member count; returns the results (what ``--json`` prints)."""
    steps = _plan(opts)
    bar = _Progress(sum(_cost(s, opts) for s in steps) * len(opts.members) + 3 * len(opts.members))
    result: dict[str, Any] = {"machine": machine(), "options": asdict(opts),
                              "throughput": [], "latency": [], "rpc": [], "tools": [], "clients": [],
                              "domains": [], "peak_rss_mib": {}}
    workdir = Path(tempfile.mkdtemp(prefix="vsgroups-bench-"))
    failed = True
    try:
        for n in opts.members:
            cluster = _Cluster(n, workdir, opts)
            try:
                if progress:
                    bar.step(f"starting {n} members", 3)
                await cluster.start()
                for step in steps:
                    if progress:
                        bar.step(_label(step, n), _cost(step, opts))
                    cmd = step["cmd"]
                    if cmd in TOOL_GROUPS:
                        await cluster.join_tools()
                    if "spread" in step:
                        await cluster.join_domains()
                    if cmd == "clients":
                        row = await cluster.clients(step)
                    else:
                        row = await (cluster.tput(step) if cmd in ("tput", "dict") else cluster.probe(step))
                    result["domains" if "spread" in step else _SECTIONS.get(cmd, "tools")].append(row)
                result["peak_rss_mib"][str(n)] = [p.sample().get("VmHWM") for p in cluster.procs]
                await cluster.stop()
            finally:
                cluster.kill()
        failed = False
    finally:
        if progress:
            bar.close()
        if failed:
            sys.stderr.write(f"worker logs kept in {workdir}\n")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


_SECTIONS = {"tput": "throughput", "lat": "latency", "rpc": "rpc", "clients": "clients"}  # or tools


def _label(step: dict[str, Any], n: int) -> str:
    if "spread" in step:
        return f"{n} members: {'throughput' if step['cmd'] == 'tput' else 'latency'}, {step['spread']} " \
               f"{step['order']}"
    what = {"tput": f"throughput, {step.get('senders')} sending", "lat": "latency", "rpc": "group RPC",
            "dict": "ReplicatedDict updates", "lock": "LockService acquire + release",
            "cohort": "Cohort requests", "clients": f"{step.get('clients')} clients' requests"}
    return f"{n} members: {what[step['cmd']]} {step.get('order', '')} {step['size']} B"


def machine() -> dict[str, Any]:
    """What the numbers were taken on: CPU, cores, kernel, Python, and the load when asked."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "loadavg": [round(x, 2) for x in load]}


# -- output ----------------------------------------------------------------------------------------


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(result: dict[str, Any]) -> str:
    """The human-readable report of ``run``'s result."""
    m, o = result["machine"], result["options"]
    out = [f"vsgroups bench — {m['cpu']}, {m['cores']} cores, kernel {m['kernel']}, Python {m['python']}, "
           f"load average {m['loadavg'][0]} at the start",
           f"members are separate processes on 127.0.0.1 (TCP); warm-up {o['warmup']:g} s, "
           f"window {o['duration']:g} s, senders go on {o['tail']:g} s after it", ""]
    if result["throughput"]:
        out.append("throughput: delivered msgs/s per member (mean over members, min–max); CPU µs per "
                   "delivered message per member; RSS of the largest member at the window's start → end")
        head = ("N", "order", "size", "senders", "msgs/s", "min–max", "MB/s", "CPU µs", "RSS MiB", "peak")
        out += _grid(head,
                     [(str(r["members"]), r["order"], f"{r['size']} B", r["senders"],
                       f"{r['msgs_per_s']:,.0f}", f"{r['min']:,.0f}–{r['max']:,.0f}", f"{r['MB_per_s']:.2f}",
                       _fmt(None if r.get("cpu_s_per_1k") is None else r["cpu_s_per_1k"] * 1000, ".2f"),
                       f"{_fmt(r.get('rss_start_mib'), '.1f')} → {_fmt(r.get('rss_end_mib'), '.1f')}",
                       _fmt(r.get("peak_rss_mib"), ".1f")) for r in result["throughput"]])
    if result["latency"]:
        out.append("latency: one member (not the sequencer) casts one message at a time and waits for its "
                   f"own delivery; {LAT_WARMUP} warm-up round trips, then n measured (µs)")
        out += _grid(("N", "order", "size", "n", "p50", "p99", "max", "mean"),
                     [(str(r["members"]), r["order"], f"{r['size']} B", *_lat_cells(r))
                      for r in result["latency"]])
    if result["rpc"]:
        out.append("group RPC: query(replies=ALL) round trip from one member, one at a time (µs)")
        out += _grid(("N", "size", "n", "p50", "p99", "max", "mean"),
                     [(str(r["members"]), f"{r['size']} B", *_lat_cells(r)) for r in result["rpc"]])
    updates = [r for r in result["tools"] if r["cmd"] == "dict"]
    if updates:
        out.append(f"toolkit: ReplicatedDict.set from every member, {DICT_WRITERS} writers each (each set "
                   "waits for its own update): updates applied per second per member; CPU µs per update")
        out += _grid(("N", "size", "updates/s", "min–max", "CPU µs"),
                     [(str(r["members"]), f"{r['size']} B", f"{r['msgs_per_s']:,.0f}",
                       f"{r['min']:,.0f}–{r['max']:,.0f}",
                       _fmt(None if r.get("cpu_s_per_1k") is None else r["cpu_s_per_1k"] * 1000, ".2f"))
                      for r in updates])
    calls = [r for r in result["tools"] if r["cmd"] != "dict"]
    if calls:
        out.append("toolkit round trips from one member, one at a time (µs): lock = LockService acquire + "
                   "release of a free lock (two safe-order casts); cohort = Cohort.request, echo handler")
        out += _grid(("N", "tool", "size", "n", "p50", "p99", "max", "mean"),
                     [(str(r["members"]), r["cmd"], f"{r['size']} B", *_lat_cells(r)) for r in calls])
    if result["clients"]:
        out.append("clients: N members serve C clients (vsgroups.Client, 100 to a process), each sending "
                   "requests one at a time, answered point to point by its server: requests answered per "
                   "second (all clients), round trip (µs), CPU of all members per request (µs)")
        out += _grid(("N", "clients", "size", "requests/s", "n", "p50", "p99", "max", "mean", "CPU µs"),
                     [(str(r["members"]), str(r["clients"]), f"{r['size']} B", f"{r['requests_per_s']:,.0f}",
                       *_lat_cells(r), _fmt(r.get("member_cpu_us_per_request"), ".1f"))
                      for r in result["clients"]])
    spreads = [r for r in result["domains"] if r["cmd"] == "tput"]
    if spreads:
        out.append(f"causality across groups: every member casts as fast as flow control allows to one "
                   f"group, or to two groups in turn, {RUN} casts at a time (of one causality domain, or of "
                   f"two): msgs/s delivered per member (all groups), CPU µs per delivered message per member")
        out += _grid(("N", "order", "size", "casts go to", "msgs/s", "min–max", "CPU µs"),
                     [(str(r["members"]), r["order"], f"{r['size']} B", r["spread"],
                       f"{r['msgs_per_s']:,.0f}", f"{r['min']:,.0f}–{r['max']:,.0f}",
                       _fmt(None if r.get("cpu_s_per_1k") is None else r["cpu_s_per_1k"] * 1000, ".2f"))
                      for r in spreads])
    trips = [r for r in result["domains"] if r["cmd"] == "lat"]
    if trips:
        out.append("causality across groups: one member casts one message at a time, to one group or to two "
                   "in turn (switching at every cast), and waits for its own delivery (µs)")
        out += _grid(("N", "order", "size", "casts go to", "n", "p50", "p99", "max", "mean"),
                     [(str(r["members"]), r["order"], f"{r['size']} B", r["spread"], *_lat_cells(r))
                      for r in trips])
    peaks = ", ".join(f"{n} members: " + " / ".join(_fmt(v, ".1f") for v in vals)
                      for n, vals in result["peak_rss_mib"].items())
    out.append(f"peak RSS per member over the whole run (MiB): {peaks}")
    return "\n".join(out)


def _lat_cells(r: dict[str, Any]) -> list[str]:
    return [str(r["n"]), *(f"{r[k]:,.0f}" for k in ("p50_us", "p99_us", "max_us", "mean_us"))]


def _grid(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell: numbers right-aligned, words left-aligned."""
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    line = "  ".join
    return [line(h.ljust(w) for h, w in zip(head, widths, strict=True)), line("-" * w for w in widths)] + [
        line(c.rjust(w) if c[:1].isdigit() else c.ljust(w) for c, w in zip(row, widths, strict=True))
        for row in rows] + [""]


# -- command line ----------------------------------------------------------------------------------


def _ints(value: str) -> list[int]:
    try:
        items = [int(v) for v in value.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None
    if not items or min(items) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {value!r}")
    return items


def _choices(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(value: str) -> list[str]:
        items = [v for v in value.split(",") if v]
        if not items or any(v not in allowed for v in items):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(allowed)}")
        return items

    return parse


def parse_args(argv: list[str] | None) -> tuple[Options, argparse.Namespace]:
    d = Options()
    parser = argparse.ArgumentParser(
        prog="vsgroups bench", description="Measure throughput, latency, RPC round trips, CPU and memory of "
        "member processes over TCP on 127.0.0.1, and print a table (progress goes to stderr).")
    parser.add_argument("--members", type=_ints, default=d.members,
                        help="group sizes, e.g. 3,5,9 (default 3)")
    parser.add_argument("--size", type=_ints, default=d.sizes, help="payload bytes (default 100,1000,65536)")
    parser.add_argument("--order", type=_choices(ORDERS), default=d.orders, help="orderings (default all)")
    parser.add_argument("--senders", type=_choices(("all", "one")), default=d.senders,
                        help="throughput with every member sending and/or one (default all,one)")
    parser.add_argument("--only", type=_choices(WORKLOADS), default=d.workloads,
                        help="workloads to run: tput,lat,rpc,tools,clients,domains (default the first four; "
                        "tools: the toolkit's dict, lock and cohort at the first size; domains: causality "
                        "across groups, at the first size)")
    parser.add_argument("--clients", type=_ints, default=d.clients,
                        help="client counts of the clients workload (default 1,50,200)")
    parser.add_argument("--duration", type=float, default=d.duration,
                        help="measuring window of each throughput workload, in seconds (default 10)")
    parser.add_argument("--warmup", type=float, default=d.warmup,
                        help="seconds before the window (default 3)")
    parser.add_argument("--tail", type=float, default=d.tail,
                        help="seconds senders go on after the window (default 2)")
    parser.add_argument("--latency-count", type=int, default=d.latency_count,
                        help="measured round trips per latency and RPC workload (default 2000)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: the first size only, all senders "
                        "only, 1 s warm-up, 0.5 s tail, 200 round trips")
    parser.add_argument("--suspect-timeout", type=float, help="failure detection time of the members "
                        "(default: vsgroups.Config's); a false suspicion aborts the run")
    parser.add_argument("--profile", metavar="DIR",
                        help="run members under cProfile; write DIR/n<N>/<name>.pstats and .txt")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = parser.parse_args(argv)
    opts = Options(members=args.members, sizes=args.size, orders=args.order, senders=args.senders,
                   workloads=args.only, duration=args.duration, warmup=args.warmup, tail=args.tail,
                   latency_count=args.latency_count, suspect_timeout=args.suspect_timeout,
                   profile=args.profile, clients=args.clients)
    if args.quick:
        opts.sizes, opts.senders = opts.sizes[:1], ["all"]
        opts.warmup, opts.tail, opts.latency_count = min(opts.warmup, 1.0), min(opts.tail, 0.5), 200
    return opts, args


def main(argv: list[str] | None = None) -> int:
    opts, args = parse_args(argv)
    try:
        result = asyncio.run(run(opts))
    except BenchError as exc:
        sys.stderr.write(f"vsgroups bench: {exc}\n")
        return 1
    print(json.dumps(result, indent=1) if args.json else table(result))
    return 0


if __name__ == "__main__":
    roles = {"worker": worker_main, "clients": clients_main}
    if sys.argv[1:2] not in ([r] for r in roles):
        sys.exit("usage: python -m vsgroups.bench worker|clients ... (the driver is `vsgroups bench`)")
    sys.exit(roles[sys.argv[1]](sys.argv[2:]))
