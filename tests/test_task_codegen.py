import json
import re
import tempfile
from pathlib import Path

import pytest

from srl_rlvr.errors import DataError, TaskError
from srl_rlvr.tasks import Problem, SolvableTask, load_task, problem_of, safe_reward
from srl_rlvr.tasks.codegen import CodegenTask
from srl_rlvr.tasks.sandbox import run_tests
from srl_rlvr.tasks.sandbox_isolation import (
    SandboxUnavailable,
    bubblewrap_available,
    strongest_available,
    unshare_available,
)

GOOD_ROW = {
    "id": "tiny/double",
    "entry_point": "double",
    "signature": "def double(x: int) -> int:",
    "text": "Return twice x.",
    "solution": "def double(x: int) -> int:\n    return 2 * x\n",
    "tests": ["assert double(2) == 4", "assert double(0) == 0", "assert double(-3) == -6"],
}


@pytest.fixture(scope="module")
def task() -> CodegenTask:
    return load_task("codegen", {"isolation": strongest_available()})  # type: ignore[return-value]


def _problem(task: CodegenTask, entry_point: str) -> Problem:
    every = [p for split in ("train", "val", "test") for p in task.sample(10_000, seed=0, split=split)]
    return next(p for p in every if p.metadata["entry_point"] == entry_point)


def test_codegen_is_a_solvable_task(task: CodegenTask) -> None:
    assert isinstance(task, SolvableTask) and task.name == "codegen"
    assert len(task.rows) >= 150
    assert {row.topic for row in task.rows} == {"strings", "lists", "math", "dicts", "parsing"}


def test_every_shipped_reference_solution_passes_its_tests(task: CodegenTask) -> None:
    # One child for the whole file keeps this fast; the per-problem path is covered below.
    code = "\n\n".join(row.solution for row in task.rows)
    tests = [test for row in task.rows for test in row.tests]
    result = run_tests(code, tests, timeout_s=20, isolation=strongest_available())
    assert not result.violations and result.error is None
    assert result.passed == result.total == len(tests)


def test_expert_trajectories_score_full_reward(task: CodegenTask) -> None:
    for split in ("train", "val", "test"):
        for problem in task.sample(4, seed=0, split=split):
            trajectory = task.solve(problem)
            assert task.reward(trajectory.solution_text(), problem) == 1.0
            assert task.reward(trajectory.solution_text(), problem_of(trajectory)) == 1.0


def test_expert_trajectory_plans_then_writes_the_fenced_solution(task: CodegenTask) -> None:
    problem = _problem(task, "merge_intervals")
    trajectory = task.solve(problem)
    assert [s.action for s in trajectory.steps[:-1]] == problem.metadata["plan"]
    assert trajectory.steps[-1].action.startswith("```python\ndef merge_intervals(")
    assert trajectory.steps[-1].action.endswith("\n```")
    assert trajectory.provenance == {"teacher": "solver:codegen"}
    assert trajectory.metadata["topic"] == "lists" and trajectory.metadata["difficulty"] == "medium"
    assert "solution" not in trajectory.metadata


def test_prompt_shows_the_signature_docstring_and_one_example(task: CodegenTask) -> None:
    problem = _problem(task, "second_largest")
    prompt = task.prompt(problem)
    assert "```python" in prompt
    assert "def second_largest(nums: list[int]) -> int | None:" in prompt
    assert ">>> second_largest([1, 2, 3, 4])\n    3\n" in prompt
    compile(problem.text + "    pass\n", "<stub>", "exec")  # the stub itself is valid Python


def test_parse_takes_the_last_python_block_else_the_whole_completion(task: CodegenTask) -> None:
    assert task.parse("```python\nx = 1\n```\ntext\n```python\nx = 2\n```") == "x = 2"
    assert task.parse("Run it:\n```bash\nls\n```\n```\ny = 3\n```\nDone.") == "y = 3"
    assert task.parse("```bash\nls\n```\nThen explain.") == "```bash\nls\n```\nThen explain."
    assert task.parse("def f():\n    return 1\n") == "def f():\n    return 1"
    assert task.parse("```python\ndef f():\n    return 1") == "def f():\n    return 1"  # cut off
    assert task.parse("   \n") is None
    assert task.parse("```python\n\n```") is None


def test_reward_is_the_fraction_of_tests_passed(task: CodegenTask) -> None:
    problem = _problem(task, "factorial")  # tests: 0 -> 1, 5 -> 120, 10 -> 3628800, 1 -> 1
    assert task.reward("```python\ndef factorial(n):\n    return 1\n```", problem) == 0.5
    assert task.reward("def factorial(n):\n    return 0\n", problem) == 0.0


def test_reward_is_zero_for_syntax_errors_timeouts_and_violations() -> None:
    task = CodegenTask(timeout_s=1.0, isolation=strongest_available())
    problem = _problem(task, "factorial")
    solution = problem.metadata["solution"]
    assert task.reward(f"```python\n{solution}```", problem) == 1.0
    assert task.reward("```python\ndef factorial(n)\n    return 1\n```", problem) == 0.0
    assert task.reward(f"```python\n{solution}\nwhile True:\n    pass\n```", problem) == 0.0
    assert task.reward(f"```python\nimport socket\nsocket.socket()\n{solution}```", problem) == 0.0
    assert task.reward("no code at all", problem) == 0.0


def test_metrics_report_syntax_pass_and_violation_rates(task: CodegenTask) -> None:
    problem = _problem(task, "factorial")
    solution = problem.metadata["solution"]
    completions = [
        f"```python\n{solution}```",
        "```python\ndef factorial(n):\n    return 1\n```",
        "```python\ndef factorial(n)\n```",
        f"```python\nimport os\nos.system('true')\n{solution}```",
    ]
    metrics = task.metrics(completions, [problem] * 4)
    assert metrics == {
        "syntax_validity": 0.75,
        "test_pass_rate": 0.375,
        "pass_at_1": 0.25,
        "violation_rate": 0.25,
    }


def test_sampling_is_deterministic_and_splits_are_disjoint(task: CodegenTask) -> None:
    splits = {split: task.sample(1000, seed=0, split=split) for split in ("train", "val", "test")}
    ids = [{p.id for p in problems} for problems in splits.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(len(s) for s in ids) == len(task.rows)
    assert [p.id for p in task.sample(5, 3, "train")] == [p.id for p in task.sample(5, 3, "train")]
    assert [p.id for p in task.sample(5, 3, "train")] != [p.id for p in task.sample(5, 4, "train")]


def test_options_set_the_sandbox_limits_and_bad_ones_are_explained() -> None:
    task = load_task("codegen", {"timeout_s": 2.5, "memory_mb": 256})
    assert (task.timeout_s, task.memory_mb) == (2.5, 256)  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="timeout_s must be positive"):
        load_task("codegen", {"timeout_s": 0})


def test_custom_data_file_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps(GOOD_ROW) + "\n")
    task = CodegenTask(data_path=str(path), isolation=strongest_available())
    problem = _problem(task, "double")
    assert task.reward(task.solve(problem).solution_text(), problem) == 1.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tests": ["assert double(2)"]}, "tests[0] must be one line of the form"),
        ({"tests": ["assert double(2) == 4", "assert double(1) == helper(1)"]}, "tests[1] must be"),
        ({"signature": "def triple(x):"}, "signature must start with 'def double('"),
        ({"solution": "def other(x):\n    return x\n"}, "solution does not define double"),
        ({"difficulty": "extreme"}, "difficulty"),
        ({"tests": []}, "tests"),
    ],
)
def test_malformed_data_rows_raise_data_error_with_file_and_line(
    tmp_path: Path, change: dict, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(GOOD_ROW | {"id": "ok"}) + "\n\n" + json.dumps(GOOD_ROW | change) + "\n")
    with pytest.raises(DataError, match=re.escape(f"{path}:3: ") + ".*" + re.escape(message)):
        CodegenTask(data_path=str(path))


def test_invalid_json_and_duplicate_ids_raise_data_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "x",\n')
    with pytest.raises(DataError, match=re.escape(f"{path}:1: invalid JSON")):
        CodegenTask(data_path=str(path))
    path.write_text(json.dumps(GOOD_ROW) + "\n" + json.dumps(GOOD_ROW) + "\n")
    with pytest.raises(DataError, match=re.escape(f"{path}:2: id 'tiny/double' already used on line 1")):
        CodegenTask(data_path=str(path))


def test_without_bubblewrap_codegen_rewards_refuse_unless_a_weaker_layer_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # What a probe found: without bubblewrap a wrong solution scored 1.0 by loading a C extension it
    # wrote. The sandbox now fails closed: no bubblewrap, no run, unless the user names a weaker layer.
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without bwrap (nor unshare)
    bubblewrap_available.cache_clear()
    unshare_available.cache_clear()
    try:
        task = load_task("codegen")
        problem = _problem(task, "factorial")
        solution = f"```python\n{problem.metadata['solution']}```"
        with pytest.raises(SandboxUnavailable, match=r"needs bubblewrap.*isolation: namespace or hook"):
            safe_reward(task, solution, problem)
        with pytest.raises(SandboxUnavailable, match="'namespace' needs `unshare -rn`"):
            load_task("codegen", {"isolation": "namespace"}).reward(solution, problem)
        with caplog.at_level("WARNING"):
            weaker = load_task("codegen", {"isolation": "hook"})
        assert weaker.reward(solution, problem) == 1.0
        (warning,) = [r.getMessage() for r in caplog.records if "weaker 'hook' layer" in r.getMessage()]
        assert "as configured: candidate code can read any file" in warning and "\n" not in warning
        with pytest.raises(TaskError, match="isolation must be bubblewrap, namespace or hook"):
            load_task("codegen", {"isolation": "auto"})
    finally:
        bubblewrap_available.cache_clear()
        unshare_available.cache_clear()


def test_a_sandbox_that_cannot_run_scores_zero_with_a_violation_never_a_crash(
    task: CodegenTask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A reward computation that raised took evaluation, rollouts and the RLVR reward down with it.
    problem = _problem(task, "factorial")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))  # no working directory can be made
    result = task.run(f"```python\n{problem.metadata['solution']}```", problem)
    assert (
        result is not None
        and result.passed == 0
        and result.violations == ["sandbox failed: FileNotFoundError"]
    )
    assert safe_reward(task, f"```python\n{problem.metadata['solution']}```", problem) == 0.0
