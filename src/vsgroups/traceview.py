"""``vsgroups trace view DIR -o run.html``: the papers' space-time picture of any run, in one file.

Each identity (a process incarnation, or a member id it rejoined a group under) is a horizontal
line along time, split into one row per group. Its views of a group are bands on that row
(transitional configurations hatched, non-primary ones grey), each message is a line from its send
to every delivery, and the life of the identity is marked: start, stop, a crash (a trace that ends
without ``stop``), a recovery, a leave, an exclusion, the arrival of transferred state. Hovering a
mark or a message shows its trace event. The wheel zooms along time around the pointer and
dragging pans, so a run of thousands of messages stays readable. The violations ``vsgroups check``
finds are listed above the picture, and the events they cite are drawn in red.

The page is self-contained (no network access needed to open it): the events are embedded as JSON
in ``traceview.html`` and drawn by its short script. It records its outcome on ``<body>`` —
``data-rendered`` holds the number of identities drawn, ``data-error`` any script error — which is
how the tests read it from a headless browser. Real and simulated traces alike
(``vsgroups sim --seed N --html run.html``).
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from .check import Violation, check_dir


def load(trace_dir: Path) -> list[dict[str, Any]]:
    """The identities of a run: ``{"id", "file", "events": [event, ...]}``, each event with its line."""
    identities = []
    for path in sorted(trace_dir.glob("*.jsonl")):
        events = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a torn last line (a crash while writing): the checker reports it
            if isinstance(event, dict) and isinstance(event.get("t"), int | float):
                events.append({**event, "line": number})
        identities.append({"id": path.stem, "file": path.name, "events": events})
    return identities


def render(trace_dir: str | Path, *, model: str | None = None, title: str | None = None) -> str:
    """The HTML page of the run in ``trace_dir``, with the checker's verdict (``model`` as for
    ``vsgroups check --model``)."""
    trace_dir = Path(trace_dir)
    violations: list[Violation] = check_dir(trace_dir, model=model)
    data = {
        "identities": load(trace_dir),
        "violations": [{"prop": v.prop, "message": v.message, "evidence": list(v.evidence)}
                       for v in violations],
    }
    embedded = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")  # safe inside <script>
    name = html.escape(title or str(trace_dir))
    page = resources.files("vsgroups").joinpath("traceview.html").read_text(encoding="utf-8")
    return page.replace("__TITLE__", name).replace("__DATA__", embedded)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vsgroups trace", description="Work with the traces of a run.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    view = commands.add_parser("view", help="draw a run as one self-contained HTML page")
    view.add_argument("dir", type=Path, help="the directory of the run's *.jsonl traces")
    view.add_argument("-o", "--output", type=Path, required=True, help="the HTML file to write")
    view.add_argument("--model", choices=("vs", "evs"), help="also check the structure of this model")
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        raise ValueError(f"{args.dir} is not a directory of traces")
    args.output.write_text(render(args.dir, model=args.model), encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
