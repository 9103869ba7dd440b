"""The sans-IO protocol core: pure state machines fed with frames, ticks and API calls.

Nothing in this package reads a socket or a clock: the asyncio runtime and the deterministic
simulator drive the same ``NodeCore`` objects.
"""

from .config import Config
from .node import NodeCore

__all__ = ["Config", "NodeCore"]
