"""A circuit breaker for one LLM endpoint, so a dead teacher or judge fails fast instead of being retried
by every caller for minutes.

closed -> open after `failures` consecutive failures; open for `cooldown_s`; then half-open: one trial
request goes through; its success closes the breaker, its failure reopens it for another cooldown.
Plain synchronous state: the asyncio event loop is single-threaded, so no lock is needed. Share one
breaker between all clients of the same endpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """closed -> open after `failures` consecutive failures; open for `cooldown_s`; then half-open:
    one trial request; success closes it, failure reopens it."""

    def __init__(
        self, failures: int = 5, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if failures < 1:
            raise ValueError(f"failures must be at least 1, got {failures}")
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._trial_at: float | None = None

    @property
    def consecutive_failures(self) -> int:
        """Failures in a row since the last success (what an error message reports)."""
        return self._consecutive

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at < self.cooldown_s:
            return "open"
        return "half_open"

    def allow(self) -> bool:
        """May a request be sent now? In half-open, True for exactly one caller until it reports back."""
        state = self.state
        if state == "closed":
            return True
        now = self._clock()
        # A trial whose caller was cancelled never reports; after a cooldown, let another one through.
        if state == "open" or (self._trial_at is not None and now - self._trial_at < self.cooldown_s):
            return False
        self._trial_at = now
        return True

    def record_success(self) -> None:
        self._consecutive = 0
        self._opened_at = None
        self._trial_at = None

    def record_failure(self) -> None:
        self._consecutive += 1
        # A failed half-open trial reopens at once; in closed state only the threshold opens it.
        if self._opened_at is not None or self._consecutive >= self.failures:
            self._opened_at = self._clock()
        self._trial_at = None
