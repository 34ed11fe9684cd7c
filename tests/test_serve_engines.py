"""Per-row sampling and constrained decoding on both engines: HF generate and the fast engine (run
eagerly on the CPU, as on a GPU for such batches), through the server's `generate_batch`."""

from __future__ import annotations

import json

import jsonschema
import pytest

from srl_rlvr.config import ModelConfig
from srl_rlvr.modeling import load_model
from srl_rlvr.serve.generation import generate_batch
from srl_rlvr.serve.sampling_params import RowSampling
from srl_rlvr.serve.structured import grammar_of

PROMPTS = [
    "Solve step by step. End with Answer: N\nStart with 7. Add 5. Multiply by 3.\n",
    "Solve step by step. End with Answer: N\nStart with 2. Subtract 9.\n",
]
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "integer", "minimum": -99, "maximum": 99}, "sure": {"type": "boolean"}},
    "required": ["answer", "sure"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def embedded() -> tuple[object, object]:
    model, tokenizer = load_model(ModelConfig(name_or_path="embedded", device="cpu"))
    return model.eval(), tokenizer


def test_both_engines_write_the_same_greedy_rows_with_the_same_logprobs(embedded: tuple) -> None:
    model, tokenizer = embedded
    rows = [RowSampling(0.0, logprobs=2), RowSampling(0.0, logprobs=0, frequency_penalty=0.5)]
    served = {
        engine: generate_batch(
            model, tokenizer, PROMPTS, [12, 12], 0.0, [[], []], engine=engine, sampling=rows
        )
        for engine in ("hf", "fast")
    }
    for hf, fast in zip(served["hf"], served["fast"], strict=True):
        assert hf.text == fast.text and hf.text
        assert [t.token for t in hf.logprobs] == [t.token for t in fast.logprobs]
        assert [t.logprob for t in hf.logprobs] == pytest.approx([t.logprob for t in fast.logprobs], abs=1e-3)
    assert all(len(t.top) == 2 for t in served["fast"][0].logprobs)


def test_json_schema_rows_validate_on_the_fast_engine_beside_a_free_row(embedded: tuple) -> None:
    model, tokenizer = embedded
    grammar = grammar_of(
        {"type": "json_schema", "json_schema": {"name": "a", "strict": True, "schema": SCHEMA}}
    )
    rows = [RowSampling(1.0, seed=seed, grammar=grammar) for seed in range(2)] + [RowSampling(0.0)]
    done = generate_batch(
        model, tokenizer, [PROMPTS[0]] * 3, [32] * 3, 1.0, [[]] * 3, engine="fast", sampling=rows
    )
    for completion in done[:2]:
        jsonschema.validate(json.loads(completion.text), SCHEMA)
    assert not done[2].text.startswith("{")  # the free row is not held to the grammar
