"""What training costs: device-seconds x the price of the device type, per job, per model, per month.

The price table is the config's (`manage.prices_usd_per_hour`, list prices to override with your
own). Each job's seconds are measured around the job itself, so queueing and monitoring cost
nothing. The cost goes where people look for a model's history: the MLflow run that trained it and
the registry version it made (tags `training_device_seconds`, `training_cost_usd`, as cloud jobs tag
theirs), and into the job row that the monthly sum reads.
"""

from __future__ import annotations

from srl_rlvr.config import Config
from srl_rlvr.data.manage_status import month_of  # noqa: F401  (re-exported for manage)
from srl_rlvr.errors import ConfigError


def price_per_hour(config: Config) -> float:
    m = config.manage
    if m.device not in m.prices_usd_per_hour:
        raise ConfigError(
            f"manage.device: no price for '{m.device}' in manage.prices_usd_per_hour "
            f"(it has: {', '.join(sorted(m.prices_usd_per_hour))})"
        )
    return m.prices_usd_per_hour[m.device]


def job_cost(config: Config, seconds: float) -> tuple[float, float]:
    """(device-seconds, USD) of a job that ran `seconds` on this host's devices."""
    device_seconds = seconds * config.manage.device_count
    return device_seconds, device_seconds * price_per_hour(config) / 3600


def record_on_version(config: Config, reference: str, device_seconds: float, usd: float) -> None:
    """Tag the registry version and the MLflow run that trained it with what it cost."""
    from srl_rlvr.tracking.registry import parse_reference, resolve, set_version_tags
    from srl_rlvr.tracking.runs import mlflow_client, tracking_uri

    uri = tracking_uri(config)
    tags = {
        "training_device_seconds": f"{device_seconds:.1f}",
        "training_cost_usd": f"{usd:.4f}",
        "training_device": config.manage.device,
    }
    name, _, version = parse_reference(reference)
    assert version is not None
    set_version_tags(name, version, tags, uri=uri)
    run_id = resolve(reference, uri).run_id
    if run_id:
        client = mlflow_client(uri)
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        client.log_metric(run_id, "training_cost_usd", usd)
        client.log_metric(run_id, "training_device_seconds", device_seconds)
