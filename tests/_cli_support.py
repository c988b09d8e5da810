"""What the tests of the `redistimers` command (tests/test_cli_*.py) share: running main()
in this process and reading what it printed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from redistimers import RetryPolicy, Router, TimerScheduler
from redistimers.cli import main

#: Deadlines for things that involve other processes on a busy machine.
PROCESS_DEADLINE = 30.0

#: Settings of the environment a test did not mean to pass to the command.
ENVIRONMENT = ("REDIS_URL", "REDISTIMERS_NAMESPACE", "REDISTIMERS_API_TOKEN")


@attrs.frozen
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


Cli = Callable[..., Result]


def cli_runner(redis_url: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    """`run(*argv, scheduler=None, url=True)`: `redistimers --redis-url <redis_url> ARGS...`
    in this process, with what it printed."""

    def run(*argv: str, scheduler: TimerScheduler | None = None, url: bool = True) -> Result:
        capsys.readouterr()
        code = main([*(["--redis-url", redis_url] if url else []), *argv], scheduler=scheduler)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def assert_one_error_line(result: Result, code: int, *fragments: str) -> None:
    """The command failed with `code` and one line on stderr holding every fragment."""
    assert result.code == code, result
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("redistimers: error: "), result.err
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.err


def failing_router(topic: str) -> Router:
    """A router whose handler of `topic` fails at once, without retries: dead letters."""
    router = Router()

    @router.handler(topic, retry=RetryPolicy(max_attempts=1))
    def fail(payload: Any) -> None:
        raise ValueError(f"card declined for {payload}")

    return router


def table_fields(out: str) -> dict[str, str]:
    """The "name: value" lines `get` prints, by name."""
    return {
        name: value.strip()
        for name, value in (line.split(":", 1) for line in out.splitlines() if ":" in line[:16])
    }
