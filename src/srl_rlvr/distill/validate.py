"""Is the student good enough to stand in for its teacher? Measured on the same held-out problems.

Quality is the ratio of the primary metric (student / teacher, with a bootstrap interval over
problems); agreement is the share of problems where both give the same parsed answer; speed is the
latency and tokens/s of each under the same evaluation (the ratio is what a tier is chosen for; an
endpoint teacher answers over the network, so it gets no speed ratio). A student whose ratio's
interval reaches below `distill.min_quality_ratio` is not registered (a point estimate above it on a
few hundred problems can be luck), and the report says by how much.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from srl_rlvr.config import Config
from srl_rlvr.distill.traces import Teacher, endpoint_answers
from srl_rlvr.evaluate.evaluation import EvalResult
from srl_rlvr.tasks import Problem, Task


@dataclass
class Validation:
    teacher_metric: float
    student_metric: float
    quality_ratio: float
    ratio_ci: tuple[float, float]
    agreement: float
    latency_ratio: float | None  # student p50 / teacher p50, below 1 is faster; None for an endpoint
    tokens_per_second_ratio: float | None  # None for an encoder too, which generates no tokens
    n: int
    min_quality_ratio: float
    report: str

    @property
    def passed(self) -> bool:
        """The interval's lower bound clears the minimum; where no resample had a teacher score above 0
        there is no interval, and the point ratio (0) decides."""
        low = self.ratio_ci[0]
        return (low if np.isfinite(low) else self.quality_ratio) >= self.min_quality_ratio

    @property
    def speed(self) -> str:
        if self.latency_ratio is None:
            return "speed not compared (the teacher answered over the network)"
        if self.tokens_per_second_ratio is None:  # an encoder: the same texts, no tokens generated
            return f"latency {self.latency_ratio:.2f}x"
        return f"latency {self.latency_ratio:.2f}x, tokens/s {self.tokens_per_second_ratio:.2f}x"

    @property
    def why(self) -> str:
        verdict = "passes" if self.passed else "fails"
        return (
            f"student {self.student_metric:.3f} vs teacher {self.teacher_metric:.3f}: ratio {self.quality_ratio:.3f} "
            f"[{self.ratio_ci[0]:.3f}, {self.ratio_ci[1]:.3f}]: its lower bound {verdict} the minimum "
            f"{self.min_quality_ratio}"
        )


def ratio_ci(
    teacher: np.ndarray, student: np.ndarray, samples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(teacher), size=(samples, len(teacher)))
    t, s = teacher[rows].mean(axis=1), student[rows].mean(axis=1)
    ratios = np.divide(s, t, out=np.full_like(s, np.nan), where=t > 0)
    low, high = np.nanpercentile(ratios, [2.5, 97.5]) if np.isfinite(ratios).any() else (np.nan, np.nan)
    return float(low), float(high)


def compare_student(
    teacher: EvalResult | tuple[list[str], list[float]],
    student: EvalResult,
    task: Task,
    min_ratio: float,
    report: Path,
) -> Validation:
    """`teacher`: its evaluation on the same problems, or an endpoint's (completions, rewards), whose
    latency over a network says nothing about the model's, so no speed ratios then."""
    if isinstance(teacher, EvalResult):
        completions, rewards = [r.completion for r in teacher.records], teacher.rewards
        latency = student.latency_ms["p50"] / teacher.latency_ms["p50"]
        speed = student.tokens_per_second / teacher.tokens_per_second
    else:
        (completions, rewards), latency, speed = teacher, None, None
    rewards_t, rewards_s = np.asarray(rewards), np.asarray(student.rewards)
    mean_t, mean_s = float(rewards_t.mean()), float(rewards_s.mean())
    agree = [
        task.parse(a) is not None and task.parse(a) == task.parse(b.completion)
        for a, b in zip(completions, student.records, strict=True)
    ]
    return Validation(
        teacher_metric=mean_t,
        student_metric=mean_s,
        quality_ratio=mean_s / mean_t if mean_t > 0 else 0.0,
        ratio_ci=ratio_ci(rewards_t, rewards_s),
        agreement=float(np.mean(agree)),
        latency_ratio=latency,
        tokens_per_second_ratio=speed,
        n=len(agree),
        min_quality_ratio=min_ratio,
        report=str(report),
    )


def validate_student(config: Config, teacher: Teacher, student_folder: str, out_dir: Path) -> Validation:
    """Evaluate teacher and student on the run's held-out split, and compare them."""
    from srl_rlvr.evaluate.run import run_evaluation
    from srl_rlvr.tasks import load_task, safe_reward

    task = load_task(config.task.name, config.task.options)
    minimum = config.distill.min_quality_ratio
    if teacher.folder is not None:
        run = run_evaluation(config, [student_folder], baseline=teacher.folder, out_dir=out_dir)
        teacher_result, student = run.results.values()
        return compare_student(teacher_result, student, task, minimum, run.report)
    run = run_evaluation(config, [student_folder], out_dir=out_dir)
    [student] = run.results.values()
    problems = [Problem(r.id, r.text, r.answer, r.metadata) for r in student.records]
    answers = endpoint_answers(task, problems, config)
    rewards = [safe_reward(task, a, p) for a, p in zip(answers, problems, strict=True)]
    return compare_student((answers, rewards), student, task, minimum, run.report)
