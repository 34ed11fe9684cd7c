"""The fast rollout engine against Hugging Face: same tokens, same log-probs, same stops, live weights.

Prompts are left-padded inside the engine (rows of different lengths share one write column per
step); the tests mix lengths and repeat prompts, as a GRPO batch does.
"""

import random
from collections import Counter
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from srl_rlvr.config import LoraConfig, build_config
from srl_rlvr.modeling import apply_lora, byte_tokenizer, tiny_model
from srl_rlvr.rollout import FastEngine, HFEngine, SamplingParams, make_engine
from srl_rlvr.rollout.sampling import chunked_sample, sample, sampler_chunks
from srl_rlvr.train.group_trainer import GroupTrainer, fast_sampling_params, grpo_args

TOKENIZER = byte_tokenizer()


def lively(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Redraw the matrices at a larger scale: at the default init a random model repeats its last
    byte forever, which would make token-for-token comparisons vacuous."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return lively(tiny_model(TOKENIZER))


def mixed_prompts(count: int = 12, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    prompts = [[rng.randrange(256) for _ in range(rng.randint(1, 20))] for _ in range(count)]
    return prompts + prompts[:3]  # repeated prompts, as in a GRPO group


def hf_greedy(
    model: torch.nn.Module, prompts: list[list[int]], new: int, stops: tuple[int, ...] = ()
) -> list[list[int]]:
    """HF generate on a left-padded batch, each row cut after its first stop token."""
    length = max(map(len, prompts))
    ids = torch.tensor([[0] * (length - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (length - len(p)) + [1] * len(p) for p in prompts])
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=new,
        do_sample=False,
        eos_token_id=list(stops) or None,
        pad_token_id=0,
    )
    rows = []
    for row in out[:, length:].tolist():
        cut = next((i + 1 for i, t in enumerate(row) if t in stops), len(row))
        rows.append(row[:cut])
    return rows


def test_greedy_matches_hf_generate_token_for_token_on_left_padded_prompts(model: torch.nn.Module) -> None:
    prompts = mixed_prompts()
    rollout = FastEngine(model, window=16).generate(prompts, SamplingParams(max_new_tokens=40, temperature=0))
    assert rollout.completion_ids == hf_greedy(model, prompts, 40)
    assert len({t for row in rollout.completion_ids for t in row}) > 40  # not one repeated byte


def test_packed_weights_give_the_same_tokens_and_leave_a_working_hf_model() -> None:
    model = lively(tiny_model(TOKENIZER))  # Qwen2: q/k/v with biases
    prompts = mixed_prompts()
    expected = hf_greedy(model, prompts, 40)
    engine = FastEngine(model, window=16, pack=True)
    attn = model.model.layers[0].self_attn
    assert attn.k_proj.weight.data_ptr() == attn.q_proj.weight.data_ptr() + attn.q_proj.weight.nbytes
    assert attn.v_proj.bias.data_ptr() == attn.k_proj.bias.data_ptr() + attn.k_proj.bias.nbytes
    assert (
        engine.generate(prompts, SamplingParams(max_new_tokens=40, temperature=0)).completion_ids == expected
    )
    assert hf_greedy(model, prompts, 40) == expected  # the re-pointed modules still run in HF
    with torch.no_grad():  # an in-place update of a module's slice reaches the packed tensor
        model.model.layers[1].mlp.up_proj.weight.mul_(-1.0)
        model.model.layers[0].self_attn.v_proj.weight.mul_(-1.0)
    changed = engine.generate(prompts, SamplingParams(max_new_tokens=40, temperature=0)).completion_ids
    assert changed != expected and changed == hf_greedy(model, prompts, 40)


# Two short RLVR steps with the fast engine, as the trainer tests here and in test_weights_copy run them.
FAST_RLVR = [
    "rlvr.max_steps=2",
    "rlvr.batch_size=8",
    "rlvr.num_generations=4",
    "rlvr.max_completion_length=8",
    "rlvr.rollout.engine=fast",
]
SMALL = {  # the shared size of the other architectures' test models
    "vocab_size": 300,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
}


@pytest.mark.parametrize(
    "build",
    [
        lambda: LlamaForCausalLM(
            LlamaConfig(
                **SMALL,
                num_key_value_heads=1,
            )
        ),
        lambda: Qwen3ForCausalLM(
            Qwen3Config(
                **SMALL,
                num_key_value_heads=2,
                head_dim=32,
            )
        ),
        lambda: LlamaForCausalLM(  # Llama 3.x: its rope scaling, long context from a short one
            LlamaConfig(
                **SMALL,
                num_key_value_heads=1,
                rope_parameters={
                    "rope_type": "llama3",
                    "rope_theta": 500000.0,
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 16,
                },
            )
        ),
        lambda: MistralForCausalLM(
            MistralConfig(
                **SMALL,
                num_key_value_heads=2,
                sliding_window=None,
            )
        ),
    ],
    ids=["llama", "qwen3", "llama3-rope", "mistral"],
)
@pytest.mark.parametrize("pack", [False, True], ids=["separate", "packed"])
def test_greedy_matches_hf_on_other_supported_architectures(build, pack: bool) -> None:  # type: ignore[no-untyped-def]
    model = lively(build())
    prompts = mixed_prompts()
    expected = hf_greedy(model, prompts, 24)
    engine = FastEngine(model, window=16, pack=pack)
    assert (
        engine.generate(prompts, SamplingParams(max_new_tokens=24, temperature=0)).completion_ids == expected
    )


def test_logprobs_match_a_teacher_forced_forward_pass(model: torch.nn.Module) -> None:
    prompts = mixed_prompts()
    params = SamplingParams(max_new_tokens=30, temperature=0.8, top_k=20)
    rollout = FastEngine(model).generate(prompts, params)
    for prompt, completion, logprobs in zip(prompts, rollout.completion_ids, rollout.logprobs, strict=True):
        ids = torch.tensor([prompt + completion])
        with torch.no_grad():
            logits = model(ids).logits[0, len(prompt) - 1 : -1] / params.temperature
        expected = logits.log_softmax(-1).gather(-1, torch.tensor(completion)[:, None]).squeeze(-1)
        assert torch.allclose(torch.tensor(logprobs), expected, atol=1e-3)


def test_stop_tokens_end_rows_early_and_rows_finish_independently(model: torch.nn.Module) -> None:
    prompts = mixed_prompts(count=40, seed=1)
    engine = FastEngine(model, window=16, check_every=2)  # checks often, so finished rows get dropped
    free = engine.generate(prompts, SamplingParams(max_new_tokens=40, temperature=0)).completion_ids
    stops = tuple(t for t, _ in Counter(t for row in free for t in row).most_common(4))
    stopped = engine.generate(prompts, SamplingParams(max_new_tokens=40, temperature=0, stop_token_ids=stops))
    for full, short in zip(free, stopped.completion_ids, strict=True):
        cut = next((i + 1 for i, t in enumerate(full) if t in stops), len(full))
        assert short == full[:cut]
    lengths = {len(row) for row in stopped.completion_ids}
    assert min(lengths) < 10 and max(lengths) == 40 and len(lengths) > 5
    assert stopped.completion_ids == hf_greedy(model, prompts, 40, stops)


def test_top_k_1_and_a_tiny_top_p_sample_the_greedy_tokens(model: torch.nn.Module) -> None:
    prompts = mixed_prompts()
    engine = FastEngine(model)
    greedy = engine.generate(prompts, SamplingParams(max_new_tokens=20, temperature=0)).completion_ids
    assert (
        engine.generate(prompts, SamplingParams(max_new_tokens=20, temperature=1.3, top_k=1)).completion_ids
        == greedy
    )
    assert engine.generate(prompts, SamplingParams(max_new_tokens=20, top_p=1e-6)).completion_ids == greedy


def test_sampling_follows_the_softmax_after_top_k_and_top_p() -> None:
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).expand(40_000, -1)
    one = torch.ones(1)

    def frequencies(top_k: int, top_p: float) -> torch.Tensor:
        tokens, _ = sample(logits, False, top_k, top_p < 1, one, torch.tensor([top_p]))
        return torch.bincount(tokens, minlength=4).float() / len(tokens)

    probs = logits[0].softmax(-1)
    assert torch.allclose(frequencies(0, 1.0), probs, atol=0.01)
    assert torch.allclose(
        frequencies(2, 1.0), torch.cat([probs[:2] / probs[:2].sum(), torch.zeros(2)]), atol=0.01
    )
    # top-p 0.7 keeps the smallest prefix holding 70 %: the first two tokens (0.64, then 0.88)
    assert torch.allclose(frequencies(0, 0.7), frequencies(2, 1.0), atol=0.015)


def test_the_fusable_chunked_sampler_draws_from_the_same_softmax_with_the_same_log_probs() -> None:
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).expand(40_000, -1)
    for temperature, chunks in ((1.0, 1), (1.5, 2)):
        scale = torch.tensor([temperature])
        tokens, logps = chunked_sample(logits, False, 0, False, scale, torch.ones(1), chunks)
        probs = (logits[0] / temperature).softmax(-1)
        assert torch.allclose(torch.bincount(tokens, minlength=4).float() / len(tokens), probs, atol=0.01)
        assert torch.allclose(logps, probs.log()[tokens])
    greedy, logps = chunked_sample(logits[:3], True, 0, False, torch.tensor([0.5]), torch.ones(1))
    assert greedy.tolist() == [0, 0, 0] and torch.allclose(logps, logits[0].log_softmax(-1)[0].expand(3))
    many = (torch.randn(60) * 1.5).expand(40_000, -1).clone()
    many[:, 10:20] = float("-inf")  # a whole chunk, and one entry elsewhere, that can never be drawn
    many[:, 33] = float("-inf")
    tokens, _ = chunked_sample(many, False, 0, False, torch.ones(1), torch.ones(1), 6)
    frequencies = torch.bincount(tokens, minlength=60).float() / len(tokens)
    assert torch.allclose(frequencies, many[0].softmax(-1), atol=0.01)
    assert frequencies[10:20].sum() == 0 and frequencies[33] == 0
    wide = torch.randn(16, 300)
    for chunks in (1, sampler_chunks(300)):  # 30 chunks of 10
        greedy, logps = chunked_sample(wide, True, 0, False, torch.ones(1), torch.ones(1), chunks)
        assert torch.equal(greedy, wide.argmax(-1))
        assert torch.allclose(logps, wide.log_softmax(-1).gather(-1, greedy[:, None]).squeeze(-1), atol=1e-5)


def test_the_hf_fallback_has_the_same_interface_and_greedy_result(model: torch.nn.Module) -> None:
    prompts = mixed_prompts()
    params = SamplingParams(max_new_tokens=25, temperature=0, stop_token_ids=(TOKENIZER.eos_token_id, 10, 32))
    fast = FastEngine(model).generate(prompts, params)
    hf = HFEngine(model, pad_token_id=TOKENIZER.pad_token_id).generate(prompts, params)
    assert fast.completion_ids == hf.completion_ids
    for a, b in zip(fast.logprobs, hf.logprobs, strict=True):
        assert torch.allclose(torch.tensor(a), torch.tensor(b), atol=1e-4)


def test_the_engine_reads_the_live_weights_without_a_sync() -> None:
    model = lively(tiny_model(TOKENIZER))
    prompts = mixed_prompts()
    engine = FastEngine(model)
    params = SamplingParams(max_new_tokens=20, temperature=0)
    before = engine.generate(prompts, params).completion_ids
    with torch.no_grad():  # what an optimiser step does: update in place
        model.model.layers[1].mlp.down_proj.weight.mul_(-1.0)
    after = engine.generate(prompts, params).completion_ids
    assert after != before
    assert after == hf_greedy(model, prompts, 20)


def test_auto_picks_hf_on_cpu_and_for_models_the_fast_engine_cannot_run(model: torch.nn.Module) -> None:
    assert isinstance(make_engine(model, "auto"), HFEngine)  # no CUDA graphs to gain on a CPU
    assert isinstance(make_engine(model, "fast"), FastEngine)  # still runs, eagerly, when asked
    assert isinstance(make_engine(model, "hf"), HFEngine)
    lora = apply_lora(tiny_model(TOKENIZER), LoraConfig(r=4))
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=300, n_embd=32, n_layer=1, n_head=2))
    for unsupported in (lora, gpt2):
        engine = make_engine(unsupported, "fast")
        assert isinstance(engine, HFEngine)
        assert len(engine.generate([[1, 2, 3]], SamplingParams(max_new_tokens=4)).completion_ids[0]) == 4


def test_group_trainer_rolls_out_with_the_fast_engine_and_keeps_trl_semantics(tmp_path: Path) -> None:
    # 3 rows at once: each step's 8 completions refill the rows that end
    overrides = [*FAST_RLVR, "rlvr.kl_penalty_weight=0", "rlvr.rollout.max_batch=3"]
    config = build_config(overrides=[f"output_dir={tmp_path}", *overrides])
    newline = TOKENIZER.convert_tokens_to_ids("Ċ")
    rolled: list[list[int]] = []

    def reward(completions: list[str], completion_ids: list[list[int]], **kwargs: object) -> list[float]:
        rolled.extend(completion_ids)
        return [float(c[:1].isascii()) if c else 0.0 for c in completions]

    trainer = GroupTrainer(
        model=lively(tiny_model(TOKENIZER)).train(),
        reward_funcs=[reward],
        args=grpo_args(config, config.rlvr, tmp_path, "grpo"),
        train_dataset=Dataset.from_dict({"prompt": ["2+2=", "hello", "a longer prompt", "x"] * 4}),
        processing_class=TOKENIZER,
        stage=config.rlvr,
        stop_token_ids=[newline],
    )
    trainer.train()
    assert isinstance(trainer._fast_engine, FastEngine)
    assert trainer._fast_engine.max_batch == 3 and trainer._fast_engine.refills == 5
    assert len(rolled) == 16 and all(1 <= len(ids) <= 8 for ids in rolled)
    for ids in rolled:  # a stop token ends the completion, as TRL's EOS mask does
        stops = [i for i, t in enumerate(ids) if t in trainer.eos_token_ids]
        assert stops in ([], [len(ids) - 1])
    trainer.generation_config.repetition_penalty = 1.2  # an option the engine lacks: TRL's path
    assert fast_sampling_params(trainer.generation_config) is None


def test_serving_generates_the_same_greedy_answers_through_the_fast_engine() -> None:
    from srl_rlvr.config import ModelConfig
    from srl_rlvr.modeling import load_model
    from srl_rlvr.serve.generation import generate_batch

    model, tokenizer = load_model(ModelConfig(name_or_path="embedded", device="cpu"))
    prompts = [
        "Solve step by step. End with Answer: N\nStart with 7. Add 5. Multiply by 3.\n",
        "Solve step by step. End with Answer: N\nStart with 2. Subtract 9.\n",
    ]
    served = {
        engine: generate_batch(model, tokenizer, prompts, [40, 8], 0.0, [[], ["="]], engine=engine)
        for engine in ("hf", "fast")
    }
    assert served["fast"] == served["hf"]
    assert served["fast"][0].text.endswith("Answer: 36") and served["fast"][1].text == "2-9"
