"""State transfer to joiners (docs/design.md §7; 1987a §3.2).

The decided value of a view change names the state sender (the oldest old member of the new view)
and the joiners. The sender's driver snapshots the state at the install point — after every message
of the old view, before any of the new one (``NeedState``, answered by ``provide_state``) — and the
sender streams it in chunks, point to point, repeating chunks a joiner asks for again. A joiner holds
every event of its new view until the whole state has arrived (``StateReady`` comes first), and while
it waits it sends nothing but still acknowledges and takes part in view changes. If the sender is not
in a later view before the state has arrived (vs), or any configuration change comes first (evs,
where the sender keeps the state only for the members of its own configuration), the joiner abandons
its incarnation, as in a crash, and joins again as a new one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import events as ev
from .wire import StateChunk, StateDone, StateRequest, Value, encode

if TYPE_CHECKING:
    from .group import GroupEngine


class StateTransfer:
    def __init__(self, engine: GroupEngine, now: float) -> None:
        self.g = engine
        # joiner side
        self.awaiting: str | None = None  # the view whose state this joiner waits for
        self.sender: str | None = None
        self.chunks: dict[int, bytes] = {}
        self.asked = now
        self.held: list[ev.Output] = []  # events of the new view, released once the state is here
        # sender side: per view, the chunks and the joiners that have not confirmed them
        self.out: dict[str, tuple[list[bytes], set[str]]] = {}

    def provide(self, view: str, data: bytes) -> None:
        value = self.g.change.committed_value_for(view)
        joiners = set(value.joiners) if value else set()
        size = self.g.cfg.state_chunk
        chunks = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
        self.out[view] = (chunks, joiners)
        for j in sorted(joiners):
            self._send_chunks(view, j, range(len(chunks)))

    def installed(self, value: Value, joined: bool, now: float) -> bool:
        """The view of ``value`` was installed: start waiting for the state, or ask the driver for a
        snapshot. False if this joiner must give up (its sender failed or parted first)."""
        g = self.g
        if self.awaiting is not None and (g.evs or self.sender not in g.members):
            # evs: a configuration change may have parted us from the sender, which keeps the state
            # only for the members of its own configuration
            g.finish_excluded(now, f"state sender {self.sender} failed or parted before the state arrived")
            return False
        if joined and value.state_from is not None and value.state_from != g.me:
            self.awaiting = value.id
            self.sender = value.state_from
            self.asked = now
        elif value.state_from == g.me and value.joiners:
            g.emit(ev.NeedState(g.name, value.id))
        return True

    def hold(self, event: ev.Output) -> bool:
        """Hold ``event`` if this joiner still waits for its state."""
        if self.awaiting is None:
            return False
        self.held.append(event)
        return True

    # -- inputs ----------------------------------------------------------------------------------

    def on_state(self, sender: str, msg: StateChunk, raw: bytes, now: float) -> None:
        view, count = msg.view, msg.count
        g = self.g
        if self.awaiting is None and g.is_member:
            # We hold the group's state: our confirmation was lost, or the value that named us a
            # joiner of ``view`` is not one we installed (a merge took us in elsewhere). Confirm, so
            # that the sender does not wait for us.
            g.host.send_to(sender, encode(StateDone(g.name, view)))
            return
        if view != self.awaiting:
            return
        self.chunks[msg.index] = msg.chunk
        self.asked = now
        if len(self.chunks) == count:
            data = b"".join(self.chunks[i] for i in range(count))
            self.awaiting = None
            self.chunks = {}
            g.host.send_to(sender, encode(StateDone(g.name, view)))
            g.host.emit(ev.StateReady(g.name, view, data))
            held, self.held = self.held, []
            for event in held:
                g.host.emit(event)
            g.data.ack_dirty = True  # the deliveries are the application's now (causality domains)
            g.progress(now)

    def on_statereq(self, sender: str, msg: StateRequest, raw: bytes, now: float) -> None:
        out = self.out.get(msg.view)
        if out is not None and sender in out[1]:
            self._send_chunks(msg.view, sender, msg.missing)

    def on_statedone(self, sender: str, msg: StateDone, raw: bytes, now: float) -> None:
        out = self.out.get(msg.view)
        if out is not None:
            out[1].discard(sender)
            if not out[1]:
                del self.out[msg.view]

    def quiet(self) -> bool:
        return self.awaiting is None and not self.out

    def tick(self, now: float) -> None:
        """A joiner asks again for the chunks it lacks; a sender forgets joiners that are gone."""
        g = self.g
        if self.awaiting is not None and now - self.asked >= 4 * g.cfg.retry_interval:
            self.asked = now
            assert self.sender is not None
            missing = [i for i in range(max(self.chunks, default=0) + 2) if i not in self.chunks]
            g.host.send_to(self.sender, encode(StateRequest(g.name, self.awaiting, missing)))
        for view, (_, joiners) in list(self.out.items()):
            joiners.intersection_update(g.members)
            if not joiners:
                del self.out[view]

    def remind(self) -> None:
        """Send each joiner that has not confirmed its state the last chunk again: it completes the
        state, or draws the confirmation that was lost (a leaver waits for them)."""
        for view, (chunks, joiners) in list(self.out.items()):
            for j in sorted(joiners):
                self._send_chunks(view, j, [len(chunks) - 1])

    def _send_chunks(self, view: str, joiner: str, indexes: Iterable[int]) -> None:
        g = self.g
        chunks = self.out[view][0]
        for i in indexes:
            if 0 <= i < len(chunks):
                g.host.send_to(joiner, encode(StateChunk(g.name, view, i, len(chunks), chunks[i])))
