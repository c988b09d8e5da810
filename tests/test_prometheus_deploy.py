"""The Prometheus recipes in deploy/prometheus/ (alert rules, scrape configuration) query
metrics the exporter really exposes; and without prometheus_client the HTTP admin API
still works, /metrics saying which extra to install."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]
from prometheus_client import generate_latest

from redistimers import Router, TimerScheduler
from redistimers.contrib.prometheus import topic_registry, worker_registry

from ._prometheus_support import Scrape
from .helpers import REPO, SchedulerFactory, cli_environment, wait_for

RECIPES = REPO / "deploy" / "prometheus"
EXTRA = "pip install 'redistimers[prometheus]'"


def load(name: str) -> Any:
    return yaml.safe_load((RECIPES / name).read_text())


def full_scrape(make_scheduler: SchedulerFactory) -> Scrape:
    """What a worker and the API expose once a worker has delivered, with a timer pending
    and a dead letter: every family has samples."""
    router = Router()

    @router.handler("jobs")
    def handle(payload: str) -> None:
        if payload == "bad":
            raise ValueError("bad")

    worker = make_scheduler(router, max_poll_interval=0.05)
    worker.start()
    worker.set_timer("jobs", "ok", activate_in=0)
    worker.set_timer("jobs", "later", activate_in=3600)
    wait_for(lambda: worker.metrics().delivered == 1 and len(worker.workers()) == 1)
    text = generate_latest(topic_registry(worker)) + generate_latest(worker_registry(worker))
    return Scrape.parse(text)


def test_every_alert_rule_queries_metrics_the_exporter_exposes(
    make_scheduler: SchedulerFactory,
) -> None:
    rules = [rule for group in load("alerts.yml")["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} >= {
        "RedisTimersLagging", "RedisTimersDeadLetters", "RedisTimersNoWorker",
    }
    exposed = full_scrape(make_scheduler).names
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        names = set(re.findall(r"redistimers_[a-z_]+", rule["expr"]))
        assert names, rule["alert"]
        assert names <= exposed, (rule["alert"], names - exposed)
        assert rule["labels"]["severity"] in ("warning", "critical")
    by_name = {rule["alert"]: rule["expr"] for rule in rules}
    assert "redistimers_oldest_due_lag_seconds" in by_name["RedisTimersLagging"]
    assert "redistimers_timers_dead" in by_name["RedisTimersDeadLetters"]
    assert "redistimers_topic_workers" in by_name["RedisTimersNoWorker"]
    assert "redistimers_timers_pending" in by_name["RedisTimersNoWorker"]


def test_the_scrape_config_scrapes_the_api_with_its_token_and_the_workers_plainly() -> None:
    config = load("prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api, workers = jobs["redistimers-api"], jobs["redistimers-workers"]
    assert api["metrics_path"] == workers["metrics_path"] == "/metrics"
    assert api["authorization"]["type"] == "Bearer"
    assert "authorization" not in workers
    assert all(job["static_configs"][0]["targets"] for job in (api, workers))


_WITHOUT_PROMETHEUS = """
import json, sys
sys.modules["prometheus_client"] = None  # as if the extra were not installed
from redistimers import TimerScheduler
from redistimers.contrib.http_api import create_app

app = create_app(TimerScheduler.from_url(sys.argv[1]), token="t")
client = app.test_client()
answers = {}
for path in ("/topics", "/workers", "/metrics"):
    reply = client.get(path, headers={"Authorization": "Bearer t"})
    answers[path] = [reply.status_code, reply.get_json()]
try:
    import redistimers.contrib.prometheus
except ImportError as exc:
    answers["import"] = str(exc)
print(json.dumps(answers))
"""


def test_the_http_api_works_without_prometheus_client_and_metrics_names_the_extra(
    redis_url: str, make_scheduler: SchedulerFactory
) -> None:
    scheduler: TimerScheduler = make_scheduler()
    scheduler.set_timer("jobs", "x", activate_in=3600)
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_PROMETHEUS, redis_url],
        capture_output=True, text=True, timeout=60, env=cli_environment(), cwd=str(REPO),
    )
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    assert answers["/topics"] == [200, {"topics": ["jobs"]}]
    assert answers["/workers"] == [200, {"workers": []}]
    status, body = answers["/metrics"]
    assert status == 501
    assert EXTRA in body["error"]
    assert EXTRA in answers["import"]
