"""The ``vsgroups`` command: one entry point for running a member, the demo and the trace checker.

Each subcommand parses its own arguments (and answers its own ``--help``) in the module that
implements it, imported only when chosen: ``vsgroups check`` does not load the runtime. An error
the user can act on (a missing key file, an address in use, an invalid argument) ends the command
with one line on stderr and exit status 1, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import VsgroupsError

COMMANDS = {
    "node": ("member", "run one member process (status on stdout, commands on stdin)"),
    "demo": ("demo", "run a local cluster through crashes and a join, then check its traces"),
    "check": ("check", "check a run's traces: vsgroups check DIR [--live]"),
    "sim": ("sim.cli", "run simulated fault scenarios: vsgroups sim --seed N | --seeds A..B"),
    "bench": ("bench", "measure throughput, latency and resources of member processes on loopback"),
    "trace": ("traceview", "draw a run: vsgroups trace view DIR -o run.html"),
    "status": ("status", "look inside a running node: vsgroups status HOST:PORT --key-file K [--watch]"),
    "keygen": ("keygen", "print a new cluster key: vsgroups keygen > cluster.key"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vsgroups", description="Virtually synchronous process groups.")
    parser.add_argument("--version", action="version", version=f"vsgroups {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        commands.add_parser(name, add_help=False, help=summary)
    args, rest = parser.parse_known_args(argv)
    module = importlib.import_module(f"vsgroups.{COMMANDS[args.command][0]}")
    try:
        result: int = module.main(rest)
    except (VsgroupsError, OSError, ValueError) as exc:
        print(f"vsgroups {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return result
