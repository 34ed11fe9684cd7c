"""The cascade's last steps: promote each tier's newest version to production, and, when that step
fails, put back the production versions this execution moved, and only those.

Promotion goes through the registry's gate (a version worse than production is refused), and each
version it moves is tagged with the execution's name, so a rollback never touches a model another
night promoted.
"""

from __future__ import annotations

from srl_rlvr.tracking.registry import get_version, promote, rollback, set_version_tags, versions
from srl_rlvr.tracking.runs import mlflow_client, tracking_uri

TAG = "promoted_by"


def promote_newest(names: list[str], execution: str, metric: str) -> list[str]:
    """Promote each model's newest version to production; a model whose newest version already
    serves (nothing new tonight) is left as it is."""
    said = []
    for name in names:
        newest = versions(name)[-1]
        if "production" in newest.aliases:
            said.append(f"{name} v{newest.version} already serves")
            continue
        said.append(promote(name, newest.version, to="production", metric=metric))
        set_version_tags(name, newest.version, {TAG: execution})
    return said


def rollback_promoted(names: list[str], execution: str) -> list[str]:
    """Swap production back to backup for each model whose production version `execution` promoted."""
    client = mlflow_client(tracking_uri())
    said = []
    for name in names:
        serving = get_version(client, name, alias="production")
        if serving.tags.get(TAG) == execution:
            said.append(rollback(name))
        else:
            said.append(f"{name}: v{serving.version} was not promoted by {execution}; left serving")
    return said
