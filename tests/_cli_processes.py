"""Real `redistimers` processes for the tests of the command (tests/test_cli_*.py): each
writing stdout and stderr to its own file, with none of the runner's REDISTIMERS_*
settings, killed at the end of its test (the `processes` fixture of conftest.py)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from redistimers import TimerScheduler
from redistimers.cli.environment import SETTINGS

from ._cli_support import PROCESS_DEADLINE
from .helpers import REPO, cli_command, cli_environment, wait_for

#: A heartbeat fast enough for a killed worker to expire within a second or so.
FAST_BEAT = "0.3s"


class CliProcesses:
    """`redistimers` commands as real processes of one test, each writing stdout and stderr
    to its own file, with none of the runner's REDISTIMERS_* settings; killed at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[subprocess.Popen[str]] = []

    def start(self, *argv: str, **env: str) -> subprocess.Popen[str]:
        environment = {
            k: v for k, v in cli_environment().items() if k not in {s.variable for s in SETTINGS}
        }
        environment.update(env)
        index = len(self.started)
        with (self.folder / f"{index}.out").open("w") as out, \
                (self.folder / f"{index}.err").open("w") as err:
            process = subprocess.Popen(
                [*cli_command(), *argv], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                text=True, cwd=REPO, env=environment,
            )
        self.started.append(process)
        return process

    def err(self, process: subprocess.Popen[str]) -> str:
        return (self.folder / f"{self.started.index(process)}.err").read_text(errors="replace")

    def out(self, process: subprocess.Popen[str]) -> str:
        return (self.folder / f"{self.started.index(process)}.out").read_text(errors="replace")

    def wait_for_line(self, process: subprocess.Popen[str], text: str) -> None:
        """Wait until the process's stderr holds `text`; fail at once if it exits."""

        def written() -> bool:
            if process.poll() is not None and text not in self.err(process):
                raise AssertionError(f"exited with {process.returncode}:\n{self.err(process)}")
            return text in self.err(process)

        wait_for(written, PROCESS_DEADLINE, interval=0.02)

    def stop(self, process: subprocess.Popen[str]) -> int:
        """SIGTERM, then its exit code."""
        process.send_signal(signal.SIGTERM)
        return process.wait(PROCESS_DEADLINE)

    def close(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.wait(10)


@contextlib.contextmanager
def cli_processes(folder: Path) -> Iterator[CliProcesses]:
    processes = CliProcesses(folder)
    try:
        yield processes
    finally:
        processes.close()


def start_worker(
    processes: CliProcesses, redis_url: str, *argv: str, namespace: str = "redistimers"
) -> tuple[subprocess.Popen[str], str]:
    """A `redistimers worker` of tests._cli_app's routers; returns it and its worker id,
    once it is among the live workers."""
    process = processes.start(
        "worker", "tests._cli_app:routers", "--heartbeat-interval", FAST_BEAT,
        "--namespace", namespace, *argv, REDIS_URL=redis_url,
    )
    scheduler = TimerScheduler.from_url(redis_url, namespace=namespace)

    def registered() -> list[str]:
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode}:\n{processes.err(process)}")
        return [w.worker_id for w in scheduler.workers() if w.pid == process.pid]

    wait_for(registered, PROCESS_DEADLINE, interval=0.02)
    return process, registered()[0]
