"""The expert trajectory: the unit every training stage consumes.

The shape is the one users write by hand: `{problem, steps: [{action, reasoning, reward?}], expected_outcome,
metadata}` plus `provenance` (where the row came from: teacher, verifier score, attempts, context ids).
A step's `reward` is an optional importance weight ("higher reward steps = more important").
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str = Field(min_length=1, description="What the expert did at this step; SRL's target.")
    reasoning: str = Field("", description="Why; shown to SFT, never rewarded in SRL.")
    reward: float | None = Field(None, ge=0, description="Optional importance weight of this step.")


class Trajectory(BaseModel):
    model_config = ConfigDict(extra="forbid")

    problem: str = Field(min_length=1)
    steps: list[Step] = Field(min_length=1)
    expected_outcome: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    provenance: dict[str, Any] = Field(default_factory=dict)

    def solution_text(self) -> str:
        """The whole expert solution as one text: every action, one a line (the SFT target)."""
        return "\n".join(step.action for step in self.steps)
