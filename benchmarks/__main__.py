"""Run the benchmarks: the same workloads for redistimers and its peers, on one
redis-server, into a markdown table, raw JSON and a PNG of the lateness CDFs.

::

    python -m benchmarks                          # full run: ours and every peer (~1 h)
    python -m benchmarks --quick                  # small sizes, ours only (~40 s)
    python -m benchmarks --peers huey,rq --workloads drain,idle-lateness
    python -m benchmarks --peers none --redis-url redis://localhost:6379/0
    python -m benchmarks --quick --workloads drain --profile /tmp/drain-profiles

Install the peers first with ``python -m benchmarks.peers install``; a peer that is not
installed shows why in its column. Progress goes to stderr, the table to stdout, the files
to ``--out`` (default ``benchmarks/results/``): ``full.*`` for a full run of everything,
``quick.*`` and ``partial.*`` (git-ignored) otherwise.

The run FLUSHALLs its Redis before every case: never point --redis-url at a server whose
data you want to keep.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from . import (
    figures,
    machine,
    peers,
    procs,
    report,
    workloads_capacity,
    workloads_drain,
    workloads_scale,
    workloads_timing,
)
from .counting import PROFILE_ENV
from .figures import FIGURES, WORKLOADS, Cell, Result
from .procs import CaseError
from .session import QUICK, Session, Sizes, Subject

RESULTS = Path(__file__).resolve().parent / "results"

Case = Callable[[Session, Subject, Result], None]

#: Each workload's function, in the order of figures.WORKLOADS.
CASES: dict[str, Case] = {
    "schedule": workloads_capacity.schedule,
    "drain": workloads_drain.drain,
    "drain-4": workloads_drain.drain_4,
    "two-workers": workloads_drain.two_workers,
    "idle-lateness": workloads_timing.idle_lateness,
    "busy-lateness": workloads_timing.busy_lateness,
    "memory": workloads_capacity.memory,
    "worker-memory": workloads_capacity.worker_memory,
    "idle-load": workloads_capacity.idle_load,
    "crash": workloads_timing.crash,
    "scale": workloads_scale.scale,
}
assert list(CASES) == WORKLOADS, "CASES and figures.WORKLOADS disagree"


class Log:
    """Progress lines on stderr, each with the minutes and seconds since the run began."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        elapsed = int(time.monotonic() - self.started)
        print(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {message}", file=sys.stderr,
              flush=True)


# -- arguments -----------------------------------------------------------------------------


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark redistimers against its peers on one redis-server.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and only redistimers (unless --peers): about 40 s")
    parser.add_argument(
        "--peers", metavar="NAMES",
        help="comma-separated peers to run besides redistimers, 'all' or 'none' "
             f"(default: all, or none with --quick); peers: {', '.join(peers.PEER_NAMES)}",
    )
    parser.add_argument(
        "--workloads", metavar="NAMES",
        help=f"comma-separated workloads (default: all): {', '.join(WORKLOADS)}; "
             f"aliases: {', '.join(f'{k}={v}' for k, v in figures.ALIASES.items())}; "
             "'faults' alone runs the fault-injection suite (python -m benchmarks.faults)",
    )
    parser.add_argument("--redis-url", metavar="URL",
                        help="use this Redis (it is FLUSHed!) instead of starting one")
    parser.add_argument("--out", metavar="DIR", type=Path,
                        help=f"where the files go (default: {RESULTS})")
    parser.add_argument(
        "--profile", metavar="DIR", type=Path,
        help="cProfile the threads of every redistimers worker into "
             "DIR/<worker>.<thread>.pstat (read them with python -m pstats); it slows "
             "them, so the figures of such a run are not comparable with others",
    )
    args = parser.parse_args(argv)

    if args.peers is None:
        args.peers = "none" if args.quick else "all"
    chosen = _names(args.peers)
    if chosen == ["all"]:
        args.peer_names = list(peers.PEER_NAMES)
    elif chosen in (["none"], []):
        args.peer_names = []
    else:
        unknown = [name for name in chosen if name not in peers.PEER_NAMES]
        if unknown:
            parser.error(f"unknown peer(s) {', '.join(unknown)}; "
                         f"the peers are {', '.join(peers.PEER_NAMES)}")
        args.peer_names = [name for name in peers.PEER_NAMES if name in chosen]

    if args.workloads is None or _names(args.workloads) == ["all"]:
        args.workload_names = list(WORKLOADS)
    else:
        wanted = set()
        for name in _names(args.workloads):
            name = figures.ALIASES.get(name, name)
            if name not in WORKLOADS:
                parser.error(f"unknown workload {name!r}; the workloads are "
                             f"{', '.join(WORKLOADS)}")
            wanted.add(name)
        args.workload_names = [name for name in WORKLOADS if name in wanted]
    return args


def stem_of(args: argparse.Namespace) -> str:
    """quick, full (everything, every peer: the committed result) or partial."""
    if args.quick:
        return "quick"
    every = args.peer_names == list(peers.PEER_NAMES) and args.workload_names == WORKLOADS
    return "full" if every else "partial"


# -- running -----------------------------------------------------------------------------


def _summary(result: Result, keys: Sequence[str]) -> str:
    parts = []
    for key in keys:
        cell = result.cells.get(key)
        if cell is None:
            continue
        digits = figures.BY_KEY[key].digits
        parts.append(f"{key} {cell.render(digits)}")
    return "; ".join(parts)


def run_case(s: Session, subject: Subject, workload: str, log: Log) -> tuple[Result, float]:
    """One workload of one library: its cells (a text where there is no number), always."""
    keys = figures.keys_of(workload)
    result = Result()
    started = time.monotonic()
    log(f"{subject.name}: {workload} ...")
    try:
        CASES[workload](s, subject, result)
    except CaseError as exc:
        result.fail(keys, str(exc))
    except Exception as exc:
        log(f"{subject.name}: {workload}: harness error\n{traceback.format_exc()}")
        result.fail(keys, f"harness error: {type(exc).__name__}: {exc}")
    finally:
        s.cleanup()
    result.fail(keys, "not measured")
    seconds = time.monotonic() - started
    log(f"{subject.name}: {workload} took {seconds:.1f} s: {_summary(result, keys)}")
    return result, seconds


def prepare(name: str, log: Log) -> Subject:
    """The library with its `info`, or why it cannot run."""
    subject = Subject(peers.library(name))
    if subject.lib.unavailable:
        subject.unavailable = subject.lib.unavailable
    else:
        try:
            subject.info = procs.info(subject.lib)
        except CaseError as exc:
            subject.unavailable = f"info failed: {exc}"
    if subject.unavailable:
        log(f"{name}: not run: {subject.unavailable}")
    else:
        assert subject.info is not None
        log(f"{name} {subject.info.raw.get('version', '?')}: adapter starts in "
            f"{subject.info.seconds:.1f} s")
    return subject


def run_library(
    s: Session, subject: Subject, workloads: Sequence[str], log: Log, budget: float,
) -> tuple[dict[str, Cell], dict[str, object]]:
    """Every workload of one library within `budget` seconds (a workload that would start
    later is skipped; the scale fill is cut to what is left)."""
    cells: dict[str, Cell] = {}
    raw: dict[str, object] = {}
    keys = [f.key for f in FIGURES if f.workload in workloads]
    if subject.unavailable:
        for key in keys:
            cells[key] = Cell(None, "not run (see below)")
        if keys:
            cells[keys[0]] = Cell(None, subject.unavailable)
        return cells, raw
    started = time.monotonic()
    s.deadline = started + budget
    seconds: dict[str, float] = {}
    try:
        for workload in workloads:
            if s.time_left() <= 0:
                skipped = f"skipped: {subject.name}'s {budget / 60:.0f} min were spent"
                log(f"{subject.name}: {workload} {skipped}")
                for key in figures.keys_of(workload):
                    cells[key] = Cell(None, skipped)
                continue
            result, seconds[workload] = run_case(s, subject, workload, log)
            cells.update(result.cells)
            raw[workload] = {**result.raw, "seconds": round(seconds[workload], 2)}
    finally:
        s.deadline = None
        s.cleanup()
        try:
            s.reset()  # let go of what the last case left (up to 10 million timers)
        except Exception as exc:
            log(f"{subject.name}: could not FLUSHALL after its cases: {exc!r}")
        raw["seconds"] = {**{k: round(v, 1) for k, v in seconds.items()},
                          "total": round(time.monotonic() - started, 1)}
    log(f"{subject.name}: all its workloads took {(time.monotonic() - started) / 60:.1f} min")
    return cells, raw


def own_budget(sizes: Sizes, name: str) -> float:
    return sizes.ours_budget if name == peers.OURS else sizes.library_budget


def budget_of(sizes: Sizes, names: Sequence[str], run_left: float) -> float:
    """Seconds the first of `names` (the libraries still to run) may take: its own budget,
    or, when the run's budget cannot give every one of them theirs, its share of what is
    left (in proportion to its own), but at least min_budget."""
    own = [own_budget(sizes, name) for name in names]
    share = run_left * own[0] / sum(own)
    return min(own[0], max(sizes.min_budget, share))


def start_server(log: Log) -> tuple[object, str, str]:
    """A redis-server of our own, without a memory limit (the scale case needs GBs)."""
    from redistimers.testing import RedisServer

    server = RedisServer(config={"maxmemory": "0", "maxmemory-policy": "noeviction"})
    url = server.start()
    log(f"redis-server {server.executable} at {url}")
    return server, url, f"started by the harness: {server.executable}"


def check_server(s: Session, log: Log) -> None:
    """Warn about settings of a given server that would spoil the figures."""
    try:
        config = s.probe.client.config_get("maxmemory")
    except Exception:  # a managed Redis may refuse CONFIG
        return
    if int(config.get("maxmemory", 0) or 0):
        log(f"warning: this Redis has maxmemory {config['maxmemory']}: the scale case "
            "may run out of memory")


def faults_argv(argv: Sequence[str] | None) -> list[str] | None:
    """The fault suite's arguments (--quick, --out) when the only workload asked is
    "faults", else None."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--workloads")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out")
    known, _ = parser.parse_known_args(argv)
    if known.workloads is None or _names(known.workloads) != ["faults"]:
        return None
    return ["--quick"] * known.quick + (["--out", known.out] if known.out else [])


def main(argv: Sequence[str] | None = None) -> int:
    delegated = faults_argv(argv)
    if delegated is not None:
        from .faults.__main__ import main as faults_main

        return faults_main(delegated)
    args = parse_args(argv)
    log = Log()
    sizes: Sizes = QUICK if args.quick else Sizes()
    out: Path = args.out or RESULTS
    stem = stem_of(args)
    names = [peers.OURS, *args.peer_names]
    log(f"{'quick' if args.quick else 'full'} run: {', '.join(names)}; "
        f"workloads: {', '.join(args.workload_names)}")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        os.environ[PROFILE_ENV] = str(args.profile.resolve())  # the workers inherit it
        log(f"profiling redistimers' workers into {args.profile}: slower figures")

    server = None
    if args.redis_url:
        url, where = args.redis_url, "given by --redis-url"
    else:
        server, url, where = start_server(log)
    started = time.monotonic()
    started_at = dt.datetime.now(dt.timezone.utc)
    interrupted = False
    subjects: list[Subject] = []
    cells: dict[str, dict[str, Cell]] = {}
    raw: dict[str, dict[str, object]] = {}
    redis_info: dict[str, str] = {}
    failed: BaseException | None = None
    with tempfile.TemporaryDirectory(prefix="redistimers-bench-") as folder:
        s = Session(url, sizes, Path(folder), log=log)
        try:
            check_server(s, log)
            redis_info = s.probe.server_info()
            run_deadline = time.monotonic() + sizes.run_budget
            for index, name in enumerate(names):
                subject = prepare(name, log)
                subjects.append(subject)
                cells[name], raw[name] = {}, {}
                budget = budget_of(sizes, names[index:], run_deadline - time.monotonic())
                cells[name], raw[name] = run_library(s, subject, args.workload_names, log,
                                                     budget)
        except KeyboardInterrupt:
            interrupted = True
            log("interrupted: writing what was measured so far")
        except Exception as exc:  # a bug of the harness, or Redis gone: keep what we have
            failed = exc
            log(f"the run failed:\n{traceback.format_exc()}")
        finally:
            s.close()
            if server is not None:
                server.close()  # type: ignore[attr-defined]

    duration = time.monotonic() - started
    command = "python -m benchmarks" + (" " + shlex.join(argv if argv is not None
                                                          else sys.argv[1:])).rstrip()
    meta = {
        "mode": stem.capitalize()
        + (" (interrupted)" if interrupted else "")
        + (f" (failed: {failed!r})" if failed is not None else ""),
        "date": started_at.strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "duration_s": round(duration, 1),
        "cpus": os.cpu_count(),
        "cpu_model": machine.cpu_model(),
        "memory_gib": machine.memory_gib(),
        "python": platform.python_version(),
        "redis_version": redis_info.get("redis_version", "?"),
        "redis_where": where,
        "workloads": args.workload_names,
    }
    shown = [f for f in FIGURES if f.workload in args.workload_names]
    result = report.Report(meta, sizes, subjects, shown, cells, raw)
    paths = report.write(result, out, stem)
    print(result.table())
    print()
    log(f"done in {duration / 60:.1f} min; wrote {', '.join(str(p) for p in paths)}")
    if failed is not None:
        return 1
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
