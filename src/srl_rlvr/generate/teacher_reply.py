"""Turn an LLM teacher's reply into a `Trajectory`: repair a few named defects, reject the rest.

The teacher is asked for one JSON object in our trajectory format. Real models wrap it in prose or
code fences, leave trailing commas, answer with Python literals or smart quotes, or stop at max_tokens.
Each repair has a name, and the names applied come back with the result so the row can record them as
provenance. Anything else raises `ReplyRejected`, whose one-line message goes back to the teacher as
feedback for its retry: it says what is wrong and never echoes a long reply whole.

Truncation rule (a reply cut off at max_tokens): the open string and brackets are closed, and the cut
loses whatever it fell inside. The step being written when the reply stopped is dropped, complete steps
before it are kept; a cut-off expected_outcome is dropped too, so it falls back to the last step's
action. A reply cut off before its first step was complete is rejected.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from srl_rlvr.data.trajectory import Step, Trajectory

EXCERPT_CHARS = 80
OUTCOME_ALIASES = ("answer", "final_answer", "outcome")
ACTION_ALIASES = ("step", "content", "text")
REASONING_ALIASES = ("thought", "rationale", "explanation")

# A fence opens and closes at the start of a line: inside a JSON string a newline is escaped, so
# code quoted in an action ("```python\n...") never ends the outer fence early.
_FENCE = re.compile(r"^[ \t]*```[\w+-]*[ \t]*\n(.*?)(?:\n[ \t]*```|\Z)", re.S | re.M)
_CLOSER_AHEAD = re.compile(r"\s*[}\]]")
_SMART_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})
_STRING_BODY = r'(?:[^"\\]|\\u[0-9a-fA-F]{4}|\\[^u])*'
_TOKEN = re.compile(
    rf'(?P<string>"{_STRING_BODY}")'
    rf'|(?P<open_string>"{_STRING_BODY})(?:\\u?[0-9a-fA-F]{{0,3}})?\Z'  # cut mid-string (or mid-escape)
    r"|(?P<punct>[{}\[\]:,])"
    r'|(?P<bare>[^\s{}\[\]:,"]+)',
    re.S,
)


class ReplyRejected(ValueError):
    """The reply cannot be turned into a trajectory; str(e) is one line, fit to show the teacher as feedback."""


class _Parsed(NamedTuple):
    value: Any
    repairs: list[str]
    cut: set[tuple[Any, ...]]  # paths (keys, indices) from the root to what a max_tokens cut fell inside


def extract_json(text: str) -> tuple[Any, list[str]]:
    """The JSON value in an LLM reply and the names of the repairs applied (e.g. ["code_fence", "trailing_comma"]). Raises ReplyRejected."""
    parsed = _extract(text)
    return parsed.value, parsed.repairs


def parse_trajectory_reply(text: str, problem: str) -> tuple[Trajectory, list[str]]:
    """A Trajectory for `problem` (the problem text is ours, never the teacher's copy) from a reply; returns it and the repairs applied. Raises ReplyRejected."""
    parsed = _extract(text)
    repairs = list(parsed.repairs)
    fields = _trajectory_fields(parsed.value, parsed.cut, repairs)
    return Trajectory(problem=problem, **fields), list(dict.fromkeys(repairs))


def _extract(text: str) -> _Parsed:
    """Try each repair in order of least change, keeping the ones before it, until the text parses."""
    current = text.strip()
    if not current:
        raise ReplyRejected("empty reply: answer with one JSON object")
    if "{" not in current and "[" not in current:
        raise ReplyRejected(f"no JSON object in the reply, which reads {_excerpt(current)}")
    stages: list[tuple[str, Callable[[str], str | None] | None]] = [
        ("code_fence", _unfence),
        ("surrounding_text", _outermost_span),
        ("trailing_comma", _drop_trailing_commas),
        ("python_literals", None),  # not a text change: from here on ast.literal_eval is a fallback parser
        ("smart_quotes", lambda t: t.translate(_SMART_QUOTES)),
    ]
    repairs: list[str] = []
    located, python = current, False
    found = _loads(current, python)
    for name, repair in stages:
        if found:
            break
        if repair is None:
            python = True
        else:
            fixed = repair(current)
            if not fixed or fixed == current:
                continue
            current = fixed
            repairs.append(name)
            if name in ("code_fence", "surrounding_text"):
                located = current
        found = _loads(current, python)
    if found:
        return _Parsed(found[0], repairs + found[1], set())
    closed = _close_truncated(current)
    if closed and (found := _loads(closed[0], python=True)):
        cut = _cut_paths(found[0], open_containers=closed[1], value_cut=closed[2])
        return _Parsed(found[0], [*repairs, "truncated", *found[1]], cut)
    raise ReplyRejected(_invalid_json_message(text, located))


def _loads(text: str, python: bool) -> tuple[Any, list[str]] | None:
    """(object or array, the extra repair it took) if `text` parses as JSON, or else as a Python literal."""
    try:
        value, used = json.loads(text), []
    except (ValueError, RecursionError):
        if not python:
            return None
        try:  # the round trip turns tuples into lists and refuses what JSON cannot hold (sets, bytes)
            value, used = json.loads(json.dumps(ast.literal_eval(text))), ["python_literals"]
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None
    return (value, used) if isinstance(value, dict | list) else None


def _unfence(text: str) -> str | None:
    """The first fenced block holding an object or array; an unclosed fence runs to the end."""
    for match in _FENCE.finditer(text):
        body = match.group(1).strip()
        if "{" in body or "[" in body:
            return body
    return None


def _outside_strings(text: str) -> Iterator[tuple[int, str]]:
    """(index, char) of each character outside double-quoted strings (the opening quote included)."""
    in_string = escaped = False
    for i, ch in enumerate(text):
        if not in_string:
            in_string = ch == '"'
            yield i, ch
        elif escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            in_string = False


def _outermost_span(text: str) -> str | None:
    """The longest top-level {...} or [...] span, so a bracket in the prose does not win; an unclosed one
    runs to the end (a cut-off reply, closed later by the `truncated` repair)."""
    spans, depth, start = [], 0, 0
    for i, ch in _outside_strings(text):
        if ch in "{[":
            start = i if depth == 0 else start
            depth += 1
        elif ch in "}]" and depth:
            depth -= 1
            if depth == 0:
                spans.append(text[start : i + 1])
    if depth:
        spans.append(text[start:])
    return max(spans, key=len, default=None)


def _drop_trailing_commas(text: str) -> str:
    drop = {i for i, ch in _outside_strings(text) if ch == "," and _CLOSER_AHEAD.match(text, i + 1)}
    return "".join(ch for i, ch in enumerate(text) if i not in drop)


def _close_truncated(text: str) -> tuple[str, int, bool] | None:
    """(closed text, containers that were open, whether a value string was cut), or None if the text
    is not a structure cut off at its end. A cut key, a key without its value, a dangling comma and a
    trailing number (it may have lost digits) are removed; a cut value string is closed."""
    tokens = []
    for match in _TOKEN.finditer(text):
        kind = match.group() if match.lastgroup == "punct" else match.lastgroup
        tokens.append((kind, match.end(match.lastgroup)))
    stack: list[str] = []
    for kind, _ in tokens:
        if kind in ("{", "["):
            stack.append("}" if kind == "{" else "]")
        elif kind in ("}", "]") and (not stack or stack.pop() != kind):
            return None
    if not stack:
        return None

    def ends_with_key() -> bool:
        return stack[-1] == "}" and (len(tokens) < 2 or tokens[-2][0] in ("{", ","))

    value_cut = False
    if tokens[-1][0] == "open_string":
        value_cut = not ends_with_key()
        if not value_cut:
            tokens.pop()
    elif tokens[-1][0] == "bare":
        tokens.pop()
    while tokens and (tokens[-1][0] in (",", ":") or (tokens[-1][0] == "string" and ends_with_key())):
        tokens.pop()
    if not tokens:
        return None
    body = text[: tokens[-1][1]] + ('"' if value_cut else "")
    return body + "".join(reversed(stack)), len(stack), value_cut


def _cut_paths(value: Any, open_containers: int, value_cut: bool) -> set[tuple[Any, ...]]:
    """Paths of what the cut fell inside: each open container is the last element of the one before,
    and a cut string is the last element of the innermost."""
    path: tuple[Any, ...] = ()
    paths = {path}
    node = value
    for _ in range(open_containers - 1 + value_cut):
        if not node or not isinstance(node, dict | list):
            break
        key = next(reversed(node)) if isinstance(node, dict) else len(node) - 1
        path, node = (*path, key), node[key]
        paths.add(path)
    return paths


def _trajectory_fields(value: Any, cut: set[tuple[Any, ...]], repairs: list[str]) -> dict[str, Any]:
    """steps, expected_outcome and metadata from the teacher's JSON, normalising its shape into `repairs`."""
    root: tuple[Any, ...] = ()
    if isinstance(value, dict) and "steps" not in value and isinstance(value.get("trajectory"), dict):
        repairs += ["unwrap:trajectory"] + [f"dropped:{key}" for key in value if key != "trajectory"]
        value, root = value["trajectory"], ("trajectory",)
    if isinstance(value, list):
        repairs.append("steps_list")
        value, steps_path = {"steps": value}, root
    else:
        steps_path = (*root, "steps")
    fields: dict[str, Any] = {"steps": _steps(value.get("steps"), cut, steps_path, repairs)}
    kept = {}
    for key, item in value.items():
        if key != "steps" and (*root, key) in cut:
            repairs.append(f"dropped:{key}")
        else:
            kept[key] = item
    outcome = _take(kept, "expected_outcome", OUTCOME_ALIASES, lambda v: True, repairs)
    if outcome is None:
        outcome = fields["steps"][-1].action
        repairs.append("outcome_from_last_step")
    elif not isinstance(outcome, str):
        outcome = json.dumps(outcome, ensure_ascii=False)
        repairs.append("outcome_as_json")
    fields["expected_outcome"] = outcome
    if isinstance(kept.get("metadata"), dict):
        fields["metadata"] = kept["metadata"]
    elif kept.get("metadata") is not None:
        repairs.append("dropped:metadata")
    known = {"steps", "problem", "metadata", "expected_outcome", *OUTCOME_ALIASES}  # problem: ours is used
    repairs += [f"dropped:{key}" for key in kept if key not in known]
    return fields


def _steps(raw: Any, cut: set[tuple[Any, ...]], path: tuple[Any, ...], repairs: list[str]) -> list[Step]:
    if not isinstance(raw, list) or not raw:
        raise ReplyRejected('no steps: the reply needs a non-empty "steps" list of {"action", "reasoning"}')
    steps = []
    for i, item in enumerate(raw):
        if (*path, i) in cut:
            repairs.append("dropped:cut_off_step")
        else:
            steps.append(_step(item, i + 1, repairs))
    if not steps:
        raise ReplyRejected("no steps: the reply was cut off before its first step was complete; be briefer")
    return steps


def _step(item: Any, number: int, repairs: list[str]) -> Step:
    if isinstance(item, str):
        repairs.append("step_strings")
        item = {"action": item}
    if not isinstance(item, dict):
        raise ReplyRejected(f'step {number} has no action: each step is an object with an "action" string')
    action = _take(item, "action", ACTION_ALIASES, lambda v: isinstance(v, str) and bool(v.strip()), repairs)
    if action is None:
        raise ReplyRejected(f'step {number} has no action: give it a non-empty "action" string')
    reasoning = _take(item, "reasoning", REASONING_ALIASES, lambda v: isinstance(v, str), repairs)
    reward = item.get("reward")
    if not (reward is None or _is_reward(reward)):
        repairs.append("dropped:reward")
        reward = None
    known = {"action", "reasoning", "reward", *ACTION_ALIASES, *REASONING_ALIASES}
    repairs += [f"dropped:{key}" for key in item if key not in known]
    return Step(action=action, reasoning=reasoning or "", reward=reward)


def _take(
    obj: dict[str, Any], key: str, aliases: tuple[str, ...], usable: Callable[[Any], bool], repairs: list[str]
) -> Any:
    """The value under `key`, else under the first alias with a usable value (recorded as "alias:name");
    the other non-null candidates are recorded as dropped. None if there is none."""
    candidates = [k for k in (key, *aliases) if obj.get(k) is not None]
    chosen = next((k for k in candidates if usable(obj[k])), None)
    repairs += [f"dropped:{k}" for k in candidates if k != chosen]
    if chosen is not None and chosen != key:
        repairs.append(f"alias:{chosen}")
    return None if chosen is None else obj[chosen]


def _is_reward(value: Any) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    )


def _invalid_json_message(reply: str, located: str) -> str:
    """The parser's complaint about the JSON we found, placed by line and column in the teacher's reply."""
    try:
        json.loads(located)
    except json.JSONDecodeError as error:
        offset = max(reply.find(located), 0) + error.pos
        line = reply.count("\n", 0, offset) + 1
        column = offset - reply.rfind("\n", 0, offset)
        near = _excerpt(reply[max(0, offset - 30) : offset + 30])
        return f"invalid JSON that could not be repaired: {error.msg} at line {line} column {column}, near {near}"
    except RecursionError:
        pass
    return "invalid JSON that could not be repaired: nested too deeply"


def _excerpt(text: str) -> str:
    """A quoted one-line excerpt of at most EXCERPT_CHARS characters."""
    flat = " ".join(text.split())
    return f'"{flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1] + "…"}"'
