"""Experiment tracking on MLflow: every stage and command is a run with its config, metrics and files.

Users already know MLflow, so we log to it instead of inventing a tracker: a local sqlite store by
default (nothing to start), a team's server through MLFLOW_TRACKING_URI. A run's id is kept in the
folder it describes (`mlflow_run.json`), so a stage resumed after a kill continues the same run.
Per-step metrics are logged live by a trainer callback. transformers ships an MLflowCallback too,
but it logs every TrainingArguments field as a parameter and starts runs of its own; ours logs our
config and joins the run the stage already opened.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import srl_rlvr
from srl_rlvr.config import Config, dump_config
from srl_rlvr.errors import UserError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from transformers import TrainerCallback

log = logging.getLogger(__name__)

Output = TypeVar("Output")  # what a stage returns: a StageOutput, with .path, .content_hash, .evaluation

RUN_FILE = "mlflow_run.json"
MAX_PARAMS_PER_CALL = 100  # MLflow's log_batch limit


def tracking_uri(config: Config | None = None) -> str:
    """MLFLOW_TRACKING_URI when set (a team's server), else the config's store."""
    from srl_rlvr.config import RegistryConfig

    default = config.registry.tracking_uri if config is not None else RegistryConfig().tracking_uri
    return os.environ.get("MLFLOW_TRACKING_URI") or default


def mlflow_client(uri: str) -> MlflowClient:
    from mlflow import MlflowClient  # mlflow sets its loggers up on import, so quiet them after

    for name in ("mlflow", "alembic"):  # schema migrations and store notices are not the user's business
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri)


def _artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts beside a local sqlite store (not in the working directory); a server decides its own."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri.removeprefix("sqlite:///")).resolve()
    return (db.parent / "mlartifacts" / experiment).as_uri()


def experiment_id(client: MlflowClient, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=_artifact_location(client.tracking_uri, name))


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> {"srl.learning_rate": "1e-05", ...}: MLflow params are flat strings."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return flat


def code_version() -> dict[str, str]:
    """The package version and, in a git checkout, its commit (with '-dirty' for local changes)."""
    tags = {"code.version": srl_rlvr.__version__}
    root = Path(srl_rlvr.__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return tags
    if commit.returncode == 0:
        tags["code.git_commit"] = commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    return tags


def mlflow_key(name: str) -> str:
    """A metric name MLflow accepts: `avg@32` (the papers' notation, kept in our reports) becomes
    `avg_at_32`; other characters MLflow refuses become '_'."""
    return re.sub(r"[^\w\-. :/]", "_", name.replace("@", "_at_"))


@dataclass
class TrackedRun:
    client: MlflowClient
    run_id: str

    def log_metrics(self, metrics: Mapping[str, Any], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(mlflow_key(key), float(value), now, step)
            for key, value in metrics.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        ]
        for start in range(0, len(batch), 1000):
            self.client.log_batch(self.run_id, metrics=batch[start : start + 1000])

    def log_params(self, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in params.items()]
        for start in range(0, len(items), MAX_PARAMS_PER_CALL):
            self.client.log_batch(self.run_id, params=items[start : start + MAX_PARAMS_PER_CALL])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            if value is not None:
                self.client.set_tag(self.run_id, key, str(value))

    def log_files(self, folder: Path, names: tuple[str, ...], artifact_path: str | None = None) -> None:
        """The named files and folders of `folder` that exist (reports, plots, metrics.jsonl)."""
        for name in names:
            path = folder / name
            if path.is_dir():
                self.client.log_artifacts(
                    self.run_id, str(path), f"{artifact_path}/{name}" if artifact_path else name
                )
            elif path.is_file():
                self.client.log_artifact(self.run_id, str(path), artifact_path)

    def callback(self) -> TrainerCallback:
        from srl_rlvr.tracking.live_metrics import MLflowMetrics  # transformers: only where training is

        return MLflowMetrics(self)


def _reopen(client: MlflowClient, folder: Path, config_sha: str) -> str | None:
    """The run recorded in `folder`, reopened, when it exists in this store and was made with the
    same config (a changed config is a new run, so a run's params always say what it ran with)."""
    path = folder / RUN_FILE
    if not path.is_file():
        return None
    run_id = json.loads(path.read_text()).get("run_id")
    try:
        recorded = client.get_run(run_id)
    except Exception:  # another store, or the run was deleted
        return None
    if recorded.data.tags.get("srl_rlvr.config_sha") != config_sha:
        return None
    client.update_run(run_id, status="RUNNING")
    return run_id


@contextmanager
def tracked_run(
    config: Config,
    name: str,
    folder: str | Path,
    tags: Mapping[str, Any] | None = None,
    parent_run_id: str | None = None,
) -> Iterator[TrackedRun | None]:
    """An MLflow run for the work done in `folder` (None when tracking is off). A new run gets the
    resolved config as params and config.yaml as an artifact; the run ends FINISHED, or KILLED on
    an interruption, or FAILED on an error, and then the error goes on."""
    if not config.registry.tracking:
        yield None
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri(config)
    with store_errors(uri):
        client = mlflow_client(uri)
        run_id = _start_run(client, config, name, folder, parent_run_id)
        run = TrackedRun(client, run_id)
        run.set_tags(tags or {})
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    except BaseException as e:
        status = (
            "KILLED"
            if isinstance(e, KeyboardInterrupt) or type(e).__name__ == "TrainingInterrupted"
            else "FAILED"
        )
        raise
    finally:
        try:
            with store_errors(uri):
                client.set_terminated(run_id, status)
        except TrackingError as e:
            if status == "FINISHED":
                raise
            log.warning("%s (the run stays RUNNING until the next run closes it)", e)  # keep the first error


class TrackingError(UserError):
    """The MLflow store cannot be used (locked by another writer, unreachable)."""


@contextmanager
def store_errors(uri: str) -> Iterator[None]:
    """A store another process holds locked is the user's to sort out, in one line naming it; any
    other store error stays ours."""
    try:
        yield
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0]
        if "database is locked" not in first:
            raise
        raise TrackingError(
            f"MLflow store {uri}: {first}: another process is writing it; rerun when it is done, or set "
            "MLFLOW_TRACKING_URI to another store"
        ) from None


def _start_run(
    client: MlflowClient, config: Config, name: str, folder: Path, parent_run_id: str | None
) -> str:
    """The run recorded in `folder` for this config, reopened, or a new one with the config logged."""
    config_yaml = dump_config(config)
    config_sha = hashlib.sha256(config_yaml.encode()).hexdigest()[:16]
    run_id = _reopen(client, folder, config_sha)
    if run_id is None:
        experiment = experiment_id(client, config.registry.experiment or config.task.name)
        run_tags = {
            "srl_rlvr.stage": name,
            "srl_rlvr.folder": str(folder.resolve()),
            "srl_rlvr.config_sha": config_sha,
            **code_version(),
        }
        if parent_run_id:
            run_tags["mlflow.parentRunId"] = parent_run_id
        run_id = client.create_run(experiment, run_name=name, tags=run_tags).info.run_id
        (folder / RUN_FILE).write_text(
            json.dumps({"run_id": run_id, "tracking_uri": client.tracking_uri}) + "\n"
        )
        TrackedRun(client, run_id).log_params(flatten(config.model_dump(mode="json")))
        client.log_text(run_id, config_yaml, "config.yaml")
    return run_id


def close_abandoned_run(config: Config, folder: str | Path) -> None:
    """Mark the run recorded in `folder` KILLED when it is still RUNNING: its process died (kill -9,
    a lost machine) before it could say so, and the stage is about to start over in a new run."""
    run_id = recorded_run_id(folder)
    if run_id is None or not config.registry.tracking:
        return
    client = mlflow_client(tracking_uri(config))
    try:
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_tag(run_id, "srl_rlvr.abandoned", "the process ended before the run did")
            client.set_terminated(run_id, "KILLED")
    except Exception as e:  # another store, or the run was deleted: nothing to close
        log.info("could not close run %s: %s", run_id, e)


def recorded_run_id(folder: str | Path) -> str | None:
    path = Path(folder) / RUN_FILE
    return json.loads(path.read_text()).get("run_id") if path.is_file() else None


def training_run_of(model_dir: str | Path, client: MlflowClient) -> str | None:
    """The run that trained the model in `model_dir` (a stage's final/ or best/, or the stage folder),
    when `client`'s store holds it: a model registered by hand then names its run, as the pipeline's do."""
    model_dir = Path(model_dir)
    run_id = recorded_run_id(model_dir) or recorded_run_id(model_dir.parent)
    if run_id is None:
        return None
    try:
        client.get_run(run_id)
    except Exception:  # trained against another store, or the run was deleted
        return None
    return run_id


STAGE_FILES = {
    "generate": ("manifest.json", "usage.json", "rejected.jsonl"),
    "evaluate": ("report.md", "report.json", "plots"),
    "register": ("registered.json",),
}
TRAINING_FILES = ("metrics.jsonl", "stability.jsonl")
TRAINED = ("sft", "srl", "rlvr", "on_policy", "train")  # output: a model folder inside the stage folder


def log_stage_outcome(run: TrackedRun, stage: str, output: Any) -> None:
    """What a finished stage leaves for people to look at: its files, and its headline numbers."""
    folder = output.path if output.path.is_dir() else output.path.parent
    if stage in TRAINED:
        folder = output.path.parent  # the stage folder, not final/, best/ or an encoder's model/
    run.log_files(folder, STAGE_FILES.get(stage, TRAINING_FILES))
    if output.content_hash:
        run.set_tags({"srl_rlvr.output_hash": output.content_hash})
    if stage == "generate" and (folder / "manifest.json").is_file():
        manifest = json.loads((folder / "manifest.json").read_text())
        run.set_tags({"srl_rlvr.dataset": "dataset:" + manifest["hash"]})
        run.log_metrics({k: manifest[k] for k in ("count", "rejected", "attempts") if k in manifest})
    if output.evaluation is not None:
        log_evaluation(run, output.evaluation.results)


def log_evaluation(run: TrackedRun, results: Mapping[str, Any]) -> None:
    """`<model label>.<metric>` for every model evaluated, and its median latency."""
    for label, result in results.items():
        metrics = {f"{label}.{k}": v for k, v in result.metrics.items()}
        if result.latency_ms:
            metrics[f"{label}.latency_p50_ms"] = result.latency_ms["p50"]
        run.log_metrics(metrics)


def run_tracked(
    config: Config,
    stage: str,
    folder: Path,
    tags: Mapping[str, str],
    work: Callable[[list[TrainerCallback]], Output],
    parent_run_id: str | None = None,
) -> Output:
    """`work` as a tracked MLflow run (the pipeline's `run_stage` wraps every stage in it): `work`
    gets the run's metrics callback, and the run keeps the stage's files and headline numbers."""
    from srl_rlvr.distributed import is_main

    if not is_main():  # with several processes only the main one tracks
        return work([])
    with tracked_run(config, stage, folder, dict(tags), parent_run_id) as run:
        output = work([run.callback()] if run else [])
        if run is not None:
            log_stage_outcome(run, stage, output)
    return output
