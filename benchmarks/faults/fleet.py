"""Worker processes, each in a process group of its own: start, SIGKILL, SIGSTOP/SIGCONT,
restart, keep alive; at the end every group is killed, whatever state it is in.

Each start of a worker is a new generation with its own ledger and log file
(``<name>.<generation>.ledger`` / ``.log``), so a killed process keeps what it wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import ledger

ROOT = Path(__file__).resolve().parent.parent.parent


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: this repository importable, the real-clock offset."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env[ledger.OFFSET_ENV] = repr(ledger.real_offset())
    env.update(extra or {})
    return env


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a child's process group (SIGKILL also ends a stopped process) and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


class WorkerProcess:
    """One worker of the suite's worker script (worker.py), restartable."""

    def __init__(self, name: str, folder: Path, config: Mapping[str, Any],
                 env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.folder = folder
        self.config = dict(config)
        self.env = dict(env or {})
        self.generation = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.procs: list[subprocess.Popen[bytes]] = []
        self.expected_exit = False
        self.starts = 0
        self.kills = 0

    def path(self, suffix: str, generation: int | None = None) -> Path:
        return self.folder / f"{self.name}.{generation or self.generation}{suffix}"

    def start(self) -> WorkerProcess:
        self.generation += 1
        argv = [sys.executable, "-m", "benchmarks.faults.worker",
                "--ledger", str(self.path(ledger.SUFFIX)), "--config", json.dumps(self.config)]
        with open(self.path(".log"), "wb") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=ROOT,
                env=child_env(self.env), start_new_session=True,
            )
        self.procs.append(self.proc)
        self.expected_exit = False
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def ready(self) -> bool:
        return ledger.is_ready(self.path(ledger.SUFFIX))

    def kill(self) -> None:
        """A crash: SIGKILL the whole group."""
        if self.proc is not None:
            self.expected_exit = True
            kill_group(self.proc)
            self.kills += 1

    def pause(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (graceful), then SIGKILL after `timeout`."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.expected_exit = True
        self.resume()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(self.proc)

    def logs(self) -> str:
        """What every generation wrote to stderr, in order."""
        parts = []
        for generation in range(1, self.generation + 1):
            with contextlib.suppress(OSError):
                parts.append(self.path(".log", generation).read_text(errors="replace"))
        return "".join(parts)

    def close(self) -> None:
        self.expected_exit = True
        for proc in self.procs:
            kill_group(proc)


class Fleet:
    """The workers of one scenario, and the background loops that disturb or revive them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.workers: list[WorkerProcess] = []
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.restarts = 0

    def add(self, name: str, config: Mapping[str, Any],
            env: Mapping[str, str] | None = None) -> WorkerProcess:
        worker = WorkerProcess(name, self.folder, config, env)
        self.workers.append(worker)
        return worker.start()

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Until every worker says it runs; RuntimeError naming those that did not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            waiting = [w for w in self.workers if not w.ready]
            if not waiting:
                return
            dead = [w for w in waiting if not w.alive]
            if dead:
                tail = dead[0].logs().strip().splitlines()[-1:] or ["no output"]
                raise RuntimeError(f"worker {dead[0].name} exited at start: {tail[0]}")
            time.sleep(0.05)
        names = ", ".join(w.name for w in self.workers if not w.ready)
        raise RuntimeError(f"workers not ready within {timeout:g} s: {names}")

    def background(self, target: Any, name: str) -> None:
        """Run `target()` on a thread until `stopping` is set (it must watch it)."""
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def keep_alive(self, delay: float = 0.1) -> None:
        """Restart any worker that dies by itself (a poison timer's os._exit)."""

        def loop() -> None:
            while not self.stopping.wait(delay):
                for worker in self.workers:
                    if not worker.alive and not worker.expected_exit:
                        worker.start()
                        self.restarts += 1

        self.background(loop, "keep-alive")

    def stop_loops(self) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(10)

    def close(self) -> None:
        self.stop_loops()
        for worker in self.workers:
            worker.close()


def run_child(argv: list[str], env: Mapping[str, str] | None, timeout: float) -> str:
    """Run a short-lived child in its own process group; its stdout. The whole group is
    killed on timeout (RuntimeError) and a failure raises RuntimeError with stderr's end."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT, env=child_env(env),
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        proc.communicate()
        raise RuntimeError(f"{argv[2]} did not finish within {timeout:g} s") from None
    finally:
        kill_group(proc)
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{argv[2]} failed (exit {proc.returncode}): {tail[0]}")
    return out.decode(errors="replace")
