import json
from pathlib import Path

import pytest

from srl_rlvr.cli import main
from srl_rlvr.data.jsonl import append_jsonl, read_trajectories, write_jsonl
from srl_rlvr.data.trajectory import Step, Trajectory
from srl_rlvr.data.versioning import content_hash, load_dataset, save_dataset
from srl_rlvr.errors import DataError

SPEC_ROW = {
    "problem": "Analyze sentiment of: 'This product is amazing!'",
    "steps": [
        {"action": "identify_keywords", "reasoning": "amazing is strongly positive", "reward": 0.2},
        {"action": "classify_sentiment", "reasoning": "one strong positive cue", "reward": 0.5},
        {"action": "generate_response", "reasoning": "report label and confidence", "reward": 0.3},
    ],
    "expected_outcome": "Positive sentiment (0.9 confidence)",
    "metadata": {"source": "spec"},
}


def test_the_spec_trajectory_format_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    write_jsonl(path, [Trajectory.model_validate(SPEC_ROW)])
    [row] = read_trajectories(path)
    assert [s.action for s in row.steps] == ["identify_keywords", "classify_sentiment", "generate_response"]
    assert row.steps[1].reward == 0.5
    assert row.expected_outcome == SPEC_ROW["expected_outcome"]


def test_every_malformed_row_is_reported_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = json.dumps(SPEC_ROW)
    no_steps = json.dumps({**SPEC_ROW, "steps": []})
    no_action = json.dumps({**SPEC_ROW, "steps": [{"reasoning": "x"}]})
    path.write_text("\n".join([good, "{not json", no_steps, "", no_action, good]) + "\n")
    with pytest.raises(DataError) as err:
        read_trajectories(path)
    lines = str(err.value).splitlines()
    assert lines[0].startswith(f"{path}:2: invalid JSON")
    assert lines[1].startswith(f"{path}:3: steps:")
    assert lines[2].startswith(f"{path}:5: steps.0.action:")
    assert len(lines) == 3


def test_append_keeps_rows_already_written(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    row = Trajectory.model_validate(SPEC_ROW)
    append_jsonl(path, [row])
    append_jsonl(path, [row, row])
    assert len(read_trajectories(path)) == 3


def test_dataset_version_is_the_hash_of_its_content(tmp_path: Path) -> None:
    a = Trajectory(
        problem="p", steps=[Step(action="a")], expected_outcome="o", provenance={"teacher": "solver"}
    )
    b = Trajectory(problem="q", steps=[Step(action="b")], expected_outcome="o", provenance={"teacher": "gpt"})
    manifest = save_dataset([a, b], tmp_path / "v1", source="test")
    assert manifest["hash"] == content_hash([a, b]) != content_hash([b, a])
    assert manifest["count"] == 2
    assert manifest["provenance_summary"] == {"teacher": {"solver": 1, "gpt": 1}}
    rows, loaded = load_dataset(tmp_path / "v1")
    assert rows == [a, b] and loaded["hash"] == manifest["hash"]
    rows, bare = load_dataset(tmp_path / "v1" / "trajectories.jsonl")
    assert bare["hash"] == manifest["hash"]


def test_cli_generate_then_check_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "data"
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "--n", "20", "--out", str(out)])
    assert exit_.value.code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 20 and manifest["rejected"] == 0
    with pytest.raises(SystemExit):
        main(["data", "check", str(out)])
    assert "20 trajectories" in capsys.readouterr().out


def test_cli_data_check_on_a_malformed_file_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"problem": "p"}\n')
    with pytest.raises(SystemExit) as exit_:
        main(["data", "check", str(path)])
    assert exit_.value.code == 2
    assert "bad.jsonl:1:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "no trajectories in it"),
        (b"\n\n  \n", "no trajectories in it"),
        (bytes(range(128, 256)), "not UTF-8 text"),
        (b'{"problem": "x", "steps": [{"action": "a"}], "expected_outcome": "1"\n', "(column 69)"),
    ],
    ids=["empty", "blank-lines", "binary", "truncated"],
)
def test_cli_data_check_gives_one_line_errors_for_files_that_are_not_data(
    content: bytes, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(content)
    with pytest.raises(SystemExit) as exited:
        main(["data", "check", str(path)])
    err = capsys.readouterr().err
    assert exited.value.code != 0 and says in " ".join(err.split()) and "Traceback" not in err
