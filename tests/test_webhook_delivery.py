"""Webhook timers (redistimers.contrib.webhook) delivered: statuses, Retry-After, idempotency
keys, timeouts and connection errors; against a real HTTP server on 127.0.0.1 that answers
as each test scripts it, and a real Redis."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
from collections.abc import Iterator

import pytest
import redis

from redistimers import RetryPolicy
from redistimers.contrib.webhook import (
    InvalidWebhookError,
    WebhookConnectionError,
    WebhookPayload,
    Webhooks,
    WebhookTimeout,
    parse_retry_after,
)

from ._import_graph import upward_or_private
from ._webhook_receiver import (
    ONE_ATTEMPT,
    Answer,
    Receiver,
    local_webhooks,
    running_receiver,
    webhook_scheduler,
)
from .helpers import FAST_RETRY, REPO, SchedulerFactory, timer_gone, wait_for


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as server:
        yield server


# -- the package ------------------------------------------------------------------------------


def test_the_webhook_modules_import_one_way_and_no_private_names() -> None:
    """The handler, then the HTTP client and the address checks, then the payload, the
    errors and the response: no module imports one above it, so there is no import cycle."""
    package = REPO / "redistimers" / "contrib" / "webhook"
    order = ["webhooks", "client", "addresses", "payload", "errors", "response"]
    assert upward_or_private(package, order) == []
    assert sorted(path.stem for path in package.glob("*.py")) == sorted([*order, "__init__"])


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
            WebhookPayload(url, {}, idempotency_key=bad)  # type: ignore[arg-type]  # 7: on purpose


def test_idempotency_key_costs_webhook_timers_a_few_dozen_bytes(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    scheduler = webhook_scheduler(make_scheduler, Webhooks(["hooks.example.com"]))
    payload = WebhookPayload("https://hooks.example.com/a", {"n": 1})
    scheduler.set_timer("webhooks", payload, activate_in=3600, timer_id="t")
    stored = redis_client.hget("redistimers:{webhooks}:body", "t")
    assert isinstance(stored, bytes)
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
