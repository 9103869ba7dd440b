"""Hosts in Linux network namespaces on one virtual switch, to partition and heal for real.

The simulator partitions a virtual network; the partition tests and ``vsgroups demo --partition``
need the same faults between real processes over real TCP, where a cut is silent packet loss
(segments and SYNs go unanswered, connections hang) rather than the refused connection of a dead
process on loopback. ``Network(n)`` builds ``n`` such hosts; ``host(i)`` tells ``vsgroups.procs``
how to start a member on host ``i`` (``ip netns exec``) and where it listens.

Topology, for run id R (random, so that concurrent runs never share a name)::

    namespace vsgR-net     bridge br0, with ports h1 ... hN
                                          | veth pair
    namespace vsgR-hI      eth0 10.213.0.I/24, MAC 02:21:30:00:00:I; lo

Hosts are numbered from 1. The addresses are private to these namespaces: nothing is created in
the root namespace, and no packet leaves the switch.

Cutting. Every host has a permanent neighbour (ARP) entry for every other host. Cutting a to b
points a's entry for b at a MAC address no host has: the switch floods a's frames for b to every
port and every host discards them as not addressed to it. So a's packets to b vanish without a
trace, as on a dead link, while b's packets to a still arrive. This needs neither netem nor a tc
classifier (the kernels this runs on have neither) nor iptables (which need not be installed).
``cut`` drops both directions between components, ``cut_one_way`` one direction between two
hosts; cuts add up until ``heal`` restores every entry.

``close`` (also on leaving ``with``, and when building fails) deletes the namespaces, and with them
the bridge and the veths. Building needs root and iproute2's ``ip``; without them, or if the
kernel refuses, it raises ``NetnsUnavailable``, on which tests skip. Stop the processes running in
the namespaces before closing: a namespace lives on, nameless, as long as a process is in it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterable, Sequence

from .procs import Host

SUBNET = "10.213.0"
PORT = 7000  # every host has its own port space: all members listen on the same port
NOWHERE = "02:21:30:00:00:00"  # the MAC of no host: where cut packets go


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be built here (not root, no ``ip``, or the kernel refused)."""


def _mac(i: int) -> str:
    return f"02:21:30:00:00:{i:02x}"


def _ip(namespace: str, commands: Iterable[str]) -> None:
    """Run ``ip`` commands in ``namespace``, in one process (``ip -batch``)."""
    script = "".join(f"{command}\n" for command in commands)
    result = subprocess.run(["ip", "-n", namespace, "-batch", "-"], input=script, capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip -n {namespace} failed: {result.stderr.strip()}\n{script}")


class Network:
    """``n`` hosts (network namespaces) on one bridge, which can be partitioned and healed."""

    def __init__(self, n: int) -> None:
        if not 1 <= n <= 254:
            raise ValueError("a network has 1 to 254 hosts")
        self.n = n
        self.run_id = f"vsg{secrets.token_hex(3)}"
        self.switch = f"{self.run_id}-net"
        self.blocked: set[tuple[int, int]] = set()  # (a, b): a's packets to b are dropped
        self._created: list[str] = []

    def __enter__(self) -> Network:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def hosts(self) -> range:
        return range(1, self.n + 1)

    def namespace(self, i: int) -> str:
        return f"{self.run_id}-h{i}"

    def ip(self, i: int) -> str:
        return f"{SUBNET}.{i}"

    def host(self, i: int) -> Host:
        """Where a member on host ``i`` listens, and how to start it there."""
        return Host(f"{self.ip(i)}:{PORT}", ("ip", "netns", "exec", self.namespace(i)))

    # -- building and removing ---------------------------------------------------------------------

    def open(self) -> None:
        """Build the namespaces, the bridge and the links; ``NetnsUnavailable`` if that is impossible."""
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise NetnsUnavailable("network namespaces need root and iproute2's `ip` command")
        try:
            self._add_namespace(self.switch)
            _ip(self.switch, ["link add br0 type bridge", "link set br0 up"])
            for i in self.hosts:
                ns = self.namespace(i)
                self._add_namespace(ns)
                _ip(self.switch, [f"link add h{i} type veth peer name eth0 netns {ns}",
                                  f"link set h{i} master br0 up"])
                _ip(ns, ["link set lo up", f"link set eth0 address {_mac(i)}",
                         f"addr add {self.ip(i)}/24 dev eth0", "link set eth0 up",
                         *(self._neighbour(j, _mac(j)) for j in self.hosts if j != i)])
        except (OSError, RuntimeError) as exc:
            self.close()
            raise NetnsUnavailable(f"cannot build network namespaces: {exc}") from exc

    def _add_namespace(self, name: str) -> None:
        result = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"ip netns add {name} failed: {result.stderr.strip()}")
        self._created.append(name)

    def close(self) -> None:
        """Delete every namespace this network created (idempotent)."""
        failed = []
        while self._created:
            name = self._created.pop()
            result = subprocess.run(["ip", "netns", "delete", name], capture_output=True, text=True,
                                    check=False)
            if result.returncode != 0:
                failed.append(f"{name}: {result.stderr.strip()}")
        self.blocked.clear()
        if failed:
            raise RuntimeError("could not delete network namespaces: " + "; ".join(failed))

    # -- faults ------------------------------------------------------------------------------------

    def cut(self, components: Sequence[Iterable[int]]) -> None:
        """Partition the hosts into ``components`` (which must list every host once): from now on
        packets pass only within a component."""
        component = {i: c for c, hosts in enumerate(components) for i in hosts}
        listed = sorted(i for hosts in components for i in hosts)
        if listed != list(self.hosts):
            raise ValueError(f"components must list every host of 1..{self.n} once, got {components}")
        self._block(self.blocked | {(a, b) for a in self.hosts for b in self.hosts
                                    if component[a] != component[b]})

    def cut_one_way(self, a: int, b: int) -> None:
        """Drop host ``a``'s packets to host ``b``; ``b``'s packets to ``a`` still pass."""
        if a == b or a not in self.hosts or b not in self.hosts:
            raise ValueError(f"cut_one_way needs two different hosts of 1..{self.n}, got {a} and {b}")
        self._block(self.blocked | {(a, b)})

    def heal(self) -> None:
        """Undo every cut: all hosts reach each other again."""
        self._block(set())

    def _block(self, blocked: set[tuple[int, int]]) -> None:
        changed = blocked ^ self.blocked
        for a in self.hosts:
            entries = [self._neighbour(b, NOWHERE if (a, b) in blocked else _mac(b))
                       for b in self.hosts if (a, b) in changed]
            if entries:
                _ip(self.namespace(a), entries)
        self.blocked = blocked

    def _neighbour(self, j: int, mac: str) -> str:
        return f"neigh replace {self.ip(j)} lladdr {mac} dev eth0 nud permanent"
