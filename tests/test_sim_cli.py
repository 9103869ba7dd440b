"""``vsgroups sim``: verdicts, replay commands, sweeps and timelines."""

from __future__ import annotations

import pytest

from vsgroups.sim.cli import main
from vsgroups.sim.scenario import Spec


def test_a_single_run_prints_its_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seed", "3", "--nodes", "5", "--faults", "crash,loss", "--duration", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("seed 3: OK - 5 nodes")


def test_a_sweep_prints_a_summary_and_progress(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seeds", "1..2", "--faults", "none", "--duration", "1.5", "--jobs", "1"]) == 0
    captured = capsys.readouterr()
    assert "2 seeds: 2 passed, 0 failed" in captured.out
    assert "2/2 seeds, 0 failing" in captured.err


def test_the_timeline_tells_views_and_faults_in_time_order(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seed", "4", "--faults", "crash", "--duration", "2.5", "--timeline"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("installs view" in line for line in lines)
    times = [float(line.split()[0]) for line in lines if not line.startswith("seed ")]
    assert times == sorted(times)


def test_the_replay_command_names_every_option_that_differs_from_the_default() -> None:
    assert Spec(17).command() == "vsgroups sim --seed 17"
    spec = Spec(17, nodes=6, faults=("crash", "loss"), duration=3.0)
    assert spec.command() == "vsgroups sim --seed 17 --nodes 6 --faults crash,loss --duration 3"


@pytest.mark.parametrize("argv", [["--seeds", "5..2"], ["--seed", "1", "--faults", "byzantine"], []])
def test_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
