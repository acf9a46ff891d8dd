"""What a failed delivery comes to: the worker's decision, a plain function (no Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from channels.base import DeliveryError, Paused, PermanentError, RetryableError
from notifier.config import Settings
from notifier.worker import Failed, Pause, Retry, decide
from tests.conftest import make_settings

BASE = 2.0  # the settings' retry_base_delay
MAX = 3  # and max_attempts


@pytest.fixture(autouse=True)
def _drop_keys() -> Iterator[None]:
    """Nothing here writes to Redis: no keys to drop (the suite's fixture would connect)."""
    yield


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, "test:decide:", max_attempts=MAX, retry_base_delay=BASE)


def backed_off(delay: float, attempt: int) -> bool:
    """Whether ``delay`` is a backoff of ``attempt``: full jitter up to base × 2^(n-1)."""
    return BASE / 2 <= delay <= BASE * 2 ** (attempt - 1)


@pytest.mark.parametrize("attempt", [1, MAX, MAX + 4])
def test_a_pause_holds_the_batch_for_its_seconds_at_any_attempt(
    settings: Settings, attempt: int
) -> None:
    decision = decide(Paused("LINE's monthly limit", defer=600.0), attempt, settings)
    assert decision == Pause("LINE's monthly limit", 600.0)


@pytest.mark.parametrize("attempt", [1, MAX])
def test_a_permanent_error_fails_every_recipient_with_its_reason(
    settings: Settings, attempt: int
) -> None:
    error = PermanentError("401 invalid token", meta={"request_id": "r-1"})
    decision = decide(error, attempt, settings)
    assert decision == Failed(
        "401 invalid token", {"request_id": "r-1", "error": "401 invalid token"}
    )


@pytest.mark.parametrize("attempt", range(1, MAX))
def test_a_retryable_error_below_max_attempts_is_retried_after_a_backoff(
    settings: Settings, attempt: int
) -> None:
    decisions = [decide(RetryableError("LINE 503"), attempt, settings) for _ in range(50)]
    assert all(isinstance(d, Retry) for d in decisions)
    retries = [d for d in decisions if isinstance(d, Retry)]
    assert all(r.spend and r.breaker == "LINE 503" for r in retries)  # the breaker counts it
    assert all(backed_off(r.delay, attempt) for r in retries)
    assert len({r.delay for r in retries}) > 1  # jittered, not one fixed wait


def test_a_retryable_error_that_names_its_wait_is_retried_then(settings: Settings) -> None:
    decision = decide(RetryableError("X 503", defer=7.5), 1, settings)
    assert decision == Retry(7.5, spend=True, breaker="X 503")


@pytest.mark.parametrize("attempt", [1, MAX, MAX + 4])
def test_waiting_for_a_quota_spends_no_attempt_and_is_not_counted_by_the_breaker(
    settings: Settings, attempt: int
) -> None:
    error = RetryableError("X 429: rate limited", defer=30.0, spend=False)
    assert decide(error, attempt, settings) == Retry(30.0, spend=False, breaker=None)
    unsaid = decide(RetryableError("no room", spend=False), attempt, settings)
    assert isinstance(unsaid, Retry) and not unsaid.spend and unsaid.breaker is None
    assert backed_off(unsaid.delay, attempt)


@pytest.mark.parametrize("attempt", [MAX, MAX + 1])
def test_a_retryable_error_at_max_attempts_fails_the_batch(
    settings: Settings, attempt: int
) -> None:
    error = RetryableError("LINE 503", defer=1.0, meta={"request_id": "r-2"})
    decision = decide(error, attempt, settings)
    assert decision == Failed(
        f"gave up after {attempt}: LINE 503", {"request_id": "r-2", "error": "LINE 503"}
    )


@pytest.mark.parametrize("error", [KeyError("messages"), DeliveryError("neither kind")])
def test_an_unknown_fault_is_retried_like_a_transient_one_but_not_counted(
    settings: Settings, error: Exception
) -> None:
    for attempt in range(1, MAX):
        decision = decide(error, attempt, settings)
        assert isinstance(decision, Retry)
        assert decision.spend and decision.breaker is None
        assert backed_off(decision.delay, attempt)
    assert decide(error, MAX, settings) == Failed("gave up after an internal error", {})
