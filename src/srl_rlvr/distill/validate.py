"""Is the student good enough to stand in for its teacher? Measured on the same held-out problems.

Quality is the ratio of the primary metric (student / teacher, with a bootstrap interval over
problems); agreement is the share of problems where both give the same parsed answer; speed is the
latency and tokens/s of each under the same evaluation (the ratio is what a tier is chosen for). A
student below `distill.min_quality_ratio` is not registered, and the report says by how much.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from srl_rlvr.config import Config
from srl_rlvr.evaluate.evaluation import EvalResult
from srl_rlvr.tasks import Task


@dataclass
class Validation:
    teacher_metric: float
    student_metric: float
    quality_ratio: float
    ratio_ci: tuple[float, float]
    agreement: float
    latency_ratio: float  # student p50 / teacher p50: below 1 is faster
    tokens_per_second_ratio: float
    n: int
    min_quality_ratio: float
    report: str

    @property
    def passed(self) -> bool:
        return self.quality_ratio >= self.min_quality_ratio

    @property
    def why(self) -> str:
        verdict = "passes" if self.passed else "fails"
        return (
            f"student {self.student_metric:.3f} vs teacher {self.teacher_metric:.3f}: ratio {self.quality_ratio:.3f} "
            f"[{self.ratio_ci[0]:.3f}, {self.ratio_ci[1]:.3f}] {verdict} the minimum {self.min_quality_ratio}"
        )


def _ratio_ci(
    teacher: np.ndarray, student: np.ndarray, samples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(teacher), size=(samples, len(teacher)))
    t, s = teacher[rows].mean(axis=1), student[rows].mean(axis=1)
    ratios = np.divide(s, t, out=np.full_like(s, np.nan), where=t > 0)
    low, high = np.nanpercentile(ratios, [2.5, 97.5]) if np.isfinite(ratios).any() else (np.nan, np.nan)
    return float(low), float(high)


def compare_student(
    teacher: EvalResult, student: EvalResult, task: Task, min_ratio: float, report: Path
) -> Validation:
    rewards_t, rewards_s = np.asarray(teacher.rewards), np.asarray(student.rewards)
    mean_t, mean_s = float(rewards_t.mean()), float(rewards_s.mean())
    agree = [
        task.parse(a.completion) is not None and task.parse(a.completion) == task.parse(b.completion)
        for a, b in zip(teacher.records, student.records, strict=True)
    ]
    return Validation(
        teacher_metric=mean_t,
        student_metric=mean_s,
        quality_ratio=mean_s / mean_t if mean_t > 0 else 0.0,
        ratio_ci=_ratio_ci(rewards_t, rewards_s),
        agreement=float(np.mean(agree)),
        latency_ratio=student.latency_ms["p50"] / teacher.latency_ms["p50"],
        tokens_per_second_ratio=student.tokens_per_second / teacher.tokens_per_second,
        n=len(agree),
        min_quality_ratio=min_ratio,
        report=str(report),
    )


def validate_student(config: Config, teacher_folder: str, student_folder: str, out_dir: Path) -> Validation:
    """Evaluate teacher then student on the run's held-out split, and compare them."""
    from srl_rlvr.evaluate.run import run_evaluation
    from srl_rlvr.tasks import load_task

    run = run_evaluation(config, [student_folder], baseline=teacher_folder, out_dir=out_dir)
    teacher, student = run.results.values()
    task = load_task(config.task.name, config.task.options)
    return compare_student(teacher, student, task, config.distill.min_quality_ratio, run.report)
