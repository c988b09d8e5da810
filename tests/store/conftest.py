"""Every store test runs twice: with a client returning bytes and with one created with
decode_responses=True, since the store must work with whatever client the application
has."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from redistimers import defaults
from redistimers.store import (
    TimerStore,
    TopicKeys,
)
from redistimers.testing import RedisServer

from .support import TOPIC, server_ms


@pytest.fixture(params=[False, True], ids=["bytes", "decoded"])
def store(
    request: pytest.FixtureRequest, redis_server: RedisServer, redis_client: redis.Redis
) -> Iterator[TimerStore]:
    client = redis_server.client(decode_responses=request.param)
    yield TimerStore(client, defaults.NAMESPACE)
    client.close()


@pytest.fixture
def keys(store: TimerStore) -> TopicKeys:
    return store.keys(TOPIC)

@pytest.fixture
def past(redis_client: redis.Redis) -> int:
    """A server-clock millisecond one minute ago: timers due then are due now."""
    return server_ms(redis_client) - 60_000


@pytest.fixture
def future(redis_client: redis.Redis) -> int:
    """A server-clock millisecond one hour ahead."""
    return server_ms(redis_client) + 3_600_000


