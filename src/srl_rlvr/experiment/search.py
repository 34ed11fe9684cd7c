"""`srl-rlvr experiment --search`: an Optuna study over ranges of config values, each trial one more arm.

A range is `key=low..high` (uniform), `key=log:low..high` (log-uniform), `key=int:low..high`
(integers) or `key=[a,b,c]` (one of the values). Optuna's TPE sampler (Bergstra et al. 2011,
"Algorithms for Hyper-Parameter Optimization") proposes a point; the point is an arm named by a hash
of its values, trained over the same seeds as every arm, and its mean primary metric on the held-out
problems is the trial's value. Trials run one after another, so each proposal learns from the
finished ones; the seeds of one trial run side by side as any arm's do.

The study is kept in `OUT/search.db`. A rerun adds every earlier trial's arm first (their finished
jobs are skipped; a trial cut short resumes at its missing seeds) and asks only for the trials still
missing. The report is the experiment's, every trial against the baseline with its interval, plus a
table of trials. The best of many trials chosen on one set of held-out problems overstates its own
gain (the winner's curse): confirm it as an arm of a fresh experiment before adopting it.

Optuna is an optional extra: `pip install 'srl-rlvr[experiment]'`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from srl_rlvr.errors import ConfigError
from srl_rlvr.experiment.arms import Arm

SEARCH_DB = "search.db"


@dataclass(frozen=True)
class Range:
    key: str
    kind: str  # float, log, int or choice
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()

    def example(self) -> str:
        """One value of the range as an override, to check the key before any job runs."""
        value = (
            self.choices[0] if self.kind == "choice" else int(self.low) if self.kind == "int" else self.low
        )
        return f"{self.key}={value}"

    def distribution(self) -> Any:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "choice":
            return CategoricalDistribution(self.choices)
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high))
        return FloatDistribution(self.low, self.high, log=self.kind == "log")


def parse_range(spec: str) -> Range:
    """One `--search` option: `key=low..high`, `key=log:low..high`, `key=int:low..high` or `key=[a,b]`."""
    key, eq, value = spec.partition("=")
    key, value = key.strip(), value.strip()
    if not eq or not key or not value:
        raise ConfigError(
            f"--search {spec!r}: write key=low..high, key=log:low..high, key=int:low..high or key=[a,b]"
        )
    if value.startswith("["):
        choices = yaml.safe_load(value)
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"--search {spec!r}: a choice is a non-empty list, e.g. [4,8,16]")
        if not all(c is None or isinstance(c, bool | int | float | str) for c in choices):
            raise ConfigError(
                f"--search {spec!r}: choices are single values; quote a list: ['[sft,rlvr]','[rlvr]']"
            )
        return Range(key, "choice", choices=tuple(choices))
    kind, _, bounds = value.rpartition(":")
    if kind not in ("", "log", "int"):
        raise ConfigError(f"--search {spec!r}: the scale is log: or int:, not {kind}:")
    low, sep, high = bounds.partition("..")
    try:
        lo, hi = float(low), float(high)
    except ValueError:
        raise ConfigError(f"--search {spec!r}: bounds are numbers, low..high") from None
    if not sep or lo >= hi or (kind == "log" and lo <= 0):
        raise ConfigError(f"--search {spec!r}: need low < high (and low > 0 on a log scale)")
    return Range(key, kind or "float", lo, hi)


def trial_arm(params: dict[str, Any]) -> Arm:
    """The arm of a point: named by its values' hash, so the same point is the same jobs' folders."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
    return Arm(f"trial-{digest}", tuple(f"{k}={v}" for k, v in sorted(params.items())))


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError("--search needs Optuna: pip install 'srl-rlvr[experiment]'") from None
    optuna.logging.set_verbosity(logging.WARNING)
    return optuna


class OptunaSearch:
    """Ask-and-tell between the experiment runner and an Optuna study: the runner shows it every
    arm's results and asks for the next arm, until `trials` trials are finished."""

    def __init__(self, ranges: list[Range], trials: int, out: str | Path, seed: int = 0) -> None:
        optuna = _optuna()
        self.states = optuna.trial.TrialState
        self.distributions = {r.key: r.distribution() for r in ranges}
        # the ranges name the study: changed ranges start a new one (arms of equal points still reuse jobs)
        space = json.dumps([[r.key, r.kind, r.low, r.high, list(r.choices)] for r in ranges])
        Path(out).mkdir(parents=True, exist_ok=True)
        self.study = optuna.create_study(
            study_name="search-" + hashlib.sha256(space.encode()).hexdigest()[:8],
            storage=f"sqlite:///{Path(out) / SEARCH_DB}",
            direction="maximize",
            load_if_exists=True,
        )
        # seeded past the trials it has, so a resumed search does not propose its first points again
        self.study.sampler = optuna.samplers.TPESampler(seed=seed + len(self.study.trials))
        self.trials = trials
        self.examples = [r.example() for r in ranges]
        earlier = (self.states.COMPLETE, self.states.RUNNING)
        self.replay = [t for t in self.study.trials if t.state in earlier]
        self.waiting: tuple[int, Arm] | None = None  # the trial whose arm the runner is running
        self.rows: list[dict[str, Any]] = []

    def next_arm(self, results: dict[str, list[dict[str, Any]]], primary: str) -> Arm | None:
        """Record the value of the arm handed out last, then hand out the next, or None when done."""
        if self.waiting is not None:
            number, arm = self.waiting
            value = sum(r["metrics"][primary] for r in results[arm.name]) / len(results[arm.name])
            if self.study.trials[number].state == self.states.RUNNING:
                self.study.tell(number, value)
            self.rows.append(
                {"trial": number, "arm": arm.name, "value": value, "overrides": list(arm.overrides)}
            )
            self.waiting = None
        if self.replay:
            trial = self.replay.pop(0)
            self.waiting = (trial.number, trial_arm(trial.params))
            return self.waiting[1]
        done = sum(t.state == self.states.COMPLETE for t in self.study.trials)
        if done >= self.trials:
            return None
        trial = self.study.ask(self.distributions)
        self.waiting = (trial.number, trial_arm(trial.params))
        return self.waiting[1]
