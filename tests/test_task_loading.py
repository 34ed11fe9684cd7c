import sys
from pathlib import Path

import pytest

from srl_rlvr.cli import main
from srl_rlvr.errors import TaskError
from srl_rlvr.tasks import BUILTIN_TASKS, load_task

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture
def examples_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))


@pytest.mark.parametrize("name", sorted(BUILTIN_TASKS))
def test_every_builtin_task_loads_and_samples_each_split(name: str) -> None:
    task = load_task(name)
    for split in ("train", "val", "test"):
        problems = task.sample(3, seed=0, split=split)
        assert problems and all(isinstance(task.prompt(p), str) for p in problems)


def test_a_user_task_is_named_as_module_colon_class(examples_on_path: None) -> None:
    task = load_task("custom_task:ReverseTask")
    problem = task.sample(1, seed=0, split="train")[0]
    assert task.reward(task.solve(problem).solution_text(), problem) == 1.0
    sys.modules.pop("custom_task", None)


def test_cli_generates_a_dataset_for_a_user_task(examples_on_path: None, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "task.name=custom_task:ReverseTask", "--n", "5", "--out", str(tmp_path / "d")])
    assert exit_.value.code == 0
    assert len((tmp_path / "d" / "trajectories.jsonl").read_text().splitlines()) == 5


def test_unknown_task_names_are_explained() -> None:
    with pytest.raises(TaskError, match="did you mean 'sentiment'"):
        load_task("sentimnet")
    with pytest.raises(TaskError, match="cannot import module 'no_such_module'"):
        load_task("no_such_module:Task")
    with pytest.raises(TaskError, match="has no 'Nope'"):
        load_task("srl_rlvr.tasks.arithmetic:Nope")


def test_tasks_list_says_what_each_built_in_task_asks(capsys: pytest.CaptureFixture[str]) -> None:
    from srl_rlvr.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["tasks", "list"])
    assert exited.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Synthetic multi-step arithmetic" in out and "Structured extraction" in out


@pytest.mark.parametrize("name", ["arithmetic", "sentiment", "moderation", "codegen", "extraction"])
def test_every_built_in_tasks_splits_are_disjoint_and_its_sampling_repeats_per_seed(name: str) -> None:
    from srl_rlvr.tasks import load_task
    from srl_rlvr.tasks.base import split_of

    task = load_task(name)
    ids = {split: {p.id for p in task.sample(500, seed=0, split=split)} for split in ("train", "val", "test")}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    if hasattr(task, "rows"):  # a data-file task: the splits share out every row by its id's hash
        assert sum(len(s) for s in ids.values()) == len(task.rows)
        assert all(split_of(i) == split for split, s in ids.items() for i in s)
    first = [p.id for p in task.sample(20, seed=3, split="train")]
    assert first == [p.id for p in load_task(name).sample(20, seed=3, split="train")]
    assert first != [p.id for p in task.sample(20, seed=4, split="train")]
    assert len(first) == 20
