"""A seed is a reproducible bug report only if it replays exactly: the same seed must write
byte-identical traces in separate interpreters, whatever their string-hash randomisation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SEED = 7


def traces(tmp_path: Path, hashseed: str) -> dict[str, bytes]:
    out = tmp_path / hashseed
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    subprocess.run([sys.executable, "-m", "vsgroups.sim", "--seed", str(SEED), "--trace", str(out)],
                   env=env, check=False, capture_output=True, timeout=300)
    return {path.name: path.read_bytes() for path in sorted(out.glob("*.jsonl"))}


def test_one_seed_writes_byte_identical_traces_in_separate_processes(tmp_path: Path) -> None:
    first, second = traces(tmp_path, "1"), traces(tmp_path, "2")
    assert len(first) >= 5
    assert first.keys() == second.keys()
    differing = [name for name in first if first[name] != second[name]]
    assert not differing, differing
