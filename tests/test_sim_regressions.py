"""Seeds that found a bug in the protocol core, replayed on every run so the bug stays fixed.

Each entry is a seed of the default scenario (``vsgroups sim --seed N`` replays it), or of the evs
one (``--model evs``), and what it found. A seed whose bug is not fixed yet is marked ``xfail``;
the fix removes the mark. A core change may alter what a seed's scenario does, so an entry guards
its bug only as long as the run still exercises it: keep the seed's timeline (``--timeline``) in
mind when a fix lands.
"""

from __future__ import annotations

import pytest

from vsgroups.sim.scenario import Spec, run

FOUND = {
    627: "a duplicated old frame carried a node's earlier member id for a group; the coordinator took the "
         "current one for retired, suspected it for ever and proposed view after view without end",
    14: "a leaver cut off from the primary component logged 'leave' without delivering the final set "
        "of its view (self-delivery, safe)",
    16: "right after a heal, the youngest member, which still suspects the others, decides a view with "
        "the promises of its elders instead of deferring to them, and excludes a healthy member; that "
        "member restarts, which ends its membership of another group, which loses its quorum (liveness)",
    163: "acknowledgements lost at quiescence were never repeated, so a member never learned that a safe "
         "message was stable and never delivered it (safe, liveness)",
    245: "a cast made while the state transfer is pending is sent at once but traced only after the "
         "state arrives, so it is never traced if the incarnation ends first (integrity)",
    368: "a member that leaves a group while its state transfer is pending logs 'leave', but the "
         "deliveries of its view held back behind the missing state are dropped: it survives the view "
         "without delivering what the others delivered (safe)",
    1374: "a join request that arrives late (relayed by a member that was paused) re-admits a process "
          "that has left the group since; it never installs the view and the group stalls (liveness)",
    2413: "members of a group's new primary view were excluded from two other groups, and an exclusion "
          "ended the incarnation in every group at once: the first group lost its quorum for good "
          "(self-delivery, safe, liveness)",
    2834: "a member behind a latency spike excluded two healthy members from one group; their "
          "incarnations ended in every group, and another group lost three of five members (liveness)",
}
FOUND_EVS = {  # seeds of ``vsgroups sim --model evs``
    223: "a member whose proposer fell silent after its promise stayed blocked (it never delivered again) "
         "while the others went on without noticing: no proposal came to release it (safe, liveness)",
    260: "a leaver's commit to the last other member was lost; that member's proposals then waited "
         "forever for the leaver's promise, though it answered that it had left (liveness)",
    288: "two configurations of one group whose members shared another group never learned of each "
         "other: heartbeats named only the groups their receiver shared (liveness)",
    404: "the members waited for the least of them to propose the next configuration, but it had left "
         "the group without them (liveness)",
    1962: "a process that had left the group stayed a merge target (heard from as a member of another "
          "configuration while it left); the proposal ignored its answer that it was not in the group "
          "and waited for its promise, with every acknowledgement frozen (safe, liveness)",
    2017: "the only member of a primary configuration left it, and its vote made the configuration of "
          "the member that stayed, which came from a non-primary one, primary: a lineage of primaries "
          "that no process passed along (primary-order)",
    2095: "a proposer from a non-primary configuration installed a primary one on the vote of a member of "
          "the primary, whose commit was then lost: two primaries at once (primary-order)",
    2144: "a process that crashed while it waited for its state in a group recovered its identifier and "
          "joined that group again under it (model)",
    2233: "a member that was paused when another left never learned of the leave; it waited for the "
          "leaver, alive in other groups, to propose the merge, while the other component waited for it "
          "(liveness)",
    40335: "the reunion rule of dynamic linear voting counted a quorum of a primary attempt that only its "
           "proposer, which then crashed, had installed: the new primary and that one were installed at "
           "no common process, unordered (primary-order)",
    41241: "the reunion rule counted a promiser that was leaving: a process alone was made primary after "
           "a primary it shared no member with (primary-order)",
    20224: "a recovered process joined under its old identifier a group that still listed it; the stale "
           "commit re-installed the old view with an empty stream, and the final set it reported cut "
           "the survivors' own messages (view-agreement, self-delivery)",
}


@pytest.mark.parametrize(("model", "seed"), [
    (model, seed) for model, found in (("vs", FOUND), ("evs", FOUND_EVS)) for seed in sorted(found)
])
def test_a_seed_that_found_a_core_bug_passes(model: str, seed: int) -> None:
    outcome = run(Spec(seed, model=model))
    assert outcome.ok, "\n".join(outcome.problems())
