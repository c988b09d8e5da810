"""Run the fault-injection suite and write its table.

::

    python -m benchmarks.faults                 # every scenario, full sizes (~10 min)
    python -m benchmarks.faults --quick         # small sizes (~2 min)
    python -m benchmarks.faults --scenarios poison,worker-kill --out /tmp/faults

Each scenario starts its own redis-server(s) (redistimers.testing.RedisServer) and worker
processes, injects its fault and counts. The table goes to stdout and ``<out>/faults.md``
(``faults-quick.md`` with --quick, ``faults-partial.md`` for some scenarios), the raw
figures to the ``.json`` beside it; progress goes to stderr. The exit code is 0 when every
scenario ran, whatever it counted; 1 when one could not run (its row says why).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import redistimers

from . import report
from .suite import NAMES, SCENARIOS, Row, run_row

RESULTS = Path(__file__).resolve().parent.parent / "results"


class Log:
    """Progress lines on stderr, with minutes and seconds since the run began."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        elapsed = int(time.monotonic() - self.started)
        print(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] faults: {message}", file=sys.stderr,
              flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.faults",
        description="Inject faults (dead workers, Redis restarts and stalls, partitions, "
                    "skewed clocks, a full Redis, poison timers) and count what happens.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: about 2 minutes")
    parser.add_argument("--scenarios", metavar="NAMES",
                        help=f"comma-separated (default: all): {', '.join(NAMES)}")
    parser.add_argument("--out", metavar="DIR", type=Path,
                        help=f"where the files go (default: {RESULTS})")
    args = parser.parse_args(argv)
    if args.scenarios is None:
        args.names = list(NAMES)
    else:
        wanted = [name.strip() for name in args.scenarios.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in NAMES]
        if unknown or not wanted:
            parser.error(f"unknown scenario(s) {', '.join(unknown) or '(none given)'}; "
                         f"the scenarios are {', '.join(NAMES)}")
        args.names = [name for name in NAMES if name in wanted]
    return args


def stem_of(args: argparse.Namespace) -> str:
    if args.quick:
        return "faults-quick"
    return "faults" if args.names == list(NAMES) else "faults-partial"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    log = Log()
    chosen = [scenario for scenario in SCENARIOS if scenario.name in args.names]
    started_at = dt.datetime.now(dt.timezone.utc)
    started = time.monotonic()
    rows: list[Row] = []
    interrupted = False
    try:
        for scenario in chosen:
            for name, body in scenario.rows:
                rows.append(run_row(name, body, args.quick, log))
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: writing the rows done so far")
    command = "python -m benchmarks.faults " + shlex.join(
        list(argv) if argv is not None else sys.argv[1:])
    meta = {
        **report.machine(),
        "version": redistimers.__version__,
        "mode": ("quick" if args.quick else "full") + (", interrupted" if interrupted else ""),
        "date": started_at.strftime("%Y-%m-%d %H:%M UTC"),
        "command": command.strip(),
        "duration_s": round(time.monotonic() - started, 1),
        "scenarios": args.names,
    }
    paths = report.write(meta, rows, chosen, args.out or RESULTS, stem_of(args))
    print(report.markdown(meta, rows, chosen))
    log(f"done in {meta['duration_s']:.0f} s; wrote {', '.join(str(p) for p in paths)}")
    if interrupted:
        return 130
    return 1 if any(row.error for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
