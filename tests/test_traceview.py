"""``vsgroups trace view``: one self-contained page per run, drawing every identity, listing the
checker's violations; rendered in a real headless browser (Debian's chromium) when it is installed."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import vsgroups
from vsgroups.sim import Simulation
from vsgroups.sim.scenario import Spec, run
from vsgroups.traceview import render

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium)")


def embedded(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.DOTALL)
    assert found
    data: dict[str, Any] = json.loads(found.group(1).replace("<\\/", "</"))
    return data


def browse(page: Path, *args: str) -> str:
    assert CHROMIUM is not None
    result = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                             *args, page.as_uri()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def body(dom: str) -> str:
    found = re.search(r"<body[^>]*>", dom)
    assert found, dom[:500]
    return found.group(0)


def evs_run_with_partitions(trace_dir: Path) -> Path:
    outcome = run(Spec(5, model="evs", faults=("partition", "crash")), trace_dir)
    assert outcome.ok and any(line.startswith("partition") for _, line in outcome.log), outcome.log
    return trace_dir


def test_the_page_embeds_every_identity_and_the_verdict(tmp_path: Path) -> None:
    trace = evs_run_with_partitions(tmp_path / "trace")
    data = embedded(render(trace, model="evs"))
    assert sorted(p["file"] for p in data["identities"]) == sorted(f.name for f in trace.glob("*.jsonl"))
    assert data["violations"] == []
    events = [e for p in data["identities"] for e in p["events"]]
    assert {"view", "send", "deliver", "start"} <= {e["ev"] for e in events}
    assert any(e["ev"] == "view" and e["kind"] == "transitional" for e in events)


def test_violations_are_listed_with_their_evidence(tmp_path: Path) -> None:
    sim = Simulation(seed=3, trace_dir=tmp_path)
    for i, name in enumerate(["p1", "p2"]):
        sim.add(name, ["x"], founder=i == 0)
    assert sim.run_until_true(sim.converged, 10)
    sim.cast("p1", "x", b"m", "total")
    sim.run_for(1.0)
    sim.stop_all()
    trace = tmp_path / "p2#0.jsonl"
    lines = trace.read_text().splitlines()
    deliver = next(line for line in lines if '"ev":"deliver"' in line)
    trace.write_text("\n".join([*lines[:-1], deliver, lines[-1]]) + "\n")  # delivered twice
    data = embedded(render(tmp_path))
    assert [v["prop"] for v in data["violations"]] == ["integrity"]
    assert any(e.startswith("p2#0.jsonl:") for e in data["violations"][0]["evidence"])


@needs_browser
def test_a_simulated_evs_run_renders_in_a_browser(tmp_path: Path) -> None:
    trace = evs_run_with_partitions(tmp_path / "trace")
    page = tmp_path / "run.html"
    page.write_text(render(trace, model="evs"))
    dom = browse(page, "--dump-dom")
    assert "data-error" not in body(dom)
    assert f'data-rendered="{len(list(trace.glob("*.jsonl")))}"' in body(dom)
    shot = tmp_path / "run.png"
    browse(page, "--window-size=1400,700", f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000


@needs_browser
def test_a_real_run_renders_and_a_script_error_shows(tmp_path: Path) -> None:
    async def real_run() -> None:
        async with vsgroups.Node("p1", key="k", found=True, trace_dir=tmp_path / "trace") as n1:
            g1 = await n1.join("g")
            async with vsgroups.Node("p2", seeds=[n1.address], key="k", trace_dir=tmp_path / "trace") as n2:
                g2 = await n2.join("g")
                for i in range(20):
                    await (g1 if i % 2 else g2).cast(i, order="safe")
                await g1.flush()

    asyncio.run(asyncio.wait_for(real_run(), 60))
    page = tmp_path / "run.html"
    subprocess.run([sys.executable, "-m", "vsgroups", "trace", "view", str(tmp_path / "trace"),
                    "-o", str(page)], check=True, capture_output=True, timeout=60)
    assert 'data-rendered="2"' in body(browse(page, "--dump-dom"))
    broken = tmp_path / "broken.html"
    broken.write_text(page.read_text().replace('id="data">', 'id="data">{', 1))  # the check can fail
    assert "data-error" in body(browse(broken, "--dump-dom"))
