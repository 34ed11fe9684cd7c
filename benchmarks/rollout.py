"""Rollout speed: the fast engine (`srl_rlvr.rollout`) against HF generate and TRL's GRPOTrainer.

The setting: a Qwen2.5-0.5B-architecture model (random init, bf16), 64-token prompts, 256 new
tokens (forced: no stop token), batch 64 and 256, all variants in one run on one GPU:

- hf_generate: `model.generate` as TRL's GRPOTrainer calls it (sampling, dynamic cache).
- fast_eager: the fast engine without CUDA graphs (the same kernels, launched one by one).
- fast_graphs: the fast engine as shipped (decode steps replayed as CUDA graphs).
- fast_graphs_fused: the same with its elementwise ops fused by torch.compile (`fused_ops`) and the
  Triton decode attention (`rollout/attention.py`); *_sdpa rows are the same with PyTorch's SDPA
  attention and separate cache writes instead (the same run's baseline for the kernel).
- fast_graphs_fp32_weights: float32 weights (our training default keeps float32 master weights);
  its "% of ceiling" still uses the bf16 compute bound.
- fast_graphs_top_p0.9: top-p sampling, each row's cut found by a radix select (no sort,
  the default, `sample_cut`); *_sorted: the same with a full sort of the vocabulary each step (the
  same run's baseline); fast_graphs_fused_packed_top_p0.9: top-p on the fused engine. Compare with
  fast_graphs / fast_graphs_fused_packed (plain sampling).
- fast_graphs_early_exit: ~1,200 stop tokens, so rows end after ~128 tokens on average at random
  points: finished rows leave the batch (tokens/s counts generated tokens only).
- fast_graphs_early_exit_refill: the same workload with 4x the prompts queued and `max_batch` =
  batch: a finished row takes the next waiting prompt, so the batch stays full. "batch" is the
  rows in flight; ms/step and % of ceiling use the decode steps the call ran. Compare its tok/s
  with fast_graphs (no stops) at the same batch.
- training step: TRL's default GRPOTrainer against our GroupTrainer with `rollout.engine: fast`
  (plain and fused ops), 64 completions a step (8 prompts x 8), beta 0, same model and data.
- parity: greedy tokens of the engine against HF generate (bf16, random and pretrained model), with
  two controls that measure how much HF disagrees with itself on the random model (SDPA against
  eager attention; its decode against its own teacher-forced argmax), and the engine's log-probs
  against a teacher-forced forward pass (fp32 and bf16).

"% of ceiling" divides by the bound for one decode step on this GPU: weights and the mean KV cache read
at its HBM bandwidth plus the matmul FLOPs at its dense bf16 rate (GPU_PEAKS, by the device's name;
--bandwidth/--flops override). Warm-up (graph capture, first-call
overhead) is its own column. Writes benchmarks/results/rollout-DATE.json (and $OUT/ when set).

    python benchmarks/rollout.py           # ~4 minutes on an H100
    python benchmarks/rollout.py --quick   # smoke run: short generations, no training steps
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import json
import os
import platform
import random
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    GenerationConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    TrainerCallback,
)

from srl_rlvr.rollout import FastEngine, HFEngine, SamplingParams

PROMPT_TOKENS = 64
NEW_TOKENS = 256
BATCHES = (64, 256)
ENGINE_REPEATS = 3
TRAIN_BATCH, TRAIN_GROUP = 64, 8
EARLY_EXIT_STOPS = 1200  # stop ids: a random model stops with probability ~1/127 a token
ENGINE_VARIANTS: dict[str, dict[str, Any]] = {
    "fast_eager": {"cuda_graphs": False},
    "fast_graphs": {},
    "fast_graphs_fused": {"fused": True},
    "fast_graphs_packed": {"pack": True, "fresh": True},
    "fast_graphs_fused_packed": {"fused": True, "pack": True, "fresh": True},
    "fast_graphs_fused_packed_sdpa": {"fused": True, "pack": True, "fresh": True, "kernel_attention": False},
    "fast_graphs_fp32_weights": {"fp32": True},
    "fast_graphs_top_p0.9": {"top_p": 0.9, "cut_top_p": True},
    "fast_graphs_top_p0.9_sorted": {"top_p": 0.9, "sorted_top_p": True},
    "fast_graphs_fused_packed_top_p0.9": {
        "fused": True,
        "pack": True,
        "fresh": True,
        "top_p": 0.9,
        "cut_top_p": True,
    },
    "fast_graphs_early_exit": {"stops": EARLY_EXIT_STOPS},
    "fast_graphs_early_exit_refill": {"stops": EARLY_EXIT_STOPS, "queue": 4},
}
# Each GPU's own ceiling: HBM bandwidth (bytes/s) and dense bf16 tensor-core FLOP/s, from the vendors'
# data sheets (SXM parts where there are two). The name torch reports is matched by substring, longest
# first; --bandwidth / --flops override (another GPU, or a measured peak).
GPU_PEAKS: dict[str, tuple[float, float]] = {
    "H200": (4.8e12, 989e12),
    "H100 PCIe": (2.0e12, 756e12),
    "H100": (3.35e12, 989e12),
    "GH200": (4.0e12, 989e12),
    "A100-SXM4-80GB": (2.039e12, 312e12),
    "A100 80GB PCIe": (1.935e12, 312e12),
    "A100": (1.555e12, 312e12),
    "L40S": (0.864e12, 362e12),
    "L4": (0.3e12, 121e12),
    "A10G": (0.6e12, 70e12),
}
PEAKS = {"bandwidth": 3.35e12, "flops": 989e12}  # set in main() from the device (H100 SXM until then)


def device_peaks(name: str) -> tuple[float, float] | None:
    """(bytes/s, bf16 FLOP/s) of the GPU torch names, or None when it is not in GPU_PEAKS."""
    for key in sorted(GPU_PEAKS, key=len, reverse=True):
        if key.lower() in name.lower():
            return GPU_PEAKS[key]
    return None


QWEN25_05B = {
    "vocab_size": 151936,
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}
EOS_ID = 151643  # Qwen2.5's <|endoftext|>; generation ignores it (forced lengths)


def qwen_05b(seed: int = 0) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    config = Qwen2Config(**QWEN25_05B, pad_token_id=0, eos_token_id=EOS_ID, bos_token_id=EOS_ID)
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(config)
    return model.to(torch.bfloat16).eval()


def word_tokenizer(vocab: int) -> PreTrainedTokenizerFast:
    """A tokenizer with one word per id ("t123"), so text prompts of 64 words are 64 tokens."""
    core = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t0"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="t0", eos_token=f"t{EOS_ID}")
    tokenizer.padding_side = "left"
    return tokenizer


def random_prompts(count: int, length: int, seed: int, vocab: int = EOS_ID) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(1, min(vocab, EOS_ID)) for _ in range(length)] for _ in range(count)]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start, result


def ceiling_ms(model: torch.nn.Module, batch: int, context: float) -> float:
    config = model.config
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    head_dim = config.hidden_size // config.num_attention_heads
    kv = 2 * config.num_hidden_layers * batch * config.num_key_value_heads * head_dim * context * 2
    flops = (
        2 * batch * (sum(p.numel() for p in model.model.layers.parameters()) + model.lm_head.weight.numel())
    )
    return 1e3 * ((weights + kv) / PEAKS["bandwidth"] + flops / PEAKS["flops"])


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30


def run_part(results: dict, name: str, fn: Callable[[], Any]) -> None:
    """One part of the run; a failure is recorded and the rest still runs."""
    print(f"--- {name}", flush=True)
    try:
        results[name] = fn()
    except Exception as e:  # a benchmark reports what broke and goes on
        results[name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-3000:]}
        print(results[name]["trace"], flush=True)
    gc.collect()
    torch.cuda.empty_cache()


# ---- generation throughput -------------------------------------------------------------------
def hf_generate_variant(model: Qwen2ForCausalLM, new_tokens: int) -> list[dict]:
    """`generate` with the config TRL's GRPOTrainer builds (temperature 1, top-p 1, top-k 0)."""
    config = GenerationConfig(
        max_new_tokens=new_tokens,
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        eos_token_id=None,
        pad_token_id=0,
        disable_compile=True,
    )
    rows = []
    model.generate(torch.ones(2, 8, dtype=torch.long, device="cuda"), generation_config=config)  # warm-up
    for batch in BATCHES:
        ids = torch.tensor(
            random_prompts(batch, PROMPT_TOKENS, batch, model.config.vocab_size), device="cuda"
        )
        torch.cuda.reset_peak_memory_stats()
        seconds, out = timed(lambda ids=ids: model.generate(ids, generation_config=config))
        assert out.size(1) == PROMPT_TOKENS + new_tokens
        rows.append(_row("hf_generate", model, batch, new_tokens, seconds, None, 0.0))
    return rows


def engine_variant(
    model: Qwen2ForCausalLM,
    name: str,
    new_tokens: int,
    cuda_graphs: bool = True,
    fused: bool = False,
    top_p: float = 1.0,
    stops: int = 0,
    pack: bool = False,
    kernel_attention: bool | None = None,
    sorted_top_p: bool = False,
    queue: int = 1,
    cut_top_p: bool = False,
) -> list[dict]:
    """`queue` > 1: that many prompts per row in flight, refilled into finished rows."""
    from srl_rlvr.rollout.sampling import sample_cut, sample_sorted

    rows = []
    engine = FastEngine(model, cuda_graphs=cuda_graphs, fused=fused, pack=pack)
    if kernel_attention is not None:
        engine.decoder.kernel_attention = kernel_attention
    if sorted_top_p:
        engine.sample = sample_sorted
    if cut_top_p:
        engine.sample = sample_cut
    stop_ids = tuple(range(1000, 1000 + stops))
    params = SamplingParams(max_new_tokens=new_tokens, temperature=1.0, top_p=top_p, stop_token_ids=stop_ids)
    repeats = ENGINE_REPEATS if cuda_graphs else 1
    for batch in BATCHES:
        engine.max_batch = batch if queue > 1 else None
        prompts = random_prompts(batch * queue, PROMPT_TOKENS, batch, model.config.vocab_size)
        torch.cuda.reset_peak_memory_stats()
        first, _ = timed(lambda prompts=prompts: engine.generate(prompts, params))
        capture = engine.warmup_s
        times, generated = [], []
        for _ in range(repeats):
            seconds, rollout = timed(lambda prompts=prompts: engine.generate(prompts, params))
            times.append(seconds)
            generated.append(sum(len(c) for c in rollout.completion_ids))
        assert stops or all(len(c) == new_tokens for c in rollout.completion_ids)
        steps, refills = engine.steps, engine.refills
        prefill = None
        if queue == 1:
            prefill, _ = timed(
                lambda prompts=prompts: engine.generate(prompts, SamplingParams(max_new_tokens=1))
            )
        seconds = sum(times) / len(times)
        tokens = sum(generated) / len(generated)
        row = _row(
            name,
            model,
            batch,
            new_tokens,
            seconds,
            prefill,
            first - seconds,
            tokens,
            steps if queue > 1 else None,
        )
        row["graph_capture_s"] = round(capture, 3)
        if stops:
            row["mean_completion_tokens"] = round(tokens / len(prompts), 1)
        if queue > 1:
            row.update(prompts=len(prompts), decode_steps=steps, refilled=refills)
            print(
                json.dumps(
                    {"variant": name, "prompts": len(prompts), "decode_steps": steps, "refilled": refills}
                )
            )
        rows.append(row)
        engine.release()
    return rows


def _row(
    name: str,
    model: torch.nn.Module,
    batch: int,
    new: int,
    seconds: float,
    prefill: float | None,
    warmup: float,
    tokens: float | None = None,
    steps: int | None = None,
) -> dict:
    """`steps`: the decode steps the call ran, where not `new` (refilled rows)."""
    tokens = tokens or batch * new
    decode = seconds - (prefill or 0.0)
    step_ms = 1e3 * decode / (steps or (new - 1 if prefill is not None else new))
    bound = ceiling_ms(model, batch, PROMPT_TOKENS + new / 2)
    row = {
        "variant": name,
        "batch": batch,
        "tokens_per_s": round(tokens / seconds),
        "ms_per_decode_step": round(step_ms, 3),
        "prefill_ms": None if prefill is None else round(1e3 * prefill, 1),
        "pct_of_ceiling": round(100 * bound / step_ms, 1),
        "ceiling_ms_per_step": round(bound, 3),
        "warmup_s": round(max(warmup, 0.0), 2),
        "seconds": round(seconds, 3),
        "peak_mem_gib": round(peak_gib(), 2),
    }
    print(json.dumps(row), flush=True)
    return row


# ---- where a decode step's time goes ----------------------------------------------------------
def profile_decode(
    model: torch.nn.Module, fused: bool, batch: int = 256, new: int = 32, pack: bool = False
) -> dict:
    """The decode step's kernels by GPU time (eager launches: the same kernels a graph replays, but
    the gaps between them are the host's, so only kernel time is summed)."""
    from torch.profiler import ProfilerActivity, profile

    engine = FastEngine(model, cuda_graphs=False, fused=fused, pack=pack)
    prompts = random_prompts(batch, PROMPT_TOKENS, batch, model.config.vocab_size)
    params = SamplingParams(max_new_tokens=new, temperature=1.0)
    engine.generate(prompts, params)
    engine.generate(prompts, SamplingParams(max_new_tokens=1))
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        engine.generate(prompts, params)
        torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prefill_only:
        engine.generate(prompts, SamplingParams(max_new_tokens=1))
        torch.cuda.synchronize()

    def kernels(trace: Any) -> dict[str, tuple[float, int]]:
        out: dict[str, tuple[float, int]] = {}
        for event in trace.key_averages():
            micros = getattr(event, "device_time_total", 0.0) or getattr(event, "cuda_time_total", 0.0)
            if micros and event.device_type.name == "CUDA":
                out[event.key] = (micros, event.count)
        return out

    total, first = kernels(prof), kernels(prefill_only)
    steps = new - 1
    per_step = {
        name: ((micros - first.get(name, (0.0, 0))[0]) / steps, (count - first.get(name, (0, 0))[1]) / steps)
        for name, (micros, count) in total.items()
    }
    ranked = sorted(per_step.items(), key=lambda item: -item[1][0])
    step_us = sum(micros for micros, _ in per_step.values())
    launches = sum(count for _, count in per_step.values())
    top = [
        {"kernel": name[:120], "us_per_step": round(micros, 1), "launches_per_step": round(count, 1)}
        for name, (micros, count) in ranked[:25]
    ]
    summary = {
        "fused": fused,
        "batch": batch,
        "kernel_us_per_step": round(step_us, 1),
        "launches_per_step": round(launches),
    }
    print(json.dumps(summary), flush=True)
    for row in top:
        print(f"  {row['us_per_step']:>8} us {row['launches_per_step']:>6}x  {row['kernel']}", flush=True)
    engine.release()
    return {**summary, "top": top}


def sampler_check(draws: int = 400, batch: int = 256) -> dict:
    """The fused sampler's draws against the softmax on the GPU, next to the reference sampler's:
    one row of bf16 logits (Qwen's 151,936-entry vocabulary, scores ~ N(0, 3^2)) repeated over the
    batch, `draws` steps. Total variation between each sampler's token frequencies and the softmax
    (sampling noise alone gives a few hundredths at ~100k draws), the share of mass on the top
    tokens, and the log-probs' largest error against log_softmax."""
    from srl_rlvr.rollout.sampling import fused_sampler, sample

    torch.manual_seed(0)
    vocab = 151_936
    row = (torch.randn(vocab, device="cuda") * 3).bfloat16()
    logits = row[None].expand(batch, -1).contiguous()
    out: dict[str, Any] = {"draws": draws * batch, "vocab": vocab}
    for temperature in (1.0, 0.7):
        probs = (row.float() / temperature).softmax(-1)
        scale, ones = torch.tensor([temperature], device="cuda"), torch.ones(1, device="cuda")
        for name, sampler in (("fused", fused_sampler()), ("reference", sample)):
            counts = torch.zeros(vocab, device="cuda")
            worst = 0.0
            for _ in range(draws):
                token, logp = sampler(logits, False, 0, False, scale, ones)
                counts += torch.bincount(token, minlength=vocab)
                worst = max(worst, (logp - probs.log()[token]).abs().max().item())
            frequencies = counts / counts.sum()
            top = probs.topk(20).indices
            out[f"{name}_T{temperature}"] = {
                "total_variation": round(0.5 * (frequencies - probs).abs().sum().item(), 4),
                "top20_mass": round(frequencies[top].sum().item(), 4),
                "top20_mass_softmax": round(probs[top].sum().item(), 4),
                "max_logp_error": worst,
            }
    print(json.dumps(out), flush=True)
    return out


def sampler_speed(batch: int = 256, replays: int = 50) -> dict:
    """ms a call of each sampler, replayed as a CUDA graph, on one batch of bf16 logits (Qwen's
    vocabulary, scores ~ N(0, 3^2)): plain sampling against top-p 0.9 by the radix cut
    (`sample_cut`, the default) and by a full sort (`sample_sorted`), and top-k 50 by torch.topk (the default) and by
    the radix cut (`sample_cut`)."""
    from srl_rlvr.rollout.sampling import sample, sample_cut, sample_sorted

    torch.manual_seed(0)
    logits = (torch.randn(batch, 151_936, device="cuda") * 3).bfloat16()
    one, top_p = torch.ones(1, device="cuda"), torch.tensor([0.9], device="cuda")
    cases = {
        "plain": (sample, 0, False),
        "top_p0.9_radix": (sample_cut, 0, True),
        "top_p0.9_sorted": (sample_sorted, 0, True),
        "top_k50_topk": (sample, 50, False),
        "top_k50_radix": (sample_cut, 50, False),
        "top_k50_top_p0.9_topk": (sample, 50, True),
    }
    out: dict[str, Any] = {"batch": batch}
    for name, (sampler, top_k, use_top_p) in cases.items():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            sampler(logits, False, top_k, use_top_p, one, top_p)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            sampler(logits, False, top_k, use_top_p, one, top_p)
        graph.replay()
        seconds, _ = timed(lambda graph=graph: [graph.replay() for _ in range(replays)])
        out[f"{name}_ms"] = round(1e3 * seconds / replays, 3)
    print(json.dumps(out), flush=True)
    return out


def attention_parity(model: torch.nn.Module, batch: int = 256, new: int = 128) -> dict:
    """Greedy bf16 tokens and log-probs of the fused + packed engine with the Triton attention
    against the same engine with SDPA (the interpreter-run CPU tests cannot check bfloat16)."""
    prompts = random_prompts(batch, PROMPT_TOKENS, 7, model.config.vocab_size)
    params = SamplingParams(max_new_tokens=new, temperature=0)
    engine = FastEngine(model, fused=True, pack=True)
    runs = {}
    for kernel in (True, False):
        engine.decoder.kernel_attention = kernel
        engine.release()
        runs[kernel] = engine.generate(prompts, params)
    engine.release()
    errors = []  # log-prob differences up to each row's first differing token (same prefix)
    for ids_a, ids_b, logp_a, logp_b in zip(
        runs[True].completion_ids,
        runs[False].completion_ids,
        runs[True].logprobs,
        runs[False].logprobs,
        strict=True,
    ):
        same = next((i for i, (x, y) in enumerate(zip(ids_a, ids_b, strict=False)) if x != y), len(ids_a))
        errors += [abs(a - b) for a, b in zip(logp_a[: same + 1], logp_b[: same + 1], strict=False)]
    out = {
        **agreement(runs[True].completion_ids, runs[False].completion_ids),
        "logp_max_error_same_prefix": round(max(errors), 4),
        "logp_mean_error_same_prefix": round(sum(errors) / len(errors), 5),
    }
    print(json.dumps(out), flush=True)
    return out


def lora_parity(dtype: torch.dtype, device: str = "cuda") -> dict:
    """The embedded model with a trained LoRA adapter (r 16, all linear layers, 40 SFT steps on its
    own task's solutions): the engine on the merged rollout copy against peft's forward, greedy."""
    from peft import LoraConfig, get_peft_model

    from srl_rlvr.config import ModelConfig
    from srl_rlvr.modeling import load_model
    from srl_rlvr.rollout.weights_copy import RolloutCopy
    from srl_rlvr.tasks import load_task

    base, tokenizer = load_model(ModelConfig(name_or_path="embedded", device=device, dtype="float32"))
    policy = get_peft_model(
        base, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", lora_dropout=0.05)
    )
    task = load_task("arithmetic")
    train = [
        task.prompt(p) + task.solve(p).solution_text() + tokenizer.eos_token
        for p in task.sample(64, 1, "train")
    ]
    batch = tokenizer(train, return_tensors="pt", padding=True).to(device)
    optimiser = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=3e-3)
    policy.train()
    for _ in range(40):
        loss = policy(**batch, labels=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    policy = policy.to(dtype).eval()
    prompts = [tokenizer(task.prompt(p))["input_ids"] for p in task.sample(128, 0, "test")]
    params = SamplingParams(max_new_tokens=128, temperature=0.0, stop_token_ids=(tokenizer.eos_token_id,))
    fast = FastEngine(RolloutCopy(policy).model).generate(prompts, params).completion_ids
    peft_out = HFEngine(policy, pad_token_id=tokenizer.pad_token_id).generate(prompts, params).completion_ids
    with policy.disable_adapter():
        plain = HFEngine(policy, pad_token_id=tokenizer.pad_token_id).generate(prompts, params).completion_ids
    merged = copy.deepcopy(policy).merge_and_unload()  # peft's own merge, in the same dtype
    peft_merged = (
        HFEngine(merged, pad_token_id=tokenizer.pad_token_id).generate(prompts, params).completion_ids
    )
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "sft_loss_last": round(loss.item(), 4),
        "engine_vs_peft": agreement(fast, peft_out),
        "control_adapter_off_vs_peft": agreement(plain, peft_out),
        "control_peft_merge_and_unload_vs_peft": agreement(peft_merged, peft_out),
    }


# ---- correctness on the GPU -----------------------------------------------------------------
def agreement(a: list[list[int]], b: list[list[int]]) -> dict:
    pairs = [(x, y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=False)]
    lengths_equal = sum(len(ra) == len(rb) for ra, rb in zip(a, b, strict=True))
    return {
        "token_match": round(sum(x == y for x, y in pairs) / max(len(pairs), 1), 4),
        "rows_identical": f"{sum(ra == rb for ra, rb in zip(a, b, strict=True))}/{len(a)}",
        "lengths_equal": f"{lengths_equal}/{len(a)}",
    }


def logprob_error(engine: FastEngine, model: torch.nn.Module, prompts: list[list[int]], new: int) -> dict:
    rollout = engine.generate(prompts, SamplingParams(max_new_tokens=new, temperature=1.0))
    reference = HFEngine(model).logprobs(prompts, rollout.completion_ids, 1.0)
    diffs = [
        abs(x - y)
        for a, b in zip(rollout.logprobs, reference, strict=True)
        for x, y in zip(a, b, strict=True)
    ]
    return {"max_abs": round(max(diffs), 6), "mean_abs": round(sum(diffs) / len(diffs), 6)}


def teacher_forced_argmax(
    model: torch.nn.Module, prompts: list[list[int]], completions: list[list[int]]
) -> dict:
    """How often HF's own forward pass over its greedy output picks the token its decode picked."""
    matches = total = 0
    for prompt, completion in zip(prompts, completions, strict=True):
        ids = torch.tensor([prompt + completion], device="cuda")
        with torch.no_grad():
            picks = model(ids).logits[0, len(prompt) - 1 : -1].argmax(-1).tolist()
        matches += sum(a == b for a, b in zip(picks, completion, strict=True))
        total += len(completion)
    return {"token_match": round(matches / total, 4)}


def parity(model: Qwen2ForCausalLM) -> dict:
    rng = random.Random(1)
    prompts = [random_prompts(1, rng.randint(16, PROMPT_TOKENS), i)[0] for i in range(32)]
    greedy = SamplingParams(max_new_tokens=64, temperature=0.0)
    hf = HFEngine(model).generate(prompts, greedy).completion_ids
    out: dict[str, Any] = {}
    for name, fused in (("plain", False), ("fused", True)):
        fast = FastEngine(model, fused=fused).generate(prompts, greedy).completion_ids
        out[f"greedy_bf16_random_0.5b_{name}"] = agreement(fast, hf)
    out["greedy_bf16_random_0.5b_plain"]["distinct_tokens_in_hf_output"] = len({t for row in hf for t in row})
    model.set_attn_implementation("eager")
    eager = HFEngine(model).generate(prompts, greedy).completion_ids
    model.set_attn_implementation("sdpa")
    out["control_hf_sdpa_vs_hf_eager_attention"] = agreement(eager, hf)
    out["control_hf_decode_vs_hf_teacher_forced_argmax"] = teacher_forced_argmax(model, prompts, hf)
    out["logprobs_bf16_random_0.5b"] = logprob_error(FastEngine(model), model, prompts[:16], 64)
    out["logprobs_bf16_random_0.5b_fused"] = logprob_error(
        FastEngine(model, fused=True), model, prompts[:16], 64
    )
    fp32 = qwen_05b().float()
    out["logprobs_fp32_random_0.5b"] = logprob_error(FastEngine(fp32), fp32, prompts[:16], 64)
    del fp32
    for name, fused in (("plain", False), ("fused", True)):
        out[f"greedy_bf16_embedded_pretrained_{name}"] = embedded_parity(fused)
    return out


def embedded_parity(fused: bool) -> dict:
    """The packaged pretrained arithmetic model: peaked distributions, real stop tokens."""
    from srl_rlvr.config import ModelConfig
    from srl_rlvr.modeling import load_model
    from srl_rlvr.tasks import load_task

    model, tokenizer = load_model(ModelConfig(name_or_path="embedded", device="cuda", dtype="bfloat16"))
    model.eval()
    task = load_task("arithmetic")
    prompts = [tokenizer(task.prompt(p))["input_ids"] for p in task.sample(64, 0, "test")]
    params = SamplingParams(max_new_tokens=128, temperature=0.0, stop_token_ids=(tokenizer.eos_token_id,))
    fast = FastEngine(model, fused=fused).generate(prompts, params).completion_ids
    hf = HFEngine(model, pad_token_id=tokenizer.pad_token_id).generate(prompts, params).completion_ids
    return agreement(fast, hf)


class StepTimes(TrainerCallback):
    """Wall time of each optimiser step, the GPU's queue drained at both ends."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
        sync()
        self.start = time.perf_counter()

    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        sync()
        self.times.append(time.perf_counter() - self.start)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


# ---- a full training step ---------------------------------------------------------------------
# name: (trainer, master weights, LoRA r 16 on all linear layers, fused ops). "fp32" is our default
# (`model.dtype: auto`): float32 master weights under bf16 autocast.
TRAIN_VARIANTS: dict[str, tuple[str, torch.dtype, bool, bool]] = {
    "trl_default": ("trl", torch.bfloat16, False, False),
    "trl_fp32_masters": ("trl", torch.float32, False, False),
    "trl_lora_r16": ("trl", torch.bfloat16, True, False),
    "fast": ("ours", torch.bfloat16, False, False),
    "fast_fp32_masters": ("ours", torch.float32, False, False),
    "fast_lora_r16": ("ours", torch.bfloat16, True, False),
    "fast_fused": ("ours", torch.bfloat16, False, True),
    "fast_fp32_masters_fused": ("ours", torch.float32, False, True),
    "fast_lora_r16_fused": ("ours", torch.bfloat16, True, True),
}
TRAIN_STEPS = {"trl": 3, "trl_lora": 2, "ours": 6}  # timed, after one warm-up step each


def training_step(name: str) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    from srl_rlvr.config import RLVRConfig
    from srl_rlvr.train.group_trainer import GroupTrainer

    trainer_kind, masters, lora, fused = TRAIN_VARIANTS[name]
    steps = TRAIN_STEPS["trl_lora" if trainer_kind == "trl" and lora else trainer_kind]

    tokenizer = word_tokenizer(QWEN25_05B["vocab_size"])
    texts = [" ".join(f"t{i}" for i in p) for p in random_prompts(512, PROMPT_TOKENS, 7)]
    rng = random.Random(0)

    def reward(completions: list[str], **kwargs: Any) -> list[float]:
        return [rng.random() for _ in completions]

    args = GRPOConfig(
        output_dir=f"/tmp/rollout-bench-{name}",
        per_device_train_batch_size=TRAIN_BATCH,
        num_generations=TRAIN_GROUP,
        max_completion_length=NEW_TOKENS,
        learning_rate=1e-6,
        beta=0.0,
        max_steps=steps + 1,
        bf16=True,
        gradient_checkpointing=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    common: dict[str, Any] = {
        "model": qwen_05b().to(masters).train(),
        "reward_funcs": [reward],
        "args": args,
        "train_dataset": Dataset.from_dict({"prompt": texts}),
        "processing_class": tokenizer,
    }
    if lora:
        common["peft_config"] = LoraConfig(
            r=16, lora_alpha=32, target_modules="all-linear", lora_dropout=0.0, task_type="CAUSAL_LM"
        )
    if trainer_kind == "trl":
        trainer = GRPOTrainer(**common)
    else:
        stage = RLVRConfig(rollout={"engine": "fast", "fused_ops": fused})
        trainer = GroupTrainer(**common, stage=stage)
    # Forced lengths: no stop token in generation (TRL's completion mask keeps its EOS rule).
    trainer.generation_config.eos_token_id = None
    trainer.generation_kwargs["eos_token_id"] = None
    clock = StepTimes()
    trainer.add_callback(clock)
    torch.cuda.reset_peak_memory_stats()
    trainer.train()
    timed_steps = clock.times[1:]
    mean = sum(timed_steps) / len(timed_steps)
    row: dict[str, Any] = {
        "trainer": name,
        "masters": str(masters).removeprefix("torch."),
        "lora": "r16 all-linear" if lora else None,
        "completions_per_step": TRAIN_BATCH,
        "first_step_s": round(clock.times[0], 2),
        "step_s": round(mean, 3),
        "steps_timed": len(timed_steps),
        "completion_tokens_per_s": round(TRAIN_BATCH * NEW_TOKENS / mean),
        "peak_mem_gib": round(peak_gib(), 2),
    }
    refreshes = [
        log["rollout/copy_refresh_s"] for log in trainer.state.log_history if "rollout/copy_refresh_s" in log
    ]
    rollout_copy = getattr(trainer, "_rollout_copy", None)
    if rollout_copy is not None:
        row["rollout_copy_gib"] = round(rollout_copy.nbytes / 2**30, 3)
        row["rollout_copy_dtype"] = str(rollout_copy.dtype).removeprefix("torch.")
    if refreshes:
        row["copy_refresh_s"] = round(sum(refreshes[1:]) / max(len(refreshes) - 1, 1), 4)
        row["copy_refresh_pct_of_step"] = round(100 * row["copy_refresh_s"] / mean, 2)
    print(json.dumps(row), flush=True)
    del trainer, common
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 32 new tokens, no training")
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        help="parts to skip: hf variants parity lora sampler attention training",
    )
    parser.add_argument(
        "--model",
        help="a real model (folder, .gguf or a name srl-rlvr knows, e.g. HuggingFaceTB/SmolLM2-135M-Instruct) "
        "in bf16 instead of the random Qwen: HF generate against the fast engine only",
    )
    parser.add_argument(
        "--training", nargs="*", help=f"training rows to run (default all: {', '.join(TRAIN_VARIANTS)})"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also list the decode step's kernels by GPU time"
    )
    parser.add_argument(
        "--variants", nargs="*", help=f"engine rows to run (default all: {', '.join(ENGINE_VARIANTS)})"
    )
    parser.add_argument("--bandwidth", type=float, help="HBM bytes/s for the ceiling (default: GPU_PEAKS)")
    parser.add_argument("--flops", type=float, help="dense bf16 FLOP/s for the ceiling (default: GPU_PEAKS)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/rollout.py needs a CUDA GPU")
    known = device_peaks(torch.cuda.get_device_name())
    if known is None and (args.bandwidth is None or args.flops is None):
        sys.exit(f"no ceiling known for {torch.cuda.get_device_name()}: give --bandwidth and --flops")
    PEAKS["bandwidth"] = args.bandwidth or known[0]  # type: ignore[index]
    PEAKS["flops"] = args.flops or known[1]  # type: ignore[index]
    new = 32 if args.quick else NEW_TOKENS
    results: dict[str, Any] = {
        "command": "python " + " ".join(sys.argv),
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(),
        "ceiling": {"hbm_bytes_per_s": PEAKS["bandwidth"], "bf16_flops_per_s": PEAKS["flops"]},
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "settings": {
            "model": "Qwen2.5-0.5B architecture, random init, bf16",
            "prompt_tokens": PROMPT_TOKENS,
            "new_tokens": new,
            "batches": BATCHES,
        },
    }
    variants: list[dict] = []
    results["variants"] = variants
    if args.model:
        model = real_model(args.model)
        results["settings"]["model"] = f"{args.model}, bf16"
        run_part(results, "hf_generate", lambda: variants.extend(hf_generate_variant(model, new)))
        run_part(results, "fast_graphs", lambda: variants.extend(engine_variant(model, "fast_graphs", new)))
        write_results(results, args, "-" + Path(args.model).name.removesuffix(".gguf"))
        return
    model = qwen_05b()
    if "hf" not in args.skip:
        run_part(results, "hf_generate", lambda: variants.extend(hf_generate_variant(model, new)))
    for name, options in ENGINE_VARIANTS.items():
        if "variants" in args.skip or (args.variants and name not in args.variants):
            continue
        options = dict(options)
        weights = qwen_05b().float() if options.pop("fp32", False) else model
        if options.pop("fresh", False):  # packing re-points the model's parameters
            weights = qwen_05b()
        run_part(
            results,
            name,
            lambda name=name, weights=weights, options=options: variants.extend(
                engine_variant(weights, name, new, **options)
            ),
        )
    if "parity" not in args.skip:
        run_part(results, "parity", lambda: parity(model))
    if "sampler" not in args.skip:
        run_part(results, "sampler_check", sampler_check)
        run_part(results, "sampler_speed", sampler_speed)
    if "attention" not in args.skip:
        run_part(results, "attention_parity", lambda: attention_parity(qwen_05b()))
    if "lora" not in args.skip:
        for dtype in (torch.float32, torch.bfloat16):
            name = f"lora_parity_{str(dtype).removeprefix('torch.')}"
            run_part(results, name, lambda dtype=dtype: lora_parity(dtype))
    if args.profile:
        run_part(results, "profile_plain", lambda: profile_decode(model, False))
        run_part(results, "profile_fused_packed", lambda: profile_decode(qwen_05b(), True, pack=True))
    if not args.quick and "training" not in args.skip:
        training: list[dict] = []
        results["training"] = training
        for name in TRAIN_VARIANTS:
            if args.training and name not in args.training:
                continue
            run_part(results, f"training_{name}", lambda name=name: training.append(training_step(name)))
    write_results(results, args)


def real_model(name: str) -> torch.nn.Module:
    from srl_rlvr.config import ModelConfig
    from srl_rlvr.modeling import load_model, model_source

    model, _ = load_model(ModelConfig(name_or_path=model_source(name), device="cuda", dtype="bfloat16"))
    return model.eval()


def write_results(results: dict, args: argparse.Namespace, suffix: str = "") -> None:
    summarise(results)
    out = (
        Path(__file__).parent
        / "results"
        / f"rollout-{results['date']}{suffix}{'-quick' if args.quick else ''}.json"
    )
    out.parent.mkdir(exist_ok=True)
    text = json.dumps(results, indent=1, default=str)
    out.write_text(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], out.name).write_text(text)


def summarise(results: dict) -> None:
    rows = results["variants"]
    base = {r["batch"]: r["tokens_per_s"] for r in rows if r["variant"] == "hf_generate"}
    training = {r["trainer"]: r for r in results.get("training", [])}
    trl = training.get("trl_default", {}).get("completion_tokens_per_s", float("nan"))
    print(f"\n{results['device']}  prompts {PROMPT_TOKENS}, new {results['settings']['new_tokens']}")
    header = ("variant", "batch", "tok/s", "ms/step", "%ceil", "x HF", "x TRL", "warmup s", "peak GiB")
    print(f"{header[0]:24}" + "".join(f"{h:>9}" for h in header[1:]))
    for r in rows:
        speedup = r["tokens_per_s"] / base[r["batch"]] if r["batch"] in base else float("nan")
        cells = (r["batch"], r["tokens_per_s"], r["ms_per_decode_step"], r["pct_of_ceiling"])
        cells += (f"{speedup:.1f}", f"{r['tokens_per_s'] / trl:.1f}", r["warmup_s"], r["peak_mem_gib"])
        print(f"{r['variant']:24}" + "".join(f"{c:>9}" for c in cells))
    for name, row in training.items():
        if name.startswith("trl") or "trl_default" not in training:
            continue
        # Against TRL's default step, and against TRL with the same weights and adapter.
        same = {"fp32_masters": "trl_fp32_masters", "lora_r16": "trl_lora_r16"}
        twin = next((trl for key, trl in same.items() if key in name), "trl_default")
        for label, reference in {"trl_default": "trl_default", "same_setup": twin}.items():
            if reference in training and "step_s" in training[reference]:
                speedup = training[reference]["step_s"] / row["step_s"]
                results[f"training_speedup_{name}_vs_{label}"] = round(speedup, 2)
        print(
            f"training step {name}: {row['step_s']} s; TRL default {training['trl_default']['step_s']} s, "
            f"{twin} {training.get(twin, {}).get('step_s')} s"
        )
    if "parity" in results:
        print("parity:", json.dumps(results["parity"]))


if __name__ == "__main__":
    main()
