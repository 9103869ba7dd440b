"""Tunable timings and limits of the protocol core.

All durations are in seconds of whatever clock the caller feeds the core (wall clock in the
asyncio runtime, virtual time in the simulator); the core never reads a clock itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    #: A heartbeat goes to every peer that has not been sent anything for this long.
    heartbeat_interval: float = 0.1
    #: A peer silent for this long is suspected. This is the failure detection time and the bound
    #: on event-loop pauses (GC, a slow handler) that the group tolerates without a false suspicion.
    suspect_timeout: float = 1.0
    #: Acknowledgements are batched for at most this long.
    ack_delay: float = 0.002
    #: With unstable messages outstanding, acknowledgements are repeated this often even if unchanged
    #: (they repair stability after a lost frame).
    ack_refresh: float = 0.2
    #: A gap that persists this long is repaired by a negative acknowledgement.
    nak_delay: float = 0.03
    #: Flow control: at most this many of a sender's casts may be unstable at once.
    window: int = 1000
    #: ... and at most this many payload bytes (a larger message still goes out alone).
    window_bytes: int = 8 << 20
    #: Casts waiting to be sent together travel as one message of at most this many payload bytes.
    batch_bytes: int = 64 << 10
    #: A view change that has not completed after this long is restarted with a higher ballot.
    proposal_timeout: float = 1.5
    #: How often a joiner repeats its join request, and a committer its commit.
    retry_interval: float = 0.25
    #: A joiner that is a founder candidate founds the group after hearing nothing for this long.
    found_timeout: float = 1.0
    #: A joiner the group acknowledged but did not admit within this long starts over as a new
    #: incarnation (the view that admitted it may have been committed by a member that then died).
    join_timeout: float = 10.0
    #: State is streamed to joiners in chunks of this many bytes.
    state_chunk: int = 1 << 20
    #: Largest application payload accepted by ``cast`` (the transport fragments frames).
    max_payload: int = 16 << 20
    #: How often a node probes the processes it knows outside its views (merge discovery).
    probe_interval: float = 0.5
    #: Messages bound for one peer are batched into frames of about this many bytes.
    frame_budget: int = 1 << 20
    #: Largest frame accepted from the network. View-change messages carry the unstable messages
    #: of the old view, bounded by the flow-control windows of its members.
    max_frame: int = 512 << 20
