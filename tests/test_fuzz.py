"""Property-based fuzzing of what reads outside input: any input gives a result or our own one-line
error, never a traceback from deep inside (hypothesis; deterministic: derandomized, fixed examples)."""

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srl_rlvr.config import build_config, load_config
from srl_rlvr.data.jsonl import read_trajectories
from srl_rlvr.errors import UserError
from srl_rlvr.generate.teacher_reply import ReplyRejected, parse_trajectory_reply

FUZZ = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# YAML-ish scalars and the config's own section and key names, so inputs reach deep into validation.
KEYS = st.sampled_from(
    ["model", "task", "srl", "rlvr", "eval", "data", "pipeline", "name", "learning_rate", "batch_size",
     "algorithm", "stages", "options", "lora", "num_generations", "dynamic_sampling", "x", ""]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=True), st.text(max_size=20)
)
TREES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
)


def is_one_line(error: Exception) -> bool:
    return bool(str(error).strip()) and all(line.strip() for line in str(error).splitlines())


@FUZZ
@given(raw=st.dictionaries(KEYS, TREES, max_size=5))
def test_any_config_mapping_loads_or_fails_with_our_error(raw: dict) -> None:
    try:
        build_config(raw)
    except UserError as e:
        assert is_one_line(e)


@FUZZ
@given(text=st.text(max_size=300) | TREES.map(lambda tree: yaml.safe_dump(tree)))
def test_any_config_file_loads_or_fails_with_our_error(text: str, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except UserError as e:
        assert is_one_line(e)


@FUZZ
@given(
    lines=st.lists(
        st.binary(max_size=80)
        | st.text(max_size=80).map(str.encode)
        | TREES.map(lambda tree: yaml.safe_dump(tree, default_flow_style=True).encode()),
        max_size=6,
    )
)
def test_any_jsonl_file_reads_or_fails_with_our_error(lines: list[bytes], tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b"\n".join(lines))
    try:
        read_trajectories(path)
    except UserError as e:
        assert str(e).strip()


@FUZZ
@given(
    reply=st.text(max_size=400)
    | st.from_regex(
        r'\A(```json\n)?\{"steps": \[("[^"]{0,20}",? ?){0,4}\]?,? ?("answer": ?"?\d{0,3}"?)?\}?\Z'
    )
)
def test_any_teacher_reply_parses_or_is_rejected_with_a_reason(reply: str) -> None:
    try:
        trajectory, repairs = parse_trajectory_reply(reply, "Start with 1. Add 2.")
    except ReplyRejected as e:
        assert is_one_line(e)
    else:
        assert trajectory.problem == "Start with 1. Add 2." and isinstance(repairs, list)


@pytest.mark.parametrize("text", ["", "\x00", "{", "[[[[[[", "a: [", "- - -", "model: {name_or_path: 5}"])
def test_known_awkward_config_texts(text: str, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    try:
        load_config(path)
    except UserError as e:
        assert is_one_line(e)
