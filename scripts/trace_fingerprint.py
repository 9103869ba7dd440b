"""Fingerprint the simulated traces of a range of seeds, to show that a refactoring changes nothing.

A refactoring of the protocol core must leave every simulated run byte-identical: same frames,
same timers, same random draws, hence the same trace files. This script runs seeds of both models,
hashes each seed's trace directory and writes one digest per seed; ``--compare`` runs them again
and lists the seeds whose traces differ (exit status 1 if any).

    python scripts/trace_fingerprint.py --seeds 0..199 --out /tmp/before.json
    ... refactor ...
    python scripts/trace_fingerprint.py --seeds 0..199 --compare /tmp/before.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import sys
import tempfile
from pathlib import Path

from vsgroups.sim.cli import _quiet, _seed_range
from vsgroups.sim.scenario import MODELS, Spec, run


def fingerprint(job: tuple[str, int]) -> tuple[str, int, str]:
    model, seed = job
    _quiet()
    with tempfile.TemporaryDirectory(prefix="vsgroups-fp-") as tmp:
        run(Spec(seed, model=model), tmp)
        digest = hashlib.sha256()
        for path in sorted(Path(tmp).glob("*.jsonl")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return model, seed, digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=_seed_range, default=(0, 199), metavar="A..B")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--out", type=Path, help="write the digests here")
    what.add_argument("--compare", type=Path, help="compare with digests written earlier")
    args = parser.parse_args()
    first, last = args.seeds
    jobs = [(model, seed) for model in args.models.split(",") for seed in range(first, last + 1)]
    with multiprocessing.Pool(args.jobs) as pool:
        digests: dict[str, dict[str, str]] = {}
        for model, seed, digest in pool.imap_unordered(fingerprint, jobs):
            digests.setdefault(model, {})[str(seed)] = digest
    if args.out is not None:
        args.out.write_text(json.dumps(digests, indent=1, sort_keys=True))
        print(f"{len(jobs)} runs fingerprinted into {args.out}")
        return 0
    before = json.loads(args.compare.read_text())
    differing = [f"{model} {seed}" for model, seeds in sorted(digests.items())
                 for seed, digest in sorted(seeds.items(), key=lambda kv: int(kv[0]))
                 if before.get(model, {}).get(seed) != digest]
    listed = ": " + ", ".join(differing) if differing else ""
    print(f"{len(jobs)} runs compared: {len(differing)} differ{listed}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
