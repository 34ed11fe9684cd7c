"""Several processes of one run, as users start them: `accelerate launch` with the shipped DDP config
(two "nodes" of one process each, on 127.0.0.1 over gloo), and `--gpus 2`, which starts accelerate
itself (on a machine without GPUs, two CPU processes).

Rollouts here are greedy (`top_k: 1`) and advantages the raw rewards, so a run is deterministic and
two processes at the same global batch must log the losses one process does.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from srl_rlvr.data.versioning import save_dataset
from srl_rlvr.tasks import load_task

CONFIGS = Path(__file__).parent.parent / "src" / "srl_rlvr" / "assets" / "accelerate"
# Two processes must agree with one to float32 reduction order: DDP averages the two halves'
# gradients where one process sums the batch at once.
TOLERANCE = 1e-4
DETERMINISTIC = {
    "top_k": 1,
    "reward_norm_method": "none",
    "dynamic_sampling": False,
    "kl_penalty_weight": 0.0,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment() -> dict[str, str]:
    # The run config names its own MLflow store; a MLFLOW_TRACKING_URI would take precedence.
    dropped = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MLFLOW_TRACKING_URI")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    return {**env, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "srl_rlvr", *args]


def on_two_nodes(*args: str, cwd: Path, strategy: str = "ddp") -> None:
    """`accelerate launch --num_machines 2` twice, as on two machines: ranks 0 and 1 of one run."""
    port = str(free_port())
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(CONFIGS / f"{strategy}.yaml"),
    ]
    launch += ["--num_machines", "2", "--num_processes", "2", "--main_process_ip", "127.0.0.1"]
    launch += ["--main_process_port", port]
    nodes = [
        subprocess.Popen(
            [*launch, "--machine_rank", str(r), "-m", "srl_rlvr", *args],
            cwd=cwd,
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in (0, 1)
    ]
    outputs = [node.communicate(timeout=900)[0] for node in nodes]
    for node, output in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, output[-3000:]


def one_process(*args: str, cwd: Path) -> str:
    done = subprocess.run(cli(*args), cwd=cwd, env=environment(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout + done.stderr


def metrics(stage_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (stage_dir / "metrics.jsonl").read_text().splitlines()]


def losses(stage_dir: Path) -> dict[int, tuple[float, float]]:
    return {r["step"]: (r["loss"], r["grad_norm"]) for r in metrics(stage_dir) if "loss" in r}


def assert_same_losses(a: dict[int, tuple[float, float]], b: dict[int, tuple[float, float]]) -> None:
    assert a.keys() == b.keys() and a
    for step in a:
        for x, y in zip(a[step], b[step], strict=True):
            assert abs(x - y) <= TOLERANCE * max(1.0, abs(x)), (step, a[step], b[step])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config for the packaged `embedded` model (it solves some problems, so rewards differ) and a
    dataset of expert trajectories for SRL."""
    root = tmp_path_factory.mktemp("multiprocess")
    task = load_task("arithmetic")
    save_dataset([task.solve(p) for p in task.sample(32, 0, "train")], root / "data", source="solver")
    config = {
        "model": {"name_or_path": "embedded"},
        "data": {"train_size": 32, "test_size": 16},
        "registry": {"tracking_uri": f"sqlite:///{root}/mlflow.db"},
        "srl": {"max_steps": 3, "batch_size": 8, "num_generations": 2, "max_completion_length": 24}
        | {"require_think": False, "learning_rate": 1e-4, "eval_steps": 0, "save_steps": 2, **DETERMINISTIC},
        "rlvr": {"max_steps": 3, "batch_size": 16, "num_generations": 2, "max_completion_length": 64}
        | {"learning_rate": 1e-4, "eval_steps": 0, "save_steps": 2, **DETERMINISTIC},
        "eval": {"max_new_tokens": 64, "bootstrap_samples": 100},
        "pipeline": {"stages": ["generate", "srl", "rlvr", "evaluate", "register"], "gate": False},
    }
    (root / "cfg.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.mark.parametrize("stage", ["srl", "rlvr"])
def test_two_nodes_of_one_process_each_log_the_losses_of_one_process(workdir: Path, stage: str) -> None:
    data = ["--data", "data"] if stage == "srl" else []
    one_process("train", stage, "cfg.yaml", *data, "--out", f"one-{stage}", cwd=workdir)
    on_two_nodes("train", stage, "cfg.yaml", *data, "--out", f"two-{stage}", cwd=workdir)
    single, double = losses(workdir / f"one-{stage}"), losses(workdir / f"two-{stage}")
    assert_same_losses(single, double)
    assert any(loss != 0 for loss, _ in single.values())  # the comparison is not of zeros
    assert sorted(p.name for p in (workdir / f"two-{stage}" / "checkpoint-2").glob("rng_state*")) == [
        "rng_state_0.pth",
        "rng_state_1.pth",
    ]  # each rank saved its own state
    assert (workdir / f"two-{stage}" / "final" / "config.json").is_file()


def test_dpo_on_two_processes_trains_on_the_main_processs_pairs_as_one_process_does(workdir: Path) -> None:
    dpo = ("rlvr.algorithm=dpo", "rlvr.num_generations=4", "rlvr.batch_size=8", "rlvr.max_steps=2")
    one_process("train", "rlvr", "cfg.yaml", *dpo, "--out", "one-dpo", cwd=workdir)
    one_process("train", "rlvr", "cfg.yaml", *dpo, "--out", "two-dpo", "--gpus", "2", cwd=workdir)
    pairs = (workdir / "one-dpo" / "pairs.jsonl").read_text()
    assert pairs and (workdir / "two-dpo" / "pairs.jsonl").read_text() == pairs
    assert_same_losses(losses(workdir / "one-dpo"), losses(workdir / "two-dpo"))


def test_a_rollout_copy_of_fsdp2_shards_gathers_the_whole_current_model(tmp_path: Path) -> None:
    """accelerate turns FSDP off on a CPU, so this shards a model with FSDP2 itself (as accelerate
    does on GPUs) in two processes over gloo; the GPU run in BENCHMARKS.md covers the trainer."""
    port = str(free_port())
    script = Path(__file__).parent / "fsdp2_process.py"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    done = subprocess.run(
        [*command, str(script), str(tmp_path / "result.json")],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["sharded"] and result["local_rows"] < result["full_rows"]
    assert result["copy_equals_gathered"] == [True, True]  # when made, and after an optimiser step
    assert result["tokens_equal_unsharded_model"] == [True, True]
    assert result["tokens_changed_by_the_step"]


def test_a_run_resumes_at_another_process_count_with_the_same_steps(workdir: Path) -> None:
    """Stopped at step 2 on two processes, resumed on one or on two: the same steps 3 and 4."""
    on_two_nodes("train", "rlvr", "cfg.yaml", "rlvr.max_steps=4", "--out", "half", cwd=workdir)
    for name in ("resumed-on-1", "resumed-on-2"):
        shutil.copytree(workdir / "half", workdir / name)
        shutil.rmtree(workdir / name / "checkpoint-4")
        shutil.rmtree(workdir / name / "final")
    one_process(
        "train", "rlvr", "cfg.yaml", "rlvr.max_steps=4", "--out", "resumed-on-1", "--resume", cwd=workdir
    )
    one_process(
        *(
            "train",
            "rlvr",
            "cfg.yaml",
            "rlvr.max_steps=4",
            "--out",
            "resumed-on-2",
            "--resume",
            "--gpus",
            "2",
        ),
        cwd=workdir,
    )
    on_one, on_two, straight = (losses(workdir / n) for n in ("resumed-on-1", "resumed-on-2", "half"))
    assert sorted(on_one) == [1, 2, 3, 4]  # steps 1-2 kept from the first run, 3-4 after the resume
    assert_same_losses(on_one, on_two)
    assert_same_losses(on_one, straight)  # and what the uninterrupted two-process run logged


def test_a_pipeline_on_two_processes_writes_each_file_and_registers_each_model_once(workdir: Path) -> None:
    from mlflow import MlflowClient

    store = f"sqlite:///{workdir}/pipeline.db"  # its own: the other tests' train commands track too
    output = one_process(
        "run", "cfg.yaml", "output_dir=run", f"registry.tracking_uri={store}", "--gpus", "2", cwd=workdir
    )
    run_dir = workdir / "run"
    records = json.loads((run_dir / "pipeline.json").read_text())["stages"]
    assert [records[s]["status"] for s in ("generate", "srl", "rlvr", "evaluate", "register")] == ["done"] * 5
    assert output.count("held-out test split") == 1  # the table, printed by the main process only
    assert (
        len((run_dir / "srl" / "metrics.jsonl").read_text().splitlines()) == len(losses(run_dir / "srl")) + 1
    )
    registered = json.loads((run_dir / "register" / "registered.json").read_text())["versions"]
    client = MlflowClient(store)
    versions = client.search_model_versions("name='arithmetic'")
    assert sorted(int(v.version) for v in versions) == [1, 2] and len(registered) == 2
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted(r.data.tags.get("mlflow.runName", "") for r in runs).count("srl") == 1


def test_gpus_with_a_strategy_this_machine_cannot_run_is_one_clear_line() -> None:
    from typer.testing import CliRunner

    from srl_rlvr.cli import app

    unknown = CliRunner().invoke(app, ["train", "rlvr", "--gpus", "2", "--strategy", "zero9"])
    assert unknown.exit_code == 2 and "one of ddp, fsdp2, zero2, zero3" in unknown.output
    if not torch.cuda.is_available():
        sharded = CliRunner().invoke(app, ["run", "--gpus", "2", "--strategy", "fsdp2"])
        assert sharded.exit_code == 2 and "needs CUDA GPUs" in sharded.output
