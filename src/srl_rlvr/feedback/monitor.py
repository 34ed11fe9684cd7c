"""`srl-rlvr monitor`: is production getting worse, and is retraining due?

Reads the server's records (data/records.py) in time windows ending now, per model that answered:
verified-outcome rate (the task's own check of each answer), negative-feedback rate, latency, and
the share of requests that got no usable answer. The latest window is judged (config
`feedback.criteria`) on three signals that production got worse:

- performance decline: its outcome rate is below the reference (the production version's evaluated
  reward unless `feedback.expected_outcome_rate` says otherwise) by more than `max_outcome_drop`,
  and significantly so at `decline_alpha` (feedback/decline.py);
- input drift: its inputs against the training inputs, a KS test of input lengths or a PSI above
  `max_psi` that a permutation test finds significant, together at `drift_alpha` (feedback/drift.py);
- negative feedback: the share of -1 ratings above `max_negative_rate`;

and on two conditions: enough new labelled data (failures the task verified plus corrections since
the production version was registered) and, when `max_days_since_training` is set, a refresh
schedule. Retraining is due when there is enough new labelled data and at least `min_criteria`
signals hold or the schedule is due: data and time only grow, so they never count as signals.

The latest window's slices (the task's problem features, such as the number of steps, and the input
length) show where it fails: a slice is weak when its whole bootstrap interval lies below the window's
overall rate, as in evaluation.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from srl_rlvr.config import Config
from srl_rlvr.data.jsonl import iter_json_rows
from srl_rlvr.data.records import Feedback, Record, open_existing
from srl_rlvr.errors import DataError
from srl_rlvr.evaluate.stats import bootstrap_ci
from srl_rlvr.feedback.decline import outcome_decline
from srl_rlvr.feedback.drift import Drift, input_drift
from srl_rlvr.tasks import load_task
from srl_rlvr.tracking.registry import RegistryError, Version

log = logging.getLogger(__name__)

MAX_WINDOWS = 30
SIGNALS = ("performance decline", "input drift", "negative feedback")
DATA, SCHEDULE = "new labelled data", "time since training"
MAX_SLICE_VALUES = 12
LENGTH_KEY = "input_length"


@dataclass
class Window:
    model: str  # the model that answered; "all" for every request of the role
    start: datetime
    requests: int
    no_answer_rate: float  # no model answered, or the output guardrails refused the answer
    checked: int  # answers the task checked
    outcome_rate: float | None
    ratings: int
    negative_rate: float | None
    p50_ms: float | None
    p95_ms: float | None


@dataclass
class SliceRate:
    model: str
    key: str
    value: Any
    n: int
    rate: float
    ci_low: float
    ci_high: float
    weak: bool


@dataclass
class Criterion:
    name: str
    holds: bool
    detail: str
    value: float | None = None


@dataclass
class Monitoring:
    now: datetime
    role: str | None
    production: str | None
    windows: list[Window]
    slices: list[SliceRate]
    drift: Drift | None
    criteria: list[Criterion]
    min_criteria: int
    failures_since_training: int
    corrections_since_training: int
    current_lengths: list[int] = field(default_factory=list)
    reference_lengths: list[int] = field(default_factory=list)

    def _holds(self, name: str) -> bool:
        return any(c.holds for c in self.criteria if c.name == name)

    @property
    def signals(self) -> int:
        return sum(c.holds for c in self.criteria if c.name in SIGNALS)

    @property
    def due(self) -> bool:
        """Enough new labelled data, and enough signals or the refresh schedule (module docstring)."""
        return self._holds(DATA) and (self.signals >= self.min_criteria or self._holds(SCHEDULE))

    @property
    def verdict(self) -> str:
        return (
            f"{self.signals} of 3 signals hold (needs {self.min_criteria}), "
            f"new labelled data {'enough' if self._holds(DATA) else 'not enough'}, "
            f"refresh schedule {'due' if self._holds(SCHEDULE) else 'not due'}: retraining is "
            f"{'due' if self.due else 'not due'}"
        )

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        del data["current_lengths"], data["reference_lengths"]
        drift = None if self.drift is None else asdict(self.drift)
        return {**data, "due": self.due, "verdict": self.verdict, "drift": drift}


def production_version(config: Config) -> Version | None:
    """The registry's production version of this run's model, or None when there is none."""
    from srl_rlvr.tracking.registry import model_name_for, resolve
    from srl_rlvr.tracking.runs import tracking_uri

    name = config.registry.model_name or model_name_for(config.task.name)
    try:
        return resolve(f"registry:{name}@production", uri=tracking_uri(config))
    except RegistryError:
        return None


def reference_texts(config: Config) -> list[str]:
    """The inputs production is compared with: the training data's problems."""
    path = config.feedback.reference_data
    if path is None:
        task = load_task(config.task.name, config.task.options)
        return [p.text for p in task.sample(config.data.train_size, config.data.seed, "train")]
    file = Path(path) / "trajectories.jsonl" if Path(path).is_dir() else Path(path)
    texts = []
    for lineno, row in iter_json_rows(file):
        if (
            isinstance(row, Exception)
            or not isinstance(row, dict)
            or not (row.get("problem") or row.get("text"))
        ):
            raise DataError(f"{file}:{lineno}: expected a JSON object with a 'problem' or 'text' field")
        texts.append(str(row.get("problem") or row.get("text")))
    if not texts:
        raise DataError(f"{file}: no reference inputs")
    return texts


def _checked(records: list[Record]) -> list[Record]:
    """Answers the task checked: fully where it can ('answer') for any of them, else by format."""
    answered = [r for r in records if r.status != "error" and r.outcome is not None]
    full = [r for r in answered if r.checked == "answer"]
    return full or answered


def _window(model: str, start: datetime, records: list[Record], ratings: list[Feedback]) -> Window:
    checked = _checked(records)
    answered = [r.latency_ms for r in records if r.status != "error"]
    negative = [f.rating == -1 for f in ratings]
    return Window(
        model=model,
        start=start,
        requests=len(records),
        no_answer_rate=float(np.mean([r.status != "ok" for r in records])) if records else 0.0,
        checked=len(checked),
        outcome_rate=float(np.mean([r.outcome for r in checked])) if checked else None,
        ratings=len(ratings),
        negative_rate=float(np.mean(negative)) if negative else None,
        p50_ms=float(np.percentile(answered, 50)) if answered else None,
        p95_ms=float(np.percentile(answered, 95)) if answered else None,
    )


def _length_bucket(length: int, edges: list[float]) -> str:
    names = ("short", "medium", "long")
    return names[int(np.searchsorted(edges, length, side="right"))]


def _slices(records: list[Record], reference: list[str], min_n: int) -> list[SliceRate]:
    edges = list(np.quantile([len(t) for t in reference], [1 / 3, 2 / 3]))
    by_model: dict[str, list[Record]] = defaultdict(list)
    for r in _checked(records):
        by_model[r.served_by].append(r)
    out = []
    for model, members in sorted(by_model.items()):
        overall = float(np.mean([r.outcome for r in members]))
        groups: dict[tuple[str, Any], list[float]] = defaultdict(list)
        keys = {k for r in members for k in r.features}
        for key in sorted(keys):
            values = {r.features[key] for r in members if key in r.features}
            if not 2 <= len(values) <= MAX_SLICE_VALUES:
                continue  # one value is no slice; many (ids, start values) are no category
            for r in members:
                if key in r.features:
                    groups[(key, r.features[key])].append(float(r.outcome))
        for r in members:
            groups[(LENGTH_KEY, _length_bucket(len(r.prompt), edges))].append(float(r.outcome))
        for (key, value), outcomes in sorted(groups.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            low, high = bootstrap_ci(outcomes)
            weak = len(outcomes) >= min_n and high < overall
            out.append(SliceRate(model, key, value, len(outcomes), float(np.mean(outcomes)), low, high, weak))
    return out


def monitor(config: Config, now: datetime | None = None) -> Monitoring:
    """The windows, slices, drift and retrain criteria of the records in `config.feedback.store`."""
    fb, c = config.feedback, config.feedback.criteria
    now = now or datetime.now(timezone.utc)
    store = open_existing(fb.store)
    records = store.records(model=fb.role)
    ids = {r.request_id for r in records}
    ratings = [f for f in store.feedback() if f.request_id in ids]
    production = production_version(config)
    width = timedelta(hours=fb.window_hours)

    windows: list[Window] = []
    current: list[Record] = []
    for k in range(MAX_WINDOWS):
        start, end = now - (k + 1) * width, now - k * width
        members = [r for r in records if start <= r.time < end]
        if k == 0:
            current = members
        if not members and k > 0:
            if not any(r.time < start for r in records):
                break
            continue
        in_window = [f for f in ratings if start <= f.time < end]
        windows.append(_window("all", start, members, in_window))
        by_model: dict[str, list[Record]] = defaultdict(list)
        for r in members:
            by_model[r.served_by].append(r)
        answered_by = {r.request_id: r.served_by for r in members}
        for model, rows in sorted(by_model.items()):
            if model != "-":
                mine = [f for f in in_window if answered_by.get(f.request_id) == model]
                windows.append(_window(model, start, rows, mine))

    reference = reference_texts(config)
    latest = windows[0] if windows else _window("all", now - width, [], [])
    criteria = [_decline(config, latest, windows, current, records, production)]
    drift = (
        input_drift(
            reference,
            [r.prompt for r in current],
            max_psi=c.max_psi,
            alpha=c.drift_alpha,
            min_psi_requests=c.min_psi_requests,
        )
        if len(current) >= fb.min_requests
        else None
    )
    if drift is None:
        criteria.append(
            Criterion("input drift", False, f"{len(current)} requests in the window; needs {fb.min_requests}")
        )
    else:
        criteria.append(Criterion("input drift", drift.holds, drift.detail, drift.psi))
    if latest.ratings >= c.min_ratings and latest.negative_rate is not None:
        criteria.append(
            Criterion(
                "negative feedback",
                latest.negative_rate > c.max_negative_rate,
                f"{latest.negative_rate:.1%} of {latest.ratings} ratings negative (limit {c.max_negative_rate:.0%})",
                latest.negative_rate,
            )
        )
    else:
        criteria.append(
            Criterion(
                "negative feedback", False, f"{latest.ratings} ratings in the window; needs {c.min_ratings}"
            )
        )
    since = production.created if production is not None and production.created else None
    new = [r for r in records if since is None or r.time >= since]
    failures = sum(1 for r in new if r.checked == "answer" and r.status != "error" and (r.outcome or 0) < 1)
    corrections = sum(1 for f in ratings if f.correction and (since is None or f.time >= since))
    labelled = failures + corrections
    criteria.append(
        Criterion(
            DATA,
            labelled >= c.min_new_examples,
            f"{failures} verified failures + {corrections} corrections since "
            f"{'the production version' if since else 'the first record'} (needs {c.min_new_examples})",
            float(labelled),
        )
    )
    if since is None:
        criteria.append(Criterion(SCHEDULE, False, "no production version in the registry"))
    else:
        days = (now - since).total_seconds() / 86400
        limit = c.max_days_since_training
        criteria.append(
            Criterion(
                SCHEDULE,
                limit is not None and days > limit,
                f"{days:.1f} days since {production.reference} was registered "
                f"({'no refresh schedule' if limit is None else f'refresh after {limit:g}'})",
                days,
            )
        )
    return Monitoring(
        now=now,
        role=fb.role,
        production=None if production is None else production.reference,
        windows=windows,
        slices=_slices(current, reference, fb.min_requests),
        drift=drift,
        criteria=criteria,
        min_criteria=c.min_criteria,
        failures_since_training=failures,
        corrections_since_training=corrections,
        current_lengths=[len(r.prompt) for r in current],
        reference_lengths=[len(t) for t in reference],
    )


def _decline(
    config: Config,
    latest: Window,
    windows: list[Window],
    current: list[Record],
    records: list[Record],
    production: Version | None,
) -> Criterion:
    fb, c = config.feedback, config.feedback.criteria
    if latest.outcome_rate is None or latest.checked < fb.min_requests:
        return Criterion(
            "performance decline",
            False,
            f"{latest.checked} checked answers in the window; needs {fb.min_requests}",
        )
    metric = config.registry.primary_metric
    earlier_outcomes = None
    if fb.expected_outcome_rate is not None:
        reference, source = fb.expected_outcome_rate, "feedback.expected_outcome_rate"
    elif production is not None and metric in production.metrics:
        reference, source = production.metrics[metric], f"{production.reference}'s evaluated {metric}"
    else:
        earlier = [
            w
            for w in windows[1:]
            if w.model == "all" and w.outcome_rate is not None and w.checked >= fb.min_requests
        ]
        if not earlier:
            return Criterion(
                "performance decline",
                False,
                "nothing to compare with: no production evaluation, no earlier window",
            )
        window = earlier[-1]
        end = window.start + timedelta(hours=fb.window_hours)
        members = [r for r in records if window.start <= r.time < end]
        earlier_outcomes = [float(r.outcome) for r in _checked(members)]
        reference, source = window.outcome_rate, f"the window from {window.start:%Y-%m-%d %H:%M}"
    outcomes = [float(r.outcome) for r in _checked(current)]
    decline = outcome_decline(outcomes, reference, c.max_outcome_drop, c.decline_alpha, earlier_outcomes)
    return Criterion(
        "performance decline",
        decline.holds,
        f"verified-outcome rate {latest.outcome_rate:.3f} vs {reference:.3f} ({source}); "
        f"limit {c.max_outcome_drop} below, one-sided p {decline.p_value:.3g} (needs < {c.decline_alpha})",
        decline.drop,
    )
