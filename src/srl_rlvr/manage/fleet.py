"""Which models the management layer looks after, and each one's own config.

Every registered model with a `production` alias is watched (or, with `manage.only_listed`, those of
them named in `manage.models`): a model promoted tomorrow is watched from its next pass, with no
config change. `manage.models` adds what differs per model (its role on
the server, task, window, budget, distillation tiers) as dotted overrides of the one config file, so
a model's monitor and retrain read exactly what `srl-rlvr monitor` and `retrain` would read.
"""

from __future__ import annotations

from pathlib import Path

from srl_rlvr.config import Config, apply_override, build_config
from srl_rlvr.errors import ConfigError
from srl_rlvr.tracking.registry import Version


def registered(config: Config) -> dict[str, dict[str, int]]:
    """{name: {alias: version}} of every registered model in the config's MLflow store."""
    from srl_rlvr.tracking.runs import mlflow_client, store_errors, tracking_uri

    uri = tracking_uri(config)
    with store_errors(uri):
        listed = mlflow_client(uri).search_registered_models(max_results=1000)
    return {m.name: {a: int(v) for a, v in m.aliases.items()} for m in listed}


def production_models(config: Config) -> dict[str, Version]:
    """{name: its production version}; a name in manage.models the registry lacks is a config error."""
    from srl_rlvr.tracking.registry import resolve
    from srl_rlvr.tracking.runs import tracking_uri

    if config.manage.only_listed and not config.manage.models:
        return {}  # a layer that watches no model (discovery alone) need not open the registry
    models = registered(config)
    unknown = sorted(set(config.manage.models) - set(models))
    if unknown:
        raise ConfigError(
            f"manage.models.{unknown[0]}: no model '{unknown[0]}' in the registry ({tracking_uri(config)}); "
            f"registered: {', '.join(sorted(models)) or 'none'}"
        )
    uri = tracking_uri(config)
    return {
        name: resolve(f"registry:{name}@production", uri)
        for name, aliases in sorted(models.items())
        if "production" in aliases and (name in config.manage.models or not config.manage.only_listed)
    }


def model_config(config: Config, name: str) -> Config:
    """The config `monitor`, `retrain` and `distill` get for model `name`: its registry name, its own
    output folder, then its overrides."""
    raw = config.model_dump(mode="json")
    raw["registry"]["model_name"] = name
    raw["output_dir"] = str(Path(config.output_dir) / "manage" / name)
    raw["distill"]["teacher"] = f"registry:{name}@production"  # the cascade starts from this model
    managed = config.manage.models.get(name)
    for override in managed.overrides if managed else []:
        apply_override(raw, override)
    try:
        return build_config(raw)
    except ConfigError as e:
        raise ConfigError(f"manage.models.{name}.overrides: {e}") from None
