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

    def update(self, model: str, features: Mapping[str, float], observed: float) -> None:
        """Learn from one served request's reward (see `reward`)."""
        if model not in self.A:
            raise ValueError(f"unknown model '{model}'; the router has {', '.join(self.models)}")
        x = self.vector(features)
        self.A[model] += np.outer(x, x)
        self.b[model] += observed * x
        self.pulls[model] += 1

    def state(self) -> dict[str, Any]:
        """JSON-ready state, which `from_state` reads back. The server does not save it: a restarted
        server's routers start afresh and learn again from the requests that follow."""
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
