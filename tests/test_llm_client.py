"""ChatClient against a real HTTP server on 127.0.0.1 through the real `openai` client; the breaker alone
with a fake clock (time is the outside edge of that pure state machine)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from chat_server import ScriptedChatServer

from srl_rlvr.errors import EndpointDown, EndpointError
from srl_rlvr.generate.breaker import CircuitBreaker
from srl_rlvr.generate.llm_client import ChatClient, RetryPolicy

MODEL = "scripted-model"
QUESTION = [{"role": "user", "content": "What is two plus two?"}]
FAST = RetryPolicy(backoff_s=0.01, backoff_max_s=0.05, timeout_s=5.0)
KEY = "sk-test-secret-123"


def client_at(base_url: str, **options: Any) -> ChatClient:
    """A client with fast retries; create it inside the event loop that uses it."""
    return ChatClient(base_url, MODEL, **{"retry": FAST, **options})


# --- answers, retries, errors -------------------------------------------------------------------------


def test_a_scripted_answer_comes_back() -> None:
    with ScriptedChatServer(["4"]) as server:

        async def scenario() -> str:
            async with client_at(server.base_url) as client:
                return await client.complete(QUESTION, temperature=0.0, max_tokens=16)

        assert asyncio.run(scenario()) == "4"
    sent = server.requests[0]
    assert (sent["model"], sent["messages"], sent["temperature"], sent["max_tokens"]) == (
        MODEL,
        QUESTION,
        0.0,
        16,
    )


def test_a_500_then_an_answer_is_retried_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="srl_rlvr")
    with ScriptedChatServer([{"status": 500, "message": "overloaded"}, "4"]) as server:

        async def scenario() -> tuple[str, ChatClient]:
            async with client_at(server.base_url) as client:
                return await client.complete(QUESTION), client

        answer, client = asyncio.run(scenario())
    assert answer == "4"
    assert (client.usage.requests, client.usage.retries, client.usage.failures) == (2, 1, 1)
    assert "500 Internal Server Error: overloaded; retry 1 of 4 in" in caplog.text


def test_a_429_waits_for_retry_after() -> None:
    with ScriptedChatServer([{"status": 429, "retry_after": 0.3}, "4"]) as server:

        async def scenario() -> str:
            async with client_at(server.base_url, retry=RetryPolicy(backoff_s=0.01, backoff_max_s=5)) as c:
                return await c.complete(QUESTION)

        start = time.monotonic()
        assert asyncio.run(scenario()) == "4"
        assert time.monotonic() - start >= 0.3  # jittered backoff alone would wait at most 0.01 s


def test_a_long_retry_after_is_capped_at_backoff_max() -> None:
    with ScriptedChatServer([{"status": 429, "retry_after": 120}, "4"]) as server:

        async def scenario() -> str:
            async with client_at(server.base_url) as client:  # backoff_max_s=0.05
                return await client.complete(QUESTION)

        start = time.monotonic()
        assert asyncio.run(scenario()) == "4"
        assert time.monotonic() - start < 60  # far below the 120 s asked for, however loaded the machine


def test_a_timeout_is_retried() -> None:
    with ScriptedChatServer([{"content": "too late", "delay": 1.0}, "4"]) as server:

        async def scenario() -> tuple[str, ChatClient]:
            async with client_at(server.base_url, retry=RetryPolicy(backoff_s=0.01, timeout_s=0.3)) as c:
                return await c.complete(QUESTION), c

        answer, client = asyncio.run(scenario())
    assert answer == "4"
    assert (client.usage.requests, client.usage.failures) == (2, 1)


def test_a_401_fails_at_once_without_retrying_and_hides_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with ScriptedChatServer([{"echo_auth": True, "status": 401}, "never sent"]) as server:

        async def scenario() -> ChatClient:
            async with client_at(server.base_url, api_key=KEY) as client:
                with pytest.raises(EndpointError) as refused:
                    await client.complete(QUESTION)
                message = str(refused.value)
                assert message.startswith(f"teacher endpoint {server.base_url} (model {MODEL}) refused")
                assert "401 Unauthorized: invalid credentials: Bearer ***" in message
                assert "check the API key environment variable" in message
                assert KEY not in message
                return client

        client = asyncio.run(scenario())
    assert server.requests[0]["_headers"]["authorization"] == f"Bearer {KEY}"  # the server did echo it
    assert len(server.requests) == 1
    assert KEY not in caplog.text
    assert KEY not in json.dumps(client.usage.as_dict())


def test_retries_are_exhausted_with_the_last_error() -> None:
    with ScriptedChatServer(lambda body: {"status": 500, "message": "boom"}) as server:

        async def scenario() -> None:
            async with client_at(server.base_url) as client:
                await client.complete(QUESTION)

        with pytest.raises(
            EndpointError, match=r"failed 5 times; last error: 500 Internal Server Error: boom"
        ):
            asyncio.run(scenario())
    assert len(server.requests) == 5  # the first try and max_retries=4


def test_an_unreachable_endpoint_is_a_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the client connects

    async def scenario() -> None:
        async with client_at(f"http://127.0.0.1:{port}/v1", retry=RetryPolicy(1, 0.01)) as client:
            await client.complete(QUESTION)

    with pytest.raises(EndpointError, match="failed 2 times; last error: connection error"):
        asyncio.run(scenario())


def test_the_breaker_stops_requests_to_a_dead_endpoint() -> None:
    breaker = CircuitBreaker(failures=3, cooldown_s=60)
    with ScriptedChatServer(lambda body: {"status": 500}) as server:

        async def scenario() -> None:
            async with client_at(server.base_url, breaker=breaker) as client:
                with pytest.raises(EndpointDown, match=r"failed 3 times in a row; .* open for 60s"):
                    await client.complete(QUESTION)  # the third failure opens it mid-retries
                with pytest.raises(EndpointDown):
                    await client.complete(QUESTION)
            async with client_at(server.base_url, breaker=breaker, role="judge") as judge:
                with pytest.raises(EndpointDown, match=r"^judge endpoint"):
                    await judge.complete(QUESTION)  # a client sharing the breaker is stopped too

        asyncio.run(scenario())
    assert len(server.requests) == 3


def test_many_requests_are_served_at_once() -> None:
    # The server answers only once all 16 requests are in flight together: a client that sent them
    # one after another would never get its first answer (the barrier breaks, every request fails).
    everyone_in = threading.Barrier(16, timeout=120)

    def together(body: dict[str, Any]) -> str:
        everyone_in.wait()
        return "4"

    with ScriptedChatServer(together) as server:

        async def scenario() -> list[str]:
            async with client_at(server.base_url, retry=RetryPolicy(backoff_s=0.01, timeout_s=300)) as client:
                return await asyncio.gather(*(client.complete(QUESTION) for _ in range(16)))

        assert asyncio.run(scenario()) == ["4"] * 16


# --- cache, accounting, JSON mode ---------------------------------------------------------------------


def test_a_cached_answer_costs_nothing(tmp_path: Path) -> None:
    with ScriptedChatServer(["4", "a different answer"]) as server:

        async def scenario() -> tuple[str, ChatClient]:
            async with client_at(server.base_url, cache_dir=tmp_path, price_per_1m=(1.0, 1.0)) as first:
                await first.complete(QUESTION)
            async with client_at(server.base_url, cache_dir=tmp_path, price_per_1m=(1.0, 1.0)) as rerun:
                return await rerun.complete(QUESTION), rerun

        answer, rerun = asyncio.run(scenario())
    assert answer == "4"
    assert len(server.requests) == 1
    assert (rerun.usage.cached, rerun.usage.requests, rerun.usage.cost_usd) == (1, 0, 0.0)


def test_a_corrupt_cache_file_is_a_miss(tmp_path: Path) -> None:
    with ScriptedChatServer(["4", "4 again"]) as server:

        async def scenario() -> str:
            async with client_at(server.base_url, cache_dir=tmp_path) as client:
                await client.complete(QUESTION)
                (cached,) = tmp_path.rglob("*.json")
                cached.write_text("{not json")
                return await client.complete(QUESTION)

        assert asyncio.run(scenario()) == "4 again"
    assert len(server.requests) == 2


def test_tokens_and_cost_are_counted() -> None:
    # The test server counts whitespace words: 5 prompt tokens, 4 completion tokens per call.
    with ScriptedChatServer(["the answer is four"] * 2) as server:

        async def scenario() -> ChatClient:
            async with client_at(server.base_url, price_per_1m=(3.0, 15.0)) as client:
                await client.complete(QUESTION)
                await client.complete(QUESTION)
                return client

        usage = asyncio.run(scenario()).usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (10, 8)
    assert usage.cost_usd == pytest.approx((10 * 3.0 + 8 * 15.0) / 1e6)
    assert usage.as_dict()["requests"] == 2


def test_json_mode_falls_back_when_the_server_lacks_it() -> None:
    def server_without_json_mode(body: dict[str, Any]) -> Any:
        if "response_format" in body:
            return {"status": 400, "message": "unknown field: response_format"}
        return '{"ok": true}'

    with ScriptedChatServer(server_without_json_mode) as server:

        async def scenario() -> list[str]:
            async with client_at(server.base_url) as client:
                return [await client.complete(QUESTION, json_mode=True) for _ in range(2)]

        assert asyncio.run(scenario()) == ['{"ok": true}'] * 2
    asked_for_json = ["response_format" in r for r in server.requests]
    assert asked_for_json == [True, False, False]  # tried once, then remembered
    assert server.requests[0]["response_format"] == {"type": "json_object"}


# --- the circuit breaker on its own -------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_after_n_consecutive_failures() -> None:
    breaker = CircuitBreaker(failures=3, cooldown_s=10, clock=FakeClock())
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # a success in between resets the count
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()


def test_after_the_cooldown_the_breaker_lets_exactly_one_trial_through() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, cooldown_s=10, clock=clock)
    breaker.record_failure()
    clock.now = 9.9
    assert not breaker.allow()
    clock.now = 10.0
    assert breaker.state == "half_open"
    assert breaker.allow()
    assert not breaker.allow()  # a second caller waits for the trial's outcome


def test_a_successful_trial_closes_the_breaker() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, cooldown_s=10, clock=clock)
    breaker.record_failure()
    clock.now = 10.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.allow() and breaker.allow()


def test_a_failed_trial_reopens_the_breaker_for_another_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=3, cooldown_s=10, clock=clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now = 10.0
    assert breaker.allow()
    breaker.record_failure()  # one failure is enough in half-open
    assert breaker.state == "open"
    clock.now = 19.9
    assert not breaker.allow()
    clock.now = 20.0
    assert breaker.allow()


def test_a_trial_that_never_reports_is_replaced_after_a_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, cooldown_s=10, clock=clock)
    breaker.record_failure()
    clock.now = 10.0
    assert breaker.allow()  # this caller is cancelled and never reports
    clock.now = 20.0
    assert breaker.allow()
