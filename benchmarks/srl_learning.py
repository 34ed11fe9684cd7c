"""Learning check for SRL: does the held-out step-similarity reward rise after SRL?

Base model: the built-in `tiny` model (random init, seed-fixed), optionally warm-started by a short
SFT. Train on arithmetic `train` problems, measure on `test` problems the model never saw: greedy
next-step predictions scored by the SRL reward (mean similarity, exact-step rate, format failures).

    python benchmarks/srl_learning.py --srl-steps 80 --seed 0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from srl_rlvr.cli import quiet_libraries
from srl_rlvr.config import build_config
from srl_rlvr.modeling import load_model, materialize
from srl_rlvr.tasks import load_task
from srl_rlvr.train.sft import train_sft
from srl_rlvr.train.srl import build_srl_dataset, evaluate_step_reward, train_srl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=300, help="training trajectories")
    parser.add_argument("--heldout", type=int, default=60, help="held-out trajectories")
    parser.add_argument("--sft-steps", type=int, default=0, help="SFT warm start steps (0: none)")
    parser.add_argument("--srl-steps", type=int, default=80)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_srl_learning"))
    parser.add_argument("--set", nargs="*", default=[], help="extra config overrides")
    args = parser.parse_args()
    quiet_libraries()

    config = build_config(
        {"seed": args.seed},
        [
            "srl.require_think=false",
            f"srl.max_steps={args.srl_steps}",
            "srl.batch_size=64",
            "srl.num_generations=8",
            "srl.max_completion_length=16",
            "srl.learning_rate=3e-4",
            "srl.save_steps=1000",
            "srl.epochs=100",
            f"sft.max_steps={args.sft_steps}",
            "sft.batch_size=16",
            "sft.learning_rate=3e-3",
            "sft.save_steps=1000",
            *args.set,
        ],
    )
    task = load_task("arithmetic")
    train = [task.solve(p) for p in task.sample(args.train, seed=args.seed, split="train")]
    heldout = build_srl_dataset(
        [task.solve(p) for p in task.sample(args.heldout, seed=args.seed, split="test")], task, config.srl
    )

    start = time.time()
    base = materialize(config.model, args.out / "base", seed=args.seed)
    if args.sft_steps:
        base = base.model_copy(
            update={
                "name_or_path": str(
                    train_sft(config.model_copy(update={"model": base}), train, args.out / "sft", task)
                )
            }
        )
    config = config.model_copy(update={"model": base})
    before = evaluate_step_reward(*load_model(base), heldout, config.srl)
    srl_model = train_srl(config, train, args.out / "srl", task)
    after = evaluate_step_reward(
        *load_model(base.model_copy(update={"name_or_path": str(srl_model)})), heldout, config.srl
    )
    elapsed = time.time() - start

    print(
        f"held-out step-wise instances: {len(heldout)}  seed {args.seed}  SFT steps {args.sft_steps}  "
        f"SRL steps {args.srl_steps}  wall {elapsed:.0f}s"
    )
    print(f"{'metric':<22}{'before SRL':>12}{'after SRL':>12}")
    for key in before:
        print(f"{key:<22}{before[key]:>12.3f}{after[key]:>12.3f}")
    result = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "before": before,
        "after": after,
        "heldout_instances": len(heldout),
        "wall_s": elapsed,
    }
    (args.out / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
