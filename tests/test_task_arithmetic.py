from srl_rlvr.tasks import load_task


def test_solver_trajectories_are_verified_correct() -> None:
    task = load_task("arithmetic")
    for problem in task.sample(50, seed=1, split="test"):
        trajectory = task.solve(problem)
        assert task.reward(trajectory.solution_text(), problem) == 1.0
        assert len(trajectory.steps) == problem.metadata["num_steps"] + 1


def test_reward_checks_only_the_final_answer() -> None:
    task = load_task("arithmetic")
    problem = task.sample(1, seed=0, split="train")[0]
    answer = problem.answer
    assert task.reward(f"garbage\nAnswer: {answer}", problem) == 1.0
    assert task.reward(f"Answer: {answer + 1}", problem) == 0.0
    assert task.reward("no answer here", problem) == 0.0


def test_splits_are_disjoint_and_deterministic() -> None:
    task = load_task("arithmetic")
    train = {p.id for p in task.sample(300, seed=0, split="train")}
    test = {p.id for p in task.sample(100, seed=0, split="test")}
    assert not train & test
    assert [p.id for p in task.sample(5, seed=0, split="test")] == [p.id for p in task.sample(5, 0, "test")]


def test_metrics_count_accuracy_and_parse_rate() -> None:
    task = load_task("arithmetic")
    problems = task.sample(4, seed=0, split="val")
    completions = [f"Answer: {problems[0].answer}", f"Answer: {problems[1].answer}", "Answer: 99999", "?"]
    assert task.metrics(completions, problems) == {"accuracy": 0.5, "parse_rate": 0.75}


def test_options_control_difficulty_and_bad_options_are_explained() -> None:
    task = load_task("arithmetic", {"min_steps": 5, "max_steps": 6})
    assert all(p.metadata["num_steps"] >= 5 for p in task.sample(20, seed=0, split="test"))
    try:
        load_task("arithmetic", {"ops": ["pow"]})
    except Exception as e:
        assert "arithmetic ops" in str(e)
    else:
        raise AssertionError("expected a TaskError")
