"""The generation engines and the one text API over them.

    generation = generate_texts(model, tokenizer, prompts, max_new_tokens=256)   # text.py
    generation.completions, generation.num_tokens                                # one per prompt

    engine = make_engine(model)                       # FastEngine on a GPU, HFEngine elsewhere
    rollout = engine.generate(prompt_ids, SamplingParams(max_new_tokens=256, temperature=1.0,
                                                         stop_token_ids=(eos,)))
    rollout.completion_ids, rollout.logprobs          # lists, one per prompt

`generate_texts` (text.py) is what evaluation, validation, teachers and serving call; training
rollouts call an engine with token ids. `FastEngine` (engine.py) runs Llama/Qwen2-family models over
their live weights with a static KV cache and CUDA-graph decode steps; `HFEngine` (hf_engine.py) is
HF `generate` with the same interface, for everything else. Nothing here knows a task.
"""

from __future__ import annotations

from srl_rlvr.rollout.choice import EngineChoice, RolloutEngine, choose_engine, make_engine
from srl_rlvr.rollout.decoder import unsupported_reason
from srl_rlvr.rollout.engine import FastEngine
from srl_rlvr.rollout.hf_engine import HFEngine
from srl_rlvr.rollout.sampling import Rollout, SamplingParams, stop_length
from srl_rlvr.rollout.text import Generation, eos_ids, generate_texts

__all__ = [
    "EngineChoice",
    "FastEngine",
    "Generation",
    "HFEngine",
    "Rollout",
    "RolloutEngine",
    "SamplingParams",
    "choose_engine",
    "eos_ids",
    "generate_texts",
    "make_engine",
    "stop_length",
    "unsupported_reason",
]
