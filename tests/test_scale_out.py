"""The `scale_out` options (reward overlap, one reward pool a host, DDP's static graph) change where
and when the work runs, never what it computes: on two processes over gloo, each option on gives
the rewards, in order, and the losses of the run with every option off."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from srl_rlvr.train import reward_pool
from srl_rlvr.train.reward_overlap import RewardOverlap


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Each rank's record of every variant (`scale_out_process.py`), from one torchrun of 2 processes."""
    out = tmp_path_factory.mktemp("scale-out")
    dropped = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MLFLOW_TRACKING_URI")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env |= {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += [
        "--master_port",
        str(free_port()),
        str(Path(__file__).parent / "scale_out_process.py"),
        str(out),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.parametrize("option", ["overlap_rewards", "host_reward_pool", "ddp_static_graph", "all"])
def test_each_scale_out_option_gives_the_rewards_and_losses_of_the_run_without_it(
    runs: list[dict], option: str
) -> None:
    for rank in runs:
        off, on = rank["off"], rank[option]
        assert len(off["rewards"]) == 3 and len(off["rewards"][0]) == 16  # 3 steps of 16 rows, gathered
        assert len({tuple(row) for step in off["rewards"] for row in step}) > 1  # rewards differ by row
        assert on["rewards"] == off["rewards"]  # the same numbers in the same order, exactly
        assert on["logs"] == off["logs"] and len(off["logs"]) == 3


def test_each_option_took_its_route(runs: list[dict]) -> None:
    """The comparison above is not of two runs down the same path."""
    main, other = runs
    for rank in runs:
        assert rank["off"]["reward_threads"] == ["MainThread"]
        assert rank["overlap_rewards"]["reward_threads"] == ["rewards_0"]  # the background thread
        assert rank["off"]["ddp_static_graph"] is False
        assert rank["ddp_static_graph"]["ddp_static_graph"] is True
        assert rank["off"]["host_pool_batches"] == 0
        assert rank["host_reward_pool"]["host_pool_batches"] == 3  # one batch a step
    assert other["host_reward_pool"]["host_pool_served"] == 0
    assert main["host_reward_pool"]["host_pool_served"] == 3  # rank 1's batches, scored by rank 0's pool
    assert main["all"]["reward_threads"] == ["rewards_0"] and main["all"]["host_pool_served"] == 3


def test_a_started_reward_batch_is_only_taken_for_the_same_batch() -> None:
    overlap = RewardOverlap()
    prompts, completions = ["p1", "p2"], ["c1", "c2"]

    def lengths(completions: list[str], log_metric, **_: object) -> list[float]:  # type: ignore[no-untyped-def]
        log_metric("calls", 1.0)
        return [float(len(c)) for c in completions]

    overlap.start([lengths], prompts, completions, [[1], [2]], {})
    calls = overlap.take(prompts, completions)
    assert calls is not None and calls.outputs == [[2.0, 2.0]]
    assert calls.logged == [("log_metric", ("calls", 1.0))]  # replayed by the trainer, in its thread
    overlap.start([lengths], prompts, completions, [[1], [2]], {})
    assert overlap.take(prompts, list(completions)) is None  # an equal list is not the same batch
    assert overlap.take(prompts, completions) is None  # and the job is gone: computed as usual


def test_the_host_pool_scores_another_processs_batch_and_returns_its_errors() -> None:
    """The served side in this process, a client in another: the results in order, and an error
    raised in a worker comes back to the process that sent the batch."""
    address, key, workers = reward_pool.serve_host_pool()
    client = textwrap.dedent(
        f"""
        import json
        from srl_rlvr.train import reward_pool
        reward_pool.join_host_pool({address!r}, {key!r}, {workers})
        lengths = reward_pool.pool_map(len, ["a", "bb", "ccc", "", "eeeee"], chunksize=2)
        try:
            reward_pool.pool_map(int, ["1", "not a number"])
            error = None
        except ValueError as raised:
            error = str(raised)
        print(json.dumps({{"lengths": lengths, "host": reward_pool.batches["host"], "error": error}}))
        """
    )
    try:
        served = reward_pool.host_pool_served()
        done = subprocess.run(
            [sys.executable, "-"], input=client, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-2000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result == {
            "lengths": [1, 2, 3, 0, 5],
            "host": 2,
            "error": "invalid literal for int() with base 10: 'not a number'",
        }
        assert reward_pool.host_pool_served() == served + 1  # the failed batch is the client's error
    finally:
        reward_pool.leave_host_pool()
