"""``vsgroups status HOST:PORT``: look inside a running node.

The tool sends the node a control frame (``wire.StatusRequest``), authenticated with the cluster
key like any frame, and the node answers on its own port with a ``StatusReply`` whose body is the
JSON object ``describe`` builds: per group, its view and members with their addresses, primary or
not, blocked (a view change under way), whether it waits for its state, its unstable and pending
messages against the flow-control window, and its retransmissions; per peer, the connection, its
kernel-measured round-trip time, how long since it was heard from, whether it is suspected and
the frames and bytes exchanged with it; and the node's traffic counters. ``--json`` prints that
object; the default is a table, and ``--watch`` redraws it in place every ``--interval`` seconds,
like ``top``, until Ctrl-C.

The asker is never taken for a peer (its frames carry no process id), so asking costs the node
nothing but the answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import socket
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .core.config import Config
from .core.node import NodeCore, Traffic
from .core.wire import CONTROL, Frame, StatusReply, StatusRequest, decode_control, decode_frame, encode
from .transport.base import Transport
from .transport.tcp import TcpTransport, parse_address


def describe(core: NodeCore, transport: Transport, config: Config) -> dict[str, Any]:
    """The node's status, as ``vsgroups status --json`` prints it."""
    groups = []
    for name in sorted(core.groups):
        st = core.status(name)
        assert st is not None
        groups.append({
            "group": name, "model": st.model, "state": st.state, "member_id": core.member_id(name),
            "view": st.view, "primary": st.primary, "blocked": st.blocked,
            "awaiting_state": st.awaiting_state,
            "members": [{"id": m, "address": core.addr if m == core.member_id(name) else core.addr_of(m)}
                        for m in st.members],
            "unstable": st.unstable, "own_unstable": st.own_unstable, "pending": st.backlog,
            "pending_bytes": st.backlog_bytes, "window": config.window, "window_bytes": config.window_bytes,
            "retransmitted": st.retransmitted,
        })
    peers = []
    for pid, (addr, silent, suspected) in core.peers().items():
        rtt = transport.rtt(addr) if addr is not None else None
        traffic = core.peer_traffic.get(addr) if addr is not None else None
        peers.append({
            "id": pid, "address": addr, "link": transport.link(addr) if addr is not None else "no address",
            "rtt_ms": None if rtt is None else round(rtt * 1000, 3), "silent_s": round(silent, 3),
            "suspected": suspected, "queued_bytes": transport.pending_bytes(addr) if addr is not None else 0,
            "traffic": _counters(traffic or Traffic(), per_peer=True),
        })
    return {
        "node": core.pid, "address": core.addr, "version": __version__, "groups": groups, "peers": peers,
        "traffic": _counters(core.traffic, per_peer=False),
    }


def _counters(traffic: Traffic, per_peer: bool) -> dict[str, int]:
    """Frames and bytes in and out (with a peer: to and from its address; the node's own counters
    also hold the frames it dropped as malformed, whose sender is unknown)."""
    counters = {"frames_in": traffic.frames_in, "bytes_in": traffic.bytes_in,
                "frames_out": traffic.frames_out, "bytes_out": traffic.bytes_out}
    if not per_peer:
        counters["dropped"] = traffic.dropped
    return counters


def reply(nonce: int, status: dict[str, Any], address: str) -> bytes:
    """The control frame answering request ``nonce`` (sent from ``address``)."""
    body = json.dumps(status, separators=(",", ":")).encode()
    return encode(Frame(CONTROL, address, [encode(StatusReply(None, nonce, body))]))


async def ask(target: str, key: bytes, timeout: float) -> dict[str, Any]:
    """Ask the node at ``target`` for its status."""
    parse_address(target)
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[dict[str, Any]] = loop.create_future()
    nonce = secrets.randbits(62)

    def on_frame(data: bytes) -> None:
        try:
            for raw in decode_frame(data).msgs:
                msg = decode_control(raw)
                if isinstance(msg, StatusReply) and msg.nonce == nonce and not answer.done():
                    answer.set_result(json.loads(msg.status))
        except ValueError:
            pass  # not an answer to us (msgspec's decode errors are ValueErrors)

    transport = TcpTransport(f"{_local_host(target)}:0", key, on_frame)
    await transport.start()
    try:
        request = encode(StatusRequest(None, nonce))
        transport.send(target, encode(Frame(CONTROL, transport.address, [request])))
        try:
            return await asyncio.wait_for(answer, timeout)
        except TimeoutError:
            if transport.link(target).startswith("rejected"):
                raise TimeoutError(f"{target} cannot authenticate the request: it holds another cluster "
                                   f"key") from None
            raise TimeoutError(f"no answer from {target} within {timeout}s: no vsgroups node listens "
                               f"there") from None
    finally:
        await transport.close()


def _local_host(target: str) -> str:
    """The address of this host on the way to ``target`` (a UDP socket's choice; nothing is sent)."""
    host, port = parse_address(target)
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, port))
        return str(s.getsockname()[0])


def render(status: dict[str, Any]) -> str:
    """A table for people."""
    t = status["traffic"]
    lines = [f"node {status['node']} at {status['address']} (vsgroups {status['version']})",
             f"  traffic: in {t['frames_in']:,} frames / {_size(t['bytes_in'])}, out {t['frames_out']:,} "
             f"frames / {_size(t['bytes_out'])}, dropped {t['dropped']:,}"]
    for g in status["groups"]:
        flags = ["primary" if g["primary"] else "NOT PRIMARY"]
        flags += ["BLOCKED (view change under way)"] * g["blocked"]
        flags += ["waiting for state"] * g["awaiting_state"]
        lines += [f"group {g['group']} ({g['model']}, {g['state']}) view {g['view']}: {', '.join(flags)}",
                  f"  unstable {g['unstable']:,} (own {g['own_unstable']:,}), pending {g['pending']:,} "
                  f"({_size(g['pending_bytes'])}) of a window of {g['window']:,} / "
                  f"{_size(g['window_bytes'])}, retransmitted {g['retransmitted']:,}"]
        for m in g["members"]:
            me = "  (this node)" if m["id"] == g["member_id"] else ""
            lines.append(f"  member {m['id']:<28} {m['address'] or '?'}{me}")
    if status["peers"]:
        lines.append(f"peers  {'id':<28} {'address':<22} {'link':<12} {'rtt ms':>8} {'silent s':>9}"
                     f"  {'suspected':<9}  {'frames in / out':>17}  {'bytes in / out':>21}")
        for p in status["peers"]:
            rtt = "-" if p["rtt_ms"] is None else f"{p['rtt_ms']:.3f}"
            t = p["traffic"]
            frames = f"{t['frames_in']:,} / {t['frames_out']:,}"
            size = f"{_size(t['bytes_in'])} / {_size(t['bytes_out'])}"
            lines.append(f"       {p['id']:<28} {p['address'] or '?':<22} {p['link'][:12]:<12} {rtt:>8} "
                         f"{p['silent_s']:>9.3f}  {'YES' if p['suspected'] else 'no':<9}  {frames:>17}  "
                         f"{size:>21}")
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vsgroups status", description=__doc__.splitlines()[0])
    parser.add_argument("target", metavar="HOST:PORT", help="the node's listening address")
    parser.add_argument("--key-file", required=True, help="the cluster key file")
    parser.add_argument("--json", action="store_true", help="print the status as one JSON object")
    parser.add_argument("--watch", action="store_true", help="redraw every --interval seconds, until Ctrl-C")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between redraws (default 1)")
    parser.add_argument("--count", type=int, default=0, help="with --watch: stop after this many (0: never)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for an answer (default 5)")
    args = parser.parse_args(argv)
    key = Path(args.key_file).read_bytes().strip()

    async def run() -> None:
        shown = 0
        while True:
            status = await ask(args.target, key, args.timeout)
            out = json.dumps(status, indent=2) if args.json else render(status)
            if args.watch and not args.json:
                out = "\x1b[H\x1b[2J" + out  # home, clear: redraw in place
            print(out, flush=True)
            shown += 1
            if not args.watch or shown == args.count:
                return
            await asyncio.sleep(args.interval)

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
