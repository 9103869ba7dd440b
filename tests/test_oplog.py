"""The operator's log (``vsgroups.oplog``): founding, joins, view changes, blocking, state transfer,
suspicions and leaves each make a readable record with the structured fields group, view, peer."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import pytest

import vsgroups
from vsgroups.oplog import JsonFormatter
from vsgroups.procs import Cluster

CONFIG = vsgroups.Config(suspect_timeout=0.5)


def test_a_groups_life_is_logged_for_an_operator(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vsgroups.groups")

    async def main() -> tuple[str, str, str]:
        async with vsgroups.Node("p1", key="k", found=True, config=CONFIG) as n1:
            await n1.join("g")
            async with vsgroups.Node("p2", seeds=[n1.address], key="k", config=CONFIG) as n2:
                await n2.join("g")
                n3 = vsgroups.Node("p3", seeds=[n1.address], key="k", config=CONFIG)
                await n3.start()
                await n3.join("g")
                views = n1.groups["g"].events()
                await n3.abort()  # a crash: the others suspect it, then install a view without it
                async for event in views:
                    if isinstance(event, vsgroups.ViewChange) and n3.pid not in event.members:
                        break
                return n1.pid, n2.pid, n3.pid

    p1, p2, p3 = asyncio.run(asyncio.wait_for(main(), 60))
    records = [r for r in caplog.records if r.name == "vsgroups.groups"]
    for r in records:
        assert {"group", "view", "peer"} <= set(vars(r)), f"unstructured record: {r.getMessage()}"
    said = [r.getMessage() for r in records]

    def logged(text: str, **fields: object) -> logging.LogRecord:
        found = [r for r in records if text in r.getMessage()
                 and all(getattr(r, k) == v for k, v in fields.items())]
        assert found, f"no record saying {text!r} with {fields} in:\n" + "\n".join(said)
        return found[0]

    logged(f"founded as {p1} in primary view 0.0.{p1}", group="g", view=f"0.0.{p1}")
    logged(f"joined as {p2}", group="g")
    logged(f"joined {p2}, gone none", group="g")
    logged("sending the state", group="g")
    logged("received the state", group="g")
    logged("view change under way", group="g")
    suspected = logged(f"suspect {p3}", peer=p3)
    assert suspected.levelno == logging.WARNING
    logged(f"joined none, gone {p3}", group="g")
    logged("group g: left", group="g")


def test_json_lines_from_a_node_process(tmp_path: Path) -> None:
    """``vsgroups node --log-format json``: every stderr line is one JSON object, and the operator's
    records carry their structured fields (issue 11, item 4)."""
    async def main() -> str:
        async with Cluster(tmp_path, node_args=["--log-format", "json"]) as cluster:
            (m1, _) = await cluster.start(2)
            await cluster.quit_all()
            assert m1.pid is not None
            return m1.pid

    pid = asyncio.run(asyncio.wait_for(main(), 120))
    lines = (tmp_path / "logs" / "m1.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # fails on any line that is not one JSON object
    founded = [r for r in records if r["logger"] == "vsgroups.groups" and "founded" in r["message"]]
    assert founded and founded[0]["group"] == "kv" and founded[0]["view"] == f"0.0.{pid}"
    assert founded[0]["level"] == "INFO" and founded[0]["time"].endswith("+00:00")
    assert any(r["logger"] == "vsgroups.groups" and "left" in r["message"] for r in records)


def test_the_json_formatter_keeps_exceptions_and_leaves_out_fields_a_record_lacks() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("vsgroups.core", logging.ERROR, __file__, 1, "failed %s", ("x",),
                                   sys.exc_info())
    out = json.loads(JsonFormatter().format(record))
    assert out["message"] == "failed x" and out["level"] == "ERROR" and "group" not in out
    assert "ValueError: boom" in out["exception"]
