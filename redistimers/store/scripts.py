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
        super().__init__(f"{acked} of {replication.replicas} replicas confirmed the write")
        self.acked = acked
        self.replication = replication
        self.replies = replies


#: What a Cluster answers a script whose slot is moving: it did not run, and will once
#: the keys have moved (redis-py follows single ASK and MOVED redirections itself).
_SLOT_MOVING = (
    redis.exceptions.TryAgainError,
    redis.exceptions.AskError,
    redis.exceptions.MovedError,
    redis.exceptions.ClusterError,  # "TTL exhausted": redirected more often than it follows
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
        pipe: Any = self.client.pipeline(transaction=False)
        for op in ops:
            sha = _SCRIPTS[op.script][1]
            pipe.execute_command("EVALSHA", sha, len(op.keys), *op.keys, *op.args)
        single = not isinstance(self.client, RedisCluster)
        if replication is not None and single:
            pipe.execute_command("WAIT", replication.replicas, replication.timeout_ms)
        replies = pipe.execute(raise_on_error=False)
        acked = replies.pop() if replication is not None and single else None
        missing = [i for i, r in enumerate(replies[: len(ops)]) if isinstance(r, NoScriptError)]
        if missing:
            # A NOSCRIPT reply means that script did not run at all: run just those again.
            self.load()
            retry: Any = self.client.pipeline(transaction=False)
            for i in missing:
                op = ops[i]
                source = _SCRIPTS[op.script][0]
                retry.execute_command("EVAL", source, len(op.keys), *op.keys, *op.args)
            for i, reply in zip(missing, retry.execute(raise_on_error=False), strict=True):
                replies[i] = reply
        if not single:
            self._while_slots_move(ops, replies)
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        if replication is not None:
            if acked is None:
                acked = self._wait_on_masters(ops, replication)
            if isinstance(acked, Exception):
                raise acked
            if int(acked) < replication.replicas:
                raise NotReplicated(int(acked), replication, list(replies))
        return list(replies)

    def _while_slots_move(self, ops: Sequence[Op], replies: list[Any]) -> None:
        """Run again the ops a Cluster answered with "its keys are moving" (TRYAGAIN, or
        redirections past redis-py's limit, while a slot migrates key by key), until they
        run or SLOT_MOVE_PATIENCE passes: such a script did not run, and the move takes
        milliseconds."""
        def moving() -> list[int]:
            return [i for i, reply in enumerate(replies) if isinstance(reply, _SLOT_MOVING)]

        def again() -> None:
            pending = moving()
            pipe: Any = self.client.pipeline(transaction=False)
            for i in pending:
                op = ops[i]
                pipe.execute_command(
                    "EVALSHA", _SCRIPTS[op.script][1], len(op.keys), *op.keys, *op.args
                )
            for i, reply in zip(pending, pipe.execute(raise_on_error=False), strict=True):
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

    def _wait_on_masters(self, ops: Sequence[Op], replication: Replication) -> int:
        """WAIT at every Cluster master that `ops` wrote to; the fewest replicas any of
        them confirmed."""
        cluster: Any = self.client
        nodes = {}
        for op in ops:
            node = cluster.get_node_from_key(op.keys[0])
            nodes[node.name] = node
        acked = [
            int(cluster.execute_command(
                "WAIT", replication.replicas, replication.timeout_ms, target_nodes=node
            ))
            for node in nodes.values()
        ]
        return min(acked, default=replication.replicas)

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
