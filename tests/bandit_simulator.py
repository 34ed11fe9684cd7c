"""A bandit simulator for the router's tests: models whose reward is known, requests of random length."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from srl_rlvr.serve.routing import DEFAULT_LAMBDA, DEFAULT_MU, LinUCBRouter, request_features, reward


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
