"""One OpenAI-compatible chat client for every LLM teacher and judge.

The `openai` client's own retries are switched off (`max_retries=0`) so that the retry loop, backoff,
circuit breaker and request counts are ours and visible in `usage`. Backoff is "full jitter"
(Brooks, "Exponential Backoff And Jitter", AWS Architecture Blog 2015): wait = uniform(0, min(cap,
base * 2**attempt)). Answers can be cached on disk so a re-run of a pipeline stage costs nothing.
The API key never appears in an exception message, a log record or `usage`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import random
import re
import tempfile
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import openai

from srl_rlvr.errors import EndpointDown, EndpointError
from srl_rlvr.generate.breaker import CircuitBreaker

log = logging.getLogger(__name__)

NO_KEY = "EMPTY"  # what local servers (vLLM, llama.cpp, Ollama) accept when they need no key
RETRYABLE_STATUS = {408, 429}  # and every 5xx


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    """Retries after the first try, on timeouts, connection errors, 429 and 5xx."""
    backoff_s: float = 0.5
    """First wait; doubles each retry (full jitter: uniform(0, min(backoff_max_s, backoff_s * 2**n)))."""
    backoff_max_s: float = 20.0
    """Cap on one wait, also on a server's Retry-After."""
    timeout_s: float = 60.0
    """Per request."""


@dataclass
class Usage:
    requests: int = 0
    """Requests sent over the network (each retry counts)."""
    cached: int = 0
    """Answers served from the disk cache."""
    retries: int = 0
    failures: int = 0
    """Requests that failed (timeouts, 429, 5xx, connection errors, 4xx)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class _Failure:
    """One failed request, described without secrets."""

    reason: str
    retryable: bool
    status: int | None = None
    retry_after_s: float | None = None


class ChatClient:
    """Sends chat requests to one endpoint and model, with retries, a circuit breaker, a disk cache and
    cost accounting. `api_key=None` sends a placeholder (local servers need none); the caller resolves
    environment variables. `role` only names the endpoint in error messages ("teacher", "judge").
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        retry: RetryPolicy = RetryPolicy(),
        breaker: CircuitBreaker | None = None,
        cache_dir: str | Path | None = None,
        price_per_1m: tuple[float, float] = (0.0, 0.0),
        rng: random.Random | None = None,
        role: str = "teacher",
    ) -> None:
        self.base_url = base_url
        self.model = model
        self.retry = retry
        self.breaker = breaker or CircuitBreaker()
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        self.price_per_1m = price_per_1m
        self.usage = Usage()
        self._rng = rng or random.Random()
        self._key = api_key
        self._where = f"{role} endpoint {base_url} (model {model})"
        self._json_mode_supported = True
        self._client = openai.AsyncOpenAI(
            api_key=api_key or NO_KEY, base_url=base_url, timeout=retry.timeout_s, max_retries=0
        )

    async def complete(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float = 0.7,
        max_tokens: int = 1024,
        json_mode: bool = False,
    ) -> str:
        """The assistant's answer. Raises `EndpointError` when the endpoint refuses the request or keeps
        failing, `EndpointDown` when the breaker is open (then nothing is sent)."""
        request = {
            "base_url": self.base_url,
            "model": self.model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "json_mode": json_mode,
        }
        cache_path = self._cache_path(request)
        if cache_path is not None and (hit := _read_cache(cache_path)) is not None:
            self.usage.cached += 1
            return hit["content"]

        tries = self.retry.max_retries + 1
        attempt = 0
        while True:
            if not self.breaker.allow():
                raise self._down()
            use_json = json_mode and self._json_mode_supported
            self.usage.requests += 1
            try:
                response = await self._client.chat.completions.create(
                    model=self.model,
                    messages=messages,  # type: ignore[arg-type]
                    temperature=temperature,
                    max_tokens=max_tokens,
                    response_format={"type": "json_object"} if use_json else openai.omit,
                )
            except openai.APIError as exc:
                if _cancelled():
                    # The run is being interrupted (Ctrl-C cancels every worker): a request the HTTP
                    # stack turned into a connection error is the cancellation, not a failure to retry.
                    raise asyncio.CancelledError from exc
                self.usage.failures += 1
                failure = self._describe(exc)
                if use_json and failure.status == 400 and "response_format" in failure.reason:
                    # Many local servers lack JSON mode; the endpoint is up, so this is no breaker failure.
                    self.breaker.record_success()
                    self._json_mode_supported = False
                    log.info("%s lacks response_format; sending JSON-mode requests without it", self._where)
                    continue
                self.breaker.record_failure()
                if not failure.retryable:
                    raise EndpointError(self._refusal(failure)) from None
                attempt += 1
                if attempt >= tries:
                    raise EndpointError(
                        f"{self._where} failed {tries} times; last error: {failure.reason}"
                    ) from None
                if self.breaker.state == "open":
                    raise self._down(failure.reason) from None
                wait = self._wait(attempt - 1, failure)
                self.usage.retries += 1
                log.info(
                    "%s: %s; retry %d of %d in %.2fs", self._where, failure.reason, attempt, tries - 1, wait
                )
                await asyncio.sleep(wait)
                continue
            self.breaker.record_success()
            return self._accept(response, cache_path)

    async def aclose(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _accept(self, response: Any, cache_path: Path | None) -> str:
        if not getattr(response, "choices", None):
            raise EndpointError(f"{self._where} answered without any choices; is it a chat model?")
        content = response.choices[0].message.content or ""
        prompt = completion = 0
        if response.usage is not None:
            prompt, completion = response.usage.prompt_tokens or 0, response.usage.completion_tokens or 0
        self.usage.prompt_tokens += prompt
        self.usage.completion_tokens += completion
        self.usage.cost_usd += (prompt * self.price_per_1m[0] + completion * self.price_per_1m[1]) / 1e6
        if cache_path is not None:
            _write_cache(
                cache_path, {"content": content, "prompt_tokens": prompt, "completion_tokens": completion}
            )
        return content

    def _wait(self, retry_index: int, failure: _Failure) -> float:
        if failure.retry_after_s is not None:
            return min(failure.retry_after_s, self.retry.backoff_max_s)
        ceiling = min(self.retry.backoff_max_s, self.retry.backoff_s * 2**retry_index)
        return self._rng.uniform(0, ceiling)

    def _describe(self, exc: openai.APIError) -> _Failure:
        if isinstance(exc, openai.APITimeoutError):
            return _Failure(f"timed out after {self.retry.timeout_s:g}s", retryable=True)
        if isinstance(exc, openai.APIConnectionError):
            cause = f" ({exc.__cause__})" if exc.__cause__ else ""
            return _Failure(self._scrub(f"connection error{cause}"), retryable=True)
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            retry_after = _seconds(exc.response.headers.get("retry-after")) if status == 429 else None
            reason = self._scrub(f"{status} {_phrase(status)}: {_server_message(exc)}")
            return _Failure(reason, status in RETRYABLE_STATUS or status >= 500, status, retry_after)
        return _Failure(self._scrub(f"{type(exc).__name__}: {exc.message}"), retryable=False)

    def _refusal(self, failure: _Failure) -> str:
        hint = "; check the API key environment variable" if failure.status in (401, 403) else ""
        return f"{self._where} refused the request: {failure.reason}{hint}"

    def _down(self, last: str | None = None) -> EndpointDown:
        tail = f"; last error: {last}" if last else ""
        return EndpointDown(
            f"{self._where} failed {self.breaker.consecutive_failures} times in a row; its circuit breaker "
            f"is open for {self.breaker.cooldown_s:g}s, so no request was sent{tail}"
        )

    def _scrub(self, text: str) -> str:
        text = re.sub(r"Bearer\s+\S+", "Bearer ***", text)
        if self._key:
            text = text.replace(self._key, "***")
        return " ".join(text.split())[:300]

    def _cache_path(self, request: dict[str, Any]) -> Path | None:
        if self.cache_dir is None:
            return None
        canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        key = hashlib.sha256(canonical.encode()).hexdigest()
        return self.cache_dir / key[:2] / f"{key}.json"


def _read_cache(path: Path) -> dict[str, Any] | None:
    """The cached answer, or None on a miss; a corrupt file is a miss (it is rewritten on success)."""
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("content"), str):
        return None
    return entry


def _write_cache(path: Path, entry: dict[str, Any]) -> None:
    """Atomic: a crash mid-write leaves no half file that a later run would read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(entry, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    if isinstance(body, str) and body:
        return body
    return exc.message


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


def _seconds(header: str | None) -> float | None:
    """Retry-After as seconds; the HTTP-date form is ignored (then the jittered backoff applies)."""
    try:
        seconds = float(header) if header is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def _cancelled() -> bool:
    """Whether the current task has been asked to stop, even if a library swallowed the CancelledError."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
