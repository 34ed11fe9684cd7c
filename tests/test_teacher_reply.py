import json

import pytest

from srl_rlvr.generate.teacher_reply import ReplyRejected, extract_json, parse_trajectory_reply

PROBLEM = "What is (2 + 3) * 4?"
CLEAN = json.dumps(
    {
        "problem": "the teacher's copy of the problem",
        "steps": [
            {"action": "2 + 3 = 5", "reasoning": "brackets first"},
            {"action": "5 * 4 = 20", "reward": 0.5},
        ],
        "expected_outcome": "20",
    }
)


def parse(reply: str) -> tuple[list[str], str, list[str]]:
    """(actions, expected_outcome, repairs) of a reply to PROBLEM."""
    trajectory, repairs = parse_trajectory_reply(reply, PROBLEM)
    return [step.action for step in trajectory.steps], trajectory.expected_outcome, repairs


def test_a_clean_reply_needs_no_repair() -> None:
    trajectory, repairs = parse_trajectory_reply(CLEAN, PROBLEM)
    assert repairs == []
    assert [s.action for s in trajectory.steps] == ["2 + 3 = 5", "5 * 4 = 20"]
    assert trajectory.steps[0].reasoning == "brackets first"
    assert trajectory.steps[1].reward == 0.5
    assert trajectory.expected_outcome == "20"


def test_problem_text_comes_from_us_not_the_teacher() -> None:
    trajectory, _ = parse_trajectory_reply(CLEAN, PROBLEM)
    assert trajectory.problem == PROBLEM


# --- repairs of the JSON text ---


def test_code_fence() -> None:
    assert parse(f"```json\n{CLEAN}\n```")[2] == ["code_fence"]


def test_code_quoted_in_an_action_does_not_end_the_fence() -> None:
    reply = '```json\n{"steps": [{"action": "```python\\nprint(20)\\n```"}], "expected_outcome": "20"}\n```'
    assert parse(reply)[0] == ["```python\nprint(20)\n```"]


def test_surrounding_text() -> None:
    reply = f"Sure [as JSON]! Here it is:\n{CLEAN}\nLet me know if you need more {{details}}."
    assert parse(reply)[2] == ["surrounding_text"]


def test_trailing_comma() -> None:
    actions, _, repairs = parse('{"steps": [{"action": "keep ,] in strings",},], "expected_outcome": "20",}')
    assert repairs == ["trailing_comma"]
    assert actions == ["keep ,] in strings"]


def test_python_literals() -> None:
    value, repairs = extract_json("{'steps': [{'action': 'add', 'reasoning': None}], 'done': True}")
    assert value == {"steps": [{"action": "add", "reasoning": None}], "done": True}
    assert repairs == ["python_literals"]


def test_smart_quotes() -> None:
    actions, outcome, repairs = parse("{“steps”: [{“action”: “don’t round”}], “expected_outcome”: “20”}")
    assert (actions, outcome, repairs) == (["don't round"], "20", ["smart_quotes"])


def test_truncated() -> None:
    assert extract_json('{"a": [1, {"b": "cut her') == ({"a": [1, {"b": "cut her"}]}, ["truncated"])


def test_a_cut_off_reply_keeps_its_complete_steps() -> None:
    reply = '```json\n{"steps": [{"action": "2 + 3 = 5"}, {"action": "5 * 4 = 20"}, {"action": "so the ans'
    actions, outcome, repairs = parse(reply)
    assert actions == ["2 + 3 = 5", "5 * 4 = 20"]
    assert outcome == "5 * 4 = 20"
    assert repairs[:3] == ["code_fence", "truncated", "dropped:cut_off_step"]


def test_a_cut_off_expected_outcome_falls_back_to_the_last_action() -> None:
    _, outcome, repairs = parse('{"steps": [{"action": "5 * 4 = 20"}], "expected_outcome": "The answ')
    assert outcome == "5 * 4 = 20"
    assert "dropped:expected_outcome" in repairs


def test_a_reply_cut_off_before_its_first_complete_step_is_rejected() -> None:
    with pytest.raises(ReplyRejected, match="no steps: the reply was cut off"):
        parse('{"steps": [{"action": "2 + 3 = 5", "reason')


# --- shape normalisation ---


def test_a_trajectory_wrapper_is_unwrapped() -> None:
    assert parse(f'{{"trajectory": {CLEAN}}}')[2] == ["unwrap:trajectory"]


def test_a_top_level_list_is_the_steps_and_plain_strings_are_actions() -> None:
    actions, outcome, repairs = parse('["2 + 3 = 5", "5 * 4 = 20"]')
    assert (actions, outcome) == (["2 + 3 = 5", "5 * 4 = 20"], "5 * 4 = 20")
    assert repairs == ["steps_list", "step_strings", "outcome_from_last_step"]


def test_key_aliases_map_to_our_fields() -> None:
    trajectory, repairs = parse_trajectory_reply(
        '{"steps": [{"step": 1, "content": "2 + 3 = 5", "thought": "brackets"}], "final_answer": 20}', PROBLEM
    )
    assert (trajectory.steps[0].action, trajectory.steps[0].reasoning) == ("2 + 3 = 5", "brackets")
    assert trajectory.expected_outcome == "20"
    assert {"alias:content", "alias:thought", "alias:final_answer", "outcome_as_json"} <= set(repairs)


def test_an_object_outcome_becomes_its_json_text() -> None:
    assert parse('{"steps": ["x = 20"], "answer": {"x": 20}}')[1] == '{"x": 20}'


def test_unknown_keys_are_dropped_not_fatal() -> None:
    _, _, repairs = parse(
        '{"steps": [{"action": "20", "confidence": 0.9}], "expected_outcome": "20", "notes": ""}'
    )
    assert repairs == ["dropped:confidence", "dropped:notes"]


def test_a_reward_that_is_not_a_non_negative_number_is_dropped() -> None:
    reply = '{"steps": [{"action": "a", "reward": -1}, {"action": "b", "reward": "high"}, {"action": "c", "reward": 2}]}'
    trajectory, repairs = parse_trajectory_reply(reply, PROBLEM)
    assert [s.reward for s in trajectory.steps] == [None, None, 2.0]
    assert "dropped:reward" in repairs


# --- rejections ---


def test_an_empty_reply_is_rejected() -> None:
    with pytest.raises(ReplyRejected, match="empty reply"):
        parse("  \n ")


def test_a_reply_without_json_is_rejected() -> None:
    with pytest.raises(ReplyRejected, match="no JSON object in the reply"):
        parse("The answer is 20.")


def test_invalid_json_is_rejected_with_its_position() -> None:
    reply = 'Here you go:\n{"steps": [{"action": "a" "reasoning": "b"}]}'
    with pytest.raises(
        ReplyRejected,
        match=r"^invalid JSON that could not be repaired: Expecting ',' delimiter at line 2 column 27",
    ):
        parse(reply)


def test_a_reply_without_steps_is_rejected() -> None:
    for reply in ('{"expected_outcome": "20"}', '{"steps": []}', '{"steps": "add, then multiply"}'):
        with pytest.raises(ReplyRejected, match=r"^no steps"):
            parse(reply)


def test_a_step_without_action_is_rejected() -> None:
    with pytest.raises(ReplyRejected, match=r"^step 3 has no action"):
        parse('{"steps": [{"action": "a"}, "b", {"reasoning": "c", "action": " "}]}')


def test_garbage_is_rejected_with_a_reason_fit_for_feedback() -> None:
    for garbage in ("I'm sorry, I can't do that. " * 50, "{" + '"steps": [}' * 200):
        with pytest.raises(ReplyRejected) as rejected:
            parse(garbage)
        reason = str(rejected.value)
        assert "\n" not in reason
        assert len(reason) < 250
