"""What constrained decoding (response_format json_schema, xgrammar) costs in generated tokens/s.

Arms over the same prompts, batch and budget, one after the other in one process, through the
server's own `generate_batch`: each engine with no schema and under a strict JSON schema (the
sentiment task's answer). The fast engine's arms run only on a GPU: its plain arm is the serving
path (CUDA graphs), its schema arm decodes eagerly with the per-row sampler; HF generate's arms
both go through the per-row sampler (seeded rows). Each arm runs once to warm up (CUDA
kernels, the schema's compilation), then `--repeats` timed times; tokens are the rows' completion
tokens, so an answer the grammar ends early counts only what it wrote. The sentiment task's held-out
accuracy of each arm's answers says what the schema does to a served sentiment role (at
`--temperature 0`, as a role serves by default).

    python benchmarks/constrained_decoding.py                          # tiny model, CPU
    python benchmarks/constrained_decoding.py --model HuggingFaceTB/SmolLM2-360M-Instruct --batch 64 \
        --max-tokens 128 --temperature 0
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path
from typing import Any

import torch

from srl_rlvr.config import ModelConfig
from srl_rlvr.modeling import chat_prompt, load_model
from srl_rlvr.serve.generation import generate_batch
from srl_rlvr.serve.sampling_params import RowSampling
from srl_rlvr.serve.structured import Grammar
from srl_rlvr.tasks import load_task
from srl_rlvr.tasks.sentiment import SentimentAnswer


def arm(
    model: Any, tokenizer: Any, prompts: list[str], args: argparse.Namespace, **how: Any
) -> dict[str, Any]:
    engine, grammar = how["engine"], how["grammar"]
    rows = [RowSampling(args.temperature, seed=i, grammar=grammar) for i in range(len(prompts))]
    plain = grammar is None and engine == "fast"

    def run() -> list[Any]:
        return generate_batch(
            model,
            tokenizer,
            prompts,
            [args.max_tokens] * len(prompts),
            args.temperature,
            [[] for _ in prompts],
            engine=engine,
            sampling=None if plain else rows,
        )

    run()  # warm-up
    seconds, tokens, accuracy = [], [], []
    for _ in range(args.repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        began = time.perf_counter()
        done = run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - began)
        tokens.append(sum(c.completion_tokens for c in done))
        accuracy.append(how["task"].metrics([c.text for c in done], how["problems"])["accuracy"])
    return {
        "arm": how["name"],
        "tokens": sum(tokens),
        "seconds": sum(seconds),
        "tokens_per_s": sum(tokens) / sum(seconds),
        "accuracy": sum(accuracy) / len(accuracy),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/constrained_decoding.json"))
    args = parser.parse_args()

    model, tokenizer = load_model(ModelConfig(name_or_path=args.model, device=args.device))
    model.eval()
    task = load_task("sentiment")
    problems = task.sample(args.batch, seed=0, split="test")
    prompts = [chat_prompt(tokenizer, task.prompt(p)) for p in problems]
    schema = Grammar("json_schema", json.dumps(SentimentAnswer.model_json_schema()), strict=True)
    arms = [{"name": "hf, no schema", "engine": "hf", "grammar": None}]
    arms.append({"name": "hf, json_schema", "engine": "hf", "grammar": schema})
    if next(model.parameters()).is_cuda:
        arms.insert(0, {"name": "fast engine, no schema", "engine": "fast", "grammar": None})
        arms.insert(1, {"name": "fast engine, json_schema", "engine": "fast", "grammar": schema})
    results = [arm(model, tokenizer, prompts, args, task=task, problems=problems, **how) for how in arms]

    print(f"{'arm':<26}{'tokens':>8}{'seconds':>10}{'tokens/s':>11}{'accuracy':>10}")
    for r in results:
        print(
            f"{r['arm']:<26}{r['tokens']:>8}{r['seconds']:>10.2f}{r['tokens_per_s']:>11.1f}{r['accuracy']:>10.3f}"
        )
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    record = {"date": str(date.today()), "device": device, "args": {**vars(args), "out": str(args.out)}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**record, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
