"""Prometheus metrics of one server, on a registry of its own (several servers may share a process: tests).

`model` on request metrics is the name the client asked for (a role or a model; '-' for a name we do not
serve, so a client cannot grow the label set); on token and error metrics it is the model that answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass
class ServeMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "srl_rlvr_requests",
            "Requests by route, requested model and status.",
            ["route", "model", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "srl_rlvr_request_latency_seconds",
            "Request latency by route and requested model.",
            ["route", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "srl_rlvr_tokens", "Tokens by serving model and kind.", ["model", "kind"], registry=r
        )
        self.model_errors = Counter(
            "srl_rlvr_model_errors",
            "Failed attempts (a request may fail over) by model.",
            ["model"],
            registry=r,
        )
        self.failovers = Counter(
            "srl_rlvr_failovers", "Requests that moved to a backup, by role.", ["role"], registry=r
        )
        self.violations = Counter(
            "srl_rlvr_guardrail_violations",
            "Guardrail violations by role, model, rule and action.",
            ["role", "model", "rule", "action"],
            registry=r,
        )
        self.rollbacks = Counter(
            "srl_rlvr_canary_rollbacks", "Automatic canary rollbacks by role.", ["role"], registry=r
        )
        self.health = Gauge(
            "srl_rlvr_model_health", "0 healthy, 1 degraded, 2 failed.", ["model"], registry=r
        )

        self.worker_restarts = Gauge(
            "srl_rlvr_worker_restarts",
            "Times a base model's thread had died and was started again.",
            ["model"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
