"""Retrain's gate: the replay that says the candidate fixed production's failures is on cases it never
trained on, and "better" means the interval says so."""

from __future__ import annotations

import pytest

from srl_rlvr.errors import UserError
from srl_rlvr.feedback.retrain import Comparison, gate, split_replay
from srl_rlvr.tasks import Problem


def test_replay_cases_are_kept_out_of_training_the_same_way_every_time() -> None:
    cases = [Problem(id=f"p{i}", text=f"problem {i}", answer=i) for i in range(40)]
    learn, replay = split_replay(cases, 0.25, seed=0)
    assert len(replay) == 10 and len(learn) == 30
    assert not {p.id for p in learn} & {p.id for p in replay}
    assert split_replay(cases, 0.25, seed=0) == (learn, replay)
    assert [len(part) for part in split_replay(cases[:2], 0.25, seed=0)] == [1, 1]
    with pytest.raises(UserError, match="at least 2"):
        split_replay(cases[:1], 0.25, seed=0)


def test_the_replay_must_show_the_candidate_better_by_its_interval_not_its_point_estimate() -> None:
    heldout = Comparison(n=100, production=0.7, candidate=0.7, delta=0.0, ci_low=-0.05, ci_high=0.05)
    lucky = Comparison(n=10, production=0.2, candidate=0.3, delta=0.1, ci_low=-0.2, ci_high=0.4)
    shown = Comparison(n=10, production=0.0, candidate=0.6, delta=0.6, ci_low=0.3, ci_high=0.9)
    passed, why = gate(heldout, lucky, max_regression=0.0)
    assert not passed and "not shown better" in why
    assert gate(heldout, shown, max_regression=0.0)[0]
    worse = Comparison(n=100, production=0.7, candidate=0.6, delta=-0.1, ci_low=-0.2, ci_high=0.0)
    assert "worse" in gate(worse, shown, max_regression=0.05)[1]
