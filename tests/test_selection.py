import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from srl_rlvr.cli.selection import add_commands
from srl_rlvr.errors import ConfigError
from srl_rlvr.selection.catalog import RoleProfile, load_catalog, load_role, parse_catalog
from srl_rlvr.selection.decision_tree import branch_misfit, decision_branch, role_weights
from srl_rlvr.selection.mcda import score_candidates, select_model
from srl_rlvr.selection.record import build_record, read_record, write_record

EXAMPLES = Path(__file__).parents[1] / "examples" / "selection"
CATALOG = EXAMPLES / "catalog.yaml"


def entry(id: str, **changes: Any) -> dict[str, Any]:
    """A mid-size self-hosted model that meets `interactive_role`; `changes` make it miss something."""
    base = {
        "id": id,
        "parameters_b": 8.0,
        "context_window": 32768,
        "hardware": ["L4"],
        "benchmarks": {"mmlu": 0.7},
        "latency_ms": {"p50": 40, "p95": 60},
        "throughput_rps": 20,
        "cost_per_1m_tokens": 1.5,
        "training_cost_usd": 240,
        "capabilities": {"tool_use": True, "lora": True},
    }
    return base | changes


def interactive_role(**requirements: Any) -> RoleProfile:
    return RoleProfile.model_validate(
        {
            "role": "quest_giver",
            "primary_function": "Interactive NPC dialogue",
            "requirements": {
                "max_latency_ms": 200,
                "min_accuracy": 0.6,
                "max_cost_per_1m_tokens": 3.0,
                "hardware_available": ["L4", "api"],
                "availability_sla": 0.999,
                "min_context_window": 8192,
                "tool_use": True,
            }
            | requirements,
            "benchmarks": {"accuracy": "mmlu"},
        }
    )


def test_hard_requirements_filter_each_violating_candidate_before_scoring(tmp_path: Path) -> None:
    candidates = parse_catalog(
        {
            "candidates": [
                entry("ok"),
                entry("slow", latency_ms={"p50": 150, "p95": 300}),
                entry("inaccurate", benchmarks={"mmlu": 0.5}),
                entry("unbenchmarked", benchmarks={}),
                entry("expensive", cost_per_1m_tokens=5.0),
                entry("needs-a100", hardware=["A100"]),
                entry("api-without-sla", hardware=["api"]),
                entry("short-context", context_window=4096),
                entry("no-tools", capabilities={"tool_use": False}),
                entry("too-big-for-the-tier", parameters_b=70.0),
            ]
        },
        tmp_path,
    )
    selection = select_model(interactive_role(), candidates)

    assert [s.candidate.id for s in selection.ranked] == ["ok"]
    reasons = {r.candidate.id: " ".join(r.reasons) for r in selection.rejected}
    assert "p95 latency 300 ms > 200 ms" in reasons["slow"]
    assert "mmlu 0.5 < 0.6" in reasons["inaccurate"]
    assert "no 'mmlu' figure" in reasons["unbenchmarked"]
    assert "$5/1M tokens > $3" in reasons["expensive"]
    assert "runs on A100" in reasons["needs-a100"]
    assert "no uptime SLA" in reasons["api-without-sla"]
    assert "context 4096 < 8192" in reasons["short-context"]
    assert "no tool use" in reasons["no-tools"]
    assert "decision tree: silver tier takes 7-13B" in reasons["too-big-for-the-tier"]


def test_a_10ms_real_time_role_is_gold_tier_with_3_to_8b_candidates_only(tmp_path: Path) -> None:
    profile = RoleProfile.model_validate(
        {
            "role": "bark",
            "primary_function": "Environmental barks",
            "real_time": True,
            "requirements": {"max_latency_ms": 10},
            "benchmarks": {"accuracy": "mmlu"},
        }
    )
    branch = decision_branch(profile)
    assert branch.tier == "gold" and branch.parameters_b == (3.0, 8.0)
    assert branch.weights == {"latency": 0.5, "accuracy": 0.3, "cost": 0.2}  # the branch's primary criteria

    shipped = load_catalog(CATALOG)
    past_the_tree = [c.name for c in shipped if branch_misfit(branch, c) is None]
    assert past_the_tree == ["Qwen2.5-3B", "Llama-3.2-3B", "Phi-3.5-mini", "Qwen2.5-7B", "Llama-3.1-8B"]

    fast = {"p50": 6, "p95": 9}
    candidates = parse_catalog(
        {
            "candidates": [
                entry("fast-3b", parameters_b=3.0, latency_ms=fast),
                entry("fast-12b", parameters_b=12.0, latency_ms=fast),
                entry("frontier-api", parameters_b=None, hardware=["api"], latency_ms=fast),
            ]
        },
        tmp_path,
    )
    selection = select_model(profile, candidates)
    assert [s.candidate.id for s in selection.ranked] == ["fast-3b"]
    assert build_record(selection).tier == "gold"


@pytest.mark.parametrize(
    ("profile", "tier", "size"),
    [
        ({"requirements": {"max_latency_ms": 16}}, "gold", "3-8B"),
        ({"requirements": {"max_latency_ms": 120}}, "silver", "7-13B"),
        ({}, "bronze", "50B+"),
        ({"kind": "expert_analysis"}, "bronze", "50B+"),
        ({"kind": "content_generation", "quality": "maximum"}, "bronze", "100B+"),
        ({"kind": "content_generation"}, "silver", "7-13B"),
        (
            {"kind": "classification", "real_time": True, "requirements": {"max_latency_ms": 30}},
            "gold",
            "3-8B",
        ),
        ({"kind": "classification"}, "silver", "7-13B"),
    ],
)
def test_the_decision_tree_names_the_spec_tier_for_each_branch(
    profile: dict[str, Any], tier: str, size: str
) -> None:
    branch = decision_branch(RoleProfile.model_validate({"role": "r", "primary_function": "f"} | profile))
    assert (branch.tier, branch.size) == (tier, size)
    assert sum(branch.weights.values()) == pytest.approx(1.0)


def test_a_cheaper_otherwise_equal_model_never_scores_lower(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    profile = interactive_role().model_copy(
        update={"weights": {"latency": 0.3, "accuracy": 0.3, "cost": 0.2, "throughput": 0.1, "maturity": 0.1}}
    )
    for _ in range(200):
        rows = [
            entry(
                f"m{i}",
                benchmarks={"mmlu": float(rng.uniform(0.6, 0.9))},
                latency_ms={"p50": 10.0, "p95": float(rng.uniform(10, 200))},
                cost_per_1m_tokens=float(rng.uniform(0.1, 3.0)),
                throughput_rps=float(rng.uniform(1, 100)),
                maturity=str(rng.choice(["new", "stable", "established"])),
            )
            for i in range(4)
        ]
        original = rows[int(rng.integers(4))]
        cheaper = original | {
            "id": "cheaper",
            "cost_per_1m_tokens": original["cost_per_1m_tokens"] * rng.uniform(0, 1),
        }
        scored = {
            s.candidate.id: s.score
            for s in score_candidates(
                profile, parse_catalog({"candidates": [*rows, cheaper]}, tmp_path), role_weights(profile)
            )
        }
        assert scored["cheaper"] >= scored[original["id"]]


def test_scores_are_ratios_to_the_best_candidate_so_small_gaps_stay_small(tmp_path: Path) -> None:
    candidates = parse_catalog(
        {
            "candidates": [
                entry("fast", latency_ms={"p50": 10, "p95": 14}),
                entry("a-bit-slower", latency_ms={"p50": 10, "p95": 15}),
            ]
        },
        tmp_path,
    )
    scored = {s.candidate.id: s for s in score_candidates(interactive_role(), candidates, {"latency": 1.0})}
    assert scored["fast"].criteria["latency"] == 1.0
    assert scored["a-bit-slower"].criteria["latency"] == pytest.approx(14 / 15)


def test_measured_numbers_override_reported_ones_and_validation_compares_them(tmp_path: Path) -> None:
    report = {
        "results": {
            "base": {
                "model": "x",
                "metrics": {"accuracy": 0.70},
                "latency_ms": {"p50": 50, "p95": 90, "p99": 99},
            },
            "rlvr": {
                "model": "x",
                "metrics": {"accuracy": 0.55},
                "latency_ms": {"p50": 40, "p95": 80, "p99": 95},
            },
        }
    }
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "report.json").write_text(json.dumps(report))
    (tmp_path / "catalog.yaml").write_text(
        json.dumps(
            {
                "candidates": [
                    entry(
                        "ours",
                        measured={
                            "report": "eval/report.json",
                            "label": "rlvr",
                            "metrics": {"accuracy": "mmlu"},
                        },
                    ),
                    entry("reported-only"),
                ]
            }
        )
    )
    candidates = load_catalog(tmp_path / "catalog.yaml")
    ours = candidates[0]
    assert ours.benchmarks["mmlu"] == 0.55 and ours.entry.benchmarks["mmlu"] == 0.7
    assert ours.latency.p95 == 80 and ours.latency_measured

    selection = select_model(interactive_role(min_accuracy=0.5), candidates)
    validation = {s.candidate.id: s.validation for s in selection.ranked}
    assert validation["ours"].benchmark_match == pytest.approx(1 - 0.15 / 0.7, abs=1e-4)
    assert validation["ours"].benchmark_within_10pct is False  # 21 % below the reported figure
    assert validation["ours"].latency_verified is True
    assert validation["reported-only"].benchmark_match is None
    assert validation["reported-only"].latency_verified is None


def test_the_selection_record_yaml_round_trips_in_the_spec_shape(tmp_path: Path) -> None:
    selection = select_model(load_role(EXAMPLES / "roles" / "sentiment_analysis.yaml"), load_catalog(CATALOG))
    record = build_record(selection)
    path = write_record(record, tmp_path / "record.yaml")

    assert read_record(path) == record
    text = path.read_text()
    for key in (
        "model_selection:",
        "role:",
        "timestamp:",
        "candidates_evaluated:",
        "selected_model:",
        "selection_score:",
        "criteria_breakdown:",
        "reasoning: |",
        "alternatives_considered:",
        "validation_results:",
    ):
        assert key in text
    assert record.tier == "gold" and record.selected_model == "Qwen/Qwen2.5-3B-Instruct"
    assert [a.model for a in record.alternatives_considered] == [
        "meta-llama/Llama-3.2-3B-Instruct",
        "microsoft/Phi-3.5-mini-instruct",
    ]
    assert all(a.score < record.selection_score for a in record.alternatives_considered)


def test_no_passing_candidate_is_an_error_that_says_why() -> None:
    profile = interactive_role(max_latency_ms=1)
    selection = select_model(profile, load_catalog(CATALOG))
    with pytest.raises(ConfigError, match="no candidate meets role quest_giver's requirements"):
        build_record(selection)


def test_a_misspelt_requirement_or_an_unknown_criterion_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "role.yaml"
    path.write_text("role: r\nprimary_function: f\nrequirements: {max_latency: 16}\n")
    with pytest.raises(
        ConfigError,
        match=r"requirements.max_latency: unknown key; did you mean 'requirements\.max_latency_ms'",
    ):
        load_role(path)
    typo = interactive_role().model_copy(update={"weights": {"acuracy": 1.0}})
    with pytest.raises(ConfigError, match="no candidate reports benchmark 'acuracy'"):
        select_model(typo, load_catalog(CATALOG))


def test_every_shipped_role_profile_selects_a_model_from_the_shipped_catalog() -> None:
    winners = {
        path.stem: build_record(select_model(load_role(path), load_catalog(CATALOG)))
        for path in sorted((EXAMPLES / "roles").glob("*.yaml"))
    }
    assert {name: r.tier for name, r in winners.items()} == {
        "code_review": "bronze",
        "npc_dialogue": "gold",
        "sentiment_analysis": "gold",
        "storyteller": "bronze",
    }


def test_the_select_command_prints_the_ranked_table_and_writes_the_record(tmp_path: Path) -> None:
    app = typer.Typer()
    add_commands(app)
    out = tmp_path / "selection.yaml"
    result = CliRunner().invoke(
        app,
        [
            "select",
            str(EXAMPLES / "roles" / "npc_dialogue.yaml"),
            "--catalog",
            str(CATALOG),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "GOLD tier" in result.output
    assert "selected Qwen/Qwen2.5-3B-Instruct" in result.output
    assert "rejected: p95 latency 18 ms > 16 ms" in result.output  # Phi-3.5-mini
    assert read_record(out).selected_model == "Qwen/Qwen2.5-3B-Instruct"


def test_the_run_configs_model_selection_weights_weigh_a_role_that_names_none(tmp_path: Path) -> None:
    from srl_rlvr.config import ModelSelectionConfig

    profile = interactive_role()
    assert profile.weights is None
    branch = role_weights(profile)  # the tree's branch: latency 0.5, accuracy 0.3, cost 0.2
    weighted = role_weights(profile, cost_weight=0.6, performance_weight=0.4)
    assert weighted["cost"] == pytest.approx(0.6)
    assert weighted["latency"] / weighted["accuracy"] == pytest.approx(branch["latency"] / branch["accuracy"])
    named = profile.model_copy(update={"weights": {"accuracy": 1.0}})
    assert role_weights(named, cost_weight=0.6, performance_weight=0.4) == {"accuracy": 1.0}  # the role's own
    defaults = ModelSelectionConfig()
    catalog = parse_catalog({"candidates": [entry("ok"), entry("cheap", cost_per_1m_tokens=0.5)]}, tmp_path)
    assert select_model(profile, catalog, defaults).weights["cost"] == pytest.approx(defaults.cost_weight)
