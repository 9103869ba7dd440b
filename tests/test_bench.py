"""Smoke test of ``vsgroups bench``: it starts real member processes, runs every kind of workload
briefly and prints a table with plausible numbers. It measures nothing: benchmarks are not part of
the test run; ``vsgroups bench`` and ``make bench-compare`` are.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from vsgroups.bench import Options, _percentiles, parse_args, table

# A loaded machine (the test suite runs alongside) must not turn a slow event loop into a false
# suspicion that aborts the run; this test checks the command, not failure detection.
SMOKE = ["--duration", "2", "--quick", "--order", "fifo,total", "--suspect-timeout", "10"]


def run_bench(*extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vsgroups", "bench", *SMOKE, *extra],
                          capture_output=True, text=True, timeout=120)


def test_bench_prints_a_table_with_plausible_numbers() -> None:
    done = run_bench()
    assert done.returncode == 0, done.stderr
    out = done.stdout
    rows = {m.group(1): m for m in re.finditer(r"^3\s+(fifo|total)\s+100 B\s+all\s+([\d,]+)\s", out, re.M)}
    assert set(rows) == {"fifo", "total"}, out
    assert all(int(m.group(2).replace(",", "")) > 0 for m in rows.values()), out
    assert re.search(r"^3\s+total\s+100 B\s+200\s+[\d,]+", out, re.M), out  # latency, 200 round trips
    assert "group RPC" in out and "peak RSS per member" in out, out
    assert "starting 3 members" in done.stderr  # the progress bar


def test_bench_json_counts_only_the_window() -> None:
    done = run_bench("--json", "--only", "tput", "--order", "causal")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    (row,) = result["throughput"]
    assert row["order"] == "causal" and row["members"] == 3 and len(row["per_member"]) == 3
    assert 0 < row["min"] <= row["msgs_per_s"] <= row["max"]
    assert row["sent"] >= row["msgs_per_s"] * 2  # every sender goes on past the 2 s window
    assert row["cpu_s_per_1k"] > 0 and row["peak_rss_mib"] >= row["rss_end_mib"] > 0
    assert "throughput" in table(result)


def test_options() -> None:
    opts, args = parse_args(["--members", "3,5", "--size", "100,1000", "--order", "causal", "--quick"])
    assert opts.members == [3, 5] and opts.sizes == [100] and opts.orders == ["causal"]
    assert opts.senders == ["all"] and opts.latency_count == 200 and not args.json
    assert Options().sizes == [100, 1000, 65536] and Options().duration >= 10
    with pytest.raises(SystemExit):
        parse_args(["--order", "random"])
    assert _percentiles([0.001] * 99 + [0.1])["p50_us"] == pytest.approx(1000)


def test_bench_measures_the_toolkit() -> None:
    done = run_bench("--json", "--only", "tools")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    rows = {r["cmd"]: r for r in result["tools"]}
    assert set(rows) == {"dict", "lock", "cohort"} and not result["throughput"] and not result["latency"]
    updates = rows["dict"]
    assert updates["members"] == 3 and 0 < updates["min"] <= updates["msgs_per_s"] <= updates["max"]
    assert updates["sent"] >= updates["msgs_per_s"] * 2  # the writers go on past the 2 s window
    for name in ("lock", "cohort"):  # 200 round trips each, after the warm-up
        assert rows[name]["n"] == 200 and 0 < rows[name]["p50_us"] <= rows[name]["p99_us"], rows[name]
    out = table(result)
    assert "ReplicatedDict.set" in out and re.search(r"^3\s+lock\s+0 B\s+200\s+[\d,]+", out, re.M), out


def test_bench_measures_clients_of_the_members() -> None:
    done = run_bench("--json", "--only", "clients", "--clients", "1,5")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    rows = result["clients"]
    assert [r["clients"] for r in rows] == [1, 5] and not result["throughput"] and not result["tools"]
    for row in rows:
        assert row["requests_per_s"] > 0 and row["n"] == row["requests_per_s"] * 2  # the 2 s window
        assert 0 < row["p50_us"] <= row["p99_us"] and row["member_cpu_us_per_request"] > 0
    assert "requests answered per second" in table(result)


def test_bench_measures_causality_across_groups() -> None:
    done = run_bench("--json", "--only", "domains", "--order", "total")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    rows = {(r["cmd"], r["spread"]): r for r in result["domains"]}
    spreads = ("one group", "two groups, one domain", "two groups, two domains")
    assert set(rows) == {(cmd, s) for cmd in ("tput", "lat") for s in spreads} and not result["throughput"]
    for spread in spreads:
        tput, lat = rows["tput", spread], rows["lat", spread]
        assert 0 < tput["min"] <= tput["msgs_per_s"] <= tput["max"], tput
        assert lat["n"] == 200 and 0 < lat["p50_us"] <= lat["p99_us"], lat
    assert "causality across groups" in table(result)
