"""Route each request to one of a role's models, learning from observed reward which one serves it best.

Disjoint LinUCB (Li, Chu, Langford & Schapire 2010, "A Contextual-Bandit Approach to Personalized News
Article Recommendation", Algorithm 1): per model, a ridge regression of reward on the request's
features; send the request to the model whose upper confidence bound θᵀx + α·sqrt(xᵀA⁻¹x) is highest.
Reward = quality − λ·cost − μ·latency, so a cheap fast model wins where it is good enough.
The server keeps one router per role that lists several models.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_LAMBDA = 10.0  # reward lost per USD a request costs: $0.01 costs 0.1 of quality
DEFAULT_MU = 1e-3  # reward lost per ms: one second costs 1.0 of quality


def reward(
    quality: float, cost: float, latency_ms: float, lam: float = DEFAULT_LAMBDA, mu: float = DEFAULT_MU
) -> float:
    """quality (0..1, e.g. the task's verifier) − λ·cost (USD per request) − μ·latency (ms)."""
    return quality - lam * cost - mu * latency_ms


def request_features(prompt_tokens: int, role: str | None = None) -> dict[str, float]:
    """Features of a request: log length (≈1 at 4k tokens) and a one-hot `role:NAME`."""
    features = {"length": math.log2(1 + max(prompt_tokens, 0)) / 12}
    if role is not None:
        features[f"role:{role}"] = 1.0
    return features


class LinUCBRouter:
    """LinUCB over named features plus a bias; state lives across requests, hence a class.

    Feature keys the router was not built with are ignored, so a caller may pass more than it uses.
    """

    def __init__(
        self,
        models: Sequence[str],
        alpha: float = 1.0,
        features: Sequence[str] = ("length",),
        ridge: float = 1.0,
    ) -> None:
        if len(set(models)) != len(models) or not models:
            raise ValueError("models must be distinct and at least one")
        self.models = list(models)
        self.alpha = alpha
        self.features = list(features)
        dim = len(self.features) + 1
        self.A = {m: ridge * np.eye(dim) for m in self.models}
        self.b = {m: np.zeros(dim) for m in self.models}
        self.pulls = dict.fromkeys(self.models, 0)

    def vector(self, features: Mapping[str, float]) -> np.ndarray:
        return np.array([1.0, *(float(features.get(name, 0.0)) for name in self.features)])

    def upper_bounds(self, features: Mapping[str, float]) -> dict[str, float]:
        x = self.vector(features)
        bounds = {}
        for m in self.models:
            inverse = np.linalg.inv(self.A[m])
            theta = inverse @ self.b[m]
            bounds[m] = float(theta @ x + self.alpha * math.sqrt(float(x @ inverse @ x)))
        return bounds

    def choose(self, features: Mapping[str, float]) -> str:
        """The model to send this request to (ties: the first listed)."""
        bounds = self.upper_bounds(features)
        return max(self.models, key=lambda m: bounds[m])

    def expected_reward(self, model: str, features: Mapping[str, float]) -> float:
        x = self.vector(features)
        return float(np.linalg.solve(self.A[model], self.b[model]) @ x)

    def update(self, model: str, features: Mapping[str, float], observed: float) -> None:
        """Learn from one served request's reward (see `reward`)."""
        if model not in self.A:
            raise ValueError(f"unknown model '{model}'; the router has {', '.join(self.models)}")
        x = self.vector(features)
        self.A[model] += np.outer(x, x)
        self.b[model] += observed * x
        self.pulls[model] += 1

    def state(self) -> dict[str, Any]:
        """JSON-ready state, so a server restart keeps what was learned."""
        return {
            "models": self.models,
            "alpha": self.alpha,
            "features": self.features,
            "A": {m: a.tolist() for m, a in self.A.items()},
            "b": {m: b.tolist() for m, b in self.b.items()},
            "pulls": self.pulls,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> LinUCBRouter:
        router = cls(state["models"], state["alpha"], state["features"])
        router.A = {m: np.array(a) for m, a in state["A"].items()}
        router.b = {m: np.array(b) for m, b in state["b"].items()}
        router.pulls = dict(state["pulls"])
        return router


@dataclass(frozen=True)
class SimulatedModel:
    """A model whose quality depends linearly on request length, with noise; fixed cost and latency."""

    name: str
    quality: float
    quality_per_length: float = 0.0
    cost: float = 0.0
    latency_ms: float = 0.0
    noise: float = 0.1

    def mean_reward(self, features: Mapping[str, float], lam: float, mu: float) -> float:
        quality = self.quality + self.quality_per_length * features.get("length", 0.0)
        return reward(quality, self.cost, self.latency_ms, lam, mu)


@dataclass
class Simulation:
    choices: list[str] = field(default_factory=list)
    best: list[str] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)

    @property
    def hits(self) -> list[bool]:
        return [c == b for c, b in zip(self.choices, self.best, strict=True)]

    def hit_rate(self, last: int = 100) -> float:
        recent = self.hits[-last:]
        return sum(recent) / len(recent)

    def rounds_to_converge(self, window: int = 100, threshold: float = 0.95) -> int | None:
        """First round by which the best model was chosen in ≥ threshold of the previous `window`."""
        hits = np.array(self.hits, dtype=float)
        if len(hits) < window:
            return None
        rates = np.convolve(hits, np.ones(window), "valid") / window
        reached = np.nonzero(rates >= threshold)[0]
        return int(reached[0]) + window if len(reached) else None


def simulate(
    router: LinUCBRouter,
    models: Sequence[SimulatedModel],
    rounds: int,
    seed: int = 0,
    lam: float = DEFAULT_LAMBDA,
    mu: float = DEFAULT_MU,
    max_prompt_tokens: int = 4096,
) -> Simulation:
    """Seeded requests of random length; the router picks, sees a noisy reward and learns."""
    rng = np.random.default_rng(seed)
    by_name = {m.name: m for m in models}
    sim = Simulation()
    for _ in range(rounds):
        features = request_features(int(rng.integers(1, max_prompt_tokens + 1)))
        chosen = router.choose(features)
        model = by_name[chosen]
        observed = model.mean_reward(features, lam, mu) + rng.normal(0.0, model.noise)
        router.update(chosen, features, observed)
        sim.choices.append(chosen)
        sim.best.append(max(models, key=lambda m: m.mean_reward(features, lam, mu)).name)
        sim.rewards.append(observed)
    return sim
