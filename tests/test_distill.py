"""Distillation on CPU with small models: a two-tier cascade registered with its lineage, a broken
student refused, `--since last` that trains nothing the second time, and on-policy distillation."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from chat_server import ScriptedChatServer
from typer.testing import CliRunner

from srl_rlvr.cli import app
from srl_rlvr.config import build_config
from srl_rlvr.data.records import Record, RecordStore
from srl_rlvr.distill.run import cascade, distill_once
from srl_rlvr.distill.validate import Validation
from srl_rlvr.errors import ConfigError
from srl_rlvr.modeling import EMBEDDED_DIR
from srl_rlvr.tasks.arithmetic import ArithmeticTask
from srl_rlvr.tracking.registry import promote, register, versions


def config(tmp: Path, **sections: dict) -> object:
    raw = {
        "output_dir": str(tmp / "runs"),
        "task": {"name": "arithmetic", "options": {"min_steps": 1, "max_steps": 2}},
        "data": {"test_size": 24},
        "sft": {"max_steps": 4, "batch_size": 8, "learning_rate": 1e-3},
        "eval": {"max_new_tokens": 48, "batch_size": 24},
        "registry": {"tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}"},
        "distill": {
            "teacher": "registry:arithmetic@production",
            "num_prompts": 24,
            "teacher_max_tokens": 48,
            "students": {"silver": "embedded-student", "gold": "tiny"},
            "min_quality_ratio": 0.0,  # lineage is under test here, not quality
        },
    }
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values}
    return build_config(raw)


@pytest.fixture
def production(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    v1 = register("arithmetic", EMBEDDED_DIR, stage="pretrain", parent="embedded", metrics={"reward": 0.8})
    promote("arithmetic", v1.version, "production")
    return v1.reference


def test_a_two_tier_cascade_registers_each_student_with_its_teacher_as_parent(
    tmp_path: Path, production: str
) -> None:
    silver, gold = cascade(config(tmp_path), ["silver", "gold"])
    assert silver.init == "teacher"  # the packaged student starts from the embedded teacher's layers
    assert (silver.teacher, gold.teacher) == (production, silver.registered)
    [s] = versions("arithmetic-silver")
    [g] = versions("arithmetic-gold")
    assert (s.parent, s.tags["tier"], s.stage) == (production, "silver", "distill")
    assert (g.parent, g.tags["tier"]) == (s.reference, "gold")
    assert s.dataset.startswith("dataset:") and "quality_ratio" in s.metrics
    manifest = json.loads((Path(silver.run_dir) / "data" / "manifest.json").read_text())
    assert manifest["teacher"] == production and manifest["accepted"] == silver.traces > 0
    assert "Registered as registry:arithmetic-silver/1" in (Path(silver.run_dir) / "distill.md").read_text()


def test_a_broken_student_is_not_registered_and_the_report_says_why(tmp_path: Path, production: str) -> None:
    broken = config(tmp_path, sft={"learning_rate": 5.0}, distill={"min_quality_ratio": 0.9})
    result = distill_once(broken, production, "embedded-student", "silver")
    assert result.registered is None and not result.validation.passed
    report = (Path(result.run_dir) / "distill.md").read_text()
    assert "**Not registered**" in report and "fails the minimum 0.9" in report
    with pytest.raises(Exception, match="arithmetic-silver"):
        versions("arithmetic-silver")


def test_since_last_twice_trains_nothing_the_second_time(tmp_path: Path, production: str) -> None:
    path = tmp_path / "distill.yaml"
    path.write_text(json.dumps(config(tmp_path).model_dump(mode="json")))
    first = CliRunner().invoke(app, ["distill", str(path), "--since", "last"])
    assert first.exit_code == 0 and "student: registered registry:arithmetic-student/1" in first.output
    second = CliRunner().invoke(app, ["distill", str(path), "--since", "last"])
    assert second.exit_code == 0 and "student: nothing new since the last distillation" in second.output
    assert len(versions("arithmetic-student")) == 1
    assert len(list((tmp_path / "runs" / "distill").glob("student-*/sft"))) == 1


def test_on_policy_distillation_trains_the_student_on_its_own_samples(
    tmp_path: Path, production: str
) -> None:
    on_policy = config(
        tmp_path,
        distill={
            "method": "on_policy",
            "on_policy": {"max_steps": 2, "batch_size": 4, "max_completion_length": 16},
        },
    )
    result = distill_once(on_policy, production, "embedded-student", None)
    assert (
        Path(result.trained).parent.name == "on_policy"
        and result.registered == "registry:arithmetic-student/1"
    )
    steps = [
        json.loads(line)
        for line in (Path(result.run_dir) / "on_policy" / "metrics.jsonl").read_text().splitlines()
    ]
    assert any("loss" in s for s in steps)


def test_production_requests_are_asked_and_since_last_takes_only_the_new_ones(
    tmp_path: Path, production: str
) -> None:
    store = RecordStore(f"sqlite:///{tmp_path / 'records.db'}")
    problems = ArithmeticTask(min_steps=1, max_steps=2).sample(12, 5, "train")

    def served(batch: list, at: datetime) -> None:
        for p in batch:
            store.add(
                Record(
                    f"r-{p.id}", "alice", "arithmetic", "v1", p.text, "Answer: 0", 5.0, 0.0, "answer", time=at
                )
            )
        store.flush()

    served(problems[:8], datetime.now(timezone.utc) - timedelta(hours=2))
    nightly = config(
        tmp_path,
        distill={"prompts": "production"},
        feedback={"store": f"sqlite:///{tmp_path / 'records.db'}", "role": "arithmetic"},
    )
    first = distill_once(nightly, production, "embedded-student", None, since_last=True)
    assert first.questions == 8 and first.registered is not None
    served(problems[8:], datetime.now(timezone.utc))  # recorded after the first run began
    second = distill_once(nightly, production, "embedded-student", None, since_last=True)
    assert second.questions == 4 and second.registered is not None
    third = distill_once(nightly, production, "embedded-student", None, since_last=True)
    assert third.skipped is not None and third.questions == 0


def test_an_endpoint_teacher_answers_over_http_and_only_its_verified_answers_are_kept(tmp_path: Path) -> None:
    task = ArithmeticTask()

    def teacher(request: dict) -> str:  # an OpenAI-compatible LLM that gets every third problem wrong
        text = request["messages"][-1]["content"].removeprefix(task.instruction).strip()
        problem = task.problem_from_text(text)
        lines = [s.action for s in task.solve(problem).steps]
        if problem.metadata["start"] % 3 == 0:
            lines[-1] = f"Answer: {problem.answer + 1}"
        return "\n".join(lines)

    with ScriptedChatServer(teacher) as server:
        endpoint = {"base_url": server.base_url, "model": "big-teacher", "api_key_env": None}
        result = distill_once(
            config(tmp_path, distill={"teacher": "endpoint"}, collaboration={"teacher": endpoint}),
            "endpoint",
            "tiny",
            None,
        )
    manifest = json.loads((Path(result.run_dir) / "data" / "manifest.json").read_text())
    wrong = sum(
        p.metadata["start"] % 3 == 0 for p in ArithmeticTask(min_steps=1, max_steps=2).sample(24, 0, "train")
    )
    assert manifest["teacher"] == "endpoint:big-teacher" and manifest["accepted"] == 24 - wrong
    assert manifest["usage"]["big-teacher"]["requests"] == 24  # the collaboration client counted them
    v = result.validation
    assert v.latency_ratio is None and "speed not compared" in v.speed
    assert 0.5 < v.teacher_metric < 1.0  # the endpoint's own answers to the held-out problems, scored


def test_registration_is_gated_on_the_lower_bound_of_the_quality_ratios_interval() -> None:
    def validation(ratio: float, interval: tuple[float, float]) -> Validation:
        return Validation(0.8, 0.8 * ratio, ratio, interval, 1.0, None, None, 100, 0.9, "report.md")

    assert not validation(0.95, (0.78, 1.1)).passed, "a point ratio above 0.9 on a wide interval is luck"
    assert validation(0.98, (0.91, 1.05)).passed
    assert not validation(0.0, (float("nan"), float("nan"))).passed  # the teacher never right


def test_a_cascade_must_go_from_larger_models_to_smaller(tmp_path: Path) -> None:
    # gold (3-8B) cannot teach silver (7-13B): refused before anything is asked or trained
    with pytest.raises(ConfigError, match="from the larger models to the smaller"):
        cascade(config(tmp_path), ["gold", "silver"])
    with pytest.raises(ConfigError, match="once each"):
        cascade(config(tmp_path), ["silver", "silver"])
    assert not (tmp_path / "runs").exists()
