"""Registered encoders are evaluated, selected and distilled like any other model.

`srl-rlvr eval` scores a registered embedding model or a run's model on its run's held-out queries
against its base, with paired intervals; `select` ranks encoder candidates by the metric our own
evaluation measured; `distill` trains a small embedding model or reranker to give a large one's
outputs, and registers it with the teacher's exact version as its parent. Tiny BERTs built
in-process, nothing downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from srl_rlvr.cli import app
from srl_rlvr.config import build_config
from srl_rlvr.distill.run import distill_once
from srl_rlvr.encoder_data import build_encoder_data
from srl_rlvr.encoder_models import load_embedding_model
from srl_rlvr.pipeline.encoders import run_encoder_pipeline
from srl_rlvr.selection.catalog import RoleProfile, load_catalog
from srl_rlvr.selection.mcda import select_model
from srl_rlvr.tracking import registry

ROLES = {"sentiment": "sentiment", "arithmetic": "arithmetic", "codegen": "codegen"}


def encoder_config(kind: str, folder: Path, distill: dict | None = None, **encoder) -> object:
    return build_config(
        {
            "model": {"type": kind, "name_or_path": "tiny", "device": "cpu"},
            "task": {"name": "retrieval"},
            "output_dir": str(folder),
            "data": {"test_size": 30},
            "eval": {"bootstrap_samples": 200},
            "encoder": {"steps": 8, "batch_size": 16, "learning_rate": 1e-3, "max_length": 48, **encoder},
            "registry": {"model_name": f"uses-{kind}"},
            "distill": distill or {},
        }
    )


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """A trained, registered embedding model, reranker and intent router, each in its own run folder."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model's matrices are too small to split between threads
    folder = tmp_path_factory.mktemp("teachers")
    router = {"steps": 20, "learning_rate": 5e-3, "per_role": 24, "roles": ROLES}
    try:
        yield {
            "embedding": run_encoder_pipeline(encoder_config("embedding", folder / "embedding")),
            "reranker": run_encoder_pipeline(encoder_config("reranker", folder / "reranker")),
            "classifier": run_encoder_pipeline(encoder_config("classifier", folder / "router", **router)),
        }
    finally:
        torch.set_num_threads(threads)


def test_eval_scores_a_registered_embedding_model_against_its_base_on_its_runs_queries(teachers, tmp_path):
    result = CliRunner().invoke(
        app, ["eval", "--model", "registry:uses-embedding@staging", "--out", str(tmp_path / "eval")]
    )
    assert result.exit_code == 0, result.output
    assert "ndcg@10" in result.output
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert list(report["results"]) == ["base", "uses-embedding@staging"]
    delta = report["deltas"]["uses-embedding@staging"]["ndcg@10"]
    assert delta["delta_low"] <= delta["delta"] <= delta["delta_high"]
    # the run's own held-out queries, so the same numbers as the run's evaluate stage
    trained = teachers["embedding"].report["results"]["tuned"]["metrics"]
    assert report["results"]["uses-embedding@staging"]["metrics"] == pytest.approx(trained, rel=1e-5)


def test_eval_of_a_runs_model_folder_reads_the_run_config(teachers, tmp_path):
    model = teachers["reranker"].model_dir  # runs/x/train/model
    result = CliRunner().invoke(app, ["eval", "--model", model, "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["model_type"] == "reranker"
    assert list(report["results"]) == ["bm25", "base", "train"]  # BM25's order: the first stage to beat
    assert "delta" in (tmp_path / "eval" / "report.md").read_text()


def test_select_ranks_encoder_candidates_by_their_measured_ndcg(teachers, tmp_path):
    report = Path(teachers["embedding"].model_dir).parents[1] / "report" / "report.json"  # the run's own
    measured = json.loads(report.read_text())["results"]
    catalog = {
        "candidates": [
            {
                "id": f"encoder-{label}",
                "model_type": "embedding",
                "parameters_b": 0.001,
                "context_window": 512,
                "hardware": ["cpu"],
                "latency_ms": {"p50": 2, "p95": 4},
                "cost_per_1m_tokens": 0.01,
                "measured": {"report": str(report), "label": label},
            }
            for label in ("base", "tuned")
        ]
        + [
            {
                "id": "some-llm",
                "parameters_b": 7.0,
                "context_window": 8192,
                "hardware": ["cpu"],
                "benchmarks": {"ndcg@10": 0.99},
                "latency_ms": {"p50": 2, "p95": 4},
                "cost_per_1m_tokens": 0.01,
            }
        ]
    }
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(catalog))
    role = RoleProfile(role="search", primary_function="find the help page", model_type="embedding")

    selection = select_model(role, load_catalog(tmp_path / "catalog.yaml"))

    best = max(("base", "tuned"), key=lambda label: measured[label]["metrics"]["ndcg@10"])
    assert selection.selected.candidate.id == f"encoder-{best}"
    assert [r.candidate.id for r in selection.rejected] == ["some-llm"]
    assert "needs model_type embedding, this is causal_lm" in selection.rejected[0].reasons[0]


def _distance_to_teacher(student: str, teacher: str, texts: list[str]) -> float:
    """Mean squared distance between the student's vectors and the teacher's: what MSELoss lowers."""
    a = load_embedding_model(student, device="cpu").encode(texts)
    b = load_embedding_model(teacher, device="cpu").encode(texts)
    return float(np.mean((a - b) ** 2))


STUDENT_TRAINING = {
    "embedding": {"steps": 40, "learning_rate": 3e-3},
    "reranker": {"steps": 40, "learning_rate": 3e-3},
    "classifier": {"steps": 40, "learning_rate": 5e-3, "per_role": 24, "roles": ROLES},
}


@pytest.mark.parametrize("kind", ["embedding", "reranker", "classifier"])
def test_a_distilled_student_learns_its_teachers_outputs_and_registers_under_it(teachers, tmp_path, kind):
    teacher = teachers[kind].registered
    config = encoder_config(
        kind,
        tmp_path,
        distill={"teacher": teacher, "student": "tiny", "min_quality_ratio": 0.5},
        **STUDENT_TRAINING[kind],
    )
    result = distill_once(config, config.distill.teacher, config.distill.student, None)

    assert result.validation is not None and result.validation.passed, result.validation
    version = registry.resolve(result.registered)
    assert version.parent == registry.resolve(teacher).reference  # the exact version, not the alias
    assert (version.stage, version.tags["model_type"], version.tags["method"]) == ("distill", kind, "mse")
    assert "Agreement (same " in (Path(result.run_dir) / "distill.md").read_text()
    if kind == "embedding":  # its vectors moved towards the teacher's, on queries it never saw
        queries = [row["query"] for row in build_encoder_data(config).test]
        teacher_dir = registry.local_path(teacher)
        before = _distance_to_teacher(str(Path(result.run_dir) / "student-init"), teacher_dir, queries)
        after = _distance_to_teacher(result.trained, teacher_dir, queries)
        assert after < before / 2
