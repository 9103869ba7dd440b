"""A replicated dictionary (1987a §3; docs/guide/tools.md): reads are local, updates are cast.

Every member holds the whole dictionary. ``set``, ``delete`` and ``update`` are operations of a
``Replicated`` state machine: cast in total order by default, so every member applies them in one
order, and each call returns once this member applied it (a member reads its own writes). Pass
``order="safe"`` for an update that must survive any failure (delivered only once every member
holds it), or ``order="causal"`` for a key only one member writes (for example the holder of a
``Token`` for it): causal order keeps one writer's updates in order and is cheaper, but two writers
of one key under causal order could leave members disagreeing. ``flush()`` before acting outside
the group on what was written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..api import Node
from .replicated import Replicated

# A key is a str, int, float, bool, bytes or None: what msgpack carries and gives back equal. Typed
# as Any (a Mapping's key type is invariant, so a precise one would refuse a dict[str, int]); set,
# delete and update check it when called.
Key = Any
_KEY_TYPES = (str, int, float, bool, bytes, type(None))


class ReplicatedDict(Replicated, Mapping[Key, Any]):
    """``d = await ReplicatedDict.join(node, "config")``; then ``d[key]``, ``await d.set(key,
    value)``. Values are anything msgpack encodes (lists come back as lists)."""

    def __init__(self, node: Node, group: str) -> None:
        super().__init__(node, group)
        self._data: dict[Key, Any] = {}

    async def set(self, key: Key, value: Any, *, order: str | None = None) -> None:
        await self.submit(["set", _check(key), value], order)

    async def delete(self, key: Key, *, order: str | None = None) -> bool:
        """Remove ``key``; whether it was there (at this member, when its turn came)."""
        return bool(await self.submit(["del", _check(key)], order))

    async def update(self, items: Mapping[Key, Any] | Iterable[tuple[Key, Any]], *,
                     order: str | None = None) -> None:
        """Set several keys in one operation: every member applies all of them at one point."""
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        await self.submit(["update", [[_check(k), v] for k, v in pairs]], order)

    def __getitem__(self, key: Key) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[Key]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"ReplicatedDict({self.name!r}, {self._data!r})"

    def apply_op(self, op: list[Any], sender: str) -> Any:
        kind = op[0]
        if kind == "set":
            self._data[op[1]] = op[2]
        elif kind == "del":
            return self._data.pop(op[1], _MISSING) is not _MISSING
        elif kind == "update":
            self._data.update((k, v) for k, v in op[1])
        else:
            raise ValueError(f"unknown dictionary operation {kind!r}")
        return None

    def snapshot(self) -> Any:
        return [[k, v] for k, v in self._data.items()]

    def restore(self, state: Any) -> None:
        self._data = {k: v for k, v in state}


_MISSING = object()


def _check(key: Key) -> Key:
    if not isinstance(key, _KEY_TYPES):
        raise TypeError(f"a ReplicatedDict key must be a str, int, float, bool, bytes or None, not "
                        f"{type(key).__name__} (it travels as msgpack)")
    return key
