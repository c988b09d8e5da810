"""Scenarios that hurt Redis: SIGKILL and restart from the append-only file, SIGSTOP past
the workers' lease and socket timeout, and a Redis full to its maxmemory."""

from __future__ import annotations

import contextlib
import os
import signal
import time

from redistimers import TimerSpec

from . import worklog
from .harness import Context, now_ms, poll, topic_conf, tracebacks


def _first_line(exc: BaseException, limit: int = 140) -> str:
    """The exception's type and the first line of its message, shortened for a cell."""
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else ""
    return f"{type(exc).__name__}: {line if len(line) <= limit else line[:limit] + '...'}"


def _redis_restart(ctx: Context, fsync: str) -> None:
    n, span, lease, down = ctx.size(500, 3000), ctx.size(6.0, 15.0), 3.0, ctx.size(1.5, 3.0)
    server = ctx.server(appendonly=True, config={"appendfsync": fsync})
    admin = ctx.admin(server.url, socket_timeout=2.0)
    topics = [topic_conf("restart", lease_ttl=lease, sleep=0.02)]
    for i in range(2):
        ctx.worker(f"w{i}", server.url, topics)
    ctx.fleet.wait_ready()
    ctx.spread(admin, "restart", "r", n, 1.0, span)
    end = time.monotonic() + 1.0 + span
    fed = {"confirmed": 0, "failed": 0}

    def feeder() -> None:  # writes around the crash: those Redis confirmed must survive
        batch = 0
        while not ctx.fleet.stopping.wait(0.05) and time.monotonic() < end:
            batch += 1
            try:
                fed["confirmed"] += ctx.spread(admin, "restart", f"f{batch:04d}", 5, 0.5, 1.5)
            except Exception:
                fed["failed"] += 5

    ctx.fleet.background(feeder, "feeder")
    start = time.monotonic()
    poll(lambda: time.monotonic() - start > 1.0 + span * 0.4, 1.0 + span)
    server.kill()
    time.sleep(down)  # the outage itself
    server.start()  # same port, data from the append-only file
    ctx.wait_settled(admin, ["restart"], timeout=span + 3 * lease + 40)
    ctx.fleet.stop_loops()
    ctx.finish(admin, ["restart"])
    note = f"Redis SIGKILLed, down {down:g} s, restarted from its AOF (appendfsync {fsync})"
    if fsync != "always":
        note += ("; with everysec Redis may lose the last second of acknowledged writes "
                 "(Redis's durability, not the library's): on an OS crash or power loss; "
                 "a SIGKILL of redis-server alone rarely does, as its writes already "
                 "reached the page cache")
    ctx.notes.insert(0, note)
    ctx.notes.append(f"feeder: {fed['confirmed']} timers confirmed, {fed['failed']} not "
                     "confirmed during the outage")
    ctx.details.update(feeder=fed)


def redis_restart(ctx: Context) -> None:
    """Redis with appendonly yes and appendfsync always is SIGKILLed mid-run and started
    again on the same port; workers ride it out."""
    _redis_restart(ctx, "always")


def redis_restart_everysec(ctx: Context) -> None:
    """The same with appendfsync everysec."""
    _redis_restart(ctx, "everysec")


def redis_stall(ctx: Context) -> None:
    """redis-server SIGSTOPped longer than the lease (2.5 s) and the workers' socket
    timeout (1 s), then SIGCONT; max_attempts=1, so a timer claimed by a request its
    worker gave up on dies as "lease expired"."""
    n, span, lease, stall = ctx.size(400, 2000), ctx.size(6.0, 15.0), 2.5, ctx.size(5.0, 8.0)
    server = ctx.server()
    admin = ctx.admin(server.url, socket_timeout=10.0)
    topics = [topic_conf("stall", lease_ttl=lease, max_attempts=1, sleep=0.05)]
    workers = [ctx.worker(f"w{i}", server.url, topics, socket_timeout=1.0) for i in range(2)]
    ctx.fleet.wait_ready()
    ctx.spread(admin, "stall", "s", n, 1.0, span)
    pid = int(ctx.clients[0].info("server")["process_id"])
    start = time.monotonic()
    poll(lambda: time.monotonic() - start > 1.0 + span * 0.3, 1.0 + span)
    ctx.cleanups.append(lambda: os.kill(pid, signal.SIGCONT))
    stopped_at = time.time()
    os.kill(pid, signal.SIGSTOP)
    time.sleep(stall)  # the stall itself
    os.kill(pid, signal.SIGCONT)
    resumed_at = time.time()
    ctx.wait_settled(admin, ["stall"], timeout=span + 3 * lease + 30)
    counts = ctx.finish(admin, ["stall"])
    logs = [worklog.parse(w.logs()) for w in workers]
    logged = sum(1 for lines in logs if worklog.complaints(lines, stopped_at, resumed_at + 2))
    back = sum(1 for lines in logs if worklog.recoveries(lines, resumed_at))
    ctx.notes.insert(0, f"redis-server SIGSTOPped {stall:g} s (lease {lease:g} s, socket "
                        f"timeout 1 s, max_attempts=1); of 2 workers {logged} logged the "
                        f"stall, {back} the recovery")
    reasons = counts.details["dead_reasons"]
    ctx.details.update(lease_expired=reasons.get("lease expired", 0),
                       worker_tracebacks=sum(tracebacks(w.logs()) for w in workers))


def full_redis(ctx: Context) -> None:
    """Redis with maxmemory and noeviction filled with due timers until set_timers
    fails; then a worker starts: does delivery go on, and what does set_timer raise?"""
    maxmemory = ctx.size("3mb", "8mb")
    server = ctx.server(config={"maxmemory": maxmemory, "maxmemory-policy": "noeviction"})
    admin = ctx.admin(server.url)
    pad = "x" * 200
    fill_error: BaseException | None = None
    deadline = time.monotonic() + 60
    batch = 0
    for size in (200, 20, 1):  # top it off until even one timer does not fit, three times
        refused = 0
        while refused < (3 if size == 1 else 1) and time.monotonic() < deadline:
            batch += 1
            specs = [TimerSpec("full", {"pad": pad}, activate_in=0,
                               timer_id=f"f{batch:05d}-{j:03d}") for j in range(size)]
            try:
                ctx.schedule(admin, specs)
                refused = 0
            except Exception as exc:
                fill_error = fill_error or exc
                refused += 1
    filled = len(ctx.scheduled)
    used = ctx.clients[0].info("memory").get("used_memory_human", "?")
    raised = _first_line(fill_error) if fill_error else "nothing"
    ctx.notes.append(f"filled {filled} due timers to {used} of maxmemory {maxmemory}; "
                     f"set_timers then raised {raised}")
    try:
        admin.set_timer("full", {"pad": pad}, activate_in=0, timer_id="probe-full")
        ctx.scheduled[("full", "probe-full")] = now_ms()
        ctx.notes.append("set_timer while full: succeeded")
    except Exception as exc:
        ctx.failed_write(("full", "probe-full"), exc)
        ctx.notes.append(f"set_timer while full raised {_first_line(exc)}")
        ctx.details["set_timer_error"] = {"type": type(exc).__name__,
                                          "mro": [c.__name__ for c in type(exc).__mro__],
                                          "message": str(exc)[:500]}
    worker = ctx.worker("w0", server.url, [topic_conf("full", lease_ttl=5.0, sleep=0.0,
                                                       max_concurrent=50)])
    ctx.fleet.wait_ready()
    started = time.monotonic()
    settled = ctx.wait_settled(admin, ["full"], timeout=ctx.size(10.0, 30.0))
    took = time.monotonic() - started
    fired_now = len({(r.topic, r.timer_id) for r in ctx.records() if r.kind == "E"})
    ctx.notes.append(f"the worker completed {fired_now} handlers in {took:.1f} s"
                     + ("" if settled else " (then gave up waiting)"))
    try:
        admin.set_timer("full", {"pad": pad}, activate_in=0, timer_id="probe-after")
        ctx.scheduled[("full", "probe-after")] = now_ms()
        poll(lambda: admin.stats("full").pending == 0, 5.0)
        ctx.notes.append("set_timer after the worker ran: succeeded")
    except Exception as exc:
        ctx.failed_write(("full", "probe-after"), exc)
        ctx.notes.append(f"set_timer after the worker ran raised {_first_line(exc)}")
    worker.stop()
    ctx.finish(admin, ["full"])
    log = worker.logs()
    errors = sum(1 for line in log.splitlines() if " ERROR " in line)
    ctx.notes.append(f"worker log: {tracebacks(log)} tracebacks, {errors} ERROR lines")
    ctx.details.update(filled=filled, worker_tracebacks=tracebacks(log), worker_errors=errors,
                       fill_error=_first_line(fill_error) if fill_error else None)
    with contextlib.suppress(Exception):
        ctx.details["worker_log_head"] = log.splitlines()[:8]

