"""What tests/test_deploy.py needs to read the recipes of deploy/ and run their commands:
readers of a systemd environment file and a Dockerfile, the `redistimers` command lines
as the CLI would resolve them, and the processes a test starts."""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import shlex
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from redistimers import TimerScheduler
from redistimers.cli.environment import SETTINGS, resolve
from redistimers.cli.parser import build_parser

from .helpers import REPO, cli_command, cli_environment

DEPLOY = REPO / "deploy"
EXAMPLE = DEPLOY / "example"

#: The namespace every recipe sets (REDISTIMERS_NAMESPACE).
NAMESPACE = "reminders"
#: The example's topics (deploy/example/reminders/tasks.py).
TOPICS = ("reminders", "trials")

#: Deadlines for things that involve other processes on a busy two-core machine.
DEADLINE = 30.0


# -- reading the recipes -------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a systemd EnvironmentFile (comments and blank lines skipped)."""
    variables: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";")):
            name, _, value = line.partition("=")
            variables[name.strip()] = value.strip().strip("\"'")
    return variables


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") and not pending:
            continue
        stripped = line.strip()
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = (pending + stripped).strip()
        pending = ""
        if whole:
            keyword, _, arguments = whole.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def dockerfile_env(path: Path) -> dict[str, str]:
    """The variables the Dockerfile's ENV instructions set (KEY=VALUE forms)."""
    variables: dict[str, str] = {}
    for keyword, arguments in dockerfile_instructions(path):
        if keyword == "ENV":
            for word in shlex.split(arguments):
                name, _, value = word.partition("=")
                variables[name] = value
    return variables


def cli_variables() -> set[str]:
    """Every environment variable the `redistimers` command reads."""
    return {setting.variable for setting in SETTINGS}


def resolved(argv: list[str], environ: Mapping[str, str]) -> argparse.Namespace:
    """A ``redistimers ...`` command line as the command reads it: parsed, then options
    not given filled in from `environ` (a bad variable is a CliError)."""
    assert argv[0] == "redistimers" or argv[0].endswith("/redistimers"), argv
    return resolve(build_parser().parse_args(argv[1:]), environ)


def redistimers_variables(environ: Mapping[str, str]) -> set[str]:
    """The REDIS_URL and REDISTIMERS_* names among `environ`'s."""
    return {name for name in environ if name == "REDIS_URL" or name.startswith("REDISTIMERS_")}


def seconds(text: str | int) -> float:
    """A grace period as systemd, compose and supervisord write it: 30, "30", "30s",
    "1m30s"."""
    if isinstance(text, int) or text.isdigit():
        return float(text)
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text):
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    assert total > 0, f"not a duration: {text!r}"
    return total


# -- running them --------------------------------------------------------------------------


def example_environment(**extra: str) -> dict[str, str]:
    """The environment of a command of the example app: the image and the hosts install
    it; here deploy/example is on PYTHONPATH instead."""
    env = cli_environment()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(EXAMPLE), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def local_command(argv: list[str]) -> list[str]:
    """`argv` with its program taken from this venv: ``redistimers`` (or a path ending in
    /redistimers) is the venv's console script, ``gunicorn`` and ``python`` this
    interpreter's."""
    program = argv[0]
    if program == "redistimers" or program.endswith("/redistimers"):
        return [*cli_command(), *argv[1:]]
    if program == "gunicorn":
        return [sys.executable, "-m", "gunicorn", *argv[1:]]
    if program in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    raise AssertionError(f"no local stand-in for {program!r}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def free_port_prefix(count: int) -> str:
    """Digits P such that ports P0 ... P<count-1> are free (supervisord's
    ``946%(process_num)d``, with P for 946)."""
    for _ in range(100):
        prefix = str(random.randrange(2000, 6000))
        ports = [int(f"{prefix}{n}") for n in range(count)]
        try:
            with contextlib.ExitStack() as stack:
                for port in ports:
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return prefix
    raise AssertionError("no free ports found")


def schedule_reminder(timers: TimerScheduler, user: str) -> str:
    """A reminder due now, set as the web app sets it (without the handler here, the
    payload is the JSON form of a Reminder)."""
    return timers.set_timer(TOPICS[0], {"user": user, "text": "stand up"}, activate_in=0)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=DEADLINE) as answer:
        text: str = answer.read().decode()
        return text




def run(argv: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """A short command (a health check), to its end."""
    return subprocess.run(
        local_command(argv), env=dict(env), cwd=str(REPO), capture_output=True, text=True,
        timeout=DEADLINE, check=False,
    )
