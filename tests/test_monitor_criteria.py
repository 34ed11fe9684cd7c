"""The retrain criteria of `srl-rlvr monitor`: tests with a stated false-alarm rate, measured here by
simulating windows without drift or decline (fixed seeds), and a due rule that means what it says."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from srl_rlvr.feedback.decline import outcome_decline
from srl_rlvr.feedback.drift import input_drift
from srl_rlvr.feedback.monitor import Criterion, Monitoring

OPERATIONS = ("Add", "Subtract", "Multiply by")
SAME_LENGTH = {"Add": "Put", "Subtract": "Withdraw", "Multiply by": "Times again"}


def request(rng: np.random.Generator, words: tuple[str, ...] = OPERATIONS) -> str:
    """One production request, drawn independently of every other."""
    steps = int(rng.integers(1, 5))
    ops = " ".join(f"{words[rng.integers(3)]} {rng.integers(1, 20)}." for _ in range(steps))
    return f"Start with {rng.integers(1, 20)}. {ops}"


def test_new_words_at_the_same_lengths_are_drift_on_their_own() -> None:
    # The lengths are the same distribution, so KS cannot see it; the token histogram can, and is
    # no longer required to agree with KS.
    rng = np.random.default_rng(0)
    reference = [request(rng) for _ in range(300)]
    renamed = [request(rng, tuple(SAME_LENGTH.values())) for _ in range(100)]
    drift = input_drift(reference, renamed)
    assert drift.length_ks < drift.ks_critical(0.005), "KS alone would have fired"
    assert drift.token_psi > 1.0 and drift.psi_p_value is not None and drift.psi_p_value < 0.005
    assert drift.holds


def test_without_drift_the_drift_criterion_fires_at_most_at_its_alpha() -> None:
    # Before: at the default 20-request window length PSI had a median of 1.05 and exceeded 0.25 in
    # 96 % of windows. Now PSI is smoothed, judged from 100 requests, and the tests share alpha 0.01.
    # Measured here: 0 of 200 windows of 20 and 0 of 60 windows of 100 (and 1 of 360 over six other
    # references of 300, 0.3 %). The rate is over windows drawn like the reference; a reference of
    # a few dozen inputs is itself far from the population, and production then looks drifted.
    rng = np.random.default_rng(1)
    reference = [request(rng) for _ in range(300)]
    rates = {}
    for size, windows in ((20, 200), (100, 60)):
        drifts = [input_drift(reference, [request(rng) for _ in range(size)], seed=w) for w in range(windows)]
        rates[size] = sum(d.holds for d in drifts) / windows
    assert rates[20] <= 0.01 and rates[100] <= 1 / 60, rates


def test_a_decline_within_sampling_noise_is_not_a_decline() -> None:
    # 20 checked answers at a true rate of 0.8 against a reference of 0.8: "more than 0.1 below" on
    # the point estimate fired in 19.5 % of these 2,000 windows (18.8 % against an earlier window of
    # 20); the criterion's tests fire in 4.0 % and 2.2 %, within their alpha of 5 %.
    rng = np.random.default_rng(2)
    windows = rng.binomial(1, 0.8, size=(2000, 20)).astype(float)
    fixed = np.mean([outcome_decline(list(w), 0.8, 0.1, 0.05).holds for w in windows])
    earlier = rng.binomial(1, 0.8, size=(2000, 20)).astype(float)
    against_window = np.mean(
        [
            outcome_decline(list(w), e.mean(), 0.1, 0.05, list(e)).holds
            for w, e in zip(windows, earlier, strict=True)
        ]
    )
    assert fixed <= 0.05 and against_window <= 0.05, (fixed, against_window)
    # a real fall, from 0.8 to 0.4, is found at that size
    assert outcome_decline([1.0] * 8 + [0.0] * 12, 0.8, 0.1, 0.05).holds


def test_a_drop_equal_to_the_limit_is_not_more_than_the_limit() -> None:
    # 0.8 - 0.7 is 0.10000000000000009 in floats; significance is not in question at n = 1000
    assert not outcome_decline([1.0] * 700 + [0.0] * 300, 0.8, 0.1, 0.05).holds
    assert outcome_decline([1.0] * 690 + [0.0] * 310, 0.8, 0.1, 0.05).holds


def monitoring(holding: set[str]) -> Monitoring:
    names = (
        "performance decline",
        "input drift",
        "negative feedback",
        "new labelled data",
        "time since training",
    )
    return Monitoring(
        now=datetime.now(timezone.utc),
        role=None,
        production=None,
        windows=[],
        slices=[],
        drift=None,
        criteria=[Criterion(name, name in holding, "") for name in names],
        min_criteria=1,
        failures_since_training=0,
        corrections_since_training=0,
    )


def test_counts_that_only_grow_never_make_retraining_due_on_their_own() -> None:
    # A week of modest traffic brings 50 failures whatever the quality: that is data to learn from
    # and a schedule, not a sign that production got worse.
    assert not monitoring({"new labelled data"}).due
    assert monitoring({"new labelled data", "performance decline"}).due
    assert not monitoring({"performance decline", "input drift"}).due, "nothing to learn from"
    assert monitoring({"new labelled data", "time since training"}).due, "a schedule the user set"
