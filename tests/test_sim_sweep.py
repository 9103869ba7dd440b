"""The CI sample: a fixed range of seeds (5–7 nodes, three groups, every fault kind), each run
through the checker with liveness. Sized to take well under five minutes on two cores; the soak
(``make soak``) runs the same scenarios over 10,000 seeds."""

from __future__ import annotations

import pytest

from vsgroups.sim.cli import main

CI_SEEDS = "0..299"


def test_the_ci_sample_of_seeds_passes(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--seeds", CI_SEEDS])
    out = capsys.readouterr().out
    assert status == 0, out
