"""A circuit breaker for an LLM backend: after repeated failures, skip it for a while.

Without one, an outage costs every summary the whole retry policy (several attempts with
backoff, up to minutes) before the fallback answers. With it, after `threshold` consecutive
failed summaries the backend is not asked for `cool_down` seconds; then one trial call
(half-open) decides: success closes the breaker, failure opens it for another cool-down.
Generic over backends: it counts outcomes, it does not know who produced them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import StrEnum

log = logging.getLogger(__name__)


class BreakerState(StrEnum):
    CLOSED = "closed"  # the backend is asked
    OPEN = "open"  # the backend is skipped until the cool-down ends
    HALF_OPEN = "half-open"  # one trial call is in flight; everyone else is skipped


class CircuitBreaker:
    """Consecutive-failure breaker with a cool-down and a single half-open trial.

    `clock` gives seconds (monotonic); tests inject their own. Call `allow()` before a call;
    if it said yes, report the outcome with exactly one of `success()`, `failure()` or
    `abandon()` (the call was cancelled: no verdict on the backend).
    """

    def __init__(
        self,
        name: str,
        *,
        threshold: int = 3,
        cool_down: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.threshold = threshold
        self.cool_down = cool_down
        self.clock = clock
        self.failures = 0  # consecutive
        self._open_until: float | None = None
        self._trial = False

    @property
    def state(self) -> BreakerState:
        if self._trial:
            return BreakerState.HALF_OPEN
        return BreakerState.CLOSED if self._open_until is None else BreakerState.OPEN

    def skipping(self) -> bool:
        """Whether a call now would be refused (open and cooling down, or a trial in flight)."""
        return self._open_until is not None and (self._trial or self.clock() < self._open_until)

    def allow(self) -> bool:
        """Whether to call the backend now; when the cool-down is over, the first caller is the trial."""
        if self._open_until is None:
            return True
        if self._trial or self.clock() < self._open_until:
            return False
        self._trial = True
        log.info("%s: cool-down over, trying it again", self.name)
        return True

    def success(self) -> None:
        if self._open_until is not None:
            log.warning("%s works again: circuit closed after %d failed summaries", self.name, self.failures)
        self.failures = 0
        self._open_until = None
        self._trial = False

    def failure(self) -> None:
        self.failures += 1
        if self._trial or (self._open_until is None and self.failures >= self.threshold):
            self._open_until = self.clock() + self.cool_down
            log.warning(
                "%s failed %d times in a row: skipped for %.0f s, the fallback answers meanwhile",
                self.name, self.failures, self.cool_down,
            )
        self._trial = False

    def abandon(self) -> None:
        """The call did not finish (cancelled): free the trial slot without a verdict."""
        self._trial = False
