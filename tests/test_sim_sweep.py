"""The CI sample: a fixed range of seeds (5–7 nodes, three groups, every fault kind), each run
through the checker with liveness, in both group models. Sized to take about four minutes on two
cores; the soak (``make soak``) runs the same scenarios over 10,000 seeds in each model."""

from __future__ import annotations

import pytest

from vsgroups.sim.cli import main

CI_SEEDS = {"vs": "0..799", "evs": "0..399"}


@pytest.mark.parametrize("model", sorted(CI_SEEDS))
def test_the_ci_sample_of_seeds_passes(model: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--model", model, "--seeds", CI_SEEDS[model]])
    out = capsys.readouterr().out
    assert status == 0, out
