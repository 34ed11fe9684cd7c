import json
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A Slack-style webhook receiver on 127.0.0.1: its URL and the JSON bodies it got."""
    received: list[dict[str, str]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:  # no request lines in the test output
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/services/T0/B0/x", received
    server.shutdown()
    server.server_close()
