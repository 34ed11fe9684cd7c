"""Training steps on one GPU and several, under the shipped accelerate configs (issue 24).

Launched by accelerate, one process a GPU:

    accelerate launch --config_file src/srl_rlvr/assets/accelerate/ddp.yaml --num_processes 2 \\
        benchmarks/scale_out.py step --arch 0.5b --shape rlvr --per-gpu 64 --name ddp-rlvr-2gpu
    accelerate launch --config_file src/srl_rlvr/assets/accelerate/fsdp2.yaml --num_processes 2 \\
        benchmarks/scale_out.py step --arch 7b --shape rlvr --per-gpu 16 --micro 4 --name fsdp2-7b

Each run is our GroupTrainer (the trainer SRL and RLVR share) on a Qwen2.5 architecture from its
config (random init, float32 master weights under bf16 autocast: our default), a word tokenizer, and
forced-length rollouts, as in `benchmarks/rollout.py`. Two shapes:
- rlvr: 64-token prompts, 256-token completions, a random reward (the verifier's cost is not measured);
- srl: 192-token prompts (the solution so far), 64-token completions (one step), rewarded by difflib
  similarity to a reference step through SRL's own reward function (`train/similarity.py`: worker
  processes for a large batch).
Groups of 8. `--per-gpu` completions a GPU a step, so the global batch grows with the GPUs (weak
scaling, as data parallelism is used). The main process prints one JSON row: step time (after a
warm-up step), completion tokens/s over all GPUs, and peak memory per GPU; `summarise` turns rows
into the BENCHMARKS table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

sys.path.insert(0, str(Path(__file__).parent))
from rollout import EOS_ID, QWEN25_05B, StepTimes, random_prompts, word_tokenizer

QWEN25_7B = {
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}
SMOKE = {  # a few-layer model for trying the script on a CPU (`--arch smoke`)
    **QWEN25_05B,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
}
ARCHS = {"0.5b": QWEN25_05B, "7b": QWEN25_7B, "smoke": SMOKE}
SHAPES = {"rlvr": (64, 256), "srl": (192, 64)}  # prompt tokens, completion tokens
GROUP = 8


def device() -> torch.device:
    local = int(os.environ.get("LOCAL_RANK", 0))
    return torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")


def build(arch: str) -> Qwen2ForCausalLM:
    """The architecture in float32 on this rank's GPU (built there: a 7B model initialises in
    seconds on a GPU, minutes on a CPU); FSDP2 then shards it in place."""
    torch.manual_seed(0)
    config = Qwen2Config(**ARCHS[arch], pad_token_id=0, eos_token_id=EOS_ID, bos_token_id=EOS_ID)
    with device():
        return Qwen2ForCausalLM(config).train()


def strategy(trainer: Any, world: int) -> str:
    if trainer.is_deepspeed_enabled:
        return f"zero{trainer.accelerator.state.deepspeed_plugin.zero_stage}"
    return "fsdp2" if trainer.is_fsdp_enabled else "ddp" if world > 1 else "single"


def step(args: argparse.Namespace) -> None:
    from datasets import Dataset
    from trl import GRPOConfig

    from srl_rlvr.config import RLVRConfig
    from srl_rlvr.distributed import world_size
    from srl_rlvr.train.grpo import GroupTrainer
    from srl_rlvr.train.similarity import similarities

    prompt_tokens, completion_tokens = SHAPES[args.shape]
    vocab = ARCHS[args.arch]["vocab_size"]
    tokenizer = word_tokenizer(vocab)
    texts = [" ".join(f"t{i}" for i in p) for p in random_prompts(4096, prompt_tokens, 7)]
    rng = random.Random(int(os.environ.get("RANK", 0)))
    reference = " ".join(f"t{i}" for i in random_prompts(1, completion_tokens, 3)[0])

    reward_seconds = [0.0]  # host time in the reward function, all steps: it does not shrink with GPUs

    def reward(completions: list[str], **kwargs: Any) -> list[float]:
        began = time.perf_counter()
        if args.shape == "rlvr":
            scores = [rng.random() for _ in completions]
        else:
            scores = similarities([(c, reference) for c in completions])  # SRL's own reward
        reward_seconds[0] += time.perf_counter() - began
        return scores

    micro = args.micro or args.per_gpu
    grpo = GRPOConfig(
        output_dir=f"/tmp/scale-out-{args.name}",
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=args.per_gpu // micro,
        steps_per_generation=args.per_gpu // micro,
        num_generations=GROUP,
        max_completion_length=completion_tokens,
        learning_rate=1e-6,
        beta=0.0,
        max_steps=args.steps + 1,
        bf16=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=args.checkpointing,
        ddp_find_unused_parameters=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    stage = RLVRConfig(rollout={"engine": "fast", "fused_ops": args.fused})
    trainer = GroupTrainer(
        model=build(args.arch),
        reward_funcs=[reward],
        args=grpo,
        train_dataset=Dataset.from_dict({"prompt": texts}),
        processing_class=tokenizer,
        stage=stage,
    )
    trainer.generation_config.eos_token_id = None  # forced lengths
    trainer.generation_kwargs["eos_token_id"] = None
    clock = StepTimes()
    trainer.add_callback(clock)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    if args.cprofile:  # where each rank's host time goes (the SRL shape's 2-rank overhead)
        import cProfile
        import io
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(trainer.train)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(60)
        rank = int(os.environ.get("RANK", 0))
        target = Path(os.environ.get("OUT", "."), f"profile-{args.name}-rank{rank}.txt")
        target.write_text(text.getvalue())
    else:
        trainer.train()
    timed = clock.times[1:]
    mean = sum(timed) / len(timed)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    peaks = torch.tensor([peak], device=device())
    gathered = trainer.accelerator.gather(peaks).tolist()
    world = world_size()
    copy = trainer._rollout_copy
    refreshes = [
        log["rollout/copy_refresh_s"] for log in trainer.state.log_history if "rollout/copy_refresh_s" in log
    ]
    row = {
        "name": args.name,
        "arch": args.arch,
        "shape": args.shape,
        "gpus": world,
        "strategy": strategy(trainer, world),
        "per_gpu_completions": args.per_gpu,
        "global_completions": args.per_gpu * world,
        # a DTensor's numel is its whole tensor's (and ds_numel a ZeRO-3 parameter's): the model once
        "parameters_b": round(
            sum(getattr(p, "ds_numel", p.numel()) for p in trainer.model.parameters()) / 1e9, 2
        ),
        "fast_engine": trainer._fast_engine is not None,
        "rollout_copy_gib": round(copy.nbytes / 2**30, 2) if copy else None,
        "copy_refresh_s": round(sum(refreshes) / len(refreshes), 3) if refreshes else None,
        "first_step_s": round(clock.times[0], 2),
        "step_s": round(mean, 3),
        "reward_s_per_step": round(reward_seconds[0] / len(clock.times), 3),
        "steps_timed": len(timed),
        "completion_tokens_per_s": round(args.per_gpu * world * completion_tokens / mean),
        "peak_gib_per_gpu": [round(g, 1) for g in gathered],
        "rewards": [round(log["reward"], 4) for log in trainer.state.log_history if "reward" in log],
    }
    if trainer.accelerator.is_main_process:
        print("ROW " + json.dumps(row), flush=True)
        if os.environ.get("OUT"):
            with open(Path(os.environ["OUT"]) / "rows.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")


def summarise(args: argparse.Namespace) -> None:
    """Rows (rows.jsonl) as the table BENCHMARKS.md shows, with each multi-GPU row's scaling over its
    1-GPU twins (throughput ratio against their mean; 2.0 is perfect). Twins share the architecture,
    shape, completions a GPU and the name's tail after `Ngpu` (`-repeat`, `-pool`); a row without
    such twins is compared with the plain 1-GPU rows of its architecture and shape."""
    rows = [json.loads(line) for line in Path(args.rows).read_text().splitlines()]

    def key(r: dict, tail: bool = True) -> tuple:
        return (
            r["arch"],
            r["shape"],
            r["per_gpu_completions"],
            r["name"].split("gpu", 1)[-1] if tail else "",
        )

    single: dict[tuple, list[float]] = {}
    for r in rows:
        if r["gpus"] == 1:
            single.setdefault(key(r), []).append(r["completion_tokens_per_s"])
    for r in rows:
        twins = single.get(key(r)) or single.get(key(r, tail=False))
        scaling = (
            r["completion_tokens_per_s"] / (sum(twins) / len(twins)) if twins and r["gpus"] > 1 else None
        )
        print(
            f"{r['name']:26} {r['strategy']:6} {r['gpus']} GPU  step {r['step_s']:7.3f} s  "
            f"{r['completion_tokens_per_s']:>7} tok/s  peak {r['peak_gib_per_gpu']} GiB"
            + (f"  scaling {scaling:.2f}x" if scaling else "")
        )


def reward_cost(args: argparse.Namespace) -> None:
    """The SRL shape's reward for one rank's batch, in-process and through the worker pool
    (`train/similarity.py`): the same strings the `step` runs score."""
    from srl_rlvr.train.similarity import similarities, step_similarity, worker_count

    completions = [" ".join(f"t{i}" for i in p) for p in random_prompts(args.batch, SHAPES["srl"][1], 11)]
    reference = " ".join(f"t{i}" for i in random_prompts(1, SHAPES["srl"][1], 3)[0])
    pairs = [(c, reference) for c in completions]
    similarities(pairs)  # starts the pool
    timings = {}
    for name, score in (
        ("in_process", lambda: [step_similarity(a, b) for a, b in pairs]),
        ("pool", lambda: similarities(pairs)),
    ):
        began = time.perf_counter()
        for _ in range(args.repeats):
            score()
        timings[name] = (time.perf_counter() - began) / args.repeats
    row = {
        "batch": args.batch,
        "mean_chars": round(sum(len(c) for c in completions) / len(completions)),
        "workers": worker_count(),
        **{f"{k}_s": round(v, 3) for k, v in timings.items()},
        "speedup": round(timings["in_process"] / timings["pool"], 2),
    }
    print(json.dumps(row), flush=True)


def allreduce(args: argparse.Namespace) -> None:
    """All-reduce bandwidth between this machine's GPUs (run under accelerate launch): a 0.5B
    model's float32 gradients are ~2 GB a step, and DDP hides that exchange only behind a backward
    pass long enough to cover it (the SRL shape's is short)."""
    import torch.distributed as dist

    from srl_rlvr.distributed import state

    state()
    tensor = torch.ones(args.mib * 2**20 // 4, device=device())
    for _ in range(2):
        dist.all_reduce(tensor)
    torch.cuda.synchronize() if torch.cuda.is_available() else None
    began = time.perf_counter()
    for _ in range(args.repeats):
        dist.all_reduce(tensor)
    torch.cuda.synchronize() if torch.cuda.is_available() else None
    seconds = (time.perf_counter() - began) / args.repeats
    world = dist.get_world_size()
    bus = 2 * (world - 1) / world * tensor.nbytes / seconds  # NCCL's "bus bandwidth"
    if dist.get_rank() == 0:
        print(
            json.dumps(
                {
                    "mib": args.mib,
                    "world": world,
                    "seconds": round(seconds, 4),
                    "bus_gb_per_s": round(bus / 1e9, 1),
                }
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("step", help="time training steps (run under accelerate launch)")
    run.add_argument("--arch", choices=ARCHS, default="0.5b")
    run.add_argument("--shape", choices=SHAPES, default="rlvr")
    run.add_argument("--per-gpu", type=int, default=64, help="completions a GPU a step")
    run.add_argument("--micro", type=int, help="completions a forward/backward pass (default: --per-gpu)")
    run.add_argument("--steps", type=int, default=6, help="timed steps, after one warm-up step")
    run.add_argument("--checkpointing", action="store_true", help="gradient checkpointing (for 7B)")
    run.add_argument("--fused", action="store_true", help="the engine's fused ops")
    run.add_argument("--cprofile", action="store_true", help="write each rank's cProfile to $OUT")
    run.add_argument("--name", required=True)
    table = sub.add_parser("summarise", help="print the table of a rows.jsonl")
    table.add_argument("rows")
    cost = sub.add_parser("reward", help="time the SRL shape's reward for one rank's batch")
    cost.add_argument("--batch", type=int, default=64)
    cost.add_argument("--repeats", type=int, default=5)
    reduce = sub.add_parser("allreduce", help="all-reduce bandwidth between GPUs (under accelerate launch)")
    reduce.add_argument("--mib", type=int, default=1900, help="tensor size (0.5B float32 gradients: ~1,900)")
    reduce.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    {"step": step, "summarise": summarise, "reward": reward_cost, "allreduce": allreduce}[args.command](args)


if __name__ == "__main__":
    main()
