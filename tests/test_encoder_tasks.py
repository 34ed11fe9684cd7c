"""The data behind the encoder types: the retrieval task's verified pairs, the SRL parser's
reassembly check, and the router's labelled production records."""

from __future__ import annotations

from srl_rlvr.data.jsonl import write_jsonl
from srl_rlvr.data.records import Feedback, Record, RecordStore
from srl_rlvr.data.trajectory import Step
from srl_rlvr.encoder_data import labelled_records, trajectory_pairs
from srl_rlvr.tasks import load_task


def test_a_query_counts_only_when_the_retriever_finds_its_passage():
    task = load_task("retrieval")
    problem = next(p for p in task.sample(50, seed=0, split="train") if p.answer == "p02")
    assert task.reward("Query: when will my refund arrive", problem) == 1.0
    assert task.reward("tomato staking", problem) == 0.0
    verified = task.verified_pairs("test")
    assert verified and all(task.found(p.query, p.passage_id) for p in verified)
    train_ids = {p.id for p in task.verified_pairs("train")}
    assert not train_ids & {p.id for p in verified}  # held-out queries are never trained on


def test_srl_parser_rewards_only_steps_that_reassemble_into_the_solution():
    task = load_task("srl_parser")
    problem = task.sample(1, seed=0, split="test")[0]
    expert = task.solve(problem).expected_outcome
    assert task.reward(expert, problem) == 1.0
    sentences = problem.text.replace(". ", ".\n").splitlines()  # a sentence splitter cuts too often
    over_cut = "\n".join(f"{i}. {s}" for i, s in enumerate(sentences, 1))
    assert 0 < task.reward(over_cut, problem) < 1
    dropped = "\n".join(expert.splitlines()[:-1])
    assert task.reward(dropped, problem) == 0.0
    skipped_number = expert.replace("2. ", "3. ", 1)
    assert task.reward(skipped_number, problem) == 0.0


def test_router_learns_from_requests_that_named_a_role_not_from_its_own_choices(tmp_path):
    url = f"sqlite:///{tmp_path / 'records.db'}"
    store = RecordStore(url)

    def record(request_id: str, model: str, prompt: str, **features: str) -> Record:
        return Record(request_id, "k", model, f"{model}-lm", prompt, "ok", 1.0, features=dict(features))

    store.add(record("a", "sentiment", "love it"))
    store.add(record("b", "sentiment", "meh, rated down"))
    store.add(record("c", "sentiment", "routed here", routed_from="auto"))
    store.add(record("d", "weather", "not a role the router knows"))
    store.flush()
    store.add_feedback(Feedback("b", -1))
    assert labelled_records(url, ["sentiment", "arithmetic"]) == [{"text": "love it", "label": "sentiment"}]


def test_generated_retrieval_trajectories_become_pairs_only_where_the_retriever_agrees(tmp_path):
    task = load_task("retrieval")
    solved = [task.solve(p) for p in task.sample(3, seed=0, split="train")]
    wrong = solved[0].model_copy(update={"steps": [*solved[0].steps[:-1], Step(action="tomato staking")]})
    path = tmp_path / "trajectories.jsonl"
    write_jsonl(path, [*solved, wrong])
    pairs = trajectory_pairs(str(path), task)
    assert ("tomato staking", solved[0].expected_outcome) not in pairs
    assert pairs == [
        (t.steps[-1].action, t.expected_outcome)
        for t in solved
        if task.found(t.steps[-1].action, t.expected_outcome)
    ]
    assert pairs
