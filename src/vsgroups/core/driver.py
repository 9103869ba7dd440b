"""The one loop that acts on a core's outputs: shared by the asyncio runtime and the simulator.

A driver takes the outputs of a ``NodeCore`` in order and acts on each (docs/design.md §11). Acting
may call the core again — a snapshot for a joiner, a reply to a query — which makes more outputs;
the loop runs until the core has nothing more to say, or until the driver has replaced it (a new
incarnation). The order is the contract: a ``NeedState`` sits exactly between the last delivery of
the old view and the first of the new one, so a driver that acts in order snapshots the state at
the join instant.

A driver subclasses ``Driver`` and overrides the events it acts on; ``observe`` sees every output
first (the trace).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import events as ev
from .node import NodeCore


class Driver:
    core: NodeCore  # the core being drained

    def __init__(self) -> None:
        self._act: dict[type, Callable[[Any], None]] = {
            ev.Transmit: self.on_transmit, ev.Held: self.on_held, ev.Sent: self.on_sent,
            ev.Delivered: self.on_delivered,
            ev.ViewInstalled: self.on_view, ev.Blocked: self.on_blocked, ev.NeedState: self.on_need_state,
            ev.StateReady: self.on_state_ready, ev.Flushed: self.on_flushed,
            ev.DirectReceived: self.on_direct, ev.Left: self.on_left, ev.Excluded: self.on_excluded,
            ev.PrimaryHistory: self.on_history, ev.Suspicion: self.on_suspicion,
            ev.StatusRequested: self.on_status_requested, ev.FromClient: self.on_from_client,
        }

    def drain(self, core: NodeCore) -> None:
        """Act on every output of ``core``, including those that acting makes."""
        self.core = core
        act = self._act
        observe = self.observe
        outputs = core.take_outputs()
        while outputs:
            for out in outputs:
                observe(out)
                act[type(out)](out)
            if not self.driving(core):
                return
            outputs = core.take_outputs()

    def driving(self, core: NodeCore) -> bool:
        """Is ``core`` still the incarnation this driver drives?"""
        return True

    def observe(self, out: ev.Output) -> None:
        """Every output, before it is acted on."""

    def on_transmit(self, out: ev.Transmit) -> None: ...
    def on_held(self, out: ev.Held) -> None: ...
    def on_sent(self, out: ev.Sent) -> None: ...
    def on_delivered(self, out: ev.Delivered) -> None: ...
    def on_view(self, out: ev.ViewInstalled) -> None: ...
    def on_blocked(self, out: ev.Blocked) -> None: ...
    def on_need_state(self, out: ev.NeedState) -> None: ...
    def on_state_ready(self, out: ev.StateReady) -> None: ...
    def on_flushed(self, out: ev.Flushed) -> None: ...
    def on_direct(self, out: ev.DirectReceived) -> None: ...
    def on_left(self, out: ev.Left) -> None: ...
    def on_excluded(self, out: ev.Excluded) -> None: ...
    def on_history(self, out: ev.PrimaryHistory) -> None: ...
    def on_suspicion(self, out: ev.Suspicion) -> None: ...
    def on_status_requested(self, out: ev.StatusRequested) -> None: ...
    def on_from_client(self, out: ev.FromClient) -> None: ...
