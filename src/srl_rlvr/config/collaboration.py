"""`collaboration:`: the teacher, verifier and judge that write the expert trajectories (the generate stage),
and how their requests are sent, retrieved for and paid for."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag

from srl_rlvr.config.section import Section


class EndpointConfig(Section):
    """An OpenAI-compatible chat endpoint: OpenRouter, OpenAI, vLLM, Ollama, or our own server."""

    base_url: str = Field(description="e.g. https://openrouter.ai/api/v1 or http://localhost:8000/v1.")
    model: str | None = Field(None, description="Model name sent with each request; unset: cloud_llm_model.")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY",
        description="Environment variable holding the API key (the key itself never goes in a config); "
        "null for a local server that needs none.",
    )
    temperature: float = Field(0.7, ge=0)
    max_tokens: int = Field(
        1024, gt=0, description="Reply length limit; a reply cut off here is repaired or rejected."
    )
    json_mode: bool = Field(
        True, description="Ask for response_format json_object (dropped automatically where unsupported)."
    )


class LocalTeacherConfig(Section):
    """A local Hugging Face model as teacher: a folder, a hub id, 'embedded' or 'tiny'."""

    local_model: str
    temperature: float = Field(0.7, ge=0)
    max_tokens: int = Field(512, gt=0)


class ModelPrice(Section):
    input_per_1m: float = Field(0.0, ge=0, description="USD per million prompt tokens.")
    output_per_1m: float = Field(0.0, ge=0, description="USD per million completion tokens.")


class RetrievalConfig(Section):
    """Context Retriever: the top passages of a knowledge folder go into the teacher's prompt."""

    knowledge_dir: str | None = Field(
        None,
        description="Folder of .md/.txt/.jsonl domain knowledge (rules, docs, historical examples); a "
        "rules.yaml in it adds checkable rules. Unset: no retrieval.",
    )
    top_k: int = Field(3, ge=0)
    method: Literal["bm25", "dense"] = Field(
        "bm25", description="bm25 (offline, bm25s); dense needs sentence-transformers and a model download."
    )
    dense_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    rerank_model: str | None = Field(
        None,
        description="A trained reranker (model.type: reranker; a folder or registry:NAME@ALIAS) that "
        "reorders the first stage's candidates; None: the first stage's order.",
    )
    rerank_candidates: int = Field(
        20, gt=0, description="First-stage passages the reranker reads per problem (one forward pass each)."
    )


class RequestConfig(Section):
    """How teacher and judge requests are sent: concurrency, retries, circuit breaker, cache."""

    concurrency: int = Field(16, gt=0, description="Problems in flight at once.")
    timeout_s: float = Field(60.0, gt=0, description="Per request.")
    max_retries: int = Field(4, ge=0, description="Retries on timeouts, connection errors, 429 and 5xx.")
    backoff_s: float = Field(0.5, ge=0, description="First retry wait; doubles each retry, with full jitter.")
    backoff_max_s: float = Field(20.0, ge=0)
    breaker_failures: int = Field(
        5, gt=0, description="Consecutive failed requests that open the circuit breaker and stop the run."
    )
    breaker_cooldown_s: float = Field(30.0, ge=0)
    cache_dir: str | None = Field(
        "~/.cache/srl-rlvr/llm",
        description="Answers keyed by request content, so a rerun costs nothing; null turns it off.",
    )


class ProblemSourceConfig(Section):
    """Where problems come from: the task's sampler, a user file, or the teacher proposing new ones."""

    source: Literal["task", "file", "generate"] = "task"
    path: str | None = Field(None, description="source file: JSONL rows {text, answer?, id?, metadata?}.")
    instructions: str = Field(
        "", description="source generate: what kind of problems to write (the task prompt is shown too)."
    )
    shown_examples: int = Field(
        5, ge=0, description="source generate: existing problems shown per request, to steer away from them."
    )
    dedup_threshold: float = Field(
        0.8,
        gt=0,
        le=1,
        description="source generate: a problem whose word-trigram Jaccard similarity to an earlier one "
        "reaches this is a near-duplicate and dropped.",
    )
    max_generated: int = Field(
        10_000, gt=0, description="source generate: stop proposing after this many problems in all."
    )


def _teacher_kind(value: Any) -> str:
    """Pick the teacher form by its shape, so a typo gets one error for that form, not one per form."""
    if isinstance(value, dict):
        return "local" if "local_model" in value else "endpoint"
    if isinstance(value, BaseModel):
        return "local" if isinstance(value, LocalTeacherConfig) else "endpoint"
    return "solver"


TeacherChoice = Annotated[
    Annotated[Literal["solver"], Tag("solver")]
    | Annotated[EndpointConfig, Tag("endpoint")]
    | Annotated[LocalTeacherConfig, Tag("local")],
    Discriminator(_teacher_kind),
]


DEFAULT_RUBRIC = (
    "Score the trajectory from 0 to 1: 1 when every step is correct, necessary and follows from the "
    "previous ones, the final outcome is right and the domain rules are kept; subtract for each wrong, "
    "missing or irrelevant step. When you can fix it, give the corrected trajectory."
)


class CollaborationConfig(Section):
    """Teacher/verifier team that writes expert trajectories (a teacher writes, a verifier checks, an optional judge scores and corrects)."""

    teacher: TeacherChoice = Field(
        "solver",
        description="'solver' (the task's programmatic expert), {base_url, model, api_key_env} (an "
        "OpenAI-compatible endpoint) or {local_model} (a local HF model).",
    )
    judge: EndpointConfig | None = Field(
        None, description="Optional LLM judge: scores 0..1 against judge_rubric and may correct a trajectory."
    )
    judge_rubric: str = DEFAULT_RUBRIC
    cloud_llm_model: str = Field(
        "openai/gpt-4", description="Model name for an endpoint teacher or judge that names none."
    )
    num_examples_per_request: int = Field(
        10, gt=0, description="Problems the teacher proposes per request (problems.source generate)."
    )
    max_regeneration_attempts: int = Field(3, ge=0, description="Teacher retries after a verifier rejection.")
    min_verification_score: float = Field(
        0.7, ge=0.0, le=1.0, description="Keep a trajectory at or above this."
    )
    max_problems_factor: float = Field(
        3.0,
        ge=1,
        description="Try at most this many times n problems: a teacher that fails on most of them stops "
        "with what it has instead of spending without end.",
    )
    min_steps: int = Field(1, gt=0, description="Verifier: fewer steps is a rejection.")
    max_steps: int = Field(32, gt=0, description="Verifier: more steps is a rejection.")
    redact_pii: list[str] = Field(
        default_factory=lambda: ["email", "phone", "card", "ssn", "iban", "ip", "address"],
        description="PII kinds replaced by placeholders before a row is stored; [] keeps text as it is.",
    )
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict, description="Per model name, for the cost column of the generation manifest."
    )
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    requests: RequestConfig = Field(default_factory=RequestConfig)
    problems: ProblemSourceConfig = Field(default_factory=ProblemSourceConfig)
