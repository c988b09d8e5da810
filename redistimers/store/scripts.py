"""The Lua scripts and how they are called: EVALSHA in one pipeline, loaded again when
Redis answers NOSCRIPT (after a restart or SCRIPT FLUSH)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

import attrs
import redis
import tenacity
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

from .. import defaults
from ..connect import RedisClient

SCRIPT_NAMES = (
    "schedule", "claim", "ack", "retry", "extend", "solo", "bury", "cancel", "requeue",
    "stats", "list", "get", "reschedule", "purge", "purge_dead",
)


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _load_sources() -> dict[str, tuple[str, str]]:
    """Script name -> (source, sha1)."""
    folder = resources.files("redistimers") / "lua"
    sources = {}
    for name in SCRIPT_NAMES:
        source = (folder / f"{name}.lua").read_text(encoding="utf-8")
        sources[name] = (source, hashlib.sha1(source.encode()).hexdigest())
    return sources


_SCRIPTS = _load_sources()


def script_sha(name: str) -> str:
    """The SHA1 Redis knows the script `name` by."""
    return _SCRIPTS[name][1]



@attrs.frozen
class Op:
    """One script call: which script, on which keys, with which arguments."""

    kind: str
    topic: str
    script: str
    keys: tuple[str, ...]
    args: tuple[str | int | bytes, ...]


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]




@attrs.frozen
class Replication:
    """How many replicas must have a write before it counts as done, and how long to
    wait for them (Redis's WAIT)."""

    replicas: int
    timeout_ms: int


class NotReplicated(Exception):
    """Redis ran the writes, but fewer replicas than required confirmed them in time:
    they may be lost if the primary fails now. `replies` are the scripts' replies."""

    def __init__(self, acked: int, replication: Replication, replies: list[Any]) -> None:
        super().__init__(
            f"{acked} of {replication.replicas} replicas (min_replicas) confirmed the write "
            f"within {replication.timeout_ms / 1000:g}s (replica_timeout)"
        )
        self.acked = acked
        self.replication = replication
        self.replies = replies


#: What a Cluster answers a script whose slot is moving, or whose master is failing over:
#: it did not run, and will once the keys have moved or a replica has taken over
#: (redis-py follows single ASK and MOVED redirections itself).
_SLOT_MOVING = (
    redis.exceptions.TryAgainError,
    redis.exceptions.AskError,
    redis.exceptions.MovedError,
    redis.exceptions.ClusterError,  # "TTL exhausted": redirected more often than it follows
    redis.exceptions.ClusterDownError,  # a failover under way (a ClusterError too)
)


class _StillMoving(Exception):
    """Some ops still met a moving slot."""


class Scripts:
    """Runs the scripts on one Redis client."""

    def __init__(self, client: RedisClient) -> None:
        self.client = client

    def run(
        self, ops: Sequence[Op], raise_on_error: bool = True,
        replication: Replication | None = None,
    ) -> list[Any]:
        """EVALSHA every op in one pipeline; load scripts on NOSCRIPT. With `raise_on_error`
        false, an op Redis refused has its error as its reply. With `replication`, the
        writes are waited for (WAIT, in the same round trip on one server; on a Cluster,
        at each master written to), and NotReplicated raised when too few replicas have
        them in time."""
        acked: list[Any] = []  # what each WAIT answered
        replies = self._send_loading(ops, replication, acked)
        if isinstance(self.client, RedisCluster):
            self._while_slots_move(ops, replies, replication, acked)
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        if replication is not None:
            for reply in acked:
                if isinstance(reply, Exception):
                    raise reply
            fewest = min((int(reply) for reply in acked), default=replication.replicas)
            if fewest < replication.replicas:
                raise NotReplicated(fewest, replication, replies)
        return replies

    def _send_loading(
        self, ops: Sequence[Op], replication: Replication | None, acked: list[Any]
    ) -> list[Any]:
        """`_send` by sha; the scripts Redis did not know (NOSCRIPT: they did not run, after
        a restart or SCRIPT FLUSH) are loaded and sent again by source."""
        replies = self._send(ops, "EVALSHA", replication, acked)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            self.load()
            again = self._send([ops[i] for i in missing], "EVAL", replication, acked)
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    def _send(
        self, ops: Sequence[Op], command: str, replication: Replication | None,
        acked: list[Any],
    ) -> list[Any]:
        """One pipeline of script calls (EVALSHA by sha, EVAL by source), with a WAIT after
        the writes of each server written to (on the connection that wrote them: Redis
        counts a connection's own writes); the WAITs' answers go to `acked`."""
        pipe: Any = self.client.pipeline(transaction=False)
        nodes: dict[str, Any] = {}
        cluster = self.client if isinstance(self.client, RedisCluster) else None
        by_sha = command == "EVALSHA"
        for op in ops:
            script = _SCRIPTS[op.script][1 if by_sha else 0]
            args = (command, script, len(op.keys), *op.keys, *op.args)
            if cluster is not None:
                # Naming the master itself: redis-py's pipeline would ask its default node
                # for the keys of every script call (COMMAND GETKEYS, a round trip each),
                # and could route nothing once that node died.
                node = cluster.get_node_from_key(op.keys[0])  # type: ignore[no-untyped-call]
                nodes[node.name] = node
                pipe.execute_command(*args, target_nodes=node)
            else:
                pipe.execute_command(*args)
        waits = 0
        if replication is not None and ops:
            wait = ("WAIT", replication.replicas, replication.timeout_ms)
            for node in nodes.values():
                pipe.execute_command(*wait, target_nodes=node)
            if not nodes:
                pipe.execute_command(*wait)
            waits = max(1, len(nodes))
        replies: list[Any] = pipe.execute(raise_on_error=False)
        if waits:
            acked += replies[-waits:]
            del replies[-waits:]
        return replies

    def _while_slots_move(
        self, ops: Sequence[Op], replies: list[Any], replication: Replication | None,
        acked: list[Any],
    ) -> None:
        """Run again the ops a Cluster answered with "its keys are moving" (TRYAGAIN, or
        redirections past redis-py's limit, while a slot migrates key by key) or "down"
        (CLUSTERDOWN, while a master is failed over), until they run or SLOT_MOVE_PATIENCE
        passes: such a script did not run, and these states last seconds at most."""
        def moving() -> list[int]:
            return [i for i, reply in enumerate(replies) if isinstance(reply, _SLOT_MOVING)]

        def again() -> None:
            pending = moving()
            answers = self._send_loading([ops[i] for i in pending], replication, acked)
            for i, reply in zip(pending, answers, strict=True):
                replies[i] = reply
            if moving():
                raise _StillMoving

        if not moving():
            return
        with contextlib.suppress(_StillMoving):  # then the replies keep their errors
            tenacity.Retrying(
                retry=tenacity.retry_if_exception_type(_StillMoving),
                wait=tenacity.wait_exponential(multiplier=0.005, max=0.2),
                stop=tenacity.stop_after_delay(defaults.SLOT_MOVE_PATIENCE),
                reraise=True,
            )(again)

    def load(self) -> None:
        """Load every script into Redis's script cache (one round trip; on a Cluster, into
        every master's)."""
        if isinstance(self.client, RedisCluster):  # SCRIPT LOAD goes to every primary
            for source, _sha in _SCRIPTS.values():
                self.client.script_load(source)
            return
        pipe: Any = self.client.pipeline(transaction=False)
        for source, _sha in _SCRIPTS.values():
            pipe.execute_command("SCRIPT", "LOAD", source)
        pipe.execute()
