"""The selection record: every model choice written down, with what it was chosen over and why.

A YAML file under `model_selection:` with the role, tier, time, candidates evaluated, the winner, its
score and criteria breakdown, a plain-language reasoning, the alternatives with their scores, the
rejected candidates with reasons, and the validation results. It reads back into the same object.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from srl_rlvr.config import parse_yaml
from srl_rlvr.errors import ConfigError
from srl_rlvr.selection.catalog import Schema, validate_file
from srl_rlvr.selection.decision_tree import Tier
from srl_rlvr.selection.mcda import Scored, Selection, Validation

WORSE = {"latency": "higher latency", "cost": "higher cost"}


class Alternative(Schema):
    model: str
    score: float
    note: str = Field(description="Where it loses most weighted score against the winner.")


class RejectedModel(Schema):
    model: str
    reasons: list[str]


class SelectionRecord(Schema):
    role: str
    tier: Tier
    decision_rule: str
    timestamp: str
    candidates_evaluated: int
    selected_model: str
    selection_score: float
    weights: dict[str, float]
    criteria_breakdown: dict[str, float]
    reasoning: str
    alternatives_considered: list[Alternative]
    rejected: list[RejectedModel]
    validation_results: Validation


class RecordFile(Schema):
    model_selection: SelectionRecord


def _weakest_point(alternative: Scored, winner: Scored, weights: dict[str, float]) -> str:
    losses = {name: weights[name] * (winner.criteria[name] - alternative.criteria[name]) for name in weights}
    name, loss = max(losses.items(), key=lambda kv: kv[1])
    if loss <= 0:
        return "scores level with the winner"
    return WORSE.get(name, f"lower {name}")


def _reasoning(selection: Selection, winner: Scored) -> str:
    profile, c = selection.profile, winner.candidate
    req, v = profile.requirements, winner.validation
    lines = [
        f"Selected {c.name} for the {profile.role} role ({selection.branch.tier} tier: "
        f"{selection.branch.rule}, {selection.branch.size}).",
        "Primary factors:",
    ]
    latency = f"p95 {c.latency.p95:g} ms, {'measured' if c.latency_measured else 'reported'}"
    if req.max_latency_ms is not None:
        lines.append(f"- meets the {req.max_latency_ms:g} ms latency requirement ({latency})")
    else:
        lines.append(f"- async role; latency {latency}")
    key = profile.benchmark_key("accuracy")
    if key in c.benchmarks:
        source = "measured" if key in c.measured else "reported"
        floor = f" (minimum {req.min_accuracy:g})" if req.min_accuracy is not None else ""
        lines.append(f"- {key} {c.benchmarks[key]:g}, {source}{floor}")
    lines.append(
        f"- ${c.entry.cost_per_1m_tokens:g} per 1M tokens, about ${v.monthly_cost_usd:,.0f}/month at "
        f"{profile.load.requests_per_day:,.0f} requests/day"
    )
    lines.append(f"- runs on {', '.join(c.entry.hardware)}")
    if v.latency_verified is None or v.benchmark_match is None:
        lines.append(
            "Not yet verified by our own evaluation: add `measured:` (an eval report.json) to its "
            "catalog entry and select again."
        )
    return "\n".join(lines) + "\n"


def build_record(selection: Selection, now: datetime | None = None) -> SelectionRecord:
    """The record of a selection; refuses when no candidate passed, naming why each was rejected."""
    winner = selection.selected
    if winner is None:
        reasons = "; ".join(f"{r.candidate.name}: {', '.join(r.reasons)}" for r in selection.rejected)
        raise ConfigError(
            f"no candidate meets role {selection.profile.role}'s requirements ({reasons}); "
            "loosen the requirements or add candidates"
        )
    now = now or datetime.now(timezone.utc)
    return SelectionRecord(
        role=selection.profile.role,
        tier=selection.branch.tier,
        decision_rule=selection.branch.rule,
        timestamp=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        candidates_evaluated=selection.evaluated,
        selected_model=winner.candidate.id,
        selection_score=round(winner.score, 4),
        weights={k: round(w, 4) for k, w in selection.weights.items()},
        criteria_breakdown={k: round(s, 4) for k, s in winner.criteria.items()},
        reasoning=_reasoning(selection, winner),
        alternatives_considered=[
            Alternative(
                model=s.candidate.id,
                score=round(s.score, 4),
                note=_weakest_point(s, winner, selection.weights),
            )
            for s in selection.ranked[1:]
        ],
        rejected=[RejectedModel(model=r.candidate.id, reasons=r.reasons) for r in selection.rejected],
        validation_results=winner.validation,
    )


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the reasoning) as `|` blocks, so a reader sees the reasoning as written."""


def _str(dumper: yaml.SafeDumper, value: str) -> Any:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def dump_record(record: SelectionRecord) -> str:
    return yaml.dump(
        {"model_selection": record.model_dump(mode="json")},
        Dumper=_BlockDumper,
        sort_keys=False,
        allow_unicode=True,
    )


def write_record(record: SelectionRecord, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_record(record))
    return path


def read_record(path: str | Path) -> SelectionRecord:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"selection record not found: {path}")
    return validate_file(RecordFile, parse_yaml(path.read_text(), str(path)), str(path)).model_selection
