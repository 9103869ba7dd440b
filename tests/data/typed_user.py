"""A user's program against the public API, for ``mypy --strict``."""
from __future__ import annotations

import asyncio
from typing import Any

import vsgroups


class Counter(vsgroups.Replica):
    def __init__(self) -> None:
        self.n = 0

    def apply(self, msg: vsgroups.Delivery) -> None:
        self.n += msg.payload["add"]

    def get_state(self) -> Any:
        return {"n": self.n}

    def set_state(self, state: Any) -> None:
        self.n = state["n"]

    def query(self, msg: vsgroups.Delivery) -> Any:
        return self.n


async def main() -> None:
    async with vsgroups.Node("p1", listen="127.0.0.1:7001", seeds=["127.0.0.1:7001"],
                             key_file="cluster.key") as node:
        group = await node.join("counter", replica=Counter())
        mid: str = await group.cast({"add": 1}, order="total")
        await group.flush()
        replies: dict[str, Any] = await group.query({"get": 1}, replies=vsgroups.MAJORITY, timeout=2.0)
        async for event in group.events():
            if isinstance(event, vsgroups.ViewChange):
                print(event.view, event.members, event.primary, mid, replies)
            else:
                print(event.sender, event.payload)
        await group.leave()


asyncio.run(main())
