"""The training and test data of the encoder types, built from tasks (and, for the router, records).

Embedding models and rerankers learn from (query, passage) pairs the retriever verified (the
`retrieval` task, or any task with the same `passages` and `verified_pairs`); the reranker's
negatives are the first stage's (BM25's) top candidates that are not the query's passage. The
intent router learns from each role's task problems, labelled with the role, plus production
requests that named a role themselves and were not rated down.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from srl_rlvr.config import Config
from srl_rlvr.errors import ConfigError, TaskError
from srl_rlvr.model_types import EncoderConfig
from srl_rlvr.tasks import Task, load_task


@dataclass(frozen=True)
class EncoderData:
    """What an encoder stage trains and is evaluated on; `rows` are JSON-ready, for the data hash."""

    train: list[dict[str, Any]]
    test: list[dict[str, Any]]
    passages: dict[str, str]  # id -> text: the corpus searched (retrieval types only)
    labels: list[str]  # the classifier's roles (classifier only)

    def version(self) -> str:
        blob = json.dumps([self.train, self.test, sorted(self.passages.items()), self.labels], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "encoder_data.json"
        path.write_text(json.dumps(asdict(self), indent=1))
        return path


def trajectory_pairs(path: str, task: Task) -> list[tuple[str, str]]:
    """(query, passage id) of a generated trajectory file of the retrieval task (a teacher wrote each
    query as its last step, for the passage its expected outcome names), kept only where the
    retriever finds the passage: the generate stage's output as embedding training data."""
    from srl_rlvr.data.jsonl import read_trajectories

    pairs = [(t.steps[-1].action, t.expected_outcome) for t in read_trajectories(path)]
    return [(q, pid) for q, pid in pairs if pid in task.by_id and task.found(q, pid)]


def retrieval_data(task: Task, config: EncoderConfig, trajectories: str | None = None) -> EncoderData:
    """Verified (query, passage id) pairs of the train and test splits, with BM25's candidates. With
    `trajectories` (a generate stage's output), its verified queries are the training pairs."""
    if not hasattr(task, "verified_pairs") or not hasattr(task, "index"):
        raise TaskError(
            f"task '{task.name}' has no corpus: embedding and reranker models train on the retrieval "
            "task (task.name: retrieval, task.options.corpus: your passages JSONL)"
        )
    passages = {p.id: p.text for p in task.passages}

    def rows(split: str) -> list[dict[str, Any]]:
        out = []
        for pair in task.verified_pairs(split):
            candidates = [p.id for p in task.index.search(pair.query, config.rerank_candidates)]
            out.append({"query": pair.query, "passage_id": pair.passage_id, "candidates": candidates})
        return out

    train = rows("train")
    if trajectories is not None:
        train = [
            {
                "query": query,
                "passage_id": pid,
                "candidates": [p.id for p in task.index.search(query, config.rerank_candidates)],
            }
            for query, pid in trajectory_pairs(trajectories, task)
        ]
    return EncoderData(train, rows("test"), passages, [])


def router_data(config: EncoderConfig, seed: int, test_per_role: int) -> EncoderData:
    """Each role's task problems (train and test splits), labelled with the role."""
    roles = list(config.roles)

    def rows(split: str, n: int) -> list[dict[str, Any]]:
        out = []
        for role, task_name in config.roles.items():
            task = load_task(task_name)
            out += [{"text": p.text, "label": role} for p in task.sample(n, seed, split)]  # type: ignore[arg-type]
        return out

    train = rows("train", config.per_role)
    if config.records_url is not None:
        train += labelled_records(config.records_url, roles)
    return EncoderData(train, rows("test", test_per_role), {}, roles)


def labelled_records(url: str, roles: Sequence[str]) -> list[dict[str, Any]]:
    """Recorded requests that named one of `roles` themselves (not routed there by `model: "auto"`)
    and were not rated down (rating below 0)."""
    from srl_rlvr.data.records import open_existing

    store = open_existing(url)
    rated_down = {f.request_id for f in store.feedback() if f.rating < 0}
    return [
        {"text": r.prompt, "label": r.model}
        for r in store.records()
        if r.model in roles
        and r.status == "ok"
        and "routed_from" not in r.features
        and r.request_id not in rated_down
        and r.prompt.strip()
    ]


def negatives(row: dict[str, Any], count: int) -> list[str]:
    """The first stage's best candidates that are not the query's own passage."""
    return [pid for pid in row["candidates"] if pid != row["passage_id"]][:count]


def build_encoder_data(config: Config) -> EncoderData:
    """The run's data, as its config says: deterministic and cheap, so the pipeline, `eval` and
    `distill` all rebuild it rather than look for a file (its `version()` says whether it changed)."""
    if config.model.type == "classifier":
        return router_data(
            config.encoder, config.data.seed, max(1, config.data.test_size // len(config.encoder.roles))
        )
    task = load_task(config.task.name, config.task.options)
    return retrieval_data(task, config.encoder, config.data.trajectories)


def base_encoder(config: Config, data: EncoderData, folder: Path) -> str:
    """The folder of the run's base model. `tiny` is built in `folder`/tiny-base from the data's own
    words, seeded, so it is the same model whenever the same data is rebuilt; `registry:` is resolved
    in the run's store."""
    name = config.model.name_or_path
    if name == "tiny":
        from srl_rlvr.encoder_models import tiny_encoder_folder

        texts = [*data.passages.values(), *(r.get("query") or r.get("text", "") for r in data.train)]
        return tiny_encoder_folder(folder / "tiny-base", texts, seed=config.seed)
    if name == "embedded":
        raise ConfigError(
            f"model.name_or_path: 'embedded' is a causal LM; a {config.model.type} needs an encoder"
        )
    from srl_rlvr.tracking.registry import resolve_source
    from srl_rlvr.tracking.runs import tracking_uri

    return resolve_source(name, tracking_uri(config))
