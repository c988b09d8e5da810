"""Webhook timers (redistimers.contrib.webhook), against a real HTTP server on 127.0.0.1
that answers as each test scripts it, and a real Redis."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis

from redistimers import (
    InvalidTimerError,
    PayloadTypeError,
    RetryPolicy,
    Router,
    TimerScheduler,
    TimerSpec,
)
from redistimers.contrib.webhook import (
    InvalidWebhookError,
    WebhookConnectionError,
    WebhookPayload,
    WebhookRefused,
    Webhooks,
    WebhookTimeout,
    is_public_address,
    parse_retry_after,
)
from redistimers.errors import ConfigurationError

from .helpers import FAST_RETRY, SchedulerFactory, timer_gone, wait_for

#: Every delivery is the last one allowed: a failure goes straight to the dead letters.
ONE_ATTEMPT = RetryPolicy(max_attempts=1, initial=0.01, maximum=0.01, jitter=False)


@attrs.frozen
class Answer:
    """How the receiver answers one request: a status, or hang / trickle (never finish)."""

    status: int = 200
    headers: dict[str, str] = attrs.field(factory=dict)
    body: bytes = b""
    behaviour: str = "answer"  # "answer", "hang", "trickle"


@attrs.frozen
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived


class Receiver:
    """A real HTTP server in a thread. `script(path, *answers)`: the answers to the
    requests to `path`, in turn; the last one repeats. Unscripted paths get 200."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[Received] = []
        self.release = threading.Event()
        self._scripts: dict[str, list[Answer]] = {}
        self._lock = threading.Lock()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def script(self, path: str, *answers: Answer) -> None:
        with self._lock:
            self._scripts[path] = list(answers)

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, request: Received) -> Answer:
        with self._lock:
            self.requests.append(request)
            answers = self._scripts.get(request.path.partition("?")[0], [Answer()])
            return answers.pop(0) if len(answers) > 1 else answers[0]

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                answer = receiver._answer(
                    Received(self.command, self.path, headers, body, time.monotonic())
                )
                try:
                    if answer.behaviour == "hang":
                        receiver.release.wait(10)
                        return
                    if answer.behaviour == "trickle":  # a header, one byte at a time
                        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                        while not receiver.release.wait(0.05):
                            self.wfile.write(b"a")
                            self.wfile.flush()
                        return
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:  # the client hung up, as it should on a timeout
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def local_webhooks(**options: Any) -> Webhooks:
    """Webhooks that may reach the local receiver: it is on 127.0.0.1, a loopback address."""
    settings: dict[str, Any] = {"allow_private": True, "timeout": 2.0, **options}
    return Webhooks(["127.0.0.1"], **settings)


def webhook_scheduler(
    make_scheduler: SchedulerFactory, webhooks: Webhooks, retry: RetryPolicy = FAST_RETRY
) -> TimerScheduler:
    router = Router()
    webhooks.register(router, retry=retry)
    return make_scheduler(router)


# -- delivery ---------------------------------------------------------------------------------


def test_webhook_is_delivered_once_the_receiver_answers_2xx_after_failing_twice(
    make_scheduler: SchedulerFactory, receiver: Receiver
) -> None:
    receiver.script("/hook", Answer(500), Answer(502), Answer(204))
    scheduler = webhook_scheduler(make_scheduler, local_webhooks())
    payload = WebhookPayload(receiver.url("/hook?order=7"), {"order": 7, "items": ["a", "é"]},
                             headers={"Authorization": "Bearer t0ken"})
    scheduler.set_timer("webhooks", payload, activate_in=0, timer_id="order-7",
                        correlation_id="req-42")
    with scheduler:
        wait_for(timer_gone(scheduler, "webhooks", "order-7"))
    requests = receiver.received()
    assert [r.headers["x-redistimers-attempt"] for r in requests] == ["1", "2", "3"]
    for request in requests:
        assert (request.method, request.path) == ("POST", "/hook?order=7")
        assert json.loads(request.body) == {"order": 7, "items": ["a", "é"]}
        assert request.headers["content-type"] == "application/json"
        assert request.headers["authorization"] == "Bearer t0ken"
        assert request.headers["x-redistimers-topic"] == "webhooks"
        assert request.headers["x-redistimers-timer-id"] == "order-7"
        assert request.headers["x-redistimers-correlation-id"] == "req-42"
        assert dt.datetime.fromisoformat(request.headers["x-redistimers-due-at"]).tzinfo
        assert request.headers["user-agent"].startswith("redistimers/")
    assert scheduler.dead_timers("webhooks") == []


def test_method_without_a_body_sends_no_body_and_no_content_type(receiver: Receiver) -> None:
    response = local_webhooks().send(WebhookPayload(receiver.url("/gone"), None, "delete"))
    assert response.ok
    [request] = receiver.received()
    assert (request.method, request.body) == ("DELETE", b"")
    assert "content-type" not in request.headers


def test_retry_after_of_a_503_is_honoured(
    make_scheduler: SchedulerFactory, receiver: Receiver
) -> None:
    receiver.script("/busy", Answer(503, {"Retry-After": "1"}), Answer(200))
    scheduler = webhook_scheduler(make_scheduler, local_webhooks())
    scheduler.set_timer("webhooks", WebhookPayload(receiver.url("/busy"), {}), activate_in=0,
                        timer_id="t")
    with scheduler:
        wait_for(timer_gone(scheduler, "webhooks", "t"))
    first, second = receiver.received()
    assert second.at - first.at >= 0.95  # not FAST_RETRY's 10 ms backoff


def test_retry_after_is_capped_by_max_retry_after(
    make_scheduler: SchedulerFactory, receiver: Receiver
) -> None:
    receiver.script("/busy", Answer(429, {"Retry-After": "3600"}), Answer(200))
    scheduler = webhook_scheduler(make_scheduler, local_webhooks(max_retry_after=0.3))
    scheduler.set_timer("webhooks", WebhookPayload(receiver.url("/busy"), {}), activate_in=0,
                        timer_id="t")
    with scheduler:
        wait_for(timer_gone(scheduler, "webhooks", "t"), timeout=5)
    first, second = receiver.received()
    assert 0.25 <= second.at - first.at < 3


def test_retry_after_reads_seconds_and_http_dates_and_ignores_nonsense() -> None:
    now = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Tue, 01 Jan 2030 12:01:30 GMT", now) == 90.0
    assert parse_retry_after("Tue, 01 Jan 2030 11:00:00 GMT", now) == 0.0  # in the past
    for nonsense in (None, "", "soon", "-5", "1.5", "99999999999"):
        assert parse_retry_after(nonsense, now) is None


def test_receiver_that_keeps_failing_ends_in_dead_letters_with_the_http_status(
    make_scheduler: SchedulerFactory, receiver: Receiver
) -> None:
    receiver.script("/down", Answer(500, body=b"database\n  down"))
    retry = RetryPolicy(max_attempts=3, initial=0.01, maximum=0.01, jitter=False)
    scheduler = webhook_scheduler(make_scheduler, local_webhooks(), retry)
    scheduler.set_timer("webhooks", WebhookPayload(receiver.url("/down?secret=1"), {"n": 1}),
                        activate_in=0, timer_id="t", correlation_id="c-1")
    with scheduler:
        wait_for(lambda: scheduler.dead_timers("webhooks"))
    [dead] = scheduler.dead_timers("webhooks")
    assert dead.error_type == "WebhookFailed"
    assert dead.error == (
        f"WebhookFailed: HTTP 500 Internal Server Error from POST "
        f"http://127.0.0.1:{receiver.port}/down?...: database down"
    )  # the query, which may hold secrets, is left out
    assert dead.payload["url"] == receiver.url("/down?secret=1")
    assert (dead.attempts, dead.correlation_id) == (3, "c-1")
    assert len(receiver.received()) == 3


def test_too_many_requests_on_the_last_attempt_dead_letters_with_the_status(
    make_scheduler: SchedulerFactory, receiver: Receiver
) -> None:
    receiver.script("/busy", Answer(429, {"Retry-After": "0"}))
    retry = RetryPolicy(max_attempts=2, initial=0.01, maximum=0.01, jitter=False)
    scheduler = webhook_scheduler(make_scheduler, local_webhooks(), retry)
    scheduler.set_timer("webhooks", WebhookPayload(receiver.url("/busy"), {}), activate_in=0)
    with scheduler:
        wait_for(lambda: scheduler.dead_timers("webhooks"))
    [dead] = scheduler.dead_timers("webhooks")
    assert dead.error.startswith("WebhookRetryAfter: HTTP 429 Too Many Requests from POST")
    assert len(receiver.received()) == 2


def test_response_body_is_read_only_up_to_max_response_bytes(receiver: Receiver) -> None:
    receiver.script("/big", Answer(500, body=b"x" * 1_000_000))
    response = local_webhooks(max_response_bytes=1000).send(
        WebhookPayload(receiver.url("/big"), {})
    )
    assert (response.status, len(response.body)) == (500, 1000)


# -- idempotency keys -------------------------------------------------------------------------


def test_idempotency_key_is_the_same_for_every_attempt_and_new_when_the_timer_is_set_again(
    make_scheduler: SchedulerFactory, receiver: Receiver
) -> None:
    scheduler = webhook_scheduler(make_scheduler, local_webhooks())
    keys: list[list[str]] = []
    for _ in range(2):  # the same timer id, set again with an identical (new) payload
        receiver.script("/paid", Answer(503), Answer(200))
        before = len(receiver.received())
        payload = WebhookPayload(receiver.url("/paid"), {"invoice": "INV-1"})
        scheduler.set_timer("webhooks", payload, activate_in=0, timer_id="inv-1")
        with scheduler:
            wait_for(timer_gone(scheduler, "webhooks", "inv-1"))
        first, second = receiver.received()[before:]
        assert [first.headers["x-redistimers-attempt"], second.headers["x-redistimers-attempt"]] \
            == ["1", "2"]
        # The due time is the retry's: what receivers were told to deduplicate on moved.
        assert first.headers["x-redistimers-due-at"] != second.headers["x-redistimers-due-at"]
        assert first.headers["idempotency-key"] == second.headers["idempotency-key"] \
            == f'"{payload.idempotency_key}"'  # an RFC 8941 string, as the IETF draft says
        keys.append([first.headers["idempotency-key"], second.headers["idempotency-key"]])
    assert keys[0][0] != keys[1][0]


def test_idempotency_key_is_made_with_the_payload_and_can_be_given() -> None:
    url = "https://hooks.example.com/"
    made = [WebhookPayload(url, {"a": 1}) for _ in range(100)]
    assert len({p.idempotency_key for p in made}) == 100
    assert all(len(p.idempotency_key or "") == 22 for p in made)  # 128 random bits
    given = WebhookPayload(url, None, idempotency_key="order-7 paid")
    assert given == WebhookPayload(url, None, idempotency_key="order-7 paid")
    for bad in ("", "x" * 256, 'say "hi"', "back\\slash", "é", "tab\t", 7):
        with pytest.raises(InvalidWebhookError, match="idempotency_key"):
            WebhookPayload(url, {}, idempotency_key=bad)


def test_idempotency_key_costs_webhook_timers_a_few_dozen_bytes(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    scheduler = webhook_scheduler(make_scheduler, Webhooks(["hooks.example.com"]))
    payload = WebhookPayload("https://hooks.example.com/a", {"n": 1})
    scheduler.set_timer("webhooks", payload, activate_in=3600, timer_id="t")
    stored = redis_client.hget("redistimers:{webhooks}:body", "t") or b""
    without = stored.replace(f',"idempotency_key":"{payload.idempotency_key}"'.encode(), b"")
    assert len(stored) - len(without) == 43


def test_payload_header_idempotency_key_is_sent_instead_of_the_payloads_key(
    make_scheduler: SchedulerFactory, receiver: Receiver
) -> None:
    scheduler = webhook_scheduler(make_scheduler, local_webhooks())
    payload = WebhookPayload(receiver.url("/own"), {}, headers={"idempotency-key": "mine"})
    scheduler.set_timer("webhooks", payload, activate_in=0, timer_id="t")
    with scheduler:
        wait_for(timer_gone(scheduler, "webhooks", "t"))
    [request] = receiver.received()
    assert request.headers["idempotency-key"] == "mine"


def test_a_periodic_webhook_has_one_key_per_occurrence_the_same_for_its_retries(
    make_scheduler: SchedulerFactory, receiver: Receiver
) -> None:
    """Its payload's key followed by the occurrence's time: a receiver drops the retry of
    an occurrence, and takes the next occurrence."""
    receiver.script("/tick", Answer(503), Answer(200))
    scheduler = webhook_scheduler(make_scheduler, local_webhooks())
    payload = WebhookPayload(receiver.url("/tick"), None, idempotency_key="tick")
    scheduler.set_timer("webhooks", payload, every=1.0, timer_id="tick")
    with scheduler:
        wait_for(lambda: len(receiver.received()) >= 3)
    scheduler.cancel_timer("webhooks", "tick")
    requests = receiver.received()[:3]
    assert [r.headers["x-redistimers-attempt"] for r in requests] == ["1", "2", "1"]
    keys = [r.headers["idempotency-key"].strip('"') for r in requests]
    assert keys[0] == keys[1] != keys[2]  # a retry, then the next occurrence
    first, third = (int(k.split(".")[1]) for k in (keys[0], keys[2]))
    assert third - first == 1000  # the occurrences' times, on the every= grid
    assert all(k.startswith("tick.") for k in keys)
    due = [r.headers["x-redistimers-due-at"] for r in requests]
    assert due[0] != due[1]  # what receivers could not deduplicate on


def test_a_periodic_webhook_without_a_key_of_its_own_still_gets_one_per_occurrence(
    make_scheduler: SchedulerFactory, receiver: Receiver
) -> None:
    receiver.script("/tick", Answer(503), Answer(200))
    scheduler = webhook_scheduler(make_scheduler, local_webhooks())
    payload = WebhookPayload(receiver.url("/tick"), None, idempotency_key=None)
    scheduler.set_timer("webhooks", payload, every=0.3, timer_id="tick")
    with scheduler:
        wait_for(lambda: len(receiver.received()) >= 3)
    scheduler.cancel_timer("webhooks", "tick")
    keys = [r.headers["idempotency-key"] for r in receiver.received()[:3]]
    assert keys[0] == keys[1] != keys[2]
    assert all(len(k) == 24 for k in keys)


def test_webhook_written_as_json_without_a_key_gets_a_new_key_at_every_attempt(
    make_scheduler: SchedulerFactory, receiver: Receiver
) -> None:
    # As another language (or the HTTP API of a process without the handler) writes it.
    receiver.script("/raw", Answer(503), Answer(200))
    make_scheduler().set_timer("webhooks", {"url": receiver.url("/raw"), "body": None},
                               activate_in=0, timer_id="t")
    scheduler = webhook_scheduler(make_scheduler, local_webhooks())
    with scheduler:
        wait_for(timer_gone(scheduler, "webhooks", "t"))
    first, second = receiver.received()
    assert first.headers["idempotency-key"] != second.headers["idempotency-key"]


# -- timeouts and connection errors ------------------------------------------------------------


def test_receiver_that_hangs_fails_the_delivery_within_the_timeout(
    make_scheduler: SchedulerFactory, receiver: Receiver
) -> None:
    receiver.script("/hang", Answer(behaviour="hang"))
    scheduler = webhook_scheduler(make_scheduler, local_webhooks(timeout=0.5), ONE_ATTEMPT)
    started = time.monotonic()
    scheduler.set_timer("webhooks", WebhookPayload(receiver.url("/hang"), {}), activate_in=0)
    with scheduler:
        wait_for(lambda: scheduler.dead_timers("webhooks"), timeout=5)
    assert time.monotonic() - started < 2.0
    [dead] = scheduler.dead_timers("webhooks")
    assert dead.error == (
        f"WebhookTimeout: POST http://127.0.0.1:{receiver.port}/hang: no answer within 0.5s"
    )


def test_receiver_that_trickles_its_answer_is_cut_off_at_the_timeout(receiver: Receiver) -> None:
    # Each byte comes well within a socket timeout; the whole answer never does.
    receiver.script("/slow", Answer(behaviour="trickle"))
    started = time.monotonic()
    with pytest.raises(WebhookTimeout):
        local_webhooks(timeout=0.5).send(WebhookPayload(receiver.url("/slow"), {}))
    assert 0.45 <= time.monotonic() - started < 1.5


def test_closed_port_is_a_connection_error_retried_per_the_policy(
    make_scheduler: SchedulerFactory,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    with pytest.raises(WebhookConnectionError, match="ConnectionRefusedError"):
        local_webhooks().send(WebhookPayload(url, {}))
    scheduler = webhook_scheduler(make_scheduler, local_webhooks())
    scheduler.set_timer("webhooks", WebhookPayload(url, {}), activate_in=0)
    with scheduler:
        wait_for(lambda: scheduler.dead_timers("webhooks"))
    [dead] = scheduler.dead_timers("webhooks")
    assert (dead.error_type, dead.attempts) == ("WebhookConnectionError", FAST_RETRY.max_attempts)


# -- what a worker refuses to send ------------------------------------------------------------


def test_loopback_is_refused_without_allow_private_and_no_request_is_made(
    receiver: Receiver,
) -> None:
    webhooks = Webhooks(["127.0.0.1", "localhost", "::1"])
    for url in (receiver.url("/x"), receiver.url("/x", host="localhost")):
        with pytest.raises(WebhookRefused, match="not a public address"):
            webhooks.send(WebhookPayload(url, {}))
    with pytest.raises(WebhookRefused, match="not a public address"):
        webhooks.check(f"http://[::1]:{receiver.port}/")  # an IP literal: refused without DNS
    assert receiver.received() == []


def test_refused_webhook_goes_to_dead_letters_at_once_not_after_the_backoff(
    make_scheduler: SchedulerFactory, receiver: Receiver
) -> None:
    # Twenty attempts an hour apart: only a refusal that skips the backoff ends in seconds.
    patient = RetryPolicy(max_attempts=20, initial=3600, maximum=3600)
    scheduler = webhook_scheduler(make_scheduler, Webhooks(["localhost"]), patient)
    scheduler.set_timer("webhooks", WebhookPayload(receiver.url("/x", host="localhost"), {}),
                        activate_in=0, timer_id="t")
    with scheduler:
        wait_for(lambda: scheduler.dead_timers("webhooks"), timeout=5)
    [dead] = scheduler.dead_timers("webhooks")
    assert dead.error_type == "WebhookRefused"
    assert "resolves to 127.0.0.1, which is not a public address" in dead.error
    assert receiver.received() == []


def test_hosts_off_the_allow_list_are_refused(receiver: Receiver) -> None:
    webhooks = Webhooks(["hooks.example.com", "*.partner.example"], allow_private=True)
    with pytest.raises(WebhookRefused, match=r"'127\.0\.0\.1' .* is not in the allow-list"):
        webhooks.send(WebhookPayload(receiver.url("/x"), {}))
    assert receiver.received() == []
    for allowed in ("https://hooks.example.com/a", "https://HOOKS.example.com./a",
                    "https://eu.partner.example/", "https://a.b.partner.example:8443/"):
        webhooks.check(allowed)
    for refused in ("https://example.com/", "https://evilhooks.example.com/",
                    "https://partner.example/", "https://evilpartner.example/",
                    "https://hooks.example.com.evil.test/"):
        with pytest.raises(WebhookRefused, match="allow-list"):
            webhooks.check(refused)


def redis_contents(client: redis.Redis) -> dict[bytes, bytes]:
    return {key: client.dump(key) for key in sorted(client.keys("*"))}  # type: ignore[misc]


def test_set_timer_refuses_a_host_off_the_allow_list_before_anything_is_written(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    webhooks = Webhooks(["hooks.example.com", "*.partner.example"])
    scheduler = webhook_scheduler(make_scheduler, webhooks)
    scheduler.set_timer("webhooks", WebhookPayload("https://hooks.example.com/a", {}),
                        activate_in=3600, timer_id="kept")
    before = redis_contents(redis_client)
    with pytest.raises(InvalidTimerError) as refused:
        scheduler.set_timer("webhooks", WebhookPayload("https://evil.example/x?s=1", {}),
                            activate_in=3600, timer_id="kept")
    assert str(refused.value) == (
        "webhook refused: host 'evil.example' of https://evil.example/x?... is not in the "
        "allow-list ('hooks.example.com', '*.partner.example')"
    )
    good = TimerSpec("webhooks", WebhookPayload("https://eu.partner.example/b", {}),
                     activate_in=3600)
    bad = TimerSpec("webhooks", WebhookPayload("http://10.0.0.1/", {}), activate_in=3600)
    with pytest.raises(InvalidTimerError, match=r"'10\.0\.0\.1' .* not in the allow-list"):
        scheduler.set_timers([good, bad])
    scheduler_any = webhook_scheduler(make_scheduler, Webhooks(["*"]))
    with pytest.raises(InvalidTimerError, match=r"10\.0\.0\.1/ is not a public address"):
        scheduler_any.set_timer("webhooks", bad.payload, activate_in=3600)
    assert redis_contents(redis_client) == before
    scheduler.set_timers([good])  # no DNS at scheduling: names are resolved when sent


def test_process_without_the_allow_list_accepts_the_webhook_and_the_worker_refuses_it_once(
    make_scheduler: SchedulerFactory, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    # A web app that schedules without registering the Webhooks handler: no allow-list.
    make_scheduler().set_timer("webhooks", WebhookPayload(receiver.url("/x"), {}),
                               activate_in=0, timer_id="t")
    worker = webhook_scheduler(make_scheduler, Webhooks(["hooks.example.com"]))
    caplog.set_level(logging.DEBUG, logger="redistimers")
    with worker:
        wait_for(lambda: worker.dead_timers("webhooks"), timeout=5)
    [dead] = worker.dead_timers("webhooks")
    assert (dead.error_type, dead.attempts) == ("WebhookRefused", 1)
    assert "host '127.0.0.1' of" in dead.error
    assert "is not in the allow-list ('hooks.example.com')" in dead.error
    assert receiver.received() == []
    refusals = [r for r in caplog.records if "not in the allow-list" in r.getMessage()]
    assert [(r.name, r.levelname) for r in refusals] == [("redistimers.delivery", "ERROR")]


def test_public_addresses_are_told_from_internal_ones() -> None:
    for public in ("93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"):
        assert is_public_address(public), public
    for internal in ("127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                     "100.64.0.1", "0.0.0.0", "224.0.0.1", "240.0.0.1", "::1", "::",
                     "fe80::1%1", "fc00::1", "::ffff:127.0.0.1", "2002:a00:1::",
                     "64:ff9b::a9fe:a9fe"):
        assert not is_public_address(internal), internal


def test_redirects_are_not_followed(make_scheduler: SchedulerFactory, receiver: Receiver) -> None:
    receiver.script("/moved", Answer(302, {"Location": "http://169.254.169.254/latest"}))
    receiver.script("/local", Answer(307, {"Location": "/elsewhere"}))
    webhooks = local_webhooks()
    response = webhooks.send(WebhookPayload(receiver.url("/local"), {}))
    assert (response.status, response.headers["location"]) == (307, "/elsewhere")
    scheduler = webhook_scheduler(make_scheduler, webhooks, ONE_ATTEMPT)
    scheduler.set_timer("webhooks", WebhookPayload(receiver.url("/moved"), {}), activate_in=0)
    with scheduler:
        wait_for(lambda: scheduler.dead_timers("webhooks"))
    [dead] = scheduler.dead_timers("webhooks")
    assert dead.error.endswith(
        f"HTTP 302 Found from POST http://127.0.0.1:{receiver.port}/moved "
        "(redirect to http://169.254.169.254/latest, not followed)"
    )
    assert [r.path for r in receiver.received()] == ["/local", "/moved"]


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1:6379/_FLUSHALL",
     "javascript:alert(1)", "127.0.0.1/x", "http:///x", "http://user:pw@127.0.0.1/",
     "http://127.0.0.1:99999/", "http://127.0.0.1/a b"],
)
def test_urls_that_are_not_plain_http_are_refused_when_the_payload_is_made(url: str) -> None:
    with pytest.raises(InvalidWebhookError):
        WebhookPayload(url, {})


def test_bad_methods_and_headers_are_refused_when_the_payload_is_made() -> None:
    url = "https://hooks.example.com/"
    assert WebhookPayload(url, {}, method="put").method == "PUT"
    with pytest.raises(InvalidWebhookError, match="method 'TRACE'"):
        WebhookPayload(url, {}, method="TRACE")
    for headers in ({"Host": "internal"}, {"X-Redistimers-Attempt": "1"},
                    {"X-A": "a\r\nInjected: 1"}, {"Bad Name": "x"}, {"X-A": "é"}):
        with pytest.raises(InvalidWebhookError):
            WebhookPayload(url, {}, headers=headers)


def test_set_timer_checks_the_payload_and_a_worker_dead_letters_a_bad_one_at_once(
    make_scheduler: SchedulerFactory, receiver: Receiver
) -> None:
    scheduler = webhook_scheduler(make_scheduler, local_webhooks(),
                                  RetryPolicy(max_attempts=20, initial=3600, maximum=3600))
    with pytest.raises(PayloadTypeError):
        scheduler.set_timer("webhooks", {"url": receiver.url("/x"), "body": {}}, activate_in=0)
    # Written by a process that does not know the topic's type (or by another language):
    make_scheduler().set_timer("webhooks", {"url": "file:///etc/passwd", "body": None},
                               activate_in=0, timer_id="t")
    with scheduler:
        wait_for(lambda: scheduler.dead_timers("webhooks"), timeout=5)
    [dead] = scheduler.dead_timers("webhooks")
    assert (dead.reason, dead.attempts) == ("undecodable", 1)
    assert dead.error.startswith("EnvelopeError: payload does not decode into WebhookPayload")
    assert "must be http:// or https://" in (dead.traceback or "")


def test_allow_list_entries_are_checked_when_configured() -> None:
    for bad in ([], "hooks.example.com", ["https://hooks.example.com"], ["example.com:443"],
                ["*example.com"], ["a.*.example.com"]):
        with pytest.raises(ConfigurationError):
            Webhooks(bad)
    with pytest.raises(ConfigurationError):
        Webhooks(["*"], timeout=0)
    Webhooks(["*"]).check("https://any.host.example/")
    Webhooks(["[::1]"], allow_private=True).check("http://[0:0::1]:8080/")


# -- TLS ------------------------------------------------------------------------------------


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext",
         "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def test_https_connects_to_the_checked_address_and_verifies_the_host_name(
    tls_files: tuple[Path, Path],
) -> None:
    cert, key = tls_files
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    receiver = Receiver(tls=server_context)
    try:
        client_context = ssl.create_default_context(cafile=str(cert))
        webhooks = Webhooks(["localhost", "127.0.0.1"], allow_private=True,
                            ssl_context=client_context, timeout=2.0)
        url = receiver.url("/secure", host="localhost", scheme="https")
        assert webhooks.send(WebhookPayload(url, {"a": 1})).status == 200
        [request] = receiver.received()
        assert request.headers["host"] == f"localhost:{receiver.port}"
        # The certificate names localhost, not 127.0.0.1: the name is still verified.
        with pytest.raises(WebhookConnectionError, match="SSLCertVerificationError"):
            webhooks.send(WebhookPayload(receiver.url("/secure", scheme="https"), {}))
        receiver.script("/hang", Answer(behaviour="hang"))
        started = time.monotonic()
        with pytest.raises(WebhookTimeout):
            Webhooks(["localhost"], allow_private=True, ssl_context=client_context,
                     timeout=0.5).send(WebhookPayload(url.replace("/secure", "/hang"), {}))
        assert time.monotonic() - started < 1.5
    finally:
        receiver.close()
