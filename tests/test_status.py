"""``vsgroups status`` against a live cluster of member processes: every field it promises, the
table, the watch mode, and a clear error for a wrong key."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from vsgroups.procs import Cluster

RATE = 50  # casts per second per member: traffic, unstable messages and acknowledgements to see


def status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vsgroups", "status", *args], capture_output=True,
                          text=True, timeout=60)


def test_status_of_a_live_three_node_cluster(tmp_path: Path) -> None:
    async def main() -> tuple[list[str], list[str], str]:
        async with Cluster(tmp_path, rate=RATE) as cluster:
            members = await cluster.start(3)
            await cluster.load(True)
            await cluster.wait_delivered(members, "kv", 50)
            key = str(cluster.key_file)
            results = await asyncio.gather(
                asyncio.to_thread(status, members[0].addr, "--key-file", key, "--json"),
                asyncio.to_thread(status, members[0].addr, "--key-file", key),
                asyncio.to_thread(status, members[0].addr, "--key-file", key, "--watch", "--interval", "0.2",
                                  "--count", "2"))
            assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
            await cluster.quit_all()
            return [m.pid or "" for m in members], [m.addr for m in members], \
                "\n".join(r.stdout for r in results)

    pids, addrs, out = asyncio.run(asyncio.wait_for(main(), 120))
    answer: dict[str, Any] = json.loads(out.split("\n}\n")[0] + "\n}")
    assert answer["node"] == pids[0] and answer["address"] == addrs[0]
    (group,) = answer["groups"]
    assert group["group"] == "kv" and group["state"] == "member" and group["primary"] is True
    assert group["blocked"] is False and group["awaiting_state"] is False
    assert sorted((m["id"], m["address"]) for m in group["members"]) == sorted(zip(pids, addrs, strict=True))
    for field in ("unstable", "own_unstable", "pending", "pending_bytes", "window", "window_bytes",
                  "retransmitted"):
        assert isinstance(group[field], int), field
    assert group["window"] > 0 and group["window_bytes"] > 0
    peers = {p["id"]: p for p in answer["peers"]}
    assert sorted(peers) == sorted(pids[1:])
    for p in peers.values():
        assert p["link"] == "connected" and p["suspected"] is False and p["silent_s"] < 1.0
        assert p["rtt_ms"] is not None and p["rtt_ms"] >= 0  # Linux TCP_INFO
        assert min(p["traffic"].values()) > 0  # heartbeats at least, both ways
    traffic = answer["traffic"]
    assert traffic["frames_in"] > 0 and traffic["bytes_out"] > 0 and traffic["dropped"] == 0
    assert f"group kv (vs, member) view {group['view']}: primary" in out
    assert out.count("\x1b[H\x1b[2J") == 2  # the watch mode redrew twice, then stopped


def test_a_wrong_key_gets_no_answer_and_one_line(tmp_path: Path) -> None:
    async def main() -> subprocess.CompletedProcess[str]:
        async with Cluster(tmp_path) as cluster:
            (member,) = await cluster.start(1)
            wrong = tmp_path / "wrong.key"
            wrong.write_text("not the key")
            result = await asyncio.to_thread(status, member.addr, "--key-file", str(wrong), "--timeout", "1")
            await cluster.quit_all()
            return result

    result = asyncio.run(asyncio.wait_for(main(), 120))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"vsgroups status: error: {result.args[4]} cannot authenticate the request: it holds another "
        f"cluster key"]
