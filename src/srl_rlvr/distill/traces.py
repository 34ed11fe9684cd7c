"""The teacher's answers to the task's questions, kept only when verified: distillation's dataset.

A local teacher (a registry version or a folder) answers in batches with the evaluation's own prompts
and greedy decoding, so the student learns exactly what the teacher does when it is scored. An
endpoint teacher (`distill.teacher: endpoint`) answers through the collaboration client, which brings
its retries, cache, cost accounting and PII redaction. Each answer becomes a trajectory (one step a
line) and goes through the teacher team's verifier: the task's check against the reference answer
(production questions get theirs from `problem_from_text`), the rules, and the judge when one is
configured; `collaboration.redact_pii` applies to what is kept, and an endpoint's token use and cost
go into the manifest (`usage`). The dataset is versioned like any other (`data/versioning.py`) and its manifest names the
teacher's exact version: the student's lineage starts there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srl_rlvr.config import Config, EndpointConfig
from srl_rlvr.data.trajectory import Step, Trajectory
from srl_rlvr.data.versioning import save_dataset
from srl_rlvr.errors import ConfigError, DataError
from srl_rlvr.generate.orchestrator import redacted
from srl_rlvr.generate.verifier import Judge, Verifier
from srl_rlvr.modeling import chat_prompt
from srl_rlvr.tasks import Problem, Task


@dataclass
class Teacher:
    reference: str  # what lineage names: registry:NAME/VERSION, a folder, or endpoint:MODEL
    folder: str | None  # a local teacher's model folder; None for an endpoint


def local_answers(folder: str, task: Task, problems: Sequence[Problem], config: Config) -> list[str]:
    from srl_rlvr.modeling import load_model
    from srl_rlvr.progress import ProgressLines
    from srl_rlvr.rollout import generate_texts

    model, tokenizer = load_model(config.model.model_copy(update={"name_or_path": folder, "lora": None}))
    prompts = [chat_prompt(tokenizer, task.prompt(p)) for p in problems]
    lines = ProgressLines("distill: teacher", len(prompts), "answers")
    return generate_texts(
        model,
        tokenizer,
        prompts,
        config.distill.teacher_max_tokens,
        temperature=config.distill.teacher_temperature,
        batch_size=config.eval.batch_size,
        on_batch=lambda done, total: lines.update(done),
    ).completions


def endpoint_answers(
    task: Task, problems: Sequence[Problem], config: Config, usage: dict[str, dict] | None = None
) -> list[str]:
    """The endpoint teacher's answers; its tokens and cost are added to `usage` (model -> totals)."""
    from srl_rlvr.generate.orchestrator import add_usage, endpoint_client

    endpoint = config.collaboration.teacher
    if not isinstance(endpoint, EndpointConfig):
        raise ConfigError(
            "distill.teacher is 'endpoint': set collaboration.teacher to {base_url, model, api_key_env}"
        )

    async def ask_all() -> list[str]:
        client = endpoint_client(endpoint, config.collaboration, "teacher", {})
        limit = asyncio.Semaphore(config.collaboration.requests.concurrency)

        async def ask(problem: Problem) -> str:
            async with limit:
                return await client.complete(
                    [{"role": "user", "content": task.prompt(problem)}],
                    temperature=config.distill.teacher_temperature,
                    max_tokens=config.distill.teacher_max_tokens,
                )

        try:
            return await asyncio.gather(*(ask(p) for p in problems))
        finally:
            if usage is not None:
                add_usage(usage, [client])
            await client.aclose()

    return asyncio.run(ask_all())


def as_trajectory(problem: Problem, answer: str, task: Task, teacher: str) -> Trajectory | None:
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    if not lines:
        return None
    parsed = task.parse(answer)
    return Trajectory(
        problem=problem.text,
        steps=[Step(action=line) for line in lines],
        expected_outcome="" if parsed is None else str(parsed),
        metadata={
            "id": problem.id,
            **{k: v for k, v in problem.metadata.items() if not isinstance(v, list | dict)},
        },
        provenance={"teacher": teacher},
    )


def verified_traces(
    config: Config, task: Task, teacher: Teacher, problems: Sequence[Problem], out_dir: Path
) -> dict[str, Any]:
    """Ask the teacher, keep what verifies, save the dataset; its manifest."""
    if not problems:
        raise DataError("no questions to ask the teacher")
    usage: dict[str, dict] = {}
    if teacher.folder is not None:
        answers = local_answers(teacher.folder, task, problems, config)
    else:
        answers = endpoint_answers(task, problems, config, usage)
    collab = config.collaboration
    judge = None
    if collab.judge is not None:
        from srl_rlvr.generate.orchestrator import endpoint_client

        client = endpoint_client(collab.judge, collab, "judge", {})
        judge = Judge(client, collab.judge_rubric, collab.judge.max_tokens, collab.judge.json_mode)
    verifier = Verifier(task, [], collab.min_steps, collab.max_steps, judge)

    async def verify_all() -> list[Trajectory | None]:
        kept: list[Trajectory | None] = []
        for problem, answer in zip(problems, answers, strict=True):
            trajectory = as_trajectory(problem, answer, task, teacher.reference)
            if trajectory is None:
                kept.append(None)
                continue
            verdict = await verifier.verify(trajectory, problem, collab.min_verification_score)
            kept.append(verdict.trajectory if verdict.score >= collab.min_verification_score else None)
        if judge is not None:
            await judge.client.aclose()
        return kept

    kept = [redacted(t, collab.redact_pii) for t in asyncio.run(verify_all()) if t is not None]
    if not kept:
        raise DataError(
            f"the teacher {teacher.reference} got none of {len(problems)} questions right: nothing to distill"
        )
    return save_dataset(
        kept,
        out_dir,
        source=f"teacher:{teacher.reference}",
        task=task.name,
        teacher=teacher.reference,
        asked=len(problems),
        accepted=len(kept),
        rejected=len(problems) - len(kept),
        usage=usage,
    )
