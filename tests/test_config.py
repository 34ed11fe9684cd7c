from pathlib import Path

import pytest

from srl_rlvr.cli import main
from srl_rlvr.config import build_config, load_config
from srl_rlvr.errors import ConfigError

SPEC_YAML = """\
srl: {learning_rate: 1e-5, kl_penalty_weight: 0.1, max_kl: 0.1, reward_norm_method: "z_score", batch_size: 32, epochs: 5}
rlvr: {learning_rate: 1e-6, use_ppo: true, clip_epsilon: 0.2, value_coef: 0.5, entropy_coef: 0.01, gamma: 0.99, epochs: 3}
collaboration: {cloud_llm_model: "openai/gpt-4", num_examples_per_request: 10, max_regeneration_attempts: 3, min_verification_score: 0.7}
model_selection: {cost_weight: 0.3, performance_weight: 0.7, update_frequency_days: 7}
"""


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC_YAML)
    return path


def test_the_original_spec_yaml_loads_verbatim_with_floats(spec_file: Path) -> None:
    config = load_config(spec_file)
    assert config.srl.learning_rate == 1e-05 and isinstance(config.srl.learning_rate, float)
    assert config.rlvr.learning_rate == 1e-06
    assert config.collaboration.cloud_llm_model == "openai/gpt-4"
    assert config.model_selection.update_frequency_days == 7


def test_use_ppo_selects_the_ppo_algorithm(spec_file: Path) -> None:
    assert load_config(spec_file).rlvr.algorithm == "ppo"
    assert build_config().rlvr.algorithm == "grpo"


def test_dotted_overrides_are_parsed_as_yaml_values(spec_file: Path) -> None:
    config = load_config(spec_file, ["srl.learning_rate=3e-6", "task.name=sentiment", "model.lora.r=8"])
    assert config.srl.learning_rate == 3e-6
    assert config.task.name == "sentiment"
    assert config.model.lora is not None and config.model.lora.r == 8


def test_unknown_key_names_the_closest_valid_one(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("srl:\n  learnin_rate: 1e-5\n")
    with pytest.raises(
        ConfigError, match=r"srl\.learnin_rate: unknown key; did you mean 'srl\.learning_rate'"
    ):
        load_config(path)


def test_trl_names_are_mapped_to_ours_not_to_the_closest_spelling() -> None:
    overrides = ["srl.beta=0.1", "rlvr.scale_rewards=none", "rlvr.num_train_epochs=2", "rlvr.beta=0.2"]
    with pytest.raises(ConfigError) as err:
        build_config(overrides=[*overrides, "sft.per_device_train_batch_size=8"])
    lines = str(err.value).splitlines()
    assert "srl.beta: unknown key; TRL's `beta` is our `srl.kl_penalty_weight`" in lines
    assert any(
        line.startswith(
            "rlvr.scale_rewards: unknown key; TRL's `scale_rewards` is our `rlvr.reward_norm_method`"
        )
        for line in lines
    )
    assert "rlvr.num_train_epochs: unknown key; TRL's `num_train_epochs` is our `rlvr.epochs`" in lines
    assert (
        "rlvr.beta: unknown key; TRL's `beta` is our `rlvr.kl_penalty_weight` (DPO: `rlvr.dpo_beta`)" in lines
    )
    assert (
        "sft.per_device_train_batch_size: unknown key; TRL's `per_device_train_batch_size` is our `sft.batch_size`"
        in lines
    )
    assert build_config(overrides=["distill.on_policy.beta=0.3"]).distill.on_policy.beta == 0.3  # ours too


def test_every_problem_is_reported_one_line_each() -> None:
    with pytest.raises(ConfigError) as err:
        build_config({"srl": {"batch_size": -1, "reward_norm_method": "bogus"}, "nonsense": 1})
    lines = str(err.value).splitlines()
    assert len(lines) == 3
    assert any(line.startswith("srl.batch_size:") for line in lines)
    assert any(line.startswith("srl.reward_norm_method:") for line in lines)
    assert any(line.startswith("nonsense: unknown key") for line in lines)


def test_bad_yaml_points_at_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("srl:\n  learning_rate: 1e-5\n   epochs: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:3:\d+: invalid YAML"):
        load_config(path)


def test_missing_file_and_malformed_override_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        build_config(overrides=["srl.learning_rate"])


def test_cli_config_check_prints_resolved_config(spec_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["config", "check", str(spec_file), "srl.epochs=2"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "learning_rate: 1.0e-05" in out and "epochs: 2" in out and "algorithm: ppo" in out


def test_cli_reports_a_typo_in_one_line_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("srl: {learnin_rate: 1e-5}\n")
    with pytest.raises(SystemExit) as exit_:
        main(["config", "check", str(path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "learning_rate" in err and "Traceback" not in err


def test_an_error_is_one_line_whatever_the_terminal_width(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Longer than any terminal: rich would wrap it at COLUMNS, or at 80 with no terminal at all.
    missing = tmp_path / ("d" * 100) / ("e" * 100) / ("f" * 100) / "config.yaml"
    with pytest.raises(SystemExit) as exited:
        main(["config", "check", str(missing)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err


def test_config_check_and_run_refuse_a_task_that_cannot_be_imported_before_writing_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["config", "check"], ["run", f"output_dir={tmp_path / 'run'}"]):
        with pytest.raises(SystemExit) as exited:
            main([*command, "task.name=nonexistent_module:Foo"])
        assert exited.value.code != 0
        assert "cannot import module 'nonexistent_module'" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "run").exists()


def test_a_bug_is_one_line_that_says_so_and_debug_shows_the_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import srl_rlvr.tasks

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom\nat some depth")

    monkeypatch.setattr(srl_rlvr.tasks, "load_task", broken)  # stands in for a bug of ours
    with pytest.raises(SystemExit) as exited:
        main(["tasks", "show", "arithmetic"])
    assert exited.value.code == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "internal error: RuntimeError: boom" in err and "--debug" in err
    assert "at some depth" not in err and "Traceback" not in err
    with pytest.raises(RuntimeError, match="boom"):
        main(["--debug", "tasks", "show", "arithmetic"])


def test_a_command_without_a_config_works_on_the_packaged_embedded_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The library's default model is `tiny` (random weights, for tests); a newcomer's bare command
    # gets the quickstart's pretrained one, and an explicit choice still wins.
    with pytest.raises(SystemExit):
        main(["config", "check"])
    assert "name_or_path: embedded" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["config", "check", "model.name_or_path=tiny"])
    assert "name_or_path: tiny" in capsys.readouterr().out


def test_help_shows_no_type_for_an_on_off_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "srl", "--help"])
    out = capsys.readouterr().out
    assert "--resume" in out and "--help" in out and "<bool>" not in out


def test_the_cli_imports_no_torch_until_a_command_needs_it() -> None:
    # `--help` and `config check` answer in a second; torch, transformers and trl take several
    import subprocess
    import sys

    code = "import sys, srl_rlvr.cli; print(sorted({'torch', 'transformers', 'trl'} & set(sys.modules)))"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert shown.strip() == "[]"
