"""Deterministic simulation: many ``NodeCore`` objects on a virtual clock and network.

The simulator drives the very protocol objects the TCP runtime uses; a run is a pure function of
its seed, so any failure it finds can be replayed. ``network`` models links and omission faults,
``cluster`` the processes and their faults, ``scenario`` the random fault scenarios (and the fault
model they stay within), ``timeline`` a readable account of a run, ``cli`` the ``vsgroups sim``
command. See ``docs/simulation.md``.
"""

from .cluster import Simulation
from .scenario import Outcome, Spec, run

__all__ = ["Outcome", "Simulation", "Spec", "run"]
