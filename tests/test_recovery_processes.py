"""Recovery with stable storage (evs groups): real member processes SIGKILLed and started again.

The 1994 model lets a process fail and recover with its stable storage and its identifier; it
installs a configuration of itself alone, with the state of its last checkpoint, and merges with the
others like a component (``vsgroups.storage``). When every member failed, the views each logged tell
which failed last and so holds the newest state (1987a §3.6, ``vsgroups.recovery``). These tests
kill ``vsgroups node`` processes that keep a ``--data-dir`` and check both, and the traces (which
now hold a ``recover`` event), with the EVS checker.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from vsgroups.check import check_dir
from vsgroups.procs import Cluster, Member
from vsgroups.recovery import ViewRecord, last_to_fail

SUSPECT = 0.6
RATE = 40
PROGRESS = 60
GUARD = 90.0


def evs_cluster(tmp_path: Path) -> Cluster:
    return Cluster(tmp_path, rate=RATE, suspect_timeout=SUSPECT, model="evs", stable_storage=True)


async def crash(member: Member) -> None:
    member.kill(signal.SIGKILL)
    await member.proc.wait()


async def end(cluster: Cluster, members: list[Member]) -> None:
    """Load off, flush, one configuration of ``members``, clean quit, and the EVS checker."""
    await cluster.load(False)
    await asyncio.gather(*(m.command("flush", "flushed") for m in members))
    await cluster.wait_view("kv", members)
    assert await cluster.quit_all() == [0] * len(members)
    violations = check_dir(cluster.trace_dir, live=True, model="evs")
    assert not violations, "\n".join(f"{v.prop}: {v.message} {v.evidence}" for v in violations)


def test_a_member_recovers_with_its_identifier_and_state_and_merges(tmp_path: Path) -> None:
    async def main() -> None:
        async with evs_cluster(tmp_path) as cluster:
            members = await cluster.start(3)
            await cluster.load(True)
            await cluster.wait_delivered(members, "kv", PROGRESS)
            victim = members[2]
            await crash(victim)
            await cluster.wait_view("kv", members[:2])
            await cluster.wait_delivered(members[:2], "kv", PROGRESS)
            again = await cluster.restart(victim)
            assert (await again.wait_for("ready"))["recovered"] is True
            assert again.pid == victim.pid, "the process recovers with the same identifier"
            joined = await again.wait_for("joined", g="kv")
            assert joined["n"] > 0, "it resumes from its checkpoint, not from an empty state"
            members = [*members[:2], again]
            await cluster.wait_view("kv", members)
            await cluster.wait_delivered(members, "kv", PROGRESS)
            await end(cluster, members)

    asyncio.run(asyncio.wait_for(main(), GUARD))


def test_after_a_total_failure_the_last_to_fail_holds_the_newest_state(tmp_path: Path) -> None:
    """m3, then m2, then m1 fail, each once the others saw it go: m1 logged the last view ({m1}), so it
    failed last and its checkpoint is the newest. All three recover from their checkpoints and
    merge; the views they logged name m1, once all of them answered."""

    async def main() -> None:
        async with evs_cluster(tmp_path) as cluster:
            members = await cluster.start(3)
            await cluster.load(True)
            for survivors in (members[:2], members[:1]):
                await cluster.wait_delivered(survivors + [members[len(survivors)]], "kv", PROGRESS // 2)
                await crash(members[len(survivors)])
                await cluster.wait_view("kv", survivors)
            await cluster.wait_delivered(members[:1], "kv", PROGRESS // 2)
            await crash(members[0])
            again = [await cluster.restart(m) for m in members]
            joined = await asyncio.gather(*(m.wait_for("joined", g="kv") for m in again))
            logged = {m.name: ViewRecord.from_json(j["last_view"])
                      for m, j in zip(again, joined, strict=True)}
            verdict = last_to_fail(logged)
            assert verdict.decided and verdict.candidates == {"m1"}, verdict
            assert all(j["n"] > 0 for j in joined), "each resumes from its checkpoint"
            await cluster.wait_view("kv", again)
            await end(cluster, again)

    asyncio.run(asyncio.wait_for(main(), GUARD))


def test_recovering_twice_from_one_checkpoint_never_installs_a_view_id_twice(tmp_path: Path) -> None:
    """A member recovers, crashes again before it merged, and recovers again from the same checkpoint:
    the configuration it forms alone each time must have a new id (the checker's view agreement
    rejects an incarnation that installs one view id twice)."""

    async def main() -> None:
        async with evs_cluster(tmp_path) as cluster:
            members = await cluster.start(3)
            await cluster.load(True)
            await cluster.wait_delivered(members, "kv", PROGRESS)
            victim = members[2]
            for _ in range(2):
                await crash(victim)
                victim = await cluster.restart(victim)
                assert (await victim.wait_for("ready"))["recovered"] is True
                await victim.wait_for("joined", g="kv")  # alone, from its checkpoint
            members = [*members[:2], victim]
            await cluster.wait_view("kv", members)
            await cluster.wait_delivered(members, "kv", PROGRESS)
            await end(cluster, members)

    asyncio.run(asyncio.wait_for(main(), GUARD))
