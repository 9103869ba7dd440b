"""What a node needs of its transport: ``tcp.TcpTransport`` over real sockets, and the simulator's
network (``sim.aio``) under the same ``api.Node`` code."""

from __future__ import annotations

from typing import Protocol


class Transport(Protocol):
    """Carries frames to ``"host:port"`` addresses; received frames go to the ``on_frame`` callback
    it was made with (then ``on_read_done``, once per read)."""

    @property
    def address(self) -> str:
        """The address peers reach this node at (valid once ``start`` returned)."""
        ...

    async def start(self) -> None: ...

    def send(self, addr: str, payload: bytes) -> None:
        """Queue ``payload`` for ``addr``; never blocks; best effort (the core retransmits)."""
        ...

    def link(self, addr: str) -> str:
        """How the connection to ``addr`` stands, in words (for diagnosis)."""
        ...

    def rtt(self, addr: str) -> float | None: ...

    def pending_bytes(self, addr: str) -> int: ...

    async def close(self) -> None: ...
