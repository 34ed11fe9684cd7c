"""One request's path through the server, and the state that lives across requests.

`model` names a role or a served model, and the key must be allowed to call it (`auth.key_access`).
For a role: input guardrails -> the role's chain (canary share, bandit, healthiest first) ->
generation, failing over to the next model when one errs or times out -> output guardrails (a
non-conforming answer is retried once, then refused) -> canary judgement and the bandit's reward. A
model named directly gets exactly that model, no failover, under `direct_guardrails`: naming a
backup model must not be a way around a role's rules.

Stop strings on a role whose task checks its format: the check runs on the whole answer, then the
answer is cut at the first stop string. The check is about what the model can do (a cut answer would
fail it, and the client chose the cut); the client gets what it asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from srl_rlvr.cloud.cloudwatch import serving_emf_line, write_emf
from srl_rlvr.data.pii import redact_text
from srl_rlvr.data.secrets import redact_secrets
from srl_rlvr.errors import ConfigError, UserError
from srl_rlvr.modeling import render_chat
from srl_rlvr.serve.audit import AuditLog
from srl_rlvr.serve.auth import RateLimiter, load_keys
from srl_rlvr.serve.config import RecordsConfig, RoleConfig, ServeConfig
from srl_rlvr.serve.encoders import EncoderSet
from srl_rlvr.serve.generation import Completion, cut_at_stops
from srl_rlvr.serve.guardrails import Checked, Message, Violation, check_input, check_output, format_check
from srl_rlvr.serve.health import RANK, HealthMonitor
from srl_rlvr.serve.metrics import ServeMetrics
from srl_rlvr.serve.models import ModelFailure, ModelSet, PromptTooLong, UnusablePrompt
from srl_rlvr.serve.openai_api import ApiError
from srl_rlvr.serve.roles import Roles
from srl_rlvr.serve.routing import request_features, reward
from srl_rlvr.serve.sampling_params import RowSampling
from srl_rlvr.serve.structured import role_grammar
from srl_rlvr.serve.tools import ToolPlan
from srl_rlvr.tasks.outcome import Outcome, check_answer, correction_error

if TYPE_CHECKING:
    from srl_rlvr.data.records import RecordStore

log = logging.getLogger(__name__)


def open_records(config: RecordsConfig) -> RecordStore:
    """The store requests are recorded in. Imported here, not at the top: the store is SQLAlchemy,
    and a server with `records: null` (an encoder-only or benchmark server) must start without it."""
    from srl_rlvr.data.records import RecordStore

    return RecordStore(config.url, config.max_records, busy_timeout_s=config.busy_timeout_s, journal=True)


@dataclass(frozen=True)
class Answer:
    choices: list[Completion]
    refusals: list[str | None]  # set where the output guardrails refused that choice
    served_by: str

    @property
    def completion(self) -> Completion:
        return self.choices[0]

    @property
    def refusal(self) -> str | None:
        return self.refusals[0]


@dataclass(frozen=True)
class Ask:
    """What one request asks for, after parsing: the messages (a completion's prompt is one user
    message), whether to render them as chat, and the generation settings."""

    name: str
    messages: list[Message]
    chat: bool
    max_tokens: int
    temperature: float
    stop: list[str]
    key_id: str
    request_id: str
    n: int = 1
    sampling: RowSampling | None = None  # beyond the temperature: seed, top_p, log-probs, penalties, grammar
    user: str | None = None
    metadata: dict[str, str] | None = None
    tools: ToolPlan | None = None  # the tools the model may call, rendered into its prompt
    tool_choice: Any = None  # as the client sent it: also applies to a role's MCP tools
    routed: bool = False  # `model: "auto"`: the intent router chose the role in `name`

    def row(self, temperature: float | None = None) -> RowSampling:
        """The sampling of one row, at `temperature` instead of the request's when given (a retry)."""
        base = self.sampling or RowSampling(self.temperature)
        return replace(base, temperature=self.temperature if temperature is None else temperature)


class Server:
    """Everything a running server holds: keys, models, health, roles, guardrail checks, audit, metrics."""

    def __init__(self, config: ServeConfig) -> None:
        from srl_rlvr.tasks import load_task

        self.config = config
        self.keys = load_keys(config.auth)
        self.limiter = RateLimiter(config.auth.requests_per_second, config.auth.burst)
        self.models = ModelSet(config.device, config.limits.max_batch)
        self.encoders = EncoderSet(config.device)  # embedding, reranker and classifier models
        self.health = HealthMonitor(config.health)
        self.roles = Roles(config.roles, config.canary)
        self.formats = {name: format_check(role) for name, role in config.roles.items()}
        self.tasks = {name: load_task(role.task) for name, role in config.roles.items() if role.task}
        self.grammars = {
            name: role_grammar(name, role, self.tasks.get(name))
            for name, role in config.roles.items()
            if role.constrain_output
        }
        self.audit = AuditLog(config.audit_log)
        self.metrics = ServeMetrics()
        self.records = None if config.records is None else open_records(config.records)
        self._flusher: asyncio.Task[None] | None = None
        self.ready = False
        self.load_error: str | None = None
        self._probes: asyncio.Task[None] | None = None

    def load(self) -> None:
        """Blocking: every configured base model, then the adapters on them."""
        if self.config.cpu_threads is not None:
            import torch

            torch.set_num_threads(self.config.cpu_threads)
        for name, model in self.config.models.items():
            if model.type != "causal_lm":
                self.encoders.load(name, model.path, model.type)
            elif model.base is None:
                self.models.load_base(name, model.path)
        if self.config.router is not None:
            from srl_rlvr.serve.intent_router import unknown_labels

            unknown = unknown_labels(self.encoders, self.config.router, self.config.roles)
            if unknown:
                raise UserError(
                    f"router.model '{self.config.router.model}' predicts roles this server lacks: {', '.join(unknown)}"
                )
        for name, model in self.config.models.items():
            if model.base is not None:
                self.models.attach(name, model.path, model.base)

    async def start(self) -> None:
        """Load models off the event loop (/health answers meanwhile), then start probing them."""
        try:
            await asyncio.to_thread(self.load)
        except Exception as e:  # /ready reports it; the process stays up so an operator can see why
            log.exception("loading models failed")
            self.load_error = f"{type(e).__name__}: {e}"
            return
        self.ready = True
        self._probes = asyncio.create_task(
            self.health.probe_forever(lambda: list(self.models.where), self._probe)
        )

    async def stop(self) -> None:
        if self._probes is not None:
            self._probes.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probes
        if self._flusher is not None:
            await self._flusher
        if self.records is not None and self.records.pending:
            try:
                await asyncio.to_thread(self.records.flush)
            except Exception as e:  # whatever failed, the rows must outlive the process
                log.error("%s: saved in %s instead", e, self.records.save_pending())
        await asyncio.to_thread(self.models.close)

    async def _probe(self, model: str) -> None:
        await self.models.generate(model, "ping", 1, RowSampling(0.0), [], self.config.health.probe_timeout_s)

    def served_names(self) -> list[str]:
        return [*self.config.roles, *self.models.where, *self.encoders.models]

    async def answer(self, ask: Ask) -> Answer:
        if ask.name == "auto" and self.config.router is not None:
            from srl_rlvr.serve.intent_router import route

            routed = await route(self.encoders, self.config.router, ask.messages)
            log.debug(
                "auto -> %s (%.2f%s)",
                routed.role,
                routed.confidence,
                ", fallback" if routed.fell_back else "",
            )
            ask = replace(ask, name=routed.role, routed=True)
        if ask.name in self.encoders.models:
            kind = self.encoders.models[ask.name].type
            route_of = {"embedding": "embeddings", "reranker": "rerank", "classifier": "classify"}[kind]
            raise ApiError(400, f"'{ask.name}' is a {kind} model: call POST /v1/{route_of}", param="model")
        role = self.config.roles.get(ask.name)
        if role is None and ask.name not in self.models.where:
            raise ApiError(
                404,
                f"model '{ask.name}' does not exist; served: {', '.join(self.served_names())}",
                code="model_not_found",
                param="model",
            )
        allowed = self.config.auth.key_access.get(ask.key_id)
        if allowed is not None and ask.name not in allowed:
            raise ApiError(403, f"key {ask.key_id} may not call '{ask.name}' (serve.auth.key_access)")
        if role is not None and role.mcp_servers and (ask.tools is not None or ask.n > 1):
            param = "tools" if ask.tools is not None else "n"
            raise ApiError(
                400,
                f"role '{ask.name}' runs its own MCP tools and answers one choice; drop {param}",
                param=param,
            )
        if role is not None and role.task and ask.tools is not None:
            raise ApiError(
                400,
                f"role '{ask.name}' answers its task's prompt, which has no place for tools; call a model "
                "or a role without a task",
                param="tools",
            )
        if ask.tools is not None and ask.tools.forced is not None:
            if ask.row().grammar is not None:
                raise ApiError(
                    400,
                    "a forced tool_choice and response_format both constrain the answer; send one",
                    param="tool_choice",
                )
            ask = replace(ask, sampling=replace(ask.row(), grammar=ask.tools.forced))
        guardrails = role.guardrails if role is not None else self.config.direct_guardrails
        checked = check_input(guardrails.input, ask.messages)
        if checked.refused is None and ask.tools is not None:  # tool definitions are client text too
            tools = [{"role": "system", "content": json.dumps(ask.tools.rendered)}]
            checked_tools = check_input(guardrails.input.model_copy(update={"max_chars": None}), tools)
            if checked_tools.refused is not None and checked_tools.refused.rule == "input.injection":
                checked = Checked(checked.value, checked_tools.violations)
        self._report(checked.violations, ask, ask.name)
        if checked.refused is not None:
            whose = f"role '{ask.name}'" if role is not None else "direct model access"
            raise ApiError(
                400,
                f"refused by guardrail {checked.refused.rule} of {whose}",
                code="guardrail_violation",
                param=checked.refused.rule,
            )
        ask = replace(ask, messages=checked.value)
        began = time.perf_counter()
        try:
            answer = await self._answer(ask, role)
        except ApiError as e:
            if e.status >= 500:  # no model could answer: production's error rate counts it
                self._record(ask, None, began)
                self._emit_latency(ask, None, began)
            raise
        self._record(ask, answer, began)
        self._emit_latency(ask, answer, began)
        return answer

    def _emit_latency(self, ask: Ask, answer: Answer | None, began: float) -> None:
        """The request's latency as a CloudWatch EMF line (serve.cloudwatch), for the tier's alarm."""
        emf = self.config.cloudwatch
        if emf is None:
            return
        status = "error" if answer is None else "refused" if answer.refusal else "ok"
        line = serving_emf_line(
            emf.namespace,
            emf.tier,
            ask.name,
            1000 * (time.perf_counter() - began),
            "-" if answer is None else answer.served_by,
            status,
        )
        try:
            write_emf(emf, line)
        except (ConfigError, OSError) as e:  # a full disk or a closed pipe must not fail the request
            log.warning("serve.%s", e)

    async def _answer(self, ask: Ask, role: RoleConfig | None) -> Answer:
        if role is None:
            completions, served = await self._generate(ask, [ask.name])
            choices = []
            for completion in completions:
                answer = check_output(self.config.direct_guardrails.output, completion.text)
                self._report(answer.violations, ask, served)
                self._count_tokens(served, completion)
                choices.append(replace(completion, text=answer.value))
            return Answer(choices, [None] * len(choices), served)
        began = time.perf_counter()
        features = request_features(sum(len(m["content"]) for m in ask.messages) // 4, role=ask.name)
        chain = self.roles.chain(ask.name, self.health, features)
        if ask.name in self.grammars and ask.row().grammar is None:
            ask = replace(ask, sampling=replace(ask.row(), grammar=self.grammars[ask.name]))
        checked_whole = self.formats[ask.name] is not None and ask.stop
        generated = replace(ask, stop=[]) if checked_whole else ask  # the format check sees it all
        if role.mcp_servers:
            completions, served = await self._answer_with_tools(generated, role, chain)
        else:
            completions, served = await self._generate(generated, chain)
        choices, refusals = [], []
        for completion in completions:
            completion, refusal = await self._enforce_output(generated, role, chain, completion, served)
            choices.append(cut_at_stops(completion, ask.stop) if checked_whole else completion)
            refusals.append(refusal)
            self._count_tokens(served, completion)
        refusal = next((r for r in refusals if r), None)
        canary = self.roles.states[ask.name].canary
        if canary is not None and canary.model in chain:  # it is in the chain when this request drew it
            reason = self.roles.judge_canary(ask.name, self.health)
            if reason is not None:
                self.metrics.rollbacks.labels(ask.name).inc()
                log.warning("role %s: canary %s rolled back: %s", ask.name, canary.model, reason)
        quality = 0.0 if refusal else 1.0
        self.roles.learn(
            ask.name, served, features, reward(quality, 0.0, 1000 * (time.perf_counter() - began))
        )
        self.roles.count_answer(ask.name, served)
        return Answer(choices, refusals, served)

    async def _answer_with_tools(
        self, ask: Ask, role: RoleConfig, chain: list[str]
    ) -> tuple[list[Completion], str]:
        """The role's model calling its MCP servers' tools (tool_loop.py) until it answers."""
        from srl_rlvr.serve.tool_loop import answer_with_tools

        served = chain[0]

        async def generate(round_ask: Ask) -> Completion:
            nonlocal served
            completions, served = await self._generate(round_ask, chain)
            return completions[0]

        def audit(rule: str, action: str) -> None:  # the audit log only: a tool call is no violation
            self.audit.write(
                key_id=ask.key_id,
                model=served,
                role=ask.name,
                rule=rule,
                action=action,
                request_id=ask.request_id,
            )

        try:
            completion = await answer_with_tools(ask, role.mcp_servers, role.tool_loop, generate, audit)
        except ApiError:
            raise
        except Exception as e:  # the outside edge: a tool server that would not start or list its tools
            raise ApiError(
                503, f"role '{ask.name}': its MCP servers are unavailable: {e}", code="tools_unavailable"
            ) from None
        return [completion], served

    def _record(self, ask: Ask, answer: Answer | None, began: float) -> None:
        """Keep the request (its text as the guardrails left it) with the task's check of the answer;
        written to the store in the background, so a slow or locked database never delays a reply."""
        if self.records is None:
            return
        user = [m["content"] for m in ask.messages if m["role"] == "user"]
        text = user[-1] if user else ""
        task = self.tasks.get(ask.name)
        outcome = Outcome(None, None)
        if answer is not None and task is not None:
            outcome = check_answer(task, text, answer.completion.text)
            if outcome.value is not None:
                self.roles.record_outcome(ask.name, answer.served_by, outcome.value)
        status = "error" if answer is None else "refused" if answer.refusal else "ok"
        asked = {"user": ask.user} if ask.user else {}
        asked.update({f"metadata.{k}": v for k, v in (ask.metadata or {}).items()})
        if ask.routed:  # the router's own choice: no label to train the next router on
            asked["routed_from"] = "auto"
        from srl_rlvr.data.records import Record

        self.records.add(
            Record(
                request_id=ask.request_id,
                key_id=ask.key_id,
                model=ask.name,
                served_by="-" if answer is None else answer.served_by,
                prompt=self._unsecret(text),
                completion="" if answer is None else self._unsecret(answer.completion.text),
                latency_ms=1000 * (time.perf_counter() - began),
                outcome=outcome.value,
                checked=outcome.checked,
                features={**outcome.features, **asked},
                status=status,
            )
        )
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_records())

    def _unsecret(self, text: str) -> str:
        """Secrets (API keys, tokens, passwords; this server's own keys first) never reach the records,
        whatever a role's guardrails say."""
        return redact_secrets(text, self.keys)[0]

    async def _flush_records(self) -> None:
        from srl_rlvr.data.records import StoreError

        assert self.records is not None
        while self.records.pending:
            try:
                await asyncio.to_thread(self.records.flush)
            except StoreError as e:  # the rows stay buffered; the next request's flush retries them
                log.warning("%s", e)
                return

    async def feedback(self, key_id: str, request_id: str, rating: int, correction: str | None) -> None:
        """Store a rating of a recorded request; a correction must pass the role's task check."""
        if self.records is None:
            raise ApiError(404, "this server records nothing (serve.records is off), so it takes no feedback")
        from srl_rlvr.data.records import Feedback, StoreError

        try:
            record = await asyncio.to_thread(self.records.record, request_id)
        except StoreError as e:
            raise ApiError(
                503, f"{e}; retry", code="store_unavailable", headers={"Retry-After": "1"}
            ) from None
        if record is None:
            raise ApiError(404, f"no recorded request '{request_id}'", code="not_found", param="request_id")
        admins = self.config.auth.admin_keys
        if record.key_id != key_id and key_id not in (admins or []):
            raise ApiError(403, f"key {key_id} may rate only its own requests", param="request_id")
        task = self.tasks.get(record.model)
        if correction is not None and task is not None:
            why = correction_error(task, record.prompt, correction)
            if why is not None:
                raise ApiError(
                    400, f"correction refused: {why}", code="invalid_correction", param="correction"
                )
        if correction is not None:  # stored as a request's text is: secrets and the role's PII redacted
            role = self.config.roles.get(record.model)
            rules = role.guardrails.input if role is not None else self.config.direct_guardrails.input
            correction = redact_text(self._unsecret(correction), rules.redact_pii)[0]
        try:
            await asyncio.to_thread(
                self.records.add_feedback, Feedback(request_id, rating, correction, key_id=key_id)
            )
        except StoreError as e:
            raise ApiError(
                503, f"{e}; retry", code="store_unavailable", headers={"Retry-After": "1"}
            ) from None

    def _prompt(self, ask: Ask, model: str) -> str:
        if not ask.chat:
            # An empty completion prompt starts from the model's document boundary, as OpenAI's does:
            # a prompt of no tokens at all crashed the model (found by the API fuzzer).
            tokenizer = self.models.tokenizer(model)
            return ask.messages[-1]["content"] or tokenizer.bos_token or tokenizer.eos_token or " "
        task = self.tasks.get(ask.name)
        if task is not None:
            from srl_rlvr.modeling import chat_prompt
            from srl_rlvr.tasks import Problem

            user = [m["content"] for m in ask.messages if m["role"] == "user"]
            problem = Problem(id=ask.request_id, text=user[-1] if user else "", answer=None)
            return chat_prompt(self.models.tokenizer(model), task.prompt(problem))  # as in training
        tools = ask.tools.rendered if ask.tools is not None else None
        return render_chat(self.models.tokenizer(model), ask.messages, tools)

    async def _generate(
        self, ask: Ask, chain: list[str], temperature: float | None = None, n: int | None = None
    ) -> tuple[list[Completion], str]:
        """The first answer down the chain; a model that fails is recorded and the next one tried."""
        error: Exception | None = None
        for attempt, model in enumerate(chain[: self.config.limits.failover_attempts]):
            began = time.perf_counter()
            try:
                completion = await self.models.generate(
                    model,
                    self._prompt(ask, model),
                    ask.max_tokens,
                    ask.row(temperature),
                    ask.stop,
                    self.config.limits.request_timeout_s,
                    ask.n if n is None else n,
                )
            except PromptTooLong as e:
                raise ApiError(400, str(e), code="context_length_exceeded", param="max_tokens") from None
            except UnusablePrompt as e:
                raise ApiError(400, str(e), code="invalid_prompt", param="messages") from None
            except ModelFailure as e:
                self.health.record(model, False, 1000 * (time.perf_counter() - began))
                self.metrics.model_errors.labels(model).inc()
                log.warning("request %s: %s failed, trying the next model: %s", ask.request_id, model, e)
                error = e
                continue
            self.health.record(model, True, 1000 * (time.perf_counter() - began))
            if attempt:
                self.metrics.failovers.labels(ask.name).inc()
            return completion, model
        raise ApiError(
            503,
            f"no model could answer '{ask.name}': {error}",
            code="model_unavailable",
            headers={"Retry-After": "1"},
        )

    async def _enforce_output(
        self, ask: Ask, role: RoleConfig, chain: list[str], completion: Completion, served: str
    ) -> tuple[Completion, str | None]:
        rules = role.guardrails.output
        conforms = self.formats[ask.name]
        if conforms is not None and not conforms(completion.text):
            self._report([Violation("output.format", "retry")], ask, served)
            retry_chain = [served, *(m for m in chain if m != served)]
            retried, served = await self._generate(ask, retry_chain, rules.retry_temperature, n=1)
            completion = retried[0]
            if not conforms(completion.text):
                self._report([Violation("output.format", "refuse")], ask, served)
                return completion, rules.refusal
        checked = check_output(rules, completion.text)
        self._report(checked.violations, ask, served)
        return replace(completion, text=checked.value), None

    def _report(self, violations: list[Violation], ask: Ask, model: str) -> None:
        for v in violations:
            self.metrics.violations.labels(ask.name, model, v.rule, v.action).inc()
            self.audit.write(
                key_id=ask.key_id,
                model=model,
                role=ask.name,
                rule=v.rule,
                action=v.action,
                request_id=ask.request_id,
            )

    def _count_tokens(self, model: str, c: Completion) -> None:
        self.metrics.tokens.labels(model, "prompt").inc(c.prompt_tokens)
        self.metrics.tokens.labels(model, "completion").inc(c.completion_tokens)

    def render_metrics(self) -> bytes:
        for model in self.models.where:
            self.metrics.health.labels(model).set(RANK[self.health.state(model)])
        for model, restarts in self.models.restarts().items():
            self.metrics.worker_restarts.labels(model).set(restarts)
        return self.metrics.render()

    # -- runtime changes: adapters, canary, chaos ---------------------------------------------------------

    def _roles_using(self, model: str) -> list[str]:
        return [
            name
            for name, s in self.roles.states.items()
            if model in s.models or (s.canary is not None and s.canary.model == model)
        ]

    async def load_adapter(self, name: str, path: str, base: str | None) -> None:
        if name in self.config.roles:
            raise ApiError(400, f"'{name}' is a role; choose another adapter name", param="lora_name")
        if (
            base is None
        ):  # a hot-swap keeps the adapter's base; a new adapter needs one when there are several
            base = self.models.adapters().get(name)
        if base is None:
            if len(self.models.workers) != 1:
                bases = ", ".join(self.models.workers)
                raise ApiError(400, f"several base models are loaded ({bases}): say which in base_model_name")
            base = next(iter(self.models.workers))
        await asyncio.to_thread(self.models.attach, name, path, base)

    async def unload_adapter(self, name: str) -> None:
        users = self._roles_using(name)
        if users:
            raise ApiError(400, f"role(s) {', '.join(users)} use '{name}'; shift them to another model first")
        await asyncio.to_thread(self.models.detach, name)

    async def shift(self, role: str, to: str, percent: float) -> dict[str, object]:
        """Canary `to` at `percent` of the role's traffic, loading it first when it is not served yet: an
        adapter attaches to the base of the role's primary, anything else loads as a base model."""
        if role not in self.roles.states:
            raise ApiError(404, f"no role '{role}'; roles: {', '.join(self.roles.states)}", param="role")
        if to not in self.models.where and percent > 0:
            from srl_rlvr.modeling import is_adapter_folder, model_source
            from srl_rlvr.tracking.registry import resolve_source

            folder = await asyncio.to_thread(lambda: model_source(resolve_source(to)))
            if is_adapter_folder(folder):
                base = self.models.where[self.roles.states[role].primary].name
                await asyncio.to_thread(self.models.attach, to, folder, base)
            else:
                await asyncio.to_thread(self.models.load_base, to, to)
        self.roles.shift(role, to, percent)
        return self.roles.describe(self.health)[role]

    def set_failing(self, model: str, failing: bool) -> None:
        if model not in self.models.where:
            raise ApiError(404, f"model '{model}' is not loaded", param="model")
        self.models.set_failing(model, failing)
