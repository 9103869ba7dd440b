"""What a group engine needs from the node it runs on, and nothing more.

A node (``NodeCore``) carries many groups; what they share — the process identity, failure
detection, addresses, the outbox and the output queue — belongs to the node. A group engine sees
the node only through this interface, so that it can be driven on its own (the unit tests of the
engine use a fake host) and so that no group reaches into another's state.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Protocol

from . import events as ev
from .config import Config

if TYPE_CHECKING:
    from .group import GroupEngine


class Host(Protocol):
    pid: str  # this incarnation, name#inc
    addr: str  # where it listens
    cfg: Config
    rng: random.Random  # seeded: a run stays a function of its seed
    counter: int  # the newest cast of this node (causality domains order casts by it)

    @property
    def now(self) -> float:
        """The time of the input being handled (the core never reads a clock)."""
        ...

    @property
    def batching(self) -> bool:
        """A frame's messages are being handled: progress once at the end of it, not per message."""
        ...

    def send(self, addr: str, data: bytes) -> None:
        """Queue one encoded message for the node at ``addr`` (batched into frames by the node)."""

    def send_to(self, pid: str, data: bytes) -> None:
        """Queue one encoded message for process ``pid``, if its address is known."""

    def addr_of(self, pid: str) -> str | None: ...

    def learn_addr(self, pid: str, addr: str) -> None: ...

    def suspects(self, pid: str) -> bool:
        """Failure detection, shared by the node's groups: silent too long, or a newer incarnation exists."""
        ...

    def emit(self, event: ev.Output) -> None:
        """An output for the driver, in order."""

    def wake(self, engine: GroupEngine) -> None:
        """Tick ``engine`` at the next tick, even if it was quiet (``GroupEngine.quiet``)."""

    def defer(self, engine: GroupEngine) -> None:
        """Call ``engine.progress`` once the current input is handled (casts are stamped together)."""

    def members_installed(self, members: tuple[str, ...], addrs: dict[str, str], now: float) -> None:
        """A view of ``members`` was installed: watch them (failure detection) at ``addrs``."""

    def group_finished(self, engine: GroupEngine) -> None:
        """``engine`` left its group or was excluded from it: it takes no more inputs."""
