"""Graceful shutdown of real member processes over TCP on 127.0.0.1: SIGTERM, a second signal, the end
of stdin, and a minority that cannot leave.

SIGTERM (or SIGINT, or ``quit``) makes ``vsgroups node`` stop its workload and close its node: the
casts it accepted go out and are delivered, it leaves every group (its trace ends with ``leave`` per
group, then ``stop``) and exits 0. ``stop`` claims that the process delivered what it owed, so a stop
that cannot leave within its bound (a minority that blocks), or that a second signal forces, ends its
trace like a crash instead. The end of stdin ends the command channel only, and ``--rate`` starts the
workload at once unless ``--load-paused``.

Every run goes through the trace checker; members are stopped by their PID (``Cluster`` kills what is
left by PID on the way out, even when a test fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from vsgroups.check import check_dir
from vsgroups.member import EXIT_UNCLEAN
from vsgroups.procs import Cluster, Member, digest_problems, free_port, oldest_first

SUSPECT = 0.6
RATE = 30  # casts per second per member and group
PROGRESS = 60  # deliveries each member must make to show a group works under load
GROUPS = ("kv", "aux")
GUARD = 120.0  # the whole test; every wait has its own, shorter guard


def trace(cluster: Cluster, pid: str | None) -> list[dict[str, Any]]:
    assert pid is not None
    path = cluster.trace_dir / f"{pid}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_checked(cluster: Cluster, model: str, live: bool = True) -> None:
    violations = check_dir(cluster.trace_dir, live=live, model=model)
    assert not violations, "\n".join(f"{v.prop}: {v.message} {v.evidence}" for v in violations)


def assert_left_cleanly(events: list[dict[str, Any]], groups: tuple[str, ...]) -> None:
    """The last event of each group is its ``leave`` (the groups are left in parallel, so one group's
    final deliveries may follow another's leave), the last line is ``stop``, and the process delivered
    every cast it sent."""
    assert events[-1]["ev"] == "stop", events[-3:]
    for g in groups:
        last = [e for e in events if e.get("g") == g][-1]
        assert last["ev"] == "leave", f"group {g} ends with {last}"
    sent = {e["msg"] for e in events if e["ev"] == "send"}
    delivered = {e["msg"] for e in events if e["ev"] == "deliver"}
    assert sent, "the member cast nothing: the test did not load it"
    assert sent <= delivered, f"own casts never delivered: {sorted(sent - delivered)[:5]}"


def assert_crashed(events: list[dict[str, Any]]) -> None:
    """The trace ends like a crash: no ``stop`` (and no ``leave``: no group was left)."""
    assert not [e for e in events if e["ev"] in ("stop", "leave")], events[-3:]


async def loaded(cluster: Cluster, n: int) -> list[Member]:
    members = await cluster.start(n)
    await cluster.load(True)
    await asyncio.gather(*(cluster.wait_delivered(members, g, PROGRESS) for g in cluster.groups))
    return oldest_first(members, cluster.groups[0])


@pytest.mark.parametrize("model", ["vs", "evs"])
def test_sigterm_under_load_leaves_every_group_after_delivering_what_was_in_flight(
        tmp_path: Path, model: str) -> None:
    """Four loaded members cast in every ordering to two groups; the youngest gets SIGTERM, then the
    coordinator. Each exits 0 with a trace that ends with ``leave`` for both groups, then ``stop``,
    having delivered every cast it sent (those still in flight at the signal too); the others go on in
    a view without it, and every trace passes the checker."""

    async def main() -> None:
        cluster = Cluster(tmp_path, groups=GROUPS, rate=RATE, suspect_timeout=SUSPECT, model=model)
        async with cluster:
            coordinator, *others = await loaded(cluster, 4)
            stay = [coordinator, *others]
            for leaver in (others[-1], coordinator):
                stay.remove(leaver)
                since = leaver.mark()
                assert await leaver.stop() == 0
                assert leaver.find("stopping", since, reason="SIGTERM") is not None
                assert leaver.find("stopped", since, clean=True) is not None
                assert_left_cleanly(trace(cluster, leaver.pid), GROUPS)
                for g in GROUPS:
                    await cluster.wait_view(g, stay)
                    await cluster.wait_delivered(stay, g, PROGRESS)
            digests = await cluster.settle(stay)
            problems = digest_problems(digests)
            assert not problems, "\n".join(problems)
            assert await cluster.quit_all() == [0, 0]
        for m in stay:
            assert_left_cleanly(trace(cluster, m.pid), GROUPS)
        assert_checked(cluster, model)

    asyncio.run(asyncio.wait_for(main(), GUARD))


def test_a_second_signal_forces_the_stop_and_the_trace_ends_like_a_crash(tmp_path: Path) -> None:
    """The other two members crash, so the survivor is a minority that cannot leave (no quorum for a
    view without it) and its graceful stop would wait out its close timeout (60 s here). A second
    signal ends it at once: exit status 128 + SIGINT, no ``stop`` in the trace."""

    async def main() -> None:
        async with Cluster(tmp_path, rate=RATE, suspect_timeout=SUSPECT, close_timeout=60.0) as cluster:
            survivor, *crashed = await loaded(cluster, 3)
            for m in crashed:
                m.kill(signal.SIGKILL)
            since = survivor.mark()
            survivor.kill(signal.SIGTERM)
            await survivor.wait_for("stopping", since, reason="SIGTERM")
            survivor.kill(signal.SIGINT)
            assert await asyncio.wait_for(survivor.proc.wait(), 15.0) == 128 + signal.SIGINT
            assert survivor.find("stopped", since, clean=False) is not None
            assert_crashed(trace(cluster, survivor.pid))
        assert_checked(cluster, "vs", live=False)

    asyncio.run(asyncio.wait_for(main(), GUARD))


def test_a_minority_that_cannot_leave_stops_after_its_close_timeout_like_a_crash(tmp_path: Path) -> None:
    """Same minority, one signal: the stop gives up after ``--close-timeout`` and claims no clean stop
    (exit status 3, no ``stop``): ``stop`` would say it delivered what it owed in a view it could not
    leave."""

    async def main() -> None:
        async with Cluster(tmp_path, rate=RATE, suspect_timeout=SUSPECT, close_timeout=2.0) as cluster:
            survivor, *crashed = await loaded(cluster, 3)
            for m in crashed:
                m.kill(signal.SIGKILL)
            since = survivor.mark()
            assert await survivor.stop() == EXIT_UNCLEAN
            assert survivor.find("stopped", since, clean=False) is not None
            assert_crashed(trace(cluster, survivor.pid))
        assert_checked(cluster, "vs", live=False)

    asyncio.run(asyncio.wait_for(main(), GUARD))


def test_end_of_stdin_does_not_stop_a_member_and_its_rate_starts_at_once(tmp_path: Path) -> None:
    """A member started with ``--rate`` and no ``--load-paused`` casts from the start, with no command;
    its stdin is closed at once and it keeps running: the others deliver its casts (theirs are paused),
    and it takes part in the view change that admits one more member. Then it stops on SIGTERM, and
    another on ``quit``, both cleanly."""

    async def main() -> None:
        async with Cluster(tmp_path, rate=RATE, suspect_timeout=SUSPECT) as cluster:
            first = await cluster.start(2)  # their workload waits for 'load on', which never comes
            solo = await cluster.add(load_paused=False)
            assert solo.proc.stdin is not None
            solo.proc.stdin.close()
            await solo.wait_for("eof")
            await solo.wait_for("joined", g="kv")  # fails at once if the end of stdin stopped it
            await cluster.wait_delivered(first, "kv", PROGRESS)  # solo's casts: it is the only sender
            late = await cluster.add()
            everyone = [*first, solo, late]
            await cluster.wait_view("kv", everyone)  # solo is still running, and still a member
            assert await solo.stop() == 0
            assert_left_cleanly(trace(cluster, solo.pid), ("kv",))
            await cluster.wait_view("kv", [*first, late])
            await late.send("quit")
            assert await asyncio.wait_for(late.proc.wait(), cluster.stop_guard) == 0
            assert late.find("stopping", reason="quit") is not None
            assert [e["ev"] for e in trace(cluster, late.pid)[-2:]] == ["leave", "stop"]
            await cluster.wait_view("kv", first)
            digests = await cluster.settle(first)
            problems = digest_problems(digests)
            assert not problems, "\n".join(problems)
            assert await cluster.quit_all() == [0, 0]
        assert_checked(cluster, "vs")

    asyncio.run(asyncio.wait_for(main(), GUARD))


CONTROLLER = """
import os, subprocess, sys
member = subprocess.Popen(sys.argv[1:] + ["--parent-pid", str(os.getpid())])
print(member.pid, flush=True)
member.wait()
"""


def test_a_member_whose_controller_dies_stops_by_itself(tmp_path: Path) -> None:
    """End of stdin no longer stops a member, so ``--parent-pid`` guards against orphans: the controller
    is SIGKILLed, and its member notices, leaves its group and exits cleanly."""

    async def main() -> None:
        key = tmp_path / "cluster.key"
        key.write_text("k" * 32)
        member = [sys.executable, "-m", "vsgroups", "node", "--name", "m1", "--listen",
                  f"127.0.0.1:{free_port()}", "--key-file", str(key), "--trace", str(tmp_path / "trace"),
                  "--found", "--rate", str(RATE)]
        controller = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CONTROLLER, *member, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE)
        member_pid = None
        try:
            assert controller.stdout is not None
            member_pid = int(await asyncio.wait_for(controller.stdout.readline(), 30))
            lines: list[dict[str, Any]] = []

            async def until(ev: str) -> dict[str, Any]:
                assert controller.stdout is not None
                while not (found := [e for e in lines if e["ev"] == ev]):
                    line = await controller.stdout.readline()  # the member writes to the same pipe
                    assert line, f"the member's output ended before {ev!r}: {lines}"
                    lines.append(json.loads(line))
                return found[0]

            pid = (await asyncio.wait_for(until("joined"), 30))["pid"]
            controller.kill()  # SIGKILL by its PID: it cannot stop the member
            stopping = await asyncio.wait_for(until("stopping"), 10)
            assert stopping["reason"] == f"the parent process {controller.pid} exited"
            assert (await asyncio.wait_for(until("stopped"), 30))["clean"] is True
            assert await asyncio.wait_for(controller.stdout.read(), 30) == b""  # the member exited
            lines = (tmp_path / "trace" / f"{pid}.jsonl").read_text().splitlines()
            assert_left_cleanly([json.loads(line) for line in lines], ("kv",))
        finally:
            if member_pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(member_pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                controller.kill()
            await controller.wait()  # returns once the member, which shares its stdout, is gone too

    asyncio.run(asyncio.wait_for(main(), GUARD))
