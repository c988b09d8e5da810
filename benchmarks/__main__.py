"""Run the benchmarks: the same workloads for redistimers and its peers, on one
redis-server, into a markdown table, raw JSON and a PNG of the lateness CDFs.

::

    python -m benchmarks                          # full run: ours and every peer (~1 h)
    python -m benchmarks --quick                  # small sizes, ours only (~40 s)
    python -m benchmarks --peers huey,rq --workloads drain,idle-lateness
    python -m benchmarks --peers none --redis-url redis://localhost:6379/0
    python -m benchmarks --quick --workloads drain --profile /tmp/drain-profiles
    python -m benchmarks --redis cluster          # redistimers on a 3-master Cluster
    python -m benchmarks --redis sentinel         # ... on a Sentinel-managed primary

Install the peers first with ``python -m benchmarks.peers install``; a peer that is not
installed shows why in its column. Progress goes to stderr, the table to stdout, the files
to ``--out`` (default ``benchmarks/results/``): ``full.*`` for a full run of everything,
``quick.*`` and ``partial.*`` (git-ignored) otherwise.

``--redis cluster`` starts a Redis Cluster of 3 masters with a replica each, ``--redis
sentinel`` a primary with one replica and 3 sentinels (or give either's URL with
--redis-url: redis+cluster://..., redis+sentinel://...). Only redistimers runs there (a
peer asked for says why not in its cells), on the workloads schedule, drain, drain-4 and
memory; the spread workloads' topics are chosen so every master holds as many, Redis's
counters are summed over the masters, and the ``.replicas`` figures repeat scheduling and
the drain with ``min_replicas=1``. Their files are ``cluster.*`` and ``sentinel.*`` (all
those workloads), ``quick-cluster.*``, ``partial-sentinel.*`` and so on otherwise; a
``--topics N`` run adds ``-Ntopics``.

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
    topology,
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
        description="Benchmark redistimers against its peers on one redis-server, or "
                    "redistimers alone on a Redis Cluster or a Sentinel-managed primary.",
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
    parser.add_argument(
        "--redis", choices=topology.KINDS,
        help="what Redis to start: one redis-server (default), a Cluster of 3 masters "
             "with a replica each, or a primary with a replica and 3 sentinels; the last "
             "two run redistimers alone on schedule, drain, drain-4 and memory",
    )
    parser.add_argument("--redis-url", metavar="URL",
                        help="use this Redis (it is FLUSHed!) instead of starting one; "
                             "redis+cluster:// and redis+sentinel:// URLs too")
    parser.add_argument(
        "--topics", metavar="N", type=int,
        help="spread the schedule, drain and drain-4 timers over N topics (default: 1; "
             "on a Cluster 2 per master, chosen so each master holds as many)",
    )
    parser.add_argument("--out", metavar="DIR", type=Path,
                        help=f"where the files go (default: {RESULTS})")
    parser.add_argument(
        "--profile", metavar="DIR", type=Path,
        help="cProfile the threads of every redistimers worker into "
             "DIR/<worker>.<thread>.pstat (read them with python -m pstats); it slows "
             "them, so the figures of such a run are not comparable with others",
    )
    args = parser.parse_args(argv)

    if args.redis_url:
        from_url = topology.kind_of_url(args.redis_url)
        if args.redis is not None and args.redis != from_url:
            parser.error(f"--redis {args.redis} but --redis-url is a {from_url}'s URL")
        args.redis = from_url
    args.redis = args.redis or "server"
    single = args.redis == "server"
    if args.topics is not None and args.topics < 1:
        parser.error("--topics takes a number >= 1")

    if args.peers is None:
        args.peers = "none" if args.quick or not single else "all"
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

    allowed = WORKLOADS if single else [w for w in WORKLOADS
                                        if w in topology.TOPOLOGY_WORKLOADS]
    if args.workloads is None or _names(args.workloads) == ["all"]:
        args.workload_names = list(allowed)
    else:
        wanted = set()
        for name in _names(args.workloads):
            name = figures.ALIASES.get(name, name)
            if name not in WORKLOADS:
                parser.error(f"unknown workload {name!r}; the workloads are "
                             f"{', '.join(WORKLOADS)}")
            if name not in allowed:
                parser.error(f"{name} runs on one redis-server only; with --redis "
                             f"{args.redis} the workloads are {', '.join(allowed)}")
            wanted.add(name)
        args.workload_names = [name for name in WORKLOADS if name in wanted]
    return args


def stem_of(args: argparse.Namespace) -> str:
    """quick, full (everything, every peer: the committed result) or partial; on a
    Cluster or Sentinel, cluster or sentinel (every workload that runs there), else
    quick-cluster, partial-sentinel, ...; with --topics N, -Ntopics after it."""
    kind = getattr(args, "redis", "server")
    if kind == "server":
        every = (args.peer_names == list(peers.PEER_NAMES)
                 and args.workload_names == WORKLOADS)
    else:
        every = args.workload_names == [w for w in WORKLOADS
                                        if w in topology.TOPOLOGY_WORKLOADS]
    stem = "quick" if args.quick else "full" if every else "partial"
    if kind != "server":
        stem = kind if stem == "full" else f"{stem}-{kind}"
    if getattr(args, "topics", None) is not None:
        stem += f"-{args.topics}topics"
    return stem


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


def prepare(name: str, log: Log, refused: str | None = None) -> Subject:
    """The library with its `info`, or why it cannot run (`refused`: why it does not run
    here at all)."""
    subject = Subject(peers.library(name))
    if refused and name != peers.OURS:
        subject.unavailable = refused
    elif subject.lib.unavailable:
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


def check_server(s: Session, log: Log) -> None:
    """Warn about settings of a given server that would spoil the figures."""
    try:
        config = s.probe.config_get("maxmemory")
    except Exception:  # a managed Redis may refuse CONFIG
        return
    if int(config.get("maxmemory", 0) or 0):
        log(f"warning: this Redis has maxmemory {config['maxmemory']}: the scale case "
            "may run out of memory")


def idle_cpu(s: Session, seconds: float) -> dict[str, float]:
    """Redis CPU per second of wall time (ms/s) with nothing of ours running, by master:
    the background (cron, cluster bus, sentinels, replication pings) every CPU figure
    includes."""
    s.reset()
    before = s.probe.snapshot()
    time.sleep(seconds)
    delta = s.probe.snapshot().since(before)
    return {name: round(cpu * 1000 / seconds, 3) for name, cpu in delta.cpu_by_master.items()}


def redis_notes(topo: topology.Topology, s: Session, meta: dict[str, object],
                hidden: Sequence[str]) -> list[str]:
    """What the report says about the Redis it measured."""
    notes = []
    masters = ", ".join(s.probe.masters)
    if topo.kind == "cluster":
        notes.append(
            f"**{topo.what}** ({topo.where}). Masters: {masters}, each with at least "
            f"{s.replicas} replica. Only redistimers runs here. The Redis figures (CPU, "
            "commands, round trips, memory) are every master's INFO, summed; each "
            "master's CPU is in the JSON (`redis_cpu_s_by_master`). Replicating to the "
            "replicas is part of the masters' CPU."
        )
    elif topo.kind == "sentinel":
        notes.append(
            f"**{topo.what}** ({topo.where}). Primary: {masters}, with {s.replicas} "
            "replica. Only redistimers runs here. The Redis figures are the primary's "
            "INFO; replicating to the replica is part of its CPU, and the sentinels' "
            "PINGs and INFOs are part of the background below."
        )
    if s.topic_masters and (topo.kind == "cluster" or s.topic_count is not None):
        by_master: dict[str, list[str]] = {}
        for topic, master in s.topic_masters.items():
            by_master.setdefault(master, []).append(topic)
        held = "; ".join(f"{master}: {', '.join(topics)}"
                         for master, topics in sorted(by_master.items()))
        notes.append(f"Topics of the schedule, drain and drain-4 workloads, by master: "
                     f"{held}. One worker handles every topic of its drain.")
    background = meta.get("idle_redis_cpu_ms_per_s")
    if isinstance(background, dict) and background:
        notes.append(
            "Background Redis CPU with nothing running (included in every CPU figure), "
            "ms per second: " + ", ".join(f"{k} {v:g}" for k, v in background.items())
        )
    if s.replicas:
        notes.append(
            "**.replicas** rows: redistimers again with `TimerScheduler(min_replicas=1, "
            "replica_timeout=1.0)`: every write (set_timer, set_timers' chunks, the "
            "worker's settling of fired timers) waits for a replica's WAIT acknowledgement "
            "(on a Cluster, a WAIT at each master written to, after the writes)."
        )
    if hidden:
        notes.append(
            f"Not measured: {', '.join(hidden)} (min_replicas=1): one redis-server has no "
            "replicas; run `--redis cluster` or `--redis sentinel`."
        )
    return notes


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
    log(f"{'quick' if args.quick else 'full'} run on {args.redis}: {', '.join(names)}; "
        f"workloads: {', '.join(args.workload_names)}")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        os.environ[PROFILE_ENV] = str(args.profile.resolve())  # the workers inherit it
        log(f"profiling redistimers' workers into {args.profile}: slower figures")

    if args.redis_url:
        topo = topology.given(args.redis_url)
    else:
        topo = topology.start(args.redis)
        log(f"{topo.what} at {topo.url}")
    refused = (None if topo.kind == "server"
               else topology.PEERS_REFUSED.format(what=topo.what))
    started = time.monotonic()
    started_at = dt.datetime.now(dt.timezone.utc)
    commit = machine.library_commit()  # as the run starts: the library it measures
    interrupted = False
    subjects: list[Subject] = []
    cells: dict[str, dict[str, Cell]] = {}
    raw: dict[str, dict[str, object]] = {}
    redis_info: dict[str, str] = {}
    extra: dict[str, object] = {}
    notes: list[str] = []
    replicas = 0
    failed: BaseException | None = None
    with tempfile.TemporaryDirectory(prefix="redistimers-bench-") as folder:
        s = None
        try:
            s = Session(topo.url, sizes, Path(folder), log=log, topics=args.topics)
            replicas = s.replicas
            check_server(s, log)
            redis_info = s.probe.server_info()
            extra["idle_redis_cpu_ms_per_s"] = idle_cpu(s, 2 * sizes.settle + 1)
            run_deadline = time.monotonic() + sizes.run_budget
            for index, name in enumerate(names):
                subject = prepare(name, log, refused)
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
            if s is not None:
                extra["topics"] = dict(s.topic_masters)
                extra["masters"] = list(s.probe.masters)
                s.close()
            topo.close()

    hidden = [f.key for f in FIGURES
              if f.workload in args.workload_names and f.replicas and not replicas]
    if s is not None:
        notes = redis_notes(topo, s, extra, hidden)
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
        "commit": commit,
        "redis_version": redis_info.get("redis_version", "?"),
        "redis_where": topo.where,
        "redis": topo.kind,
        "replicas": replicas,
        **extra,
        "workloads": args.workload_names,
    }
    shown = [f for f in FIGURES if f.workload in args.workload_names and f.key not in hidden]
    result = report.Report(meta, sizes, subjects, shown, cells, raw, notes)
    paths = report.write(result, out, stem)
    print(result.table())
    print()
    log(f"done in {duration / 60:.1f} min; wrote {', '.join(str(p) for p in paths)}")
    if failed is not None:
        return 1
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
