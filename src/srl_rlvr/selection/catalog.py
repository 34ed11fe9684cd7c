"""Role profiles and the candidate catalog: the two YAML files model selection reads.

A role profile is a requirement analysis written down: what the job needs. The
catalog says what each model offers. Numbers from our own evaluation (`measured:`, a report.json
from `srl-rlvr eval`) replace the reported ones; the reported ones are kept, so validation can check
that the two agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from srl_rlvr.config import parse_yaml
from srl_rlvr.errors import ConfigError, DataError
from srl_rlvr.model_types import ModelType
from srl_rlvr.schema import schema_errors

RoleKind = Literal["interaction", "expert_analysis", "content_generation", "classification"]
Maturity = Literal["new", "stable", "established"]

MATURITY_SCORE: dict[str, float] = {"new": 0.3, "stable": 0.7, "established": 1.0}
DAYS_PER_MONTH = 30
API = "api"  # the hardware name of a model served by someone else's endpoint


class Schema(BaseModel):
    """Unknown keys are errors: a misspelt requirement must not silently become no requirement."""

    model_config = ConfigDict(extra="forbid")


class Requirements(Schema):
    """Hard requirements: a candidate failing any of them is filtered out before scoring."""

    max_latency_ms: float | None = Field(
        None, gt=0, description="Limit on p95 latency; unset means async (seconds to minutes are fine)."
    )
    min_accuracy: float | None = Field(
        None, description="Floor on the benchmark the role counts as accuracy (see RoleProfile.benchmarks)."
    )
    max_cost_per_1m_tokens: float | None = Field(None, ge=0, description="USD, blended prompt+completion.")
    hardware_available: list[str] = Field(
        default_factory=list,
        description="Where we can run a model (L4, A10G, 8xH200, ...); 'api' admits paid APIs; empty: any.",
    )
    throughput_rps: float | None = Field(
        None, gt=0, description="Peak requests per second; validation reports the replicas it needs."
    )
    availability_sla: float | None = Field(
        None, gt=0, le=1, description="An API must publish at least this uptime; self-hosting is ours."
    )
    min_context_window: int | None = Field(None, gt=0)
    tool_use: bool = Field(False, description="Require function calling.")
    multimodal: bool = False
    monthly_budget_usd: float | None = Field(
        None, ge=0, description="Validation: inference at the expected load must stay within this."
    )


class Load(Schema):
    """Expected traffic: what monthly cost and the cost-benefit analysis are computed at."""

    requests_per_day: float = Field(10_000, gt=0)
    tokens_per_request: float = Field(500, gt=0, description="Prompt plus completion tokens.")

    @property
    def tokens_per_month(self) -> float:
        return self.requests_per_day * DAYS_PER_MONTH * self.tokens_per_request


class RoleProfile(Schema):
    role: str = Field(min_length=1)
    primary_function: str = Field(description="The model's core responsibility, in a sentence.")
    kind: RoleKind = Field(
        "interaction", description="The branch of the decision tree (`decision_tree.py`) this role follows."
    )
    real_time: bool = Field(False, description="Classification branch: real-time means a small model.")
    quality: Literal["standard", "maximum"] = Field(
        "standard", description="Content generation branch: maximum means a large MoE model."
    )
    requirements: Requirements = Field(default_factory=Requirements)
    weights: dict[str, float] | None = Field(
        None, description="Criterion weights; unset: the decision tree's PRIMARY_CRITERIA for this role."
    )
    benchmarks: dict[str, str] = Field(
        default_factory=dict,
        description="Criterion -> catalog benchmark key, e.g. {accuracy: mmlu}; unmapped: same name.",
    )
    load: Load = Field(default_factory=Load)
    task: str | None = Field(None, description="The srl-rlvr task an adopted model is trained on.")
    model_type: ModelType = Field(
        "causal_lm",
        description="What fills the role. An encoder role (embedding, reranker, classifier) takes "
        "candidates of its type only, of any size, weighed by the type's own held-out metric "
        "(nDCG@10, macro-F1) unless the role names weights.",
    )

    @model_validator(mode="after")
    def _real_time_has_a_budget(self) -> RoleProfile:
        if self.real_time and self.requirements.max_latency_ms is None:
            raise ValueError("a real-time role needs requirements.max_latency_ms")
        if self.weights is not None and (
            any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0
        ):
            raise ValueError("weights must be >= 0 and not all 0")
        return self

    def benchmark_key(self, criterion: str) -> str:
        return self.benchmarks.get(criterion, criterion)


class Latency(Schema):
    p50: float = Field(gt=0)
    p95: float = Field(gt=0)


class Capabilities(Schema):
    tool_use: bool = False
    multimodal: bool = False
    lora: bool = Field(False, description="We can fine-tune it with LoRA adapters (open weights).")


class MeasuredRef(Schema):
    """Our own evaluation of this model: a report.json written by `srl-rlvr eval` or `run` (a causal
    LM's or an encoder's: both keep label -> metrics under `results`)."""

    report: str = Field(description="Path to report.json, relative to the catalog file.")
    label: str = Field(description="Which result in the report (base, srl, rlvr, ...).")
    metrics: dict[str, str] = Field(
        default_factory=dict, description="Report metric -> catalog benchmark key; unmapped: same name."
    )


class CandidateEntry(Schema):
    id: str = Field(min_length=1, description="HF hub id or API model name: a run config's model.")
    name: str | None = Field(None, description="Short display name; defaults to the id's last segment.")
    parameters_b: float | None = Field(
        None, gt=0, description="Billions of parameters; null: undisclosed (a frontier API), counted large."
    )
    active_parameters_b: float | None = Field(None, gt=0, description="Per token, for MoE models.")
    context_window: int = Field(gt=0)
    hardware: list[str] = Field(min_length=1, description="Where it fits; ['api'] for a hosted model.")
    benchmarks: dict[str, float] = Field(default_factory=dict, description="Reported figures.")
    latency_ms: Latency
    throughput_rps: float | None = Field(None, gt=0, description="Per replica, at the latency above.")
    cost_per_1m_tokens: float = Field(ge=0, description="USD: self-hosted estimate or blended API price.")
    training_cost_usd: float | None = Field(
        None, ge=0, description="One fine-tuning run; null: cannot be fine-tuned here."
    )
    capabilities: Capabilities = Field(default_factory=Capabilities)
    maturity: Maturity = "stable"
    availability: float | None = Field(
        None, gt=0, le=1, description="Published uptime SLA of an API; null for self-hosted models."
    )
    measured: MeasuredRef | None = None
    model_type: ModelType = Field(
        "causal_lm", description="embedding, reranker or classifier for an encoder (`model.type`)."
    )
    source: str = Field("", description="Where the numbers come from.")


class CatalogFile(Schema):
    candidates: list[CandidateEntry] = Field(min_length=1)


@dataclass(frozen=True)
class Candidate:
    """A catalog entry with its effective numbers: measured where we measured, reported elsewhere."""

    entry: CandidateEntry
    benchmarks: dict[str, float]
    latency: Latency
    measured: dict[str, float] = field(default_factory=dict)
    latency_measured: bool = False

    @property
    def id(self) -> str:
        return self.entry.id

    @property
    def name(self) -> str:
        return self.entry.name or self.entry.id.rsplit("/", 1)[-1]

    @property
    def is_api(self) -> bool:
        return self.entry.hardware == [API]

    @property
    def parameters(self) -> str:
        p = self.entry.parameters_b
        if p is None:
            return "undisclosed"
        active = f" ({self.entry.active_parameters_b:g}B active)" if self.entry.active_parameters_b else ""
        return f"{p:g}B{active}"


ModelT = TypeVar("ModelT", bound=BaseModel)


def validate_file(model: type[ModelT], raw: Any, source: str) -> ModelT:
    """Validate parsed YAML/JSON against a schema; errors name the file and the key to fix."""
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{source}: {'; '.join(schema_errors(e, model))}") from None


def _read(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"file not found: {path}")
    return parse_yaml(path.read_text(), source=str(path))  # JSON is YAML too


def load_role(path: str | Path) -> RoleProfile:
    return validate_file(RoleProfile, _read(path), str(path))


def read_measurement(ref: MeasuredRef, base_dir: Path) -> tuple[dict[str, float], Latency | None]:
    """The metrics (renamed to catalog benchmark keys) and latency of one result in an eval report."""
    path = base_dir / ref.report
    if not path.is_file():
        raise DataError(f"measured report not found: {path}; run `srl-rlvr eval` or fix measured.report")
    try:
        results = json.loads(path.read_text())["results"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise DataError(f"{path} is not an evaluation report.json (no 'results')") from None
    if ref.label not in results:
        raise DataError(f"{path} has no result '{ref.label}'; it has: {', '.join(results)}")
    result = results[ref.label]
    metrics = {
        ref.metrics.get(name, name): float(value)
        for name, value in result.get("metrics", {}).items()
        if isinstance(value, int | float)
    }
    latency = result.get("latency_ms")
    return metrics, Latency(p50=latency["p50"], p95=latency["p95"]) if latency else None


def resolve_candidate(entry: CandidateEntry, base_dir: Path) -> Candidate:
    if entry.measured is None:
        return Candidate(entry, dict(entry.benchmarks), entry.latency_ms)
    measured, latency = read_measurement(entry.measured, base_dir)
    return Candidate(
        entry,
        benchmarks={**entry.benchmarks, **measured},
        latency=latency or entry.latency_ms,
        measured=measured,
        latency_measured=latency is not None,
    )


def parse_catalog(raw: Any, base_dir: Path, source: str = "<catalog>") -> list[Candidate]:
    catalog = validate_file(CatalogFile, raw, source)
    candidates = [resolve_candidate(entry, base_dir) for entry in catalog.candidates]
    seen: set[str] = set()
    for c in candidates:
        for key in {c.id, c.name}:
            if key in seen:
                raise ConfigError(f"{source}: '{key}' names two candidates; give each a unique id and name")
            seen.add(key)
    return candidates


def load_catalog(path: str | Path) -> list[Candidate]:
    """Load a catalog YAML/JSON; `measured.report` paths are relative to the catalog's folder."""
    return parse_catalog(_read(path), Path(path).parent, str(path))


def find_candidate(candidates: list[Candidate], key: str) -> Candidate:
    for c in candidates:
        if key in (c.id, c.name):
            return c
    raise ConfigError(f"no candidate '{key}' in the catalog; it has: {', '.join(c.name for c in candidates)}")
