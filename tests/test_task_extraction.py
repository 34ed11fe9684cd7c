"""The extraction task: schema-checked JSON answers scored by field-level F1, and its exact solver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from srl_rlvr.errors import DataError, TaskError
from srl_rlvr.tasks import load_task, problem_of
from srl_rlvr.tasks.base import Problem
from srl_rlvr.tasks.extraction import ExtractionTask

WITH_DUE = {
    "vendor": "Thornbury Consulting Ltd",
    "invoice_number": "INV-2024-0042",
    "date": "2024-03-14",
    "total": 1234.56,
    "currency": "GBP",
    "due_date": "2024-04-13",
}
NO_DUE = {
    "vendor": "Acme Corp",
    "invoice_number": "A-00917",
    "date": "2023-11-02",
    "total": 89.5,
    "currency": "USD",
    "due_date": None,
}
# vendor and date right (modulo case/space), total right within tolerance; invoice_number and currency
# wrong; due_date predicted where the gold has none. 3 hits, 6 predicted, 5 gold -> F1 = 6/11.
PARTLY_WRONG = {
    "vendor": "  ACME   corp ",
    "invoice_number": "A-00918",
    "date": "2023-11-02",
    "total": 89.5000001,
    "currency": "EUR",
    "due_date": "2023-12-02",
}


def problem(gold: dict, id: str = "p1") -> Problem:
    return Problem(id=id, text="(document text)", answer=gold)


@pytest.fixture(scope="module")
def task() -> ExtractionTask:
    return ExtractionTask()


def test_perfect_answer_scores_one(task: ExtractionTask) -> None:
    assert task.reward(json.dumps(WITH_DUE), problem(WITH_DUE)) == 1.0


def test_partly_wrong_answer_scores_field_f1(task: ExtractionTask) -> None:
    assert task.reward(json.dumps(PARTLY_WRONG), problem(NO_DUE)) == pytest.approx(6 / 11)


def test_total_off_by_one_cent_is_a_wrong_field(task: ExtractionTask) -> None:
    answer = {**WITH_DUE, "total": 1234.57}
    assert task.reward(json.dumps(answer), problem(WITH_DUE)) == pytest.approx(10 / 12)


@pytest.mark.parametrize(
    "completion",
    [
        json.dumps({**WITH_DUE, "date": "14/03/2024"}),  # not ISO
        json.dumps({**WITH_DUE, "currency": "Pound"}),  # not a 3-letter code
        json.dumps({k: v for k, v in WITH_DUE.items() if k != "vendor"}),  # required field missing
        json.dumps({**WITH_DUE, "notes": "paid"}),  # a field the schema does not have
        json.dumps({**WITH_DUE, "total": "£1,234.56"}),  # not a number
        "The vendor is Thornbury Consulting Ltd and the total is 1234.56 GBP.",
        "",
    ],
)
def test_schema_invalid_or_non_json_answer_scores_zero(task: ExtractionTask, completion: str) -> None:
    assert task.parse(completion) is None
    assert task.reward(completion, problem(WITH_DUE)) == 0.0


def test_json_after_reasoning_lines_is_parsed_and_the_last_object_wins(task: ExtractionTask) -> None:
    draft = {**WITH_DUE, "total": 1.0}
    completion = (
        "The header says Thornbury Consulting Ltd; the invoice {number} is INV-2024-0042.\n"
        f"First draft: {json.dumps(draft)}\n"
        "On second look the total line is £1,234.56, so:\n"
        f"```json\n{json.dumps(WITH_DUE, indent=2)}\n```"
    )
    assert task.parse(completion) == WITH_DUE
    assert task.reward(completion, problem(WITH_DUE)) == 1.0


def test_solver_trajectories_score_one_on_every_sampled_problem(task: ExtractionTask) -> None:
    for split in ("train", "val", "test"):
        for p in task.sample(1000, seed=0, split=split):
            trajectory = task.solve(p)
            assert task.reward("\n".join(s.action for s in trajectory.steps), p) == 1.0
            assert json.loads(trajectory.steps[-1].action) == p.answer
            assert trajectory.provenance == {"teacher": "solver:extraction"}
            assert trajectory.metadata["kind"] in {"email", "invoice", "order", "note"}


def test_solver_steps_locate_each_field_before_the_answer(task: ExtractionTask) -> None:
    p = next(p for p in task.sample(1000, seed=0, split="train") if p.answer["due_date"])
    steps = task.solve(p).steps
    assert [s.action.split(":")[0] for s in steps[:-1]] == list(WITH_DUE)
    assert steps[0].action == f"vendor: {json.dumps(p.answer['vendor'], ensure_ascii=False)}"
    assert p.metadata["evidence"]["date"] in steps[2].reasoning


def test_problem_rebuilt_from_a_trajectory_scores_the_same(task: ExtractionTask) -> None:
    p = task.sample(1, seed=0, split="val")[0]
    trajectory = task.solve(p)
    assert task.reward(trajectory.solution_text(), problem_of(trajectory)) == 1.0


def test_splits_partition_the_shipped_rows_and_sampling_is_repeatable(task: ExtractionTask) -> None:
    splits = {s: task.sample(1000, seed=0, split=s) for s in ("train", "val", "test")}
    ids = [p.id for ps in splits.values() for p in ps]
    assert len(ids) == len(set(ids)) >= 200
    assert all(len(ps) >= 20 for ps in splits.values())
    fresh = ExtractionTask()
    assert [p.id for p in fresh.sample(5, seed=3, split="test")] == [
        p.id for p in task.sample(5, seed=3, split="test")
    ]
    assert [p.id for p in task.sample(5, seed=3, split="test")] != [
        p.id for p in task.sample(5, seed=4, split="test")
    ]


def test_shipped_evidence_quotes_the_text(task: ExtractionTask) -> None:
    for split in ("train", "val", "test"):
        for p in task.sample(1000, seed=0, split=split):
            assert all(surface in p.text for surface in p.metadata["evidence"].values()), p.id


def test_prompt_lists_every_field_and_the_document(task: ExtractionTask) -> None:
    p = task.sample(1, seed=0, split="train")[0]
    prompt = task.prompt(p)
    assert all(f"- {name} (" in prompt for name in WITH_DUE)
    assert "due_date (string or null)" in prompt
    assert prompt.rstrip().endswith(p.text.rstrip())


def test_metrics_on_a_hand_made_batch(task: ExtractionTask) -> None:
    problems = [problem(WITH_DUE, "a"), problem(NO_DUE, "b"), problem(WITH_DUE, "c")]
    completions = [json.dumps(WITH_DUE), json.dumps(PARTLY_WRONG), "I could not find an invoice."]
    # hits 6+3+0, predicted 6+6+0, gold 6+5+6 -> micro F1 = 2*9 / (12+17)
    assert task.metrics(completions, problems) == pytest.approx(
        {
            "field_f1": 18 / 29,
            "exact_match": 1 / 3,
            "schema_valid_rate": 2 / 3,
            "field_acc/vendor": 2 / 3,
            "field_acc/invoice_number": 1 / 3,
            "field_acc/date": 2 / 3,
            "field_acc/total": 2 / 3,
            "field_acc/currency": 1 / 3,
            "field_acc/due_date": 1 / 3,
        }
    )


class PurchaseOrder(BaseModel):
    """A user's schema, named to the task as `<this module>:PurchaseOrder`."""

    po_number: str
    quantity: int
    buyer: str | None = None


def test_user_schema_by_module_reference(tmp_path: Path) -> None:
    rows = [
        {
            "id": f"po{i}",
            "text": f"PO-{i}: {i + 1} crates, ordered by Kim",
            "gold": {"po_number": f"PO-{i}", "quantity": i + 1, "buyer": "Kim"},
        }
        for i in range(30)
    ]
    rows[0]["gold"]["buyer"] = None
    path = tmp_path / "orders.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = load_task("extraction", {"data_path": str(path), "schema": f"{__name__}:PurchaseOrder"})
    problems = [p for s in ("train", "val", "test") for p in task.sample(100, seed=0, split=s)]
    assert sorted(p.id for p in problems) == sorted(r["id"] for r in rows)
    assert all(p.metadata["has_buyer"] == (p.id != "po0") for p in problems)
    p = next(p for p in problems if p.id == "po3")
    assert "- quantity (integer)" in task.prompt(p)
    assert task.reward('{"po_number": "PO-3", "quantity": 4, "buyer": "kim"}', p) == 1.0
    assert task.reward('{"po_number": "PO-3", "quantity": 5, "buyer": "Kim"}', p) == pytest.approx(2 / 3)
    assert task.reward('{"po_number": "PO-3", "quantity": "four"}', p) == 0.0
    assert all(task.reward(task.solve(p).solution_text(), p) == 1.0 for p in problems)


def test_schema_reference_that_is_not_a_pydantic_model_is_a_task_error() -> None:
    with pytest.raises(TaskError, match="not a pydantic BaseModel"):
        ExtractionTask(schema=f"{__name__}:problem")


def test_malformed_data_file_reports_file_and_line(tmp_path: Path) -> None:
    good = {"id": "x1", "text": "Acme Corp invoice A-00917", "gold": NO_DUE}
    bad_date = {"id": "x3", "text": "...", "gold": {**NO_DUE, "date": "02/11/2023"}}
    path = tmp_path / "docs.jsonl"
    path.write_text(f"{json.dumps(good)}\n{{not json\n{json.dumps(bad_date)}\n")
    task = ExtractionTask(data_path=str(path))
    with pytest.raises(DataError) as err:
        task.sample(10, seed=0, split="train")
    assert f"{path}:2: invalid JSON" in str(err.value)
    assert f"{path}:3: gold.date" in str(err.value)
