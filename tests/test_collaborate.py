"""The teacher/verifier team end to end: a real HTTP server on 127.0.0.1 speaking the chat-completions
protocol, the real `openai` client, the real files a run leaves behind."""

from __future__ import annotations

import itertools
import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from chat_server import ScriptedChatServer

from srl_rlvr.cli import main
from srl_rlvr.config import Config, build_config
from srl_rlvr.data.versioning import load_dataset
from srl_rlvr.errors import ConfigError, EndpointError
from srl_rlvr.generate.orchestrator import REJECTED_FILE, generate_dataset
from srl_rlvr.tasks import Problem, load_task

ARITHMETIC = load_task("arithmetic")


def solution_json(problem: Problem, wrong: bool = False) -> str:
    """What a good (or a subtly wrong) LLM teacher answers for an arithmetic problem."""
    t = ARITHMETIC.solve(problem)
    steps = [{"reasoning": s.reasoning, "action": s.action} for s in t.steps]
    if wrong:
        steps[-1]["action"] = f"Answer: {int(problem.answer) + 1}"
    return json.dumps({"steps": steps, "expected_outcome": str(int(problem.answer) + wrong)})


def endpoint_config(server: ScriptedChatServer, tmp_path: Path, *overrides: str) -> Config:
    return build_config(
        {
            "collaboration": {
                "teacher": {"base_url": server.base_url, "model": "teacher-m", "api_key_env": None},
                "requests": {
                    "concurrency": 1,
                    "backoff_s": 0.01,
                    "backoff_max_s": 0.05,
                    "timeout_s": 0.5,
                    "cache_dir": str(tmp_path / "cache"),
                },
            }
        },
        overrides,
    )


def problems(n: int) -> list[Problem]:
    return ARITHMETIC.sample(n, seed=0, split="train")


def test_the_solver_team_writes_a_verified_dataset_in_problem_order(tmp_path: Path) -> None:
    manifest = generate_dataset(build_config(), tmp_path / "data", n=40)
    rows, _ = load_dataset(tmp_path / "data")
    assert manifest["count"] == manifest["accepted"] == 40
    assert (manifest["rejected"], manifest["attempts"]) == (0, 40)
    assert [r.problem for r in rows] == [p.text for p in problems(40)]
    assert rows[0].provenance == {
        "teacher": "solver:arithmetic",
        "verifier_score": 1.0,
        "checks": {"rules": 1.0, "outcome": 1.0},
        "attempts": 1,
    }
    again = generate_dataset(build_config(), tmp_path / "again", n=40)
    assert again["hash"] == manifest["hash"]  # same problems, same content, same version id


def test_the_orchestrator_repairs_regenerates_backs_off_and_counts(tmp_path: Path) -> None:
    first, second, third = problems(3)
    script: list[Any] = [
        # problem 1: unreadable, a timeout, unreadable again -> rejected after 2 attempts
        "I am sorry, I cannot do that.",
        {"delay": 2.0, "content": "too late"},
        "Still no JSON here.",
        # problem 2: fenced JSON with a trailing comma -> repaired and accepted at once
        "Here you go:\n```json\n" + solution_json(second)[:-1] + ",}\n```",
        # problem 3: a 500 and a 429 (retried), a wrong answer (regenerated), then right
        {"status": 500, "message": "overloaded"},
        {"status": 429, "retry_after": 0.01},
        solution_json(third, wrong=True),
        solution_json(third),
    ]
    with ScriptedChatServer(script) as server:
        cfg = endpoint_config(server, tmp_path, "collaboration.max_regeneration_attempts=1")
        manifest = generate_dataset(cfg, tmp_path / "data", n=2)
        sent = server.requests

    assert (manifest["accepted"], manifest["rejected"], manifest["attempts"]) == (2, 1, 5)
    usage = manifest["usage"]["teacher-m"]
    assert usage["requests"] == len(sent) == 8
    assert usage["retries"] == 3  # the timeout, the 500 and the 429
    rows, _ = load_dataset(tmp_path / "data")
    assert [r.problem for r in rows] == [second.text, third.text]
    assert rows[0].provenance["repairs"] and rows[0].provenance["attempts"] == 1
    assert rows[1].provenance["attempts"] == 2
    # the retry carried the rejected reply and the verifier's reason, not the reference answer
    retry = sent[-1]["messages"]
    assert retry[-2]["role"] == "assistant" and "does not check out" in retry[-1]["content"]
    assert str(third.answer) not in retry[-1]["content"]
    [letter] = [json.loads(line) for line in (tmp_path / "data" / REJECTED_FILE).read_text().splitlines()]
    assert letter["id"] == first.id and letter["attempts"] == 2
    assert all(r.startswith("unreadable reply") for r in letter["reasons"])


def test_the_breaker_stops_a_dead_teacher_and_a_rerun_continues(tmp_path: Path) -> None:
    served = {"ok": 0}

    def dies_after_three(request: dict[str, Any]) -> Any:
        if served["ok"] == 3:
            return {"status": 503, "message": "gone"}
        served["ok"] += 1
        return solution_json(problem_in(request))

    with ScriptedChatServer(dies_after_three) as server:
        cfg = endpoint_config(server, tmp_path, "collaboration.requests.breaker_failures=3")
        with pytest.raises(EndpointError, match="rerun the same command"):
            generate_dataset(cfg, tmp_path / "data", n=6)
        assert len(server.requests) == 3 + 3  # three answers, then three failures open the breaker
    kept = (tmp_path / "data" / "trajectories.jsonl").read_text().splitlines()
    assert len(kept) == 3 and not (tmp_path / "data" / "manifest.json").exists()

    with ScriptedChatServer(lambda request: solution_json(problem_in(request))) as server:
        manifest = generate_dataset(endpoint_config(server, tmp_path), tmp_path / "data", n=6)
        assert len(server.requests) == 3  # only the problems not yet decided
    rows, _ = load_dataset(tmp_path / "data")
    assert manifest["count"] == 6 and [r.problem for r in rows] == [p.text for p in problems(6)]


def problem_in(request: dict[str, Any]) -> Problem:
    """The arithmetic problem a teacher request is about (its text is the prompt's last line)."""
    prompt = request["messages"][1]["content"]
    return next(p for p in problems(50) if p.text in prompt)


def test_a_rerun_is_served_from_the_cache(tmp_path: Path) -> None:
    with ScriptedChatServer(lambda request: solution_json(problem_in(request))) as server:
        generate_dataset(endpoint_config(server, tmp_path), tmp_path / "first", n=4)
        manifest = generate_dataset(endpoint_config(server, tmp_path), tmp_path / "second", n=4)
        assert len(server.requests) == 4
    assert manifest["usage"]["teacher-m"]["cached"] == 4


def test_the_key_never_reaches_errors_logs_or_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("SRL_TEST_KEY", secret)
    caplog.set_level(logging.DEBUG)
    with ScriptedChatServer([{"echo_auth": True, "status": 401}]) as server:
        cfg = endpoint_config(server, tmp_path, "collaboration.teacher.api_key_env=SRL_TEST_KEY")
        with pytest.raises(EndpointError) as error:
            generate_dataset(cfg, tmp_path / "data", n=1)
        assert server.requests[0]["_headers"]["authorization"] == f"Bearer {secret}"
    assert "401" in str(error.value) and secret not in str(error.value)
    assert secret not in caplog.text
    assert all(secret not in f.read_text() for f in (tmp_path / "data").iterdir())


def test_a_missing_key_variable_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SRL_TEST_KEY", raising=False)
    with ScriptedChatServer([]) as server:
        cfg = endpoint_config(server, tmp_path, "collaboration.teacher.api_key_env=SRL_TEST_KEY")
        with pytest.raises(ConfigError, match="SRL_TEST_KEY is not set"):
            generate_dataset(cfg, tmp_path / "data", n=1)


def test_retrieved_context_and_rules_reach_the_teacher_and_the_verifier(tmp_path: Path) -> None:
    knowledge = tmp_path / "knowledge"
    knowledge.mkdir()
    (knowledge / "notes.md").write_text("# Multiplying\nMultiply by a number: repeated addition.\n")
    (knowledge / "history.txt").write_text("Subtracting below zero gives a negative value.\n")
    (knowledge / "rules.yaml").write_text(
        "- name: no-words\n  text: Write each step as an equation, not in words.\n  forbid: '[Tt]imes'\n"
    )
    file = tmp_path / "problems.jsonl"
    file.write_text(json.dumps({"text": "Start with 7. Multiply by 3.", "answer": 21}) + "\n")
    wordy = {"steps": [{"action": "7 times 3 = 21"}, {"action": "Answer: 21"}]}
    right = {"steps": [{"action": "7*3=21"}, {"action": "Answer: 21"}]}
    with ScriptedChatServer([json.dumps(wordy), json.dumps(right)]) as server:
        cfg = endpoint_config(server, tmp_path, f"collaboration.retrieval.knowledge_dir={knowledge}")
        generate_dataset(cfg, tmp_path / "data", problems_file=str(file))
        first, retry = (r["messages"] for r in server.requests)
    assert "Write each step as an equation" in first[0]["content"]
    assert "repeated addition" in first[1]["content"] and "negative value" not in first[1]["content"]
    assert "breaks rule 'no-words'" in retry[-1]["content"]
    [row], _ = load_dataset(tmp_path / "data")
    assert row.provenance["context_ids"] == ["notes.md#0"] and row.provenance["attempts"] == 2


def test_a_judge_correction_is_kept_only_when_it_checks_out(tmp_path: Path) -> None:
    p = problems(1)[0]
    wrong_fix = json.loads(solution_json(p, wrong=True))
    right_fix = json.loads(solution_json(p))
    judge_replies = [
        json.dumps({"score": 0.2, "feedback": "step 1 is sloppy", "corrected": wrong_fix}),
        json.dumps({"score": 0.3, "feedback": "tidy it", "corrected": right_fix}),
    ]
    tidier = solution_json(p).replace("The last value is the answer.", "Done.")  # a new answer, a new verdict
    with (
        ScriptedChatServer([solution_json(p), tidier]) as teacher,
        ScriptedChatServer(judge_replies) as judge,
    ):
        judge_endpoint = f"{{base_url: '{judge.base_url}', model: judge-m, api_key_env: null}}"
        cfg = endpoint_config(teacher, tmp_path, f"collaboration.judge={judge_endpoint}")
        manifest = generate_dataset(cfg, tmp_path / "data", n=1)
        retry = teacher.requests[1]["messages"]
    assert "step 1 is sloppy" in retry[-1]["content"]  # the wrong correction was refused; feedback sent
    [row], _ = load_dataset(tmp_path / "data")
    assert row.provenance["corrected_by"].startswith("judge-m@") and row.provenance["attempts"] == 2
    assert row.provenance["checks"] == {"rules": 1.0, "outcome": 1.0, "judge_of_original": 0.3}
    assert set(manifest["usage"]) == {"teacher-m", "judge-m"}


def test_pii_is_redacted_before_rows_are_stored(tmp_path: Path) -> None:
    file = tmp_path / "problems.jsonl"
    file.write_text(
        json.dumps({"text": "Start with 3. Add 4. (ask jane.doe@example.com)", "answer": 7}) + "\n"
    )
    reply = json.dumps(
        {"steps": [{"action": "3+4=7", "reasoning": "mail jane.doe@example.com"}, {"action": "Answer: 7"}]}
    )
    with ScriptedChatServer([reply]) as server:
        manifest = generate_dataset(
            endpoint_config(server, tmp_path), tmp_path / "data", problems_file=str(file)
        )
    text = (tmp_path / "data" / "trajectories.jsonl").read_text()
    assert manifest["count"] == 1 and "jane.doe" not in text and "[EMAIL]" in text
    [row], _ = load_dataset(tmp_path / "data")
    assert row.provenance["pii_redacted"] == {"email": 2}


def test_the_teacher_proposes_new_problems_without_near_duplicates(tmp_path: Path) -> None:
    proposals = [
        {"text": "Start with 2. Add 3. Multiply by 2.", "answer": 10},
        {"text": "Start with 2. Add 3. Multiply by 2!", "answer": 10},  # a near-duplicate
        {"text": "Start with 9. Subtract 4.", "answer": 5},
    ]

    def respond(request: dict[str, Any]) -> str:
        system = request["messages"][0]["content"]
        if "new problems" in system:
            return json.dumps({"problems": proposals})
        prompt = request["messages"][1]["content"]
        start = 2 if "Start with 2." in prompt else 9
        steps = ["2+3=5", "5*2=10", "Answer: 10"] if start == 2 else ["9-4=5", "Answer: 5"]
        return json.dumps({"steps": [{"action": a} for a in steps]})

    with ScriptedChatServer(respond) as server:
        cfg = endpoint_config(server, tmp_path, "collaboration.problems.source=generate")
        manifest = generate_dataset(cfg, tmp_path / "data", n=2)
    assert manifest["count"] == 2 and manifest["near_duplicates_dropped"] == 1
    assert len((tmp_path / "data" / "problems.jsonl").read_text().splitlines()) == 2


def test_a_local_model_teacher_is_asked_and_its_nonsense_rejected(tmp_path: Path) -> None:
    cfg = build_config(
        overrides=[
            "collaboration.teacher={local_model: tiny, max_tokens: 8}",
            "collaboration.max_regeneration_attempts=1",
            "collaboration.requests.concurrency=2",
        ]
    )
    manifest = generate_dataset(cfg, tmp_path / "data", n=2)
    # a random-init model writes no JSON: each problem is tried twice, then set aside with the reason,
    # and the run stops after max_problems_factor x n problems instead of trying without end
    assert (manifest["count"], manifest["rejected"], manifest["attempts"]) == (0, 6, 12)
    assert manifest["exhausted"] is True
    letters = (tmp_path / "data" / REJECTED_FILE).read_text().splitlines()
    assert json.loads(letters[0])["reasons"][0].startswith("unreadable reply")


def test_generate_cli_prints_the_counts_and_refuses_a_bad_problem_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "--task", "arithmetic", "--n", "30", "--out", str(tmp_path / "d")])
    assert exit_.value.code == 0
    assert "wrote 30 trajectories (0 rejected, 30 teacher attempts)" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"txt": "typo"}\n')
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "--problems", str(bad), "--out", str(tmp_path / "e")])
    assert exit_.value.code == 2
    assert "bad.jsonl:2" in capsys.readouterr().err


def test_ctrl_c_keeps_every_decided_row_and_the_same_command_continues(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    def command(server: ScriptedChatServer) -> list[str]:
        teacher = f"{{base_url: '{server.base_url}', model: m, api_key_env: null}}"
        return [sys.executable, "-m", "srl_rlvr", "generate", "--n", "24", "--out", str(tmp_path / "d"),
                f"collaboration.teacher={teacher}", "collaboration.requests.concurrency=4",
                "collaboration.requests.cache_dir=null"]  # fmt: skip

    answer = lambda request: solution_json(problem_in(request))  # noqa: E731
    # The server answers 8 requests, then holds every later one until the test has interrupted the
    # run: the interrupt always lands mid-run, however slow or loaded the machine is.
    gate, answered = threading.Event(), itertools.count()

    def held(request: dict[str, Any]) -> str:
        if next(answered) >= 8:
            gate.wait(timeout=300)
        return answer(request)

    with ScriptedChatServer(held) as server:
        try:
            run = subprocess.Popen(command(server), stderr=subprocess.PIPE, text=True)
            rows = tmp_path / "d" / "trajectories.jsonl"
            while not (rows.is_file() and len(rows.read_text().splitlines()) >= 8):
                assert run.poll() is None, run.communicate()[1]
                time.sleep(0.05)
            run.send_signal(signal.SIGINT)
            _, err = run.communicate(timeout=300)
        finally:
            gate.set()
        kept = len(rows.read_text().splitlines())
        sent_before = len(server.requests)
    assert run.returncode == 130 and "rerun to continue" in " ".join(err.split()), err
    assert kept == 8 and sent_before - kept <= 4  # at most the requests in flight are lost

    with ScriptedChatServer(answer) as server:
        subprocess.run(command(server), check=True, capture_output=True)
        assert len(server.requests) <= 24 - kept + 4 and len(server.requests) >= 24 - kept
    rows_after, manifest = load_dataset(tmp_path / "d")
    assert manifest["count"] == 24 and [r.problem for r in rows_after] == [p.text for p in problems(24)]


def test_concurrent_workers_waiting_on_the_problem_generator_do_not_overshoot_n(tmp_path: Path) -> None:
    shown_seed = ARITHMETIC.sample(5, seed=0, split="train")[0].text
    batch = iter(range(1000))

    def respond(request: dict[str, Any]) -> str:
        if "new problems" in request["messages"][0]["content"]:
            k = next(batch)
            fresh = [{"text": f"Start with {k}. Add {k + 1}. Subtract {k + 2}.", "answer": k - 1}]
            return json.dumps({"problems": [{"text": shown_seed, "answer": 0}, *fresh]})
        prompt = request["messages"][1]["content"]
        k = int(prompt.split("Start with ")[1].split(".")[0])
        steps = [f"{k}+{k + 1}={2 * k + 1}", f"{2 * k + 1}-{k + 2}={k - 1}", f"Answer: {k - 1}"]
        return json.dumps({"steps": [{"action": a} for a in steps]})

    with ScriptedChatServer(respond) as server:
        cfg = endpoint_config(
            server, tmp_path, "collaboration.problems.source=generate", "collaboration.requests.concurrency=4"
        )
        manifest = generate_dataset(cfg, tmp_path / "data", n=2)
    rows, _ = load_dataset(tmp_path / "data")
    assert manifest["count"] == len(rows) == 2
    assert shown_seed not in {r.problem for r in rows}  # a copy of a shown example is a duplicate
