"""Teachers write an expert trajectory for a problem (the planner of the teacher/verifier team).

Three real implementations share one Protocol: the task's programmatic solver (exact and free),
any OpenAI-compatible chat endpoint, and a local Hugging Face model. An LLM teacher sees the task's
own prompt, the retrieved context, the domain rules and, when the task has a solver, one solved
example of another problem, so its actions come out in exactly the format the student must learn.
A retry continues the conversation: the rejected reply, then the verifier's feedback.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from typing import Protocol

from srl_rlvr.config import LocalTeacherConfig, ModelConfig
from srl_rlvr.data.trajectory import Trajectory
from srl_rlvr.errors import ConfigError, TaskError
from srl_rlvr.generate.llm_client import ChatClient
from srl_rlvr.generate.retriever import Passage
from srl_rlvr.generate.rules import Rule
from srl_rlvr.generate.teacher_reply import ReplyRejected, parse_trajectory_reply
from srl_rlvr.tasks import Problem, Task

REPLY_FORMAT = (
    '{"steps": [{"reasoning": "why this step", "action": "the step itself"}, ...], '
    '"expected_outcome": "the final answer"}'
)


@dataclass
class Attempt:
    """One teacher answer: the trajectory when the reply parsed, else the reason it did not."""

    reply: str
    trajectory: Trajectory | None = None
    repairs: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Conversation:
    """What the teacher has been told about one problem so far: its earlier replies and their feedback."""

    turns: list[tuple[str, str]] = field(default_factory=list)  # (reply, feedback)


class Teacher(Protocol):
    name: str
    deterministic: bool  # asking again gives the same answer, so a rejection is final

    async def plan(
        self, problem: Problem, context: list[Passage], rules: list[Rule], conversation: Conversation
    ) -> Attempt: ...


class SolverTeacher:
    """The task's `solve`: no endpoint, no cost, exact. The verifier still checks it (a buggy solver
    or a user task whose `solve` disagrees with its `reward` is caught, not trained on)."""

    deterministic = True

    def __init__(self, task: Task) -> None:
        if not hasattr(task, "solve"):
            raise TaskError(
                f"task '{task.name}' has no programmatic solver; set collaboration.teacher to an "
                "endpoint {base_url, model, api_key_env} or a {local_model}"
            )
        self.task = task
        self.name = f"solver:{task.name}"

    async def plan(
        self, problem: Problem, context: list[Passage], rules: list[Rule], conversation: Conversation
    ) -> Attempt:
        trajectory = self.task.solve(problem)  # type: ignore[attr-defined]
        return Attempt(reply="", trajectory=trajectory)


class SolvedExamples:
    """One solver trajectory of another problem, as the JSON the teacher should write: it shows an LLM
    the exact action format. Two candidates are solved once, so a problem never sees itself."""

    def __init__(self, task: Task) -> None:
        self.shown: list[tuple[str, str]] = []
        if hasattr(task, "solve"):
            for other in task.sample(2, seed=12345, split="train"):
                t = task.solve(other)  # type: ignore[attr-defined]
                reply = {
                    "steps": [{"reasoning": s.reasoning, "action": s.action} for s in t.steps],
                    "expected_outcome": t.expected_outcome,
                }
                text = f"Problem:\n{task.prompt(other)}\nTrajectory:\n{json.dumps(reply, ensure_ascii=False)}"
                self.shown.append((other.id, text))

    def for_problem(self, problem_id: str) -> str | None:
        return next((text for other_id, text in self.shown if other_id != problem_id), None)


def teacher_messages(
    task: Task,
    problem: Problem,
    context: list[Passage],
    rules: list[Rule],
    conversation: Conversation,
    example: str | None,
) -> list[dict[str, str]]:
    """The chat a teacher answers: instructions and rules, the problem with its context, then any retries."""
    system = (
        f"You are the expert teacher for the task '{task.name}'. Solve the problem step by step, the way "
        "a student should learn to. Reply with one JSON object and nothing else:\n"
        f"{REPLY_FORMAT}\n"
        "Each action is one line of the solution exactly as the student must write it; the last action "
        "states the final answer in the format the task asks for."
    )
    if rules:
        system += "\nDomain rules, never break them:\n" + "\n".join(f"- {r.text}" for r in rules)
    user = f"The student sees this prompt:\n{task.prompt(problem)}"
    if context:
        shown = "\n".join(f"[{i}] ({p.source}) {p.text}" for i, p in enumerate(context, start=1))
        user += f"\n\nRelevant knowledge:\n{shown}"
    if example:
        user += f"\n\nA good trajectory for another problem:\n{example}"
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    for reply, feedback in conversation.turns:
        messages.append({"role": "assistant", "content": reply})
        messages.append(
            {"role": "user", "content": f"The verifier rejected this: {feedback}\nReply with the fixed JSON."}
        )
    return messages


def _attempt(reply: str, problem: Problem) -> Attempt:
    try:
        trajectory, repairs = parse_trajectory_reply(reply, problem.text)
    except ReplyRejected as e:
        return Attempt(reply=reply, error=str(e))
    return Attempt(reply=reply, trajectory=trajectory, repairs=repairs)


class EndpointTeacher:
    """Any OpenAI-compatible chat endpoint (OpenRouter, OpenAI, vLLM, Ollama, our own server)."""

    deterministic = False

    def __init__(self, task: Task, client: ChatClient, temperature: float, max_tokens: int, json_mode: bool):
        self.task, self.client = task, client
        self.temperature, self.max_tokens, self.json_mode = temperature, max_tokens, json_mode
        self.name = f"{client.model}@{client.base_url}"
        self.examples = SolvedExamples(task)

    async def plan(
        self, problem: Problem, context: list[Passage], rules: list[Rule], conversation: Conversation
    ) -> Attempt:
        example = self.examples.for_problem(problem.id)
        messages = teacher_messages(self.task, problem, context, rules, conversation, example)
        reply = await self.client.complete(
            messages, temperature=self.temperature, max_tokens=self.max_tokens, json_mode=self.json_mode
        )
        return _attempt(reply, problem)


class LocalModelTeacher:
    """A local Hugging Face model. Generation is compute, not I/O: it runs in a worker thread, one
    request at a time, so the event loop keeps serving the other problems' retrieval and bookkeeping."""

    deterministic = False

    def __init__(self, task: Task, config: LocalTeacherConfig, seed: int = 0) -> None:
        from srl_rlvr.modeling import load_model

        self.task, self.config = task, config
        self.model, self.tokenizer = load_model(ModelConfig(name_or_path=config.local_model), seed=seed)
        self.name = f"local:{config.local_model}"
        self.examples = SolvedExamples(task)
        self._lock = asyncio.Lock()

    def _render(self, messages: list[dict[str, str]]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "

    async def plan(
        self, problem: Problem, context: list[Passage], rules: list[Rule], conversation: Conversation
    ) -> Attempt:
        from srl_rlvr.rollout import generate_texts

        example = self.examples.for_problem(problem.id)
        prompt = self._render(teacher_messages(self.task, problem, context, rules, conversation, example))
        async with self._lock:
            generation = await asyncio.to_thread(
                generate_texts,
                self.model,
                self.tokenizer,
                [prompt],
                self.config.max_tokens,
                temperature=self.config.temperature,
            )
        [reply] = generation.completions
        return _attempt(reply, problem)


def api_key(env: str | None, role: str) -> str | None:
    """The key from the environment; the error names the variable, never a value."""
    if env is None:
        return None
    key = os.environ.get(env)
    if not key:
        raise ConfigError(
            f"collaboration.{role}.api_key_env: environment variable {env} is not set; export it, or set "
            "api_key_env: null for a local server without keys"
        )
    return key
