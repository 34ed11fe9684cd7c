"""Content moderation: which policy flags a message raises and how severe it is, answered as JSON.

The model may reason first; its answer is the last JSON object in the completion,
`{"flags": [...], "severity": "none" | "low" | "medium" | "high"}`, with clean content answered as
`{"flags": [], "severity": "none"}`. The reward is 0.7 * Jaccard(flags, gold flags) + 0.3 * (severity
right), so getting the flags right matters most but a missed or extra flag still earns partial credit.

The shipped data (data/moderation.jsonl) is mild, synthetic and hand-written: half clean (a fifth of
those built to look risky: idioms, fiction, advice about scams) and half flagged, with the evidence
phrase for each flag annotated so the solver can write an expert trajectory
(evidence -> flags -> severity -> JSON). Phone numbers, emails and card numbers are reserved test values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from srl_rlvr.data.trajectory import Step, Trajectory
from srl_rlvr.tasks.base import Problem, Split

# Shared answer-parsing and row-reading helpers live with the sentiment task, the first JSON task.
from srl_rlvr.tasks.task_data import TaskRow, last_json_object, length_bucket, read_task_rows, sample_rows

Flag = Literal["harassment", "hate", "violence", "self_harm", "sexual", "spam", "pii"]
Severity = Literal["none", "low", "medium", "high"]
FLAGS: dict[str, str] = {
    "harassment": "insults, threats or pressure aimed at a person",
    "hate": "contempt or exclusion of a group for who they are",
    "violence": "threats of or calls for physical harm",
    "self_harm": "the writer or someone else harming themselves",
    "sexual": "sexual content or solicitation",
    "spam": "unsolicited ads, scams or phishing",
    "pii": "personal data: phone, email, address, ID, card or password",
}
SEVERITY_WEIGHT, FLAGS_WEIGHT = 0.3, 0.7
DATA_FILE = Path(__file__).parent / "data" / "moderation.jsonl"


class ModerationAnswer(BaseModel):
    """The output format. Strict, so a flag list given as a string never passes."""

    model_config = ConfigDict(extra="forbid", strict=True)

    flags: list[Flag]
    severity: Severity


class Evidence(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phrase: str = Field(min_length=1, description="Words of the text that justify the flag.")
    flag: Flag


class ModerationRow(TaskRow):
    """One line of a moderation data file; checked for consistency so the gold answer is never contradictory."""

    flags: list[Flag]
    severity: Severity
    evidence: list[Evidence] = Field(default_factory=list)
    source: str = "unknown"
    note: str = Field("", description="Why the label holds, for clean rows that look risky.")

    @model_validator(mode="after")
    def _consistent(self) -> ModerationRow:
        if len(set(self.flags)) != len(self.flags):
            raise ValueError(f"flags repeat: {self.flags}")
        if (not self.flags) != (self.severity == "none"):
            raise ValueError(
                f"severity 'none' goes with no flags and only then, got {self.flags} / {self.severity}"
            )
        for item in self.evidence:
            if item.phrase.lower() not in self.text.lower():
                raise ValueError(f"evidence {item.phrase!r} does not occur in the text")
            if item.flag not in self.flags:
                raise ValueError(
                    f"evidence {item.phrase!r} supports {item.flag!r}, which is not among the flags"
                )
        return self


def jaccard(a: set[str], b: set[str]) -> float:
    """Overlap of two flag sets; two empty sets agree completely."""
    return len(a & b) / len(a | b) if a or b else 1.0


class ModerationTask:
    name = "moderation"
    instruction = (
        "Moderate the content below. Possible flags:\n"
        + "".join(f"- {flag}: {meaning}\n" for flag, meaning in FLAGS.items())
        + "Severity is none for clean content, else low (rude, mild), medium (abusive, scams, sensitive)"
        " or high (credible threats, self-harm intent, secrets such as ID numbers or passwords).\n"
        "You may reason first, one short line at a time. End with one JSON object:\n"
        '{"flags": [<zero or more flags>], "severity": "none" | "low" | "medium" | "high"}\n'
        'Clean content is {"flags": [], "severity": "none"}.\n'
    )

    def __init__(self, data_path: str | None = None) -> None:
        """`data_path`: a JSONL file of rows shaped like data/moderation.jsonl, instead of the shipped one."""
        self.data_path = Path(data_path) if data_path else DATA_FILE
        self.rows = read_task_rows(self.data_path, ModerationRow)

    def sample(self, n: int, seed: int, split: Split) -> list[Problem]:
        return [self._problem(row) for row in sample_rows(self.rows, self.name, n, seed, split)]

    def _problem(self, row: ModerationRow) -> Problem:
        metadata = {
            "label": "flagged" if row.flags else "clean",
            "flags": ",".join(row.flags) or "none",
            "severity": row.severity,
            "source": row.source,
            "tricky": bool(row.note) and not row.flags,
            "length": length_bucket(row.text),
            "evidence": [[item.phrase, item.flag] for item in row.evidence],
            "note": row.note,
        }
        answer = {"flags": list(row.flags), "severity": row.severity}
        return Problem(id=row.id, text=row.text, answer=answer, metadata=metadata)

    def prompt(self, problem: Problem) -> str:
        return f"{self.instruction}\nContent: {problem.text}\n"

    def parse(self, completion: str) -> ModerationAnswer | None:
        found = last_json_object(completion)
        if found is None:
            return None
        try:
            return ModerationAnswer.model_validate(found)
        except ValidationError:
            return None

    def _gold(self, problem: Problem) -> ModerationAnswer:
        """The reference answer, given as a dict by `sample` or as JSON text by `problem_of(trajectory)`."""
        if isinstance(problem.answer, str):
            return ModerationAnswer.model_validate_json(problem.answer)
        return ModerationAnswer.model_validate(problem.answer)

    def reward(self, completion: str, problem: Problem) -> float:
        answer = self.parse(completion)
        if answer is None:
            return 0.0
        gold = self._gold(problem)
        overlap = jaccard(set(answer.flags), set(gold.flags))
        return FLAGS_WEIGHT * overlap + SEVERITY_WEIGHT * (answer.severity == gold.severity)

    def metrics(self, completions: list[str], problems: list[Problem]) -> dict[str, float]:
        """An unparseable completion counts as wrong for accuracies and as flagging nothing for F1 and FPR.

        "Flagged" means a non-empty flag list. The false positive rate is over truly clean items (0 when
        there are none); flag F1 is micro-averaged over all (item, flag) pairs, 1.0 when neither side
        flags anything.
        """
        pairs = list(
            zip([self.parse(c) for c in completions], [self._gold(q) for q in problems], strict=True)
        )
        n = max(len(pairs), 1)
        tp = fp = fn = 0
        for p, g in pairs:
            predicted, gold = (set(p.flags) if p else set()), set(g.flags)
            tp, fp, fn = tp + len(predicted & gold), fp + len(predicted - gold), fn + len(gold - predicted)
        clean = [p for p, g in pairs if not g.flags]
        return {
            "detection_accuracy": sum(p is not None and bool(p.flags) == bool(g.flags) for p, g in pairs) / n,
            "false_positive_rate": sum(p is not None and bool(p.flags) for p in clean) / max(len(clean), 1),
            "flag_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
            "severity_accuracy": sum(p is not None and p.severity == g.severity for p, g in pairs) / n,
            "parse_rate": sum(p is not None for p, _ in pairs) / n,
        }

    def solve(self, problem: Problem) -> Trajectory:
        gold = self._gold(problem)
        evidence = problem.metadata["evidence"]
        found = ", ".join(f'"{phrase}" ({flag})' for phrase, flag in evidence) or "none"
        flags = [flag for flag in FLAGS if flag in gold.flags]
        why_clean = (
            problem.metadata["note"]
            or "Ordinary content: nothing targets, threatens, sells or exposes anyone."
        )
        answer = json.dumps({"flags": flags, "severity": gold.severity})
        steps = [
            Step(action=f"evidence: {found}", reasoning="Quote the words that would break a policy, if any."),
            Step(
                action=f"flags: {', '.join(flags) or 'none'}",
                reasoning=why_clean if not flags else "Each flag backed by the evidence.",
            ),
            Step(
                action=f"severity: {gold.severity}",
                reasoning="Clean content has no severity."
                if not flags
                else "The worst flagged part sets it.",
            ),
            Step(action=answer, reasoning="The answer in the required format."),
        ]
        return Trajectory(
            problem=problem.text,
            steps=steps,
            expected_outcome=answer,
            metadata={
                "id": problem.id,
                **{k: v for k, v in problem.metadata.items() if k not in ("evidence", "note")},
            },
            provenance={"teacher": "solver:moderation"},
        )
