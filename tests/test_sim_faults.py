"""The simulator's sweep must be able to fail: a core with a deliberately injected protocol bug is
run through a small sweep of random fault scenarios, and the checker must catch it.

Each injection wraps the real core method (no copy of it), so the test keeps meaning what it says
when the core changes; a renamed method makes ``monkeypatch.setattr`` fail loudly.
"""

from __future__ import annotations

import msgspec
import pytest

from vsgroups.core.stream import ViewStream
from vsgroups.core.viewchange import VsViewChange
from vsgroups.core.wire import TOTAL, Msg, Value
from vsgroups.sim.scenario import Spec, run

SMALL_SWEEP = range(10)


def caught(properties: set[str]) -> dict[int, set[str]]:
    """Sweep seeds in this process (where the patched core lives) until one violates some of
    ``properties``; the properties each seed violated."""
    found: dict[int, set[str]] = {}
    for seed in SMALL_SWEEP:
        outcome = run(Spec(seed, duration=3.0))
        found[seed] = {v.prop for v in outcome.violations} | ({"exception"} if outcome.error else set())
        if found[seed] & properties:
            break
    return found


def test_a_core_that_skips_the_flush_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Install the next view without delivering the final message set F of the old one."""
    install = VsViewChange.apply

    def without_flush(self: VsViewChange, value: Value, now: float) -> None:
        install(self, msgspec.structs.replace(value, order=[]), now)

    monkeypatch.setattr(VsViewChange, "apply", without_flush)
    expected = {"same-set", "self-delivery", "safe"}
    found = caught(expected)
    assert set().union(*found.values()) & expected, found


def test_a_core_that_delivers_total_messages_before_their_order_is_known_is_caught(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Deliver a total message as soon as it is causally deliverable, without waiting for its number."""
    ordered = ViewStream._ordered

    def too_early(self: ViewStream, msg: Msg, s: int, k: int) -> bool:
        return (msg.order == TOTAL and msg.mid not in self.num_of) or ordered(self, msg, s, k)

    monkeypatch.setattr(ViewStream, "_ordered", too_early)
    found = caught({"total"})
    assert "total" in set().union(*found.values()), found


@pytest.mark.parametrize("model", ["vs", "evs"])
def test_a_core_that_ignores_causality_across_groups_is_caught_in_every_seed(model: str) -> None:
    """``vsgroups sim --broken``: a cast goes at once, whatever its sender delivered in the other groups
    of its domain. The scenario's processes cast in 1–3 groups of one domain, so chains across groups
    are everywhere: every seed of the sample is caught, and by ``causal-domain``."""
    for seed in range(4):
        outcome = run(Spec(seed, model=model, broken=True))
        assert outcome.error is None
        assert "causal-domain" in {v.prop for v in outcome.violations}, (seed, outcome.problems())
