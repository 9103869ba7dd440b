"""vsgroups: virtually synchronous process groups for Python.

The ISIS programming model (process groups, consistent membership views, reliable multicast with
fifo, causal, total and safe order, state transfer, group RPC) over real TCP, built on a sans-IO
protocol core (:mod:`vsgroups.core`) that the asyncio runtime and the simulator share.
"""

__version__ = "0.1.0"

from .api import ALL, MAJORITY, Delivery, Group, Node, Replica, ViewChange
from .client import Client, ClientExpired, ClientGroup, Diffusion, NoReply
from .core import Config
from .errors import (
    GroupBlocked,
    JoinFailed,
    NodeClosed,
    NotAMember,
    PayloadTooLarge,
    QueryFailed,
    UnknownOrdering,
    VsgroupsError,
)

__all__ = [
    "ALL", "MAJORITY", "Client", "ClientExpired", "ClientGroup", "Config", "Delivery", "Diffusion", "Group",
    "GroupBlocked", "JoinFailed", "NoReply", "Node", "NodeClosed", "NotAMember", "PayloadTooLarge",
    "QueryFailed", "Replica", "UnknownOrdering", "ViewChange", "VsgroupsError",
]
