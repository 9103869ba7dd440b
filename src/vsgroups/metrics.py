"""A Prometheus endpoint for a node (``Node(metrics_port=...)``, ``vsgroups node --metrics-port``).

It serves, at ``http://HOST:PORT/metrics``, the figures ``vsgroups status`` shows, as Prometheus
metrics: per group its members, primary and blocked flags, unstable and pending messages, the
window and retransmissions; per peer its round-trip time, silence, suspicion and traffic; the
node's traffic counters. The text format comes from the ``prometheus-client`` library (the optional extra
``pip install 'vsgroups[metrics]'``); the small HTTP server is the node's own, on its event loop,
so that a scrape reads the protocol state between two events, never in the middle of one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any


class _Collector:
    def __init__(self, source: Callable[[], dict[str, Any]]) -> None:
        self.source = source  # (not ``describe``: the registry would take it for the metric names)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        status = self.source()
        per_group = {
            "members": ("vsgroups_group_members", "members of the current view"),
            "primary": ("vsgroups_group_primary", "1 if the view is primary"),
            "blocked": ("vsgroups_group_blocked", "1 while a view change is under way"),
            "unstable": ("vsgroups_group_unstable_messages", "messages held until every member has them"),
            "pending": ("vsgroups_group_pending_messages", "casts accepted but not sent yet"),
            "pending_bytes": ("vsgroups_group_pending_bytes", "bytes of the casts not sent yet"),
            "window": ("vsgroups_group_window_messages", "the flow-control window"),
        }
        for field, (name, doc) in per_group.items():
            gauge = GaugeMetricFamily(name, doc, labels=["group"])
            for g in status["groups"]:
                value = len(g["members"]) if field == "members" else g[field]
                gauge.add_metric([g["group"]], float(value))
            yield gauge
        retransmitted = CounterMetricFamily("vsgroups_group_retransmitted", "messages sent again on request",
                                            labels=["group"])
        for g in status["groups"]:
            retransmitted.add_metric([g["group"]], g["retransmitted"])
        yield retransmitted
        peer = ["peer"]
        rtt = GaugeMetricFamily("vsgroups_peer_rtt_seconds", "kernel-measured round-trip time", labels=peer)
        silent = GaugeMetricFamily("vsgroups_peer_silent_seconds", "time since the peer was heard from",
                                   labels=peer)
        suspected = GaugeMetricFamily("vsgroups_peer_suspected", "1 if the peer is suspected", labels=peer)
        for p in status["peers"]:
            if p["rtt_ms"] is not None:
                rtt.add_metric([p["id"]], p["rtt_ms"] / 1000)
            silent.add_metric([p["id"]], p["silent_s"])
            suspected.add_metric([p["id"]], float(p["suspected"]))
        yield from (rtt, silent, suspected)
        traffic = status["traffic"]
        for field, doc in TRAFFIC:
            yield CounterMetricFamily(f"vsgroups_{field}", doc, value=traffic[field])
            if field != "dropped":
                per_peer = CounterMetricFamily(f"vsgroups_peer_{field}", f"{doc}, per peer", labels=peer)
                for p in status["peers"]:
                    per_peer.add_metric([p["id"]], p["traffic"][field])
                yield per_peer


TRAFFIC = (("frames_in", "frames received"), ("bytes_in", "bytes received"), ("frames_out", "frames sent"),
           ("bytes_out", "bytes sent"), ("dropped", "frames dropped as malformed"))


class MetricsServer:
    """Serves ``/metrics`` on ``host:port`` from ``describe()`` (see ``status.describe``)."""

    def __init__(self, host: str, port: int, describe: Callable[[], dict[str, Any]]) -> None:
        try:
            from prometheus_client import CollectorRegistry
        except ImportError as exc:  # an optional extra
            raise RuntimeError("the metrics endpoint needs prometheus-client: "
                               "pip install 'vsgroups[metrics]'") from exc
        self.host, self.port = host, port
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(describe))
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, self.host, self.port)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5.0)
            path = request.split()[1] if len(request.split()) > 1 else b""
            if path == b"/metrics":
                from prometheus_client import generate_latest

                body, status = generate_latest(self.registry), b"200 OK"
            else:
                body, status = b"not found: the metrics are at /metrics\n", b"404 Not Found"
            writer.write(b"HTTP/1.0 " + status + b"\r\nContent-Type: text/plain; version=0.0.4\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
        except (OSError, TimeoutError):
            pass  # a scraper that went away
        finally:
            writer.close()
