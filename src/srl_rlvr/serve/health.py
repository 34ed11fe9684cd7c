"""Model health from live traffic and periodic probes: healthy, degraded or failed.

Every attempt on a model is recorded (success, latency). Over the last `window_s` seconds a model whose
error rate or p95 latency passes the degraded limits is degraded; one past the failed error rate, with
`consecutive_failures` errors in a row, or whose last probe failed is failed. Requests go to healthy
models first, degraded next, failed only when nothing else is left. A failed model gets no traffic to
prove itself with, so its probe decides: a successful probe wipes its record and it starts afresh,
like a circuit breaker's half-open trial.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from srl_rlvr.serve.config import HealthConfig

log = logging.getLogger(__name__)

State = Literal["healthy", "degraded", "failed"]
RANK: dict[State, int] = {"healthy": 0, "degraded": 1, "failed": 2}
MAX_SAMPLES = 2000  # per model: a p95 over more is no better, and it is computed often
STATE_TTL_S = 0.2  # a state is reused this long (every request asks); an error or a probe recomputes it


@dataclass(frozen=True)
class ModelStats:
    requests: int
    errors: int
    p95_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


class HealthMonitor:
    """Per-model outcomes over a sliding window; the state of each model on demand."""

    def __init__(self, config: HealthConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._outcomes: dict[str, deque[tuple[float, bool, float]]] = {}
        self._streak: dict[str, int] = {}  # errors in a row
        self._probe_failed: set[str] = set()
        self._cached: dict[str, tuple[float, State]] = {}

    def record(self, model: str, ok: bool, latency_ms: float) -> None:
        outcomes = self._outcomes.setdefault(model, deque(maxlen=MAX_SAMPLES))
        outcomes.append((self.clock(), ok, latency_ms))
        self._streak[model] = 0 if ok else self._streak.get(model, 0) + 1
        if not ok:
            self._cached.pop(model, None)

    def probed(self, model: str, ok: bool) -> None:
        self._cached.pop(model, None)
        if not ok:
            self._probe_failed.add(model)
            return
        if self.state(model) == "failed":
            self._outcomes.pop(model, None)
            self._streak.pop(model, None)
        self._probe_failed.discard(model)
        self._cached.pop(model, None)

    def stats(self, model: str) -> ModelStats:
        since = self.clock() - self.config.window_s
        outcomes = self._outcomes.get(model, deque())
        while outcomes and outcomes[0][0] < since:
            outcomes.popleft()
        errors = sum(not ok for _, ok, _ in outcomes)
        return ModelStats(len(outcomes), errors, p95([ms for _, ok, ms in outcomes if ok]))

    def state(self, model: str) -> State:
        now = self.clock()
        cached = self._cached.get(model)
        if cached is None or now - cached[0] > STATE_TTL_S:
            cached = self._cached[model] = (now, self._judge(model))
        return cached[1]

    def _judge(self, model: str) -> State:
        c = self.config
        if model in self._probe_failed or self._streak.get(model, 0) >= c.consecutive_failures:
            return "failed"
        s = self.stats(model)
        if s.requests < c.min_requests:
            return "healthy"
        if s.error_rate >= c.failed_error_rate:
            return "failed"
        slow = c.degraded_p95_ms is not None and s.p95_ms is not None and s.p95_ms > c.degraded_p95_ms
        return "degraded" if s.error_rate >= c.degraded_error_rate or slow else "healthy"

    def order(self, models: list[str]) -> list[str]:
        """The models healthiest first, keeping the given order among equals."""
        return sorted(models, key=lambda m: RANK[self.state(m)])

    async def probe_forever(
        self, models: Callable[[], list[str]], probe: Callable[[str], Awaitable[object]]
    ) -> None:
        """Probe every model, then sleep `probe_interval_s`; runs until the server cancels it."""
        while True:
            for model in models():
                try:
                    await asyncio.wait_for(probe(model), self.config.probe_timeout_s)
                    ok = True
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # whatever broke, the model did not answer
                    log.warning("probe of %s failed: %s", model, e)
                    ok = False
                self.probed(model, ok)
            await asyncio.sleep(self.config.probe_interval_s)
