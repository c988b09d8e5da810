"""`redistimers worker` started before its Redis Cluster waits for it, as it does for one
server: a Cluster client reads the layout when made, so the worker tries again with
backoff instead of exiting."""

from __future__ import annotations

import subprocess

import pytest
import redis

from redistimers import TimerScheduler
from redistimers.testing import RedisClusterNodes

from .helpers import cli_command, cli_environment, wait_for

pytestmark = pytest.mark.slow


def test_a_worker_started_before_its_cluster_waits_and_then_delivers(
    fresh_cluster_nodes: RedisClusterNodes, redis_client: redis.Redis, redis_url: str
) -> None:
    cluster = fresh_cluster_nodes
    url = cluster.url
    for node in cluster.nodes:  # the Cluster is down when the worker starts
        node.stop()
    worker = subprocess.Popen(
        [*cli_command(), "worker", "tests._cli_app:router", "--redis-url", url],
        env=cli_environment(REDIS_URL=redis_url),  # where the handler records (one server)
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert worker.stdout is not None
        first = worker.stdout.readline()
        assert "waiting for Redis" in first, first
        assert worker.poll() is None, "it exited instead of waiting"
        for node in cluster.nodes:
            node.start()
        lines: list[str] = []
        wait_for(lambda: lines.append(worker.stdout.readline()) or "delivering" in lines[-1], 60)
        assert any("Redis answers after" in line for line in lines), lines
        TimerScheduler.from_url(url).set_timer("cli-jobs", "hello", activate_in=0)
        wait_for(lambda: redis_client.lrange("cli-test:delivered", 0, -1), 20)
    finally:
        worker.terminate()
        worker.wait(15)
