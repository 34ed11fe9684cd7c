"""What a SageMaker training job's container runs (the Dockerfile's ENTRYPOINT).

It reads SageMaker's container contract: the hyper-parameters and hosts from the SM_* variables
the PyTorch training images set (or /opt/ml/input/config/*.json where they are not), the dataset
from the `train` channel, writes the run directory into /opt/ml/checkpoints (which SageMaker mirrors
to the job's checkpoint_s3_uri and restores after a spot reclaim) and the trained model into
/opt/ml/model (which SageMaker uploads as model.tar.gz). Because the run directory survives a
reclaim, rerunning the same command resumes: `run` from pipeline.json, `train` with --resume.

Each metrics.jsonl record is also printed as one line in CloudWatch's embedded metric format, so the
job's log feeds CloudWatch metrics (and the job's MetricDefinitions) without a sidecar.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srl_rlvr.cloud.cloudwatch import TIER, emf_line

log = logging.getLogger(__name__)

CONFIG = Path("/opt/ml/input/config")
RESERVED = "srl_rlvr."  # sagemaker_job.RESERVED; not imported, to keep boto3 out of the container's path
STAGES = ("sft", "srl", "rlvr")
METRICS_EVERY_SECONDS = 60.0


@dataclass
class SageMakerEnv:
    hyperparameters: dict[str, str]
    hosts: list[str]
    current_host: str
    num_gpus: int
    train_channel: Path | None
    model_dir: Path
    output_dir: Path
    checkpoint_dir: Path

    @classmethod
    def from_environment(cls, env: dict[str, str] | None = None) -> SageMakerEnv:
        env = dict(os.environ if env is None else env)

        def config_file(name: str) -> Any:
            path = CONFIG / name
            return json.loads(path.read_text()) if path.is_file() else {}

        resources = config_file("resourceconfig.json")
        # the file holds the values exactly as sent (JSON text); SM_HPS has them re-parsed by the toolkit
        hps = config_file("hyperparameters.json") or json.loads(env.get("SM_HPS", "{}"))
        hosts = json.loads(env["SM_HOSTS"]) if "SM_HOSTS" in env else resources.get("hosts", ["algo-1"])
        channel = env.get("SM_CHANNEL_TRAIN") or ("/opt/ml/input/data/train" if CONFIG.is_dir() else "")
        return cls(
            hyperparameters={k: v if isinstance(v, str) else json.dumps(v) for k, v in hps.items()},
            hosts=list(hosts),
            current_host=env.get("SM_CURRENT_HOST") or resources.get("current_host", hosts[0]),
            num_gpus=int(env.get("SM_NUM_GPUS", "0")),
            train_channel=Path(channel) if channel and Path(channel).is_dir() else None,
            model_dir=Path(env.get("SM_MODEL_DIR", "/opt/ml/model")),
            output_dir=Path(env.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data")),
            checkpoint_dir=Path(env.get("SRL_RLVR_CHECKPOINT_DIR", "/opt/ml/checkpoints")),
        )

    @property
    def is_main(self) -> bool:
        return self.current_host == sorted(self.hosts)[0]


def dataset_path(channel: Path | None) -> Path | None:
    """The channel's one file or folder (what `aws train` uploaded), else the channel itself."""
    if channel is None:
        return None
    entries = list(channel.iterdir())
    return entries[0] if len(entries) == 1 else channel


def write_config(env: SageMakerEnv, work_dir: Path) -> Path:
    """The run's config, rebuilt from the hyper-parameters (dotted overrides) and validated."""
    from srl_rlvr.config import apply_override, build_config, dump_config

    raw: dict[str, Any] = {}
    for key, value in env.hyperparameters.items():
        if not key.startswith(RESERVED):
            apply_override(raw, f"{key}={value}")
    raw["output_dir"] = str(work_dir)
    data = dataset_path(env.train_channel)
    if data is not None:
        raw.setdefault("data", {})["trajectories"] = str(data)
    path = env.checkpoint_dir / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_config(build_config(raw)))
    return path


def command_line(env: SageMakerEnv) -> tuple[list[str], Path]:
    """The srl-rlvr arguments and the folder they write into, under the checkpoint directory."""
    command = env.hyperparameters.get(f"{RESERVED}command", "run").split()
    work = env.checkpoint_dir / ("run" if command[0] == "run" else command[-1])
    config = str(write_config(env, work))
    if command[0] == "train":
        data = dataset_path(env.train_channel)
        return [
            *command,
            config,
            "--out",
            str(work),
            "--resume",
            *(["--data", str(data)] if data else []),
        ], work
    if command[0] == "distill":
        return ["distill", config, "--since", "last"], work
    return ["run", config], work


def launcher(env: SageMakerEnv) -> list[str]:
    """python -m srl_rlvr on one GPU or CPU; accelerate over every GPU of every host otherwise, with
    the shipped config of the tier's strategy."""
    processes = max(env.num_gpus, 1) * len(env.hosts)
    if processes == 1:
        return [sys.executable, "-m", "srl_rlvr"]
    strategy = env.hyperparameters.get(f"{RESERVED}strategy", "ddp")
    config = Path(__file__).resolve().parent.parent / "assets" / "accelerate" / f"{strategy}.yaml"
    hosts = sorted(env.hosts)
    return [
        *(sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)),
        *("--num_processes", str(processes), "--num_machines", str(len(hosts))),
        *("--machine_rank", str(hosts.index(env.current_host)), "--main_process_ip", hosts[0]),
        *("--main_process_port", "29500", "-m", "srl_rlvr"),
    ]


class MetricsTail:
    """Print new metrics.jsonl records under a folder as EMF lines (files may shrink on resume)."""

    def __init__(self, root: Path, namespace: str, tier: str) -> None:
        self.root, self.namespace, self.tier = root, namespace, tier
        self.offsets: dict[Path, int] = {}

    def flush(self) -> None:
        for path in sorted(self.root.rglob("metrics.jsonl")):
            text = path.read_text()
            start = self.offsets.get(path, 0)
            start = 0 if start > len(text) else start
            complete = text[start:].rpartition("\n")[0]
            for line in complete.splitlines():
                record = json.loads(line)
                stage = path.parent.name
                dims = {TIER: self.tier, "stage": stage}
                # by tier alone too: the dashboard's training widgets name the tier only
                print(emf_line(self.namespace, record, dims, [[TIER], [TIER, "stage"]]), flush=True)
            self.offsets[path] = start + len(complete) + (1 if complete else 0)


def trained_model(command: list[str], work: Path) -> Path | None:
    """The model the command made: train's final/, run's last training stage that finished."""
    if command[0] == "train":
        return work / "final" if (work / "final").is_dir() else None
    state = work / "pipeline.json"
    if not state.is_file():
        return None
    records = json.loads(state.read_text())
    done = [s for s in STAGES if records.get(s, {}).get("status") == "done" and records[s].get("output")]
    return work / records[done[-1]]["output"] if done else None


def main(env: SageMakerEnv | None = None) -> int:
    if env is None and "SM_HPS" not in os.environ and not CONFIG.is_dir():
        print(
            "error: not inside a SageMaker training job (no SM_HPS, no /opt/ml/input/config); "
            "run `srl-rlvr aws train` or the command itself",
            file=sys.stderr,
        )
        return 2
    env = env or SageMakerEnv.from_environment()
    args, work = command_line(env)
    tier = env.hyperparameters.get(f"{RESERVED}tier", "")
    namespace = env.hyperparameters.get(f"{RESERVED}namespace", "srl-rlvr")
    resumed = work.exists()
    print(
        f"srl-rlvr entry point: {' '.join(args)} ({'resuming' if resumed else 'fresh'} in {work})", flush=True
    )
    child = subprocess.Popen([*launcher(env), *args])
    # SageMaker sends SIGTERM before a spot machine goes: the child checkpoints and exits 143.
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    metrics = MetricsTail(work, namespace, tier)
    while True:
        try:
            code = child.wait(timeout=METRICS_EVERY_SECONDS)
            break
        except subprocess.TimeoutExpired:
            metrics.flush()
    metrics.flush()
    if code != 0 or not env.is_main:
        return code
    model = trained_model(args, work)
    if model is not None:
        shutil.copytree(model, env.model_dir, dirs_exist_ok=True)
        print(f"srl-rlvr entry point: model {model} -> {env.model_dir}", flush=True)
    for report in work.rglob("report.*"):
        env.output_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(report, env.output_dir / report.name)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
