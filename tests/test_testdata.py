"""`srl-rlvr testdata build` and `eval --testset`: versioned test sets that training data stays out of."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from srl_rlvr.cli import app, main
from srl_rlvr.data.records import Record, RecordStore
from srl_rlvr.data.testsets import HeldOutProblem, find_leaks, load_testset
from srl_rlvr.tasks import load_task

FARMER = (
    "A farmer has 12 cows and buys 7 more at the market on Monday. How many cows does the farmer have now?"
)
PARAPHRASE = "A farmer has 12 cows and buys 7 more at the market on Tuesday. How many cows does he have now?"
UNRELATED = "A train leaves at 3 pm and travels 60 km at 30 km per hour. At what hour does it arrive?"
TINY = ["model.name_or_path=tiny", "data.train_size=8", "data.test_size=5", "eval.max_new_tokens=4"]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_planted_exact_and_paraphrased_duplicate_of_training_data_is_removed_and_the_set_is_versioned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    training = write_jsonl(
        tmp_path / "train.jsonl",
        [{"problem": FARMER, "steps": [{"action": "12 + 7 = 19"}], "expected_outcome": "19"}],
    )
    candidates = write_jsonl(
        tmp_path / "candidates.jsonl",
        [
            {
                "id": "exact",
                "text": "  a farmer has 12 cows and buys 7 more at the market on Monday. " + FARMER[62:],
                "answer": 19,
            },
            {"id": "paraphrase", "text": PARAPHRASE, "answer": 19},
            {"id": "fresh", "text": UNRELATED, "answer": 5, "metadata": {"kind": "travel"}},
        ],
    )
    # production got one problem wrong: its request is in the server's record store
    failed = load_task("arithmetic").sample(1, seed=5, split="val")[0]
    store = RecordStore(f"sqlite:///{tmp_path / 'records.db'}")
    store.add(Record("r1", "key", "arithmetic", "v1", failed.text, "<answer>0</answer>", 5.0, 0.0, "answer"))
    store.flush()
    root = tmp_path / "testsets"
    settings = [
        *TINY,
        f"data.trajectories={training}",
        f"data.testsets={root}",
        f"feedback.store={store.url}",
    ]

    built = CliRunner().invoke(
        app, ["testdata", "build", *settings, "--name", "word", "--file", str(candidates), "--production"]
    )

    assert built.exit_code == 0, built.output
    assert (
        "removed exact: exact duplicate" in built.output
        and "removed paraphrase: near duplicate" in built.output
    )
    rows, manifest = load_testset(root, "word")
    ids = [r.id for r in rows]
    assert "exact" not in ids and "paraphrase" not in ids and "fresh" in ids
    assert manifest["sources"] == {"task": 5, str(candidates): 1, "production": 1}
    assert len(manifest["removed"]) == 2
    assert next(r for r in rows if r.metadata["source"] == "production").text == failed.text
    fresh = next(r for r in rows if r.id == "fresh")
    assert (
        fresh.metadata["difficulty"] in ("easy", "medium", "hard")
        and 0 <= fresh.metadata["base_pass_rate"] <= 1
    )
    version = manifest["version"]
    # the same rows are the same version; `eval --testset NAME@VERSION` scores exactly those rows
    again = CliRunner().invoke(
        app, ["testdata", "build", *settings, "--name", "word", "--file", str(candidates), "--production"]
    )
    assert f"word@{version}" in again.output
    out = tmp_path / "eval"
    scored = CliRunner().invoke(
        app, ["eval", "--model", "tiny", *settings, "--testset", f"word@{version}", "--out", str(out)]
    )
    assert scored.exit_code == 0, scored.output
    report = json.loads((out / "report.json").read_text())
    assert report["results"]["tiny"]["n"] == 7
    with pytest.raises(SystemExit) as exited:
        main(["eval", "--model", "tiny", *settings, "--testset", "word@000000000000"])
    assert exited.value.code == 2
    assert "no version 000000000000 of test set 'word'" in capsys.readouterr().err


def test_near_duplicates_need_most_of_the_text_in_common() -> None:
    rows = [HeldOutProblem("a", PARAPHRASE, 19), HeldOutProblem("b", UNRELATED, 5)]
    (leak,) = find_leaks(rows, [FARMER], threshold=0.7)
    assert leak.id == "a" and leak.kind == "near" and 0.7 <= leak.similarity < 1
