"""The live-frames probe (`tests.bench.relay_traffic.live_frames_refusal`): the XDP-frames test and
`make bench` skip that source with the kernel's reason where BPF_PROG_TEST_RUN's live-frames mode is
refused, instead of crashing. The refusal is simulated here; the real call runs in tests/dataplane."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

import pytest

from tests.bench import relay_traffic
from tests.bench.relay_traffic import live_frames_refusal


def refused_with(code: int) -> Callable[[], None]:
    def probe() -> None:
        # what bpfsys.bpf raises: an OSError subclass chosen by errno (PermissionError for EPERM)
        raise OSError(code, os.strerror(code))

    return probe


def test_eperm_is_a_refusal_in_the_kernels_words() -> None:
    reason = live_frames_refusal(refused_with(errno.EPERM))
    assert reason is not None
    assert reason.startswith("the kernel refuses BPF_PROG_TEST_RUN in live-frames mode: Operation not permitted")


def test_eperm_names_the_missing_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay_traffic, "_effective_capability", lambda cap: cap != relay_traffic.CAP_SYS_RESOURCE)
    reason = live_frames_refusal(refused_with(errno.EPERM))
    assert reason is not None and reason.endswith("(this process lacks CAP_SYS_RESOURCE)")
    monkeypatch.setattr(relay_traffic, "_effective_capability", lambda cap: True)
    reason = live_frames_refusal(refused_with(errno.EPERM))
    assert reason is not None and "CAP_SYS_RESOURCE" not in reason


def test_a_kernel_without_the_mode_is_a_refusal_too() -> None:
    reason = live_frames_refusal(refused_with(errno.EINVAL))
    assert reason is not None and "no BPF_PROG_TEST_RUN live-frames mode" in reason


def test_a_run_that_works_is_no_refusal() -> None:
    assert live_frames_refusal(lambda: None) is None


def test_any_other_error_is_not_hidden() -> None:
    with pytest.raises(OSError) as info:
        live_frames_refusal(refused_with(errno.ENOMEM))
    assert info.value.errno == errno.ENOMEM


def test_the_probe_frame_is_a_whole_ethernet_frame_of_an_experimental_ethertype() -> None:
    frame = relay_traffic.PROBE_FRAME
    assert len(frame) == 60 and frame[12:14] == b"\x88\xb5"
