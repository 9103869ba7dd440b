"""Who watches whom: failure detection whose cost per node does not grow with the group
(docs/design.md §9).

In a view of at most ``ALL_WATCH`` members every member watches every other, as the members of
small groups talk to each other all the time anyway. In a larger view the members form
a ring in view order: each member *watches* the next one (its heartbeats come to us), and sends
its own heartbeats to the previous one, which watches it. A member that suspects the one it
watches reports the suspicion to every member of its views (``Heartbeat.suspects``), and goes on
to watch the one after, and so on past every suspected member until a live one: every member that
fails is watched by the last live member before it in the ring, however many fail together and
whichever side of a partition they are on. A member's heartbeats likewise go to every member
before it up to the first one it does not suspect, so that whoever watches it after a failure
hears it.

A member suspects a peer it watches when it has heard nothing from it for ``suspect_timeout``, and
not before two heartbeat intervals after it began to watch it (that peer learns from our report
that it must now send to us); and a peer it does not watch when it has heard nothing from it since
a report of its suspicion arrived and for ``suspect_timeout``. Every process also probes every
process it knows every ``probe_interval`` (merge discovery), so a live neighbour is seldom silent
when we begin to watch it, and any peer silent for ``suspect_timeout + probe_interval`` is
suspected, reported or not: a member left behind in an old view, whose ring neighbours went on to
views without it, still finds out who is gone. JGroups' FD and FD_SOCK watch a ring neighbour in
the same way, and Corosync's token ring detects failures around the ring.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

#: Views of at most this many members watch all-to-all; larger ones by ring. A report of one
#: watcher's suspicion makes every member that has not heard from the suspect lately suspect it too,
#: so a link fault between two neighbours can exclude a live member; small views, where that would
#: cost most and all-to-all costs least, keep watching every member themselves.
ALL_WATCH = 8


def ring(members: tuple[str, ...], me: str, mine: Callable[[str], bool],
         suspected: Callable[[str], bool]) -> tuple[list[str], list[str]]:
    """In a view of ``members`` (in view order): whom ``me`` watches, and to whom it sends its
    heartbeats. ``mine`` tells this node's own member ids (a node that joined again has several),
    ``suspected`` the members it suspects now."""
    others = [m for m in members if m == me or not mine(m)]
    if len(members) <= ALL_WATCH:
        rest = [m for m in others if m != me]
        return rest, rest
    i = others.index(me)
    return _walk(others, i, 1, suspected), _walk(others, i, -1, suspected)


def _walk(members: list[str], i: int, step: int, suspected: Callable[[str], bool]) -> list[str]:
    """From position i, in direction ``step``, the members up to the first that is not suspected."""
    out: list[str] = []
    n = len(members)
    for k in range(1, n):
        m = members[(i + step * k) % n]
        out.append(m)
        if not suspected(m):
            break
    return out


def rings(views: Iterable[tuple[tuple[str, ...], str]], mine: Callable[[str], bool],
          suspected: Callable[[str], bool]) -> tuple[set[str], set[str]]:
    """Over every view (members, our member id in it): the members we watch, and those our
    heartbeats go to."""
    watch: set[str] = set()
    beat: set[str] = set()
    for members, me in views:
        if me in members:
            watched, watchers = ring(members, me, mine, suspected)
            watch.update(watched)
            beat.update(watchers)
    return watch, beat
