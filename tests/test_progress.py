"""Long work shows progress where no bar can draw: a line every twentieth of the work, with the total,
the rate and the time left, for `generate` and `eval` as for training."""

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from srl_rlvr.cli import main
from srl_rlvr.progress import PROGRESS_LOG, ProgressLines

LINE = r"{what}: (\d+)/{total} {unit} \(\d+%\), [\d.e+]+ {unit}/s, (\d+m\d\ds|\?) left"


def progress_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == PROGRESS_LOG]


def test_lines_come_at_each_twentieth_crossed_and_once_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    lines = ProgressLines("evaluate base", 100, "problems", clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger=PROGRESS_LOG):
        for done in (3, 8, 16, 100, 100):  # batches of uneven size; a repeated last report
            now[0] += 4.0
            lines.update(done)
    # 3 crosses no twentieth (5); 8 crosses 5; 16 crosses 10 and 15 (one line); 100 ends it, once
    assert progress_lines(caplog) == [
        "evaluate base: 8/100 problems (8%), 1 problems/s, 1m32s left",
        "evaluate base: 16/100 problems (16%), 1.33 problems/s, 1m03s left",
        "evaluate base: 100/100 problems (100%), 6.25 problems/s, 0m00s left",
    ]


def test_a_resumed_job_rates_only_its_own_items(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    lines = ProgressLines("generate", 40, "trajectories", done=30, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger=PROGRESS_LOG):
        now[0] = 5.0
        lines.update(32, "0 rejected")
    assert progress_lines(caplog) == [
        "generate: 32/40 trajectories (80%), 0.4 trajectories/s, 0m20s left, 0 rejected"
    ]


def test_generate_into_a_log_prints_its_progress_lines_with_the_total(tmp_path: Path) -> None:
    """A real process whose stderr is a pipe, as under cron or nohup: no bar, plain lines."""
    out = tmp_path / "data"
    done = subprocess.run(
        [sys.executable, "-m", "srl_rlvr", "generate", "--n", "40", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    pattern = LINE.format(what="generate", total=40, unit="trajectories")
    lines = [m for line in done.stderr.splitlines() if (m := re.search(pattern, line))]
    assert [int(m.group(1)) for m in lines] == list(range(2, 41, 2)), done.stderr
    assert "━" not in done.stderr  # no bar drawn into the log
    assert "wrote 40 trajectories" in done.stdout


def test_eval_logs_progress_per_model_with_the_problem_total(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    args = ["eval", "--model", "tiny", "--baseline", "tiny", "--n", "4", "--out", str(tmp_path)]
    overrides = ["eval.max_new_tokens=2", "eval.batch_size=2", "registry.tracking=false"]
    with caplog.at_level(logging.INFO, logger=PROGRESS_LOG), pytest.raises(SystemExit) as exit_:
        main([*args, *overrides])
    assert exit_.value.code == 0
    shown = progress_lines(caplog)
    for label in ("tiny", "tiny-2"):  # the baseline, then the model, each over the 4 problems
        pattern = LINE.format(what=f"evaluate {label}", total=4, unit="problems")
        done = [int(m.group(1)) for line in shown if (m := re.fullmatch(pattern, line))]
        assert done == [2, 4], shown


def test_a_local_distillation_teacher_logs_its_answers(caplog: pytest.LogCaptureFixture) -> None:
    from srl_rlvr.config import build_config
    from srl_rlvr.distill.traces import local_answers
    from srl_rlvr.modeling import EMBEDDED_DIR
    from srl_rlvr.tasks import load_task

    task = load_task("arithmetic")
    config = build_config(overrides=["eval.batch_size=3", "distill.teacher_max_tokens=2"])
    with caplog.at_level(logging.INFO, logger=PROGRESS_LOG):
        answers = local_answers(str(EMBEDDED_DIR), task, task.sample(6, 0, "train"), config)
    assert len(answers) == 6
    pattern = LINE.format(what="distill: teacher", total=6, unit="answers")
    assert [int(m.group(1)) for line in progress_lines(caplog) if (m := re.fullmatch(pattern, line))] == [
        3,
        6,
    ]
