"""Fixtures of the integration tier."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.media_harness import stop_media_peers


@pytest.fixture(autouse=True)
def _no_media_peer_left_running() -> Iterator[None]:
    """A media test that fails half way must not leave its SIPps holding ports for the next one."""
    yield
    stop_media_peers()
