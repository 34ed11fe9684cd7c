"""Python function synthesis, checked by running assert tests: the built-in code-generation task.

A problem is a function stub (signature and a docstring with one example); its answer is the list
of `assert <call> == <literal>` tests, run by `srl_rlvr.tasks.sandbox` in a contained child process.
The reward is the fraction of tests passed, but 0 for code that does not parse, times out or breaks
the sandbox policy (network, processes, writes outside its directory), so RLVR never pays for an
escape attempt. The shipped data (data/codegen.jsonl) is ~150 hand-written problems over strings,
lists, math, dicts and parsing, each with a reference solution and a short plan; the programmatic
expert writes the plan lines, then the solution in the fenced block that `parse` reads back.
"""

from __future__ import annotations

import ast
import logging
import re
import textwrap
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from srl_rlvr.data.trajectory import Step, Trajectory
from srl_rlvr.tasks.base import Problem, Split
from srl_rlvr.tasks.sandbox import HARNESS, SandboxResult, is_verifiable_test, run_tests
from srl_rlvr.tasks.sandbox_isolation import Isolation, SandboxUnavailable, weaker_layer_warning
from srl_rlvr.tasks.task_data import TaskRow, read_task_rows, sample_rows

log = logging.getLogger(__name__)
DATA_FILE = Path(__file__).parent / "data" / "codegen.jsonl"
# An opening fence with its tag, then everything up to the closing fence (or the end, for a
# completion cut off mid-block). Matching pairs in order keeps a ```bash block's closing fence
# from being read as the opening of a code block.
_FENCED_BLOCK = re.compile(r"```([^\n`]*)\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = ("python", "python3", "py")


class CodegenRow(TaskRow):
    """One line of a codegen data file; `text` is the description that goes into the docstring."""

    entry_point: str = Field(min_length=1, description="Name of the function the tests call.")
    signature: str = Field(description="The `def` line shown to the model, e.g. `def f(x: int) -> int:`.")
    solution: str = Field(min_length=1, description="Reference solution; the expert's final step.")
    tests: list[str] = Field(min_length=1, description="One-line `assert <expr> == <literal>` tests.")
    plan: list[str] = Field(default_factory=list, description="Plan lines the expert writes first.")
    topic: str = "general"
    difficulty: Literal["easy", "medium", "hard"] = "medium"

    @model_validator(mode="after")
    def _consistent(self) -> CodegenRow:
        if not self.entry_point.isidentifier():
            raise ValueError(f"entry_point {self.entry_point!r} is not a Python identifier")
        if not self.signature.startswith(f"def {self.entry_point}("):
            raise ValueError(f"signature must start with 'def {self.entry_point}('")
        if f"def {self.entry_point}(" not in self.solution:
            raise ValueError(f"solution does not define {self.entry_point}")
        for i, test in enumerate(self.tests):
            # Only this form keeps the expected value out of the sandbox, so a pass cannot be forged.
            if "\n" in test or not is_verifiable_test(test):
                raise ValueError(f"tests[{i}] must be one line of the form 'assert <expr> == <literal>'")
        return self


def _docstring_example(test: str) -> str:
    """`>>> call` and the expected value, from a test of the form `assert call <op> literal`."""
    stmt = ast.parse(test).body[0]
    if not isinstance(stmt, ast.Assert) or not isinstance(stmt.test, ast.Compare):
        raise ValueError(f"not an assert comparison: {test}")
    return f">>> {ast.unparse(stmt.test.left)}\n{ast.unparse(stmt.test.comparators[0])}"


def _stub(row: CodegenRow) -> str:
    body = (
        textwrap.fill(row.text, width=92, break_on_hyphens=False) + "\n\n" + _docstring_example(row.tests[0])
    )
    body = body.replace('"""', '\\"\\"\\"')
    quote = 'r"""' if "\\" in body else '"""'  # keep `\n` in an example reading as source text
    return f'{row.signature}\n    {quote}{textwrap.indent(body, "    ").lstrip()}\n    """\n'


def _tests_of(problem: Problem) -> list[str]:
    """The tests; a problem rebuilt from a trajectory carries them as newline-joined text."""
    answer = problem.answer
    return list(answer) if isinstance(answer, list | tuple) else str(answer).splitlines()


def _score(result: SandboxResult | None) -> float:
    if result is None or result.violations or result.timed_out or not result.syntax_ok or not result.total:
        return 0.0
    return result.passed / result.total


class CodegenTask:
    name = "codegen"
    instruction = (
        "Write the Python function below. Use only the standard library.\n"
        "Reply with the complete function in a ```python code block.\n\n"
    )

    def __init__(
        self,
        data_path: str | None = None,
        timeout_s: float = 5.0,
        memory_mb: int = 512,
        isolation: Isolation = "bubblewrap",
    ) -> None:
        """`data_path`: a JSONL file shaped like data/codegen.jsonl; the limits apply per solution run.
        `isolation`: the sandbox's outer layer; 'namespace' or 'hook' accept a weaker sandbox by name
        where bubblewrap cannot run (rewards refuse otherwise: `sandbox_isolation.py`)."""
        if timeout_s <= 0:
            raise ValueError(f"codegen timeout_s must be positive, got {timeout_s}")
        if memory_mb < 64:
            raise ValueError(
                f"codegen memory_mb must be at least 64 (the interpreter needs it), got {memory_mb}"
            )
        if isolation not in ("bubblewrap", "namespace", "hook"):
            raise ValueError(f"codegen isolation must be bubblewrap, namespace or hook, got {isolation!r}")
        if isolation != "bubblewrap":
            log.warning("%s", weaker_layer_warning(isolation, HARNESS))
        self.data_path = Path(data_path) if data_path else DATA_FILE
        self.timeout_s, self.memory_mb, self.isolation = timeout_s, memory_mb, isolation
        self.rows = read_task_rows(self.data_path, CodegenRow)

    def sample(self, n: int, seed: int, split: Split) -> list[Problem]:
        return [self._problem(row) for row in sample_rows(self.rows, self.name, n, seed, split)]

    def _problem(self, row: CodegenRow) -> Problem:
        metadata = {
            "entry_point": row.entry_point,
            "topic": row.topic,
            "difficulty": row.difficulty,
            "solution": row.solution,
            "plan": list(row.plan),
        }
        return Problem(id=row.id, text=_stub(row), answer=list(row.tests), metadata=metadata)

    def prompt(self, problem: Problem) -> str:
        return f"{self.instruction}{problem.text}"

    def parse(self, completion: str) -> str | None:
        """The code: the last ```python block (else the last untagged one), else the whole completion."""
        blocks = [(tag.strip().lower(), code) for tag, code in _FENCED_BLOCK.findall(completion)]
        python = [code for tag, code in blocks if tag in _PYTHON_TAGS] or [
            code for tag, code in blocks if not tag
        ]
        code = textwrap.dedent(python[-1] if python else completion)
        return code.strip("\n") if code.strip() else None

    def run(self, completion: str, problem: Problem) -> SandboxResult | None:
        """The sandbox's verdict on a completion, or None when it holds no code."""
        code = self.parse(completion)
        if code is None:
            return None
        try:
            return run_tests(
                code, _tests_of(problem), self.timeout_s, self.memory_mb, isolation=self.isolation
            )
        except SandboxUnavailable:
            raise
        except Exception as e:  # whatever the solution did to the sandbox, it earns 0, never a crash
            log.warning("codegen sandbox failed on problem %s: %s: %s", problem.id, type(e).__name__, e)
            tests = _tests_of(problem)
            return SandboxResult(0, len(tests), True, False, [f"sandbox failed: {type(e).__name__}"])

    def reward(self, completion: str, problem: Problem) -> float:
        return _score(self.run(completion, problem))

    def metrics(self, completions: list[str], problems: list[Problem]) -> dict[str, float]:
        """test_pass_rate is the mean fraction of tests passed; pass_at_1 counts clean full passes."""
        results = [self.run(c, p) for c, p in zip(completions, problems, strict=True)]
        n = max(len(problems), 1)
        return {
            "syntax_validity": sum(r is not None and r.syntax_ok for r in results) / n,
            "test_pass_rate": sum(r.passed / r.total for r in results if r is not None and r.total) / n,
            "pass_at_1": sum(_score(r) == 1.0 for r in results) / n,
            "violation_rate": sum(r is not None and bool(r.violations) for r in results) / n,
        }

    def solve(self, problem: Problem) -> Trajectory:
        entry_point = problem.metadata["entry_point"]
        plan = problem.metadata["plan"] or [f"Implement {entry_point} as the docstring describes."]
        steps = [Step(action=line, reasoning="Decide the approach before writing code.") for line in plan]
        code = problem.metadata["solution"].strip("\n")
        steps.append(
            Step(action=f"```python\n{code}\n```", reasoning="Write the function the plan describes.")
        )
        return Trajectory(
            problem=problem.text,
            steps=steps,
            expected_outcome="\n".join(_tests_of(problem)),
            metadata={
                "id": problem.id,
                **{k: v for k, v in problem.metadata.items() if k not in ("solution", "plan")},
            },
            provenance={"teacher": "solver:codegen"},
        )
