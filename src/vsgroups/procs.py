"""Start and control ``vsgroups node`` member processes from asyncio (multi-process tests, the demo).

A ``Cluster`` owns a working directory (cluster key, one stderr log per member) and a trace
directory, starts members on free loopback ports, and reads every member's JSON status lines into
that member's event list. Waiting is always on events, never on the clock: ``Member.wait_for`` and
``Cluster.wait_view`` return as soon as the condition holds and fail fast with a description of
every member when a member they depend on exits; their timeouts are only a last guard.

Members run on this machine's loopback by default; a ``Host`` places one elsewhere: an address to
listen on and a command prefix that starts the process there (``ip netns exec NS`` for a network
namespace of ``vsgroups.netns``, so that partition tests can cut real links between members).

Every process is signalled by its PID: SIGKILL, SIGSTOP, SIGCONT, and SIGTERM for a graceful stop
(``Member.stop``: the member leaves its groups, then exits). Leaving the ``async with Cluster(...)``
block kills whatever is still running, even when the block fails. End of stdin does not stop a
member; each is started with ``--parent-pid`` and stops gracefully by itself when the controller
exits, so a controller that dies without cleaning up leaves no members behind. Members start with
their workload paused (``--load-paused``): ``Cluster.load`` turns it on and off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .api import CLOSE_TIMEOUT_FACTOR
from .core import Config

T = TypeVar("T")
Event = dict[str, Any]

GUARD = 30.0  # default last-resort timeout of a wait
STOP_GUARD = 10.0  # beyond a member's own bound on its graceful stop
POLL = 0.1  # delivery counters are polled: a member does not report every delivery


class MemberExited(RuntimeError):
    """A member process ended while something was waiting on it."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS reports free now, for a member to bind a moment later. Linux (since 4.6) picks odd
    ports for ``bind(0)`` and even ones for outgoing connections, so the members' own connections do
    not take it in between."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Host:
    """Where a member process runs: the ``host:port`` it listens on, and the command prefix that starts
    it there (``ip netns exec NS`` execs the member in a network namespace, so its PID is the member's)."""

    address: str
    prefix: tuple[str, ...] = ()


def loopback() -> Host:
    """A fresh address on this machine's loopback."""
    return Host(f"127.0.0.1:{free_port()}")


def oldest_first(members: Iterable[Member], group: str) -> list[Member]:
    """``members`` in age order (the coordinator first), as the latest view of ``group`` reported by
    the first of them lists them."""
    members = list(members)
    view = members[0].view(group)
    if view is None:
        raise ValueError(f"{members[0].name} has reported no view of {group}")
    return sorted(members, key=lambda m: view["members"].index(m.member_id(group)))


class Member:
    """One member process and the events it has reported so far."""

    def __init__(self, cluster: Cluster, name: str, addr: str, proc: asyncio.subprocess.Process,
                 groups: Sequence[str]) -> None:
        self.cluster = cluster
        self.name = name
        self.addr = addr
        self.groups = tuple(groups)
        self.proc = proc
        self.events: list[Event] = []
        self.pid: str | None = None  # the process identity name#inc of the current incarnation
        self.ids: dict[str, str] = {}  # group: its member id there, where it joined again after an exclusion
        self.ended = False  # stdout closed: the process exited or is about to
        self.killed = False  # SIGKILL sent
        self.reader = asyncio.get_running_loop().create_task(self._read())

    def __repr__(self) -> str:
        return f"<{self.name} {self.pid or '?'} os-pid {self.proc.pid}{'' if self.alive else ' ended'}>"

    @property
    def alive(self) -> bool:
        return not (self.ended or self.killed) and self.proc.returncode is None

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                event = json.loads(line)
            except ValueError:
                event = {"ev": "text", "line": line.decode(errors="replace").rstrip()}
            if event.get("ev") == "ready":
                self.pid = event["pid"]
                self.ids.clear()
            elif event.get("ev") == "rejoin":
                self.ids[event["g"]] = event["pid"]
            self.events.append(event)
            if self.cluster.on_event is not None:
                self.cluster.on_event(self, event)
            await self.cluster.notify()
        self.ended = True
        await self.cluster.notify()

    def member_id(self, group: str) -> str | None:
        """This member's identity in ``group``: its pid, or a fresh one if it was excluded and rejoined."""
        return self.ids.get(group, self.pid)

    # -- observing ---------------------------------------------------------------------------------

    def mark(self) -> int:
        """A position in the event list: pass it as ``since`` to wait only for later events."""
        return len(self.events)

    def find(self, ev: str, since: int = 0, **fields: Any) -> Event | None:
        """The first event named ``ev`` from position ``since`` whose fields have these values."""
        return next((e for e in self.events[since:]
                     if e.get("ev") == ev and all(e.get(k) == v for k, v in fields.items())), None)

    def view(self, group: str) -> Event | None:
        """The latest view of ``group`` this member reported."""
        return next((e for e in reversed(self.events) if e.get("ev") == "view" and e.get("g") == group), None)

    async def wait_for(self, ev: str, since: int = 0, timeout: float = GUARD, **fields: Any) -> Event:
        """Wait for an event as ``find`` describes it."""
        def found() -> Event | None:
            event = self.find(ev, since, **fields)
            if event is None:
                self.cluster.require_alive([self])
            return event

        return await self.cluster.until(found, timeout, f"{self.name}: {ev} {fields or ''}")

    async def wait_rejoined(self, group: str, since: int = 0, timeout: float = GUARD) -> Event:
        """Wait until this member, excluded from ``group`` after position ``since``, has joined it again
        under a fresh member id; returns that ``joined`` event (with the state's size)."""
        rejoin = await self.wait_for("rejoin", since, timeout, g=group)
        return await self.wait_for("joined", since, timeout, g=group, pid=rejoin["pid"])

    # -- acting ------------------------------------------------------------------------------------

    async def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()

    async def command(self, command: str, reply: str, timeout: float = GUARD, **fields: Any) -> Event:
        """Send ``command`` and return the first ``reply`` event that follows it."""
        since = self.mark()
        await self.send(command)
        return await self.wait_for(reply, since, timeout, **fields)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to this member's PID (SIGKILL, SIGSTOP, SIGCONT...)."""
        self.killed = self.killed or sig == signal.SIGKILL
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # exited, and reaped but not yet reported
                os.kill(self.proc.pid, sig)

    async def stop(self, timeout: float | None = None) -> int:
        """Stop the member gracefully (SIGTERM by its PID: it leaves its groups, then exits) and return
        its exit status: 0 if it left every group, 3 if it could not within its close timeout (its
        trace ends like a crash). ``timeout`` (default: the member's close timeout and a margin)
        only guards against a hung process, which is then killed."""
        if timeout is None:
            timeout = self.cluster.stop_guard
        self.kill(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.kill(signal.SIGUSR1)  # the member writes every thread's stack to its log first
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 1.0)
            self.kill()
            raise MemberExited(f"{self.name} did not quit within {timeout}s and was killed (its stacks "
                               f"are in its log)") from None


class Cluster:
    """Member processes sharing a cluster key, a trace directory and a workload.

    The workload options (``rate``, ``size``, ``orders``, ``groups``, ``suspect_timeout``), the
    bound on a member's graceful stop (``close_timeout``) and the groups' ``model`` ("vs" or "evs")
    are passed to every member the cluster starts, and so are ``node_args``, further options of
    ``vsgroups node``; ``on_event(member, event)`` sees every status line."""

    def __init__(
        self, workdir: str | os.PathLike[str], trace_dir: str | os.PathLike[str] | None = None, *,
        groups: Sequence[str] = ("kv",), rate: float = 0.0, size: int = 100,
        orders: Sequence[str] = ("fifo", "causal", "total", "safe"), suspect_timeout: float | None = None,
        model: str = "vs", on_event: Callable[[Member, Event], None] | None = None,
        stable_storage: bool = False, close_timeout: float | None = None, node_args: Sequence[str] = (),
    ) -> None:
        self.workdir = Path(workdir)
        self.trace_dir = Path(trace_dir) if trace_dir is not None else self.workdir / "trace"
        self.groups = tuple(groups)
        self.rate = rate
        self.size = size
        self.orders = tuple(orders)
        self.suspect_timeout = suspect_timeout
        self.close_timeout = close_timeout
        self.model = model
        self.stable_storage = stable_storage  # each member keeps a --data-dir under workdir/data
        self.on_event = on_event
        self.node_args = tuple(node_args)  # further options of every member's ``vsgroups node``
        self.members: list[Member] = []
        self.key_file = self.workdir / "cluster.key"
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> Cluster:
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.trace_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as key:
            key.write(secrets.token_hex(32))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.kill_all()

    async def kill_all(self) -> None:
        """SIGKILL every member still running and reap it."""
        for m in self.members:
            m.kill(signal.SIGKILL)
        for m in self.members:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(m.proc.wait(), STOP_GUARD)
            m.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await m.reader
            if m.proc.stdin is not None:
                m.proc.stdin.close()

    @property
    def stop_guard(self) -> float:
        """How long a graceful stop may take before the member is taken for hung."""
        suspect = Config().suspect_timeout if self.suspect_timeout is None else self.suspect_timeout
        bound = CLOSE_TIMEOUT_FACTOR * suspect if self.close_timeout is None else self.close_timeout
        return bound + STOP_GUARD

    @property
    def live(self) -> list[Member]:
        return [m for m in self.members if m.alive]

    # -- starting ----------------------------------------------------------------------------------

    async def start(self, n: int, hosts: Sequence[Host] | None = None) -> list[Member]:
        """Start ``n`` members that know each other's addresses, on ``hosts`` (default: loopback); the
        first founds the groups. Returns once every one of them reports the same view of every group,
        holding them all."""
        names = [f"m{len(self.members) + i + 1}" for i in range(n)]
        places = list(hosts) if hosts is not None else [loopback() for _ in names]
        seeds = [host.address for host in places]
        started = [await self._spawn(name, host, seeds, found=i == 0)
                   for i, (name, host) in enumerate(zip(names, places, strict=True))]
        await asyncio.gather(*(m.wait_for("ready") for m in started))
        for group in self.groups:
            await self.wait_view(group, started)
        return started

    async def add(self, name: str | None = None, host: Host | None = None, *,
                  load_paused: bool = True, groups: Sequence[str] | None = None,
                  found: bool = False) -> Member:
        """Start one more member (on ``host``, default: loopback) that joins through the live members,
        with its workload paused unless ``load_paused`` is False. ``groups`` (default: the cluster's)
        are the groups it joins; it founds those no live member answers for if ``found``. Returns once
        it is listening; wait for its ``joined`` event to know it holds the state."""
        host = host or loopback()
        seeds = [m.addr for m in self.live] + [host.address]
        member = await self._spawn(name or f"m{len(self.members) + 1}", host, seeds, found=found,
                                   load_paused=load_paused, groups=groups)
        await member.wait_for("ready")
        return member

    async def restart(self, member: Member, host: Host | None = None) -> Member:
        """Start a stopped or killed member again under the same name (with its data dir, if the
        cluster keeps them), joining through the live members. Returns once it is listening."""
        if member.alive:
            raise ValueError(f"{member.name} is still running")
        return await self.add(member.name, host)

    async def _spawn(self, name: str, host: Host, seeds: list[str], found: bool,
                     load_paused: bool = True, groups: Sequence[str] | None = None) -> Member:
        groups = self.groups if groups is None else tuple(groups)
        argv = [
            *host.prefix, sys.executable, "-m", "vsgroups", "node", "--name", name, "--listen", host.address,
            "--seeds", ",".join(seeds), "--groups", ",".join(groups), "--key-file", str(self.key_file),
            "--trace", str(self.trace_dir), "--rate", str(self.rate), "--size", str(self.size),
            "--orders", ",".join(self.orders), "--model", self.model, "--parent-pid", str(os.getpid()),
        ]
        if found:
            argv.append("--found")
        if load_paused:
            argv.append("--load-paused")
        if self.close_timeout is not None:
            argv += ["--close-timeout", str(self.close_timeout)]
        if self.stable_storage:
            argv += ["--data-dir", str(self.workdir / "data" / name)]
        if self.suspect_timeout is not None:
            argv += ["--suspect-timeout", str(self.suspect_timeout)]
        argv += self.node_args
        with open(self.workdir / "logs" / f"{name}.log", "ab") as log:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log)
        member = Member(self, name, host.address, proc, groups)
        self.members.append(member)
        return member

    # -- waiting -----------------------------------------------------------------------------------

    async def notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def until(self, check: Callable[[], T | None], timeout: float = GUARD, what: str = "wait") -> T:
        """Wait until ``check()`` returns something other than None (it may raise to give up)."""
        async with self._changed:
            try:
                async with asyncio.timeout(timeout):
                    while (result := check()) is None:
                        await self._changed.wait()
            except TimeoutError:
                raise TimeoutError(f"{what}: not within {timeout}s\n{self.describe()}") from None
        return result

    def require_alive(self, members: Iterable[Member]) -> None:
        ended = [m.name for m in members if not m.alive]
        if ended:
            raise MemberExited(f"{', '.join(ended)} exited (see {self.workdir / 'logs'})\n{self.describe()}")

    async def wait_view(self, group: str, members: Sequence[Member], timeout: float = GUARD) -> Event:
        """Wait until each of ``members`` reports the same latest view of ``group``, whose members are
        exactly their current incarnations; returns that view event."""
        def agreed() -> Event | None:
            self.require_alive(members)
            views = [m.view(group) for m in members]
            first = views[0]
            if first is None or any(v is None or v["view"] != first["view"] for v in views):
                return None
            return first if set(first["members"]) == {m.member_id(group) for m in members} else None

        names = ", ".join(m.name for m in members)
        return await self.until(agreed, timeout, f"one view of {group} holding exactly {names}")

    def describe(self) -> str:
        """Every member's state and latest events, for failure messages."""
        lines = []
        for m in self.members:
            lines.append(f"  {m!r}: " + " ".join(json.dumps(e, separators=(",", ":")) for e in m.events[-4:]))
        return "\n".join(lines)

    async def delivered(self, members: Iterable[Member], group: str) -> list[int]:
        """How many messages of ``group`` each member has delivered so far (over its incarnations)."""
        replies = await asyncio.gather(*(m.command("stats", "stats", g=group) for m in members))
        return [r["delivered"] for r in replies]

    async def wait_delivered(self, members: Sequence[Member], group: str, more: int,
                             timeout: float = GUARD) -> None:
        """Wait until every one of ``members`` has delivered ``more`` messages of ``group`` beyond
        what it had delivered at the call: the group is making progress under the workload."""
        start = await self.delivered(members, group)
        try:
            async with asyncio.timeout(timeout):
                while any(now < before + more
                          for now, before in zip(await self.delivered(members, group), start, strict=True)):
                    await asyncio.sleep(POLL)
        except TimeoutError:
            what = f"{more} more deliveries of {group}"
            raise TimeoutError(f"{what}: not within {timeout}s\n{self.describe()}") from None

    # -- the end of a run --------------------------------------------------------------------------

    async def load(self, on: bool, members: Iterable[Member] | None = None) -> None:
        """Turn the workload on or off; returns once no member is casting any more (when off)."""
        word = "on" if on else "off"
        targets = self.live if members is None else members
        await asyncio.gather(*(m.command(f"load {word}", "load", on=on) for m in targets))

    async def settle(self, members: Sequence[Member], timeout: float = GUARD) -> dict[str, list[Event]]:
        """End a run: stop the load, flush every member, wait until ``members`` share one view of each
        group holding exactly them, and collect the digests. Returns, per group, one digest event per
        member (each carries the digests every member answered at the same cut of the total order)."""
        await self.load(False, members)
        await asyncio.gather(*(m.command("flush", "flushed", timeout) for m in members))
        groups = sorted({g for m in members for g in m.groups})
        for group in groups:
            await self.wait_view(group, [m for m in members if group in m.groups], timeout)
        replies = await asyncio.gather(*(self._digests(m, timeout) for m in members))
        return {group: [r[group] for r in replies if group in r] for group in groups}

    async def _digests(self, member: Member, timeout: float) -> dict[str, Event]:
        since = member.mark()
        await member.send("digest")  # one query per group, answered by one digest event per group
        return {group: await member.wait_for("digest", since, timeout, g=group) for group in member.groups}

    async def quit_all(self) -> list[int]:
        """Stop every live member gracefully, at once (so none outlives the others by a suspect
        timeout): each leaves its groups, then exits. Returns their exit statuses."""
        return list(await asyncio.gather(*(m.stop() for m in self.live)))


def digest_problems(digests: dict[str, list[Event]]) -> list[str]:
    """What is wrong with the digests ``Cluster.settle`` collected (empty if every replica agrees)."""
    problems = []
    for group, events in digests.items():
        for e in events:
            if e.get("error"):
                problems.append(f"{group}: {e['pid']} could not query the group: {e['error']}")
            if set(e["replies"].values()) != {e["digest"]}:
                problems.append(f"{group}: {e['pid']} got differing digests {e['replies']}")
        if len({e["digest"] for e in events}) != 1:
            listed = ", ".join(f"{e['pid']}={e['digest'][:12]}" for e in events)
            problems.append(f"{group}: members differ: {listed}")
    return problems
