"""Generate a verified expert-trajectory dataset: retrieve -> teach -> verify -> retry -> keep or reject.

Problems are worked on by `requests.concurrency` coroutines at once (teacher and judge calls are
network I/O). Nothing is lost: each accepted row is appended to `trajectories.jsonl` and each
rejected problem, with its reasons, to `rejected.jsonl` (the dead-letter file) the moment it is
decided, so a crash or Ctrl-C loses at most the problems in flight, and rerunning the same command
skips every problem already decided and continues until `n` rows are accepted. Only when `n` is
reached are the rows put back in problem order and the manifest written, which makes the dataset's
content hash the same for the same problems whatever the concurrency.

Rows carry no timestamps, for the same reason; the manifest records when the dataset was made.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from srl_rlvr.config import CollaborationConfig, Config, EndpointConfig
from srl_rlvr.data.jsonl import iter_json_rows, read_trajectories, to_json_line
from srl_rlvr.data.pii import redact_value
from srl_rlvr.data.trajectory import Trajectory
from srl_rlvr.data.versioning import MANIFEST_FILE, ROWS_FILE, save_dataset
from srl_rlvr.errors import ConfigError, EndpointError
from srl_rlvr.generate.breaker import CircuitBreaker
from srl_rlvr.generate.llm_client import ChatClient, RetryPolicy
from srl_rlvr.generate.problems import ProblemGenerator, ProblemList, file_problems
from srl_rlvr.generate.retriever import KnowledgeIndex
from srl_rlvr.generate.rules import Rule, load_rules
from srl_rlvr.generate.teacher import (
    Conversation,
    EndpointTeacher,
    LocalModelTeacher,
    SolverTeacher,
    Teacher,
    api_key,
)
from srl_rlvr.generate.verifier import Judge, Verdict, Verifier
from srl_rlvr.progress import ProgressLines
from srl_rlvr.tasks import Problem, Task, load_task
from srl_rlvr.tasks.base import Split

REJECTED_FILE = "rejected.jsonl"
USAGE_FILE = "usage.json"
EXCERPT_CHARS = 300


@dataclass
class Progress:
    target: int
    accepted: int = 0
    rejected: int = 0
    attempts: int = 0  # teacher answers asked for, over accepted and rejected problems


@dataclass
class Team:
    """Everything one generation run talks to."""

    task: Task
    teacher: Teacher
    verifier: Verifier
    rules: list[Rule]
    index: KnowledgeIndex | None
    clients: list[ChatClient] = field(default_factory=list)
    problems: ProblemList | ProblemGenerator | None = None


def endpoint_client(
    endpoint: EndpointConfig, collab: CollaborationConfig, role: str, breakers: dict
) -> ChatClient:
    model = endpoint.model or collab.cloud_llm_model
    r = collab.requests
    price = collab.prices.get(model)
    # one breaker per endpoint: a teacher and a judge on the same dead server trip it together
    breaker = breakers.setdefault(
        endpoint.base_url, CircuitBreaker(failures=r.breaker_failures, cooldown_s=r.breaker_cooldown_s)
    )
    return ChatClient(
        endpoint.base_url,
        model,
        api_key(endpoint.api_key_env, role),
        retry=RetryPolicy(r.max_retries, r.backoff_s, r.backoff_max_s, r.timeout_s),
        breaker=breaker,
        cache_dir=Path(r.cache_dir).expanduser() if r.cache_dir else None,
        price_per_1m=(price.input_per_1m, price.output_per_1m) if price else (0.0, 0.0),
        role=role,
    )


def build_team(config: Config, out_dir: Path, n: int, split: Split, problems_file: str | None) -> Team:
    collab = config.collaboration
    task = load_task(config.task.name, config.task.options)
    breakers: dict[str, CircuitBreaker] = {}
    clients: list[ChatClient] = []
    if collab.teacher == "solver":
        teacher: Teacher = SolverTeacher(task)
    elif isinstance(collab.teacher, EndpointConfig):
        clients.append(endpoint_client(collab.teacher, collab, "teacher", breakers))
        t = collab.teacher
        teacher = EndpointTeacher(task, clients[-1], t.temperature, t.max_tokens, t.json_mode)
    else:
        teacher = LocalModelTeacher(task, collab.teacher, seed=config.seed)
    judge = None
    if collab.judge is not None:
        clients.append(endpoint_client(collab.judge, collab, "judge", breakers))
        judge = Judge(clients[-1], collab.judge_rubric, collab.judge.max_tokens, collab.judge.json_mode)
    knowledge = collab.retrieval.knowledge_dir
    rules = load_rules(knowledge)
    index = None
    if knowledge is not None and collab.retrieval.top_k > 0:
        index = KnowledgeIndex.build(
            knowledge,
            method=collab.retrieval.method,
            dense_model=collab.retrieval.dense_model,
            rerank_model=collab.retrieval.rerank_model,
            rerank_candidates=collab.retrieval.rerank_candidates,
        )
    team = Team(task, teacher, Verifier(task, rules, collab.min_steps, collab.max_steps, judge), rules, index)
    team.clients = clients
    source = collab.problems
    if problems_file is not None or source.source == "file":
        path = problems_file or source.path
        if path is None:
            raise ConfigError("collaboration.problems.source is file: set collaboration.problems.path")
        team.problems = ProblemList(file_problems(path))
    elif source.source == "generate":
        if not isinstance(collab.teacher, EndpointConfig):
            raise ConfigError(
                "collaboration.problems.source generate: the teacher proposes problems, so it must be an "
                "endpoint {base_url, model, api_key_env}"
            )
        team.problems = ProblemGenerator.from_config(config, task, clients[0], out_dir, source.max_generated)
    else:
        team.problems = ProblemList.from_task(task, n, config.data.seed, split)
    return team


def redacted(trajectory: Trajectory, kinds: list[str]) -> Trajectory:
    if not kinds:
        return trajectory
    data = trajectory.model_dump(exclude={"provenance"})
    clean, counts = redact_value(data, kinds)
    provenance = dict(trajectory.provenance)
    if counts:
        provenance["pii_redacted"] = counts
    return Trajectory.model_validate({**clean, "provenance": provenance})


def _accepted_row(
    team: Team, problem: Problem, verdict: Verdict, attempts: int, context_ids: list[str], repairs: list[str]
) -> Trajectory:
    t = verdict.trajectory
    provenance: dict[str, Any] = {
        **t.provenance,
        "teacher": team.teacher.name,
        "verifier_score": round(verdict.score, 4),
        "checks": {k: round(v, 4) for k, v in verdict.checks.items()},
        "attempts": attempts,
    }
    if context_ids:
        provenance["context_ids"] = context_ids
    if repairs:
        provenance["repairs"] = repairs
    if verdict.corrected and team.verifier.judge is not None:
        provenance["corrected_by"] = team.verifier.judge.name
    metadata = t.metadata or {"id": problem.id, **problem.metadata}
    return t.model_copy(update={"problem": problem.text, "metadata": metadata, "provenance": provenance})


async def _work_on(
    team: Team, problem: Problem, collab: CollaborationConfig
) -> tuple[Trajectory | None, dict]:
    """Teach and verify one problem until accepted or out of attempts; (row, None) or (None, dead letter)."""
    context = team.index.search(problem.text, collab.retrieval.top_k) if team.index else []
    conversation = Conversation()
    reasons: list[str] = []
    max_attempts = 1 if team.teacher.deterministic else 1 + collab.max_regeneration_attempts
    last_reply = ""
    for attempt in range(1, max_attempts + 1):
        answer = await team.teacher.plan(problem, context, team.rules, conversation)
        last_reply = answer.reply
        if answer.trajectory is None:
            reasons.append(f"unreadable reply: {answer.error}")
            conversation.turns.append((answer.reply, str(answer.error)))
            continue
        verdict = await team.verifier.verify(answer.trajectory, problem, collab.min_verification_score)
        if verdict.score >= collab.min_verification_score:
            ids = [p.id for p in context]
            return _accepted_row(team, problem, verdict, attempt, ids, answer.repairs), {}
        reasons.append(f"score {verdict.score:.2f}: {verdict.feedback}")
        conversation.turns.append((answer.reply, verdict.feedback))
    letter = {
        "id": problem.id,
        "problem": problem.text,
        "reason": reasons[-1],
        "reasons": reasons,
        "attempts": max_attempts,
        "teacher": team.teacher.name,
        "last_reply": last_reply[:EXCERPT_CHARS],
    }
    return None, letter


def _recover(path: Path) -> None:
    """Drop a half-written last line (a kill mid-write), so the file reads cleanly on resume."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def add_usage(total: dict[str, dict], clients: list[ChatClient]) -> dict[str, dict]:
    for c in clients:
        mine = total.setdefault(c.model, {})
        for k, v in c.usage.as_dict().items():
            mine[k] = round(mine.get(k, 0) + v, 6)
    return total


@dataclass
class _Run:
    progress: Progress
    decided: set[str]
    in_flight: int = 0


async def _generate(
    config: Config,
    out_dir: Path,
    n: int,
    split: Split,
    problems_file: str | None,
    on_progress: Callable[[Progress], None] | None,
) -> dict[str, Any]:
    collab = config.collaboration
    rows_path, rejected_path = out_dir / ROWS_FILE, out_dir / REJECTED_FILE
    manifest_path = out_dir / MANIFEST_FILE
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("count", 0) >= n:
            return manifest
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path.unlink(missing_ok=True)  # the dataset is open again until n rows are in
    for path in (rows_path, rejected_path):
        _recover(path)
    rows = read_trajectories(rows_path) if rows_path.is_file() else []
    letters = [v for _, v in iter_json_rows(rejected_path)] if rejected_path.is_file() else []
    run = _Run(
        Progress(
            n,
            len(rows),
            len(letters),
            sum(int(r.provenance.get("attempts", 1)) for r in rows)
            + sum(int(d.get("attempts", 1)) for d in letters),
        ),
        {str(r.metadata.get("id", r.problem)) for r in rows} | {str(d["id"]) for d in letters},
    )
    team = build_team(config, out_dir, n, split, problems_file)
    assert team.problems is not None
    began = time.perf_counter()
    exhausted = False

    max_problems = int(collab.max_problems_factor * n)

    async def worker(rows_file: TextIO, rejected_file: TextIO) -> None:
        nonlocal exhausted
        while run.progress.accepted + run.in_flight < n:
            if run.progress.accepted + run.progress.rejected + run.in_flight >= max_problems:
                exhausted = True
                return
            # the slot is taken before waiting for a problem: a generator's next() awaits the network,
            # and every worker would otherwise pass the check above and overshoot n
            run.in_flight += 1
            try:
                problem = await team.problems.next()  # type: ignore[union-attr]
                if problem is None:
                    exhausted = True
                    return
                if problem.id in run.decided:
                    continue
                run.decided.add(problem.id)
                row, letter = await _work_on(team, problem, collab)
            finally:
                run.in_flight -= 1
            if row is not None:
                rows_file.write(to_json_line(redacted(row, collab.redact_pii)) + "\n")
                rows_file.flush()
                run.progress.accepted += 1
                run.progress.attempts += int(row.provenance["attempts"])
            else:
                clean, _ = redact_value(letter, collab.redact_pii) if collab.redact_pii else (letter, {})
                rejected_file.write(json.dumps(clean, ensure_ascii=False) + "\n")
                rejected_file.flush()
                run.progress.rejected += 1
                run.progress.attempts += int(letter["attempts"])
            report()

    lines = ProgressLines("generate", n, "trajectories", done=run.progress.accepted)

    def report() -> None:
        p = run.progress
        lines.update(p.accepted, f"{p.rejected} rejected, {p.attempts} attempts")
        if on_progress is not None:
            on_progress(p)

    report()
    usage_path = out_dir / USAGE_FILE
    try:
        with rows_path.open("a", encoding="utf-8") as rf, rejected_path.open("a", encoding="utf-8") as xf:
            workers = [asyncio.create_task(worker(rf, xf)) for _ in range(collab.requests.concurrency)]
            try:
                await asyncio.gather(*workers)
            finally:
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
    except EndpointError as e:
        raise EndpointError(
            f"{e}; kept {run.progress.accepted} rows in {rows_path} and {run.progress.rejected} rejections "
            f"in {REJECTED_FILE}; rerun the same command to continue"
        ) from None
    finally:
        usage = json.loads(usage_path.read_text()) if usage_path.is_file() else {"models": {}, "seconds": 0.0}
        add_usage(usage["models"], team.clients)
        usage["seconds"] = round(usage["seconds"] + time.perf_counter() - began, 3)
        usage_path.write_text(json.dumps(usage, indent=2) + "\n")
        for c in team.clients:
            await c.aclose()

    rows = read_trajectories(rows_path) if rows_path.read_text().strip() else []
    order = team.problems.positions()  # type: ignore[union-attr]
    rows.sort(key=lambda r: order.get(str(r.metadata.get("id", r.problem)), len(order)))
    extra: dict[str, Any] = {}
    if isinstance(team.problems, ProblemGenerator):
        extra["problems_generated"] = len(team.problems.problems)
        extra["near_duplicates_dropped"] = team.problems.duplicates
    return save_dataset(
        rows,
        out_dir,
        source=team.teacher.name,
        task=team.task.name,
        split=split,
        problems=problems_file or collab.problems.source,
        accepted=len(rows),
        rejected=run.progress.rejected,
        attempts=run.progress.attempts,
        exhausted=exhausted and len(rows) < n,
        judge=team.verifier.judge.name if team.verifier.judge else None,
        rejected_file=REJECTED_FILE,
        usage=usage["models"],
        generation_seconds=usage["seconds"],
        **extra,
    )


def generate_dataset(
    config: Config,
    out_dir: str | Path,
    n: int | None = None,
    split: Split = "train",
    problems_file: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> dict[str, Any]:
    """Generate (or continue generating) `n` (default `data.train_size`) verified trajectories into
    `out_dir`; return the dataset manifest. A finished dataset of at least `n` rows is returned as is."""
    return asyncio.run(
        _generate(config, Path(out_dir), n or config.data.train_size, split, problems_file, on_progress)
    )
