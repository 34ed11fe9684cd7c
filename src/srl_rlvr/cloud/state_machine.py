"""The nightly distillation cascade as a Step Functions state machine, generated from code.

ValidateData -> Distill bronze -> silver -> gold (each tier's student teaches the next) -> Promote.
Every job is a SageMaker job (`.sync`: the state waits for it) built by the same request builders as
`aws train` and `aws validate-data`, so a tier's machines, spot settings and checkpoints are the
same whether launched by hand or at night. Each task retries transient SageMaker errors with
backoff; a spot tier with `on_demand_fallback` reruns on-demand when its spot job fails (it resumes
from the spot job's checkpoints: the prefix is the execution's). Any failure notifies the SNS topic;
before Promote nothing has moved, so production keeps serving the previous model; a failed Promote
runs Rollback, which puts back what this execution promoted.
"""

from __future__ import annotations

import json
import re
from typing import Any

from srl_rlvr.cloud.processing_job import check_arguments, processing_job_request
from srl_rlvr.cloud.sagemaker_job import checkpoint_uri, training_job_request
from srl_rlvr.config import Config
from srl_rlvr.errors import CloudError

TRAIN = "arn:aws:states:::sagemaker:createTrainingJob.sync"
PROCESS = "arn:aws:states:::sagemaker:createProcessingJob.sync"
PUBLISH = "arn:aws:states:::sns:publish"
RETRY = [
    {
        "ErrorEquals": ["SageMaker.AmazonSageMakerException", "ThrottlingException"],
        "IntervalSeconds": 60,
        "MaxAttempts": 3,
        "BackoffRate": 2.0,
    }
]
EXECUTION = "$$.Execution.Name"


def _named(request: dict[str, Any], key: str, pattern: str) -> dict[str, Any]:
    """A job name unique per execution: Step Functions fills `{}` with the execution's name."""
    return {f"{key}.$": f"States.Format('{pattern}', {EXECUTION})", **request}


def _catch(next_state: str) -> list[dict[str, Any]]:
    return [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": next_state}]


def _training(config: Config, tier: str, data_uri: str | None, spot: bool | None = None) -> dict[str, Any]:
    request = training_job_request(config, tier, "distill", f"nightly-{tier}", data_uri, spot=spot)
    # the checkpoint prefix is the execution's: a retry or the on-demand rerun resumes, the next
    # night starts afresh
    request["CheckpointConfig"] = {
        "S3Uri.$": f"States.Format('{checkpoint_uri(config, 'nightly')}-{tier}-{{}}', {EXECUTION})",
        "LocalPath": request["CheckpointConfig"]["LocalPath"],
    }
    return _named(request, "TrainingJobName", f"srl-rlvr-{tier}-{{}}")


def tier_model_names(config: Config) -> list[str]:
    """The registered name `srl-rlvr distill` gives each tier's student."""
    from srl_rlvr.tracking.registry import model_name_for

    base = config.distill.model_name or model_name_for(config.task.name)
    return [f"{base}-{tier}" for tier in config.aws.cascade]


def definition(config: Config, data_uri: str | None) -> dict[str, Any]:
    """The cascade in Amazon States Language; with `data_uri` (the night's exported traces), a
    `data check` of it comes first."""
    aws = config.aws
    if not aws.cascade:
        raise CloudError("aws.cascade is empty: name the tiers in order, e.g. [bronze, silver, gold]")
    tiers = list(aws.cascade)
    names = tier_model_names(config)
    promote_args = ["aws", "promote", *names, "--metric", config.registry.primary_metric]
    states: dict[str, Any] = {}
    if data_uri:
        states["ValidateData"] = {
            "Type": "Task",
            "Resource": PROCESS,
            "Parameters": _named(
                processing_job_request(config, check_arguments(data_uri), data_uri),
                "ProcessingJobName",
                "srl-rlvr-validate-{}",
            ),
            "ResultPath": None,
            "Retry": RETRY,
            "Catch": _catch("NotifyFailure"),
            "Next": f"Distill-{tiers[0]}",
        }
    for i, tier in enumerate(tiers):
        after = f"Distill-{tiers[i + 1]}" if i + 1 < len(tiers) else "Promote"
        settings = getattr(aws.tiers, tier)
        fallback = settings.spot and settings.on_demand_fallback
        states[f"Distill-{tier}"] = {
            "Type": "Task",
            "Resource": TRAIN,
            "Parameters": _training(config, tier, None),
            "ResultPath": None,
            "Retry": RETRY,
            "Catch": _catch(f"Distill-{tier}-on-demand" if fallback else "NotifyFailure"),
            "Next": after,
        }
        if fallback:
            on_demand = _training(config, tier, None, spot=False)
            on_demand["TrainingJobName.$"] = f"States.Format('srl-rlvr-{tier}-od-{{}}', {EXECUTION})"
            states[f"Distill-{tier}-on-demand"] = {
                "Type": "Task",
                "Resource": TRAIN,
                "Parameters": on_demand,
                "ResultPath": None,
                "Retry": RETRY,
                "Catch": _catch("NotifyFailure"),
                "Next": after,
            }
    states["Promote"] = {
        "Type": "Task",
        "Resource": PROCESS,
        "Parameters": _execution_args(
            _named(processing_job_request(config, promote_args), "ProcessingJobName", "srl-rlvr-promote-{}")
        ),
        "ResultPath": None,
        "Retry": RETRY,
        "Catch": _catch("NotifyPromoteFailure"),
        "Next": "Done",
    }
    states["NotifyPromoteFailure"] = _notify(config, "Rollback")
    states["Rollback"] = {
        "Type": "Task",
        "Resource": PROCESS,
        "Parameters": _execution_args(
            _named(
                processing_job_request(config, [*promote_args, "--rollback"]),
                "ProcessingJobName",
                "srl-rlvr-rollback-{}",
            )
        ),
        "ResultPath": None,
        "Retry": RETRY,
        "Next": "Failed",
    }
    states["NotifyFailure"] = _notify(config, "Failed")
    states["Failed"] = {"Type": "Fail", "Error": "CascadeFailed", "Cause": "see the execution's events"}
    states["Done"] = {"Type": "Succeed"}
    return {
        "Comment": f"srl-rlvr nightly distillation: {' -> '.join(tiers)}, then promotion",
        "StartAt": "ValidateData" if data_uri else f"Distill-{tiers[0]}",
        "States": states,
    }


def _execution_args(parameters: dict[str, Any]) -> dict[str, Any]:
    """The container's arguments with `--execution <this execution's name>` appended."""
    spec = dict(parameters["AppSpecification"])
    listed = ", ".join(_literal(a) for a in spec.pop("ContainerArguments"))
    spec["ContainerArguments.$"] = f"States.Array({listed}, '--execution', {EXECUTION})"
    return {**parameters, "AppSpecification": spec}


def _literal(text: str) -> str:
    """A string literal of States Language intrinsics: quoted, with ' { } and backslash escaped."""
    return "'" + re.sub(r"([\\'{}])", r"\\\1", text) + "'"


def _notify(config: Config, next_state: str) -> dict[str, Any]:
    """An SNS message naming the failed execution and its error; a Pass without a topic."""
    if not config.aws.notification_topic_arn:
        return {
            "Type": "Pass",
            "Comment": "no aws.notification_topic_arn: nobody to tell",
            "Next": next_state,
        }
    return {
        "Type": "Task",
        "Resource": PUBLISH,
        "Parameters": {
            "TopicArn": config.aws.notification_topic_arn,
            "Subject": "srl-rlvr nightly cascade failed",
            "Message.$": f"States.Format('execution {{}} failed: {{}}', {EXECUTION}, States.JsonToString($.error))",
        },
        "ResultPath": None,
        "Next": next_state,
    }


def deploy(config: Config, data_uri: str | None = None) -> str:
    """Create the state machine, or update its definition when it exists; return its ARN."""
    from srl_rlvr.cloud.session import calling, client

    region, role = config.aws.region, config.aws.state_machine_role_arn
    if not role:
        raise CloudError("aws.state_machine_role_arn is not set (Terraform output state_machine_role_arn)")
    body = json.dumps(definition(config, data_uri), indent=2)
    found = [m for m in _machines(client("stepfunctions", region)) if m["name"] == config.aws.state_machine]
    if found:
        arn = found[0]["stateMachineArn"]
        calling(
            "stepfunctions",
            region,
            "update_state_machine",
            stateMachineArn=arn,
            definition=body,
            roleArn=role,
        )
        return arn
    return calling(
        "stepfunctions",
        region,
        "create_state_machine",
        name=config.aws.state_machine,
        definition=body,
        roleArn=role,
    )["stateMachineArn"]


def _machines(sfn: Any) -> list[dict[str, Any]]:
    return [m for page in sfn.get_paginator("list_state_machines").paginate() for m in page["stateMachines"]]


def machine_arn(config: Config) -> str:
    from srl_rlvr.cloud.session import client

    sfn = client("stepfunctions", config.aws.region)
    for machine in _machines(sfn):
        if machine["name"] == config.aws.state_machine:
            return machine["stateMachineArn"]
    raise CloudError(
        f"no state machine '{config.aws.state_machine}': run `srl-rlvr aws cascade deploy` first"
    )


def start(config: Config, name: str | None = None) -> str:
    from srl_rlvr.cloud.session import client

    kwargs = {"name": name} if name else {}
    return client("stepfunctions", config.aws.region).start_execution(
        stateMachineArn=machine_arn(config), input="{}", **kwargs
    )["executionArn"]


def status(config: Config, limit: int = 5) -> list[dict[str, Any]]:
    """The latest executions, newest first: name, status, start and stop times."""
    from srl_rlvr.cloud.session import client

    sfn = client("stepfunctions", config.aws.region)
    runs = sfn.list_executions(stateMachineArn=machine_arn(config), maxResults=limit)["executions"]
    return sorted(runs, key=lambda r: r["startDate"], reverse=True)
