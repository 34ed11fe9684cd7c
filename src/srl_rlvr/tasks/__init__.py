"""Tasks by name: the built-ins, or a user's class named as `module:Class` in the config."""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from srl_rlvr.errors import TaskError, UserError
from srl_rlvr.tasks.base import Problem, SolvableTask, Task, problem_of

BUILTIN_TASKS = {
    "arithmetic": "srl_rlvr.tasks.arithmetic:ArithmeticTask",
    "sentiment": "srl_rlvr.tasks.sentiment:SentimentTask",
    "moderation": "srl_rlvr.tasks.moderation:ModerationTask",
    "codegen": "srl_rlvr.tasks.codegen:CodegenTask",
    "extraction": "srl_rlvr.tasks.extraction:ExtractionTask",
    "calculator": "srl_rlvr.tasks.calculator:CalculatorTask",
    "retrieval": "srl_rlvr.tasks.retrieval:RetrievalTask",
    "srl_parser": "srl_rlvr.tasks.srl_parser:SrlParserTask",
}

__all__ = ["BUILTIN_TASKS", "Problem", "SolvableTask", "Task", "headline_metric", "load_task", "problem_of"]


def _import(reference: str) -> Any:
    module_name, _, attr = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise TaskError(f"task '{reference}': cannot import module '{module_name}' ({e})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise TaskError(f"task '{reference}': module '{module_name}' has no '{attr}'") from None


def load_task(name: str, options: dict[str, Any] | None = None) -> Task:
    """Instantiate a task by built-in name or `module:Class` reference, with keyword options."""
    if ":" in name:
        reference = name
    elif name in BUILTIN_TASKS:
        reference = BUILTIN_TASKS[name]
    else:
        close = difflib.get_close_matches(name, BUILTIN_TASKS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; built-in tasks: {', '.join(BUILTIN_TASKS)}"
        raise TaskError(f"unknown task '{name}'{hint} (or name your own as 'my_module:MyTask')")
    cls = _import(reference)
    try:
        task = cls(**(options or {}))
    except (TypeError, ValueError) as e:
        raise TaskError(f"task '{name}': bad options {options or {}}: {e}") from None
    missing = [m for m in ("name", "prompt", "parse", "reward", "metrics", "sample") if not hasattr(task, m)]
    if missing:
        raise TaskError(f"task '{name}' lacks {', '.join(missing)} (see srl_rlvr.tasks.base.Task)")
    return task


def safe_reward(task: Task, completion: str, problem: Problem) -> float:
    """`task.reward`, with a user task's exception turned into an error that names the problem."""
    try:
        return float(task.reward(completion, problem))
    except UserError:  # already one line saying what to change (a sandbox that cannot run, say)
        raise
    except Exception as e:  # a user's task code: anything can go wrong in it
        raise TaskError(
            f"task '{task.name}': reward() failed on problem {problem.id}: {type(e).__name__}: {e}"
        ) from e


def headline_metric(task: Task, override: str | None = None) -> str:
    """The metric a stage is judged by: `override`, else the first the task reports, else the mean
    per-problem reward (a user's task whose `metrics` cannot take an empty set)."""
    if override:
        return override
    try:
        names = list(task.metrics([], []))
    except Exception:  # a user's task code
        return "reward"
    return names[0] if names else "reward"
