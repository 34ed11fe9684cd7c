"""`srl-rlvr retrain`: learn from production's failures, prove it on held-out data, roll out with care.

1. Cases: the requests since the production version was registered whose answers the task verified
   wrong, and every request a user corrected. A failure's problem comes with its reference answer
   (the task works it out, `problem_from_text`); a correction's answer is the corrected one, unless
   the task knows the problem's own.
2. Dataset: those problems plus `feedback.fresh_examples` new ones from the task's train split go to
   the teacher team (`collaboration.teacher`, its verifier and judge) as a problems file: every
   trajectory is re-solved and verified, as `srl-rlvr generate` does, never copied from production.
3. Training: the run's pipeline (`pipeline.stages`, which must end with evaluate and register) from
   the production version itself, so the new version's lineage names it.
4. Validation: the pipeline's evaluation puts production and the candidate on the same held-out
   problems; both also answer a replay of production cases that were kept out of training
   (`feedback.replay_share` of them, drawn with `data.seed`): replaying the cases it was trained on
   would test memory, not a fix. The candidate passes when its held-out reward trails production's by
   at most `feedback.max_regression` and the lower bound of the replay's paired 95 % interval of the
   improvement is above 0 (a better point estimate on a few cases is not enough).
5. Roll-out: with `feedback.server`, the candidate becomes a canary of `feedback.role` on that server,
   which rolls it back by itself when it errs, slows or its answers check worse than the primary's;
   after `canary_requests` answers it is promoted there and in the registry. Without a server, the
   registry's production alias moves (the old version becomes backup). A candidate that fails
   validation or its canary leaves production as it was.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srl_rlvr.config import Config
from srl_rlvr.data.records import open_existing
from srl_rlvr.errors import ConfigError, UserError
from srl_rlvr.evaluate.stats import paired_delta_ci
from srl_rlvr.feedback.monitor import production_version
from srl_rlvr.tasks import Problem, Task, load_task
from srl_rlvr.tasks.outcome import problem_from_text

if TYPE_CHECKING:
    from srl_rlvr.tracking.registry import Version

log = logging.getLogger(__name__)

POLL_S = 1.0


@dataclass
class Comparison:
    n: int
    production: float
    candidate: float
    delta: float
    ci_low: float
    ci_high: float


@dataclass
class RetrainResult:
    run_dir: Path
    production: str
    failures: int = 0
    corrections: int = 0
    replay_cases: int = 0  # production cases kept out of training, for the replay
    fresh: int = 0
    trajectories: int = 0
    candidate: str | None = None
    heldout: Comparison | None = None
    replay: Comparison | None = None
    passed: bool = False
    verdict: str = ""
    deployed: str = ""  # promoted, rejected, rolled back, withdrawn
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def promoted(self) -> bool:
        return self.deployed == "promoted"


def production_cases(config: Config, task: Task, since: datetime | None) -> tuple[list[Problem], int, int]:
    """(problems, failures, corrections): what production got wrong or users corrected, newest
    first, one problem per distinct text, at most `feedback.max_cases`."""
    fb = config.feedback
    store = open_existing(fb.store)
    records = store.records(model=fb.role, since=since)
    by_id = {r.request_id: r for r in records}
    corrected: dict[str, Problem] = {}
    for f in store.feedback(since=since):
        record = by_id.get(f.request_id)
        if record is None or not f.correction:
            continue
        problem = problem_from_text(task, record.prompt) or Problem(
            id=record.request_id, text=record.prompt, answer=task.parse(f.correction)
        )
        corrected[record.prompt] = problem
    failed: dict[str, Problem] = {}
    for r in reversed(records):  # newest first
        if (
            r.checked == "answer"
            and r.status != "error"
            and (r.outcome or 0.0) < 1.0
            and r.prompt not in corrected
        ):
            problem = problem_from_text(task, r.prompt)
            if problem is not None:
                failed.setdefault(r.prompt, problem)
    cases = [*corrected.values(), *failed.values()][: fb.max_cases]
    corrections = min(len(corrected), len(cases))
    return cases, len(cases) - corrections, corrections


def split_replay(cases: list[Problem], share: float, seed: int) -> tuple[list[Problem], list[Problem]]:
    """(to train on, to replay): `share` of the cases (at least one, and one left to train on) drawn
    at random with `seed`, so a rerun holds out the same ones."""
    if len(cases) < 2:
        raise UserError(
            f"{len(cases)} production case(s): retrain needs at least 2, one to learn from and one to "
            "replay untrained"
        )
    count = min(max(round(len(cases) * share), 1), len(cases) - 1)
    held = set(random.Random(seed).sample(range(len(cases)), count))
    return [c for i, c in enumerate(cases) if i not in held], [c for i, c in enumerate(cases) if i in held]


def _problems_file(path: Path, problems: list[Problem]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for p in problems:
            f.write(
                json.dumps({"id": p.id, "text": p.text, "answer": p.answer, "metadata": p.metadata}) + "\n"
            )
    return path


def _compare(production: list[float], candidate: list[float]) -> Comparison:
    delta, low, high = paired_delta_ci(production, candidate)
    n = len(production)
    return Comparison(n, sum(production) / n, sum(candidate) / n, delta, low, high)


def gate(heldout: Comparison, replay: Comparison, max_regression: float) -> tuple[bool, str]:
    """(passed, why): held-out reward trails production's by at most `max_regression`, and the replay's
    interval of improvement lies above 0."""
    h, r = heldout, replay
    if h.delta < -max_regression:
        return False, (
            f"held-out reward {h.candidate:.3f} vs production {h.production:.3f}: worse by more than {max_regression}"
        )
    if not r.ci_low > 0:
        return False, (
            f"replay of {r.n} untrained production cases {r.candidate:.3f} vs production {r.production:.3f} "
            f"(Δ {r.delta:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]): not shown better"
        )
    return True, (
        f"held-out {h.candidate:.3f} vs {h.production:.3f} (Δ {h.delta:+.3f} [{h.ci_low:+.3f}, {h.ci_high:+.3f}]); "
        f"replay {r.candidate:.3f} vs {r.production:.3f} (Δ {r.delta:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}])"
    )


def _replay(config: Config, task: Task, folders: list[str], cases: list[Problem]) -> list[list[float]]:
    from srl_rlvr.evaluate.evaluation import evaluate_model
    from srl_rlvr.modeling import load_model

    scores = []
    for folder in folders:
        model, tokenizer = load_model(config.model.model_copy(update={"name_or_path": folder, "lora": None}))
        result = evaluate_model(model, tokenizer, task, cases, config.eval, label=folder)
        scores.append(result.rewards)
    return scores


def check_prerequisites(config: Config) -> Version:
    """Everything retrain needs from outside, checked before any data or training is spent: the
    stages, a production version to start from, and with a server its key, the server and the role
    on it. Returns the production version."""
    from srl_rlvr.tracking.runs import tracking_uri

    fb = config.feedback
    if config.pipeline.stages[-2:] != ["evaluate", "register"]:
        raise ConfigError(
            "retrain validates and registers the candidate: pipeline.stages must end with evaluate, register"
        )
    if fb.server is not None and fb.role is None:
        raise ConfigError("feedback.server is set: name the role to canary in feedback.role")
    production = production_version(config)
    if production is None:
        name = config.registry.model_name or "the task's model"
        raise UserError(
            f"no production version of {name} in the registry ({tracking_uri(config)}): promote one "
            f"first (srl-rlvr registry promote {name} VERSION --to production)"
        )
    if fb.server is not None:
        roles = _admin(config, "/admin/roles")  # the key is set and accepted, the server is up
        if fb.role not in roles:
            raise ConfigError(
                f"feedback.role: the server {fb.server} has no role '{fb.role}' (it has: {', '.join(roles)})"
            )
    return production


def retrain(config: Config, on_step: Callable[[str], None] = lambda message: None) -> RetrainResult:
    """Run the whole loop once; the result says what was learned and whether it went out."""
    from srl_rlvr.generate.orchestrator import generate_dataset
    from srl_rlvr.pipeline import run_pipeline
    from srl_rlvr.tracking.registry import resolve_source
    from srl_rlvr.tracking.runs import tracking_uri

    fb = config.feedback
    production = check_prerequisites(config)
    task = load_task(config.task.name, config.task.options)
    run_dir = Path(config.output_dir) / "retrain" / datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    result = RetrainResult(run_dir, production.reference)
    clock = time.perf_counter()

    cases, result.failures, result.corrections = production_cases(config, task, production.created)
    if not cases:
        raise UserError(
            f"no failed or corrected production cases in {fb.store} since {production.reference} was registered"
        )
    learn, replay = split_replay(cases, fb.replay_share, config.data.seed)
    result.replay_cases = len(replay)
    fresh = task.sample(fb.fresh_examples, config.data.seed, "train") if fb.fresh_examples else []
    result.fresh = len(fresh)
    problems = _problems_file(run_dir / "problems.jsonl", [*learn, *fresh])
    _problems_file(run_dir / "replay.jsonl", replay)
    on_step(
        f"{result.failures} failures, {result.corrections} corrections ({len(replay)} kept for the replay) "
        f"and {result.fresh} fresh problems -> the teacher team"
    )
    data_dir = run_dir / "data"
    manifest = generate_dataset(config, data_dir, n=len(learn) + len(fresh), problems_file=str(problems))
    result.trajectories = int(manifest["count"])
    result.seconds["dataset"] = time.perf_counter() - clock

    clock = time.perf_counter()
    on_step(f"training from {production.reference} on {result.trajectories} verified trajectories")
    pipeline_config = config.model_copy(
        update={
            "output_dir": str(run_dir / "run"),
            "model": config.model.model_copy(update={"name_or_path": production.reference}),
            "data": config.data.model_copy(update={"trajectories": str(data_dir)}),
            # the candidate gets an alias only once it has passed validation, below
            "registry": config.registry.model_copy(update={"alias_on_register": None}),
            # the stage gate's validation split is the task's, not production's: the replay of held-out
            # production cases below is this job's gate, and it judges the candidate against production
            "pipeline": config.pipeline.model_copy(update={"gate": False}),
        }
    )
    run = run_pipeline(pipeline_config)
    registered = json.loads((run.run_dir / "register" / "registered.json").read_text())
    result.candidate = registered["versions"][-1]["reference"]
    result.seconds["training"] = time.perf_counter() - clock

    clock = time.perf_counter()
    assert run.evaluation is not None
    results = list(run.evaluation.results.values())
    result.heldout = _compare(results[0].rewards, results[-1].rewards)
    uri = tracking_uri(config)
    on_step(f"replaying {len(replay)} untrained production cases on production and {result.candidate}")
    before, after = _replay(
        config,
        task,
        [resolve_source(production.reference, uri), resolve_source(result.candidate, uri)],
        replay,
    )
    result.replay = _compare(before, after)
    result.seconds["validation"] = time.perf_counter() - clock
    result.passed, result.verdict = gate(result.heldout, result.replay, fb.max_regression)

    clock = time.perf_counter()
    if not result.passed:
        result.deployed = "rejected"
    elif fb.server is not None:
        _promote(config, result.candidate, "staging")  # validated, on its way out
        on_step(
            f"canary: {fb.canary_percent:g}% of role {fb.role} on {fb.server} until {fb.canary_requests} "
            f"answers (gives up after {fb.canary_idle_s:g}s without traffic, {fb.canary_timeout_s:g}s in all)"
        )
        result.deployed = _canary(config, result.candidate)
        if result.deployed != "promoted":
            _drop_alias(config, result.candidate, "staging")
    else:
        result.deployed = "promoted"
    if result.deployed == "promoted":
        _promote(config, result.candidate, "production")
    result.seconds["rollout"] = time.perf_counter() - clock
    _write_report(result)
    return result


def _promote(config: Config, reference: str, alias: str) -> None:
    from srl_rlvr.tracking.registry import parse_reference, promote
    from srl_rlvr.tracking.runs import tracking_uri

    name, _, version = parse_reference(reference)
    assert version is not None
    # forced: the registry's own gate compares metrics stored from different evaluations, while
    # retrain's gate has just compared both versions on the same problems
    promote(name, version, alias, force=True, uri=tracking_uri(config))


def _drop_alias(config: Config, reference: str, alias: str) -> None:
    """A candidate the canary turned away is no candidate for production any more."""
    from srl_rlvr.tracking.registry import parse_reference
    from srl_rlvr.tracking.runs import mlflow_client, tracking_uri

    name, _, version = parse_reference(reference)
    client = mlflow_client(tracking_uri(config))
    if client.get_registered_model(name).aliases.get(alias) == str(version):
        client.delete_registered_model_alias(name, alias)


def _admin(config: Config, path: str, body: dict[str, Any] | None = None) -> Any:
    fb = config.feedback
    # the variable the server reads its keys from works as it is: its first key is used
    key = next((k.strip() for k in os.environ.get(fb.server_key_env, "").split(",") if k.strip()), None)
    if not key:
        raise ConfigError(
            f"set ${fb.server_key_env} to an admin key of {fb.server} (or name another variable in "
            "feedback.server_key_env)"
        )
    request = urllib.request.Request(
        f"{fb.server.rstrip('/')}{path}",  # type: ignore[union-attr]
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        raise UserError(f"{fb.server}{path}: HTTP {e.code}: {e.read().decode()[:300]}") from None
    except urllib.error.URLError as e:
        raise UserError(f"cannot reach the server {fb.server}: {e.reason}") from None


def _canary(config: Config, candidate: str) -> str:
    """Canary `candidate` on the server until it has served enough (promoted), the server rolled it
    back, or time ran out (withdrawn); what happened, in words."""
    fb = config.feedback
    role = fb.role
    assert role is not None
    _admin(config, "/admin/shift", {"role": role, "to": candidate, "percent": fb.canary_percent})
    deadline = time.monotonic() + fb.canary_timeout_s
    traffic, moved = -1, time.monotonic()
    while True:
        state = _admin(config, "/admin/roles")[role]
        served = sum(state["served"].values())
        if served != traffic:
            traffic, moved = served, time.monotonic()
        canary = state["canary"]
        if canary is None or canary["model"] != candidate:
            rollback = state.get("last_rollback") or {}
            if rollback.get("model") == candidate:
                return f"rolled back: {rollback['reason']}"
            return "withdrawn: the canary was removed on the server"
        if state["served"].get(candidate, 0) >= fb.canary_requests:
            _admin(config, "/admin/shift", {"role": role, "to": candidate, "percent": 100})
            return "promoted"
        if time.monotonic() - moved > fb.canary_idle_s:
            _admin(config, "/admin/shift", {"role": role, "to": candidate, "percent": 0})
            return (
                f"withdrawn: no traffic to role {role} on {fb.server} for {fb.canary_idle_s:g}s; a canary "
                f"needs {fb.canary_requests} answers (feedback.canary_requests) to be judged"
            )
        if time.monotonic() > deadline:
            _admin(config, "/admin/shift", {"role": role, "to": candidate, "percent": 0})
            return f"withdrawn: fewer than {fb.canary_requests} answers in {fb.canary_timeout_s:g}s"
        time.sleep(POLL_S)


def _write_report(result: RetrainResult) -> Path:
    data = asdict(result) | {"run_dir": str(result.run_dir)}
    (result.run_dir / "retrain.json").write_text(json.dumps(data, indent=2, default=str) + "\n")

    def row(label: str, c: Comparison | None) -> str:
        if c is None:
            return f"| {label} | - | - | - | - |"
        return f"| {label} | {c.n} | {c.production:.3f} | {c.candidate:.3f} | {c.delta:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}] |"

    lines = [
        "# Retraining from production",
        "",
        f"Production {result.production}; candidate {result.candidate or '-'}: **{result.deployed}**.",
        "",
        f"Cases: {result.failures} verified failures and {result.corrections} corrections ({result.replay_cases} "
        f"kept out of training for the replay), plus {result.fresh} fresh problems; {result.trajectories} "
        "trajectories passed the teacher team's verifier.",
        "",
        "| set | n | production | candidate | Δ [95% CI] |",
        "|---|---:|---:|---:|---|",
        row("held-out test split", result.heldout),
        row("replay of untrained production cases", result.replay),
        "",
        f"Gate: {result.verdict}.",
        "",
        "| part | seconds |",
        "|---|---:|",
        *[f"| {part} | {seconds:.1f} |" for part, seconds in result.seconds.items()],
        "",
    ]
    path = result.run_dir / "retrain.md"
    path.write_text("\n".join(lines))
    return path
