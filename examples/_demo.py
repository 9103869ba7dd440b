"""What the examples' ``--demo`` modes share: members started as child processes of the example on
free loopback ports with a fresh key, their output lines awaited, everything bounded in time and
every child stopped at the end. Not part of the API: read the examples themselves for that."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path

LIMIT = 120  # seconds: a demo ends by itself, whatever happens


def _too_long(signum: int, frame: object) -> None:
    raise TimeoutError(f"the demo did not finish within {LIMIT}s")


def run(scenario: Callable[[], bool]) -> int:
    """Exit status of a demo: 0 if ``scenario()`` says it went as promised, else 1."""
    signal.signal(signal.SIGALRM, _too_long)
    signal.alarm(LIMIT)
    try:
        ok = scenario()
    except (TimeoutError, MemberExited) as exc:
        print(f"demo failed: {exc}")
        return 1
    print("demo passed" if ok else "demo failed")
    return 0 if ok else 1


class MemberExited(RuntimeError):
    pass


class Members:
    """Child processes running ``script`` as members ``--name N --port P --peers ... --key K``, each
    with its own further arguments; the first of them founds the group."""

    def __init__(self, script: str, members: dict[str, list[str]], key: Path) -> None:
        ports = [_free_port() for _ in members]
        peers = ",".join(map(str, ports))
        self.argv = {name: [sys.executable, script, "--name", name, "--port", str(port), "--peers", peers,
                            "--key", str(key), *extra]
                     for (name, extra), port in zip(members.items(), ports, strict=True)}
        self.procs = {name: subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
                      for name, argv in self.argv.items()}

    def restart(self, name: str) -> None:
        """Start member ``name`` again, as it was started (its previous process must be gone)."""
        self.procs[name].wait()
        self.procs[name] = subprocess.Popen(self.argv[name], stdout=subprocess.PIPE, text=True)
        print(f"restarted {name}")

    def wait_for(self, name: str, pattern: str) -> str:
        """Read member ``name``'s lines (echoing them) until one matches ``pattern`` (a regular
        expression, from the start of the line)."""
        stdout = self.procs[name].stdout
        assert stdout is not None
        for line in stdout:
            print(f"  {name}: {line.rstrip()}")
            if re.match(pattern, line):
                return line.strip()
        raise MemberExited(f"member {name} exited before it said {pattern!r}")

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        self.procs[name].send_signal(sig)
        print(f"{sig.name} to {name}")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.kill()
            proc.wait()


@contextmanager
def members(script: str, members: dict[str, list[str]]) -> Iterator[Members]:
    """Start the members (name: further arguments) with a fresh cluster key; stop every one of them
    on the way out."""
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "cluster.key"
        key.write_text(os.urandom(32).hex())
        started = Members(script, members, key)
        try:
            yield started
        finally:
            started.stop_all()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(doc: str, demo_help: str, member: Callable[[argparse.Namespace], Coroutine[object, object, None]],
         demo: Callable[[], bool], extra: Callable[[argparse.ArgumentParser], None]) -> int:
    """An example's command line: ``--demo``, or a member with ``--name --port --peers --key`` and
    the example's own options (``extra``)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help=demo_help)
    parser.add_argument("--name")
    parser.add_argument("--port", type=int)
    parser.add_argument("--peers", help="the members' ports, comma-separated (the first founds the group)")
    parser.add_argument("--key", help="the cluster key file (vsgroups keygen > cluster.key)")
    extra(parser)
    args = parser.parse_args()
    if args.demo:
        return run(demo)
    if not (args.name and args.port and args.peers and args.key):
        parser.error("a member needs --name, --port, --peers and --key (or run --demo)")
    asyncio.run(member(args))
    return 0
