"""The scaling report (``vsgroups sim --scale``): its figures are measured, sane, and (but for the
CPU times) a function of the seed."""

from __future__ import annotations

import json
import subprocess
import sys

from vsgroups.core import Config
from vsgroups.sim.scale import measure


def test_a_size_is_measured_and_its_traffic_is_a_function_of_the_seed() -> None:
    first, second = measure(3, casts=100), measure(3, casts=100)
    assert (first.frames_per_cast, first.bytes_per_cast, first.crash_to_view_ms, first.safe_p50_ms) == \
        (second.frames_per_cast, second.bytes_per_cast, second.crash_to_view_ms, second.safe_p50_ms)
    # every cast reaches the two other members at least once, each frame carries at least a cast
    assert first.frames_per_cast >= 2 and first.bytes_per_cast >= 2 * 100
    assert first.cpu_per_delivery_us > 0 and first.idle_cpu_per_member_us_per_s > 0
    # a crash becomes a view after the suspicion timeout, and not much later
    timeout_ms = Config().suspect_timeout * 1000
    assert timeout_ms <= first.crash_to_view_ms <= timeout_ms + 200
    assert 0 < first.safe_p50_ms < 100


def test_the_command_prints_a_row_per_size_as_json() -> None:
    out = subprocess.run([sys.executable, "-m", "vsgroups", "sim", "--scale", "3,4", "--json"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    rows = json.loads(out)
    assert [r["members"] for r in rows] == [3, 4]
    assert rows[1]["frames_per_cast"] > 0


def test_a_size_below_two_is_refused() -> None:
    result = subprocess.run([sys.executable, "-m", "vsgroups", "sim", "--scale", "3,1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "at least 2 members" in result.stderr


def test_a_larger_view_costs_a_linear_number_of_frames_per_cast() -> None:
    """design §2: above ALL_TO_ALL members, acknowledgements go to the aggregator and stability comes
    back in its announcements: about 3(n - 1) frames per cast (data, acknowledgement, announcement),
    where acknowledging all-to-all cost about n² (77 per cast at 9 members)."""
    row = measure(9, casts=100)
    assert row.frames_per_cast <= 3 * 9
    assert Config().suspect_timeout * 1000 <= row.crash_to_view_ms <= Config().suspect_timeout * 1000 + 50
