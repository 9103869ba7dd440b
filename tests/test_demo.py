"""``vsgroups demo`` runs end to end as a command: two crashes, a join, equal replicas, a clean check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TIMEOUT = 150.0  # the demo takes about 20 s; this only stops a hung run


def test_demo_survives_crashes_and_a_join(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    # On timeout, subprocess.run kills the demo by its PID; its members then stop by themselves (they
    # watch their parent: --parent-pid).
    result = subprocess.run([sys.executable, "-m", "vsgroups", "demo", "--trace", str(trace)],
                            capture_output=True, text=True, timeout=TIMEOUT)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "a member" in out and "the coordinator" in out and out.count("SIGKILL") == 2, out
    assert "joined with state transfer" in out, out
    assert "all 4 replicas hold the same state" in out, out
    assert "checker: no violation" in out and "demo passed" in out, out
    assert len(list(trace.glob("*.jsonl"))) >= 6, out  # more if a false suspicion restarted one
