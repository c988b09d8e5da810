"""Webhook timers (redistimers.contrib.webhook) a worker refuses to send: hosts off the
allow-list, addresses that are not public, URLs, methods and headers that are not plain
HTTP; and HTTPS to the address checked, with the host name verified."""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redistimers import (
    InvalidTimerError,
    PayloadTypeError,
    RetryPolicy,
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
)
from redistimers.errors import ConfigurationError

from ._webhook_receiver import (
    ONE_ATTEMPT,
    Answer,
    Receiver,
    local_webhooks,
    running_receiver,
    webhook_scheduler,
)
from .helpers import SchedulerFactory, wait_for


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as server:
        yield server


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
