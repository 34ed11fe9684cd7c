"""Structured extraction: a business document (email, OCR'd invoice, order note) -> one JSON object.

The answer must validate against a pydantic schema (the built-in `Invoice`, or a user's model named
as `module:Model`), and is scored by field-level F1 against the gold object, so a model earns partial
credit per field it gets right instead of all-or-nothing. The programmatic solver quotes where each
field sits in the text (one step per field) and ends with the whole JSON answer, which gives SRL
exact expert trajectories. Data is JSONL rows `{id, text, gold, kind?, evidence?}`; splits are
assigned by hashing the row id.
"""

from __future__ import annotations

import datetime
import importlib
import json
import math
import random
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model

from srl_rlvr.data.jsonl import read_models
from srl_rlvr.data.trajectory import Step, Trajectory
from srl_rlvr.errors import DataError, TaskError
from srl_rlvr.tasks.base import Problem, Split, split_of
from srl_rlvr.tasks.task_data import last_json_object

DEFAULT_DATA = Path(__file__).parent / "data" / "extraction.jsonl"
NUMBER_ABS_TOL = 1e-3  # totals are money: 0.01 off is a different amount, float noise is not
NUMBER_REL_TOL = 1e-6
LENGTH_BUCKETS = ((250, "short"), (400, "medium"))  # characters; anything longer is "long"


def _iso_date(value: str) -> str:
    # fromisoformat alone also accepts "20240314"; the answer must be the canonical YYYY-MM-DD
    try:
        canonical = datetime.date.fromisoformat(value).isoformat()
    except ValueError:
        canonical = None
    if canonical != value:
        raise ValueError(f"expected an ISO date YYYY-MM-DD, got {value!r}")
    return value


IsoDate = Annotated[str, AfterValidator(_iso_date)]


class Invoice(BaseModel):
    """The built-in schema. Extra keys are rejected so the model learns to answer with exactly these fields."""

    model_config = ConfigDict(extra="forbid")

    vendor: str = Field(min_length=1, description="the company that issued the invoice (not the customer)")
    invoice_number: str = Field(min_length=1, description="the invoice number exactly as printed")
    date: IsoDate = Field(description="the invoice (issue) date as YYYY-MM-DD")
    total: float = Field(description="the total amount due including tax, as a plain number")
    currency: str = Field(pattern=r"^[A-Za-z]{3}$", description="ISO 4217 code, e.g. USD, EUR, GBP, JPY")
    due_date: IsoDate | None = Field(
        None, description="the payment due date as YYYY-MM-DD, or null if none is stated"
    )


class _RowBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    kind: str = Field("document", description="email, invoice, order, note, ...: a slice for metrics")
    evidence: dict[str, str] = Field(
        default_factory=dict, description="field -> the text's surface form, which the solver quotes"
    )


def load_schema(reference: str) -> type[BaseModel]:
    """Resolve `module:Model` to a pydantic model class (the `schema` task option)."""
    module_name, _, attr = reference.partition(":")
    if not module_name or not attr:
        raise TaskError(f"extraction schema '{reference}': expected 'module:Model'")
    try:
        schema = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise TaskError(f"extraction schema '{reference}': cannot load it ({e})") from None
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise TaskError(f"extraction schema '{reference}' is not a pydantic BaseModel subclass")
    return schema


def same_value(predicted: Any, gold: Any) -> bool:
    """Field equality as graders read it: case/whitespace-blind strings, numbers within a tolerance."""
    if predicted is None or gold is None:
        return predicted is None and gold is None
    if isinstance(predicted, str) and isinstance(gold, str):
        return " ".join(predicted.split()).casefold() == " ".join(gold.split()).casefold()
    if _is_number(predicted) and _is_number(gold):
        return math.isclose(predicted, gold, rel_tol=NUMBER_REL_TOL, abs_tol=NUMBER_ABS_TOL)
    if isinstance(predicted, dict) and isinstance(gold, dict):
        return predicted.keys() == gold.keys() and all(same_value(predicted[k], gold[k]) for k in gold)
    if isinstance(predicted, list) and isinstance(gold, list):
        return len(predicted) == len(gold) and all(map(same_value, predicted, gold))
    return predicted == gold


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def field_counts(predicted: dict[str, Any] | None, gold: dict[str, Any]) -> tuple[int, int, int]:
    """(true positives, predicted fields, gold fields); a field counts only where it is non-null."""
    predicted = predicted or {}
    n_pred = sum(predicted.get(k) is not None for k in gold)
    n_gold = sum(v is not None for v in gold.values())
    hits = sum(v is not None and same_value(predicted.get(k), v) for k, v in gold.items())
    return hits, n_pred, n_gold


def _f1(hits: int, n_pred: int, n_gold: int) -> float:
    return 1.0 if n_pred + n_gold == 0 else 2 * hits / (n_pred + n_gold)


def _length_bucket(text: str) -> str:
    return next((name for limit, name in LENGTH_BUCKETS if len(text) < limit), "long")


class ExtractionTask:
    name = "extraction"

    def __init__(self, data_path: str | None = None, schema: str | None = None) -> None:
        self.data_path = Path(data_path) if data_path else DEFAULT_DATA
        self.schema: type[BaseModel] = load_schema(schema) if schema else Invoice
        self._problems: list[Problem] | None = None
        properties = self.schema.model_json_schema(by_alias=False)["properties"]
        self._field_list = "\n".join(
            f"- {name} ({_type_name(properties[name])}): {field.description or name}"
            for name, field in self.schema.model_fields.items()
        )

    def _load(self) -> list[Problem]:
        """Read and validate the data file once; gold objects must pass the schema, reported as file:line."""
        if self._problems is None:
            row_model = create_model("ExtractionRow", __base__=_RowBase, gold=(self.schema, ...))
            rows = read_models(self.data_path, row_model)
            if not rows:
                raise DataError(f"{self.data_path}: no extraction rows")
            optional = [k for k, f in self.schema.model_fields.items() if not f.is_required()]
            problems = []
            for row in rows:
                gold = row.gold.model_dump(mode="json")
                metadata = {"kind": row.kind, "length": _length_bucket(row.text)}
                metadata |= {f"has_{k}": gold[k] is not None for k in optional}
                problems.append(
                    Problem(
                        id=row.id, text=row.text, answer=gold, metadata={**metadata, "evidence": row.evidence}
                    )
                )
            self._problems = problems
        return self._problems

    def sample(self, n: int, seed: int, split: Split) -> list[Problem]:
        problems = [p for p in self._load() if split_of(p.id) == split]
        random.Random(f"extraction-{seed}-{split}").shuffle(problems)
        return problems[:n]

    def prompt(self, problem: Problem) -> str:
        return (
            "Extract these fields from the document below and answer with one JSON object "
            "(null for a field the document does not state). If you reason first, put the JSON last.\n"
            f"{self._field_list}\n\nDocument:\n{problem.text}\n"
        )

    def parse(self, completion: str) -> dict[str, Any] | None:
        found = last_json_object(completion)
        if found is None:
            return None
        try:
            return self.schema.model_validate(found).model_dump(mode="json")
        except ValidationError:
            return None

    def _gold(self, problem: Problem) -> dict[str, Any]:
        # a problem rebuilt from a trajectory (tasks.base.problem_of) carries the answer as JSON text
        answer = json.loads(problem.answer) if isinstance(problem.answer, str) else problem.answer
        return self.schema.model_validate(answer).model_dump(mode="json")

    def reward(self, completion: str, problem: Problem) -> float:
        predicted = self.parse(completion)
        return 0.0 if predicted is None else _f1(*field_counts(predicted, self._gold(problem)))

    def metrics(self, completions: list[str], problems: list[Problem]) -> dict[str, float]:
        """Micro field F1 over all rows and fields, exact match, schema validity, and accuracy per field."""
        n = max(len(problems), 1)
        totals = [0, 0, 0]
        exact = valid = 0
        field_hits = dict.fromkeys(self.schema.model_fields, 0)
        for completion, problem in zip(completions, problems, strict=True):
            predicted, gold = self.parse(completion), self._gold(problem)
            totals = [a + b for a, b in zip(totals, field_counts(predicted, gold), strict=True)]
            valid += predicted is not None
            if predicted is None:
                continue
            right = {k: same_value(predicted.get(k), v) for k, v in gold.items()}
            exact += all(right.values())
            for k, ok in right.items():
                field_hits[k] += ok
        return {
            "field_f1": _f1(*totals),
            "exact_match": exact / n,
            "schema_valid_rate": valid / n,
            **{f"field_acc/{k}": hits / n for k, hits in field_hits.items()},
        }

    def check_step(self, problem: Problem, index: int, action: str) -> float | None:
        """Whether a field step (`name: <JSON value>`) states its field's gold value: SRL's optional
        step check. None for the answer step, which the verifier judges."""
        gold = self._gold(problem)
        if index >= len(gold):
            return None
        name, _, value = action.partition(":")
        if name.strip() not in gold:
            return 0.0
        try:
            stated = json.loads(value)
        except json.JSONDecodeError:
            return 0.0
        return 1.0 if same_value(stated, gold[name.strip()]) else 0.0

    def solve(self, problem: Problem) -> Trajectory:
        gold = self._gold(problem)
        evidence = problem.metadata.get("evidence", {})
        steps = [
            Step(
                action=f"{k}: {json.dumps(v, ensure_ascii=False)}",
                reasoning=_locate(k, v, evidence, problem.text),
            )
            for k, v in gold.items()
        ]
        answer = json.dumps(gold, ensure_ascii=False)
        steps.append(Step(action=answer, reasoning="All fields together as one JSON object."))
        return Trajectory(
            problem=problem.text,
            steps=steps,
            expected_outcome=answer,
            metadata={"id": problem.id, **{k: v for k, v in problem.metadata.items() if k != "evidence"}},
            provenance={"teacher": "solver:extraction"},
        )


def _type_name(prop: dict[str, Any]) -> str:
    if "anyOf" in prop:
        return " or ".join(_type_name(p) for p in prop["anyOf"])
    return prop.get("type", "object")


def _locate(field: str, value: Any, evidence: dict[str, str], text: str) -> str:
    """The solver's reasoning for one field: where the text states it, and how it was normalised."""
    if value is None:
        return f"The document states no {field}, so it is null."
    surface = evidence.get(field)
    if surface is None and isinstance(value, str) and value.casefold() in text.casefold():
        surface = value
    if surface is None:
        return f"The {field} is read from the document."
    written = value if isinstance(value, str) else json.dumps(value)
    if surface == written:
        return f'The document says "{surface}".'
    return (
        f'The document gives "{surface}", written as {json.dumps(value, ensure_ascii=False)} in the answer.'
    )
