"""The model registry against a real sqlite-backed MLflow store in a temp folder."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from srl_rlvr.cli import app
from srl_rlvr.config import ModelConfig
from srl_rlvr.errors import ModelLoadError
from srl_rlvr.modeling import byte_tokenizer, load_model, tiny_model
from srl_rlvr.tracking.registry import RegistryError, lineage, promote, register, resolve, rollback, versions

_names = itertools.count()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny")
    tokenizer = byte_tokenizer()
    tiny_model(tokenizer, seed=0).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def name() -> str:
    """A fresh model name per test; the store is shared by the whole session (see conftest)."""
    return f"role-{next(_names)}"


def chain(name: str, model_dir: Path) -> tuple[str, str]:
    """base -> SRL -> RLVR, as the pipeline registers it."""
    srl = register(
        name,
        model_dir,
        stage="srl",
        parent="Qwen/Qwen2.5-0.5B",
        dataset="dataset:abc",
        metrics={"reward": 0.6},
    )
    rlvr = register(
        name,
        model_dir,
        stage="rlvr",
        parent=srl.reference,
        dataset="task:arithmetic",
        metrics={"reward": 0.8},
    )
    return srl.reference, rlvr.reference


def test_lineage_runs_from_rlvr_back_through_srl_to_the_hub_model(name: str, model_dir: Path) -> None:
    srl_ref, rlvr_ref = chain(name, model_dir)
    rlvr, srl, base = lineage(rlvr_ref)
    assert (rlvr.reference, rlvr.stage, rlvr.dataset) == (rlvr_ref, "rlvr", "task:arithmetic")
    assert (srl.reference, srl.stage, srl.dataset) == (srl_ref, "srl", "dataset:abc")
    assert base == "Qwen/Qwen2.5-0.5B"


def test_a_parent_given_by_alias_is_recorded_as_the_exact_version(name: str, model_dir: Path) -> None:
    first = register(name, model_dir, stage="srl", parent="tiny", metrics={"reward": 0.5})
    promote(name, first.version, to="production")
    child = register(name, model_dir, stage="rlvr", parent=f"registry:{name}@production")
    assert child.parent == f"registry:{name}/1"


def test_promote_moves_the_old_production_to_backup_and_rollback_swaps_them(
    name: str, model_dir: Path
) -> None:
    chain(name, model_dir)
    assert promote(name, 1) == f"{name} v1 is production"
    assert promote(name, 2) == f"{name} v2 is production; v1 is backup"
    assert resolve(f"registry:{name}@backup").version == 1
    assert rollback(name) == f"{name} v1 is production again; v2 is backup"
    assert {v.version: v.aliases for v in versions(name)} == {1: ["production"], 2: ["backup"]}


def test_the_gate_refuses_a_worse_version_unless_forced(name: str, model_dir: Path) -> None:
    chain(name, model_dir)  # v1 reward 0.6, v2 reward 0.8
    promote(name, 2)
    with pytest.raises(
        RegistryError, match=r"refused: .* v1 scores reward 0.6, worse than production v2 \(0.8\)"
    ):
        promote(name, 1)
    assert resolve(f"registry:{name}@production").version == 2
    assert promote(name, 1, force=True) == f"{name} v1 is production; v2 is backup"


def test_the_gate_refuses_a_version_without_an_evaluation(name: str, model_dir: Path) -> None:
    chain(name, model_dir)
    promote(name, 1)
    unevaluated = register(name, model_dir, stage="sft", parent="tiny")
    with pytest.raises(RegistryError, match="no evaluated 'reward'"):
        promote(name, unevaluated.version)


def test_a_registry_reference_resolves_in_its_store_to_a_folder_that_loads(
    name: str, model_dir: Path
) -> None:
    from srl_rlvr.tracking.registry import resolve_source

    chain(name, model_dir)
    promote(name, 2)
    model, _ = load_model(
        ModelConfig(name_or_path=resolve_source(f"registry:{name}@production"), device="cpu")
    )
    same, _ = load_model(ModelConfig(name_or_path=resolve_source(f"registry:{name}/2"), device="cpu"))
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in same.parameters())
    with pytest.raises(ModelLoadError, match="no alias 'staging'"):
        resolve_source(f"registry:{name}@staging")
    # Loading does not reach into the registry: which store a reference means is the caller's to say.
    with pytest.raises(ModelLoadError, match="resolve registry references in their store first"):
        load_model(ModelConfig(name_or_path=f"registry:{name}/2", device="cpu"))


def test_a_registered_version_loads_with_mlflows_own_loaders_and_with_ours(
    name: str, model_dir: Path
) -> None:
    import mlflow.pyfunc
    import mlflow.transformers
    import torch

    from srl_rlvr.tracking.registry import resolve_source

    chain(name, model_dir)
    promote(name, 2)
    answer = mlflow.pyfunc.load_model(f"models:/{name}@production").predict(["Start with 2. Add 3."])
    assert isinstance(answer, list) and isinstance(answer[0], str)
    theirs = mlflow.transformers.load_model(f"models:/{name}/2").model.state_dict()
    ours, _ = load_model(
        ModelConfig(name_or_path=resolve_source(f"registry:{name}@production"), device="cpu")
    )
    assert theirs.keys() == ours.state_dict().keys()
    assert all(torch.equal(theirs[k], v) for k, v in ours.state_dict().items())


def test_a_bad_reference_or_folder_is_a_one_line_error(name: str, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="registry:NAME@ALIAS or registry:NAME/VERSION"):
        resolve("registry:a@b/c")
    with pytest.raises(RegistryError, match="not a model folder"):
        register(name, tmp_path, stage="srl", parent="tiny")


def test_registry_cli_promotes_lists_and_shows_lineage(name: str, model_dir: Path) -> None:
    chain(name, model_dir)
    runner = CliRunner()
    assert runner.invoke(app, ["registry", "promote", name, "2"]).exit_code == 0
    refused = runner.invoke(app, ["registry", "promote", name, "1"])
    assert refused.exit_code == 1 and "worse than production v2" in str(refused.exception)
    listed = runner.invoke(app, ["registry", "list"])
    assert name in listed.output and "v2" in listed.output
    shown = runner.invoke(app, ["registry", "lineage", name])
    assert shown.exit_code == 0
    lines = shown.output.splitlines()
    assert f"registry:{name}/2" in lines[0] and f"registry:{name}/1" in lines[1]
    assert "Qwen/Qwen2.5-0.5B" in lines[2] and "(base)" in lines[2]


def test_registry_commands_name_their_store_and_refuse_one_that_is_not_there(
    name: str, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from srl_rlvr.tracking.runs import tracking_uri

    chain(name, model_dir)
    listed = CliRunner().invoke(app, ["registry", "list"])
    assert f"store: {tracking_uri()}" in " ".join(listed.output.split())
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)  # a folder without mlflow.db: reading must not create one
    missing = CliRunner().invoke(app, ["registry", "list"])
    assert missing.exit_code != 0 and "no registry at" in str(missing.exception)
    assert not (tmp_path / "mlflow.db").exists()


def test_eval_takes_a_registry_reference_and_uses_the_config_of_the_run_that_trained_it(
    name: str, model_dir: Path, tmp_path: Path
) -> None:
    from srl_rlvr.config import build_config
    from srl_rlvr.tracking.registry import resolve_source
    from srl_rlvr.tracking.runs import tracked_run

    trained_with = build_config(
        overrides=["data.test_size=2", "eval.max_new_tokens=8", "eval.generalization_options={}"]
    )
    with tracked_run(trained_with, "sft", tmp_path / "sft") as run:
        assert run is not None
        register(name, model_dir, stage="sft", parent="tiny", run_id=run.run_id)
    result = CliRunner().invoke(
        app, ["eval", "--model", f"registry:{name}/1", "--out", str(tmp_path / "eval")]
    )
    assert result.exit_code == 0, result.output
    assert "(the model's run)" in result.output and "n=2" in result.output
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    (result_of_reference,) = report["results"].values()
    # the run's test set (2 problems), not the built-in 500
    assert result_of_reference["n"] == 2 and result_of_reference["model"] == resolve_source(
        f"registry:{name}/1"
    )
