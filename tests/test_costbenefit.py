import math
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from srl_rlvr.cli.selection import add_commands
from srl_rlvr.config import load_config
from srl_rlvr.errors import ConfigError
from srl_rlvr.selection.catalog import Candidate, Load, RoleProfile, parse_catalog
from srl_rlvr.selection.costbenefit import (
    ADOPT_ABOVE,
    DECISION_WEIGHTS,
    analyse,
    break_even,
    trainable,
    write_run_config,
)

EXAMPLES = Path(__file__).parents[1] / "examples" / "selection"

ROLE = RoleProfile.model_validate(
    {
        "role": "sentiment_analysis",
        "primary_function": "Label sentiment",
        "kind": "classification",
        "real_time": True,
        "task": "sentiment",
        "requirements": {"max_latency_ms": 30, "min_accuracy": 0.6},
        "benchmarks": {"accuracy": "mmlu"},
    }
)


def candidate(id: str, **changes: Any) -> Candidate:
    base = {
        "id": id,
        "parameters_b": 3.0,
        "context_window": 32768,
        "hardware": ["L4"],
        "benchmarks": {"mmlu": 0.7},
        "latency_ms": {"p50": 10, "p95": 20},
        "cost_per_1m_tokens": 2.0,
        "training_cost_usd": 240,
        "capabilities": {"tool_use": True, "lora": True},
        "maturity": "established",
    }
    return parse_catalog({"candidates": [base | changes]}, Path("."))[0]


def test_break_even_of_the_worked_example_is_three_months() -> None:
    """Training costs $240 and the new model saves $80 a month: it pays for itself in 3 months."""
    assert break_even(training_cost=240, monthly_savings=80).months == 3.0
    assert break_even(training_cost=240, monthly_savings=80).favourability == 1.0  # min(1, 12/3)
    assert break_even(training_cost=240, monthly_savings=10).favourability == pytest.approx(12 / 24)
    never = break_even(training_cost=240, monthly_savings=-5)
    assert math.isinf(never.months) and never.favourability == 0.0


def test_analysis_saves_80_a_month_on_80m_tokens_and_breaks_even_in_3_months() -> None:
    """$2.00 -> $1.00 per 1M tokens on 80M tokens a month saves $80; training costs $240."""
    load = Load(requests_per_day=80e6 / 30 / 1000, tokens_per_request=1000)
    current, new = candidate("current", cost_per_1m_tokens=2.0), candidate("new", cost_per_1m_tokens=1.0)
    result = analyse(ROLE, current, new, load)
    assert result.monthly_cost_current == pytest.approx(160.0)
    assert result.monthly_savings == pytest.approx(80.0)
    assert result.training_cost == 240
    assert result.break_even.months == pytest.approx(3.0)


def test_decision_score_uses_the_spec_weights_and_adopts_above_0_7() -> None:
    assert DECISION_WEIGHTS == {"performance": 0.4, "savings": 0.3, "risk": 0.2, "break_even": 0.1}
    current = candidate("current", cost_per_1m_tokens=2.0, latency_ms={"p50": 15, "p95": 25})
    new = candidate("new", cost_per_1m_tokens=0.6, latency_ms={"p50": 8, "p95": 14})
    result = analyse(ROLE, current, new)
    expected = (
        0.4 * result.performance_score
        + 0.3 * result.savings_score
        + 0.2 * (1 - result.risk)
        + 0.1 * result.break_even.favourability
    )
    assert result.decision_score == pytest.approx(expected)
    assert result.savings_score == pytest.approx(0.7)  # 70 % cheaper
    assert result.performance_delta["latency"] == pytest.approx(11 / 25)
    assert result.risk == pytest.approx(0.2)  # established, but not measured by our evaluation
    assert result.decision_score > ADOPT_ABOVE and result.decision == "adopt"

    same = analyse(ROLE, current, current)
    assert same.performance_score == 0.5 and same.savings_score == 0.0
    assert same.decision == "reject"  # on par, no saving: 0.2 + 0 + 0.16 + 0 = 0.36


def test_a_worse_and_dearer_model_is_rejected() -> None:
    current = candidate("current")
    new = candidate("new", benchmarks={"mmlu": 0.6}, cost_per_1m_tokens=3.0, maturity="new")
    result = analyse(ROLE, current, new)
    assert result.performance_score < 0.5 and result.savings_score == 0.0
    assert math.isinf(result.break_even.months)
    assert result.decision == "reject"


def test_a_new_model_missing_the_roles_hard_requirements_is_rejected_whatever_its_score() -> None:
    current = candidate("current", cost_per_1m_tokens=5.0)
    new = candidate("new", cost_per_1m_tokens=0.5, latency_ms={"p50": 20, "p95": 45})
    result = analyse(ROLE, current, new)
    assert result.blockers == ["p95 latency 45 ms > 30 ms"]
    assert result.decision == "reject"


def test_an_adopt_decision_writes_a_run_config_that_the_pipeline_accepts(tmp_path: Path) -> None:
    current = candidate("current", cost_per_1m_tokens=2.0)
    new = candidate("Qwen/Qwen2.5-3B-Instruct", cost_per_1m_tokens=0.6, benchmarks={"mmlu": 0.75})
    result = analyse(ROLE, current, new)
    assert result.decision == "adopt"

    path = write_run_config(ROLE, new, result, tmp_path / "adopt.yaml")
    config = load_config(path)
    assert config.model.name_or_path == "Qwen/Qwen2.5-3B-Instruct"
    assert config.model.lora is not None
    assert config.task.name == "sentiment"
    assert config.output_dir == "runs/sentiment-analysis-qwen2-5-3b-instruct"

    rejected = analyse(ROLE, current, current)
    with pytest.raises(ConfigError, match="no training run to write"):
        write_run_config(ROLE, current, rejected, tmp_path / "no.yaml")


def test_adopting_an_api_model_has_nothing_to_train(tmp_path: Path) -> None:
    api = candidate(
        "gpt-x", hardware=["api"], cost_per_1m_tokens=0.5, training_cost_usd=None, capabilities={}
    )
    current = candidate("current", cost_per_1m_tokens=9.0)
    result = analyse(ROLE, current, api)
    assert result.decision == "adopt" and result.training_cost == 0
    assert not trainable(api)
    with pytest.raises(ConfigError, match="cannot be fine-tuned here"):
        write_run_config(ROLE, api, result, tmp_path / "api.yaml")


def test_the_costbenefit_command_prints_the_decision_and_writes_the_run_config(tmp_path: Path) -> None:
    app = typer.Typer()
    add_commands(app)
    out = tmp_path / "run.yaml"
    args = [
        "costbenefit",
        "--role", str(EXAMPLES / "roles" / "sentiment_analysis.yaml"),
        "--current", "Llama-3.1-8B",
        "--new", "Qwen2.5-3B",
        "--catalog", str(EXAMPLES / "catalog.yaml"),
        "--load-requests-per-day", "100000",
        "--write-run-config", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "decision: adopt" in result.output
    assert "100,000 requests/day" in result.output
    assert load_config(out).model.name_or_path == "Qwen/Qwen2.5-3B-Instruct"
