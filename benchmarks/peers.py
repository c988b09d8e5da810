"""The libraries the benchmarks compare: how to run each one's adapter, how to install it.

Our own adapter runs with the project's interpreter. Each Python peer runs with the
interpreter of its own virtual environment, ``benchmarks/.cache/venv-<peer>``, made from
its pinned ``benchmarks/adapters/<peer>.txt``; BullMQ runs with ``node``, its packages
installed by ``npm ci`` from the committed ``package.json`` and ``package-lock.json`` into
``benchmarks/.cache/bullmq``. Install them with::

    python -m benchmarks.peers install            # every peer
    python -m benchmarks.peers install huey rq    # some
    python -m benchmarks.peers list               # what is installed, and what is missing
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import attrs

HERE = Path(__file__).resolve().parent
ADAPTERS = HERE / "adapters"
CACHE = HERE / ".cache"
OURS = "redistimers"
#: The order of the report's columns after ours.
PEER_NAMES = ("faststream", "bullmq", "celery", "huey", "rq", "apscheduler")
_STAMP = ".requirements.sha256"


class InstallError(Exception):
    """A peer could not be installed; the message says why."""


@attrs.frozen
class Library:
    """One library under test: the command that runs its adapter, or why it cannot run."""

    name: str
    #: The adapter's command line without the protocol's arguments.
    command: tuple[str, ...]
    #: Extra environment variables of the adapter's processes.
    env: tuple[tuple[str, str], ...] = ()
    #: Why this library cannot run here (not installed, no adapter, no node), else None.
    unavailable: str | None = None

    def environ(self) -> dict[str, str]:
        return {**os.environ, **dict(self.env)}


def _digest(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _stamp_matches(folder: Path, digest: str) -> bool:
    stamp = folder / _STAMP
    return stamp.is_file() and stamp.read_text().strip() == digest


def _stale(folder: Path, digest: str) -> bool:
    """Installed from other requirements than these (no stamp: installed by hand, trusted)."""
    stamp = folder / _STAMP
    return stamp.is_file() and stamp.read_text().strip() != digest


def ours() -> Library:
    adapter = ADAPTERS / "redistimers_adapter.py"
    return Library(OURS, (sys.executable, str(adapter)))


def _python_peer(name: str) -> Library:
    adapter = ADAPTERS / f"{name}_adapter.py"
    requirements = ADAPTERS / f"{name}.txt"
    venv = CACHE / f"venv-{name}"
    python = venv / "bin" / "python"
    unavailable = None
    if not adapter.is_file() or not requirements.is_file():
        unavailable = f"no adapter yet ({adapter.name} and {requirements.name} are needed)"
    elif not python.is_file():
        unavailable = f"not installed: run `python -m benchmarks.peers install {name}`"
    elif _stale(venv, _digest(requirements)):
        unavailable = (
            f"{requirements.name} changed since it was installed: "
            f"run `python -m benchmarks.peers install {name}`"
        )
    return Library(name, (str(python), str(adapter)), unavailable=unavailable)


def _bullmq() -> Library:
    folder = ADAPTERS / "bullmq"
    adapter = folder / "adapter.mjs"
    modules = CACHE / "bullmq" / "node_modules"
    node = shutil.which("node")
    unavailable = None
    if node is None or shutil.which("npm") is None:
        unavailable = "node and npm are not installed on this machine"
    elif not adapter.is_file() or not (folder / "package-lock.json").is_file():
        unavailable = "no adapter yet (bullmq/adapter.mjs and package-lock.json are needed)"
    elif not modules.is_dir():
        unavailable = "not installed: run `python -m benchmarks.peers install bullmq`"
    elif _stale(CACHE / "bullmq", _digest(folder / "package-lock.json")):
        unavailable = (
            "package-lock.json changed since it was installed: "
            "run `python -m benchmarks.peers install bullmq`"
        )
    return Library(
        "bullmq",
        (node or "node", str(adapter)),
        env=(("BULLMQ_MODULES", str(modules)),),
        unavailable=unavailable,
    )


def library(name: str) -> Library:
    """The library called `name` (ours or a peer), available or saying why not."""
    if name == OURS:
        return ours()
    if name == "bullmq":
        return _bullmq()
    if name in PEER_NAMES:
        return _python_peer(name)
    raise KeyError(f"unknown library {name!r}; the peers are {', '.join(PEER_NAMES)}")


# -- installing ---------------------------------------------------------------------------


def _run(argv: Sequence[str], cwd: Path | None = None) -> None:
    print("+", " ".join(argv), flush=True)
    result = subprocess.run(list(argv), cwd=cwd, check=False)
    if result.returncode != 0:
        raise InstallError(f"`{' '.join(argv)}` exited with {result.returncode}")


def install_python_peer(name: str) -> None:
    requirements = ADAPTERS / f"{name}.txt"
    if not requirements.is_file():
        raise InstallError(f"{requirements} does not exist yet")
    venv = CACHE / f"venv-{name}"
    digest = _digest(requirements)
    if _stamp_matches(venv, digest):
        print(f"{name}: up to date in {venv}")
        return
    if not (venv / "bin" / "python").is_file():
        _run(["python3", "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "install", "--quiet", "-r", str(requirements)])
    (venv / _STAMP).write_text(digest + "\n")


def install_bullmq() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise InstallError("node and npm are not installed on this machine")
    folder = ADAPTERS / "bullmq"
    lock = folder / "package-lock.json"
    if not lock.is_file():
        raise InstallError(f"{lock} does not exist yet")
    target = CACHE / "bullmq"
    digest = _digest(lock)
    if _stamp_matches(target, digest) and (target / "node_modules").is_dir():
        print(f"bullmq: up to date in {target}")
        return
    target.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(folder / name, target / name)
    # --ignore-scripts: msgpackr-extract's optional native build is not needed (its
    # prebuilt binary is an optional package, and msgpackr works without it).
    _run(["npm", "ci", "--prefix", str(target), "--ignore-scripts", "--no-audit", "--no-fund"])
    (target / _STAMP).write_text(digest + "\n")


def install(names: Sequence[str]) -> dict[str, str | None]:
    """Install each peer; returns name -> None (installed) or why it could not be."""
    outcome: dict[str, str | None] = {}
    for name in names:
        library(name)  # unknown names raise KeyError before anything is installed
    for name in names:
        try:
            if name == "bullmq":
                install_bullmq()
            else:
                install_python_peer(name)
            outcome[name] = None
        except InstallError as exc:
            outcome[name] = str(exc)
            print(f"{name}: not installed: {exc}", file=sys.stderr)
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.peers", description="Install the peers the benchmarks run."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    install_cmd = commands.add_parser("install", help="install peers (default: all)")
    install_cmd.add_argument("names", nargs="*", metavar="NAME", help=", ".join(PEER_NAMES))
    commands.add_parser("list", help="say which peers can run")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in (OURS, *PEER_NAMES):
            lib = library(name)
            print(f"{name:12} {lib.unavailable or 'ready: ' + ' '.join(lib.command)}")
        return 0
    try:
        outcome = install(args.names or PEER_NAMES)
    except KeyError as exc:
        parser.error(str(exc.args[0]))
    failed = {name: why for name, why in outcome.items() if why}
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
