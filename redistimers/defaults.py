"""Every default in one place, each with the reason for its value."""

from __future__ import annotations

#: Prefix of every key, so several applications can share one Redis database.
NAMESPACE = "redistimers"

#: Handlers of one topic running at once in one process: enough to overlap I/O-bound
#: handlers, no more than a typical database connection pool serves.
MAX_CONCURRENT = 10

#: Seconds a claimed timer stays leased before another worker may take it. It bounds
#: how long a crashed worker delays a timer; running handlers renew it, so it does not
#: bound how long a handler may run.
LEASE_TTL = 30.0

#: Renew a running handler's lease once this fraction of it has passed, leaving two
#: thirds of the lease to ride out a slow round trip or a short Redis hiccup.
LEASE_RENEW_FRACTION = 1 / 3

#: Shortest lease accepted: renewal at a third of it must stay well above a round trip.
MIN_LEASE_TTL = 0.1

#: Longest the poller sleeps without asking Redis about a topic. It learns each topic's
#: next due time from every claim, and is woken by pub/sub whenever a timer becomes a
#: topic's earliest; a lost wake-up means a lost connection, which the listener sees
#: (see LISTENER_KEEPALIVE) and answers by claiming every topic. So this is only a last
#: safety net, long enough that an idle worker with 100 topics costs Redis well under
#: one command a second (an empty topic's claim is two commands).
MAX_POLL_INTERVAL = 300.0

#: Most timers one claim takes from one topic in one script call; keeps every script
#: call short so Redis stays responsive to other clients.
CLAIM_BATCH_MAX = 1000

#: Most timers settled (acked, retried, renewed) or scheduled by one script call, for the
#: same reason (and Lua's limit on unpacking arguments).
SETTLE_BATCH_MAX = 1000
SCHEDULE_BATCH_MAX = 1000

#: Script calls of a bulk set_timers sent in one pipelined round trip: 10,000 timers per
#: round trip keeps the client busy encoding while Redis works, and replies small.
SCHEDULE_CALLS_PER_ROUND_TRIP = 10

#: Largest envelope (the payload as JSON, with its headers) `set_timer` accepts, in
#: bytes: far above what a timer should carry (an id to look the rest up by), far below
#: what would make one timer slow every claim that returns it.
MAX_PAYLOAD_BYTES = 1024 * 1024

#: With `min_replicas`, how long a write waits for the replicas to confirm it, in
#: seconds: far above a healthy replica's lag (milliseconds), short enough that a caller
#: hears of a lost replica before its request times out.
REPLICA_TIMEOUT = 1.0

#: On a Redis Cluster, how long a script whose slot is being moved to another master is
#: tried again before its error is raised, in seconds: moving a topic's few keys takes
#: milliseconds, but a resharding tool may pause between them.
SLOT_MOVE_PATIENCE = 5.0

#: Seconds `stop()` and leaving `with scheduler:` wait for running handlers.
SHUTDOWN_TIMEOUT = 10.0

#: Seconds between the heartbeats of a started scheduler's record among the live workers
#: (one command each); the record expires after three missed ones.
HEARTBEAT_INTERVAL = 5.0

#: Longest topic name and timer id, in characters: ids are keys' fields, kept short.
MAX_TOPIC_LENGTH = 200
MAX_TIMER_ID_LENGTH = 256

#: Backoff while Redis cannot be reached: first wait, and the cap (seconds), with jitter
#: so that many workers do not reconnect in step.
REDIS_BACKOFF_INITIAL = 0.05
REDIS_BACKOFF_MAX = 5.0

#: Seconds a worker's round trip may wait for Redis before the worker logs a stall (a
#: stopped server, a silent network) and reports itself unhealthy: well past any round
#: trip of ours, well before a lease's renewal (at a third of 30 s) is in danger.
REDIS_STALL_NOTICE = 5.0

#: Socket timeout of the clients `TimerScheduler.from_url` makes: a connection that has
#: said nothing for this long is taken for dead and opened again (without it, a half-open
#: TCP connection hangs a worker until the kernel gives up, hours later). Far above the
#: longest script call (a claim or a bulk chunk takes milliseconds).
REDIS_SOCKET_TIMEOUT = 10.0

#: How often the wake-up listener looks up from its pub/sub socket to see whether it
#: should stop; it costs no Redis command.
LISTENER_POLL_INTERVAL = 0.2

#: A pub/sub connection silent this long is sent a PING; without an answer within
#: LISTENER_PING_TIMEOUT it is taken for dead, reconnected, and every topic is claimed
#: (wake-ups sent meanwhile were lost). This, not polling, is what keeps a lost
#: wake-up from delaying a timer, so MAX_POLL_INTERVAL can be long.
LISTENER_KEEPALIVE = 30.0
LISTENER_PING_TIMEOUT = 10.0

#: Retry policy used when a topic names none: 20 attempts, exponential from 1 s,
#: capped at 10 minutes, full jitter, about 2.5 hours of retrying in all.
RETRY_MAX_ATTEMPTS = 20
RETRY_INITIAL = 1.0
RETRY_FACTOR = 2.0
RETRY_MAXIMUM = 600.0

#: Timers one call of the list script walks past at most when it filters by id prefix:
#: a script blocks Redis while it runs, so a rare prefix among millions of timers gives
#: short pages with a cursor to go on from (about 10 ms of Redis per call).
LIST_WALK_MAX = 5_000
