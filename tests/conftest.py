import logging
import os
import tempfile
import warnings
from collections.abc import Iterator

# Triton kernels run on CPU tensors through Triton's interpreter (test_decode_attention.py); the
# setting must come before the first `import triton`, which imports its kernel library.
os.environ["TRITON_INTERPRET"] = "1"

import pytest
import torch

from srl_rlvr.config import Config, build_config
from srl_rlvr.data.trajectory import Trajectory
from srl_rlvr.tasks import load_task

warnings.filterwarnings("ignore", category=FutureWarning)
# Every run a test makes is tracked in one throwaway MLflow store, never in the working directory's.
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tempfile.mkdtemp(prefix='srl-rlvr-mlflow-')}/mlflow.db"
logging.getLogger("transformers").setLevel(logging.ERROR)
if os.environ.get("PYTEST_XDIST_WORKER"):
    # one thread a worker (and in the processes a test starts): two workers share two cores
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server (AWS emulated over real HTTP) for the session; `aws_server.use_moto` points
    the clients at it and clears its state for each test."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    from aws_server import start_moto

    yield from start_moto()


@pytest.fixture
def arithmetic_trajectories() -> list[Trajectory]:
    task = load_task("arithmetic")
    return [task.solve(p) for p in task.sample(8, seed=0, split="train")]


@pytest.fixture
def tiny_srl_config() -> Config:
    """SRL on the random tiny model: short rollouts and a bare-action format so rewards vary."""
    return build_config(
        overrides=[
            "srl.max_steps=3",
            "srl.batch_size=8",
            "srl.num_generations=4",
            "srl.max_completion_length=12",
            "srl.require_think=false",
            "srl.save_steps=2",
            "srl.learning_rate=1e-3",
        ]
    )
