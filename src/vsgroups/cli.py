"""The ``vsgroups`` command."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("vsgroups: commands are being built", file=sys.stderr)
    return 2
