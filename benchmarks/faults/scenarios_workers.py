"""Scenarios that hurt workers: SIGKILL in a loop, SIGSTOP past the lease, a poison timer
that kills every worker that runs it."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections import Counter

from redistimers import TimerScheduler, TimerSpec

from .fleet import WorkerProcess
from .harness import Context, now_ms, poll, topic_conf


def _in_flight(ctx: Context, process_prefix: str) -> set[tuple[str, str]]:
    """Timers whose handler a worker's current ledger shows started and not ended."""
    started: Counter[tuple[str, str]] = Counter()
    for record in ctx.records():
        if record.process.startswith(process_prefix) and record.kind in "SE":
            started[(record.topic, record.timer_id)] += 1 if record.kind == "S" else -1
    return {key for key, n in started.items() if n > 0}


def _three_workers(
    ctx: Context, topic: str, first: str, others: str, lease: float, sleep: float
) -> tuple[TimerScheduler, WorkerProcess]:
    """A server, its admin scheduler, and three workers of `topic`: `first` (the one the
    scenario does something to) and two `others`, all running."""
    server = ctx.server()
    admin = ctx.admin(server.url)
    topics = [topic_conf(topic, lease_ttl=lease, sleep=sleep)]
    target = ctx.worker(first, server.url, topics)
    for i in range(2):
        ctx.worker(f"{others}{i}", server.url, topics)
    ctx.fleet.wait_ready()
    return admin, target


def worker_kill(ctx: Context) -> None:
    """Three workers; one is SIGKILLed (its process group) and restarted every 1-2 s
    while the timers come due."""
    n, span, lease = ctx.size(1000, 4000), ctx.size(8.0, 20.0), 2.0
    admin, victim = _three_workers(ctx, "kill", "victim", "steady", lease, sleep=0.02)
    ctx.spread(admin, "kill", "k", n, 1.0, span)
    end = time.monotonic() + 1.0 + span
    rng = random.Random(1)

    def killer() -> None:
        while not ctx.fleet.stopping.wait(rng.uniform(1.0, 2.0)):
            if time.monotonic() > end:
                return
            victim.kill()
            victim.start()

    ctx.fleet.background(killer, "killer")
    ctx.wait_settled(admin, ["kill"], timeout=span + 1.0 + 3 * lease + 30)
    ctx.fleet.stop_loops()
    ctx.finish(admin, ["kill"])
    ctx.notes.insert(0, f"{victim.kills} SIGKILLs of 1 of 3 workers (lease {lease:g} s)")


def worker_stall(ctx: Context) -> None:
    """Three workers; one is SIGSTOPped for longer than its lease while it runs handlers,
    then SIGCONT: the others deliver its timers again, and it completes them too."""
    n, span, lease, stall = ctx.size(600, 3000), ctx.size(6.0, 15.0), 2.0, ctx.size(5.0, 8.0)
    admin, stalled = _three_workers(ctx, "stall", "stalled", "other", lease, sleep=0.1)
    ctx.spread(admin, "stall", "s", n, 1.0, span)
    start = time.monotonic()
    poll(lambda: time.monotonic() - start > 1.0 + span * 0.3, 1.0 + span)
    stalled.pause()
    frozen_with = _in_flight(ctx, "stalled")
    time.sleep(stall)  # the fault itself: nothing to poll
    stalled.resume()
    ctx.wait_settled(admin, ["stall"], timeout=span + 3 * lease + 30)
    ctx.finish(admin, ["stall"])
    done: Counter[tuple[str, str]] = Counter(
        (r.topic, r.timer_id) for r in ctx.records() if r.kind == "E")
    twice = sum(1 for key in frozen_with if done[key] > 1)
    ctx.notes.insert(0, f"1 of 3 workers SIGSTOPped {stall:g} s (lease {lease:g} s) with "
                        f"{len(frozen_with)} handlers running, {twice} of them completed twice")
    ctx.details.update(in_flight_at_stop=len(frozen_with), completed_twice_of_those=twice)


#: Sorts among the first innocents ("n-00000"...): claimed in the first batch with them.
POISON = "n-00003-poison"


def poison(ctx: Context) -> None:
    """A timer whose handler calls os._exit(1) every time, due at the same instant as a
    burst of innocent timers, so that they share its claims (max_concurrent 10,
    max_attempts 3, lease 1 s, innocents' handlers take 0.3 s); more innocents follow;
    workers are restarted whenever they die."""
    burst, n, span, lease = ctx.size(30, 60), ctx.size(60, 300), ctx.size(3.0, 10.0), 1.0
    server = ctx.server()
    admin = ctx.admin(server.url)
    topics = [topic_conf("poison", lease_ttl=lease, max_concurrent=10, max_attempts=3,
                         sleep=0.3)]
    workers = [ctx.worker(f"w{i}", server.url, topics) for i in range(2)]
    ctx.fleet.wait_ready()
    ctx.fleet.keep_alive()
    due = now_ms() + 1500
    at = dt.datetime.fromtimestamp(due / 1000, dt.timezone.utc)
    specs = [TimerSpec("poison", {"x": "exit"}, activate_at=at, timer_id=POISON)]
    specs += [TimerSpec("poison", {}, activate_at=at, timer_id=f"n-{i:05d}")
              for i in range(burst)]
    ctx.schedule(admin, specs, [due] * len(specs))
    ctx.spread(admin, "poison", "later", n - burst, 1.6, span)
    ctx.wait_settled(admin, ["poison"], timeout=ctx.size(40.0, 90.0))
    ctx.fleet.stop_loops()
    ctx.finish(admin, ["poison"])
    final = ctx.final_state(admin, ["poison"])
    records = ctx.records()
    ran = {r.timer_id for r in records if r.kind == "S"}
    innocent_dead = {tid for (_, tid) in final.dead if tid != POISON}
    never_ran = {tid for (_, tid) in ctx.scheduled if tid != POISON and tid not in ran}
    rerun = {r.timer_id for r in records
             if r.kind == "S" and r.attempt > 1 and r.timer_id != POISON}
    deaths = sum(w.starts for w in workers) - len(workers)
    key = ("poison", POISON)
    if key in final.dead:
        fate = f"poison dead-lettered ({final.dead[key]})"
    else:
        fate = "poison still pending" if key in final.pending else "poison gone, not dead"
    poison_runs = sum(1 for r in records if r.kind == "S" and r.timer_id == POISON)
    ctx.notes.insert(0, f"{fate} after {poison_runs} runs; {deaths} worker deaths; "
                        f"innocents ({burst} due with it): {len(innocent_dead)} dead-lettered, "
                        f"{len(never_ran)} never ran, {len(rerun)} ran again after a death")
    ctx.details.update(poison_runs=poison_runs, worker_deaths=deaths,
                       innocents_dead=len(innocent_dead), innocents_never_ran=len(never_ran),
                       innocents_rerun=len(rerun), poison_fate=fate)
