"""Tool use: answer a word problem by calling a calculator tool correctly.

The prompt gives the tool's OpenAI function definition and a question ("A crate holds 12 rows of 9
jars. How many jars?"); the answer is one call, `<tool_call>{"name": "calculate", "arguments":
{"operation": "multiply", "a": 12, "b": 9}}</tool_call>`, in the format the server parses into
OpenAI `tool_calls` (tasks/tool_calls.py). The verifier checks the call itself: the right operation on
the question's numbers (either order for add and multiply). A call that merely lands on the right
number with other operands scores 0: the skill is reading the question into the call. The solver's
trajectory names the operation and operands, then writes the call, so the task trains like any other
(SFT, SRL, RLVR) and a model trained on it serves tool calls.
"""

from __future__ import annotations

import json
import random
from typing import Any

from srl_rlvr.data.trajectory import Step, Trajectory
from srl_rlvr.tasks.base import Problem, Split, sample_synthetic
from srl_rlvr.tasks.tool_calls import call_block, find_tool_calls

TOOL = {
    "type": "function",
    "function": {
        "name": "calculate",
        "description": "Apply one arithmetic operation to two whole numbers.",
        "parameters": {
            "type": "object",
            "properties": {
                "operation": {"type": "string", "enum": ["add", "subtract", "multiply", "divide"]},
                "a": {"type": "integer"},
                "b": {"type": "integer"},
            },
            "required": ["operation", "a", "b"],
            "additionalProperties": False,
        },
    },
}
_QUESTIONS = {
    "add": ["What is {a} plus {b}?", "A shelf has {a} books and {b} more arrive. How many books now?"],
    "subtract": [
        "What is {a} minus {b}?",
        "A tank holds {a} litres and {b} leak out. How many litres are left?",
    ],
    "multiply": ["What is {a} times {b}?", "A crate holds {a} rows of {b} jars. How many jars?"],
    "divide": [
        "What is {a} divided by {b}?",
        "{a} sweets are shared equally by {b} children. How many each?",
    ],
}
_VALUE = {
    "add": lambda a, b: a + b,
    "subtract": lambda a, b: a - b,
    "multiply": lambda a, b: a * b,
    "divide": lambda a, b: a // b,
}
_COMMUTATIVE = {"add", "multiply"}

Call = tuple[str, int, int]


class CalculatorTask:
    name = "calculator"
    instruction = (
        "You can call this tool:\n{tool}\n"
        "Answer the question with exactly one call, written as "
        '<tool_call>{{"name": "calculate", "arguments": {{...}}}}</tool_call>\n'
    )

    def __init__(self, max_operand: int = 99) -> None:
        if max_operand < 2:
            raise ValueError(f"max_operand must be at least 2, got {max_operand}")
        self.max_operand = max_operand

    def _random_problem(self, rng: random.Random) -> Problem:
        operation = rng.choice(sorted(_QUESTIONS))
        a, b = rng.randint(2, self.max_operand), rng.randint(2, self.max_operand)
        if operation == "divide":
            a = a * b  # whole answers only
        if operation == "subtract" and b > a:
            a, b = b, a
        text = rng.choice(_QUESTIONS[operation]).format(a=a, b=b)
        metadata = {"operation": operation, "a": a, "b": b, "word_problem": not text.startswith("What is")}
        return Problem(id=text, text=text, answer=_VALUE[operation](a, b), metadata=metadata)

    def sample(self, n: int, seed: int, split: Split) -> list[Problem]:
        return sample_synthetic("calculator", self._random_problem, n, seed, split)

    def prompt(self, problem: Problem) -> str:
        return self.instruction.format(tool=json.dumps(TOOL)) + f"Question: {problem.text}\n"

    def parse(self, completion: str) -> Call | None:
        """The last well-formed `calculate` call: (operation, a, b), or None."""
        for call in reversed(find_tool_calls(completion, frozenset({"calculate"}))):
            args: dict[str, Any] = call.arguments
            operation, a, b = args.get("operation"), args.get("a"), args.get("b")
            if operation in _VALUE and type(a) is int and type(b) is int:
                return operation, a, b
        return None

    def reward(self, completion: str, problem: Problem) -> float:
        call = self.parse(completion)
        meta = problem.metadata
        wanted = {(meta["operation"], meta["a"], meta["b"])}
        if meta["operation"] in _COMMUTATIVE:
            wanted.add((meta["operation"], meta["b"], meta["a"]))
        return 1.0 if call in wanted else 0.0

    def metrics(self, completions: list[str], problems: list[Problem]) -> dict[str, float]:
        n = max(len(problems), 1)
        return {
            "accuracy": sum(self.reward(c, p) for c, p in zip(completions, problems, strict=True)) / n,
            "parse_rate": sum(self.parse(c) is not None for c in completions) / n,
        }

    def solve(self, problem: Problem) -> Trajectory:
        meta = problem.metadata
        operation, a, b = meta["operation"], meta["a"], meta["b"]
        steps = [
            Step(action=f"{operation} {a} {b}", reasoning=f"The question asks to {operation} {a} and {b}."),
            Step(
                action=call_block("calculate", {"operation": operation, "a": a, "b": b}),
                reasoning="Call the calculator with that operation and those numbers.",
            ),
        ]
        return Trajectory(
            problem=problem.text,
            steps=steps,
            expected_outcome=str(problem.answer),
            metadata={"id": problem.id, **meta},
            provenance={"teacher": "solver:calculator"},
        )
