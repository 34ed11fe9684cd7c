"""`srl-rlvr aws ...`: SageMaker training and data validation, the nightly cascade on Step Functions,
CloudWatch alarms, dashboard and budget, the measured training cost (extra: aws).

boto3 is imported inside the commands (srl_rlvr.cloud), so the CLI works without the extra."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from srl_rlvr.cli.common import ConfigArg, OverridesArg, console, err_console, load_cli_config
from srl_rlvr.errors import CloudError

aws_app = typer.Typer(help="Train and run the nightly cascade on AWS (SageMaker, Step Functions).")
cascade_app = typer.Typer(help="The nightly distillation cascade (Step Functions).", no_args_is_help=True)
monitor_app = typer.Typer(help="CloudWatch alarms, dashboard and the monthly budget.", no_args_is_help=True)
TIERS = ("gold", "silver", "bronze")

TierOpt = Annotated[
    str, typer.Option("--tier", help="gold (4 x L4), silver (8 x H100), bronze (multi-node).")
]
DataOpt = Annotated[
    str | None,
    typer.Option("--data", help="Trajectory JSONL or dataset folder, local or s3:// (data.trajectories)."),
]


def _config(config: str | None, overrides: list[str] | None, tier: str | None = None, **tier_values: object):
    if tier is not None and tier not in TIERS:
        raise CloudError(f"unknown tier '{tier}': one of {', '.join(TIERS)}")
    extra = [f"aws.tiers.{tier}.{k}={v}" for k, v in tier_values.items() if v is not None]
    return load_cli_config(config, [*(overrides or []), *extra])


@aws_app.command("train")
def train_command(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    tier: TierOpt = "gold",
    command: Annotated[
        str,
        typer.Option(
            "--command", help="What the job runs: run, 'train srl', 'train sft', 'train rlvr', distill."
        ),
    ] = "run",
    data: DataOpt = None,
    run_name: Annotated[
        str | None,
        typer.Option(
            "--run-name", help="Names the S3 checkpoint prefix: the same name resumes a run's checkpoints."
        ),
    ] = None,
    instance_type: Annotated[str | None, typer.Option("--instance-type")] = None,
    instance_count: Annotated[int | None, typer.Option("--instance-count", min=1)] = None,
    spot: Annotated[
        bool | None, typer.Option("--spot/--on-demand", help="Managed spot (the tier's default).")
    ] = None,
    max_run_hours: Annotated[float | None, typer.Option("--max-run-hours")] = None,
    max_wait_hours: Annotated[
        float | None, typer.Option("--max-wait-hours", help="Spot: run time plus waiting.")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the job's status and log until it ends.")
    ] = False,
) -> None:
    """Launch a SageMaker training job of the tier running `srl-rlvr COMMAND` in the Dockerfile's image."""
    cfg = _config(
        config,
        overrides,
        tier,
        instance_type=instance_type,
        instance_count=instance_count,
        spot=None if spot is None else str(spot).lower(),
        max_run_hours=max_run_hours,
        max_wait_hours=max_wait_hours,
    )
    from srl_rlvr.cloud.cloudwatch import record_training_cost
    from srl_rlvr.cloud.sagemaker_job import follow, launch_training, tier_settings

    name = launch_training(cfg, tier, command, run_name, data)
    settings = tier_settings(cfg, tier)
    console.print(
        f"launched {name}: {settings.instance_count} x {settings.instance_type}, "
        f"{'spot' if settings.spot else 'on-demand'}, checkpoints every {settings.checkpoint_minutes:g} min"
    )
    if not wait:
        console.print(f"follow it with: aws sagemaker describe-training-job --training-job-name {name}")
        return
    job = follow(name, lambda line: err_console.print(line, highlight=False, markup=False), cfg.aws.region)
    cost = record_training_cost(cfg, job, tier, None)
    if cost is not None:
        console.print(f"{name}: {job['TrainingJobStatus']}, billed ${cost:.2f}")
    if job["TrainingJobStatus"] != "Completed":
        console.print(f"[red]{name}: {job['TrainingJobStatus']}: {job.get('FailureReason', '')}[/red]")
        raise typer.Exit(1)


@aws_app.command("validate-data")
def validate_data_command(
    config: ConfigArg = None, overrides: OverridesArg = None, data: DataOpt = None
) -> None:
    """A SageMaker Processing job running `srl-rlvr data check` on the dataset, before any training."""
    from srl_rlvr.cloud.processing_job import launch_validation

    console.print(f"launched {launch_validation(_config(config, overrides), data)}")


@aws_app.command("cost")
def cost_command(
    job: Annotated[str, typer.Argument(help="Training job name.")],
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    tier: TierOpt = "gold",
    version: Annotated[
        str | None, typer.Option("--version", help="registry:NAME/VERSION to tag with the cost.")
    ] = None,
) -> None:
    """The job's measured cost (billable seconds x nodes x price), as a metric and on a registry version."""
    cfg = _config(config, overrides, tier)
    from srl_rlvr.cloud.cloudwatch import record_training_cost
    from srl_rlvr.cloud.sagemaker_job import describe

    cost = record_training_cost(cfg, describe(job, cfg.aws.region), tier, version)
    if cost is None:
        raise CloudError(f"{job}: SageMaker has not reported its billable time yet (still running?)")
    console.print(f"{job}: ${cost:.2f}" + (f"; recorded on {version}" if version else ""))


@aws_app.command("render")
def render_command(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    out: Annotated[Path, typer.Option("--out", help="Terraform root to write the tfvars into.")] = Path(
        "deploy/terraform"
    ),
    data: DataOpt = None,
) -> None:
    """Write the config's AWS settings, state machine, alarms and dashboard as Terraform variables."""
    from srl_rlvr.cloud.terraform_vars import terraform_variables

    path = out / "generated.auto.tfvars.json"
    path.write_text(json.dumps(terraform_variables(_config(config, overrides), data), indent=2) + "\n")
    console.print(f"wrote {path}; then: terraform -chdir={out} apply")


@cascade_app.command("deploy")
def cascade_deploy(config: ConfigArg = None, overrides: OverridesArg = None, data: DataOpt = None) -> None:
    """Create or update the state machine from the config (bronze -> silver -> gold, then promotion)."""
    from srl_rlvr.cloud.state_machine import deploy

    console.print(f"state machine {deploy(_config(config, overrides), data)}")


@cascade_app.command("start")
def cascade_start(config: ConfigArg = None, overrides: OverridesArg = None) -> None:
    """Start one execution now (the nightly schedule starts the others)."""
    from srl_rlvr.cloud.state_machine import start

    console.print(f"started {start(_config(config, overrides))}")


@cascade_app.command("status")
def cascade_status(config: ConfigArg = None, overrides: OverridesArg = None) -> None:
    """The latest executions and how they ended."""
    from srl_rlvr.cloud.state_machine import status

    for run in status(_config(config, overrides)):
        stopped = run.get("stopDate")
        console.print(
            f"{run['name']}: {run['status']} (started {run['startDate']:%Y-%m-%d %H:%M}"
            + (f", stopped {stopped:%H:%M})" if stopped else ")"),
            highlight=False,
        )


@monitor_app.command("deploy")
def monitor_deploy(config: ConfigArg = None, overrides: OverridesArg = None) -> None:
    """Create or update the alarms, the dashboard and the monthly budget."""
    from srl_rlvr.cloud.cloudwatch import deploy_monitoring

    for line in deploy_monitoring(_config(config, overrides)):
        console.print(line)


@aws_app.command("promote", hidden=True)
def promote_command(
    names: Annotated[list[str], typer.Argument(help="Registered model names, one per tier.")],
    execution: Annotated[str, typer.Option("--execution", help="The Step Functions execution's name.")],
    metric: Annotated[str, typer.Option("--metric")] = "reward",
    rollback: Annotated[bool, typer.Option("--rollback", help="Undo what --execution promoted.")] = False,
) -> None:
    """The cascade's promotion (or rollback) step, run in a Processing job."""
    from srl_rlvr.cloud.promotion import promote_newest, rollback_promoted

    said = rollback_promoted(names, execution) if rollback else promote_newest(names, execution, metric)
    for line in said:
        console.print(line)


def add_commands(app: typer.Typer) -> None:
    aws_app.add_typer(cascade_app, name="cascade")
    aws_app.add_typer(monitor_app, name="monitor")
    app.add_typer(aws_app, name="aws", no_args_is_help=True)
