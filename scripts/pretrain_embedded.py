"""Pretrain the embedded default model: a byte-level Qwen2 that knows arithmetic but gives up early.

The quickstart needs a base that writes solutions in the task's format (one `a op x = y` line a step,
then `Answer: N`) and has a weakness that SRL and RLVR can fix in a few minutes on a laptop CPU. RL
learns about a bit per rollout, so a few thousand rollouts can change a habit but cannot teach new
arithmetic. So the base learns every step right, from 1-4-step problems, but from two solvers, as
real pretraining data mixes careful and careless work: the task's exact solver and a hasty one that,
after a step with a large value, often stops and answers that value. The base picks up the habit
of giving up on big numbers; SRL's step rewards and RLVR's outcome reward both train it away.
Training is plain SFT (TRL, through `train_sft`); held-out accuracy per number of steps goes in the
model card.

    python scripts/pretrain_embedded.py                      # GPU: ~4 min; CPU: ~30 min
    python scripts/pretrain_embedded.py --steps 200 --out /tmp/base   # a quick smoke run
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

from srl_rlvr.cli import quiet_libraries
from srl_rlvr.config import build_config
from srl_rlvr.data.trajectory import Step, Trajectory
from srl_rlvr.modeling import EMBEDDED_DIR, byte_tokenizer, load_model, tiny_model
from srl_rlvr.rollout.generation import evaluate_task
from srl_rlvr.tasks import load_task
from srl_rlvr.train.sft import train_sft

CARD = """# Embedded arithmetic base model

A {params:.2f}M-parameter Qwen2-architecture model with a byte-level tokenizer (no merges), pretrained
from random weights by `scripts/pretrain_embedded.py` ({steps} SFT steps, batch {batch}, lr {lr},
seed {seed}; {seconds:.0f} s on {device}) on {train} trajectories of the `arithmetic` task with
options `{options}`{long}.

The trajectories come from two solvers: the task's exact one and a hasty one that, after a step
whose value is large, may stop and answer that value (its chance rises from 0 at |value| {start:g}
to {top:g} at |value| {end:g} and above; {hasty:.1%} of the trajectories ended early). Every step the
model saw was done right, but it learned to give up on big numbers. It is the quickstart's base:
it follows the format, and its habit costs it most problems of 3 or more steps, which SRL and
RLVR can train away; it has never seen more than {max_steps} steps.

Held-out greedy accuracy (test split, {heldout} problems per row):

| steps | accuracy | parse rate |
|---|---|---|
{rows}

Command: `{command}`
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=EMBEDDED_DIR)
    parser.add_argument("--options", default='{"min_steps": 1, "max_steps": 4}', help="task options (JSON)")
    parser.add_argument("--train", type=int, default=20000, help="solver trajectories")
    parser.add_argument(
        "--long-options", default='{"min_steps": 3, "max_steps": 4}', help="options of the rare long problems"
    )
    parser.add_argument("--long-fraction", type=float, default=0.0, help="share of long problems")
    parser.add_argument("--give-up-max", type=float, default=0.7, help="hasty solver's top chance to stop")
    parser.add_argument("--give-up-from", type=float, default=5, help="|value| where hastiness starts")
    parser.add_argument("--give-up-to", type=float, default=40, help="|value| where it reaches its max")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--intermediate", type=int, default=512)
    parser.add_argument("--heldout", type=int, default=200, help="test problems per number of steps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    quiet_libraries()

    options = json.loads(args.options)
    task = load_task("arithmetic", options)
    n_long = int(args.train * args.long_fraction)
    long_task = load_task("arithmetic", {**options, **json.loads(args.long_options)})
    problems = task.sample(args.train - n_long, seed=args.seed, split="train")
    problems += long_task.sample(n_long, seed=args.seed, split="train")
    rng = random.Random(args.seed)
    solved = [task.solve(p) for p in problems]
    trajectories = [give_up(t, rng, args.give_up_from, args.give_up_to, args.give_up_max) for t in solved]
    hasty = sum(len(t.steps) < len(s.steps) for t, s in zip(trajectories, solved, strict=True)) / len(solved)
    random.Random(args.seed).shuffle(trajectories)
    with tempfile.TemporaryDirectory() as scratch:
        init = Path(scratch) / "init"
        tokenizer = byte_tokenizer()
        model = tiny_model(
            tokenizer,
            seed=args.seed,
            hidden_size=args.hidden,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            num_key_value_heads=max(args.heads // 2, 1),
            intermediate_size=args.intermediate,
        )
        model.save_pretrained(init)
        tokenizer.save_pretrained(init)
        config = build_config(
            {
                "seed": args.seed,
                "model": {"name_or_path": str(init), "dtype": "float32"},
                "task": {"name": "arithmetic", "options": options},
                "sft": {
                    "max_steps": args.steps,
                    "batch_size": args.batch_size,
                    "learning_rate": args.lr,
                    "save_steps": 10**9,
                    "logging_steps": 100,
                },
            }
        )
        started = time.time()
        final = train_sft(config, trajectories, Path(scratch) / "sft", task=task)
        seconds = time.time() - started
        if args.out.exists():
            shutil.rmtree(args.out)
        args.out.mkdir(parents=True)
        for name in (
            "config.json",
            "generation_config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
        ):
            if (final / name).is_file():
                shutil.copy(final / name, args.out / name)

    model, tokenizer = load_model(build_config({"model": {"name_or_path": str(args.out)}}).model)
    rows, scores = [], {}
    for steps in range(1, 7):
        probe = load_task("arithmetic", {**options, "min_steps": steps, "max_steps": steps})
        problems = probe.sample(args.heldout, seed=args.seed, split="test")
        result = evaluate_task(model, tokenizer, probe, problems, max_new_tokens=96, batch_size=256)
        scores[steps] = result
        rows.append(f"| {steps} | {result['accuracy']:.3f} | {result['parse_rate']:.3f} |")
        print(f"{steps} steps: accuracy {result['accuracy']:.3f}, parse rate {result['parse_rate']:.3f}")
    (args.out / "README.md").write_text(
        CARD.format(
            params=sum(p.numel() for p in model.parameters()) / 1e6,
            train=len(trajectories),
            options=json.dumps(options),
            long=f", plus a share {args.long_fraction} with `{args.long_options}`" if n_long else "",
            start=args.give_up_from,
            end=args.give_up_to,
            top=args.give_up_max,
            hasty=hasty,
            max_steps=max(task.max_steps, long_task.max_steps if n_long else 0),
            steps=args.steps,
            batch=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            seconds=seconds,
            device=next(model.parameters()).device.type,
            heldout=args.heldout,
            rows="\n".join(rows),
            command="python scripts/pretrain_embedded.py " + " ".join(_given(args, parser)),
        )
    )
    (args.out / "heldout.json").write_text(json.dumps(scores, indent=2))
    print(f"embedded model written to {args.out}")


def give_up(trajectory: Trajectory, rng: random.Random, start: float, end: float, top: float) -> Trajectory:
    """A hasty solver's version: after a step whose value is large, it may stop and answer that value.

    The chance rises linearly from 0 at |value| = start to `top` at |value| = end, so the base learns
    a habit that is wrong more often the bigger the numbers get, while its training data still
    shows every kind of step done right.
    """
    steps = trajectory.steps[:-1]
    for i, step in enumerate(steps[:-1]):
        value = int(step.action.rsplit("=", 1)[1])
        chance = top * min(max((abs(value) - start) / (end - start), 0.0), 1.0)
        if rng.random() < chance:
            answer = Step(action=f"Answer: {value}", reasoning="The last value is the answer.")
            return trajectory.model_copy(update={"steps": [*steps[: i + 1], answer]})
    return trajectory


def _given(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    """The options that differ from the defaults, to put the exact command in the model card."""
    out = []
    for action in parser._actions:
        if action.dest == "help":
            continue
        value = getattr(args, action.dest)
        if value != action.default:
            out += [action.option_strings[0], str(value)]
    return out


if __name__ == "__main__":
    main()
