"""The client protocol's two state machines alone: the members' replicated table
(``served.ClientTable``) and the client's sans-IO core (``core.client.ClientCore``), driven by hand."""

from __future__ import annotations

from vsgroups.core import Config
from vsgroups.core import events as ev
from vsgroups.core.client import Acked, Bound, ClientCore, Diffused, Expired
from vsgroups.core.wire import (
    ClientAck,
    ClientDiffusion,
    ClientHello,
    ClientPing,
    ClientPong,
    ClientRefused,
    ClientRequest,
    ClientView,
    Frame,
    decode_frame,
    decode_to_server,
    encode,
)
from vsgroups.served import EXPIRED_KEPT, ClientTable

CFG = Config()


# -- the members' table --------------------------------------------------------------------------------


def test_a_request_is_applied_once_whatever_the_copies() -> None:
    table = ClientTable()
    assert table.bind("c#1", "addr", "s#1", fresh=True)
    assert table.request("c#1", 1) is True
    assert table.request("c#1", 1) is False  # the copy a rebind sent again
    assert table.request("c#1", 2) is True
    assert table.request("x#1", 1) is None  # never bound


def test_a_client_declared_gone_is_never_served_again() -> None:
    table = ClientTable()
    table.bind("c#1", "addr", "s#1", fresh=True)
    assert table.gone("c#1") and not table.gone("c#1")
    assert table.request("c#1", 3) is None  # a late copy
    assert not table.bind("c#1", "addr", "s#2", fresh=False)  # its rebind
    assert not table.bind("c#1", "addr", "s#2", fresh=True)  # even claiming to be new
    assert not table.bind("d#1", "addr", "s#1", fresh=False)  # served before, now unknown: gone


def test_the_expired_ids_kept_are_bounded() -> None:
    table = ClientTable()
    for i in range(EXPIRED_KEPT + 5):
        table.bind(f"c#{i}", "addr", "s#1", fresh=True)
        table.gone(f"c#{i}")
    assert len(table.expired) == EXPIRED_KEPT and "c#0" not in table.expired


def test_diffusions_are_numbered_and_kept_for_a_replay() -> None:
    table = ClientTable()
    for i in range(3):
        table.diffused(f"s#1:{i}", "s#1", b"x%d" % i)
    assert [d.number for d in table.since(1)] == [2, 3] and table.diffusions == 3


def test_the_clients_of_a_member_that_left_go_to_the_oldest() -> None:
    table = ClientTable()
    table.bind("c#1", "a1", "s2#1", fresh=True)
    table.bind("c#2", "a2", "s3#1", fresh=True)
    assert table.view(("s1#1", "s3#1")) == ["c#1"]
    assert table.served_by("s1#1") == ["c#1"] and table.served_by("s3#1") == ["c#2"]


def test_the_table_travels_whole_to_a_joiner() -> None:
    table = ClientTable()
    table.bind("c#1", "a1", "s1#1", fresh=True)
    table.request("c#1", 4)
    table.replied("c#1", 4, b"r")
    table.diffused("s1#1:9", "s1#1", b"d")
    table.bind("c#2", "a2", "s1#1", fresh=True)
    table.gone("c#2")
    joiner = ClientTable()
    joiner.restore(table.snapshot())
    assert joiner.snapshot() == table.snapshot()
    assert joiner.request("c#1", 4) is False and joiner.request("c#2", 1) is None


# -- the client's core ----------------------------------------------------------------------------------


def frame_from(sender: str, addr: str, *msgs: object) -> bytes:
    return encode(Frame(sender, addr, [encode(m) for m in msgs]))


def transmitted(outs: list[object]) -> list[tuple[str, object]]:
    """(address, message) of every frame among a client core's outputs."""
    found = []
    for o in outs:
        if isinstance(o, ev.Transmit):
            frame = decode_frame(o.data)
            assert frame.client
            found += [(o.addr, decode_to_server(raw)) for raw in frame.msgs]
    return found


def sent(core: ClientCore) -> list[tuple[str, object]]:
    """What the core sends now (its other outputs are dropped)."""
    return transmitted(list(core.take_outputs()))


def view(server: str, members: list[str], epoch: int = 1, diffusions: int = 0,
         hello: int | None = 1) -> ClientView:
    """A member's view for the client; ``hello``: the number of the hello it answers (None: a view
    it was not asked for)."""
    return ClientView("g", f"{epoch}.1.{members[0]}", members, {m: f"addr-{m}" for m in members}, server,
                      diffusions, hello is not None, hello or 0)


def bound_core() -> ClientCore:
    core = ClientCore("c", 1, "addr-c", CFG)
    core.bind("g", ["addr-s1#1"], 0.0)
    core.receive(frame_from("s1#1", "addr-s1#1", view("s1#1", ["s1#1", "s2#1"], diffusions=5)), 0.01)
    core.take_outputs()
    return core


def test_a_client_asks_a_seed_and_is_bound_by_its_view() -> None:
    core = ClientCore("c", 1, "addr-c", CFG)
    core.bind("g", ["seed"], 0.0)
    seq = core.request("g", "total", b"early", 0.0)  # before the bind: held, then sent
    assert sent(core) == [("seed", ClientHello("g", True, 0, 0, 1))]
    core.receive(frame_from("s1#1", "seed", view("s1#1", ["s1#1"], diffusions=7)), 0.01)
    outs = core.take_outputs()
    assert any(isinstance(o, Bound) and o.server == "s1#1" for o in outs)
    assert [m for _, m in transmitted(list(outs))] == [ClientRequest("g", seq, 2, b"early")]
    assert core.groups["g"].diffusions == 7  # a new client hears the diffusions from its bind on


def test_an_unacknowledged_request_is_sent_again_and_an_ack_ends_it() -> None:
    core = bound_core()
    seq = core.request("g", "safe", b"p", 1.0)
    assert [m for _, m in sent(core)] == [ClientRequest("g", seq, 3, b"p")]
    core.receive(frame_from("s1#1", "addr-s1#1", ClientPong(None)), 1.0 + CFG.retry_interval)
    core.tick(1.0 + CFG.retry_interval + 0.001)
    assert ("addr-s1#1", ClientRequest("g", seq, 3, b"p")) in sent(core)
    core.receive(frame_from("s1#1", "addr-s1#1", ClientAck("g", seq)), 1.3)
    assert [o for o in core.take_outputs() if isinstance(o, Acked)] == [Acked("g", seq)]
    assert core.unacked("g") == 0


def test_a_silent_server_makes_the_client_bind_elsewhere_and_send_again() -> None:
    core = bound_core()
    seq = core.request("g", "total", b"p", 0.02)
    sent(core)
    core.tick(0.02 + CFG.suspect_timeout + 0.01)
    hellos = [(a, m) for a, m in sent(core) if isinstance(m, ClientHello)]
    assert hellos == [("addr-s2#1", ClientHello("g", False, 5, 0, 2))]
    core.receive(frame_from("s2#1", "addr-s2#1", view("s2#1", ["s2#1"], epoch=2, hello=2)), 1.2)
    assert [m for _, m in sent(core)] == [ClientRequest("g", seq, 2, b"p")]  # the same number again


def test_a_restarted_process_at_the_servers_address_is_not_the_server() -> None:
    core = bound_core()
    for t in (0.3, 0.6, 0.9, 1.2):  # only the new incarnation answers the pings
        core.receive(frame_from("s1#2", "addr-s1#1", ClientPong(None)), t)
        core.tick(t)
    assert core.server("g") is None  # it gave the old one up and asks another member
    assert any(isinstance(m, ClientHello) for _, m in sent(core))


def test_a_skipped_diffusion_is_asked_for_again_and_not_delivered_out_of_order() -> None:
    core = bound_core()
    core.receive(frame_from("s1#1", "addr-s1#1", ClientDiffusion("g", 6, "m6", "s1#1", b"6")), 0.1)
    core.receive(frame_from("s1#1", "addr-s1#1", ClientDiffusion("g", 8, "m8", "s1#1", b"8")), 0.1)
    outs = core.take_outputs()
    assert [o.number for o in outs if isinstance(o, Diffused)] == [6]
    assert [m for _, m in transmitted(list(outs))] == [ClientHello("g", False, 6, 0, 2)]
    core.receive(frame_from("s1#1", "addr-s1#1", view("s1#1", ["s1#1", "s2#1"], diffusions=6, hello=2),
                            ClientDiffusion("g", 7, "m7", "s1#1", b"7"),
                            ClientDiffusion("g", 8, "m8", "s1#1", b"8"),
                            ClientDiffusion("g", 8, "m8", "s1#1", b"8")), 0.2)
    got = [o for o in core.take_outputs() if isinstance(o, Diffused)]
    assert [(d.number, d.missed) for d in got] == [(7, 0), (8, 0)]


def test_the_oldest_member_takes_over_with_a_newer_view() -> None:
    core = bound_core()
    core.receive(frame_from("s2#1", "addr-s2#1", view("s2#1", ["s2#1"], epoch=1, hello=None)), 0.1)
    assert core.server("g") == "s1#1"  # not newer: ignored
    core.receive(frame_from("s2#1", "addr-s2#1", view("s2#1", ["s2#1"], epoch=2, hello=None)), 0.2)
    assert core.server("g") == "s2#1"
    assert ("addr-s2#1", ClientHello("g", False, 5, 0, 2)) in sent(core)  # what s1 may not have sent


def test_pings_keep_the_binding_and_an_expiry_ends_it() -> None:
    core = bound_core()
    core.tick(CFG.heartbeat_interval + 0.02)
    assert ("addr-s1#1", ClientPing(None)) in sent(core)
    core.receive(frame_from("s1#1", "addr-s1#1", ClientRefused("g", "gone", expired=True)), 0.2)
    assert [o for o in core.take_outputs() if isinstance(o, Expired)] == [Expired("g", "gone")]
    assert "g" not in core.groups


def test_a_malformed_frame_is_dropped_and_counted() -> None:
    core = bound_core()
    core.receive(b"\x93garbage", 0.1)
    core.receive(frame_from("s1#1", "addr-s1#1", ClientHello("g", True, 0)), 0.1)  # not for a client
    assert core.dropped == 2 and core.take_outputs() == []


def test_a_replay_that_starts_later_reports_what_the_server_no_longer_held() -> None:
    core = bound_core()  # it has diffusion 5
    core.receive(frame_from("s1#1", "addr-s1#1", ClientDiffusion("g", 9, "m9", "s1#1", b"9")), 0.1)
    assert [m for _, m in sent(core)] == [ClientHello("g", False, 5, 0, 2)]
    core.receive(frame_from("s1#1", "addr-s1#1", view("s1#1", ["s1#1"], diffusions=7, hello=2),  # holds 8 on
                            ClientDiffusion("g", 8, "m8", "s1#1", b"8"),
                            ClientDiffusion("g", 9, "m9", "s1#1", b"9")), 0.2)
    got = [o for o in core.take_outputs() if isinstance(o, Diffused)]
    assert [(d.number, d.missed) for d in got] == [(8, 2), (9, 0)]


def test_an_unanswered_replay_or_a_long_awaited_reply_asks_the_server_again() -> None:
    core = bound_core()
    core.receive(frame_from("s1#1", "addr-s1#1", ClientDiffusion("g", 7, "m7", "s1#1", b"7")), 0.1)
    assert [m for _, m in sent(core)] == [ClientHello("g", False, 5, 0, 2)]  # the answer is lost
    core.receive(frame_from("s1#1", "addr-s1#1", ClientPong(None)), 0.1 + CFG.retry_interval + 0.01)
    core.tick(0.1 + CFG.retry_interval + 0.01)
    assert ClientHello("g", False, 5, 0, 3) in [m for _, m in sent(core)]
    other = bound_core()
    seq = other.request("g", "total", b"q", 1.0, reply=True)
    other.receive(frame_from("s1#1", "addr-s1#1", ClientAck("g", seq)), 1.01)
    other.take_outputs()
    late = 1.0 + 4 * CFG.retry_interval + 0.01  # REPLY_PATIENCE retry intervals
    other.receive(frame_from("s1#1", "addr-s1#1", ClientPong(None)), late)
    other.tick(late)
    assert [m for _, m in sent(other)] == [ClientHello("g", False, 5, 0, 2)]


def test_the_answer_to_an_older_hello_is_ignored() -> None:
    """A member may cast the bind of a hello the client sent before its latest: the client binds
    only by the answer to its newest, and the members ignore a bind older than one they hold."""
    core = ClientCore("c", 1, "addr-c", CFG)
    core.bind("g", ["s1", "s2"], 0.0)
    core.tick(CFG.suspect_timeout + 0.01)  # no answer: it asks the next member (hello 2)
    core.receive(frame_from("s1#1", "s1", view("s1#1", ["s1#1", "s2#1"], hello=1)), 1.1)
    assert core.server("g") is None
    core.receive(frame_from("s2#1", "s2", view("s2#1", ["s1#1", "s2#1"], hello=2)), 1.2)
    assert core.server("g") == "s2#1"
    table = ClientTable()
    assert table.bind("c#1", "addr", "s2#1", fresh=True, hello=2)
    assert table.bind("c#1", "addr", "s1#1", fresh=True, hello=1) is None  # cast late: ignored
    assert table.clients["c#1"].server == "s2#1"


def test_refusals_take_the_client_round_every_seed() -> None:
    """A group that only some seeds belong to (a hierarchy's subgroup): the members that refuse are
    followed by the next seed each time, so every seed is asked (two refusing members once took
    turns for ever, the others never asked)."""
    seeds = [f"addr-{i}" for i in range(4)]
    core = ClientCore("c", 1, "addr-c", CFG)
    core.bind("g", seeds, 0.0)
    asked: list[str] = []
    now = 0.0
    for _ in range(2 * len(seeds)):
        hellos = [a for a, m in sent(core) if isinstance(m, ClientHello)]
        asked += hellos
        for addr in hellos:
            core.receive(frame_from(f"p{addr}#1", addr, ClientRefused("g", "not a member")), now)
        now += CFG.heartbeat_interval + 0.01
        core.tick(now)
    assert set(asked) == set(seeds), asked
