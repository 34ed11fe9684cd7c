"""SageMaker Processing jobs running our CLI in the training image: `data check` before any training
(`srl-rlvr aws validate-data`), and the cascade's promotion and rollback steps."""

from __future__ import annotations

from typing import Any

from srl_rlvr.cloud import storage
from srl_rlvr.cloud.sagemaker_job import job_name, require_job_settings, run_prefix, stage_dataset
from srl_rlvr.cloud.session import calling
from srl_rlvr.config import Config
from srl_rlvr.errors import CloudError

INPUT = "/opt/ml/processing/input/data"


def processing_job_request(
    config: Config, arguments: list[str], data_uri: str | None = None
) -> dict[str, Any]:
    """CreateProcessingJob's arguments, less ProcessingJobName: `srl-rlvr ARGUMENTS` on one
    processing instance, with the dataset (when given) under /opt/ml/processing/input/data."""
    require_job_settings(config)
    request: dict[str, Any] = {
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": config.aws.processing_instance_type,
                "VolumeSizeInGB": 30,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "AppSpecification": {
            "ImageUri": config.aws.image_uri,
            "ContainerEntrypoint": ["srl-rlvr"],
            "ContainerArguments": arguments,
        },
        "RoleArn": config.aws.role_arn,
        "Tags": [{"Key": "srl-rlvr:step", "Value": arguments[0]}],
    }
    if data_uri:
        request["ProcessingInputs"] = [
            {
                "InputName": "data",
                "S3Input": {
                    "S3Uri": data_uri,
                    "LocalPath": INPUT,
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            }
        ]
    return request


def check_arguments(data_uri: str) -> list[str]:
    """`data check` on the dataset as it lands in the container: a .jsonl object keeps its name."""
    name = data_uri.rstrip("/").rsplit("/", 1)[-1]
    return ["data", "check", f"{INPUT}/{name}" if name.endswith(".jsonl") else INPUT]


def launch_validation(config: Config, data: str | None) -> str:
    """Start `srl-rlvr data check` on the dataset (uploaded first when local); return the job name."""
    require_job_settings(config)
    if not (data or config.data.trajectories):
        raise CloudError("no dataset: pass --data or set data.trajectories")
    storage.require_bucket(storage.split(run_prefix(config))[0], config.aws.region)
    data_uri = stage_dataset(config, data)
    assert data_uri is not None
    name = job_name("srl-rlvr-validate-data")
    request = processing_job_request(config, check_arguments(data_uri), data_uri)
    calling("sagemaker", config.aws.region, "create_processing_job", ProcessingJobName=name, **request)
    return name
