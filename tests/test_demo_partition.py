"""``vsgroups demo --partition`` runs end to end: a 3+2 split, the minority blocks, then rejoins as new
incarnations with state transfer; equal replicas and a clean check. Skips where the demo cannot build
network namespaces (it exits with status 77 then)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from vsgroups.demo import SKIPPED

TIMEOUT = 120.0  # the demo takes about 20 s; this only stops a hung run
CLEANUP = 30.0


def test_partition_demo_blocks_the_minority_and_rejoins_it(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    with subprocess.Popen([sys.executable, "-m", "vsgroups", "demo", "--partition", "--trace", str(trace)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as demo:
        try:
            out, err = demo.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            # SIGINT, not SIGKILL: the demo then stops its members and deletes its namespaces
            demo.send_signal(signal.SIGINT)
            out, err = demo.communicate(timeout=CLEANUP)
            pytest.fail(f"the demo did not end within {TIMEOUT}s\n{out}{err}")
    if demo.returncode == SKIPPED:
        pytest.skip(err.strip())
    assert demo.returncode == 0, out + err
    assert "cutting the network: m1, m2 (with the coordinator) | m3, m4, m5" in out, out
    assert "m1, m2: blocked in view" in out, out
    minority_rates = re.findall(r"(\d+) deliveries/s per member \(m1, m2\)", out)
    assert minority_rates and set(minority_rates) == {"0"}, out
    assert out.count("rejoined with state transfer") == 2, out
    assert "all 5 replicas hold the same state" in out, out
    assert "checker: no violation" in out and "demo passed" in out, out
