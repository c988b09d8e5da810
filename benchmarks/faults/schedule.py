"""A scheduling process whose wall clock may be shifted (skew.py): it sets the timers of
a plan with set_timers and prints what Redis confirmed, as JSON on its last line.

    python -m benchmarks.faults.schedule --url URL --plan JSON

The plan is a list of ``{"topic", "id"}`` with one of ``"in_s"``, ``"every_s"`` or
``"cron"``. The output: ``{"real_ms": <real time of the call>, "confirmed": [ids],
"error": null or "Type: message"}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from benchmarks.faults import skew
from benchmarks.faults.ledger import RealClock


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faults.schedule")
    parser.add_argument("--url", required=True)
    parser.add_argument("--plan", required=True)
    args = parser.parse_args(argv)
    skew.prepare_clock()
    from redistimers import TimerScheduler, TimerSpec

    specs = []
    for item in json.loads(args.plan):
        common = {"timer_id": item["id"]}
        if "every_s" in item:
            specs.append(TimerSpec(item["topic"], {}, every=float(item["every_s"]), **common))
        elif "cron" in item:
            specs.append(TimerSpec(item["topic"], {}, cron=item["cron"], **common))
        else:
            specs.append(TimerSpec(item["topic"], {}, activate_in=float(item["in_s"]),
                                   **common))
    scheduler = TimerScheduler.from_url(args.url)
    real_ms = RealClock().ms()
    try:
        confirmed = scheduler.set_timers(specs)
        error = None
    except Exception as exc:
        confirmed = list(getattr(exc, "written_ids", ()) or ())
        error = f"{type(exc).__name__}: {exc}"
    print(json.dumps({"real_ms": real_ms, "confirmed": confirmed, "error": error}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
