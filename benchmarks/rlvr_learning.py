"""Learning check for RLVR: does held-out task accuracy rise after GRPO / PPO / DPO?

Start model: the built-in `tiny` model warm-started by a short SFT on solver trajectories (RL needs
a policy that is sometimes right). Each algorithm then trains from that same start on `train`
problems; accuracy is measured greedily on `test` problems none of the stages saw, with the task's
verifier. All algorithms run in one process, one after the other, so they share the start model.

    python benchmarks/rlvr_learning.py --algorithms grpo ppo --sft-steps 150 --rlvr-steps 100 --seed 0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from srl_rlvr.cli import quiet_libraries
from srl_rlvr.config import build_config
from srl_rlvr.evaluate.generation import evaluate_task
from srl_rlvr.modeling import byte_tokenizer, load_model, materialize, tiny_model
from srl_rlvr.tasks import load_task
from srl_rlvr.train.rlvr import train_rlvr
from srl_rlvr.train.sft import train_sft


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithms", nargs="+", default=["grpo", "ppo"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=500, help="training problems")
    parser.add_argument(
        "--sft-train", type=int, default=0, help="SFT trajectories (0: the RL training problems)"
    )
    parser.add_argument("--heldout", type=int, default=300, help="held-out test problems")
    parser.add_argument("--sft-steps", type=int, default=150)
    parser.add_argument("--rlvr-steps", type=int, default=100)
    parser.add_argument(
        "--task-options",
        default='{"min_steps": 1, "max_steps": 2, "max_operand": 9, "ops": ["add", "sub"]}',
        help="arithmetic task options (JSON)",
    )
    parser.add_argument(
        "--hidden", type=int, default=0, help="build a wider tiny model (0: the built-in size)"
    )
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument(
        "--sft-task-options", default=None, help="task options of the SFT data (default: --task-options)"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench_rlvr_learning"))
    parser.add_argument("--set", nargs="*", default=[], help="extra config overrides")
    args = parser.parse_args()
    quiet_libraries()

    options = json.loads(args.task_options)
    overrides = [
        f"sft.max_steps={args.sft_steps}",
        "sft.batch_size=32",
        "sft.learning_rate=3e-3",
        "sft.save_steps=100000",
        f"rlvr.max_steps={args.rlvr_steps}",
        "rlvr.batch_size=64",
        "rlvr.num_generations=8",
        "rlvr.max_completion_length=40",
        "rlvr.learning_rate=3e-4",
        "rlvr.epochs=1000",
        "rlvr.save_steps=50",
        "rlvr.eval_steps=25",
        "rlvr.early_stopping_patience=0",
        "eval.batch_size=128",
        *args.set,
    ]
    raw = {"seed": args.seed, "task": {"name": "arithmetic", "options": options}}
    config = build_config(raw, overrides)
    task = load_task("arithmetic", options)
    train_problems = task.sample(args.train, seed=args.seed, split="train")
    heldout = task.sample(args.heldout, seed=args.seed, split="test")
    val = task.sample(100, seed=args.seed, split="val")

    def accuracy(path: str) -> dict[str, float]:
        model, tokenizer = load_model(config.model.model_copy(update={"name_or_path": path}))
        return evaluate_task(
            model, tokenizer, task, heldout, config.rlvr.max_completion_length, batch_size=128
        )

    start_time = time.time()
    base = materialize(config.model, args.out / "base", seed=args.seed)
    if args.hidden:  # same byte tokenizer and architecture, more capacity
        tokenizer = byte_tokenizer()
        size = {"hidden_size": args.hidden, "intermediate_size": 4 * args.hidden}
        size |= {"num_hidden_layers": args.layers, "num_attention_heads": args.hidden // 32}
        tiny_model(tokenizer, seed=args.seed, **size).save_pretrained(args.out / "base")
        tokenizer.save_pretrained(args.out / "base")
    sft_task = load_task("arithmetic", json.loads(args.sft_task_options)) if args.sft_task_options else task
    sft_problems = (
        sft_task.sample(args.sft_train, seed=args.seed + 1000, split="train")
        if args.sft_train
        else train_problems
    )
    trajectories = [sft_task.solve(p) for p in sft_problems]
    sft = args.out / "sft" / "final"
    if not (sft / "config.json").is_file():  # reused when only the RL settings change
        sft = train_sft(config.model_copy(update={"model": base}), trajectories, args.out / "sft", task)
    results = {"sft": accuracy(str(sft)) | {"wall_s": time.time() - start_time}}
    for algorithm in args.algorithms:
        began = time.time()
        run_config = build_config(raw, [*overrides, f"rlvr.algorithm={algorithm}"])
        path = train_rlvr(
            run_config, train_problems, args.out / algorithm, task=task, model=str(sft), val_problems=val
        )
        results[algorithm] = accuracy(str(path)) | {"wall_s": time.time() - began, "model": str(path)}

    print(
        f"held-out problems: {len(heldout)}  seed {args.seed}  SFT steps {args.sft_steps}  "
        f"RLVR steps {args.rlvr_steps}  task {options}"
    )
    print(f"{'model':<10}{'accuracy':>10}{'reward':>10}{'wall s':>10}")
    for name, metrics in results.items():
        print(f"{name:<10}{metrics['accuracy']:>10.3f}{metrics['reward']:>10.3f}{metrics['wall_s']:>10.0f}")
    record = {"args": {k: str(v) for k, v in vars(args).items()}, **results}
    (args.out / "result.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
