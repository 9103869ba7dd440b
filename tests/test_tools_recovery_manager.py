"""``tools.RecoveryManager`` in the simulator: coordinated checkpoints, a restarted member rejoining
a live group, and a restart of the whole group from the processes that failed last."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from vsgroups.sim.aio import SimNetwork, SimNode, VirtualLoop, run
from vsgroups.sim.recovery_workload import Total
from vsgroups.tools import RecoveryManager
from vsgroups.tools.recovery_manager import MEETING_WAIT


async def start(net: SimNetwork, names: list[str], root: Path, addresses: dict[str, str],
                first: bool = True) -> tuple[list[SimNode], list[RecoveryManager], list[Total]]:
    nodes = [SimNode(net, n, address=addresses.get(n), found=True if first and i == 0 else None)
             for i, n in enumerate(names)]
    for node in nodes:
        addresses[node.name] = node.sim_address
    for node in nodes:
        node.seeds = list(addresses.values())
        await node.start()
    totals = [Total() for _ in names]
    managers = list(await asyncio.gather(*(RecoveryManager.join(node, "g", total, root / node.name)
                                           for node, total in zip(nodes, totals, strict=True))))
    return nodes, managers, totals


def test_after_a_total_failure_the_group_restarts_from_the_last_to_fail(tmp_path: Path) -> None:
    """p3 fails first; p1 and p2 take one more checkpoint and then all fail. Restarted, they agree
    that p1 and p2 failed last, and the group starts again from their newest checkpoint (p3's,
    older, would roll it back)."""
    async def main(loop: VirtualLoop) -> tuple[Any, ...]:
        net = SimNetwork(loop, 5)
        addresses: dict[str, str] = {}
        nodes, managers, totals = await start(net, ["p1", "p2", "p3"], tmp_path, addresses)
        for _ in range(5):
            await managers[0].group.cast(1)  # type: ignore[union-attr]
        await managers[0].group.flush()  # type: ignore[union-attr]  # numbered before the checkpoint
        first = await managers[1].checkpoint()
        await nodes[2].abort()  # p3 fails first, holding checkpoint 1 (total 5)...
        while len(managers[0].group.members) == 3:  # type: ignore[union-attr]
            await asyncio.sleep(0.1)  # ...and the others log a view without it
        for _ in range(7):
            await managers[1].group.cast(10)  # type: ignore[union-attr]
        await managers[1].group.flush()  # type: ignore[union-attr]
        second = await managers[0].checkpoint()
        await managers[0].group.cast(100)  # type: ignore[union-attr]  # after the last checkpoint: lost
        await asyncio.sleep(0.2)
        before = [t.total for t in totals[:2]]
        for node in nodes[:2]:
            await node.abort()
        # p3 comes back first, alone long enough to open the meeting itself: it must wait there for
        # the processes that failed last
        early = loop.create_task(start(net, ["p3"], tmp_path, addresses, first=False))
        await asyncio.sleep(MEETING_WAIT + 5)
        later = await start(net, ["p2", "p1"], tmp_path, addresses, first=False)
        nodes, managers, totals = [[*a, *b] for a, b in zip(await early, later, strict=True)]
        await asyncio.sleep(1.0)
        return first, second, before, [t.total for t in totals], [m.recovered_from for m in managers]

    first, second, before, after, chosen = run(main)
    assert (first, second) == (1, 2) and before == [175, 175]
    assert after == [75, 75, 75]  # checkpoint 2: 5 + 70, not p3's 5, and not the 100 after it
    assert set(chosen) == {"p1"}  # of p1 and p2 (both hold checkpoint 2), the smallest name


def test_restarting_from_a_process_that_failed_earlier_would_roll_the_group_back(tmp_path: Path) -> None:
    """The check can fail: a manager that does not wait for the processes that failed last, and
    restarts from the newest checkpoint among those that came back, lets p3 restart the group alone
    from its older checkpoint."""
    from vsgroups import recovery

    def impatient(views: Any) -> recovery.LastToFail:
        answered = frozenset(n for n, v in views.items() if v is not None)
        return recovery.LastToFail(True, answered, frozenset(), None)

    original = RecoveryManager.__dict__["last_to_fail"]  # the staticmethod itself, not what it gives
    try:
        RecoveryManager.last_to_fail = staticmethod(impatient)  # type: ignore[assignment]
        test_after_a_total_failure_the_group_restarts_from_the_last_to_fail(tmp_path)
    except AssertionError as exc:
        assert "[5, 5, 5]" in str(exc), exc
    else:
        raise AssertionError("restarting without the processes that failed last went unnoticed")
    finally:
        RecoveryManager.last_to_fail = original


def test_a_member_that_restarts_while_the_group_lives_just_rejoins(tmp_path: Path) -> None:
    async def main(loop: VirtualLoop) -> tuple[int, int, str | None]:
        net = SimNetwork(loop, 6)
        addresses: dict[str, str] = {}
        nodes, managers, totals = await start(net, ["p1", "p2", "p3"], tmp_path, addresses)
        await managers[0].group.cast(3)  # type: ignore[union-attr]
        await managers[0].checkpoint()
        await nodes[2].abort()
        await managers[1].group.cast(4)  # type: ignore[union-attr]
        node = SimNode(net, "p3", address=addresses["p3"], seeds=list(addresses.values()))
        await node.start()
        total = Total()
        manager = await RecoveryManager.join(node, "g", total, tmp_path / "p3")
        await asyncio.sleep(0.2)
        return total.total, manager.number, manager.recovered_from

    total, number, chosen = run(main)
    assert (total, number, chosen) == (7, 1, None)  # the group's state, not its own checkpoint's


def test_the_recovery_manager_is_for_vs_groups(tmp_path: Path) -> None:
    async def main(loop: VirtualLoop) -> None:
        node = SimNode(SimNetwork(loop, 1), "p", found=True)
        await node.start()
        with pytest.raises(ValueError, match="restarts vs groups"):
            await RecoveryManager.join(node, "g", Total(), tmp_path, model="evs")

    run(main)
