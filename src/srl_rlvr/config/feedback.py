"""`feedback:`: the self-learning loop: what `monitor` calls a reason to retrain, and how `retrain`
learns from production and sends the candidate out."""

from __future__ import annotations

from pydantic import Field

from srl_rlvr.config.cloud import EmfOutput
from srl_rlvr.config.section import Section


class RetrainCriteria(Section):
    """When `srl-rlvr monitor` calls retraining due. Three criteria are signals that production got
    worse (performance decline, input drift, negative feedback), each a test with a stated
    false-alarm rate; two say whether retraining can or should happen whatever the signals (enough new
    labelled data to learn from; a refresh schedule). Retraining is due when there is enough new
    labelled data and either at least `min_criteria` signals hold or the schedule says so: counts
    that only grow with time and traffic never stand in for a sign of trouble."""

    max_outcome_drop: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Performance decline: the window's verified-outcome rate is below the reference "
        "(feedback.expected_outcome_rate, else the production version's evaluated reward, else an "
        "earlier window) by more than this, and a one-sided test says the rate is below the "
        "reference at decline_alpha.",
    )
    decline_alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="False-alarm rate of the performance-decline test (exact binomial against a fixed "
        "reference, Fisher's exact test against an earlier window): at 20 checked answers a window "
        "scoring 0.7 against 0.8 is noise (p 0.2), not a decline.",
    )
    max_psi: float = Field(
        0.25, gt=0, description="Input drift: PSI of input length or token histogram above this ..."
    )
    min_psi_requests: int = Field(
        100,
        gt=0,
        description="... on a window of at least this many requests (below it PSI's noise alone, about "
        "9 / requests over 10 bins, is near the limit) ...",
    )
    drift_alpha: float = Field(
        0.01,
        gt=0,
        lt=1,
        description="... and significant under a permutation test; or the KS test of input lengths "
        "significant. Each test runs at drift_alpha / 2, so a window without drift raises a false "
        "alarm at most this often.",
    )
    max_negative_rate: float = Field(
        0.1, ge=0, le=1, description="Negative feedback: share of ratings that are -1 above this ..."
    )
    min_ratings: int = Field(10, gt=0, description="... among at least this many ratings in the window.")
    min_new_examples: int = Field(
        50,
        gt=0,
        description="Enough new labelled data to learn from: failures the task verified plus corrections "
        "since the production version was registered. Needed for retraining to be due.",
    )
    max_days_since_training: float | None = Field(
        None,
        gt=0,
        description="A refresh schedule: retraining is due this many days after the production version "
        "was registered (given enough new labelled data) whatever the signals; None: no schedule.",
    )
    min_criteria: int = Field(
        1,
        ge=1,
        le=3,
        description="Signals (decline, drift, negative feedback) that must hold for retraining.",
    )


class FeedbackConfig(Section):
    """The self-learning loop: `srl-rlvr monitor` watches the server's records, `srl-rlvr retrain`
    learns from them (feedback/)."""

    store: str = Field(
        "sqlite:///serve-records.db", description="The server's record store (its serve.records.url)."
    )
    role: str | None = Field(
        None, description="The role (or model) clients call, whose records count; None: every request."
    )
    window_hours: float = Field(24.0, gt=0, description="Monitoring window; the latest one is judged.")
    min_requests: int = Field(
        20, gt=0, description="A window (or slice) with fewer requests says nothing about a rate."
    )
    reference_data: str | None = Field(
        None,
        description="Training inputs drift is measured against: a dataset folder or JSONL (problem or "
        "text fields); None: data.train_size problems of the task's train split.",
    )
    expected_outcome_rate: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Reference verified-outcome rate; None: the production version's reward.",
    )
    criteria: RetrainCriteria = Field(default_factory=RetrainCriteria)
    report_dir: str = Field("monitor", description="Where monitor writes monitor.md, monitor.json and plots.")
    fresh_examples: int = Field(
        200, ge=0, description="Retrain: problems from the task's train split added to the production cases."
    )
    max_cases: int = Field(2000, gt=0, description="Retrain: at most this many production cases (newest).")
    max_regression: float = Field(
        0.0,
        ge=0,
        description="Retrain's gate: the candidate's held-out reward may trail production's by at most "
        "this, and the lower bound of its 95 % interval of improvement on the replay must be above 0.",
    )
    replay_share: float = Field(
        0.25,
        gt=0,
        lt=1,
        description="Retrain: share of the production cases kept out of training and replayed on both "
        "models (at least one): the cases it trained on would only test memory.",
    )
    server: str | None = Field(
        None,
        description="Base URL of the running server (http://host:8000): the candidate goes out as a "
        "canary there; None: the registry's production alias moves instead.",
    )
    server_key_env: str = Field(
        "SRL_RLVR_API_KEYS",
        description="Environment variable with an admin key of that server: the one the server reads "
        "its keys from (its first key is used).",
    )
    cloudwatch: EmfOutput | None = Field(
        None,
        description="monitor also writes the latest window's accuracy (verified-outcome rate) and drift "
        "(PSI) as an EMF line in aws.namespace, the metrics the tier's alarms watch; None: off.",
    )
    canary_percent: float = Field(
        20.0, gt=0, lt=100, description="Share of the role's traffic the canary gets."
    )
    canary_requests: int = Field(
        50,
        gt=0,
        description="Answers the canary must give (and survive the server's judgement) to be promoted.",
    )
    canary_timeout_s: float = Field(
        3600.0, gt=0, description="Withdraw the canary when it has not served that many by then."
    )
    canary_idle_s: float = Field(
        300.0,
        gt=0,
        description="Withdraw the canary sooner when the role gets no request at all for this long: "
        "without traffic it can never be judged.",
    )
