"""Unit tests of redistimers.retry.RetryPolicy and the RetryTimer signal."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest
import tenacity

from redistimers import RetryPolicy, RetryTimer, defaults


def test_default_policy_matches_the_documented_defaults() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == defaults.RETRY_MAX_ATTEMPTS == 20
    assert policy.initial == defaults.RETRY_INITIAL == 1.0
    assert policy.factor == defaults.RETRY_FACTOR == 2.0
    assert policy.maximum == defaults.RETRY_MAXIMUM == 600.0
    assert policy.jitter is True


def test_delays_without_jitter_are_exactly_exponential() -> None:
    policy = RetryPolicy(initial=0.5, factor=3.0, maximum=1000.0, jitter=False)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.5, 4.5, 13.5, 40.5]


def test_delays_without_jitter_are_capped_at_maximum() -> None:
    policy = RetryPolicy(initial=1.0, factor=2.0, maximum=5.0, jitter=False)
    assert [policy.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_delay_of_a_huge_attempt_number_is_the_maximum() -> None:
    policy = RetryPolicy(initial=1.0, factor=2.0, maximum=60.0, jitter=False)
    assert policy.delay(100_000) == 60.0


def test_factor_one_gives_a_constant_delay() -> None:
    policy = RetryPolicy(initial=0.25, factor=1.0, maximum=10.0, jitter=False)
    assert {policy.delay(n) for n in range(1, 20)} == {0.25}


def test_initial_above_maximum_is_capped() -> None:
    policy = RetryPolicy(initial=30.0, maximum=10.0, jitter=False)
    assert policy.delay(1) == 10.0


def test_attempt_zero_or_less_is_treated_as_the_first() -> None:
    policy = RetryPolicy(initial=2.0, jitter=False)
    assert policy.delay(0) == policy.delay(-3) == policy.delay(1) == 2.0


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8, 30])
def test_jittered_delays_lie_between_zero_and_the_capped_exponential(attempt: int) -> None:
    policy = RetryPolicy(initial=0.5, factor=2.0, maximum=6.0, jitter=True)
    cap = min(6.0, 0.5 * 2.0 ** (attempt - 1))
    delays = [policy.delay(attempt) for _ in range(300)]
    assert all(0.0 <= d <= cap for d in delays)
    assert len(set(delays)) > 250  # random, not a fixed value
    # Full jitter spreads over the whole range, not just near its top or its bottom.
    assert min(delays) < cap * 0.25
    assert max(delays) > cap * 0.75


@pytest.mark.parametrize(
    ("initial", "factor", "maximum"),
    [(0.5, 3.0, 1000.0), (1.0, 2.0, 5.0), (30.0, 2.0, 10.0), (0.25, 1.0, 10.0), (1.0, 2, 60.0)],
)
def test_delays_without_jitter_are_tenacitys_exponential_wait(
    initial: float, factor: float, maximum: float
) -> None:
    """The formula is tenacity's wait_exponential, asked here through a real call state."""
    policy = RetryPolicy(initial=initial, factor=factor, maximum=maximum, jitter=False)
    wait = tenacity.wait_exponential(multiplier=initial, max=maximum, exp_base=factor)
    state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
    for attempt in [1, 2, 3, 4, 7, 12, 40, 2000]:
        state.attempt_number = attempt
        assert policy.delay(attempt) == wait(state)


def test_delays_are_floats() -> None:
    assert isinstance(RetryPolicy(jitter=False).delay(1), float)
    assert isinstance(RetryPolicy(jitter=True).delay(1), float)


def test_timedeltas_are_accepted_for_initial_and_maximum() -> None:
    policy = RetryPolicy(
        initial=dt.timedelta(milliseconds=10), maximum=dt.timedelta(minutes=2), jitter=False
    )
    assert policy.initial == 0.01
    assert policy.maximum == 120.0
    assert policy.delay(2) == 0.02


@pytest.mark.parametrize(
    ("max_attempts", "attempt", "exhausted"),
    [(1, 1, True), (3, 1, False), (3, 2, False), (3, 3, True), (3, 4, True)],
)
def test_exhausted_after_the_last_allowed_attempt(
    max_attempts: int, attempt: int, exhausted: bool
) -> None:
    assert RetryPolicy(max_attempts=max_attempts).exhausted(attempt) is exhausted


@pytest.mark.parametrize("max_attempts", [0, -1, 1.5, True, "3", None])
def test_bad_max_attempts_is_rejected(max_attempts: object) -> None:
    with pytest.raises(ValueError, match="max_attempts must be an int >= 1"):
        RetryPolicy(max_attempts=max_attempts)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["initial", "maximum"])
@pytest.mark.parametrize("value", [0, -1.0, dt.timedelta(0), dt.timedelta(seconds=-1)])
def test_non_positive_initial_or_maximum_is_rejected(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"{field} must be > 0"):
        RetryPolicy(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("factor", [0.5, 0, -2])
def test_factor_below_one_is_rejected(factor: float) -> None:
    with pytest.raises(ValueError, match="factor must be >= 1"):
        RetryPolicy(factor=factor)


def test_policy_is_frozen_and_comparable() -> None:
    policy = RetryPolicy(max_attempts=3)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.max_attempts = 4  # type: ignore[misc]
    assert policy == RetryPolicy(max_attempts=3)


# -- RetryTimer -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delay", "seconds"), [(0, 0.0), (2.5, 2.5), (dt.timedelta(milliseconds=1500), 1.5)]
)
def test_retry_timer_delay_in_seconds(delay: float | dt.timedelta, seconds: float) -> None:
    assert RetryTimer(delay).delay == seconds


def test_retry_timer_defaults_to_no_delay() -> None:
    assert RetryTimer().delay == 0.0


@pytest.mark.parametrize("delay", [-1, dt.timedelta(seconds=-1), float("nan")])
def test_retry_timer_rejects_negative_or_nan_delay(delay: float | dt.timedelta) -> None:
    with pytest.raises(ValueError, match="RetryTimer delay must be >= 0"):
        RetryTimer(delay)
