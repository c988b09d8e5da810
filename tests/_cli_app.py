"""An application module for tests/test_cli.py: `redistimers worker tests._cli_app:router`.

The handler of topic "cli-jobs" records each delivery as JSON in the Redis list
`cli-test:delivered` of $REDIS_URL (outside any redistimers namespace).
"""

from __future__ import annotations

import json
import os
from typing import Any

import redis

from redistimers import Delivery, Router

router = Router()


@router.handler("cli-jobs", max_concurrent=2, lease_ttl=5.0)
def record(payload: Any, delivery: Delivery) -> None:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        client.rpush("cli-test:delivered", json.dumps({
            "timer_id": delivery.timer_id, "payload": payload, "attempt": delivery.attempt,
            "headers": dict(delivery.headers),
        }))
    finally:
        client.close()


other = Router()


@other.handler("cli-other", max_concurrent=4)
def ignore(payload: Any) -> None:
    """Handles nothing of interest; here so that a list of routers can be imported."""


routers = [router, other]
empty = Router()
not_a_router = {"router": router}
