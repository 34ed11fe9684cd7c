"""The server's typed configuration: the `serve:` section of the YAML file `srl-rlvr serve` takes.

Every default lives here, once, with its reason. Unknown keys are errors that name the closest valid
key, and every model a role names must be one the file defines.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from srl_rlvr.config import METRIC_NAMESPACE, EmfOutput, apply_override, parse_yaml
from srl_rlvr.data.pii import PII_KINDS
from srl_rlvr.errors import ConfigError
from srl_rlvr.model_types import ModelType
from srl_rlvr.schema import schema_errors

# Phrasings of the common "forget your instructions" and "show me your prompt" attacks, matched against
# every message and the joined conversation after normalisation (guardrails.injection_views: NFKC, no
# marks, confusables read as ASCII, no invisible or format characters, casefolded, leetspeak and base64
# or ROT13 decoded). A role may replace or extend them. Patterns stop the attacks
# they describe, reworded within their gaps; they do not stop paraphrase, other languages, or
# instructions hidden in data the model reads (the README says so).
DEFAULT_INJECTION_PATTERNS = [
    r"\b(ignore|disregard|forget|override|bypass)\b.{0,100}\b(instructions?|prompts?|rules|guidelines|directives)\b",
    r"\b(reveal|print|repeat|show|output|display|tell me|give me|leak)\b.{0,30}\b(system prompt|system message|"
    r"hidden (instructions?|prompt)|initial (instructions?|prompt)|your (instructions|prompt))\b",
    r"\byou are now\b.{0,20}\b(dan|jailbroken|developer mode|unrestricted)\b",
    r"\b(pretend|act as if)\b.{0,30}\b(no|without) (rules|restrictions|guidelines)\b",
]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _compiled(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as e:
            raise ValueError(f"invalid regular expression {pattern!r}: {e}") from None
    return patterns


def _pii_kinds(kinds: list[str]) -> list[str]:
    unknown = sorted(set(kinds) - set(PII_KINDS))
    if unknown:
        raise ValueError(f"unknown PII kind(s) {', '.join(unknown)}; valid: {', '.join(PII_KINDS)}")
    return kinds


Patterns = Annotated[list[str], AfterValidator(_compiled)]
PiiKinds = Annotated[list[str], AfterValidator(_pii_kinds)]


class ServedModel(Section):
    """A model the server loads: a base (`path` alone) or a LoRA adapter attached to one (`base`)."""

    path: str = Field(
        description="'tiny', 'embedded', a folder, a hub id or registry:NAME@ALIAS / registry:NAME/VERSION. "
        "With `base` set, a LoRA adapter folder (or registry reference to one)."
    )
    base: str | None = Field(
        None, description="Name of the served base model this adapter attaches to; the base loads once."
    )
    type: ModelType = Field(
        "causal_lm",
        description="causal_lm answers chat and completions; embedding answers POST /v1/embeddings, "
        "reranker POST /v1/rerank, classifier POST /v1/classify (and may be the intent router).",
    )


class RouterConfig(Section):
    """`model: "auto"`: the intent router (a served classifier whose labels are role names) picks the role."""

    model: str = Field(description="The served classifier model whose labels are this server's roles.")
    confidence_floor: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Below this top probability the request goes to default_role: a wrong role answers "
        "worse than the general one, and half the probability mass is the least a clear winner holds.",
    )
    default_role: str = Field(description="The role that answers when the router is unsure.")


class InputRules(Section):
    max_chars: int | None = Field(
        8000, gt=0, description="Longest request text (all message contents together); longer is refused."
    )
    injection_patterns: Patterns = Field(
        default_factory=lambda: list(DEFAULT_INJECTION_PATTERNS),
        description="Regexes for prompt-injection attempts, matched against every message (system ones "
        "too) after normalisation (casefolded, NFKC, zero-width characters dropped); a match refuses.",
    )
    scope_patterns: Patterns = Field(
        default_factory=list,
        description="When set, user text must match one of these regexes: the role stays on its job.",
    )
    schema_: str | None = Field(
        None,
        alias="schema",
        description="'module:PydanticModel' that the last user message must be JSON of; else refused.",
    )
    redact_pii: PiiKinds = Field(
        default_factory=list,
        description="PII kinds (email, phone, card, ssn, iban, ip, address) replaced before the model sees "
        "them. Off by default: an extraction role may need the very text it would hide.",
    )


class OutputRules(Section):
    schema_: str | None = Field(
        None,
        alias="schema",
        description="'module:PydanticModel' the answer must be JSON of (the role's task, when it names "
        "one, checks its own format with parse()). A non-conforming answer is retried once, then refused.",
    )
    retry_temperature: float = Field(
        0.7, ge=0.0, description="Sampling temperature of the one retry: a greedy retry repeats the answer."
    )
    refusal: str = Field(
        "I could not produce an answer in the required format.",
        description="What a client gets (as the message's `refusal`) when the retry fails too.",
    )
    max_chars: int | None = Field(None, gt=0, description="Longer answers are cut to this many characters.")
    blocklist: list[str] = Field(
        default_factory=list,
        description="Words or phrases (case-insensitive, whole words) an answer must not contain.",
    )
    safe_reply: str = Field(
        "I can't help with that.", description="Replaces an answer that hits the blocklist."
    )
    redact_pii: PiiKinds = Field(
        default_factory=list, description="PII kinds replaced in answers before they leave the server."
    )


class Guardrails(Section):
    """A role's rules (guardrails.py applies them); every violation is audited."""

    input: InputRules = Field(default_factory=InputRules)
    output: OutputRules = Field(default_factory=OutputRules)


class McpToolServer(Section):
    """An MCP server whose tools a role's model may call: a command to run (stdio) or a URL."""

    command: list[str] | None = Field(None, min_length=1, description="Program and arguments (stdio).")
    url: str | None = Field(None, description="A streamable HTTP endpoint, http(s)://host/mcp.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment of a command.")

    @model_validator(mode="after")
    def _one_transport(self) -> McpToolServer:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of command (stdio) or url (streamable HTTP)")
        return self


class ToolLoopConfig(Section):
    max_calls: int = Field(4, ge=1, description="Tool calls per request; then the model must answer.")
    call_timeout_s: float = Field(
        20.0, gt=0, description="A tool call slower than this fails (the model sees why)."
    )


class RoleConfig(Section):
    """A job an application asks for by name (`model: <role>`), served by a chain of models."""

    primary: str = Field(description="The served model that takes the role's traffic.")
    backups: list[str] = Field(
        default_factory=list, description="Tried in order when the models before them are unhealthy or fail."
    )
    routing: Literal["chain", "bandit"] = Field(
        "chain",
        description="'chain': primary first, backups on failure. 'bandit': LinUCB learns which of them "
        "serves best (reward: format compliance minus latency, serve/routing.py); failover still applies.",
    )
    task: str | None = Field(
        None,
        description="The task the role's models were trained on (built-in name or module:Class): a chat "
        "request's last user message is wrapped in its prompt() (a completion's prompt is sent as is), and "
        "answers are checked with its parse().",
    )
    guardrails: Guardrails = Field(default_factory=Guardrails)
    mcp_servers: dict[str, McpToolServer] = Field(
        default_factory=dict,
        description="MCP servers whose tools the role's model may call: the server offers them in the "
        "prompt, runs each call (audited) and feeds the result back, up to tool_loop.max_calls.",
    )
    tool_loop: ToolLoopConfig = Field(default_factory=ToolLoopConfig)
    constrain_output: bool = Field(
        False,
        description="Decode every answer under the role's answer schema (its task's `answer_model`, else "
        "guardrails.output.schema) by constrained decoding, so it always parses: the answer becomes the "
        "JSON alone, with no reasoning before it. A request's own response_format takes precedence.",
    )


class AuthConfig(Section):
    enabled: bool = Field(True, description="Off only for a server nobody else can reach.")
    api_keys_env: str | None = Field(
        "SRL_RLVR_API_KEYS", description="Environment variable holding comma-separated API keys."
    )
    keys_file: str | None = Field(None, description="A file of `id: key` lines; the id is what logs show.")
    admin_keys: list[str] | None = Field(
        None,
        description="Key ids allowed on adapter and /admin routes and to rate others' requests; None: "
        "no key (the routes answer 404): admin is opt-in.",
    )
    key_access: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Key id -> the roles and models it may call (403 otherwise); a key id not listed may "
        "call every role and model.",
    )
    requests_per_second: float = Field(20.0, gt=0, description="Sustained request rate per key.")
    burst: int = Field(40, gt=0, description="Requests a key may send at once before the rate applies.")


class LimitsConfig(Section):
    max_body_bytes: int = Field(1_000_000, gt=0, description="Larger request bodies get 413.")
    max_tokens: int = Field(1024, gt=0, description="Largest `max_tokens` a request may ask for (else 400).")
    default_max_tokens: int = Field(
        256, gt=0, description="When a request does not say (at most max_tokens)."
    )
    default_temperature: float = Field(
        0.0, ge=0.0, description="When a request does not say: task models answer best greedily."
    )
    max_batch: int = Field(32, gt=0, description="Requests generated together in one batch per base model.")
    max_inputs: int = Field(
        2048,
        gt=0,
        description="Texts one /v1/embeddings, /v1/rerank or /v1/classify request may send (OpenAI's own "
        "limit for embeddings); more is a 400, not a server busy for minutes.",
    )
    request_timeout_s: float = Field(
        120.0, gt=0, description="A generation slower than this counts as the model failing."
    )
    failover_attempts: int = Field(
        2, ge=1, description="Models a request is tried on before the client sees an error."
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A connection that has not sent a request's headers this long after it opened (or "
        "after the last response) is closed: slow clients must not hold sockets (slow-loris).",
    )


class HealthConfig(Section):
    probe_interval_s: float = Field(10.0, gt=0, description="Seconds between probes of each model.")
    probe_timeout_s: float = Field(30.0, gt=0, description="A probe slower than this failed.")
    window_s: float = Field(60.0, gt=0, description="Live error rate and latency are over this window.")
    min_requests: int = Field(5, gt=0, description="Fewer requests in the window say nothing about a rate.")
    consecutive_failures: int = Field(
        3, gt=0, description="Errors in a row that mark a model failed, whatever the window holds."
    )
    degraded_error_rate: float = Field(
        0.1, ge=0, le=1, description="Error rate over the window that marks a model degraded (used last)."
    )
    failed_error_rate: float = Field(
        0.5, ge=0, le=1, description="Error rate over the window that marks a model failed (skipped)."
    )
    degraded_p95_ms: float | None = Field(
        20_000.0, gt=0, description="p95 latency above this marks a model degraded; None: no limit."
    )


class CanaryConfig(Section):
    min_requests: int = Field(
        20, gt=0, description="Requests the canary must have served in the window before it is judged."
    )
    error_rate_margin: float = Field(
        0.05, ge=0, description="Roll back when canary error rate > primary's + this."
    )
    latency_margin: float = Field(
        0.5, ge=0, description="Roll back when canary p95 > primary p95 × (1 + this) + latency_slack_ms."
    )
    latency_slack_ms: float = Field(
        200.0, ge=0, description="Absolute slack on p95: small samples of fast models are noisy."
    )
    outcome_margin: float = Field(
        0.05,
        ge=0,
        description="Roll back when the canary's verified outcome rate (the role's task checking its "
        "answers) < the primary's - this; needs min_requests checks of each.",
    )


class RecordsConfig(Section):
    """Where each answered request is recorded (data/records.py), for monitoring and retraining."""

    url: str = Field(
        "sqlite:///serve-records.db",
        description="Any SQLAlchemy URL: a SQLite file by default (relative to the working directory), "
        "postgresql://... for a team's database.",
    )
    max_records: int = Field(
        100_000, gt=0, description="Retention: the newest requests kept; older ones go, with their feedback."
    )
    busy_timeout_s: float = Field(
        5.0, gt=0, description="How long a write waits for another writer's lock before it is retried later."
    )


class ServeEmf(EmfOutput):
    """One CloudWatch EMF line per answered request: its latency, what the tier's latency alarm watches."""

    @model_validator(mode="after")
    def _folder_exists(self) -> ServeEmf:
        if self.to != "stdout" and not Path(self.to).parent.is_dir():
            raise ValueError(f"to: the folder of {self.to} does not exist")
        return self

    namespace: str = Field(
        METRIC_NAMESPACE, description="CloudWatch namespace: the run config's aws.namespace."
    )


class ServeConfig(Section):
    host: str = Field("127.0.0.1", description="0.0.0.0 to accept connections from other machines.")
    port: int = Field(8000, ge=0, le=65535, description="0: any free port (tests).")
    device: str = Field("auto", description="Where models load: 'auto' (cuda if available), 'cpu', 'cuda:1'.")
    cpu_threads: int | None = Field(
        None,
        gt=0,
        description="torch threads for generation (process-wide); None: torch's default, one per core. On a "
        "small shared CPU, 1: OpenMP threads that contend for busy cores spin, and a batch took 40x longer.",
    )
    models: dict[str, ServedModel] = Field(description="Served models by name (the `model` clients send).")
    roles: dict[str, RoleConfig] = Field(default_factory=dict, description="Jobs, each a chain of models.")
    router: RouterConfig | None = Field(
        None, description="Route `model: \"auto\"` requests with an intent router; None: 'auto' is unknown."
    )
    auth: AuthConfig = Field(default_factory=AuthConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    canary: CanaryConfig = Field(default_factory=CanaryConfig)
    direct_guardrails: Guardrails = Field(
        default_factory=lambda: Guardrails(
            input=InputRules(redact_pii=list(PII_KINDS)), output=OutputRules(redact_pii=list(PII_KINDS))
        ),
        description="Rules for a request that names a served model instead of a role: no role's rules "
        "apply there, so these do (size, injection, PII redaction both ways; no format check). Every "
        "violation is audited like a role's.",
    )
    records: RecordsConfig | None = Field(
        default_factory=RecordsConfig,
        description="Record every answered request (text after the guardrails' redaction, the key's id, "
        "the model that answered, latency, the task's check) and accept POST /v1/feedback; null: off.",
    )
    cloudwatch: ServeEmf | None = Field(
        None,
        description="Write each answered request's latency_ms as a CloudWatch embedded-metric-format line "
        "(dimensions tier, and tier with role), to stdout or a file; null: off.",
    )
    audit_log: str = Field("serve-audit.jsonl", description="Append-only JSONL of guardrail violations.")
    manage_db: str | None = Field(
        None,
        description="SQLAlchemy URL of the management layer's state (its manage.db, or the records store "
        "it defaults to): GET /admin/manage shows it, read only, to admin keys; None: that route is off (404).",
    )
    chaos: bool = Field(
        False, description="Enable POST /admin/fail, which makes a model fail on purpose (tests, drills)."
    )

    @model_validator(mode="after")
    def _names_resolve(self) -> ServeConfig:
        clash = sorted(set(self.models) & set(self.roles))
        if clash:
            raise ValueError(f"names used for both a model and a role: {', '.join(clash)}")
        for name, model in self.models.items():
            if model.base is not None:
                base = self.models.get(model.base)
                if base is None or base.base is not None:
                    raise ValueError(f"models.{name}.base: '{model.base}' is not a base model defined here")
        served = set(self.models) | set(self.roles)
        for key_id, names in self.auth.key_access.items():
            unknown = sorted(set(names) - served)
            if unknown:
                raise ValueError(f"auth.key_access.{key_id}: no role or model {', '.join(unknown)}")
        for name, model in self.models.items():
            if model.type != "causal_lm" and model.base is not None:
                raise ValueError(f"models.{name}: a {model.type} model is served whole, without a base")
        if "auto" in served:
            raise ValueError("'auto' names the intent router's choice; call no model or role 'auto'")
        if self.router is not None:
            router = self.models.get(self.router.model)
            if router is None or router.type != "classifier":
                raise ValueError(
                    f"router.model: '{self.router.model}' is not a classifier model defined here"
                )
            if self.router.default_role not in self.roles:
                raise ValueError(f"router.default_role: no role '{self.router.default_role}'")
        for name, role in self.roles.items():
            if role.mcp_servers and role.task:
                raise ValueError(f"roles.{name}: a role with mcp_servers answers chat, not a task's prompt")
            for used in [role.primary, *role.backups]:
                if used not in self.models:
                    raise ValueError(
                        f"roles.{name}: unknown model '{used}'; models: {', '.join(self.models)}"
                    )
                if self.models[used].type != "causal_lm":
                    raise ValueError(
                        f"roles.{name}: '{used}' is a {self.models[used].type}, not a chat model"
                    )
        return self


def build_serve_config(raw: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> ServeConfig:
    """A ServeConfig from the mapping under `serve:`; overrides look like `serve.port=9000`."""
    wrapped = {"serve": dict(raw)}
    for override in overrides:
        apply_override(wrapped, override)
    try:
        return ServeConfig.model_validate(wrapped["serve"])
    except ValidationError as e:
        raise ConfigError("\n".join(schema_errors(e, ServeConfig, prefix="serve"))) from None


def load_serve_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ServeConfig:
    """The `serve:` section of a YAML file (other top-level sections, such as a run's, are left alone)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    raw = parse_yaml(path.read_text(), source=str(path)) or {}
    if not isinstance(raw, dict) or not isinstance(raw.get("serve"), dict):
        raise ConfigError(f"{path}: no `serve:` section (see examples/serve.yaml)")
    return build_serve_config(raw["serve"], overrides)
