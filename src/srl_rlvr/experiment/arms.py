"""An experiment's arms and the jobs they make: one (arm, seed) pair is one pipeline run.

An arm is a name and dotted overrides of the base config, the same `key=value` strings `srl-rlvr
run` takes (a stage list is one too: `pipeline.stages=[generate,sft,rlvr]`). Every job of every arm
is scored on the base config's held-out problems, whatever an arm overrides, so pairs compare like
with like.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from srl_rlvr.config import Config, dump_config, load_config
from srl_rlvr.errors import ConfigError

RESULT_FILE = "result.json"
# The experiment scores the final model itself; `evaluate` would score the base model again in every
# job, and `register` would put every arm's throwaway model in the registry.
NOT_IN_ARMS = ("evaluate", "register")


@dataclass(frozen=True)
class Arm:
    name: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Job:
    """What a worker process needs to run one (arm, seed); picklable, so it crosses the process line."""

    arm: str
    seed: int
    config_path: str | None
    overrides: tuple[str, ...]
    folder: str
    fingerprint: str
    device: int | None = None

    @property
    def name(self) -> str:
        return f"{self.arm}-seed{self.seed}"


def parse_arm(spec: str) -> Arm:
    """`"name key=value key=value"` (one --arm option) as an Arm; a bare name is the base config."""
    try:
        words = shlex.split(spec)
    except ValueError as e:
        raise ConfigError(f"--arm {spec!r}: {e}") from None
    if not words or "=" in words[0]:
        raise ConfigError(f"--arm {spec!r}: start with the arm's name, then key=value overrides")
    name, overrides = words[0], tuple(words[1:])
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"--arm {spec!r}: a name of letters, digits, '-' and '_' (it names a folder)")
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"--arm {name}: '{override}' is no key=value override")
    return Arm(name, overrides)


def check_arms(arms: list[Arm], at_least: int = 2) -> None:
    """At least two arms to compare; one (the baseline) when a search adds the others."""
    names = [a.name for a in arms]
    if len(arms) < at_least:
        raise ConfigError(
            "an experiment needs at least two arms (--arm NAME key=value ... twice)"
            if at_least == 2
            else "an experiment needs a baseline arm (--arm NAME key=value ...)"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"--arm names must differ: {', '.join(names)}")


def job_overrides(config: Config, arm: Arm, seed: int, folder: Path) -> tuple[str, ...]:
    """The arm's overrides with the job's seed and run folder, and without evaluate and register."""
    stages = [s for s in config.pipeline.stages if s not in NOT_IN_ARMS]
    return (
        *arm.overrides,
        f"pipeline.stages=[{','.join(stages)}]",
        f"seed={seed}",
        f"output_dir={folder / 'run'}",
    )


def plan_jobs(
    config_path: str | None, base_overrides: list[str], arms: list[Arm], seeds: list[int], out: Path
) -> list[Job]:
    """Every (arm, seed) job; its fingerprint hashes the resolved config it runs, so a rerun can tell
    a finished job from one whose arm changed."""
    jobs = []
    for arm in arms:
        armed = load_config(config_path, [*base_overrides, *arm.overrides])
        for seed in seeds:
            folder = out / "jobs" / f"{arm.name}-seed{seed}"
            overrides = (*base_overrides, *job_overrides(armed, arm, seed, folder))
            resolved = load_config(config_path, list(overrides))  # an invalid arm fails here, before any run
            digest = hashlib.sha256(dump_config(resolved).encode()).hexdigest()
            jobs.append(Job(arm.name, seed, config_path, overrides, str(folder), digest))
    return jobs


def finished(job: Job) -> bool:
    """The job wrote its result with the config it would run now."""
    path = Path(job.folder) / RESULT_FILE
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("fingerprint") == job.fingerprint
    except json.JSONDecodeError:  # a job killed mid-write: the result is written atomically, so rare
        return False
