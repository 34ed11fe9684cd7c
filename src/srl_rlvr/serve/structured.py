"""Structured output by constrained decoding: `response_format` json_object / json_schema as a grammar.

The grammar masks, at every decoding step, the tokens that would take the answer out of the language
(JSON, or JSON of one schema), so what comes back parses and validates by construction, at any
temperature; only running out of `max_tokens` can leave it unfinished (finish_reason "length").

Library: xgrammar (Dong et al. 2024, "XGrammar: Flexible and Efficient Structured Generation Engine
for Large Language Models"). Of the four well-kept choices it fits best: it installs from PyPI as a
wheel that runs on a CPU as well as a GPU, builds its tokenizer table straight from a HF tokenizer,
compiles a schema once per tokenizer (cached), and fills a packed token bitmask per row that one call
applies to a batch of logits on either device: exactly what our per-row logits processor
(row_sampling.py) needs inside HF `generate` and the fast engine. In a quick trial on this project's
byte-level tiny tokenizer (random logits, 60 tokens of a two-field schema, a loaded 2-core CPU):
xgrammar 9 ms, llguidance 24 s (we did not look for why); lm-format-enforcer is pure Python, and
outlines-core builds an index over the vocabulary per schema up front. `strict` schemas (OpenAI's strict
mode) forbid properties the schema does not name; output is compact JSON (no free whitespace), which
keeps a random or weak model from spending its budget on spaces.
"""

from __future__ import annotations

import json
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Literal

import xgrammar as xgr

from srl_rlvr.errors import ConfigError


class GrammarError(ValueError):
    """A response_format the server cannot turn into a grammar; the message says what is wrong."""


@dataclass(frozen=True)
class Grammar:
    """What the answer must be: any JSON object, or JSON of `schema` (a JSON Schema, as JSON text)."""

    kind: Literal["json_object", "json_schema"]
    schema: str | None = None
    strict: bool = True


def grammar_of(response_format: dict[str, Any] | None) -> Grammar | None:
    """The grammar an OpenAI `response_format` asks for; None for plain text. Raises GrammarError."""
    if response_format is None:
        return None
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return Grammar("json_object")
    if kind != "json_schema":
        raise GrammarError(f"type '{kind}' is not one of text, json_object, json_schema")
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise GrammarError("json_schema.schema must be a JSON Schema object")
    grammar = Grammar("json_schema", json.dumps(spec["schema"]), bool(spec.get("strict")))
    try:  # tokenizer-independent: a bad schema is the client's 400, not a model failure later
        xgr.Grammar.from_json_schema(grammar.schema, strict_mode=grammar.strict, any_whitespace=False)
    except Exception as e:  # xgrammar raises RuntimeError/ValueError with the schema's problem
        raise GrammarError(f"json_schema.schema is not usable: {str(e).splitlines()[0]}") from None
    return grammar


def role_grammar(name: str, role: Any, task: Any) -> Grammar:
    """The strict grammar of a role's answer: its task's `answer_model` (a pydantic model), else the
    output guardrail's schema. Raises ConfigError when the role has neither."""
    model = getattr(task, "answer_model", None)
    if model is None and role.guardrails.output.schema_ is not None:
        from srl_rlvr.tasks.extraction import load_schema

        model = load_schema(role.guardrails.output.schema_)
    if model is None:
        raise ConfigError(
            f"roles.{name}.constrain_output needs an answer schema: a task with `answer_model` or "
            "guardrails.output.schema"
        )
    return Grammar("json_schema", json.dumps(model.model_json_schema()), strict=True)


_COMPILERS: weakref.WeakKeyDictionary[Any, xgr.GrammarCompiler] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _compiler(tokenizer: Any, vocab_size: int, stop_ids: list[int]) -> xgr.GrammarCompiler:
    """One compiler per tokenizer: its token table takes a moment to build and caches compiled grammars."""
    with _LOCK:
        if tokenizer not in _COMPILERS:
            info = xgr.TokenizerInfo.from_huggingface(
                tokenizer, vocab_size=vocab_size, stop_token_ids=stop_ids
            )
            _COMPILERS[tokenizer] = xgr.GrammarCompiler(info, max_threads=1)
        return _COMPILERS[tokenizer]


def new_matcher(grammar: Grammar, tokenizer: Any, vocab_size: int, stop_ids: list[int]) -> xgr.GrammarMatcher:
    """A fresh matcher for one row: it follows the row's tokens and says which may come next."""
    compiler = _compiler(tokenizer, vocab_size, stop_ids)
    if grammar.kind == "json_object":  # OpenAI's json_object is an object, not any JSON value
        compiled = compiler.compile_json_schema('{"type": "object"}', strict_mode=False, any_whitespace=False)
    else:
        compiled = compiler.compile_json_schema(
            grammar.schema, strict_mode=grammar.strict, any_whitespace=False
        )
    return xgr.GrammarMatcher(compiled)


def allocate_bitmask(rows: int, vocab_size: int) -> Any:
    return xgr.allocate_token_bitmask(rows, vocab_size)


def apply_bitmask(logits: Any, bitmask: Any, rows: list[int]) -> None:
    """Set to -inf the logits of tokens the grammar forbids, for the listed rows only."""
    xgr.apply_token_bitmask_inplace(logits, bitmask.to(logits.device), indices=rows)
