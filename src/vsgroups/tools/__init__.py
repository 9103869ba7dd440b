"""The ISIS toolkit on vsgroups' groups (1987a §3; 1993, the toolkit sidebar): classic
distributed problems as short programs on the public API (docs/guide/tools.md)."""

from .dict import ReplicatedDict
from .replicated import MemberState, Replicated

__all__ = ["MemberState", "Replicated", "ReplicatedDict"]
