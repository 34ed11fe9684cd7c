"""The OpenAI API's request and response shapes, so any OpenAI client works against the server unchanged.

Requests accept the fields clients send and ignore the sampling knobs the server does not implement
(top_p, penalties, logprobs, seed); `n` must be 1. Errors use OpenAI's JSON error shape. Streaming sends
the finished answer in chunks (Server-Sent Events ending with `data: [DONE]`): HF generation produces
the whole text at once; true token streaming comes with the fast engine.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from srl_rlvr.serve.generation import Completion

STREAM_CHUNK_CHARS = 16  # characters per streamed delta
MAX_CORRECTION_CHARS = 20_000  # a correction is one answer, not a document; it is stored for training


class ApiError(Exception):
    """An HTTP error in OpenAI's shape; the message says what the client must change."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        kind = {
            401: "authentication_error",
            403: "permission_error",
            404: "not_found_error",
            429: "rate_limit_error",
        }
        default = "invalid_request_error" if self.status < 500 else "server_error"
        return {
            "error": {
                "message": self.message,
                "type": kind.get(self.status, default),
                "param": self.param,
                "code": self.code,
            }
        }


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: StrictInt | None = Field(None, ge=1)  # strict: `true` is not 1
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: Literal[1] = 1

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    @property
    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class ChatRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)

    def plain_messages(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.text()} for m in self.messages]


class CompletionRequest(_Request):
    prompt: str
    max_tokens: StrictInt | None = Field(16, ge=1)  # OpenAI's default for completions


class LoadAdapterRequest(BaseModel):
    """vLLM's body, plus which base to attach to when the server has several."""

    model_config = ConfigDict(extra="forbid")

    lora_name: str = Field(min_length=1)
    lora_path: str = Field(min_length=1)
    base_model_name: str | None = None


class UnloadAdapterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lora_name: str = Field(min_length=1)


class ShiftRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str
    to: str = Field(min_length=1, description="A served model, or a path / registry: reference to load.")
    percent: float = Field(ge=0, le=100)


class FeedbackRequest(BaseModel):
    # strict: `true` and `1.0` are not ratings (a client bug must not become a label)
    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: str = Field(min_length=1, max_length=64, description="The `id` of the response being rated.")
    rating: StrictInt = Field(ge=-1, le=1, description="-1 bad, 0 neutral, 1 good.")
    correction: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_CORRECTION_CHARS,
        description="What the answer should have been; checked by the role's task.",
    )


class FailRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    fail: bool = True


def _usage(c: Completion) -> dict[str, int]:
    return {
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens,
        "total_tokens": c.prompt_tokens + c.completion_tokens,
    }


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def chat_response(request_id: str, model: str, c: Completion, refusal: str | None) -> dict[str, Any]:
    """A chat.completion; a refused answer has `refusal` set, no content and finish_reason content_filter."""
    message = {"role": "assistant", "content": None if refusal else c.text, "refusal": refusal}
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "content_filter" if refusal else c.finish_reason,
            }
        ],
        "usage": _usage(c),
    }


def completion_response(request_id: str, model: str, c: Completion, refused: bool) -> dict[str, Any]:
    return {
        "id": request_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "text": "" if refused else c.text,
                "logprobs": None,
                "finish_reason": "content_filter" if refused else c.finish_reason,
            }
        ],
        "usage": _usage(c),
    }


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def _pieces(text: str) -> list[str]:
    return [text[i : i + STREAM_CHUNK_CHARS] for i in range(0, len(text), STREAM_CHUNK_CHARS)]


def chat_stream(
    request_id: str, model: str, c: Completion, refusal: str | None, include_usage: bool
) -> Iterator[str]:
    """chat.completion.chunk events: the role, the content (or refusal) in pieces, the finish reason."""
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> str:
        choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
        body = {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": model}
        return _sse({**body, "choices": choices, **({"usage": usage} if usage else {})})

    yield chunk({"role": "assistant", "content": ""})
    key = "refusal" if refusal else "content"
    for piece in _pieces(refusal or c.text):
        yield chunk({key: piece})
    yield chunk({}, "content_filter" if refusal else c.finish_reason)
    if include_usage:
        yield chunk({}, usage=_usage(c))
    yield "data: [DONE]\n\n"


def completion_stream(
    request_id: str, model: str, c: Completion, refused: bool, include_usage: bool
) -> Iterator[str]:
    created = int(time.time())

    def chunk(text: str, finish: str | None = None) -> str:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return _sse(
            {
                "id": request_id,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [choice],
            }
        )

    for piece in [] if refused else _pieces(c.text):
        yield chunk(piece)
    yield chunk("", "content_filter" if refused else c.finish_reason)
    if include_usage:
        body = {"id": request_id, "object": "text_completion", "created": created, "model": model}
        yield _sse({**body, "choices": [], "usage": _usage(c)})
    yield "data: [DONE]\n\n"


def openapi_document() -> dict[str, Any]:
    """An OpenAPI 3.1 description of the client routes, request bodies from the models above: what an
    API fuzzer (the tests run schemathesis) or a client's code generator reads. The server reads
    bodies itself (size limit first), so FastAPI's generated schema does not show them."""
    schemas: dict[str, Any] = {}

    def body(model: type[BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        ref = {"$ref": f"#/components/schemas/{model.__name__}"}
        return {"required": True, "content": {"application/json": {"schema": ref}}}

    def operation(summary: str, request: type[BaseModel] | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {"summary": summary, "responses": {"200": {"description": "OK"}}}
        if request is not None:
            spec["requestBody"] = body(request)
        return spec

    return {
        "openapi": "3.1.0",
        "info": {"title": "srl-rlvr serve", "version": "1"},
        "security": [{"bearer": []}],
        "paths": {
            "/v1/chat/completions": {"post": operation("Chat completion", ChatRequest)},
            "/v1/completions": {"post": operation("Text completion", CompletionRequest)},
            "/v1/feedback": {"post": operation("Rate a recorded answer", FeedbackRequest)},
            "/v1/models": {"get": operation("Served roles and models")},
            "/health": {"get": operation("Liveness")},
            "/ready": {"get": operation("Readiness")},
            "/metrics": {"get": operation("Prometheus metrics")},
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
