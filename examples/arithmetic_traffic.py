"""Clients for the production loop's walk-through (docs/production.md): arithmetic questions sent to a
running server's role over the OpenAI API, as users would send them, so that `monitor` has records to
judge and `retrain`'s canary has answers to be judged on.

    python examples/arithmetic_traffic.py --n 150 --steps 5-6      # a slice the quickstart's model fails
    python examples/arithmetic_traffic.py --forever &              # keeps a canary fed until killed

The key is the first of $SRL_RLVR_API_KEYS, the variable the server reads its keys from. It prints how
many answers the task's own check accepted and the last answer's id (what /v1/feedback rates). It
waits for a server that is still loading its models.
"""

from __future__ import annotations

import argparse
import itertools
import os

import openai

from srl_rlvr.serve.run import wait_ready
from srl_rlvr.tasks.arithmetic import ArithmeticTask


def send(
    client: openai.OpenAI, role: str, task: ArithmeticTask, n: int | None, seed: int
) -> tuple[int, int, str]:
    """Ask `n` problems (None: until interrupted); (answered, correct, last response id)."""
    answered = correct = 0
    last = ""
    for round_ in itertools.count() if n is None else [0]:
        for problem in task.sample(n or 100, seed + round_, "train"):
            reply = client.chat.completions.create(
                model=role, messages=[{"role": "user", "content": problem.text}]
            )
            answered, last = answered + 1, reply.id
            correct += task.reward(reply.choices[0].message.content or "", problem) == 1.0
    return answered, correct, last


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--role", default="arithmetic")
    parser.add_argument("--n", type=int, default=150, help="questions to send")
    parser.add_argument("--steps", default="5-6", help="the problems' step range, e.g. 3-4")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--forever", action="store_true", help="keep sending until killed")
    parser.add_argument("--wait", type=float, default=900, help="seconds to wait for the server to be ready")
    args = parser.parse_args(argv)
    low, _, high = args.steps.partition("-")
    key = os.environ.get("SRL_RLVR_API_KEYS", "").split(",")[0].strip()
    if not key:
        parser.error("set SRL_RLVR_API_KEYS to a key of the server")
    wait_ready(args.url.rstrip("/").removesuffix("/v1"), key, args.wait)  # a server still loading its models
    client = openai.OpenAI(base_url=args.url, api_key=key, max_retries=2)
    task = ArithmeticTask(min_steps=int(low), max_steps=int(high or low))
    answered, correct, last = send(client, args.role, task, None if args.forever else args.n, args.seed)
    print(f"{answered} answered, {correct} correct; last id {last}")


if __name__ == "__main__":
    main()
