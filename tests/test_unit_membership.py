"""Unit tests of ``core.membership``: quorums, the Paxos choice of a value, the members of the next
view, and the value of an evs configuration change (docs/design.md §5, §6; 1987b §4.2, 1994 §3)."""

from __future__ import annotations

from itertools import combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from vsgroups.core.flush import final_set
from vsgroups.core.membership import choose_value, evs_value, is_quorum, new_members, newest_ids, reunites
from vsgroups.core.stream import ViewStream
from vsgroups.core.wire import (
    CAUSAL,
    TOTAL,
    Ballot,
    History,
    Msg,
    Part,
    Primary,
    Promise,
    Value,
    decode,
    encode,
)

FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None)


# -- quorums -----------------------------------------------------------------------------------------


def test_quorum_is_a_majority_or_exactly_half_holding_the_oldest_member() -> None:
    """1987b §4.2, design §5 step 3: quorum: a majority, or exactly half holding the oldest member;
    non-members among the voters do not count."""
    members = ("a#1", "b#1", "c#1", "d#1")
    assert is_quorum(members, {"a#1", "b#1", "c#1"})
    assert is_quorum(members, {"a#1", "d#1"})
    assert not is_quorum(members, {"b#1", "c#1"})
    assert not is_quorum(members, {"b#1", "x#1", "y#1"})
    assert is_quorum(("a#1",), {"a#1"}) and not is_quorum(("a#1",), set())
    assert is_quorum(("a#1", "b#1", "c#1"), {"b#1": {}, "c#1": {}})  # promises (a dict) count by key
    assert not is_quorum(("a#1", "b#1", "c#1"), {"a#1"})


def subsets(members: tuple[str, ...]) -> list[set[str]]:
    return [set(c) for k in range(len(members) + 1) for c in combinations(members, k)]


@FAST
@given(st.lists(st.text("abcdefgh", min_size=1, max_size=3), min_size=1, max_size=6, unique=True))
def test_any_two_quorums_of_one_view_intersect(names: list[str]) -> None:
    """1987b §4.2, design §5 invariants: quorum: two quorums of one view always intersect, so two
    different successors of a view are never decided (members drawn at random, every pair of voter
    sets checked)."""
    members = tuple(f"{name}#1" for name in names)
    quorums = [voters for voters in subsets(members) if is_quorum(members, voters | {"x#9"})]
    assert quorums
    for one in quorums:
        for two in quorums:
            assert one & two


@FAST
@given(st.lists(st.text("abcdefgh", min_size=1, max_size=3), min_size=1, max_size=6, unique=True))
def test_a_majority_is_a_quorum_and_a_minority_is_not(names: list[str]) -> None:
    """1987b §4.2, design §5 step 3: quorum: every strict majority of the view is a quorum, no strict
    minority is, and exactly half is one iff it holds the oldest member."""
    members = tuple(f"{name}#1" for name in names)
    for voters in subsets(members):
        half = 2 * len(voters) == len(members)
        assert is_quorum(members, voters) == (2 * len(voters) > len(members) or half and members[0] in voters)


# -- Paxos: the value ----------------------------------------------------------------------------

NO_REPORT = ViewStream("g", "1.1.a#1", ("a#1",), "a#1").report()


def value(name: str, **parts: Part) -> Value:
    return Value(None, name, ["a#1"], {"a#1": "a"}, None, [], ["a#1"], parts=parts)


def received(promise: Promise) -> Promise:
    """A promise as the proposer gets it: through its encoding."""
    decoded = decode(encode(promise))
    assert isinstance(decoded, Promise)
    return decoded


def promise(accepted: tuple[Ballot, Value] | None) -> Promise:
    return received(Promise("g", "1.1.a#1", (9, "z#1"), NO_REPORT, accepted, "1.1.a#1", ["a#1"], True, False))


def test_choose_value_returns_the_accepted_value_with_the_highest_ballot() -> None:
    """design §5 step 3 (Paxos phase 1b): choose_value returns the accepted value with the highest
    ballot, ballots comparing by (round, proposer); promises without an accepted value do not count."""
    promises = {
        "a#1": promise(((3, "a#1"), value("low"))),
        "b#1": promise(((4, "a#1"), value("mid"))),
        "c#1": promise(((4, "c#1"), value("high"))),
        "d#1": promise(None),
    }
    chosen = choose_value(promises)
    assert chosen is not None and chosen.id == "high"
    chosen = choose_value({k: v for k, v in promises.items() if k != "c#1"})
    assert chosen is not None and chosen.id == "mid"
    assert choose_value({"d#1": promises["d#1"]}) is None
    assert choose_value({}) is None


def test_new_members_are_the_surviving_promisers_in_age_order_then_the_joiners() -> None:
    """design §5 step 3: V' is the promisers of V minus leavers, in V's (age) order, then the
    joiners in a fixed order."""
    view = ("a#1", "b#1", "c#1", "d#1")
    members, joined = new_members(view, {"d#1", "b#1", "a#1"}, {"b#1"}, {"z#1": "z:1", "y#1": "y:1"})
    assert members == ["a#1", "d#1", "y#1", "z#1"] and joined == ["y#1", "z#1"]


def test_new_members_refuse_stale_joins_and_joins_without_a_survivor() -> None:
    """design §5 step 3: a joiner already in V, or a new incarnation of a surviving member, is not
    admitted (it asks again later); with no surviving member nobody could give joiners the state."""
    view = ("a#2", "b#1")
    joiners = {"b#1": "b:1", "a#3": "a:3", "c#1": "c:1"}
    assert new_members(view, {"a#2", "b#1"}, set(), joiners) == (["a#2", "b#1", "c#1"], ["c#1"])
    assert new_members(view, {"a#2"}, {"a#2"}, joiners) == ([], [])


# -- evs: the value of a configuration change ---------------------------------------------------------


class Config:
    """A regular configuration whose members' streams are driven by hand."""

    def __init__(self, view: str, members: tuple[str, ...], primary: bool) -> None:
        self.view = view
        self.members = members
        self.primary = primary
        self.st = {pid: ViewStream("g", view, members, pid, evs=True) for pid in members}
        self.casts = dict.fromkeys(members, 0)

    def cast(self, pid: str, order: int, to: tuple[str, ...]) -> Msg:
        self.casts[pid] += 1
        mid = f"{pid}:{self.casts[pid]}"
        msg = self.st[pid].stamp([mid], order, [b"x"])
        for other in to:
            self.st[other].receive(Msg.decode(msg.raw))
        return msg

    def promise(self, pid: str, accepted: tuple[Ballot, Value] | None = None, waiting: bool = False,
                ) -> Promise:
        """The promise ``pid`` sends, as the proposer receives it."""
        return received(Promise("g", None, (1, "a#1"), self.st[pid].report(), accepted, self.view,
                                list(self.members), self.primary, waiting))


def two_configurations() -> tuple[Config, Config]:
    """{a, b, c} (primary, epoch 3) split from c; {d, e} (epoch 2) met them."""
    big = Config("3.1.a#1", ("a#1", "b#1", "c#1"), primary=True)
    big.cast("a#1", TOTAL, to=("b#1",))
    big.cast("c#1", CAUSAL, to=("b#1",))
    small = Config("2.4.d#1", ("d#1", "e#1"), primary=False)
    small.cast("e#1", TOTAL, to=())
    return big, small


def test_evs_value_merges_configurations_each_with_its_own_final_set() -> None:
    """1994 §3 steps 4a and 6, design §6.1–6.2: for each previous configuration its promisers form
    the transitional configuration, with F computed from their reports alone; members come in age
    order of configurations (oldest epoch first), leavers excluded, joiners last; the state comes
    from a member that has it."""
    big, small = two_configurations()
    promises = {"a#1": big.promise("a#1", waiting=True), "b#1": big.promise("b#1"),
                "d#1": small.promise("d#1"), "e#1": small.promise("e#1")}
    addrs = {pid: pid[0] for pid in ("a#1", "b#1", "d#1", "e#1", "f#1")}
    value = evs_value((7, "a#1"), "a#1", promises, {"e#1"}, {"f#1": "f"}, addrs)
    assert value.id == "4.7.a#1"
    assert value.members == ["d#1", "a#1", "b#1", "f#1"] and value.joiners == ["f#1"]
    assert value.state_from == "d#1" and value.addrs == {m: m[0] for m in value.members}
    assert value.voters == ["a#1", "b#1", "d#1", "e#1"]
    assert set(value.parts) == {big.view, small.view}
    for config, t in ((big, ["a#1", "b#1"]), (small, ["d#1", "e#1"])):
        order, msgs, split = final_set(config.members, [promises[m].report for m in t], evs=True)
        assert value.parts[config.view] == Part(t, order, msgs, split)
    assert len(value.parts[big.view].order) == 2  # c's causal message reached b: it stays
    assert value.primary is True  # {a, b} is a quorum of the primary {a, b, c}


def test_evs_value_is_primary_only_from_a_quorum_of_a_primary_configuration() -> None:
    """1994 §2.2 (primary component), design §6.5: the new configuration is primary iff some
    transitional configuration is a quorum of a primary previous one."""
    big, small = two_configurations()
    lonely = {"a#1": big.promise("a#1"), "d#1": small.promise("d#1"), "e#1": small.promise("e#1")}
    value = evs_value((1, "a#1"), "a#1", lonely, set(), {}, {pid: "" for pid in lonely})
    assert value.primary is False  # a alone is a minority of {a, b, c}; {d, e} was not primary
    pair = {"b#1": big.promise("b#1"), "c#1": big.promise("c#1")}
    assert evs_value((1, "b#1"), "b#1", pair, set(), {}, {pid: "" for pid in pair}).primary is True


def test_evs_value_keeps_a_part_an_earlier_attempt_accepted() -> None:
    """design §6.5, Paxos: a part of an accepted value binds its set and order (someone may have
    delivered them), not its membership; members it omitted stay out; the result is not primary."""
    big, _ = two_configurations()
    earlier_part = Part(["a#1", "b#1"], ["x"], {"x": b""}, 0)
    accepted = ((5, "a#1"), value("earlier", **{big.view: earlier_part}))
    promises = {"a#1": big.promise("a#1", accepted=accepted), "b#1": big.promise("b#1"),
                "c#1": big.promise("c#1")}
    chosen = evs_value((6, "a#1"), "a#1", promises, set(), {"z#1": "z"}, {"a#1": "", "b#1": "", "z#1": "z"})
    assert chosen.parts[big.view] == earlier_part
    assert chosen.members == ["a#1", "b#1", "z#1"]  # c, omitted by the accepted part, stays out
    assert chosen.primary is False  # {a, b} is a quorum, but the earlier attempt may have decided


def test_evs_value_admits_no_joiner_that_is_a_member_somewhere() -> None:
    """design §6.1: a join request from a process that is a member of one of the merging
    configurations is stale; nor are joiners admitted when no member holds the state."""
    big, small = two_configurations()
    promises = {"a#1": big.promise("a#1"), "b#1": big.promise("b#1", waiting=True),
                "d#1": small.promise("d#1", waiting=True)}
    joiners = {"c#1": "c", "e#1": "e", "g#1": "g"}
    addrs = {pid: pid[0] for pid in ("a#1", "b#1", "d#1", "g#1")}
    chosen = evs_value((1, "a#1"), "a#1", promises, set(), joiners, addrs)
    assert chosen.joiners == ["g#1"] and chosen.state_from == "a#1"
    nobody = {pid: big.promise(pid, waiting=True) for pid in ("a#1", "b#1")}
    nobody["d#1"] = small.promise("d#1", waiting=True)
    chosen = evs_value((1, "a#1"), "a#1", nobody, set(), joiners, addrs)
    assert chosen.joiners == [] and chosen.state_from is None


# -- dynamic linear voting (evs primary components) -----------------------------------------------

LAST = Primary("4.1.a#1", ["a#1", "b#1", "c#1"])  # the last primary, epoch 4


def remembering(pid: str, last: Primary | None, *attempts: Primary) -> Promise:
    """The promise of ``pid`` from a non-primary configuration of its own, with its primary history."""
    return received(Promise("g", None, (1, "a#1"), NO_REPORT, None, f"9.1.{pid}", [pid], False, False,
                            history=History(last, list(attempts))))


def test_a_quorum_of_the_newest_last_primary_reunites_it() -> None:
    """design §6.5 (dynamic linear voting): the promisers reunite the primary component iff those
    that stay hold a quorum of the newest last primary any of them installed; an older one does not
    count."""
    older = Primary("2.1.a#1", ["a#1", "b#1", "c#1", "d#1", "e#1"])
    promises = {"b#1": remembering("b#1", LAST), "c#1": remembering("c#1", LAST),
                "d#1": remembering("d#1", older)}
    assert reunites(promises, promises) == LAST.id
    # d and e are a minority of LAST, whatever they were in the older primary
    promises = {"c#1": remembering("c#1", LAST), "d#1": remembering("d#1", older),
                "e#1": remembering("e#1", older)}
    assert reunites(promises, promises) is None
    assert reunites({"x#1": remembering("x#1", None)}, ["x#1"]) is None  # no primary known


def test_a_quorum_that_leaves_does_not_reunite() -> None:
    """1994 §2.2 (continuity: consecutive primaries share a member), evs seed 41241: a promiser that
    leaves counts in no quorum — {n3} alone was made primary after {n4, n5} because n5, leaving,
    held half of it with its oldest member."""
    last = Primary("5.4.n4#0", ["n5#0", "n4#0"])
    promises = {"n3#0": remembering("n3#0", Primary("2.1.n2#0", ["n2#0", "n3#0", "n4#0", "n5#0"])),
                "n5#0": remembering("n5#0", last)}
    assert reunites(promises, promises) == last.id
    assert reunites(promises, ["n3#0"]) is None


def test_some_process_that_stays_installed_the_last_primary() -> None:
    """1994 §2.2 (uniqueness: primaries ordered by precedence): the new primary succeeds the last one
    at a process that installs both; a quorum of it that only accepted it is not enough."""
    promises = {"b#1": remembering("b#1", LAST), "c#1": remembering("c#1", None, LAST),
                "a#1": remembering("a#1", None, LAST)}
    assert reunites(promises, promises) == LAST.id
    assert reunites(promises, ["a#1", "c#1"]) is None  # b, the only one that installed it, leaves


def test_a_newer_primary_attempt_waits_for_its_proposer() -> None:
    """design §6.5, evs seed 40335: a primary value some promiser accepted and did not install may
    have been installed by its proposer alone (n2 installed 3.2.n2 and crashed; n4 and n5, which had
    accepted it, went on to 8.7.n1, which did not succeed it at any process). Only the proposer can
    tell: with it among the promisers the attempt is settled, without it the group waits."""
    attempt = Primary("5.2.d#1", ["c#1", "d#1", "e#1"])
    promises = {"a#1": remembering("a#1", LAST), "b#1": remembering("b#1", LAST),
                "c#1": remembering("c#1", LAST, attempt)}
    assert reunites(promises, promises) is None  # d, which may have installed it, is not here
    promises["d#1"] = remembering("d#1", LAST, attempt)  # d did not install it: nobody did
    assert reunites(promises, promises) == LAST.id
    stale = Primary("3.2.d#1", ["c#1", "d#1", "e#1"])  # older than the last primary: settled
    promises = {"a#1": remembering("a#1", LAST), "c#1": remembering("c#1", LAST, stale)}
    assert reunites(promises, promises) == LAST.id


def test_evs_value_is_primary_when_merged_configurations_reunite_the_last_primary() -> None:
    """design §6.5: no configuration the promisers come from is primary, but together they hold a
    quorum of the last primary: the value is primary (liveness); without the proposer staying in it,
    it is not (the proposer installs it as it commits)."""
    promises = {"b#1": remembering("b#1", LAST), "c#1": remembering("c#1", LAST)}
    addrs = {pid: "" for pid in promises}
    value = evs_value((1, "b#1"), "b#1", promises, set(), {}, addrs)
    assert (value.primary, value.follows) == (True, LAST.id)
    assert evs_value((1, "b#1"), "b#1", promises, {"b#1"}, {}, addrs).primary is False


def test_a_process_that_asked_to_join_under_two_ids_is_admitted_once_as_the_newest() -> None:
    """design §1, §7: a joiner that gave an id up (its join timed out) and asks under a fresh one is
    admitted once, under the fresh id: the old one will never vote (issue 10, B1)."""
    assert newest_ids(["n#5", "a#1", "n#7", "n#6"]) == ["a#1", "n#7"]
    members, joined = new_members(("a#1", "b#1"), {"a#1", "b#1"}, set(), {"n#5": "x", "n#7": "x"})
    assert (members, joined) == (["a#1", "b#1", "n#7"], ["n#7"])
