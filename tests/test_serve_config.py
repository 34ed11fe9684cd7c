"""The `serve:` config: the example loads, and each mistake a user can make gets a one-line ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest

from srl_rlvr.errors import ConfigError
from srl_rlvr.serve.auth import RateLimiter, key_id_of, load_keys
from srl_rlvr.serve.config import AuthConfig, build_serve_config, load_serve_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "serve.yaml"
MODELS = {"base": {"path": "tiny"}}


def test_the_example_config_loads_and_overrides_apply() -> None:
    config = load_serve_config(EXAMPLE, ["serve.port=9001"])
    assert config.port == 9001
    assert config.roles["arithmetic"].backups == ["fallback"]
    assert config.roles["arithmetic"].guardrails.output.blocklist == ["idiot", "stupid"]


def test_yaml_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text("serve:\n  port: 8000\n  models: {base: [\n")
    with pytest.raises(ConfigError, match=r"serve\.yaml:4:1: invalid YAML"):
        load_serve_config(path)
    path.write_text("run: {}\n")
    with pytest.raises(ConfigError, match="no `serve:` section"):
        load_serve_config(path)


def test_unknown_keys_suggest_the_closest_valid_one() -> None:
    with pytest.raises(
        ConfigError, match=r"serve\.limits\.max_token: unknown key; did you mean 'serve\.limits\.max_tokens'"
    ):
        build_serve_config({"models": MODELS, "limits": {"max_token": 10}})


def test_roles_must_name_models_the_file_defines() -> None:
    with pytest.raises(ConfigError, match=r"roles\.chat: unknown model 'gpt'; models: base"):
        build_serve_config({"models": MODELS, "roles": {"chat": {"primary": "gpt"}}})
    with pytest.raises(ConfigError, match=r"models\.lora\.base: 'nope' is not a base model"):
        build_serve_config({"models": {**MODELS, "lora": {"path": "x", "base": "nope"}}})


def test_bad_guardrail_patterns_and_pii_kinds_are_config_errors() -> None:
    role = {"primary": "base", "guardrails": {"input": {"injection_patterns": ["(unclosed"]}}}
    with pytest.raises(ConfigError, match="invalid regular expression"):
        build_serve_config({"models": MODELS, "roles": {"r": role}})
    role = {"primary": "base", "guardrails": {"output": {"redact_pii": ["passport"]}}}
    with pytest.raises(ConfigError, match="unknown PII kind"):
        build_serve_config({"models": MODELS, "roles": {"r": role}})


def test_keys_come_from_env_and_file_and_only_ids_are_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_SERVE_KEYS", "sk-one, sk-two")
    (tmp_path / "keys").write_text("billing: sk-three\n")
    keys = load_keys(AuthConfig(api_keys_env="TEST_SERVE_KEYS", keys_file=str(tmp_path / "keys")))
    assert key_id_of(keys, "sk-three") == "billing"
    assert key_id_of(keys, "sk-one").startswith("env:") and "sk-one" not in key_id_of(keys, "sk-one")
    assert key_id_of(keys, "sk-nope") is None and key_id_of(keys, None) is None
    monkeypatch.delenv("TEST_SERVE_KEYS")
    with pytest.raises(ConfigError, match="no API keys"):
        load_keys(AuthConfig(api_keys_env="TEST_SERVE_KEYS"))


def test_rate_limiter_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.wait_time("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.wait_time("k") == pytest.approx(0.5)
    assert limiter.wait_time("other") == 0.0  # per key
    now[0] += 0.5
    assert limiter.wait_time("k") == 0.0


@pytest.mark.parametrize(
    ("path", "said"),
    [
        (
            "runs/not-trained-yet/sft/final",
            "cannot load model 'runs/not-trained-yet/sft/final': no such folder",
        ),
        ("registry:arithmetic@production", "'registry:arithmetic@production': no registry at"),
    ],
)
def test_serve_start_with_a_model_that_is_not_there_is_one_line_and_exit_2_before_announcing(
    path: str, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from srl_rlvr.cli import main

    monkeypatch.setenv("SRL_RLVR_API_KEYS", "sk-test")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'no-store' / 'mlflow.db'}")
    # an address no machine has: were the check skipped, binding fails at once instead of serving
    with pytest.raises(SystemExit) as exited:
        main(["serve", "start", str(EXAMPLE), f"serve.models.arith.path={path}", "serve.host=256.0.0.1"])
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert "serving" not in out
    assert err.count("\n") == 1 and err.startswith(f"error: serve.models.arith.path: {said}"), err
    assert not (tmp_path / "no-store").exists()
