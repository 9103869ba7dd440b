"""The recovery manager (1987a §3.6; docs/guide/recovery-manager.md): coordinated checkpoints, and
a restart of the whole group from the processes that failed last.

A ``RecoveryManager`` wraps the replica of a vs group and keeps, in a directory of its own per
process, the log of the views the process installed (``recovery.ViewLog``, written before the
process acts in the view) and its newest checkpoint.

* *Coordinated checkpoints.* ``checkpoint()`` casts a request in total order; every member writes
  its replica's state when it delivers it, so all the checkpoints of one number hold the same state
  (the same point of the stream). A checkpoint holds its number, the view and the state.
* *A failed member restarts and rejoins.* ``RecoveryManager.join`` of a process whose group is alive
  is a plain join: the process gets the group's state by state transfer, its checkpoint is not used.
* *A total failure.* If no member answers, the processes that come back meet in the group
  ``<group>/recovery`` and each casts the last view it logged. Every process computes, from the same
  answers in the same order, Skeen's last-to-fail set (``recovery.last_to_fail``): the members of the
  newest logged view that logged it last. Once all of them have answered, the one of them holding
  the newest checkpoint (the smallest name on a tie) founds the group again from it, and the others
  join it and get that state by state transfer. Nobody restarts from an older state: the processes
  that failed last hold the newest checkpoint (a coordinated checkpoint is written by every member
  of its view).

What a checkpoint cannot hold is lost at a total failure: the updates after the last one. Take one
before anything outside the group depends on them (like ``flush``).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from ..api import Delivery, Group, Node, Replica, ViewChange, _decode, _encode
from ..errors import JoinFailed, VsgroupsError
from ..recovery import LastToFail, ViewLog, ViewRecord, last_to_fail

CHECKPOINT = "vsgroups.recovery-manager/checkpoint"  # the payload of a coordinated checkpoint
ALIVE_WAIT = 3.0  # seconds a restarting process asks for the group before it concludes a total failure
MEETING_WAIT = 30.0  # seconds it waits for the first seed to open the meeting before opening one itself


class RecoveryManager(Replica):
    """``manager = await RecoveryManager.join(node, group, replica, directory)``; then
    ``await manager.checkpoint()``; ``manager.group`` is the group's handle."""

    last_to_fail = staticmethod(last_to_fail)  # Skeen's rule (``recovery``)

    def __init__(self, node: Node, name: str, replica: Replica, directory: str | os.PathLike[str]) -> None:
        self.node = node
        self.name = name
        self.replica = replica
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        # the views of this process's last membership; each (re)join logs a new one: after a total
        # failure the group starts a new lineage, whose epochs begin again
        path = self.dir / "views.jsonl"
        self.last = ViewLog.load(path).last()
        path.unlink(missing_ok=True)
        self.log = ViewLog(path)
        self.group: Group | None = None
        self.number = 0  # the newest coordinated checkpoint applied here
        self.recovered_from: str | None = None  # after a total failure: the process restarted from
        self._written: asyncio.Event = asyncio.Event()

    @classmethod
    async def join(cls, node: Node, group: str, replica: Replica, directory: str | os.PathLike[str],
                   model: str = "vs", decide: Any = None) -> RecoveryManager:
        """Join ``group``: as any joiner if it is alive; after a total failure, by the recovery above."""
        if model != "vs":
            raise ValueError("the recovery manager restarts vs groups (evs processes recover by themselves: "
                             "Node(data_dir=...))")
        manager = cls(node, group, replica, directory)
        if manager.last is None:  # never a member: nothing to recover
            manager.group = await node.join(group, manager)
            return manager
        try:
            manager.group = await node.join(group, manager, timeout=ALIVE_WAIT, found=False)
        except JoinFailed:
            await _called_off(node, group)
            await manager._recover(decide or _newest)
        return manager

    # -- checkpoints ---------------------------------------------------------------------------------

    async def checkpoint(self) -> int:
        """A coordinated checkpoint: returns its number once this member has written it."""
        assert self.group is not None
        self._written.clear()
        await self.group.cast(CHECKPOINT)
        await self._written.wait()
        return self.number

    def stored(self) -> tuple[int, Any] | None:
        """This process's newest checkpoint: (number, state), if any."""
        path = self.dir / "checkpoint.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return int(data["number"]), _decode(bytes.fromhex(data["state"]))

    def _write(self) -> None:
        tmp = self.dir / "checkpoint.json.tmp"
        with open(tmp, "w") as f:
            json.dump({"number": self.number, "state": _encode(self.replica.get_state()).hex()}, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.dir / "checkpoint.json")

    # -- the replica: the application's, with the manager's own messages taken out -------------------

    def apply(self, msg: Delivery) -> None:
        if msg.payload == CHECKPOINT:
            self.number += 1
            self._write()
            self._written.set()
            return
        self.replica.apply(msg)

    def query(self, msg: Delivery) -> Any:
        return self.replica.query(msg)

    def block(self, view: str) -> None:
        self.replica.block(view)

    def view_changed(self, view: ViewChange) -> None:
        me = self.node.groups[self.name].member_id
        if me not in view.joined or view.members == (me,):
            self._log(view)  # a joiner logs its first view once it holds the state (``set_state``)
        self.replica.view_changed(view)

    def _log(self, view: ViewChange) -> None:
        self.log.append(ViewRecord.from_view(view.view, (m.partition("#")[0] for m in view.members)))

    def get_state(self) -> Any:
        return [self.number, self.replica.get_state()]

    def set_state(self, state: Any) -> None:
        self.number, inner = state
        self.replica.set_state(inner)
        view = self.node.groups[self.name].view
        if view is not None:
            self._log(view)

    def ended(self, reason: Exception) -> None:
        self.replica.ended(reason)

    # -- after a total failure -----------------------------------------------------------------------

    async def _recover(self, decide: Any) -> None:
        """Meet the others in ``<group>/recovery``, agree on who restarts the group, and do it."""
        answers: dict[str, tuple[ViewRecord | None, int]] = {}
        outcome: asyncio.Future[tuple[str, LastToFail]] = asyncio.get_running_loop().create_future()
        manager = self

        class Meeting(Replica):
            def apply(self, msg: Delivery) -> None:
                self.answer(*msg.payload)

            def answer(self, name: str, record: Any, number: int) -> None:
                answers.setdefault(name, (ViewRecord.from_json(record) if record else None, number))
                result = manager.last_to_fail({n: r for n, (r, _) in answers.items()})
                if result.decided and not outcome.done():
                    outcome.set_result((decide(result, answers), result))

            def get_state(self) -> Any:  # a late comer learns the answers given before it came
                return [[n, r.to_json() if r else None, k] for n, (r, k) in answers.items()]

            def set_state(self, state: Any) -> None:
                for answer in state:
                    self.answer(*answer)

        where = f"{self.name}/recovery"
        first = self.node.seeds[:1] in ([], [self.node.address])  # as ``Node.join`` decides
        try:  # founded by the first seed (every process restarting at once would found one each)...
            meeting = await self.node.join(where, Meeting(), found=first, timeout=MEETING_WAIT)
        except JoinFailed:  # ...unless it does not come back: then by whoever hears nobody
            await _called_off(self.node, where)
            meeting = await self.node.join(where, Meeting(), found=True, timeout=None)
        stored = self.stored()
        last = self.last
        await meeting.cast([self.node.name, last.to_json() if last else None, stored[0] if stored else 0])
        chooser, _ = await outcome
        self.recovered_from = chooser
        if chooser == self.node.name:
            if stored is not None:
                self.number = stored[0]
                self.replica.set_state(stored[1])
            self.group = await self.node.join(self.name, manager, refound=True)
        else:
            self.group = await self.node.join(self.name, manager, found=False, timeout=None)
        try:
            await meeting.leave()
        except VsgroupsError:
            pass


async def _called_off(node: Node, group: str) -> None:
    """A join that failed is called off at the node's next round: wait for it before joining again."""
    while group in node.groups:
        await asyncio.sleep(node.tick_interval)


def _newest(result: LastToFail, answers: dict[str, tuple[ViewRecord | None, int]]) -> str:
    """Of the last to fail, the one with the newest checkpoint (the smallest name on a tie)."""
    return min(result.candidates, key=lambda n: (-answers[n][1], n))
