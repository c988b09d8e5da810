"""Subprocesses of one test (servers, workers, supervisors), each in its own session and
logging to its own file, ended at teardown: shared by the deployment and gunicorn tests."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from .helpers import REPO, wait_for

#: Seconds to wait for things that involve these processes.
DEADLINE = 30.0


class Processes:
    """The processes of one test, each in its own session, logging to `<folder>/<name>.log`;
    `close()` ends what is left (SIGTERM, then SIGKILL to its process group)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(
        self, name: str, argv: list[str], env: Mapping[str, str], cwd: Path = REPO
    ) -> subprocess.Popen[bytes]:
        with (self.folder / f"{name}.log").open("wb") as log_file:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                cwd=str(cwd), env=dict(env), start_new_session=True,
            )
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.log(name)}" for name in self.processes)

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n{self.logs()}")

    def wait_log(self, name: str, pattern: str) -> re.Match[str]:
        """The first match of `pattern` in `name`'s log, once there."""
        found: list[re.Match[str]] = []

        def logged() -> bool:
            self.check_alive()
            match = re.search(pattern, self.log(name))
            if match:
                found.append(match)
            return match is not None

        try:
            wait_for(logged, DEADLINE, interval=0.05)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from exc
        return found[0]

    def stop(self, name: str, signum: int, timeout: float) -> int:
        """Send `signum`; the exit code, which must come within `timeout` seconds."""
        process = self.processes[name]
        process.send_signal(signum)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{name} still runs {timeout}s after {signal.Signals(signum).name}:\n"
                f"{self.logs()}"
            ) from None

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            if process.poll() is None:
                process.wait(5)
