"""Fixtures shared by the test modules: the five hosts of the partition tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vsgroups.netns import NetnsUnavailable, Network

HOSTS = 5


@pytest.fixture
def network() -> Iterator[Network]:
    """Five hosts in network namespaces on one bridge; skips where namespaces cannot be created."""
    net = Network(HOSTS)
    try:
        net.open()
    except NetnsUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield net
    finally:
        net.close()
