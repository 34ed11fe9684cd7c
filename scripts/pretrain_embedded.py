"""Pretrain the embedded default model: a byte-level Qwen2 that knows the arithmetic format.

The quickstart needs a base that writes solutions in the task's format (one `a op x = y` line a step,
then `Answer: N`) but is weak at longer chains, so SRL and RLVR have something to fix. So the base
mostly sees short problems (1-2 steps), with a small share (5 %) of 3-4-step ones: it can continue a
chain, unreliably, and has never seen five steps. Training is plain SFT (TRL, through `train_sft`) on
the task's programmatic solver; held-out accuracy per number of steps is written to the model card.

    python scripts/pretrain_embedded.py                      # GPU: ~3 min; CPU: ~30 min
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
from srl_rlvr.evaluate.generation import evaluate_task
from srl_rlvr.modeling import EMBEDDED_DIR, byte_tokenizer, load_model, tiny_model
from srl_rlvr.tasks import load_task
from srl_rlvr.train.sft import train_sft

CARD = """# Embedded arithmetic base model

A {params:.2f}M-parameter Qwen2-architecture model with a byte-level tokenizer (no merges), pretrained
from random weights by `scripts/pretrain_embedded.py` on {train} solver trajectories of the
`arithmetic` task with options `{options}`, of which a share {long_fraction} has options
`{long_options}` ({steps} SFT steps, batch {batch}, lr {lr}, seed {seed};
{seconds:.0f} s on {device}). It is the quickstart's base: it follows the format and is reliable on
short chains, unreliable on the rare longer ones, and has never seen longer still.

Held-out greedy accuracy (test split, {heldout} problems per row):

| steps | accuracy | parse rate |
|---|---|---|
{rows}

Command: `{command}`
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=EMBEDDED_DIR)
    parser.add_argument("--options", default='{"min_steps": 1, "max_steps": 2}', help="task options (JSON)")
    parser.add_argument("--train", type=int, default=20000, help="solver trajectories")
    parser.add_argument(
        "--long-options", default='{"min_steps": 3, "max_steps": 4}', help="options of the rare long problems"
    )
    parser.add_argument("--long-fraction", type=float, default=0.05, help="share of long problems")
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
    trajectories = [task.solve(p) for p in problems]
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
            long_fraction=args.long_fraction,
            long_options=args.long_options,
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
