"""Shifted wall clocks for child processes: libfaketime when installed, else a Python-level
patch of time.time/time.time_ns applied before redistimers is imported.

libfaketime shifts every wall-clock read of the process (C code included) and, with
FAKETIME_DONT_FAKE_MONOTONIC=1, leaves the monotonic clock real (faking it hangs Python's
timed waits). The Python patch only moves time.time and time.time_ns: datetime.now and
C extensions still see the real clock, so it is the weaker of the two.
"""

from __future__ import annotations

import glob
import os
import threading
import time
from typing import SupportsIndex

#: Environment variable read by apply_python_skew(): the shift in seconds.
PY_SKEW_ENV = "FAULTS_PY_SKEW"
#: Set to "off" to use the Python patch even where libfaketime is installed.
FAKETIME_SWITCH_ENV = "FAULTS_FAKETIME"
LIBFAKETIME_GLOB = "/usr/lib/*/faketime/libfaketime.so.1"
INSTALL_HINT = (
    "libfaketime is not installed (nothing at /usr/lib/*/faketime/libfaketime.so.1): "
    "`apt-get install libfaketime` shifts the whole process's clock; falling back to "
    "patching time.time in Python"
)


def find_libfaketime() -> str | None:
    """Path of libfaketime.so.1, or None (also when FAULTS_FAKETIME=off)."""
    if os.environ.get(FAKETIME_SWITCH_ENV, "").lower() == "off":
        return None
    found = sorted(glob.glob(LIBFAKETIME_GLOB))
    return found[0] if found else None


def skew_env(seconds: int, library: str | None) -> dict[str, str]:
    """Environment variables that shift a child's wall clock by `seconds`."""
    if seconds == 0:
        return {}
    if library is not None:
        return {
            "LD_PRELOAD": library,
            "FAKETIME": f"{seconds:+d}s",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }
    return {PY_SKEW_ENV: str(seconds)}


def method(library: str | None) -> str:
    """How clocks are shifted, for the report."""
    return "libfaketime" if library is not None else "Python time.time patch"


def prepare_clock() -> float:
    """In a child, before redis or redistimers is imported: apply the Python-level shift
    when asked, and work around libfaketime's time.sleep; returns the Python shift."""
    if "faketime" in os.environ.get("LD_PRELOAD", ""):
        patch_sleep()
    return apply_python_skew()


def patch_sleep() -> None:
    """Under libfaketime 0.9.10 with FAKETIME_DONT_FAKE_MONOTONIC=1, time.sleep fails with
    EINVAL (it sleeps with clock_nanosleep to an absolute monotonic deadline, which the
    library mistranslates), while waits on locks and select work. Sleep on an Event
    instead (redis-py binds `from time import sleep` at import: patch before that)."""

    def sleep(seconds: float | SupportsIndex) -> None:
        threading.Event().wait(max(0.0, float(seconds)))

    time.sleep = sleep


def apply_python_skew() -> float:
    """Shift time.time/time.time_ns by $FAULTS_PY_SKEW seconds (call before importing
    redistimers); returns the shift (0 when not asked)."""
    seconds = float(os.environ.get(PY_SKEW_ENV) or 0)
    if not seconds:
        return 0.0
    real_time, real_time_ns = time.time, time.time_ns
    shift_ns = int(seconds * 1e9)

    def shifted_time() -> float:
        return real_time() + seconds

    def shifted_time_ns() -> int:
        return real_time_ns() + shift_ns

    time.time = shifted_time
    time.time_ns = shifted_time_ns
    return seconds
