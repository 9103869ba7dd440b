"""Failure detection whose cost per process does not grow with the group (``core.monitoring``,
docs/design.md §9): who watches whom, and what a large idle group sends."""

from __future__ import annotations

import collections

import msgspec

from vsgroups.core import Config
from vsgroups.core import events as ev
from vsgroups.core.monitoring import ALL_WATCH, ring
from vsgroups.core.wire import Frame, K
from vsgroups.sim.cluster import SimProcess, Simulation

MEMBERS = tuple(f"p{i}#1" for i in range(ALL_WATCH + 2))
LAST = len(MEMBERS) - 1


def never(pid: str) -> bool:
    return False


def test_a_small_view_watches_every_member() -> None:
    members = MEMBERS[:ALL_WATCH]
    watched, watchers = ring(members, members[1], never, never)
    assert watched == watchers == [m for m in members if m != members[1]]


def test_a_large_view_watches_the_next_member_and_beats_to_the_previous() -> None:
    watched, watchers = ring(MEMBERS, MEMBERS[0], never, never)
    assert (watched, watchers) == ([MEMBERS[1]], [MEMBERS[LAST]])


def test_the_ring_is_walked_past_suspected_members_up_to_a_live_one() -> None:
    """However many fail in a row, the last live member before them watches them all, and the
    first live member after them sends its heartbeats to it."""
    suspected = {MEMBERS[3], MEMBERS[4]}.__contains__
    watched, _ = ring(MEMBERS, MEMBERS[2], never, suspected)
    _, watchers = ring(MEMBERS, MEMBERS[5], never, suspected)
    assert watched == [MEMBERS[3], MEMBERS[4], MEMBERS[5]]
    assert watchers == [MEMBERS[4], MEMBERS[3], MEMBERS[2]]


def test_a_nodes_own_other_member_ids_are_skipped() -> None:
    mine = {MEMBERS[1]}.__contains__  # this node joined again under another id
    watched, watchers = ring(MEMBERS, MEMBERS[0], mine, never)
    assert watched == [MEMBERS[2]] and watchers == [MEMBERS[LAST]]


def _heartbeats_per_member_per_second(members: int) -> float:
    sim = Simulation(3)
    for i in range(members):
        sim.add(f"p{i}", ["g"], founder=i == 0)
        sim.run_for(0.01)
    assert sim.run_until_true(sim.converged, 60, every=0.05)
    sim.run_for(2.0)
    counts: collections.Counter[str] = collections.Counter()

    def count(proc: SimProcess, out: ev.Output) -> None:
        if type(out) is ev.Transmit:
            for raw in msgspec.msgpack.decode(out.data, type=Frame).msgs:
                counts[K(msgspec.msgpack.decode(raw)[0]).name] += 1

    sim.listeners.append(count)
    sim.run_for(2.0)
    return counts["HB"] / members / 2.0


def test_an_idle_large_group_sends_heartbeats_to_ring_neighbours_not_to_everyone() -> None:
    """Every process sends a heartbeat to its ring neighbour each heartbeat_interval and a probe to
    every process it knows each probe_interval; all-to-all heartbeats would be 10 per peer per
    second (more than 150 per member at 16 members)."""
    cfg = Config()
    members = 16
    rate = _heartbeats_per_member_per_second(members)
    ring_and_probes = 1 / cfg.heartbeat_interval + (members - 1) / cfg.probe_interval
    assert rate <= 1.2 * ring_and_probes < (members - 1) / cfg.heartbeat_interval


def test_a_crash_in_a_large_group_is_reported_and_ends_in_a_view_in_time() -> None:
    """The crashed member's watcher suspects it and reports it: every survivor installs the new view
    within the suspicion timeout and a few hops (not timeout + probe_interval, the unreported bound)."""
    sim = Simulation(4)
    names = [f"p{i}" for i in range(12)]
    for i, name in enumerate(names):
        sim.add(name, ["g"], founder=i == 0)
        sim.run_for(0.01)
    assert sim.run_until_true(sim.converged, 60, every=0.05)
    sim.run_for(1.0)
    crashed_at = sim.now
    sim.crash(names[5])
    survivors = [sim.procs[n] for n in names if n != names[5]]

    def new_view() -> bool:
        return all(not any(m.startswith(names[5] + "#") for m in p.views["g"][1]) for p in survivors)

    assert sim.run_until_true(new_view, 10, every=0.001)
    assert sim.now - crashed_at <= Config().suspect_timeout + 0.05
