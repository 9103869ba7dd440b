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
}
PENDING: set[tuple[str, int]] = set()  # (model, seed) whose core fix has not landed yet (xfail)


@pytest.mark.parametrize(("model", "seed"), [
    pytest.param(model, seed, marks=pytest.mark.xfail(reason=f"core bug: {what}"))
    if (model, seed) in PENDING else (model, seed)
    for model, found in (("vs", FOUND), ("evs", FOUND_EVS)) for seed, what in sorted(found.items())
])
def test_a_seed_that_found_a_core_bug_passes(model: str, seed: int) -> None:
    outcome = run(Spec(seed, model=model))
    assert outcome.ok, "\n".join(outcome.problems())
