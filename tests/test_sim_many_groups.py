"""The many-groups report (``vsgroups sim --groups``): processes in many groups at once form them
all, stay cheap while idle, and turn the crash of one of them into a new view in every group it was
in within the usual bound (docs/benchmarks.md, "Many groups per process")."""

from __future__ import annotations

import json
import subprocess
import sys

from vsgroups.core import Config
from vsgroups.sim.cluster import Simulation
from vsgroups.sim.many_groups import measure


def test_every_group_forms_and_a_crash_changes_every_view_of_the_victim_in_time() -> None:
    first, second = measure(60), measure(60)
    assert (first.memberships, first.formed_s, first.crash_groups, first.crash_to_views_ms) == \
        (second.memberships, second.formed_s, second.crash_groups, second.crash_to_views_ms)
    assert 3 * 60 <= first.memberships <= 5 * 60 and first.crash_groups > 0
    timeout_ms = Config().suspect_timeout * 1000
    # the crash falls after the victim's last frame, hence a little under the timeout at times
    assert timeout_ms - 100 <= first.crash_to_views_ms <= timeout_ms + 50
    assert first.memory_per_membership_kib > 0 and first.idle_cpu_per_membership_us_per_s > 0


def test_an_idle_group_is_not_ticked_at_every_tick() -> None:
    """A quiet group sleeps until its quiet interval is over (NodeCore.tick): over two idle seconds,
    a node's groups are ticked about once a second each, not 200 times."""
    sim = Simulation(1)
    groups = [f"g{k}" for k in range(40)]
    for i in range(3):
        sim.add(f"p{i}", groups, founder=i == 0)
    assert sim.run_until_true(sim.converged, 30, every=0.05)
    sim.run_for(2.0)
    ticks = 0
    for proc in sim.procs.values():
        for engine in proc.core.groups.values():
            original = engine.tick

            def counting(now: float, original=original) -> None:  # type: ignore[no-untyped-def]
                nonlocal ticks
                ticks += 1
                original(now)

            engine.tick = counting  # type: ignore[method-assign]
    sim.run_for(2.0)
    memberships = 3 * len(groups)
    assert memberships <= ticks <= 3 * memberships


def test_the_command_prints_the_report_as_json() -> None:
    out = subprocess.run([sys.executable, "-m", "vsgroups", "sim", "--groups", "12", "--json"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    result = json.loads(out)
    assert result["groups"] == 12 and result["crash_groups"] > 0
