"""Deterministic simulation: many ``NodeCore`` objects on a virtual clock and network.

The simulator drives the very protocol objects the TCP runtime uses; a run is a pure function of
its seed, so any failure it finds can be replayed.
"""

from .cluster import Simulation

__all__ = ["Simulation"]
