"""Getting at Redis: a worker started before Redis waits for it; wrong credentials and
missing ACL permissions are reported as such (not as "cannot reach Redis"); and a user
with exactly the README's ACL rule can do everything the library does."""

from __future__ import annotations

import logging
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redistimers import (
    RedisAuthenticationError,
    RedisPermissionError,
    RedisUnavailableError,
    RetryPolicy,
    Router,
    TimerScheduler,
    TimerSpec,
)
from redistimers.testing import RedisClusterNodes, RedisServer
from tests.helpers import wait_for

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parent.parent / "README.rst"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_user(url: str, user: str, password: str) -> str:
    return url.replace("redis://", f"redis://{user}:{password}@")


@pytest.fixture
def acl_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.close()


def test_a_worker_started_before_redis_waits_for_it_and_then_delivers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The docker-compose and Kubernetes race: the worker must not exit."""
    port = _free_port()
    delivered = threading.Event()
    router = Router()
    router.handler("jobs")(lambda payload: delivered.set())
    caplog.set_level(logging.INFO, logger="redistimers")
    worker = TimerScheduler.from_url(f"redis://127.0.0.1:{port}/0", routers=[router])
    server = RedisServer(port=port)
    try:
        with worker:  # start() returns at once, although nothing listens yet
            wait_for(lambda: "waiting for Redis" in caplog.text, 10)
            assert not worker.healthy
            server.start()
            TimerScheduler.from_url(server.url).set_timer("jobs", 1, activate_in=0)
            assert delivered.wait(20), caplog.text
            assert worker.healthy
    finally:
        server.close()
    waits = [r for r in caplog.records if "waiting for Redis" in r.getMessage()]
    answers = [r for r in caplog.records if "answering after" in r.getMessage()]
    assert len(waits) == 1, caplog.text
    assert waits[0].levelno == logging.WARNING
    assert len(answers) == 1, caplog.text
    assert not [r for r in caplog.records if r.exc_info], caplog.text


def test_a_wrong_password_is_reported_as_such_not_as_an_unreachable_redis(
    acl_server: RedisServer,
) -> None:
    acl_server.client().execute_command("ACL", "SETUSER", "app", "on", ">right", "~*", "+@all")
    scheduler = TimerScheduler.from_url(_with_user(acl_server.url, "app", "wrong"))
    with pytest.raises(RedisAuthenticationError, match="refused to authenticate user 'app'") as e:
        scheduler.set_timer("jobs", 1, activate_in=60)
    assert not isinstance(e.value, RedisUnavailableError)
    assert "cannot reach" not in str(e.value)
    assert "password" in str(e.value)


def test_a_worker_with_a_wrong_password_stops_with_one_error_instead_of_waiting(
    acl_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    acl_server.client().execute_command("ACL", "SETUSER", "app", "on", ">right", "~*", "+@all")
    router = Router()
    router.handler("jobs")(lambda payload: None)
    worker = TimerScheduler.from_url(_with_user(acl_server.url, "app", "wrong"), routers=[router])
    caplog.set_level(logging.INFO, logger="redistimers")
    raised: list[BaseException] = []

    def run() -> None:
        try:
            worker.run_forever()
        except BaseException as exc:  # what the test looks at
            raised.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(15)
    assert not thread.is_alive(), "run_forever kept waiting on a wrong password"
    (error,) = raised
    assert isinstance(error, RedisAuthenticationError)
    assert not worker.healthy
    refusals = [r for r in caplog.records if "refused to authenticate" in r.getMessage()]
    assert len(refusals) == 1, caplog.text
    assert "waiting for Redis" not in caplog.text


def test_a_missing_acl_permission_names_the_user_and_the_readme_rule(
    acl_server: RedisServer,
) -> None:
    """Not Redis's raw script error."""
    acl_server.client().execute_command(
        "ACL", "SETUSER", "reader", "on", ">pw", "~*", "&*", "+@all", "-zadd"
    )
    scheduler = TimerScheduler.from_url(_with_user(acl_server.url, "reader", "pw"))
    assert scheduler.stats("jobs").pending == 0  # reading is allowed
    with pytest.raises(RedisPermissionError) as e:
        scheduler.set_timer("jobs", 1, activate_in=60)
    message = str(e.value)
    assert "user 'reader'" in message
    assert "Redis permissions" in message
    assert e.value.unwritten_ids  # refused: nothing written


def readme_acl_rule() -> list[str]:
    """The ACL SETUSER rule the README gives, split as a shell would."""
    text = README.read_text()
    match = re.search(r"ACL SETUSER timers (.+?)\n\n", text, re.S)
    assert match, "the README's Redis permissions section has no ACL SETUSER timers rule"
    rule = " ".join(line.strip().rstrip("\\") for line in match.group(1).splitlines())
    return rule.split()


def test_a_user_with_exactly_the_readme_acl_rule_can_do_everything(
    acl_server: RedisServer,
) -> None:
    rule = [">s3cret" if part.startswith(">") else part for part in readme_acl_rule()]
    acl_server.client().execute_command("ACL", "SETUSER", "timers", *rule)
    url = _with_user(acl_server.url, "timers", "s3cret")
    delivered: list[object] = []
    router = Router()

    @router.handler("jobs", retry=RetryPolicy(max_attempts=1))
    def handle(payload: object) -> None:
        if payload == "bad":
            raise ValueError("bad")
        delivered.append(payload)

    scheduler = TimerScheduler.from_url(url, routers=[router])
    scheduler.set_timer("jobs", "a", activate_in=0)
    scheduler.set_timers([TimerSpec("jobs", "b", activate_in=0),
                          TimerSpec("jobs", "bad", activate_in=0, timer_id="bad")])
    scheduler.set_timer("jobs", "later", activate_in=60, timer_id="later")
    scheduler.set_timer("jobs", "every", every=60, timer_id="every")
    with scheduler:
        wait_for(lambda: len(scheduler.dead_timers("jobs")) == 1, 15)
        wait_for(lambda: sorted(map(str, delivered)) == ["a", "b"], 15)
        assert scheduler.healthy
        assert [w.worker_id for w in scheduler.workers()] == [scheduler.worker_id]
    assert scheduler.workers() == []  # its heartbeat's record, removed at stop
    assert scheduler.metrics().redis_errors == 0
    assert scheduler.topics() == ["jobs"]
    assert scheduler.stats("jobs").pending == 2
    info = scheduler.get_timer("jobs", "later")
    assert info is not None
    assert [t.timer_id for t in scheduler.list_timers("jobs").timers] == ["later", "every"]
    assert scheduler.reschedule("jobs", "later", activate_in=120)
    assert scheduler.requeue_dead("jobs") == 1
    assert scheduler.run_pending() == 1  # "bad" dies again
    assert scheduler.purge_dead("jobs") == 1
    assert scheduler.cancel_timer("jobs", "later")
    assert scheduler.purge("jobs") == 1
    admin = acl_server.client()
    admin.script_flush()  # NOSCRIPT: the scripts are sent again, by the restricted user
    scheduler.set_timer("jobs", "again", activate_in=60)
    assert scheduler.stats("jobs").pending == 1


def test_the_readme_acl_rule_grants_no_key_outside_the_namespace(
    acl_server: RedisServer,
) -> None:
    rule = [">s3cret" if part.startswith(">") else part for part in readme_acl_rule()]
    acl_server.client().execute_command("ACL", "SETUSER", "timers", *rule)
    client = redis.Redis.from_url(_with_user(acl_server.url, "timers", "s3cret"))
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.get("someone-elses-key")
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.flushall()


def readme_cluster_additions() -> list[str]:
    """What the README adds to the rule for min_replicas and a Redis Cluster."""
    match = re.search(r"ACL SETUSER timers (\+cluster.+?)\n", README.read_text())
    assert match, "the README gives no ACL additions for a Redis Cluster"
    return match.group(1).split()


def test_a_cluster_user_with_exactly_the_readme_rules_can_do_everything(
    redis_cluster: RedisClusterNodes, cluster_url: str
) -> None:
    rule = [">s3cret" if part.startswith(">") else part for part in readme_acl_rule()]
    for node in redis_cluster.nodes:
        node.client().execute_command(
            "ACL", "SETUSER", "timers", "reset", *rule, *readme_cluster_additions()
        )
    url = cluster_url.replace("redis+cluster://", "redis+cluster://timers:s3cret@")
    topics = ("invoices", "reminders", "reports")
    assert len({redis_cluster.master_of(topic).port for topic in topics}) > 1
    delivered: list[str] = []
    router = Router()
    for topic in topics:
        router.handler(topic)(lambda payload: delivered.append(payload))
    scheduler = TimerScheduler.from_url(url, routers=[router], min_replicas=1)
    scheduler.set_timers([TimerSpec(t, t, activate_in=0) for t in topics for _ in range(5)])
    scheduler.set_timer("invoices", "later", activate_in=60, timer_id="later")
    with scheduler:
        wait_for(lambda: len(delivered) == 15, 15)
        assert scheduler.healthy
        assert [w.worker_id for w in scheduler.workers()] == [scheduler.worker_id]
    assert scheduler.workers() == []
    assert scheduler.metrics().redis_errors == 0
    assert scheduler.topics() == ["invoices"]
    assert scheduler.stats("invoices").pending == 1
    assert scheduler.reschedule("invoices", "later", activate_in=120)
    assert scheduler.cancel_timer("invoices", "later")
