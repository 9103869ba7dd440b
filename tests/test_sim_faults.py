"""Random fault scenarios in the simulator (crashes, restarts, partitions, pauses) must keep
every property the checker knows, converge once faults stop, and agree on the replicated state.
A deliberately broken core must be caught: the sweep can fail."""

from __future__ import annotations

import pytest

from vsgroups.check import check_dir
from vsgroups.core.group import GroupEngine
from vsgroups.sim.scenario import run_scenario


@pytest.mark.parametrize("seed", range(8))
def test_random_faults(seed: int, tmp_path) -> None:
    outcome = run_scenario(seed, duration=4.0, trace_dir=tmp_path)
    violations = check_dir(tmp_path, live=True)
    assert not violations, "\n".join(f"{v.prop}: {v.message} {v.evidence[:3]}" for v in violations)
    assert outcome.converged, outcome.faults
    assert outcome.digests_agree, outcome.faults


def test_a_core_that_skips_the_flush_is_caught(tmp_path, monkeypatch) -> None:
    """Install the next view without delivering the final set of the old one."""

    def install_without_flush(self: GroupEngine, value: dict, now: float) -> None:
        self.committed[self.view_id] = value
        if self.me in value["members"]:
            self._install(value, now, joined=False)
        else:
            self._finish("excluded" if not self.leaving else "left", now, "test")

    monkeypatch.setattr(GroupEngine, "_apply_commit", install_without_flush)
    found = set()
    for seed in range(6):
        run_scenario(seed, duration=4.0, trace_dir=tmp_path / str(seed))
        found |= {v.prop for v in check_dir(tmp_path / str(seed), live=True)}
    assert found & {"same-set", "self-delivery", "safe", "liveness"}, found
