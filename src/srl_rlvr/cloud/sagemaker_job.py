"""`srl-rlvr aws train`: one SageMaker training job per run, on a tier's machines, running our own CLI.

The job's container runs `entry_point.py`, which rebuilds the config from the hyper-parameters and
runs the command with its run directory in /opt/ml/checkpoints. SageMaker mirrors that folder to
`checkpoint_s3_uri` while the job runs and copies it back when a reclaimed spot job restarts, so the
pipeline's own resume (pipeline.json, the last checkpoint-N) continues where the lost machine
stopped. The checkpoint prefix is named for the run, not the job: relaunching the same run name
(or the cascade's on-demand fallback) resumes too.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from srl_rlvr.cloud import storage
from srl_rlvr.cloud.session import calling, client
from srl_rlvr.config import AwsTierConfig, Config
from srl_rlvr.errors import CloudError

TIERS = ("gold", "silver", "bronze")
COMMANDS = ("run", "train srl", "train sft", "train rlvr", "distill")
RESERVED = "srl_rlvr."  # hyper-parameters of the entry point itself; no config key starts so
CHECKPOINT_DIR = "/opt/ml/checkpoints"
MAX_HYPERPARAMETERS = 100  # SageMaker's limits
MAX_VALUE_CHARS = 2500
# SageMaker reads metrics from the job's log with these; the entry point prints each metrics.jsonl
# record as one embedded-metric-format JSON line, which they match.
LOGGED_METRICS = ("loss", "reward", "kl", "grad_norm", "learning_rate", "val_reward")
STAGE_SECTIONS = ("sft", "srl", "rlvr")


def tier_settings(config: Config, tier: str) -> AwsTierConfig:
    if tier not in TIERS:
        raise CloudError(f"unknown tier '{tier}': one of {', '.join(TIERS)}")
    return getattr(config.aws.tiers, tier)


def _flatten(node: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value)  # JSON is YAML: the override parser reads it back
    return flat


def hyperparameters(config: Config, tier: str, command: str) -> dict[str, str]:
    """What the user's config sets, as dotted overrides, plus the tier's checkpoint interval in each
    training section that does not set its own, and the command to run. The run directory and the
    dataset are the container's own (entry_point.py), so they are not passed."""
    if command not in COMMANDS:
        raise CloudError(f"unknown command '{command}': one of {', '.join(COMMANDS)}")
    settings = tier_settings(config, tier)
    raw = config.model_dump(mode="json", exclude_unset=True, exclude={"aws", "output_dir"})
    raw.get("data", {}).pop("trajectories", None)
    for section in STAGE_SECTIONS:
        if "save_minutes" not in getattr(config, section).model_fields_set:
            raw.setdefault(section, {})["save_minutes"] = settings.checkpoint_minutes
    if command == "distill":
        raw.setdefault("distill", {})["tier"] = tier
    flat = {
        **_flatten(raw),
        f"{RESERVED}command": command,
        f"{RESERVED}tier": tier,
        f"{RESERVED}strategy": settings.strategy,
        f"{RESERVED}namespace": config.aws.namespace,
    }
    if len(flat) > MAX_HYPERPARAMETERS:
        raise CloudError(
            f"the config sets {len(flat)} values; SageMaker takes at most {MAX_HYPERPARAMETERS} "
            "hyper-parameters: leave defaults out of the config"
        )
    for key, value in flat.items():
        if len(value) > MAX_VALUE_CHARS:
            raise CloudError(f"config {key}: {len(value)} characters, SageMaker's limit is {MAX_VALUE_CHARS}")
    return flat


def run_prefix(config: Config, *parts: str) -> str:
    if not config.aws.bucket:
        raise CloudError("aws.bucket is not set: name the S3 bucket (Terraform output bucket)")
    return storage.join(f"s3://{config.aws.bucket}", config.aws.prefix, *parts)


def checkpoint_uri(config: Config, run_name: str) -> str:
    return run_prefix(config, "checkpoints", run_name)


def job_name(run_name: str, now: datetime | None = None) -> str:
    """Unique per launch (SageMaker refuses a reused name), at most 63 characters."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    return f"{run_name[: 63 - len(stamp) - 1]}-{stamp}"


def require_job_settings(config: Config) -> None:
    for key, value in (("aws.role_arn", config.aws.role_arn), ("aws.image_uri", config.aws.image_uri)):
        if not value:
            raise CloudError(f"{key} is not set (Terraform outputs it; see README, Running on AWS)")


def training_job_request(
    config: Config, tier: str, command: str, run_name: str, data_uri: str | None, spot: bool | None = None
) -> dict[str, Any]:
    """CreateTrainingJob's arguments, less TrainingJobName (the caller's, or the state machine's)."""
    settings = tier_settings(config, tier)
    aws = config.aws
    require_job_settings(config)
    spot = settings.spot if spot is None else spot
    stopping = {"MaxRuntimeInSeconds": int(settings.max_run_hours * 3600)}
    if spot:
        stopping["MaxWaitTimeInSeconds"] = int(settings.max_wait_hours * 3600)
    request: dict[str, Any] = {
        "AlgorithmSpecification": {
            "TrainingImage": aws.image_uri,
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": m, "Regex": f'"{m}": ([-+0-9.eE]+)'} for m in LOGGED_METRICS],
        },
        "RoleArn": aws.role_arn,
        "HyperParameters": hyperparameters(config, tier, command),
        "OutputDataConfig": {"S3OutputPath": run_prefix(config, "models")},
        "ResourceConfig": {
            "InstanceType": settings.instance_type,
            "InstanceCount": settings.instance_count,
            "VolumeSizeInGB": settings.volume_gb,
        },
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": spot,
        "CheckpointConfig": {"S3Uri": checkpoint_uri(config, run_name), "LocalPath": CHECKPOINT_DIR},
        "Tags": [{"Key": "srl-rlvr:tier", "Value": tier}, {"Key": "srl-rlvr:run", "Value": run_name}],
    }
    if data_uri:
        request["InputDataConfig"] = [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": data_uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        ]
    return request


def stage_dataset(config: Config, data: str | None) -> str | None:
    """The dataset's S3 path: an s3:// path as given, a local file or folder uploaded under the
    bucket first (under its content hash, so runs on different data never mix)."""
    data = data or config.data.trajectories
    if data is None or storage.is_s3(data):
        return data
    from srl_rlvr.data.versioning import load_dataset

    _, manifest = load_dataset(Path(data))
    uri = run_prefix(config, "datasets", manifest["hash"][:16], Path(data).name)
    return storage.upload(data, uri, config.aws.region)


def launch_training(
    config: Config, tier: str, command: str = "run", run_name: str | None = None, data: str | None = None
) -> str:
    """Check everything, upload the dataset, create the job; return its name. Nothing is created
    when a check fails."""
    tier_settings(config, tier)
    hyperparameters(config, tier, command)
    require_job_settings(config)
    # SageMaker names take letters, digits and '-' only
    run_name = re.sub(r"[^A-Za-z0-9-]+", "-", run_name or f"srl-rlvr-{tier}-{Path(config.output_dir).name}")
    storage.require_bucket(storage.split(run_prefix(config))[0], config.aws.region)
    data_uri = stage_dataset(config, data)
    request = training_job_request(config, tier, command, run_name, data_uri)
    name = job_name(run_name)
    calling("sagemaker", config.aws.region, "create_training_job", TrainingJobName=name, **request)
    return name


def describe(name: str, region: str | None = None) -> dict[str, Any]:
    return client("sagemaker", region).describe_training_job(TrainingJobName=name)


DONE = ("Completed", "Failed", "Stopped")


def follow(
    name: str, say: Callable[[str], None], region: str | None = None, poll_seconds: float = 30.0
) -> dict[str, Any]:
    """Print status changes (a spot reclaim shows as `Interrupted` then `Restarting`) and the job's
    log lines until it ends; return the final description."""
    sagemaker, logs = client("sagemaker", region), client("logs", region)
    shown_status, seen_from = "", 0
    while True:
        job = sagemaker.describe_training_job(TrainingJobName=name)
        status = f"{job['TrainingJobStatus']} / {job.get('SecondaryStatus', '')}"
        if status != shown_status:
            say(f"{name}: {status}")
            shown_status = status
        seen_from = _print_logs(logs, name, seen_from, say)
        if job["TrainingJobStatus"] in DONE:
            return job
        time.sleep(poll_seconds)


def _print_logs(logs: Any, name: str, since_ms: int, say: Callable[[str], None]) -> int:
    try:
        events = logs.filter_log_events(
            logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=name, startTime=since_ms
        )["events"]
    except Exception:  # the group appears only once the first container has started
        return since_ms
    for event in events:
        say(event["message"])
    return max([since_ms, *(e["timestamp"] + 1 for e in events)])


def training_cost(job: dict[str, Any], price_per_hour: float) -> float | None:
    """USD the job was billed: billable seconds (already net of spot savings) x nodes x price.
    None while SageMaker has not reported the billable time."""
    seconds = job.get("BillableTimeInSeconds")
    if seconds is None:
        return None
    return seconds * job["ResourceConfig"]["InstanceCount"] * price_per_hour / 3600
