"""How one choice of one request is sampled, and which OpenAI parameters the server refuses.

A parameter the server does not implement is a 400 naming it, never silently ignored: a client that
sent `logit_bias` or `best_of` believes it got what they do. `user` and `metadata` are accepted and
kept with the request's record; everything that changes sampling lives in `RowSampling`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from srl_rlvr.serve.structured import Grammar, GrammarError, grammar_of

# OpenAI request parameters this server does not implement, with what to do instead.
UNSUPPORTED = {
    "logit_bias": "token biases are not supported",
    "best_of": "best_of is not supported; use n",
    "echo": "echo is not supported",
    "suffix": "suffix (insertion) is not supported",
    "functions": "the deprecated `functions` is not supported; use tools",
    "function_call": "the deprecated `function_call` is not supported; use tool_choice",
    "modalities": "only text output is supported",
    "audio": "audio output is not supported",
    "prediction": "predicted outputs are not supported",
    "reasoning_effort": "reasoning_effort is not supported",
    "web_search_options": "web search is not supported",
    "service_tier": "service tiers are not supported",
}


@dataclass(frozen=True)
class RowSampling:
    """One row's sampling. `logprobs`: None for none, 0 for the chosen token's, k for the top k too."""

    temperature: float
    top_p: float = 1.0
    seed: int | None = None
    logprobs: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    grammar: Grammar | None = None

    @property
    def plain(self) -> bool:
        """Nothing beyond a temperature: the fast engine's sampler covers it."""
        return (
            self.top_p == 1.0
            and self.seed is None
            and self.logprobs is None
            and not self.frequency_penalty
            and not self.presence_penalty
            and self.grammar is None
        )

    def for_choice(self, index: int) -> RowSampling:
        """The sampling of choice `index` of `n`: a seeded request's choices differ, yet each repeats."""
        if self.seed is None or index == 0:
            return self
        return RowSampling(
            self.temperature,
            self.top_p,
            self.seed + index,
            self.logprobs,
            self.frequency_penalty,
            self.presence_penalty,
            self.grammar,
        )


def unsupported_parameter(body: dict[str, Any]) -> tuple[str, str] | None:
    """The first OpenAI parameter in `body` the server would have to ignore, and why; None if none.
    A parameter at its no-op value (`echo: false`, `best_of: 1`, empty `logit_bias`) is fine."""
    for name, why in UNSUPPORTED.items():
        value = body.get(name)
        no_op = value in (None, False, {}, [], "auto", "default")
        if no_op or (name, value) in (("best_of", 1), ("modalities", ["text"])):
            continue
        return name, why
    return None


def request_sampling(body: Any, temperature: float, max_n: int) -> RowSampling:
    """The sampling an OpenAI request body (openai_api's ChatRequest or CompletionRequest) asks for.
    Raises the 400 that names a parameter the server cannot honour."""
    from srl_rlvr.serve.openai_api import ApiError

    if body.n > max_n:
        raise ApiError(400, f"n {body.n} is over this server's batch size {max_n}", param="n")
    try:
        grammar = grammar_of(getattr(body, "response_format", None))
    except GrammarError as e:
        raise ApiError(400, f"response_format: {e}", param="response_format") from None
    return RowSampling(
        temperature=temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        seed=body.seed,
        logprobs=body.logprob_count,
        frequency_penalty=body.frequency_penalty or 0.0,
        presence_penalty=body.presence_penalty or 0.0,
        grammar=grammar,
    )
