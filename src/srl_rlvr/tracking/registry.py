"""The model registry on MLflow: versions with lineage, aliases, and a promotion gate.

A version is a copy of the model folder in the store's artifacts (so deleting a run folder loses
nothing), saved as an MLflow transformers model where it is a whole causal LM (`mlflow_model.py`:
MLflow's own loaders and `mlflow models serve` read it), with tags that say where it came from: the training stage, its parent (a hub id, a path,
or another registry version: the lineage), the dataset hash, and the evaluation metrics. Aliases
are MLflow's own: `staging`, `production`, `backup`. Promoting to production moves the previous
production version to backup; rollback swaps them. The gate refuses a version that evaluates worse
than production on the primary metric, unless forced: "validate before deploy".

A model reference `registry:NAME@ALIAS` or `registry:NAME/VERSION` is accepted wherever a model
path is: `resolve_source` turns it into its folder, in the store the caller names.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from srl_rlvr.errors import ModelLoadError, UserError
from srl_rlvr.tracking.mlflow_model import huggingface_folder, save_transformers_flavour
from srl_rlvr.tracking.runs import mlflow_client, tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient

ALIASES = ("staging", "production", "backup")
PREFIX = "registry:"
_REFERENCE = re.compile(r"^registry:(?P<name>[^@/]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))$")


class RegistryError(UserError):
    """A registry name, version or alias that does not exist, or a refused promotion."""


@dataclass
class Version:
    name: str
    version: int
    source: str
    stage: str = ""
    parent: str = ""
    dataset: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    run_id: str | None = None
    created: datetime | None = None
    tags: dict[str, str] = field(
        default_factory=dict
    )  # when it was registered: a retrain criterion counts from it

    @property
    def reference(self) -> str:
        return f"{PREFIX}{self.name}/{self.version}"


def _client(uri: str | None = None) -> MlflowClient:
    """The store at `uri` (a pipeline passes its config's), else MLFLOW_TRACKING_URI's, else the default."""
    return mlflow_client(uri or tracking_uri())


def _version(mv: Any, aliases: list[str] | None = None) -> Version:
    tags = mv.tags or {}
    return Version(
        name=mv.name,
        version=int(mv.version),
        source=mv.source,
        stage=tags.get("stage", ""),
        parent=tags.get("parent", ""),
        dataset=tags.get("dataset", ""),
        metrics={k.removeprefix("metric."): float(v) for k, v in tags.items() if k.startswith("metric.")},
        aliases=list(aliases if aliases is not None else getattr(mv, "aliases", []) or []),
        run_id=mv.run_id,
        tags={
            k: v
            for k, v in tags.items()
            if k not in ("stage", "parent", "dataset") and not k.startswith("metric.")
        },
        created=datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=timezone.utc)
        if getattr(mv, "creation_timestamp", None)
        else None,
    )


def is_reference(name_or_path: str) -> bool:
    return name_or_path.startswith(PREFIX)


def parse_reference(reference: str) -> tuple[str, str | None, int | None]:
    found = _REFERENCE.match(reference)
    if not found:
        raise RegistryError(
            f"'{reference}' is not a registry reference; write registry:NAME@ALIAS or registry:NAME/VERSION"
        )
    version = found["version"]
    return found["name"], found["alias"], int(version) if version else None


def get_version(
    client: MlflowClient, name: str, version: int | None = None, alias: str | None = None
) -> Version:
    from mlflow.exceptions import MlflowException

    try:
        if alias is not None:
            mv = client.get_model_version_by_alias(name, alias)
        else:
            mv = client.get_model_version(name, str(version))
    except MlflowException:
        which = f"alias '{alias}'" if alias is not None else f"version {version}"
        known = [m.name for m in client.search_registered_models()]
        raise RegistryError(
            f"registry has no {which} of model '{name}' (models: {', '.join(known) or 'none'}; "
            f"store {client.tracking_uri})"
        ) from None
    return _version(mv)


def resolve(reference: str, uri: str | None = None) -> Version:
    """The version a `registry:NAME@ALIAS` or `registry:NAME/VERSION` reference names."""
    name, alias, version = parse_reference(reference)
    return get_version(_client(uri), name, version, alias)


def local_path(reference: str, uri: str | None = None) -> str:
    """A folder to load the referenced model from: the artifact folder itself for a local store,
    else a downloaded copy. `uri`: the store to look in (a run's config's), else the default's."""
    try:
        v = resolve(reference, uri)
    except RegistryError as e:
        raise ModelLoadError(str(e)) from None
    parsed = urlparse(v.source)
    if parsed.scheme == "file" and Path(unquote(parsed.path)).is_dir():
        return huggingface_folder(unquote(parsed.path))
    import mlflow.artifacts

    return huggingface_folder(
        mlflow.artifacts.download_artifacts(artifact_uri=v.source, tracking_uri=uri or tracking_uri())
    )


def run_config_of(reference: str, scratch: str | Path, uri: str | None = None) -> Path | None:
    """The config.yaml of the run that trained a registered version, downloaded into `scratch`, so the
    version is evaluated on its own task options and test set; None for a version registered without
    a run's config (`registry register`)."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    version = resolve(reference, uri)
    if version.run_id is None:
        return None
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=version.run_id,
            artifact_path="config.yaml",
            dst_path=str(scratch),
            tracking_uri=uri or tracking_uri(),
        )
    except (MlflowException, OSError):
        return None
    return Path(path)


def resolve_source(name: str, uri: str | None = None) -> str:
    """A model name as something `modeling` can load: a `registry:` reference becomes its local folder
    (looked up in `uri`, else the default store); anything else is returned as it is. The one place a
    reference becomes a folder: every caller of `load_model` that accepts references goes through it."""
    return local_path(name, uri) if name.startswith(PREFIX) else name


def model_name_for(task_name: str) -> str:
    """A registered-model name from a task's `name`: MLflow refuses '/' and ':' (and a user task's
    name may hold anything), so runs of other characters become '-'."""
    return re.sub(r"[^\w.-]+", "-", task_name).strip("-") or "model"


def register(
    name: str,
    model_dir: str | Path,
    *,
    stage: str,
    parent: str,
    dataset: str = "",
    metrics: dict[str, float] | None = None,
    run_id: str | None = None,
    experiment: str | None = None,
    uri: str | None = None,
    tags: dict[str, str] | None = None,
) -> Version:
    """Copy `model_dir` into the run's artifacts and register it. The run is `run_id`, else the one
    that trained the model (recorded in its stage folder, `train` and `run` alike), else a new one.

    With a run, registering is idempotent: when that run's model of this `stage` already has a
    version (a register stage killed halfway and rerun), that version is returned, not a duplicate.
    """
    from srl_rlvr.tracking.runs import experiment_id, training_run_of

    client = _client(uri)
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file() and not (model_dir / "adapter_config.json").is_file():
        raise RegistryError(f"{model_dir} is not a model folder (no config.json or adapter_config.json)")
    run_id = run_id or training_run_of(model_dir, client)
    if run_id is not None:
        done = [
            mv
            for mv in client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
            if mv.tags.get("stage") == stage
        ]
        if done:
            return _version(min(done, key=lambda mv: int(mv.version)), aliases=[])
    if run_id is None:
        run_id = client.create_run(
            experiment_id(client, experiment or name), run_name=f"register {name}"
        ).info.run_id
        client.set_terminated(run_id)
    artifact_path = f"model-{stage}" if stage else "model"
    with tempfile.TemporaryDirectory() as scratch:
        flavoured = Path(scratch) / artifact_path
        client.log_artifacts(
            run_id,
            str(flavoured if save_transformers_flavour(model_dir, flavoured) else model_dir),
            artifact_path,
        )
    source = f"{client.get_run(run_id).info.artifact_uri}/{artifact_path}"
    if parent.startswith(PREFIX):
        parent = resolve(parent, uri).reference  # an alias moves; lineage must name the exact version
    extra = tags or {}
    tags = {"stage": stage, "parent": parent, "dataset": dataset, **extra}
    tags.update({f"metric.{k}": f"{v:.6g}" for k, v in (metrics or {}).items()})
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Registered by srl-rlvr.")
    mv = client.create_model_version(name, source, run_id=run_id, tags={k: v for k, v in tags.items() if v})
    return _version(mv, aliases=[])


def set_version_tags(name: str, version: int, tags: dict[str, str], uri: str | None = None) -> None:
    """Add facts learnt after registering (a cloud job's measured cost) to a version."""
    client = _client(uri)
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)


def versions(name: str) -> list[Version]:
    client = _client()
    found = client.search_model_versions(f"name='{name}'")
    if not found:
        get_version(client, name, version=1)  # raises the error that lists the models there are
    aliases: dict[int, list[str]] = {}
    for alias, version in client.get_registered_model(name).aliases.items():
        aliases.setdefault(int(version), []).append(alias)
    return sorted((_version(mv, aliases.get(int(mv.version), [])) for mv in found), key=lambda v: v.version)


def models() -> list[tuple[str, int, dict[str, int]]]:
    """(name, latest version, {alias: version}) for every registered model."""
    client = _client()
    listed = []
    for rm in client.search_registered_models():
        latest = max((int(v.version) for v in client.search_model_versions(f"name='{rm.name}'")), default=0)
        listed.append((rm.name, latest, {a: int(v) for a, v in rm.aliases.items()}))
    return sorted(listed)


def lineage(reference: str) -> list[Version | str]:
    """The chain from a version back through its registry parents to where it started (a hub id or
    a path), newest first."""
    chain: list[Version | str] = []
    current = resolve(reference if is_reference(reference) else f"{PREFIX}{reference}@production")
    seen: set[str] = set()
    while True:
        chain.append(current)
        seen.add(current.reference)
        if not is_reference(current.parent) or current.parent in seen:
            if current.parent:
                chain.append(current.parent)
            return chain
        current = resolve(current.parent)


def promote(
    name: str,
    version: int,
    to: str = "production",
    metric: str = "reward",
    force: bool = False,
    uri: str | None = None,
) -> str:
    """Point alias `to` at `version`; return what happened, in words. To production: the previous
    production version becomes backup, and a version worse than it on `metric` is refused unless
    `force` (as is one with no evaluation of that metric)."""
    if to not in ALIASES:
        raise RegistryError(f"unknown alias '{to}'; use one of {', '.join(ALIASES)}")
    client = _client(uri)
    new = get_version(client, name, version)
    current = dict(client.get_registered_model(name).aliases).get(to)
    if current is not None and int(current) == version:
        return f"{name} v{version} is already {to}"
    if to == "production" and current is not None and not force:
        old = get_version(client, name, int(current))
        if metric not in new.metrics:
            raise RegistryError(
                f"{name} v{version} has no evaluated '{metric}' to compare with production v{current}; "
                "evaluate it, or promote with --force"
            )
        if metric in old.metrics and new.metrics[metric] < old.metrics[metric]:
            raise RegistryError(
                f"refused: {name} v{version} scores {metric} {new.metrics[metric]:.4g}, worse than "
                f"production v{current} ({old.metrics[metric]:.4g}); --force to promote anyway"
            )
    client.set_registered_model_alias(name, to, str(version))
    if to == "production" and current is not None:
        client.set_registered_model_alias(name, "backup", current)
        return f"{name} v{version} is production; v{current} is backup"
    return f"{name} v{version} is {to}"


def rollback(name: str) -> str:
    """Swap production and backup: the previous production version serves again."""
    client = _client()
    get_version(client, name, version=None, alias="backup")  # a clear error when there is none
    aliases = dict(client.get_registered_model(name).aliases)
    production, backup = aliases.get("production"), aliases["backup"]
    client.set_registered_model_alias(name, "production", backup)
    if production is not None:
        client.set_registered_model_alias(name, "backup", production)
    return f"{name} v{backup} is production again" + (f"; v{production} is backup" if production else "")
