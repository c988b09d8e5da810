"""The Lua scripts and how they are called: EVALSHA in one pipeline, loaded again when
Redis answers NOSCRIPT (after a restart or SCRIPT FLUSH)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

import attrs
import redis
from redis.exceptions import NoScriptError

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




class Scripts:
    """Runs the scripts on one Redis client."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def run(self, ops: Sequence[Op], raise_on_error: bool = True) -> list[Any]:
        """EVALSHA every op in one pipeline; load scripts on NOSCRIPT. With `raise_on_error`
        false, an op Redis refused has its error as its reply."""
        pipe: Any = self.client.pipeline(transaction=False)
        for op in ops:
            sha = _SCRIPTS[op.script][1]
            pipe.execute_command("EVALSHA", sha, len(op.keys), *op.keys, *op.args)
        replies = pipe.execute(raise_on_error=False)
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
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return list(replies)

    def load(self) -> None:
        """Load every script into Redis's script cache (one round trip)."""
        pipe: Any = self.client.pipeline(transaction=False)
        for source, _sha in _SCRIPTS.values():
            pipe.execute_command("SCRIPT", "LOAD", source)
        pipe.execute()
