"""The operator's log (``vsgroups.oplog``): founding, joins, view changes, blocking, state transfer,
suspicions and leaves each make a readable record with the structured fields group, view, peer."""

from __future__ import annotations

import asyncio
import logging

import pytest

import vsgroups

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
