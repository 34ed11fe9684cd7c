"""The `aws` extra against moto's AWS emulator over real HTTP: real boto3 calls, our code unmocked."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("boto3", reason="the aws extra (boto3) is not installed")
pytest.importorskip("moto.server", reason="moto[server] is not installed")

import boto3
from aws_server import ACCOUNT, use_moto

from srl_rlvr.cli import main
from srl_rlvr.cloud import storage
from srl_rlvr.cloud.cloudwatch import deploy_monitoring, put_metrics, record_training_cost
from srl_rlvr.cloud.sagemaker_job import hyperparameters, launch_training
from srl_rlvr.cloud.state_machine import deploy, start, status
from srl_rlvr.config import Config, build_config
from srl_rlvr.data.jsonl import write_jsonl
from srl_rlvr.data.trajectory import Trajectory

BUCKET = "srl-rlvr-test"
SETTINGS = {
    "aws.bucket": BUCKET,
    "aws.region": "us-east-1",
    "aws.role_arn": f"arn:aws:iam::{ACCOUNT}:role/srl-rlvr-sagemaker",
    "aws.state_machine_role_arn": f"arn:aws:iam::{ACCOUNT}:role/srl-rlvr-states",
    "aws.image_uri": f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/srl-rlvr:latest",
    "aws.notification_topic_arn": f"arn:aws:sns:us-east-1:{ACCOUNT}:srl-rlvr",
    "aws.budget_email": "ml-team@example.com",
    "srl.learning_rate": "2e-6",
    "output_dir": "runs/nightly",
}


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    return use_moto(monkeypatch, moto_endpoint)


def _config(**extra: str) -> Config:
    return build_config(overrides=[f"{k}={v}" for k, v in {**SETTINGS, **extra}.items()])


def _dataset(path: Path, trajectories: list[Trajectory]) -> Path:
    write_jsonl(path, trajectories)
    return path


def test_a_dataset_and_a_checkpoint_round_trip_through_s3_paths(
    aws: str, tmp_path: Path, arithmetic_trajectories: list[Trajectory], capsys: pytest.CaptureFixture[str]
) -> None:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    data = _dataset(tmp_path / "data.jsonl", arithmetic_trajectories)
    checkpoint = tmp_path / "srl" / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text('{"global_step": 4}')
    (checkpoint / "optimizer.pt").write_bytes(bytes(range(256)) * 64)

    storage.upload(data, f"s3://{BUCKET}/datasets/data.jsonl")
    storage.upload(tmp_path / "srl", f"s3://{BUCKET}/checkpoints/run-1/srl")
    back = storage.download(f"s3://{BUCKET}/checkpoints/run-1/srl", tmp_path / "restored")
    local = storage.local_path(f"s3://{BUCKET}/datasets/data.jsonl", tmp_path / "scratch")

    assert local.read_text() == data.read_text()
    assert (back / "checkpoint-4" / "optimizer.pt").read_bytes() == (checkpoint / "optimizer.pt").read_bytes()
    assert json.loads(
        storage.read_text(f"s3://{BUCKET}/checkpoints/run-1/srl/checkpoint-4/trainer_state.json")
    ) == {"global_step": 4}


def test_each_tier_launches_a_job_whose_spot_checkpoint_instance_and_hyperparameters_read_back(
    aws: str, tmp_path: Path, arithmetic_trajectories: list[Trajectory]
) -> None:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    data = _dataset(tmp_path / "data.jsonl", arithmetic_trajectories)
    sagemaker = boto3.client("sagemaker")
    expected = {
        "gold": ("ml.g6.12xlarge", 1),
        "silver": ("ml.p5.48xlarge", 1),
        "bronze": ("ml.p5.48xlarge", 3),
    }
    for tier, (instance, count) in expected.items():
        name = launch_training(_config(), tier, "run", data=str(data))
        job = sagemaker.describe_training_job(TrainingJobName=name)

        assert job["ResourceConfig"]["InstanceType"] == instance
        assert job["ResourceConfig"]["InstanceCount"] == count
        assert job["EnableManagedSpotTraining"] is True
        assert (
            job["StoppingCondition"]["MaxWaitTimeInSeconds"]
            >= job["StoppingCondition"]["MaxRuntimeInSeconds"]
        )
        assert job["CheckpointConfig"] == {
            "S3Uri": f"s3://{BUCKET}/srl-rlvr/checkpoints/srl-rlvr-{tier}-nightly",
            "LocalPath": "/opt/ml/checkpoints",
        }
        hps = job["HyperParameters"]
        assert hps["srl.learning_rate"] == "2e-06" and hps["srl_rlvr.tier"] == tier
        assert hps["srl.save_minutes"] == hps["sft.save_minutes"] == "30.0"  # the tier's checkpoint interval
        assert hps["srl_rlvr.strategy"] == ("fsdp2" if tier == "bronze" else "ddp")
        channel = job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
        assert (
            storage.read_text(channel) == data.read_text()
        )  # the dataset was uploaded where the job reads it


def test_the_tier_options_override_the_tier_and_a_user_save_interval_wins(
    aws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    config = tmp_path / "aws.yaml"
    config.write_text(
        yaml.safe_dump({"aws": {k.split(".", 1)[1]: v for k, v in SETTINGS.items() if k.startswith("aws.")}})
    )
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "aws",
                "train",
                str(config),
                "sft.save_minutes=5",
                "--tier",
                "gold",
                "--instance-type",
                "ml.g5.12xlarge",
                "--on-demand",
                "--command",
                "train sft",
                "--wait",
            ]
        )
    assert exit_.value.code == 0
    assert "Completed / Completed" in capsys.readouterr().err  # --wait followed the job to its end
    (summary,) = boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]
    job = boto3.client("sagemaker").describe_training_job(TrainingJobName=summary["TrainingJobName"])
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.12xlarge"
    assert (
        job["EnableManagedSpotTraining"] is False and "MaxWaitTimeInSeconds" not in job["StoppingCondition"]
    )
    assert job["HyperParameters"]["sft.save_minutes"] == "5.0"
    assert job["HyperParameters"]["srl.save_minutes"] == "30.0"
    assert job["HyperParameters"]["srl_rlvr.command"] == "train sft"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--tier", "platinum"], {}, "unknown tier 'platinum': one of gold, silver, bronze"),
        (
            ["--tier", "gold"],
            {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None},
            "no AWS credentials",
        ),
        (["--tier", "gold", "aws.bucket=no-such-bucket"], {}, "S3 bucket 'no-such-bucket' does not exist"),
        (
            ["--tier", "silver", "--max-run-hours", "10", "--max-wait-hours", "4"],
            {},
            "aws.tiers.silver: max_wait_hours (4) is shorter than max_run_hours (10)",
        ),
    ],
    ids=["unknown-tier", "no-credentials", "missing-bucket", "spot-wait-shorter-than-run"],
)
def test_bad_input_is_one_line_exit_2_and_launches_nothing(
    aws: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    env: dict[str, str | None],
    message: str,
) -> None:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    config = tmp_path / "aws.yaml"
    config.write_text(
        yaml.safe_dump({"aws": {k.split(".", 1)[1]: v for k, v in SETTINGS.items() if k.startswith("aws.")}})
    )
    for key, value in env.items():
        monkeypatch.delenv(key) if value is None else monkeypatch.setenv(key, value)
    from srl_rlvr.cloud.session import reset

    reset()
    with pytest.raises(SystemExit) as exit_:
        main(["aws", "train", str(config), *args])
    err = " ".join(capsys.readouterr().err.split())  # one message, however the console wraps it
    assert exit_.value.code == 2
    assert err.startswith("error: ") and err.count("error") == 1 and message in err, err
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []
    assert boto3.client("s3").list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


def test_the_cascade_state_machine_is_created_from_code_and_an_execution_starts(
    aws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    config = _config()
    arn = deploy(config, f"s3://{BUCKET}/traces/tonight.jsonl")
    assert deploy(config) == arn  # a second deploy updates the same machine

    asl = json.loads(boto3.client("stepfunctions").describe_state_machine(stateMachineArn=arn)["definition"])
    states = asl["States"]
    assert asl["StartAt"] == "Distill-bronze"  # the update left validation out
    assert [s for s in states if s.startswith("Distill-")] == [
        "Distill-bronze",
        "Distill-silver",
        "Distill-silver-on-demand",
        "Distill-gold",
    ]
    silver = states["Distill-silver"]
    assert silver["Parameters"]["EnableManagedSpotTraining"] is True
    assert states["Distill-silver-on-demand"]["Parameters"]["EnableManagedSpotTraining"] is False
    assert silver["Catch"][0]["Next"] == "Distill-silver-on-demand"
    assert states["Distill-gold"]["Catch"][0]["Next"] == "NotifyFailure"
    assert all(states[s]["Retry"] for s in states if s.startswith("Distill-"))
    assert states["Promote"]["Catch"][0]["Next"] == "NotifyPromoteFailure"
    assert states["NotifyPromoteFailure"]["Next"] == "Rollback"
    assert "--rollback" in states["Rollback"]["Parameters"]["AppSpecification"]["ContainerArguments.$"]
    assert states["NotifyFailure"]["Resource"] == "arn:aws:states:::sns:publish"

    execution = start(config, name="night-1")
    assert boto3.client("stepfunctions").describe_execution(executionArn=execution)["status"] == "RUNNING"
    assert [run["name"] for run in status(config)] == ["night-1"]
    config_file = tmp_path / "aws.yaml"
    config_file.write_text(
        yaml.safe_dump({"aws": {k.split(".", 1)[1]: v for k, v in SETTINGS.items() if k.startswith("aws.")}})
    )
    with pytest.raises(SystemExit) as exit_:
        main(["aws", "cascade", "status", str(config_file)])
    assert exit_.value.code == 0 and "night-1: RUNNING" in capsys.readouterr().out


def test_the_first_state_validates_the_night_s_data_when_given() -> None:
    from srl_rlvr.cloud.state_machine import definition

    asl = definition(_config(), f"s3://{BUCKET}/traces/tonight.jsonl")
    validate = asl["States"]["ValidateData"]
    assert asl["StartAt"] == "ValidateData" and validate["Next"] == "Distill-bronze"
    assert validate["Parameters"]["AppSpecification"]["ContainerArguments"] == [
        "data",
        "check",
        "/opt/ml/processing/input/data/tonight.jsonl",
    ]


def test_metrics_alarms_dashboard_and_budget_are_created(aws: str) -> None:
    config = _config()
    written = deploy_monitoring(config)
    put_metrics(config, {"accuracy": 0.81}, {"tier": "gold"})

    cloudwatch = boto3.client("cloudwatch")
    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms()["MetricAlarms"]}
    assert {
        "srl-rlvr-cascade-failed",
        "srl-rlvr-gold-accuracy-drop",
        "srl-rlvr-bronze-drift",
        "srl-rlvr-silver-latency",
        "srl-rlvr-estimated-charges",
    } <= set(alarms)
    assert alarms["srl-rlvr-gold-accuracy-drop"]["AlarmActions"] == [SETTINGS["aws.notification_topic_arn"]]
    dashboard = json.loads(
        cloudwatch.get_dashboard(DashboardName="srl-rlvr-training-cost-performance")["DashboardBody"]
    )
    titles = [w["properties"]["title"] for w in dashboard["widgets"]]
    assert any(t.startswith("training") for t in titles) and any(t.startswith("cost") for t in titles)
    budget = boto3.client("budgets").describe_budget(AccountId=ACCOUNT, BudgetName="srl-rlvr-monthly")[
        "Budget"
    ]
    assert budget["TimeUnit"] == "MONTHLY" and float(budget["BudgetLimit"]["Amount"]) == 5000.0
    notes = boto3.client("budgets").describe_notifications_for_budget(
        AccountId=ACCOUNT, BudgetName="srl-rlvr-monthly"
    )
    assert {n["NotificationType"] for n in notes["Notifications"]} == {"ACTUAL", "FORECASTED"}
    assert cloudwatch.list_metrics(Namespace="srl-rlvr", MetricName="accuracy")["Metrics"]
    assert written[-1] == "budget srl-rlvr-monthly (2 alerts)"


def test_the_measured_training_cost_is_recorded_on_the_registry_version(aws: str, tmp_path: Path) -> None:
    from srl_rlvr.tracking.registry import register, resolve

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    name = launch_training(_config(), "bronze", "run")
    job = boto3.client("sagemaker").describe_training_job(TrainingJobName=name)
    # SageMaker reports the billable seconds (net of spot savings) when a job ends; moto does not
    job["BillableTimeInSeconds"] = 1800
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    version = register("aws-cost-test", model, stage="rlvr", parent="tiny").reference

    cost = record_training_cost(_config(), job, "bronze", version)

    assert cost == pytest.approx(0.5 * 3 * 113.07)  # half an hour on three nodes
    assert resolve(version).tags["training_cost_usd"] == f"{cost:.2f}"
    assert boto3.client("cloudwatch").list_metrics(Namespace="srl-rlvr", MetricName="training_cost_usd")[
        "Metrics"
    ]


def test_the_entry_point_resumes_from_the_checkpoint_dir_and_writes_the_model_where_sagemaker_collects_it(
    tmp_path: Path, arithmetic_trajectories: list[Trajectory]
) -> None:
    from srl_rlvr.train.sft import train_sft

    settings = ["sft.save_steps=1", "sft.batch_size=4", "sft.logging_steps=1"]
    checkpoints, channel, model_dir = tmp_path / "checkpoints", tmp_path / "channel", tmp_path / "model"
    channel.mkdir()
    _dataset(channel / "data.jsonl", arithmetic_trajectories)
    # a spot machine reclaimed after checkpoint-1: what SageMaker restores into /opt/ml/checkpoints
    train_sft(
        build_config(overrides=[*settings, "sft.max_steps=1"]), arithmetic_trajectories, checkpoints / "sft"
    )
    shutil.rmtree(checkpoints / "sft" / "final")
    metrics = checkpoints / "sft" / "metrics.jsonl"
    first = {**json.loads(metrics.read_text().splitlines()[0]), "before_the_reclaim": True}
    metrics.write_text(json.dumps(first) + "\n")

    hps = hyperparameters(build_config(overrides=[*settings, "sft.max_steps=2"]), "gold", "train sft")
    env = {
        **os.environ,
        "SM_HPS": json.dumps(hps),
        "SM_HOSTS": '["algo-1"]',
        "SM_CURRENT_HOST": "algo-1",
        "SM_NUM_GPUS": "0",
        "SM_CHANNEL_TRAIN": str(channel),
        "SM_MODEL_DIR": str(model_dir),
        "SM_OUTPUT_DATA_DIR": str(tmp_path / "output"),
        "SRL_RLVR_CHECKPOINT_DIR": str(checkpoints),
    }
    done = subprocess.run(
        [sys.executable, "-m", "srl_rlvr.cloud.entry_point"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming" in done.stdout
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert records[0] == first  # step 1 was not trained again: the run continued from checkpoint-1
    assert [r["step"] for r in records if "loss" in r] == [1, 2]
    assert (model_dir / "config.json").is_file() and (model_dir / "model.safetensors").is_file()
    emf = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"_aws"')]
    assert any(e.get("stage") == "sft" and e.get("tier") == "gold" and "loss" in e for e in emf)


def test_the_entry_point_outside_a_sagemaker_job_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    done = subprocess.run(
        [sys.executable, "-m", "srl_rlvr.cloud.entry_point"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "not inside a SageMaker training job" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_multi_node_job_runs_under_accelerate_with_the_tier_s_shipped_config() -> None:
    from srl_rlvr.cloud.entry_point import SageMakerEnv, launcher

    hosts = ["algo-2", "algo-1", "algo-3"]
    env = SageMakerEnv.from_environment(
        {
            "SM_HPS": json.dumps(hyperparameters(_config(), "bronze", "run")),
            "SM_HOSTS": json.dumps(hosts),
            "SM_CURRENT_HOST": "algo-2",
            "SM_NUM_GPUS": "8",
        }
    )
    args = launcher(env)
    option = dict(itertools.pairwise(args))
    assert option["--num_processes"] == "24" and option["--num_machines"] == "3"
    assert option["--machine_rank"] == "1" and option["--main_process_ip"] == "algo-1"
    assert Path(option["--config_file"]).name == "fsdp2.yaml" and Path(option["--config_file"]).is_file()
    assert args[-2:] == ["-m", "srl_rlvr"] and not env.is_main


def test_the_generated_state_machine_is_valid_states_language() -> None:
    """moto stores any definition; cfn-lint (which moto's server brings) checks it against the
    States Language schema, and every transition must name a state."""
    lint = pytest.importorskip("cfnlint.api", reason="cfn-lint is not installed")
    from srl_rlvr.cloud.state_machine import definition

    asl = definition(_config(), f"s3://{BUCKET}/traces/tonight.jsonl")
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "Cascade": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {"RoleArn": SETTINGS["aws.state_machine_role_arn"], "Definition": asl},
            }
        },
    }
    assert [str(e) for e in lint.lint_all(json.dumps(template))] == []
    targets = [asl["StartAt"]] + [
        t
        for s in asl["States"].values()
        for t in [s.get("Next"), *(c["Next"] for c in s.get("Catch", []))]
        if t
    ]
    assert set(targets) <= set(asl["States"]) and set(asl["States"]) - set(targets) == set()


def test_validate_data_launches_a_processing_job_running_data_check_on_the_uploaded_dataset(
    aws: str, tmp_path: Path, arithmetic_trajectories: list[Trajectory]
) -> None:
    from srl_rlvr.cloud.processing_job import launch_validation

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    data = _dataset(tmp_path / "data.jsonl", arithmetic_trajectories)

    name = launch_validation(_config(), str(data))

    job = boto3.client("sagemaker").describe_processing_job(ProcessingJobName=name)
    app = job["AppSpecification"]
    assert app["ContainerEntrypoint"] == ["srl-rlvr"]
    assert app["ContainerArguments"] == ["data", "check", "/opt/ml/processing/input/data/data.jsonl"]
    (source,) = job["ProcessingInputs"]
    assert storage.read_text(source["S3Input"]["S3Uri"]) == data.read_text()
    assert source["S3Input"]["LocalPath"] == "/opt/ml/processing/input/data"


def test_the_cascade_rollback_undoes_only_what_its_own_execution_promoted(tmp_path: Path) -> None:
    from srl_rlvr.cloud.promotion import promote_newest, rollback_promoted
    from srl_rlvr.tracking.registry import promote, register, resolve

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    for name in ("cascade-test-silver", "cascade-test-gold"):
        for reward in (0.5, 0.7):
            register(name, model, stage="distill", parent="tiny", metrics={"reward": reward})
        promote(name, 1, to="production")  # last night's models serve

    said = promote_newest(["cascade-test-silver", "cascade-test-gold"], "night-2", "reward")
    assert said == [
        "cascade-test-silver v2 is production; v1 is backup",
        "cascade-test-gold v2 is production; v1 is backup",
    ]
    promote("cascade-test-gold", 1, to="production", force=True)  # someone put gold v1 back meanwhile

    said = rollback_promoted(["cascade-test-silver", "cascade-test-gold"], "night-2")

    assert resolve("registry:cascade-test-silver@production").version == 1  # night-2's promotion undone
    assert resolve("registry:cascade-test-gold@production").version == 1
    assert said[1] == "cascade-test-gold: v1 was not promoted by night-2; left serving"
