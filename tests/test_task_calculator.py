"""The calculator task: a tool call is right when it reads the question into the right operation and
operands; the solver's trajectory writes one, and the server parses it into OpenAI tool_calls."""

from __future__ import annotations

import json

from srl_rlvr.serve.tools import ToolDef, parse_tool_calls, plan_tools
from srl_rlvr.tasks import load_task
from srl_rlvr.tasks.calculator import TOOL
from srl_rlvr.tasks.tool_calls import call_block

TASK = load_task("calculator")


def problem_of(operation: str):
    return next(p for p in TASK.sample(40, seed=0, split="train") if p.metadata["operation"] == operation)


def test_the_solvers_trajectory_ends_in_the_right_call() -> None:
    for problem in TASK.sample(12, seed=1, split="test"):
        trajectory = TASK.solve(problem)
        assert TASK.reward(trajectory.solution_text(), problem) == 1.0
        assert TASK.reward(trajectory.steps[-1].action, problem) == 1.0


def test_a_call_is_judged_by_its_operation_and_operands_not_by_landing_on_the_number() -> None:
    product, difference = problem_of("multiply"), problem_of("subtract")
    a, b = product.metadata["a"], product.metadata["b"]
    assert TASK.reward(call_block("calculate", {"operation": "multiply", "a": b, "b": a}), product) == 1.0
    assert TASK.reward(call_block("calculate", {"operation": "add", "a": a * b - 1, "b": 1}), product) == 0.0
    x, y = difference.metadata["a"], difference.metadata["b"]
    assert TASK.reward(call_block("calculate", {"operation": "subtract", "a": y, "b": x}), difference) == 0.0
    assert (
        TASK.reward(
            json.dumps({"name": "calculate", "arguments": {"operation": "subtract", "a": x, "b": y}}),
            difference,
        )
        == 1.0
    )
    assert TASK.parse(call_block("calc", {"operation": "add", "a": 1, "b": 2})) is None
    assert (
        TASK.parse(
            '<tool_call>{"name": "calculate", "arguments": {"operation": "add", "a": "1", "b": 2}}</tool_call>'
        )
        is None
    )


def test_the_prompt_offers_the_tool_and_the_server_parses_what_the_task_trains() -> None:
    problem = problem_of("divide")
    assert json.dumps(TOOL) in TASK.prompt(problem) and problem.text in TASK.prompt(problem)
    plan = plan_tools([ToolDef.model_validate(TOOL)], "auto")
    content, (call,) = parse_tool_calls(TASK.solve(problem).solution_text(), plan)
    meta = problem.metadata
    assert call.name == "calculate" and content == f"divide {meta['a']} {meta['b']}"
    assert json.loads(call.arguments) == {"operation": "divide", "a": meta["a"], "b": meta["b"]}
    assert TASK.metrics([TASK.solve(problem).solution_text(), "no call"], [problem, problem]) == {
        "accuracy": 0.5,
        "parse_rate": 0.5,
    }
