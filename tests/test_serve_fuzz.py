"""The server's API fuzzed against the real server on 127.0.0.1: whatever a client sends, valid or not,
the answer is never a 5xx (schemathesis over the OpenAPI document, and hypothesis over raw bodies that
JSON allows but Python chokes on: lone surrogates, deep nesting, huge integers), and no request can
take a model down."""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.request
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srl_rlvr.serve.config import build_serve_config
from srl_rlvr.serve.models import UnusablePrompt
from srl_rlvr.serve.openai_api import (
    LoadAdapterRequest,
    ShiftRequest,
    UnloadAdapterRequest,
    openapi_document,
)
from srl_rlvr.serve.run import serve_in_thread
from srl_rlvr.serve.sampling_params import RowSampling
from srl_rlvr.serve.server import Server

KEY, OTHER = "sk-test-fuzz", "sk-test-other"


def fuzzable(document: dict) -> dict:
    """The document with `model` drawn from what this server serves (and one name it does not), so
    the fuzzed bodies reach generation and the guardrails, not only the 404 for unknown names; plus
    the admin routes that load nothing from outside (a shift only between served names)."""
    schemas = document["components"]["schemas"]
    for name in ("ChatRequest", "CompletionRequest"):
        schemas[name]["properties"]["model"] = {"enum": ["tiny", "calculator", "nope"]}
    for model in (LoadAdapterRequest, ShiftRequest, UnloadAdapterRequest):
        schemas[model.__name__] = model.model_json_schema()
    schemas["ShiftRequest"]["properties"]["to"] = {"enum": ["tiny", "nope"]}
    schemas["LoadAdapterRequest"]["properties"]["lora_path"] = {"enum": ["/nonexistent", "tiny"]}

    def post(schema: str) -> dict:
        body = {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}
        return {
            "post": {"requestBody": {"required": True, **body}, "responses": {"200": {"description": "OK"}}}
        }

    document["paths"]["/admin/roles"] = {"get": {"responses": {"200": {"description": "OK"}}}}
    document["paths"]["/admin/shift"] = post("ShiftRequest")
    document["paths"]["/v1/load_lora_adapter"] = post("LoadAdapterRequest")
    document["paths"]["/v1/unload_lora_adapter"] = post("UnloadAdapterRequest")
    return document


SCHEMA = schemathesis.openapi.from_dict(fuzzable(openapi_document()))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Server]:
    tmp = tmp_path_factory.mktemp("serve-fuzz")
    (tmp / "keys").write_text(f"fuzzer: {KEY}\nother: {OTHER}\n")
    config = build_serve_config(
        {
            "port": 0,
            "device": "cpu",
            "models": {"tiny": {"path": "tiny"}},
            "roles": {"calculator": {"primary": "tiny", "task": "arithmetic"}},
            "auth": {
                "api_keys_env": None,
                "keys_file": str(tmp / "keys"),
                "requests_per_second": 1000,
                "burst": 1000,
                "admin_keys": ["fuzzer"],
            },
            "limits": {"max_tokens": 4, "max_body_bytes": 20_000, "header_timeout_s": 1},
            "audit_log": str(tmp / "audit.jsonl"),
            "records": {"url": f"sqlite:///{tmp / 'records.db'}"},
        }
    )
    server = Server(config)
    with serve_in_thread(config, KEY, server) as url:
        yield url, server


@pytest.fixture(scope="module")
def server(served: tuple[str, Server]) -> str:
    return served[0]


def send(url: str, path: str, body: bytes | None = None, key: str = KEY) -> tuple[int, Any]:
    request = urllib.request.Request(
        url + path, data=body, headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            text = response.read()
            return response.status, json.loads(text) if text.startswith(b"{") else text.decode()
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@SCHEMA.parametrize()
@settings(max_examples=60, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case: schemathesis.Case, server: str) -> None:
    response = case.call(base_url=server, headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
    assert response.status_code < 500, (
        f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"
    )


SURROGATE_TEXT = st.text(
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF) | st.characters(), min_size=1, max_size=8
).filter(lambda text: any(0xD800 <= ord(c) <= 0xDFFF for c in text))


def _with_text(route: str, text: str) -> dict[str, Any]:
    if route == "/v1/chat/completions":
        return {"model": "calculator", "max_tokens": 2, "messages": [{"role": "user", "content": text}]}
    if route == "/v1/completions":
        return {"model": "tiny", "max_tokens": 2, "prompt": text}
    return {"request_id": "chatcmpl-x", "rating": 1, "correction": text}


ROUTES = st.sampled_from(["/v1/chat/completions", "/v1/completions", "/v1/feedback"])
BODIES = st.one_of(
    # a lone surrogate, spelled as JSON spells it (json.dumps escapes it as \udxxx)
    st.tuples(ROUTES, SURROGATE_TEXT).map(lambda rt: (rt[0], json.dumps(_with_text(*rt)).encode())),
    # nesting past the decoder's recursion limit
    st.tuples(ROUTES, st.integers(1_100, 9_000)).map(
        lambda rn: (rn[0], b'{"model": "tiny", "messages": ' + b"[" * rn[1] + b"]" * rn[1] + b"}")
    ),
    # integers longer than Python converts to int
    st.tuples(ROUTES, st.integers(4_301, 9_000)).map(
        lambda rn: (rn[0], b'{"model": "tiny", "rating": ' + b"7" * rn[1] + b', "max_tokens": 1}')
    ),
)


@settings(max_examples=30, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=BODIES)
def test_bodies_python_cannot_take_get_a_one_line_400(case: tuple[str, bytes], server: str) -> None:
    route, body = case
    status, answer = send(server, route, body)
    assert status == 400, (route, body[:120], status, answer)
    message = answer["error"]["message"]
    assert message.strip() and "\n" not in message


def refusals(server: str, route: str) -> float:
    text = send(server, "/metrics")[1]
    pattern = rf'srl_rlvr_requests_total\{{model="-",route="{route}",status="400"\}} (\S+)'
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def test_deep_nesting_and_huge_integers_are_counted_on_metrics(server: str) -> None:
    before = refusals(server, "feedback")
    assert send(server, "/v1/feedback", b'{"request_id": ' + b"[" * 5_000 + b"]" * 5_000 + b"}")[0] == 400
    assert send(server, "/v1/feedback", b'{"request_id": "x", "rating": ' + b"1" * 5_000 + b"}")[0] == 400
    assert refusals(server, "feedback") == before + 2


def test_a_lone_surrogate_is_refused_and_the_model_and_the_records_keep_working(server: str) -> None:
    # The probe's request: it killed the model's thread (503 for every later request) and its record
    # made every flush of the record store fail.
    attack = b'{"model":"calculator","max_tokens":2,"messages":[{"role":"user","content":"\\ud800"}]}'
    status, body = send(server, "/v1/chat/completions", attack)
    assert status == 400 and "surrogate" in body["error"]["message"]
    assert body["error"]["param"] == "messages.0.content"
    assert send(server, "/v1/completions", b'{"model":"tiny","max_tokens":2,"prompt":"\\udfff"}')[0] == 400
    ok = {"model": "calculator", "max_tokens": 2, "messages": [{"role": "user", "content": "Start with 1."}]}
    status, reply = send(server, "/v1/chat/completions", json.dumps(ok).encode())
    assert status == 200
    rating = {"request_id": reply["id"], "rating": 1}
    assert send(server, "/v1/feedback", json.dumps(rating).encode())[0] == 200


def test_a_prompt_the_tokenizer_cannot_read_fails_that_request_not_the_model(
    served: tuple[str, Server],
) -> None:
    worker = served[1].models.workers["tiny"]
    bad = worker.submit("tiny", "\ud800", 2, RowSampling(0.0), [])
    with pytest.raises(UnusablePrompt):
        bad.future.result(timeout=120)
    [choice] = worker.submit("tiny", "Hello", 2, RowSampling(0.0), []).future.result(timeout=120)
    assert choice.completion_tokens <= 2
    assert worker.alive


def test_a_dead_model_thread_is_started_again_and_counted_on_health(served: tuple[str, Server]) -> None:
    url, server = served
    worker = server.models.workers["tiny"]
    before = send(url, "/health")[1]["worker_restarts"]

    def end_thread() -> None:
        raise SystemExit("a library called sys.exit()")

    with pytest.raises(SystemExit):
        worker.call(end_thread).result(timeout=120)
    [choice] = worker.submit("tiny", "Hello", 2, RowSampling(0.0), []).future.result(timeout=120)
    assert choice.completion_tokens <= 2
    assert send(url, "/health")[1]["worker_restarts"] == before + 1
    assert 'srl_rlvr_worker_restarts{model="tiny"}' in send(url, "/metrics")[1]


def test_a_client_that_never_finishes_its_headers_is_disconnected(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as slow:
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and nothing more
        assert slow.recv(1024) == b""  # the server closed it (header_timeout_s) instead of waiting


def test_admin_routes_and_other_keys_requests_are_for_admins_only(server: str) -> None:
    assert send(server, "/admin/roles", key=OTHER)[0] == 403
    ok = {"model": "tiny", "max_tokens": 1, "prompt": "Hi"}
    status, reply = send(server, "/v1/completions", json.dumps(ok).encode())
    status, body = send(
        server, "/v1/feedback", json.dumps({"request_id": reply["id"], "rating": -1}).encode(), OTHER
    )
    assert status == 403 and "only its own requests" in body["error"]["message"]
