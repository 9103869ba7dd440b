"""``vsgroups sim``: run one simulated scenario, or sweep a range of seeds, and print the verdict.

A failing seed is a bug report: the command printed next to it replays the very same run (every
run is a pure function of its options), ``--trace DIR`` keeps its traces for ``vsgroups check``, and
``--timeline`` prints what happened in it. Sweeps spread seeds over worker processes; the result of
a seed does not depend on which worker ran it, or on how many there are.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from ..traceview import render
from . import many_groups, scale
from .scenario import FAULTS, MODELS, Outcome, Spec, run
from .timeline import timeline
from .workloads import WORKLOADS, WorkloadOutcome, WorkloadSpec, run_workload

A = TypeVar("A")
B = TypeVar("B")


@dataclass(frozen=True)
class _Job:
    spec: Spec
    trace_root: Path | None  # a sweep keeps the traces of failing seeds under trace_root/SEED
    timeline: bool


@dataclass
class _Result:
    outcome: Outcome
    timeline: list[str]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vsgroups sim", description="Deterministic simulation of vsgroups under random faults.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--seed", type=int, help="run the scenario of this seed")
    which.add_argument("--seeds", type=_seed_range, metavar="A..B", help="sweep seeds A to B inclusive")
    which.add_argument("--scale", type=_sizes, metavar="N,N,...",
                       help="the scaling report: one group per size under a fixed total-order and safe load, "
                            "then a crash; what grows with the group (docs/benchmarks.md)")
    which.add_argument("--groups", type=_positive, metavar="N",
                       help="the many-groups report: N groups on five processes, idle, under a light load, "
                            "then a crash; what a group costs a process (docs/benchmarks.md)")
    parser.add_argument("--json", action="store_true", help="with --scale or --groups: the results as JSON")
    parser.add_argument("--nodes", type=int, help="processes at the start (default: 5-7, from the seed)")
    parser.add_argument("--faults", type=_faults, default=FAULTS,
                        help=f"comma-separated fault kinds, or 'none' (default: {','.join(FAULTS)})")
    parser.add_argument("--duration", type=float, help="virtual seconds of workload and faults")
    parser.add_argument("--model", choices=MODELS, default="vs",
                        help="group model: vs (primary component, the default) or evs (every component runs)")
    parser.add_argument("--trace", type=Path, metavar="DIR",
                        help="write traces to DIR, replacing its *.jsonl (a sweep: failing seeds in DIR/N)")
    parser.add_argument("--timeline", action="store_true", help="print the timeline (of a sweep's failures)")
    parser.add_argument("--html", type=Path, metavar="FILE",
                        help="with --seed: draw the run as a space-time page (vsgroups trace view)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes of a sweep")
    parser.add_argument("--workload", choices=WORKLOADS,
                        help="run a tool of vsgroups.tools under faults and check its guarantee")
    parser.add_argument("--broken", action="store_true",
                        help="a deliberately broken variant, which the check must fail: with --workload the "
                             "tool's, without it a core that ignores causality across groups")
    args = parser.parse_args(argv)
    _quiet()
    if args.scale is not None:
        return _scale(args.scale, args.json)
    if args.groups is not None:
        result = many_groups.measure(args.groups)
        print(json.dumps(many_groups.as_json(result), indent=2) if args.json else result.text())
        return 0
    if args.workload is not None:
        return _workloads(args)
    try:
        spec = Spec(args.seed if args.seed is not None else 0, args.nodes, args.faults, model=args.model,
                    broken=args.broken)
        if args.duration is not None:
            spec = replace(spec, duration=args.duration)
    except ValueError as exc:
        parser.error(str(exc))
    if args.html is not None and args.seed is None:
        parser.error("--html draws one run: give --seed")
    if args.seed is not None:
        return _single(_Job(spec, args.trace, args.timeline), args.html)
    first, last = args.seeds
    return _sweep([_Job(replace(spec, seed=s), args.trace, args.timeline) for s in range(first, last + 1)],
                  max(1, args.jobs))


def _quiet() -> None:
    """Exclusions and dropped frames are the simulation's daily bread: the verdict says what matters."""
    logging.getLogger("vsgroups").setLevel(logging.ERROR)


def _seed_range(text: str) -> tuple[int, int]:
    first, sep, last = text.partition("..")
    try:
        a, b = int(first), int(last)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A..B, got {text!r}") from None
    if not sep or b < a:
        raise argparse.ArgumentTypeError(f"expected A..B with A <= B, got {text!r}")
    return a, b


def _faults(text: str) -> tuple[str, ...]:
    kinds = () if text in ("", "none") else tuple(k.strip() for k in text.split(","))
    unknown = [k for k in kinds if k not in FAULTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown fault kind {', '.join(unknown)}: use {','.join(FAULTS)}")
    return tuple(k for k in FAULTS if k in kinds)  # one canonical order: one replay command per run


def _execute(job: _Job) -> _Result:
    """Run one seed of a sweep, keeping traces (and building the timeline) only if it fails."""
    with tempfile.TemporaryDirectory(prefix="vsgroups-sim-") as tmp:
        outcome = run(job.spec, tmp)
        lines = timeline(tmp, outcome.log) if job.timeline and not outcome.ok else []
        if job.trace_root is not None and not outcome.ok:
            shutil.copytree(tmp, job.trace_root / str(job.spec.seed), dirs_exist_ok=True)
    return _Result(outcome, lines)


def _single(job: _Job, html: Path | None = None) -> int:
    with tempfile.TemporaryDirectory(prefix="vsgroups-sim-") as tmp:
        trace_dir = job.trace_root or Path(tmp)
        for old in trace_dir.glob("*.jsonl"):  # the traces of an earlier run would join this one's
            old.unlink()
        outcome = run(job.spec, trace_dir)
        lines = timeline(trace_dir, outcome.log) if job.timeline else []
        if html is not None:
            page = render(trace_dir, model=job.spec.model, title=job.spec.command())
            html.write_text(page, encoding="utf-8")
    if lines:
        print("\n".join(lines))
    print(_verdict(outcome))
    for problem in outcome.problems():
        print(f"  {problem}")
    if not outcome.ok:
        print(f"replay: {job.spec.command()} --trace DIR --timeline")
    return 0 if outcome.ok else 1


def _verdict(o: Outcome) -> str:
    joined = o.processes - o.nodes
    rate = o.deliveries / o.cpu_time if o.cpu_time else 0.0
    converged = f"converged {o.converge_time:.2f}s after the final heal" if o.converge_time is not None \
        else "did not converge"
    return (f"seed {o.spec.seed}: {'OK' if o.ok else 'FAILED'} - {o.nodes} nodes"
            f"{f' (+{joined} joined)' if joined else ''}, {o.incarnations} incarnations, {o.faults} faults, "
            f"{o.casts} casts, {o.deliveries} deliveries, {o.frames} frames; {converged}; "
            f"{o.end_time:.1f}s virtual in {o.cpu_time:.2f}s of CPU ({rate:,.0f} deliveries/s), "
            f"checked in {o.check_time:.2f}s")


def _results(run_one: Callable[[A], B], jobs: list[A], workers: int) -> Iterator[B]:
    if workers == 1 or len(jobs) == 1:
        yield from map(run_one, jobs)
        return
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_quiet) as pool:
        yield from pool.imap_unordered(run_one, jobs)


def _sweep(jobs: list[_Job], workers: int) -> int:
    started = time.perf_counter()
    progress = _Progress(len(jobs))
    failed: list[_Result] = []
    deliveries = frames = 0
    busy = checking = 0.0
    slowest: tuple[float, int] | None = None  # virtual time to converge after the final heal, seed
    for result in _results(_execute, jobs, workers):
        o = result.outcome
        if o.converge_time is not None:
            slowest = max(slowest or (o.converge_time, o.spec.seed), (o.converge_time, o.spec.seed))
        deliveries += o.deliveries
        frames += o.frames
        busy += o.cpu_time
        checking += o.check_time
        if not o.ok:
            failed.append(result)
        progress.update(len(failed))
    progress.close()
    elapsed = time.perf_counter() - started
    per_seed = (busy + checking) / len(jobs)
    busy = busy or 1e-9  # every seed raised at once
    print(f"{len(jobs)} seeds: {len(jobs) - len(failed)} passed, {len(failed)} failed in {elapsed:.1f}s "
          f"with {workers} worker{'s' if workers > 1 else ''}; {per_seed:.2f}s of CPU per seed "
          f"({checking / len(jobs):.2f}s checking); simulation speed {deliveries / busy:,.0f} "
          f"deliveries/s, {frames / busy:,.0f} frames/s of CPU")
    if slowest is not None:
        print(f"slowest convergence after the final heal: {slowest[0]:.2f}s virtual (seed {slowest[1]})")
    for result in sorted(failed, key=lambda r: r.outcome.spec.seed):
        o = result.outcome
        print(f"seed {o.spec.seed} FAILED: {o.problems()[0].splitlines()[0]}")
        print(f"  replay: {o.spec.command()} --trace DIR --timeline")
        for line in result.timeline:
            print(f"  {line}")
    return 1 if failed else 0


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"group sizes are comma-separated numbers, not {text!r}") from None
    if any(n < 2 for n in sizes):
        raise argparse.ArgumentTypeError(f"a group to measure has at least 2 members: {text!r}")
    return sizes


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _scale(sizes: list[int], as_json: bool) -> int:
    """``--scale``: one row per size (``sim.scale``), printed as it is measured."""
    rows = []
    if not as_json:
        print(scale.HEADER, flush=True)
    for n in sizes:
        row = scale.measure(n)
        rows.append(row)
        if not as_json:
            print(row.line(), flush=True)
    if as_json:
        print(json.dumps(scale.as_json(rows), indent=2))
    return 0


def _workloads(args: argparse.Namespace) -> int:
    """``--workload``: one seed (with ``--trace``, its traces) or a sweep of seeds of a tool."""
    if args.html is not None or args.timeline:
        raise SystemExit("vsgroups sim: error: --html and --timeline draw protocol runs, not --workload")
    if args.seed is not None:
        spec = WorkloadSpec(args.seed, args.workload, args.model, broken=args.broken)
        outcome = run_workload(spec, args.trace)
        print(outcome.verdict())
        for problem in outcome.problems():
            print(f"  {problem}")
        if not outcome.ok:
            print(f"replay: {spec.command()} --trace DIR")
        return 0 if outcome.ok else 1
    first, last = args.seeds
    specs = [WorkloadSpec(s, args.workload, args.model, broken=args.broken) for s in range(first, last + 1)]
    started = time.perf_counter()
    progress = _Progress(len(specs))
    failed: list[WorkloadOutcome] = []
    busy = 0.0
    for outcome in _results(run_workload, specs, max(1, args.jobs)):
        busy += outcome.cpu_time
        if not outcome.ok:
            failed.append(outcome)
        progress.update(len(failed))
    progress.close()
    print(f"{len(specs)} seeds of the {args.workload} workload ({args.model}"
          f"{', broken' if args.broken else ''}): {len(specs) - len(failed)} passed, {len(failed)} failed in "
          f"{time.perf_counter() - started:.1f}s; {busy / len(specs):.2f}s of CPU per seed")
    for outcome in sorted(failed, key=lambda o: o.spec.seed):
        print(f"seed {outcome.spec.seed} FAILED: {outcome.problems()[0].splitlines()[0][:300]}")
        print(f"  replay: {outcome.spec.command()} --trace DIR")
    return 1 if failed else 0


class _Progress:
    """A plain-text progress bar on stderr: redrawn in place on a terminal, a line per 10% otherwise."""

    WIDTH = 30

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.started = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.shown = -1

    def update(self, failing: int) -> None:
        self.done += 1
        tenth = 10 * self.done // self.total
        if not self.tty and tenth == self.shown:
            return
        self.shown = tenth
        elapsed = time.perf_counter() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        filled = self.WIDTH * self.done // self.total
        bar = "#" * filled + "." * (self.WIDTH - filled)
        line = (f"[{bar}] {self.done}/{self.total} seeds, {failing} failing, "
                f"{elapsed:.0f}s elapsed, {eta:.0f}s to go")
        print(f"\r{line}" if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)
