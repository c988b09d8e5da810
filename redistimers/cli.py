"""The `redistimers` command."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence

import redis

from . import __version__
from .errors import RedisTimersError, RedisUnavailableError
from .scheduler import describe_location


@contextlib.contextmanager
def redis_for(url: str | None, out: TextWriter) -> Iterator[redis.Redis]:
    """A client of `url`, or of an embedded throwaway redis-server when there is none."""
    if url:
        client = redis.Redis.from_url(url, socket_connect_timeout=5)
        try:
            client.ping()
        except redis.exceptions.ConnectionError as exc:
            raise RedisUnavailableError(
                f"cannot reach Redis at {describe_location(client)}: {exc}"
            ) from exc
        yield client
        return
    from .testing import RedisServer

    with RedisServer() as embedded_url:
        client = redis.Redis.from_url(embedded_url)
        version = client.info("server")["redis_version"]
        out(f"Started an embedded redis-server {version} at {embedded_url} (no --redis-url given)")
        yield client


class TextWriter:
    """print() to stdout, flushed at once so that deliveries show as they happen."""

    def __call__(self, line: str) -> None:
        print(line, flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    out = TextWriter()
    with redis_for(args.redis_url, out) as client:
        return 0 if run_demo(client, out) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redistimers", description="Distributed timers on Redis for synchronous Python."
    )
    parser.add_argument("--version", action="version", version=f"redistimers {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the library's logs")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL"),
        help="Redis to use (default: $REDIS_URL, else an embedded throwaway redis-server)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="schedule a few timers and watch them fire (about 5 seconds)"
    )
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.run(args)
    except RedisTimersError as exc:
        print(f"redistimers: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
