"""The ISIS toolkit on vsgroups' groups (1987a §3; 1993, the toolkit sidebar): classic
distributed problems as short programs on the public API (docs/guide/tools.md)."""

from .cohort import Cohort
from .dict import ReplicatedDict
from .hierarchy import Hierarchy, HierarchyClient, ShardUnavailable
from .lock import Grant, LockLost, LockService
from .news import Board, Posting, Reader
from .recovery_manager import RecoveryManager
from .replicated import MemberState, Replicated
from .split import Split
from .token import Token
from .watch import Watch

__all__ = ["Board", "Cohort", "Grant", "Hierarchy", "HierarchyClient", "LockLost", "LockService",
           "MemberState", "Posting", "Reader", "RecoveryManager", "Replicated", "ReplicatedDict",
           "ShardUnavailable", "Split", "Token", "Watch"]
