"""The partition scenario: a freezable TCP proxy between one worker and Redis."""

from __future__ import annotations

import time

from . import worklog
from .harness import Context, poll, topic_conf, tracebacks


def partition(ctx: Context) -> None:
    """Two workers, one behind the suite's proxy, which stops forwarding both ways for
    longer than the lease (sockets stay open), then forwards again; both workers have a
    1 s socket timeout. Does the cut-off worker log the stall and the recovery?"""
    n, span, lease, freeze = ctx.size(600, 2000), ctx.size(10.0, 20.0), 2.5, ctx.size(5.0, 8.0)
    server = ctx.server()
    admin = ctx.admin(server.url)
    proxy = ctx.proxy(server)
    topics = [topic_conf("part", lease_ttl=lease, max_attempts=3, sleep=0.05)]
    cut = ctx.worker("cut", proxy.url, topics, socket_timeout=1.0)
    ctx.worker("direct", server.url, topics, socket_timeout=1.0)
    ctx.fleet.wait_ready()
    ctx.spread(admin, "part", "p", n, 1.0, span)
    start = time.monotonic()
    poll(lambda: time.monotonic() - start > 1.0 + span * 0.2, 1.0 + span)
    frozen_at = time.time()
    proxy.freeze()
    time.sleep(freeze)  # the partition itself
    proxy.thaw()
    thawed_at = time.time()
    ctx.wait_settled(admin, ["part"], timeout=span + 3 * lease + 30)

    def recovered() -> bool:  # its backoff may outlast the other worker's work
        return bool(worklog.recoveries(worklog.parse(cut.logs()), thawed_at))

    poll(recovered, max(0.0, thawed_at + 20 - time.time()), 0.2)
    ctx.finish(admin, ["part"])
    text = cut.logs()
    lines = worklog.parse(text)
    stall = worklog.complaints(lines, frozen_at, thawed_at + 2.0)
    back = worklog.recoveries(lines, thawed_at)
    ran_after = [r for r in ctx.records() if r.process.startswith("cut") and r.kind == "S"
                 and r.real_ms > thawed_at * 1000]
    ctx.notes.insert(0, f"proxy frozen {freeze:g} s (lease {lease:g} s, socket timeout 1 s, "
                        f"max_attempts=3)")
    said = f"logged the stall: {'yes' if stall else 'no'} ({len(stall)} warnings/errors)"
    said += f", the recovery: {'yes' if back else 'no'}"
    if back:
        said += f' ("{back[0].message[:80]}", {back[0].created - thawed_at:.1f} s after)'
    said += f"; ran {len(ran_after)} handlers after the thaw"
    if ran_after:
        said += f" (first {min(r.real_ms for r in ran_after) / 1000 - thawed_at:.1f} s after)"
    ctx.notes.insert(1, f"cut-off worker {said}; {tracebacks(text)} tracebacks")
    ctx.details.update(
        cut_log=[f"{line.created - frozen_at:+.1f}s {line.level} {line.message[:200]}"
                 for line in lines if line.created >= frozen_at][:20],
        proxy_connections=proxy.connections)
