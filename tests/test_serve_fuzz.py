"""The server's API fuzzed with schemathesis against the real server on 127.0.0.1: whatever a client
sends, valid or not, the answer is never a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from srl_rlvr.serve.config import build_serve_config
from srl_rlvr.serve.openai_api import openapi_document
from srl_rlvr.serve.run import serve_in_thread

KEY = "sk-test-fuzz"


def served_names_only(document: dict) -> dict:
    """The document with `model` drawn from what this server serves (and one name it does not), so
    the fuzzed bodies reach generation and the guardrails, not only the 404 for unknown names."""
    for name in ("ChatRequest", "CompletionRequest"):
        document["components"]["schemas"][name]["properties"]["model"] = {
            "enum": ["tiny", "calculator", "nope"]
        }
    return document


SCHEMA = schemathesis.openapi.from_dict(served_names_only(openapi_document()))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("serve-fuzz")
    (tmp / "keys").write_text(f"fuzzer: {KEY}\n")
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
            },
            "limits": {"max_tokens": 4, "max_body_bytes": 20_000},
            "audit_log": str(tmp / "audit.jsonl"),
            "records": {"url": f"sqlite:///{tmp / 'records.db'}"},
        }
    )
    with serve_in_thread(config, KEY) as url:
        yield url


@SCHEMA.parametrize()
@settings(max_examples=60, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case: schemathesis.Case, server: str) -> None:
    response = case.call(base_url=server, headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
    assert response.status_code < 500, (
        f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"
    )
