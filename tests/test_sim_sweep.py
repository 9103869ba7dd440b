"""The CI sample: a fixed range of seeds (5–7 nodes, three groups, every fault kind), each run
through the checker with liveness, in both group models; and a few seeds of larger groups (9 and 25
nodes), whose views acknowledge through their aggregator (docs/design.md §2). Sized to take about
six minutes on two cores; the soak (``make soak``) runs the same scenarios over 10,000 seeds in each
model."""

from __future__ import annotations

import pytest

from vsgroups.sim.cli import main

CI_SEEDS = {"vs": "0..799", "evs": "0..399"}
LARGER = [("vs", 9, "0..39"), ("evs", 9, "0..29"), ("vs", 25, "0..3"), ("evs", 25, "0..2")]


@pytest.mark.parametrize("model", sorted(CI_SEEDS))
def test_the_ci_sample_of_seeds_passes(model: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--model", model, "--seeds", CI_SEEDS[model]])
    out = capsys.readouterr().out
    assert status == 0, out


@pytest.mark.parametrize(("model", "nodes", "seeds"), LARGER)
def test_the_ci_sample_of_larger_groups_passes(model: str, nodes: int, seeds: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--model", model, "--nodes", str(nodes), "--seeds", seeds])
    out = capsys.readouterr().out
    assert status == 0, out
