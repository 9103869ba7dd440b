"""The Prometheus endpoint (``Node(metrics_port=...)``, ``vsgroups node --metrics-port``) serves the
figures of ``vsgroups status``."""

from __future__ import annotations

import asyncio
import re

import vsgroups
from vsgroups.procs import free_port


async def scrape(port: int, path: str = "/metrics") -> tuple[str, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\n\r\n".encode())
    await writer.drain()
    response = (await reader.read()).decode()
    writer.close()
    head, _, body = response.partition("\r\n\r\n")
    return head.splitlines()[0], body


def value(body: str, metric: str) -> float:
    found = re.search(rf"^{re.escape(metric)} (\S+)$", body, re.MULTILINE)
    assert found, f"no {metric} in:\n{body}"
    return float(found.group(1))


def test_the_metrics_of_a_node_in_a_group() -> None:
    async def main() -> tuple[str, str, str, str]:
        port = free_port()
        async with vsgroups.Node("p1", key="k", found=True, metrics_port=port) as n1:
            g1 = await n1.join("g")
            async with vsgroups.Node("p2", seeds=[n1.address], key="k") as n2:
                await n2.join("g")
                for i in range(10):
                    await g1.cast(i)
                await g1.flush()
                status, body = await scrape(port)
                missing, _ = await scrape(port, "/")
                return status, body, missing, n2.pid

    status, body, missing, p2 = asyncio.run(asyncio.wait_for(main(), 60))
    assert status == "HTTP/1.0 200 OK" and missing == "HTTP/1.0 404 Not Found"
    assert value(body, 'vsgroups_group_members{group="g"}') == 2
    assert value(body, 'vsgroups_group_primary{group="g"}') == 1
    assert value(body, 'vsgroups_group_blocked{group="g"}') == 0
    assert value(body, 'vsgroups_group_window_messages{group="g"}') > 0
    for metric in ('vsgroups_group_unstable_messages{group="g"}',
                   'vsgroups_group_pending_messages{group="g"}',
                   'vsgroups_group_retransmitted_total{group="g"}',
                   f'vsgroups_peer_suspected{{peer="{p2}"}}'):
        assert value(body, metric) == 0, metric
    assert 0 <= value(body, f'vsgroups_peer_rtt_seconds{{peer="{p2}"}}') < 1
    assert value(body, "vsgroups_frames_out_total") > 0 and value(body, "vsgroups_bytes_in_total") > 0
    assert value(body, f'vsgroups_peer_frames_in_total{{peer="{p2}"}}') > 0
    assert value(body, f'vsgroups_peer_bytes_out_total{{peer="{p2}"}}') > 0
