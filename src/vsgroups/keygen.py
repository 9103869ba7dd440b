"""``vsgroups keygen``: print a new cluster key.

Every frame between members is authenticated with a key they share (``Node(key_file=...)``,
``vsgroups node --key-file``). ``vsgroups keygen > cluster.key`` makes one: 32 random bytes from the
operating system, written as hex. Anyone who holds it can join the cluster, so keep the file
private (``chmod 600``) and give it only to the members.
"""

from __future__ import annotations

import argparse
import secrets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vsgroups keygen", description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=32, help="random bytes in the key (default 32)")
    args = parser.parse_args(argv)
    if args.bytes < 16:
        parser.error(f"--bytes {args.bytes} is too short a key: give at least 16")
    print(secrets.token_hex(args.bytes))
    return 0
