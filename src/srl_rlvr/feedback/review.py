"""The human review queue: production cases people should look at, out to a labelling tool and back.

Export picks the answers users rated -1 and those the task's check failed or the guardrails refused
(the low-confidence ones), skipping any already corrected. Two formats:

- `labelstudio`: a JSON list of tasks `{"data": {request_id, prompt, answer, reason}}`; a project
  with `<Text name="prompt" value="$prompt"/> <Text name="answer" value="$answer"/>
  <TextArea name="correction" toName="prompt"/>` shows them, and its JSON export comes back here.
- `argilla`: JSONL of flat records `{id, prompt, answer, reason}` for `rg.Dataset.records.log`; a
  dataset with a text question named `correction` collects the fix.

Import reads either tool's export (Label Studio's tasks with `annotations`, Argilla's records with
`responses` or a flat `correction`, or plain `{request_id, correction}` rows), checks each correction
with the role's task as the server's feedback route does, stores the valid ones as corrections (rating
-1) and reports every refused one; nothing valid is dropped because another row was bad.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from srl_rlvr.data.records import Feedback, RecordStore, StoreError
from srl_rlvr.errors import DataError
from srl_rlvr.tasks import Task
from srl_rlvr.tasks.outcome import correction_error

Format = Literal["labelstudio", "argilla"]


def review_cases(store: RecordStore, role: str | None, limit: int) -> list[dict[str, Any]]:
    """Cases to review, newest first: rated -1, or the task's check failed, or refused."""
    records = store.records(model=role)
    ratings: dict[str, list[Feedback]] = {}
    for f in store.feedback():
        ratings.setdefault(f.request_id, []).append(f)
    cases = []
    for r in reversed(records):
        given = ratings.get(r.request_id, [])
        if any(f.correction for f in given) or r.status == "error":
            continue
        if any(f.rating == -1 for f in given):
            reason = "rated -1"
        elif r.status == "refused":
            reason = "refused by the output guardrails"
        elif r.outcome is not None and r.outcome < 1:
            reason = "the task's check failed" if r.checked == "answer" else "no answer in the task's format"
        else:
            continue
        cases.append(
            {"request_id": r.request_id, "prompt": r.prompt, "answer": r.completion, "reason": reason}
        )
        if len(cases) == limit:
            break
    return cases


def export_queue(cases: list[dict[str, Any]], path: str | Path, fmt: Format) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "labelstudio":
        path.write_text(json.dumps([{"data": case} for case in cases], indent=1) + "\n")
    else:
        rows = [{"id": c["request_id"], **{k: v for k, v in c.items() if k != "request_id"}} for c in cases]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _labelstudio_correction(task: dict[str, Any]) -> str | None:
    for annotation in reversed(task.get("annotations") or []):
        if annotation.get("was_cancelled"):
            continue
        for result in annotation.get("result") or []:
            if result.get("from_name") == "correction":
                text = (result.get("value") or {}).get("text")
                return text[0] if isinstance(text, list) and text else text
    return None


def _argilla_correction(row: dict[str, Any]) -> str | None:
    responses = row.get("responses")
    if isinstance(responses, dict) and responses.get("correction"):
        answer = responses["correction"][-1]
        return answer.get("value") if isinstance(answer, dict) else answer
    flat = row.get("correction.responses")
    if isinstance(flat, list) and flat:
        return flat[-1]
    return row.get("correction")


def read_reviews(path: str | Path) -> list[tuple[str, str | None, str | None]]:
    """(where in the file, request id, correction) of each reviewed row."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"review file not found: {path}")
    text = path.read_text().strip()
    try:
        rows = (
            json.loads(text)
            if text.startswith("[")
            else [json.loads(line) for line in text.splitlines() if line.strip()]
        )
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not JSON or JSONL: {e}") from None
    out = []
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise DataError(f"{path}: row {i} is not a JSON object")
        if "data" in row:  # Label Studio task
            data = row["data"] or {}
            out.append((f"{path}: task {i}", data.get("request_id"), _labelstudio_correction(row)))
        else:
            rid = row.get("request_id") or row.get("id") or (row.get("metadata") or {}).get("request_id")
            out.append((f"{path}: row {i}", rid, _argilla_correction(row)))
    return out


@dataclass
class ImportResult:
    stored: int = 0
    skipped: int = 0  # reviewed rows without a correction
    refused: list[str] = field(default_factory=list)


def import_reviews(store: RecordStore, path: str | Path, tasks: dict[str, Task]) -> ImportResult:
    """Store each reviewed correction that passes its role's task check; `tasks`: role -> task."""
    result = ImportResult()
    for where, request_id, correction in read_reviews(path):
        if not correction or not correction.strip():
            result.skipped += 1
            continue
        record = store.record(request_id) if request_id else None
        if record is None:
            result.refused.append(f"{where}: no recorded request '{request_id}'")
            continue
        task = tasks.get(record.model)
        why = correction_error(task, record.prompt, correction) if task is not None else None
        if why is not None:
            result.refused.append(f"{where}: correction refused: {why}")
            continue
        try:
            store.add_feedback(Feedback(record.request_id, -1, correction, key_id="review"))
        except StoreError as e:
            result.refused.append(f"{where}: {e}")
            continue
        result.stored += 1
    return result
