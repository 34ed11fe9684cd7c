"""Training steps on one GPU and several, under the shipped accelerate configs.

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
The `scale_out` options, each off unless its flag is given (`--overlap-rewards`, `--host-reward-pool`,
`--static-graph`): the row records them, with `--beta`, the KL weight (0 by default, as in the
earlier rows; SRL trains with 0.1, which adds the reference model's log-prob pass that the reward
overlap hides behind; the reference is loaded from a copy of the random model saved to /tmp).
Groups of 8. `--per-gpu` completions a GPU a step, so the global batch grows with the GPUs (weak
scaling, as data parallelism is used). The main process prints one JSON row: step time (after two
warm-up steps: the first compiles and captures, and at the second DDP rebuilds its gradient buckets
in the order the first backward produced them, 0.2 s on 2 GPUs), completion tokens/s over all GPUs,
and peak memory per GPU; `summarise` turns rows into the BENCHMARKS table.
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
from transformers import Qwen2Config, Qwen2ForCausalLM, TrainerCallback

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
    from accelerate.utils import gather_object
    from datasets import Dataset
    from trl import GRPOConfig

    from srl_rlvr.config import RLVRConfig
    from srl_rlvr.distributed import world_size
    from srl_rlvr.train import reward_pool
    from srl_rlvr.train.group_trainer import GroupTrainer
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
        beta=args.beta,
        max_steps=args.steps + args.warmup,
        bf16=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=args.checkpointing,
        ddp_find_unused_parameters=False,
        ddp_broadcast_buffers=not args.no_broadcast_buffers,
        ddp_static_graph=args.static_graph,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    options = {
        "overlap_rewards": args.overlap_rewards,
        "host_reward_pool": args.host_reward_pool,
        "ddp_static_graph": args.static_graph,
    }
    stage = RLVRConfig(rollout={"engine": "fast", "fused_ops": args.fused}, scale_out=options)
    model = build(args.arch)
    if args.beta:  # TRL loads the reference model from the policy's folder
        folder = f"/tmp/scale-out-{args.arch}-rank{os.environ.get('RANK', 0)}"
        model.save_pretrained(folder)
        model.config._name_or_path = folder
    trainer = GroupTrainer(
        model=model,
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
    phases = time_phases(trainer) if args.phases else None
    if args.torch_profile:
        trainer.add_callback(KernelProfile(args.name, at_step=args.steps))
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
    timed = clock.times[args.warmup :]
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
        "warmup_steps": args.warmup,
        "steps_timed": len(timed),
        "step_times_s": [round(t, 3) for t in timed],
        "completion_tokens_per_s": round(args.per_gpu * world * completion_tokens / mean),
        "peak_gib_per_gpu": [round(g, 1) for g in gathered],
        "rewards": [round(log["reward"], 4) for log in trainer.state.log_history if "reward" in log],
        "beta": args.beta,
        **options,
        "reward_pool_batches": dict(reward_pool.batches),
        "host_pool_served": reward_pool.host_pool_served(),
    }
    waits = [
        log["rewards/overlap_wait_s"] for log in trainer.state.log_history if "rewards/overlap_wait_s" in log
    ]
    if waits:  # how long the training thread still waited for the overlapped rewards, a step
        row["overlap_wait_s"] = round(sum(waits[args.warmup :]) / max(len(waits[args.warmup :]), 1), 4)
    if phases is not None:  # each rank's mean seconds a step in each phase, warm-up steps left out
        mine = {name: round(sum(t[args.warmup :]) / len(t[args.warmup :]), 4) for name, t in phases.items()}
        row["phases_by_rank"] = gather_object([mine]) if world > 1 else [mine]
    if trainer.accelerator.is_main_process:
        print("ROW " + json.dumps(row), flush=True)
        if os.environ.get("OUT"):
            with open(Path(os.environ["OUT"]) / "rows.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")


def time_phases(trainer: Any) -> dict[str, list[float]]:
    """Wrap the trainer's phases in timers that drain the GPU queue at both ends, so each phase's
    time is its own (and, under DDP, a rank that waits for the other shows where). Syncing costs a
    little overlap, so these runs are for the breakdown, not the throughput rows."""
    from collections import defaultdict

    from rollout import sync

    times: dict[str, list[float]] = defaultdict(list)
    per_step: dict[str, float] = defaultdict(float)

    def timed(name: str, method: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            sync()
            began = time.perf_counter()
            try:
                return method(*a, **k)
            finally:
                sync()
                per_step[name] += time.perf_counter() - began

        return wrapper

    for name, attribute in (
        ("generate", "_generate_single_turn"),
        ("reward", "_calculate_rewards"),
        ("score_total", "_generate_and_score_completions"),
        ("loss_forward", "compute_loss"),
        ("train_step_total", "training_step"),
    ):
        setattr(trainer, attribute, timed(name, getattr(trainer, attribute)))
    backward = trainer.accelerator.backward
    trainer.accelerator.backward = timed("backward", backward)

    class Flush(TrainerCallback):
        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            for name, seconds in per_step.items():
                times[name].append(seconds)
            per_step.clear()

    trainer.add_callback(Flush())
    return times


class KernelProfile(TrainerCallback):
    """torch.profiler over one step (`at_step`, counted from 0): each rank's top kernels by GPU time
    and top operators by host time, to $OUT/torchprof-NAME-rankR.txt."""

    def __init__(self, name: str, at_step: int) -> None:
        self.name, self.at_step, self.profiler = name, at_step, None

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.at_step:
            from torch.profiler import ProfilerActivity, profile

            activities = [ProfilerActivity.CPU] + (
                [ProfilerActivity.CUDA] if torch.cuda.is_available() else []
            )
            self.profiler = profile(activities=activities)
            self.profiler.__enter__()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.profiler is None:
            return
        self.profiler.__exit__(None, None, None)
        events = self.profiler.key_averages()
        device_key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
        text = events.table(sort_by=device_key, row_limit=35, max_name_column_width=70)
        text += "\n" + events.table(sort_by="cpu_time_total", row_limit=35, max_name_column_width=70)
        rank = int(os.environ.get("RANK", 0))
        Path(os.environ.get("OUT", "."), f"torchprof-{self.name}-rank{rank}.txt").write_text(text)
        self.profiler = None


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
    model's float32 gradients are ~2 GB a step, which DDP must hide behind the backward pass. Over
    NVLink (2 x H200) they took 5.9 ms, so they were not what slowed the SRL shape on 2 GPUs."""
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
    run.add_argument("--steps", type=int, default=6, help="timed steps, after the warm-up steps")
    run.add_argument("--warmup", type=int, default=2, help="steps left out of the mean")
    run.add_argument("--checkpointing", action="store_true", help="gradient checkpointing (for 7B)")
    run.add_argument("--fused", action="store_true", help="the engine's fused ops")
    run.add_argument("--cprofile", action="store_true", help="write each rank's cProfile to $OUT")
    run.add_argument("--phases", action="store_true", help="each rank's time in each phase (synced)")
    run.add_argument("--torch-profile", action="store_true", help="torch.profiler tables of one timed step")
    run.add_argument("--no-broadcast-buffers", action="store_true", help="DDP broadcast_buffers=False")
    run.add_argument(
        "--beta", type=float, default=0.0, help="KL weight (SRL trains with 0.1: a reference pass)"
    )
    run.add_argument("--overlap-rewards", action="store_true", help="scale_out.overlap_rewards")
    run.add_argument("--host-reward-pool", action="store_true", help="scale_out.host_reward_pool")
    run.add_argument("--static-graph", action="store_true", help="scale_out.ddp_static_graph")
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
