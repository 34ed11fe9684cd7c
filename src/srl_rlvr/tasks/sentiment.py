"""Sentiment of short reviews, tweets and support messages, answered as JSON with a confidence.

The model may reason first; its answer is the last JSON object in the completion,
`{"sentiment": "positive" | "negative" | "neutral", "confidence": 0..1}`. A wrong or unparseable
answer scores 0 and a right one 0.5 + 0.5 * confidence, so any right answer beats any wrong one.
The reward never punishes a confident wrong answer, so it pushes confidence towards 1: read the
confidence as a format field, not as a calibrated probability.

The shipped data (data/sentiment.jsonl) is synthetic and hand-written, with the cue phrases that
carry the sentiment annotated; the solver turns them into a three-step expert trajectory
(cues -> label -> JSON). A `hard` field marks negation, sarcasm, mixed, figurative and question rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from srl_rlvr.data.trajectory import Step, Trajectory
from srl_rlvr.tasks.base import Problem, Split
from srl_rlvr.tasks.task_data import TaskRow, last_json_object, length_bucket, read_task_rows, sample_rows

Sentiment = Literal["positive", "negative", "neutral"]
LABELS: tuple[Sentiment, ...] = ("positive", "negative", "neutral")
DATA_FILE = Path(__file__).parent / "data" / "sentiment.jsonl"


class SentimentAnswer(BaseModel):
    """The output format. Strict, so "0.9" or true never pass as a confidence."""

    model_config = ConfigDict(extra="forbid", strict=True)

    sentiment: Sentiment
    confidence: float = Field(ge=0, le=1, allow_inf_nan=False)


class Cue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phrase: str = Field(min_length=1, description="Words of the text that carry sentiment.")
    polarity: Literal["+", "-"] = Field(description="What the phrase means here: sarcastic praise is '-'.")


class SentimentRow(TaskRow):
    """One line of a sentiment data file; unknown keys are errors so a typo is not silently dropped."""

    label: Sentiment
    cues: list[Cue] = Field(default_factory=list)
    source: str = "unknown"
    hard: Literal["negation", "sarcasm", "mixed", "figurative", "question"] | None = None
    note: str = Field("", description="Why the label holds, for rows where the cues alone mislead.")

    @model_validator(mode="after")
    def _cues_quote_the_text(self) -> SentimentRow:
        for cue in self.cues:
            if cue.phrase.lower() not in self.text.lower():
                raise ValueError(f"cue {cue.phrase!r} does not occur in the text")
        return self


def macro_f1(predicted: Sequence[str | None], gold: Sequence[str]) -> float:
    """Mean per-label F1 over labels present in gold or predictions (as sklearn's macro average)."""
    labels = [label for label in LABELS if label in gold or label in predicted]
    if not labels:
        return 0.0
    scores = []
    for label in labels:
        tp = sum(p == label and g == label for p, g in zip(predicted, gold, strict=True))
        fp = sum(p == label and g != label for p, g in zip(predicted, gold, strict=True))
        fn = sum(p != label and g == label for p, g in zip(predicted, gold, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)


class SentimentTask:
    name = "sentiment"
    answer_model = SentimentAnswer  # what a served role decodes under with `constrain_output`
    instruction = (
        "Classify the sentiment of the text as positive, negative or neutral.\n"
        "You may reason first, one short line at a time. End with one JSON object:\n"
        '{"sentiment": "positive" | "negative" | "neutral", "confidence": <number from 0 to 1>}\n'
    )

    def __init__(self, data_path: str | None = None) -> None:
        """`data_path`: a JSONL file of rows shaped like data/sentiment.jsonl, instead of the shipped one."""
        self.data_path = Path(data_path) if data_path else DATA_FILE
        self.rows = read_task_rows(self.data_path, SentimentRow)

    def sample(self, n: int, seed: int, split: Split) -> list[Problem]:
        return [self._problem(row) for row in sample_rows(self.rows, self.name, n, seed, split)]

    def _problem(self, row: SentimentRow) -> Problem:
        metadata = {
            "label": row.label,
            "source": row.source,
            "hard": row.hard or "none",
            "length": length_bucket(row.text),
            "cues": [[cue.phrase, cue.polarity] for cue in row.cues],
            "note": row.note,
        }
        return Problem(id=row.id, text=row.text, answer=row.label, metadata=metadata)

    def prompt(self, problem: Problem) -> str:
        return f"{self.instruction}\nText: {problem.text}\n"

    def parse(self, completion: str) -> SentimentAnswer | None:
        found = last_json_object(completion)
        if found is None:
            return None
        try:
            return SentimentAnswer.model_validate(found)
        except ValidationError:
            return None

    def reward(self, completion: str, problem: Problem) -> float:
        answer = self.parse(completion)
        if answer is None or answer.sentiment != problem.answer:
            return 0.0
        return 0.5 + 0.5 * answer.confidence

    def metrics(self, completions: list[str], problems: list[Problem]) -> dict[str, float]:
        """Accuracy and macro F1 count an unparseable completion as a wrong label."""
        parsed = [self.parse(c) for c in completions]
        predicted = [p.sentiment if p else None for p in parsed]
        gold = [str(q.answer) for q in problems]
        n = max(len(problems), 1)
        return {
            "accuracy": sum(p == g for p, g in zip(predicted, gold, strict=True)) / n,
            "macro_f1": macro_f1(predicted, gold),
            "parse_rate": sum(p is not None for p in parsed) / n,
        }

    def solve(self, problem: Problem) -> Trajectory:
        cues = problem.metadata["cues"]
        label = problem.answer
        cue_list = ", ".join(f"{phrase} ({polarity})" for phrase, polarity in cues) or "none"
        polarities = {polarity for _, polarity in cues}
        why = problem.metadata["note"] or (
            "No opinion words: the text states facts or asks."
            if not polarities
            else f"The cues point one way: {label}."
            if len(polarities) == 1
            else f"The cues conflict; the overall verdict is {label}."
        )
        answer = json.dumps({"sentiment": label, "confidence": 1.0})
        steps = [
            Step(
                action=f"cues: {cue_list}",
                reasoning="Find the words that carry opinion, and their sign here.",
            ),
            Step(action=f"label: {label}", reasoning=why),
            Step(action=answer, reasoning="The gold label is certain, so full confidence."),
        ]
        return Trajectory(
            problem=problem.text,
            steps=steps,
            expected_outcome=str(label),
            metadata={
                "id": problem.id,
                **{k: v for k, v in problem.metadata.items() if k not in ("cues", "note")},
            },
            provenance={"teacher": "solver:sentiment"},
        )
