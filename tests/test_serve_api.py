"""The server's OpenAI-compatible API, driven by the real `openai` client against the real server on
127.0.0.1 serving the tiny model: chat, completions, streaming, models, keys, limits and adapters."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest
from serve_helpers import make_adapter

from srl_rlvr.serve.config import build_serve_config
from srl_rlvr.serve.run import serve_in_thread

KEY = "sk-test-alice"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("serve-api")
    keys = tmp / "keys.txt"
    keys.write_text(f"alice: {KEY}\n# a comment\ncarol: sk-test-carol\n")
    config = build_serve_config(
        {
            "port": 0,
            "device": "cpu",
            "models": {
                "tiny": {"path": "tiny"},
                "tuned": {"path": make_adapter(tmp / "tuned", seed=1), "base": "tiny"},
            },
            "roles": {"assistant": {"primary": "tuned", "backups": ["tiny"]}},
            "auth": {
                "api_keys_env": None,
                "keys_file": str(keys),
                "requests_per_second": 5,
                "burst": 20,
                "admin_keys": ["alice"],
            },
            "limits": {"max_body_bytes": 20_000, "max_tokens": 64},
            "audit_log": str(tmp / "audit.jsonl"),
            "records": {"url": f"sqlite:///{tmp / 'records.db'}"},
        }
    )
    with serve_in_thread(config, KEY) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)


def get(url: str, key: str | None = KEY) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_chat_completion_answers_a_role_through_the_openai_client(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": "Hello!"}], max_tokens=6
    )
    assert reply.object == "chat.completion" and reply.model == "assistant"
    assert reply.choices[0].message.role == "assistant"
    assert isinstance(reply.choices[0].message.content, str)
    assert reply.usage.completion_tokens <= 6 < reply.usage.total_tokens


def test_text_completion_stops_at_max_tokens(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=5)
    assert reply.object == "text_completion"
    assert reply.choices[0].finish_reason in ("length", "stop")
    assert reply.usage.completion_tokens <= 5


def test_streamed_chat_adds_up_to_the_same_answer(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Tell me a long story."}]
    whole = client.chat.completions.create(model="tiny", messages=messages, max_tokens=40)
    stream = client.chat.completions.create(model="tiny", messages=messages, max_tokens=40, stream=True)
    chunks = list(stream)
    assert len(chunks) > 3  # role, several content pieces, finish
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_streamed_completion_is_server_sent_events_ending_with_done(server: str) -> None:
    body = json.dumps({"model": "tiny", "prompt": "abc", "max_tokens": 20, "stream": True}).encode()
    request = urllib.request.Request(
        f"{server}/v1/completions",
        data=body,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.read().decode().split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0].removeprefix("data: "))["object"] == "text_completion"


def test_models_lists_roles_base_models_and_adapters(client: openai.OpenAI) -> None:
    listed = {m.id: m for m in client.models.list()}
    assert {"assistant", "tiny", "tuned"} <= set(listed)
    assert listed["tuned"].model_extra["parent"] == "tiny"
    assert listed["assistant"].model_extra["root"] == "tuned"


def test_a_request_without_a_valid_key_gets_401_but_the_orchestrators_probes_need_none(server: str) -> None:
    stranger = openai.OpenAI(base_url=f"{server}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="invalid API key"):
        stranger.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}])
    assert get(f"{server}/v1/models", key=None)[0] == 401
    assert get(f"{server}/metrics", key=None)[0] == 401
    assert get(f"{server}/health", key=None) == (200, '{"status":"ok","worker_restarts":0}')
    assert get(f"{server}/ready", key=None) == (200, '{"status":"ready"}')


def test_serve_without_keys_stops_before_announcing_an_address(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from srl_rlvr.cli import main

    monkeypatch.delenv("SRL_RLVR_API_KEYS", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["serve", "start", str(Path(__file__).parents[1] / "examples" / "serve.yaml")])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert "serving" not in captured.out and "no API keys" in captured.err


def test_oversized_body_gets_413(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x" * 30_000}])
    assert caught.value.status_code == 413
    assert "max_body_bytes" in caught.value.message


def test_max_tokens_over_the_limit_and_unknown_models_get_clear_4xx(client: openai.OpenAI) -> None:
    hello = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.BadRequestError, match="max_tokens 1000 is over this server's limit of 64"):
        client.chat.completions.create(model="tiny", messages=hello, max_tokens=1000)
    with pytest.raises(
        openai.BadRequestError, match="max_tokens: Input should be greater than or equal to 1"
    ):
        client.chat.completions.create(model="tiny", messages=hello, max_tokens=0)
    with pytest.raises(openai.BadRequestError, match=r"invalid request: n"):
        client.chat.completions.create(model="tiny", messages=hello, n=0)
    with pytest.raises(openai.BadRequestError, match=r"n 33 is over this server's batch size 32"):
        client.chat.completions.create(model="tiny", messages=hello, n=33)
    with pytest.raises(openai.NotFoundError, match="model 'gpt-9' does not exist; served: assistant"):
        client.chat.completions.create(model="gpt-9", messages=hello)


def test_a_key_over_its_rate_limit_gets_429_with_retry_after(server: str) -> None:
    statuses = [get(f"{server}/v1/models", key="sk-test-carol")[0] for _ in range(30)]
    assert statuses[:20] == [200] * 20  # the burst
    assert 429 in statuses[20:]
    request = urllib.request.Request(f"{server}/v1/models", headers={"Authorization": "Bearer sk-test-carol"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request)
    assert caught.value.code == 429 and int(caught.value.headers["Retry-After"]) >= 1


def test_adapters_load_and_unload_at_runtime(client: openai.OpenAI, tmp_path: Path) -> None:
    folder = make_adapter(tmp_path / "fresh", seed=2)
    loaded = client.post("/load_lora_adapter", body={"lora_name": "fresh", "lora_path": folder}, cast_to=str)
    assert "added successfully" in loaded
    prompt = [{"role": "user", "content": "Which adapter are you?"}]
    reply = client.chat.completions.with_raw_response.create(model="fresh", messages=prompt, max_tokens=4)
    assert reply.headers["x-served-by"] == "fresh"
    assert "fresh" in {m.id for m in client.models.list()}

    client.post("/unload_lora_adapter", body={"lora_name": "fresh"}, cast_to=str)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="fresh", messages=prompt, max_tokens=4)
    with pytest.raises(openai.BadRequestError, match="role\\(s\\) assistant use 'tuned'"):
        client.post("/unload_lora_adapter", body={"lora_name": "tuned"}, cast_to=str)


def test_ready_and_metrics_report_per_model(client: openai.OpenAI, server: str) -> None:
    client.completions.create(model="tiny", prompt="count me", max_tokens=2)
    assert get(f"{server}/ready")[0] == 200
    status, text = get(f"{server}/metrics")
    assert status == 200
    assert 'srl_rlvr_requests_total{model="tiny",route="completions",status="200"}' in text
    assert 'srl_rlvr_request_latency_seconds_bucket{le="0.01",model="tiny",route="completions"}' in text
    assert 'srl_rlvr_tokens_total{kind="completion",model="tiny"}' in text


def post_raw(url: str, body: bytes, key: str | None = KEY) -> tuple[int, str]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_a_body_that_is_not_utf8_or_a_bool_for_max_tokens_gets_400(server: str) -> None:
    status, text = post_raw(f"{server}/v1/completions", b'{"model": "tiny", "prompt": "\xff\xfe"}')
    assert status == 400 and "not UTF-8" in text
    body = json.dumps({"model": "tiny", "prompt": "hi", "max_tokens": True}).encode()
    status, text = post_raw(f"{server}/v1/completions", body)
    assert status == 400 and "max_tokens" in text


def test_requests_refused_before_routing_are_counted_on_metrics(server: str) -> None:
    assert post_raw(f"{server}/v1/chat/completions", b"{}", key="sk-nobody")[0] == 401
    assert post_raw(f"{server}/v1/completions", b"not json")[0] == 400
    text = get(f"{server}/metrics")[1]
    assert 'srl_rlvr_requests_total{model="-",route="chat",status="401"}' in text
    assert 'srl_rlvr_requests_total{model="-",route="completions",status="400"}' in text


def test_an_empty_completion_prompt_starts_from_the_document_boundary(client: openai.OpenAI) -> None:
    # Found by the API fuzzer: a prompt of no tokens crashed the model and came back as a 503.
    reply = client.completions.create(model="tiny", prompt="", max_tokens=2)
    assert reply.choices[0].finish_reason in ("length", "stop")
