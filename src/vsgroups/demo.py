"""``vsgroups demo``: watch a replicated service survive crashes of real processes, then check it.

This is the quickest way to see what the toolkit promises, and a smoke test of the whole stack on
one machine. It starts a local cluster of ``vsgroups node`` processes (a replicated key-value store
under a mixed fifo/causal/total/safe workload), SIGKILLs a member, then the coordinator, starts a
replacement that joins with state transfer, and finally stops the load and compares the replicas'
state digests and runs the trace checker. It prints what happens as it happens and exits non-zero
if the replicas differ or the checker finds a violation.

``vsgroups demo --partition`` shows the other kind of fault, which loopback cannot produce: the
members run on hosts in network namespaces (``vsgroups.netns``, needs root) and the network splits
into a majority and a minority that holds the coordinator. The majority installs a view of its own
and goes on; the minority blocks (no view, no deliveries), and after the heal its members rejoin
under fresh member ids with state transfer. It exits with status 77 ("skipped") if the
namespaces cannot be built.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from .netns import NetnsUnavailable, Network
from .procs import Cluster, Event, Member, MemberExited, digest_problems, oldest_first

GROUP = "kv"
RATE = 50  # casts per second per member
SUSPECT = 1.0
PHASE = 3  # seconds of load between faults
SKIPPED = 77  # the exit status of a demo that could not run here (the automake convention)


def names(members: list[Member]) -> str:
    return ", ".join(m.name for m in members)


class Demo:
    def __init__(self, trace_dir: Path, workdir: Path, members: int) -> None:
        self.trace_dir = trace_dir
        self.workdir = workdir
        self.size = members
        self.started = time.monotonic()
        self.views: set[str] = set()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.2f}s] {text}", flush=True)

    def on_event(self, member: Member, event: Event) -> None:
        if event["ev"] == "view" and event["view"] not in self.views:
            self.views.add(event["view"])
            names = ", ".join(pid.partition("#")[0] for pid in event["members"])
            self.say(f"view {event['view']}: {names} (coordinator {names.partition(',')[0]})")
        elif event["ev"] == "rejoin":
            self.say(f"{member.name} was excluded from {event['g']} and joins it again as {event['pid']}: "
                     f"{event['reason']}")

    async def run(self) -> int:
        async with Cluster(self.workdir, self.trace_dir, groups=[GROUP], rate=RATE, suspect_timeout=SUSPECT,
                           on_event=self.on_event) as cluster:
            ok = await self.scenario(cluster)
        from .check import check_dir

        violations = check_dir(self.trace_dir, live=True, model="vs")
        for v in violations:
            print(f"  {v.prop}: {v.message} ({', '.join(v.evidence)})")
        verdict = "no violation" if not violations else f"{len(violations)} violation(s)"
        self.say(f"checker: {verdict} in the traces of {len(list(self.trace_dir.glob('*.jsonl')))} "
                 "process incarnations")
        ok = ok and not violations
        self.say("demo " + ("passed" if ok else "FAILED"))
        return 0 if ok else 1

    async def scenario(self, cluster: Cluster) -> bool:
        self.say(f"starting {self.size} members, {RATE} casts/s each, fifo/causal/total/safe in turn")
        members = await cluster.start(self.size)
        await cluster.load(True)
        await self.progress(cluster)

        coordinator, *others = oldest_first(members, GROUP)
        victim = others[-1]
        self.say(f"SIGKILL {victim.name} (os pid {victim.proc.pid}), a member")
        victim.kill(signal.SIGKILL)
        await cluster.wait_view(GROUP, [coordinator, *others[:-1]])
        await self.progress(cluster)

        self.say(f"SIGKILL {coordinator.name} (os pid {coordinator.proc.pid}), the coordinator")
        coordinator.kill(signal.SIGKILL)
        await cluster.wait_view(GROUP, cluster.live)
        await self.progress(cluster)

        newcomer = await cluster.add()
        self.say(f"started {newcomer.name} ({newcomer.pid}), joining")
        joined = await newcomer.wait_for("joined", g=GROUP)
        self.say(f"{newcomer.name} joined with state transfer: {joined['n']} keys")
        await cluster.load(True, [newcomer])
        await cluster.wait_view(GROUP, cluster.live)
        await self.progress(cluster)
        return await self.finish(cluster)

    async def finish(self, cluster: Cluster) -> bool:
        """Stop the load, compare the live replicas' digests and quit them; True if all went well."""
        self.say("stopping the load and flushing")
        live = cluster.live
        digests = await cluster.settle(live)
        for event in digests[GROUP]:
            self.say(f"{event['pid']}: state digest {event['digest'][:16]}… ({event['n']} keys)")
        problems = digest_problems(digests)
        for problem in problems:
            self.say(f"replicas differ: {problem}")
        if not problems:
            self.say(f"all {len(live)} replicas hold the same state")
        codes = await cluster.quit_all()
        return not problems and codes == [0] * len(codes)

    async def progress(self, cluster: Cluster, sides: list[list[Member]] | None = None) -> None:
        """Let the load run for a phase, printing deliveries per second per member each second, for
        each of ``sides`` (default: all live members)."""
        sides = sides or [cluster.live]
        members = [m for side in sides for m in side]
        before = await cluster.delivered(members, GROUP)
        for _ in range(PHASE):
            await asyncio.sleep(1.0)
            now = await cluster.delivered(members, GROUP)
            rates, i = [], 0
            for side in sides:
                rate = (sum(now[i:i + len(side)]) - sum(before[i:i + len(side)])) / len(side)
                rates.append(f"{rate:5.0f} deliveries/s per member ({names(side)})")
                i += len(side)
            self.say(" | ".join(rates))
            before = now


class PartitionDemo(Demo):
    """The members on hosts in network namespaces; the network splits into a majority and a minority
    holding the coordinator, then heals."""

    def __init__(self, trace_dir: Path, workdir: Path, members: int, network: Network) -> None:
        super().__init__(trace_dir, workdir, members)
        self.network = network

    async def scenario(self, cluster: Cluster) -> bool:
        net = self.network
        self.say(f"starting {self.size} members on hosts {net.namespace(1)} to {net.namespace(net.n)} "
                 f"(network namespaces on one bridge), {RATE} casts/s each, fifo/causal/total/safe in turn")
        members = await cluster.start(self.size, [net.host(i) for i in net.hosts])
        await cluster.load(True)
        await self.progress(cluster)

        cut = self.size - (self.size // 2 + 1)
        minority, majority = members[:cut], members[cut:]  # members[0] founded the group: the coordinator
        since = {m.name: m.mark() for m in members}
        self.say(f"cutting the network: {names(minority)} (with the coordinator) | {names(majority)}")
        net.cut([net.hosts[:cut], net.hosts[cut:]])
        await cluster.wait_view(GROUP, majority)
        blocked = await asyncio.gather(*(m.wait_for("flushing", since[m.name], g=GROUP) for m in minority))
        self.say(f"{names(minority)}: blocked in view {blocked[0]['view']}; no majority, so no view and no "
                 "deliveries, and their casts wait")
        await self.progress(cluster, [majority, minority])

        self.say("healing the network")
        net.heal()
        for joined in await asyncio.gather(*(m.wait_rejoined(GROUP, since[m.name]) for m in minority)):
            self.say(f"{joined['pid']} rejoined with state transfer: {joined['n']} keys")
        await cluster.wait_view(GROUP, members)
        await self.progress(cluster)
        return await self.finish(cluster)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vsgroups demo",
        description="Run a local cluster through two crashes and a join (or a partition); check it.")
    parser.add_argument("--trace", metavar="DIR", type=Path, help="keep the traces in DIR (default: discard)")
    parser.add_argument("--members", type=int, default=5,
                        help="initial number of members (at least 4; with --partition, at least 3)")
    parser.add_argument("--partition", action="store_true",
                        help="instead, run the members in network namespaces (needs root), split the "
                        f"network into a majority and a minority and heal it; exit status {SKIPPED} if "
                        "namespaces are unavailable")
    args = parser.parse_args(argv)
    if args.members < (3 if args.partition else 4):
        parser.error("--members must be at least 4 (3 with --partition): a majority must remain")
    if args.trace is not None and any(args.trace.glob("*.jsonl")):
        parser.error(f"{args.trace} already holds traces; the checker would mix two runs")
    workdir = Path(tempfile.mkdtemp(prefix="vsgroups-demo-"))
    trace_dir = args.trace if args.trace is not None else workdir / "trace"
    try:
        with contextlib.ExitStack() as stack:  # the network outlives the members: asyncio.run reaps them
            if args.partition:
                network = stack.enter_context(Network(args.members))
                demo: Demo = PartitionDemo(trace_dir, workdir, args.members, network)
            else:
                demo = Demo(trace_dir, workdir, args.members)
            status = asyncio.run(demo.run())
    except NetnsUnavailable as exc:
        print(f"vsgroups demo --partition: skipped: {exc}", file=sys.stderr)
        shutil.rmtree(workdir)
        return SKIPPED
    except (TimeoutError, MemberExited) as exc:
        print(f"vsgroups demo: {exc}", file=sys.stderr)
        status = 1
    if status == 0:
        shutil.rmtree(workdir)
    else:
        print(f"vsgroups demo: member logs are in {workdir / 'logs'}", file=sys.stderr)
    return status
