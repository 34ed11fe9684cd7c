"""Which model answers a role's request: its chain, a canary's share of traffic, and the bandit.

A role has a primary and ordered backups; the health monitor puts healthy models first. A canary
(`shift`) takes `percent` of the role's requests. After each of them its error rate and p95 latency are
compared with the primary's over the health window; beyond the configured margins it is rolled back
(its traffic returns to the chain). Shifting to 100 promotes it: it becomes the primary and the old
primary the first backup. A role with `routing: bandit` lets LinUCB (serve/routing.py) pick among its
models, healthy ones only, and learn from each answer's reward.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from srl_rlvr.errors import UserError
from srl_rlvr.serve.config import CanaryConfig, RoleConfig
from srl_rlvr.serve.health import HealthMonitor, ModelStats
from srl_rlvr.serve.routing import LinUCBRouter


@dataclass
class Canary:
    model: str
    percent: float


@dataclass
class RoleState:
    primary: str
    backups: list[str]
    routing: str
    canary: Canary | None = None
    last_rollback: dict[str, Any] | None = None
    router: LinUCBRouter | None = field(default=None, repr=False)
    outcomes: dict[str, deque[float]] = field(default_factory=dict, repr=False)  # the task's checks
    served: dict[str, int] = field(default_factory=dict)  # answers per model since the server started

    @property
    def models(self) -> list[str]:
        return [self.primary, *self.backups]


OUTCOMES_KEPT = 500  # the latest task checks per model a canary's scores are compared over


def wilson_upper(rate: float, n: int, z: float = 1.96) -> float:
    """Upper end of the Wilson score interval of a success rate over `n` trials."""
    centre = rate + z * z / (2 * n)
    spread = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return (centre + spread) / (1 + z * z / n)


def _rate(outcomes: deque[float] | None) -> tuple[int, float]:
    return (0, 0.0) if not outcomes else (len(outcomes), sum(outcomes) / len(outcomes))


def canary_verdict(
    canary: ModelStats,
    primary: ModelStats,
    config: CanaryConfig,
    outcomes: tuple[deque[float] | None, deque[float] | None] = (None, None),
) -> str | None:
    """Why the canary must go, or None while it holds up (or has not served enough to judge).
    `outcomes`: the task's checks of the canary's and the primary's latest answers, where it has them."""
    if canary.requests < config.min_requests:
        return None
    (n_canary, rate_canary), (n_primary, rate_primary) = _rate(outcomes[0]), _rate(outcomes[1])
    checked = n_canary >= config.min_requests and n_primary >= config.min_requests
    # worse beyond doubt: even the top of the canary's 95% Wilson interval is below the primary's
    # rate less the margin, so a handful of unlucky answers does not sink a better model
    if checked and wilson_upper(rate_canary, n_canary) < rate_primary - config.outcome_margin:
        return f"verified outcome rate {rate_canary:.1%} of {n_canary} vs primary {rate_primary:.1%} of {n_primary}"
    if canary.error_rate > primary.error_rate + config.error_rate_margin:
        return f"error rate {canary.error_rate:.1%} vs primary {primary.error_rate:.1%}"
    if canary.p95_ms is not None and primary.p95_ms is not None:
        limit = primary.p95_ms * (1 + config.latency_margin) + config.latency_slack_ms
        if canary.p95_ms > limit:
            return f"p95 latency {canary.p95_ms:.0f} ms vs primary {primary.p95_ms:.0f} ms"
    return None


class Roles:
    """The live state of every role: changed by shifts, rollbacks and promotions while serving."""

    def __init__(self, configs: Mapping[str, RoleConfig], canary: CanaryConfig, seed: int = 0) -> None:
        self.config = canary
        self.rng = random.Random(seed)
        self.states = {
            name: RoleState(role.primary, list(role.backups), role.routing) for name, role in configs.items()
        }
        for state in self.states.values():
            self._reset_router(state)

    @staticmethod
    def _reset_router(state: RoleState) -> None:
        state.router = LinUCBRouter(state.models) if state.routing == "bandit" else None

    def chain(self, role: str, health: HealthMonitor, features: Mapping[str, float]) -> list[str]:
        """The models to try for one request, in order."""
        state = self.states[role]
        models = state.models
        if state.router is not None:
            bounds = state.router.upper_bounds(features)
            healthy = [m for m in models if health.state(m) == "healthy"] or models
            best = max(healthy, key=lambda m: bounds[m])
            models = [best, *(m for m in models if m != best)]
        if state.canary is not None and self.rng.random() * 100 < state.canary.percent:
            models = [state.canary.model, *(m for m in models if m != state.canary.model)]
        return health.order(models)

    def shift(self, role: str, to: str, percent: float) -> RoleState:
        """Send `percent` of the role's traffic to `to`; 0 withdraws the canary, 100 promotes it."""
        state = self.states[role]
        if to == state.primary:
            raise UserError(f"'{to}' is already the primary of role '{role}'")
        if percent <= 0:
            state.canary = None
        elif percent >= 100:
            state.backups = [state.primary, *(m for m in state.backups if m != to)]
            state.primary = to
            state.canary = None
            self._reset_router(state)
        elif state.canary is not None and state.canary.model == to:
            state.canary.percent = percent
        else:
            state.canary = Canary(to, percent)
            state.outcomes.clear()  # canary and primary are compared on the same traffic, from now
        return state

    def judge_canary(self, role: str, health: HealthMonitor) -> str | None:
        """Roll the canary back when it failed or does worse than the primary; the reason, or None."""
        state = self.states[role]
        if state.canary is None:
            return None
        if health.state(state.canary.model) == "failed":
            reason: str | None = "failed its health checks"
        else:
            reason = canary_verdict(
                health.stats(state.canary.model),
                health.stats(state.primary),
                self.config,
                (state.outcomes.get(state.canary.model), state.outcomes.get(state.primary)),
            )
        if reason is not None:
            state.last_rollback = {
                "model": state.canary.model,
                "percent": state.canary.percent,
                "reason": reason,
            }
            state.canary = None
        return reason

    def count_answer(self, role: str, model: str) -> None:
        served = self.states[role].served
        served[model] = served.get(model, 0) + 1

    def record_outcome(self, role: str, model: str, outcome: float) -> None:
        kept = self.states[role].outcomes.setdefault(model, deque(maxlen=OUTCOMES_KEPT))
        kept.append(outcome)

    def learn(self, role: str, model: str, features: Mapping[str, float], reward: float) -> None:
        router = self.states[role].router
        if router is not None and model in router.models:
            router.update(model, features, reward)

    def describe(self, health: HealthMonitor) -> dict[str, Any]:
        """Each role's chain with the health of its models, its canary and its last rollback."""
        out = {}
        for name, state in self.states.items():
            models = [*state.models, *([state.canary.model] if state.canary else [])]
            served = {m: _rate(state.outcomes.get(m)) for m in models if m in state.outcomes}
            out[name] = {
                "primary": state.primary,
                "backups": state.backups,
                "routing": state.routing,
                "canary": None if state.canary is None else vars(state.canary),
                "served": {m: state.served.get(m, 0) for m in models},
                "outcome_rate": {m: {"n": n, "rate": rate} for m, (n, rate) in served.items()},
                "last_rollback": state.last_rollback,
                "health": {m: health.state(m) for m in models},
            }
            if state.router is not None:
                out[name]["bandit_pulls"] = dict(state.router.pulls)
        return out
