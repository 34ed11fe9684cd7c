"""The verifier: rule checks first, then the task's own outcome check, then an optional LLM judge.

A trajectory's score is the lowest of its checks, so one wrong part sinks it. Rule checks (step
count, the knowledge folder's domain rules) are pass/fail. The outcome check runs the task's
verifiable reward on the solution, where the problem has a reference answer. The judge (an
OpenAI-compatible endpoint) scores against a rubric and may return a corrected trajectory, which is
kept only if it passes the rule and outcome checks itself: a judge can be wrong too. The judge is
only asked about trajectories that passed everything else, so no money is spent on a known failure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from srl_rlvr.data.trajectory import Trajectory
from srl_rlvr.generate.llm_client import ChatClient
from srl_rlvr.generate.rules import Rule, rule_violations
from srl_rlvr.generate.teacher_reply import ReplyRejected, extract_json, parse_trajectory_reply
from srl_rlvr.tasks import Problem, Task


@dataclass
class Verdict:
    score: float
    trajectory: Trajectory  # the judge's correction when it gave one that checks out
    checks: dict[str, float] = field(default_factory=dict)
    feedback: str = ""  # what to fix, in words the teacher can act on; "" when nothing failed
    corrected: bool = False


@dataclass
class Review:
    score: float
    feedback: str
    corrected: Trajectory | None = None


class Judge:
    """An LLM that scores a trajectory against a rubric, and may correct it."""

    def __init__(self, client: ChatClient, rubric: str, max_tokens: int, json_mode: bool) -> None:
        self.client, self.rubric = client, rubric
        self.max_tokens, self.json_mode = max_tokens, json_mode
        self.name = f"{client.model}@{client.base_url}"

    def messages(
        self, task: Task, problem: Problem, trajectory: Trajectory, rules: list[Rule]
    ) -> list[dict[str, str]]:
        system = (
            f"You verify expert solutions for the task '{task.name}'. {self.rubric}\nReply with one JSON "
            'object: {"score": a number from 0 to 1, "feedback": "what is wrong, or empty", "corrected": '
            'null or {"steps": [{"reasoning": "...", "action": "..."}], "expected_outcome": "..."}}'
        )
        if rules:
            system += "\nDomain rules:\n" + "\n".join(f"- {r.text}" for r in rules)
        shown = {
            "steps": [{"reasoning": s.reasoning, "action": s.action} for s in trajectory.steps],
            "expected_outcome": trajectory.expected_outcome,
        }
        user = f"Task prompt:\n{task.prompt(problem)}\n\nTrajectory:\n{json.dumps(shown, ensure_ascii=False)}"
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    async def review(self, task: Task, problem: Problem, trajectory: Trajectory, rules: list[Rule]) -> Review:
        reply = await self.client.complete(
            self.messages(task, problem, trajectory, rules),
            temperature=0.0,
            max_tokens=self.max_tokens,
            json_mode=self.json_mode,
        )
        try:
            value, _ = extract_json(reply)
            if not isinstance(value, dict):
                raise ReplyRejected("the judge's reply is not a JSON object")
            score = min(1.0, max(0.0, float(value["score"])))
        except (ReplyRejected, KeyError, TypeError, ValueError) as e:
            return Review(0.0, f"the judge's reply was unreadable ({e}); try again")
        corrected = None
        if isinstance(value.get("corrected"), dict | list):
            try:
                corrected, _ = parse_trajectory_reply(json.dumps(value["corrected"]), problem.text)
            except ReplyRejected:
                corrected = None
        return Review(score, str(value.get("feedback") or ""), corrected)


def _outcome(task: Task, trajectory: Trajectory, problem: Problem) -> tuple[float, str]:
    """The task's reward on the solution (or on the expected outcome when the solution has no readable
    answer), and what to tell the teacher when it is not full. The reference answer is never revealed."""
    solution = trajectory.solution_text()
    try:
        readable = task.parse(solution) is not None
        score = float(task.reward(solution if readable else trajectory.expected_outcome, problem))
    except Exception as e:  # a user task, or a generated problem's odd reference answer
        return 0.0, f"the task's verifier could not check this answer ({type(e).__name__}: {e})"
    if score >= 1.0:
        return score, ""
    if not readable and task.parse(trajectory.expected_outcome) is None:
        return score, "no final answer can be read; end with the answer in the format the prompt asks for"
    return score, f"the final answer does not check out (score {score:.2f}); recheck every step"


class Verifier:
    def __init__(
        self, task: Task, rules: list[Rule], min_steps: int, max_steps: int, judge: Judge | None = None
    ) -> None:
        self.task, self.rules, self.judge = task, rules, judge
        self.min_steps, self.max_steps = min_steps, max_steps

    def check(self, trajectory: Trajectory, problem: Problem) -> Verdict:
        """Rule and outcome checks, no judge: cheap, deterministic."""
        failures = []
        n = len(trajectory.steps)
        if not self.min_steps <= n <= self.max_steps:
            failures.append(f"{n} steps; write between {self.min_steps} and {self.max_steps}")
        failures += rule_violations(trajectory, self.rules)
        checks = {"rules": 0.0 if failures else 1.0}
        if problem.answer is not None:
            checks["outcome"], why = _outcome(self.task, trajectory, problem)
            failures += [why] if why else []
        return Verdict(min(checks.values()), trajectory, checks, "; ".join(failures))

    async def verify(self, trajectory: Trajectory, problem: Problem, min_score: float) -> Verdict:
        verdict = self.check(trajectory, problem)
        if self.judge is None or verdict.score < min_score:
            return verdict
        review = await self.judge.review(self.task, problem, trajectory, self.rules)
        verdict.checks["judge"] = review.score
        verdict.score = min(verdict.checks.values())
        if verdict.score >= min_score:
            return verdict
        if review.corrected is not None:
            fixed = self.check(review.corrected, problem)
            if fixed.score >= min_score:
                fixed.checks["judge_of_original"] = review.score  # the correction is checked, not judged
                fixed.corrected = True
                return fixed
        verdict.feedback = review.feedback or f"the judge scored it {review.score:.2f}"
        return verdict
