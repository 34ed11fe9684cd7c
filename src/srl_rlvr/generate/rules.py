"""Domain rules from the knowledge folder: told to the teacher, checked by the verifier.

A rule is plain text the teacher reads, optionally with a regex the verifier can check on the
trajectory's text: `forbid` must not match, `require` must. Rules live in `rules.yaml` at the top of
`collaboration.retrieval.knowledge_dir`:

    - name: no-rounding
      text: Keep every intermediate value exact; never round.
      forbid: "≈|approximately"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from srl_rlvr.data.trajectory import Trajectory
from srl_rlvr.errors import DataError

RULES_FILE = "rules.yaml"


@dataclass(frozen=True)
class Rule:
    name: str
    text: str
    forbid: re.Pattern[str] | None = None
    require: re.Pattern[str] | None = None


def _pattern(value: object, where: str) -> re.Pattern[str] | None:
    if value is None:
        return None
    try:
        return re.compile(str(value))
    except re.error as e:
        raise DataError(f"{where}: invalid regex {value!r}: {e}") from None


def load_rules(knowledge_dir: str | Path | None) -> list[Rule]:
    """The rules in `<knowledge_dir>/rules.yaml`; [] when there is no folder or no file."""
    from srl_rlvr.config import parse_yaml

    if knowledge_dir is None:
        return []
    path = Path(knowledge_dir) / RULES_FILE
    if not path.is_file():
        return []
    raw = parse_yaml(path.read_text(encoding="utf-8"), source=str(path)) or []
    if not isinstance(raw, list):
        raise DataError(f"{path}: expected a list of rules (- name: ..., text: ..., forbid/require: regex)")
    rules = []
    for i, entry in enumerate(raw, start=1):
        where = f"{path} rule {i}"
        if not isinstance(entry, dict) or not entry.get("text"):
            raise DataError(f"{where}: each rule needs at least a text")
        unknown = set(entry) - {"name", "text", "forbid", "require"}
        if unknown:
            raise DataError(f"{where}: unknown keys {sorted(unknown)}; use name, text, forbid, require")
        rules.append(
            Rule(
                name=str(entry.get("name") or f"rule-{i}"),
                text=str(entry["text"]),
                forbid=_pattern(entry.get("forbid"), where),
                require=_pattern(entry.get("require"), where),
            )
        )
    return rules


def rule_violations(trajectory: Trajectory, rules: list[Rule]) -> list[str]:
    """One line per broken rule, checked on the actions and the expected outcome (what is learned)."""
    text = trajectory.solution_text() + "\n" + trajectory.expected_outcome
    broken = []
    for rule in rules:
        if rule.forbid is not None and (found := rule.forbid.search(text)):
            broken.append(f"breaks rule '{rule.name}' ({rule.text}): found {found.group(0)!r}")
        if rule.require is not None and not rule.require.search(text):
            broken.append(f"breaks rule '{rule.name}' ({rule.text})")
    return broken
