"""The self-learning loop end to end on CPU with the embedded model: serve it, send traffic in which
one slice (five- and six-step problems, which it was never trained on) fails, let `monitor` find the
reasons to retrain, `retrain` from those failures through a canary on the running server, and check
that the new version answers held-out problems of that slice better; then a deliberately broken
retrain is refused and production stays as it was."""

from __future__ import annotations

import json
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from typer.testing import CliRunner

from srl_rlvr.cli import app
from srl_rlvr.config import build_config
from srl_rlvr.data.records import RecordStore
from srl_rlvr.evaluate.evaluation import evaluate_model
from srl_rlvr.evaluate.stats import paired_delta_ci
from srl_rlvr.feedback.retrain import retrain
from srl_rlvr.modeling import EMBEDDED_DIR, load_model
from srl_rlvr.serve.auth import env_key_id
from srl_rlvr.serve.config import build_serve_config
from srl_rlvr.serve.run import serve_in_thread
from srl_rlvr.tasks.arithmetic import ArithmeticTask
from srl_rlvr.tracking.registry import local_path, promote, register, resolve

KEY = "sk-test-ops"
EASY = ArithmeticTask(min_steps=1, max_steps=2)  # what production was trained for
HARD = ArithmeticTask(min_steps=5, max_steps=6)  # the slice that fails


def run_config(tmp: Path, **overrides: object) -> object:
    raw = {
        "output_dir": str(tmp / "runs"),
        "task": {"name": "arithmetic", "options": {"min_steps": 1, "max_steps": 4}},
        "data": {"test_size": 100},
        "pipeline": {"stages": ["generate", "sft", "evaluate", "register"]},
        "sft": {"learning_rate": 1e-3, "batch_size": 16, "epochs": 6, "max_length": 256},
        "eval": {"max_new_tokens": 96, "batch_size": 100},
        "registry": {"tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}"},
        "feedback": {
            "store": f"sqlite:///{tmp / 'records.db'}",
            "role": "arithmetic",
            "min_requests": 20,
            "fresh_examples": 100,
            "report_dir": str(tmp / "monitor"),
            "criteria": {"min_new_examples": 30},
            "server_key_env": "OPS_KEY",
            "canary_percent": 50,
            "canary_requests": 6,
        },
    }
    for key, value in overrides.items():
        section, leaf = key.split("__")
        raw.setdefault(section, {})[leaf] = value
    return build_config(raw)


def roles(url: str) -> dict[str, object]:
    request = urllib.request.Request(f"{url}/admin/roles", headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())["arithmetic"]


def accuracy_on_hard_slice(reference: str, uri: str) -> list[float]:
    config = run_config(Path("."))
    model, tokenizer = load_model(
        config.model.model_copy(update={"name_or_path": local_path(reference, uri)})
    )
    problems = HARD.sample(100, seed=7, split="test")  # held out: the test split, never served
    return evaluate_model(model, tokenizer, HARD, problems, config.eval, label=reference).rewards


def test_production_failures_retrain_a_better_model_and_a_worse_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("OPS_KEY", KEY)
    monkeypatch.setenv("SRL_RLVR_API_KEYS", KEY)
    v1 = register("arithmetic", EMBEDDED_DIR, stage="pretrain", parent="embedded", metrics={"reward": 0.8})
    promote("arithmetic", v1.version, "production", uri=uri)
    serve = build_serve_config(
        {
            "port": 0,
            "device": "cpu",
            "models": {"prod": {"path": "registry:arithmetic@production"}},
            "roles": {"arithmetic": {"primary": "prod", "task": "arithmetic"}},
            "auth": {"requests_per_second": 1000, "burst": 1000, "admin_keys": [env_key_id(KEY)]},
            # judged on scores and errors: latency on a loaded CI machine says nothing about the models
            "canary": {"min_requests": 4, "latency_margin": 1000},
            "limits": {"default_max_tokens": 96, "max_tokens": 96},
            "audit_log": str(tmp_path / "audit.jsonl"),
            "records": {"url": f"sqlite:///{tmp_path / 'records.db'}"},
        }
    )
    traffic = [p.text for p in EASY.sample(40, seed=3, split="train")]
    # enough failures that a quarter of them, kept out of training, can show the fix generalises
    traffic += [p.text for p in HARD.sample(160, seed=3, split="train")]
    with serve_in_thread(serve, KEY) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)

        def ask(problem: str) -> str:
            reply = client.chat.completions.create(
                model="arithmetic", messages=[{"role": "user", "content": problem}]
            )
            return reply.choices[0].message.content

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(ask, traffic))
        hard_failures = [
            r
            for r in RecordStore(f"sqlite:///{tmp_path / 'records.db'}").records()
            if r.features["num_steps"] >= 5
        ]
        assert len(hard_failures) == 160 and sum(r.outcome for r in hard_failures) <= 16

        # monitor: the slice drags the verified-outcome rate down, the inputs got longer, and the
        # failures are enough new data; exit code 3 says retraining is due
        config_file = tmp_path / "loop.yaml"
        config_file.write_text(json.dumps(run_config(tmp_path).model_dump(mode="json")))
        monitored = CliRunner().invoke(app, ["monitor", str(config_file)])
        assert monitored.exit_code == 3, monitored.output
        found = json.loads((tmp_path / "monitor" / "monitor.json").read_text())
        held = {c["name"] for c in found["criteria"] if c["holds"]}
        assert {"performance decline", "input drift", "new labelled data"} <= held
        weak = {(s["key"], s["value"]) for s in found["slices"] if s["weak"]}
        assert ("num_steps", 5) in weak and ("num_steps", 6) in weak
        assert (tmp_path / "monitor" / "monitor.png").is_file()

        # retrain through a canary on the running server, with production traffic flowing meanwhile;
        # the traffic starts once retrain has read its cases, so what it trains on is always the same
        outcome: dict[str, object] = {}
        cases_read = threading.Event()

        def step(message: str) -> None:
            if "-> the teacher team" in message:
                cases_read.set()

        worker = threading.Thread(
            target=lambda: outcome.update(result=retrain(run_config(tmp_path, feedback__server=url), step))
        )
        worker.start()
        while worker.is_alive() and not cases_read.wait(1):
            pass
        failed_before = {
            r.prompt
            for r in RecordStore(f"sqlite:///{tmp_path / 'records.db'}").records()
            if (r.outcome or 0.0) < 1.0
        }
        more = iter(HARD.sample(400, seed=4, split="train"))
        while worker.is_alive():
            ask(next(more).text)
        worker.join()
        result = outcome["result"]
        assert (
            result.failures == len(failed_before) >= 144
        )  # exactly the cases served before retrain read them
        # a quarter of the cases are kept out of training, to be replayed untrained
        assert result.replay_cases == round(result.failures / 4)
        assert result.trajectories == result.failures + result.corrections - result.replay_cases + 100
        assert result.deployed == "promoted", result.verdict
        assert resolve("registry:arithmetic@production", uri).reference == result.candidate
        assert roles(url)["primary"] == result.candidate  # the server promoted its canary too

        before = accuracy_on_hard_slice(v1.reference, uri)
        after = accuracy_on_hard_slice(result.candidate, uri)
        delta, low, _ = paired_delta_ci(before, after)
        assert low > 0, (
            f"held-out hard slice {sum(before)}% -> {sum(after)}% (Δ {delta:+.2f}, low {low:+.2f})"
        )

        # a run made deliberately worse (a learning rate that wrecks the weights) is refused by
        # validation: it never takes traffic, and production is what it was
        bad = retrain(run_config(tmp_path, feedback__server=url, sft__learning_rate=0.3, sft__epochs=1))
        assert bad.deployed == "rejected" and "worse" in bad.verdict
        assert bad.candidate is not None and resolve(bad.candidate, uri).aliases == []  # not staging
        assert resolve("registry:arithmetic@production", uri).reference == result.candidate
        assert roles(url)["primary"] == result.candidate and roles(url)["canary"] is None
