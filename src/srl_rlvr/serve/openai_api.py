"""The OpenAI API's request and response shapes, so any OpenAI client works against the server unchanged.

Requests take OpenAI's sampling parameters (n, top_p, seed, logprobs, penalties, stop,
response_format); one the server does not implement is a 400 naming it (sampling_params.UNSUPPORTED).
Errors use OpenAI's JSON error shape. Streaming sends the finished answer in chunks (Server-Sent
Events ending with `data: [DONE]`), with the same fields as the whole response (one chunk per token
when log-probs are asked for): HF generation produces the whole text at once; true token streaming
comes with the fast engine.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from srl_rlvr.serve.generation import Completion, TokenLogprob
from srl_rlvr.serve.sampling_params import unsupported_parameter
from srl_rlvr.serve.tools import ToolDef, ToolPlan, parse_tool_calls

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
    n: StrictInt = Field(1, ge=1, description="Choices to sample, as rows of one batch (at most max_batch).")
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: StrictInt | None = Field(None, ge=0, lt=2**63, description="The same seed repeats the answer.")
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    user: str | None = Field(None, max_length=256, description="The end user, kept with the record.")
    metadata: dict[str, str] | None = Field(None, max_length=16, description="Kept with the record.")

    @model_validator(mode="before")
    @classmethod
    def _refuse_unsupported(cls, data: Any) -> Any:
        # ApiError is not a ValueError, so pydantic lets it through to the route as a 400 naming the field
        found = unsupported_parameter(data) if isinstance(data, dict) else None
        if found is not None:
            name, why = found
            raise ApiError(400, f"{name}: {why}", code="unsupported_parameter", param=name)
        return data

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


class CalledFunction(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    arguments: str


class AssistantToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    type: Literal["function"] = "function"
    function: CalledFunction

    def for_template(self) -> dict[str, Any]:
        try:
            arguments = json.loads(self.function.arguments)
        except json.JSONDecodeError:
            raise ApiError(
                400, f"tool call {self.id}: arguments are not JSON", param="messages.tool_calls"
            ) from None
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.function.name, "arguments": arguments},
        }


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[AssistantToolCall] | None = None  # an assistant's earlier calls
    tool_call_id: str | None = None  # the call a tool message answers

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""

    def plain(self) -> dict[str, Any]:
        """As chat templates take it: tool calls with their arguments as objects."""
        message: dict[str, Any] = {"role": self.role, "content": self.text()}
        if self.tool_calls:
            message["tool_calls"] = [call.for_template() for call in self.tool_calls]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        return message


class ChatRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: StrictInt | None = Field(None, ge=0, le=20)
    response_format: dict[str, Any] | None = None
    tools: list[ToolDef] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None  # the model may write several calls; all are returned

    @property
    def logprob_count(self) -> int | None:
        """None: no log-probs; else how many alternatives per token."""
        if self.top_logprobs is not None and not self.logprobs:
            raise ApiError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
        return (self.top_logprobs or 0) if self.logprobs else None

    def plain_messages(self) -> list[dict[str, Any]]:
        return [m.plain() for m in self.messages]


class CompletionRequest(_Request):
    prompt: str
    max_tokens: StrictInt | None = Field(16, ge=1)  # OpenAI's default for completions
    logprobs: StrictInt | None = Field(
        None, ge=0, le=5, description="Alternatives per token (legacy format)."
    )

    @property
    def logprob_count(self) -> int | None:
        return self.logprobs


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


def _usage(choices: list[Completion]) -> dict[str, int]:
    completion = sum(c.completion_tokens for c in choices)
    prompt = choices[0].prompt_tokens
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def _chat_logprobs(logprobs: tuple[TokenLogprob, ...] | None) -> dict[str, Any] | None:
    """OpenAI's chat format: per token its text, log-prob, UTF-8 bytes and the top alternatives."""
    if logprobs is None:
        return None

    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    content = [
        {**entry(t.token, t.logprob), "top_logprobs": [entry(w, lp) for w, lp in t.top]} for t in logprobs
    ]
    return {"content": content, "refusal": None}


def _completion_logprobs(logprobs: tuple[TokenLogprob, ...] | None) -> dict[str, Any] | None:
    """The completions API's (legacy) format: parallel lists, alternatives as {token: log-prob}."""
    if logprobs is None:
        return None
    offsets, at = [], 0
    for t in logprobs:
        offsets.append(at)
        at += len(t.token)
    return {
        "tokens": [t.token for t in logprobs],
        "token_logprobs": [t.logprob for t in logprobs],
        "top_logprobs": [dict(t.top) for t in logprobs],
        "text_offset": offsets,
    }


def _message(c: Completion, refusal: str | None, tools: ToolPlan | None) -> tuple[dict[str, Any], str]:
    """The assistant message of one choice and its finish reason: calls of the request's tools are
    parsed out of the text into `tool_calls` (finish_reason tool_calls)."""
    if refusal:
        return {"role": "assistant", "content": None, "refusal": refusal}, "content_filter"
    content, calls = parse_tool_calls(c.text, tools) if tools is not None else (c.text, [])
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if calls:
        message["tool_calls"] = [call.body() for call in calls]
    return message, "tool_calls" if calls else c.finish_reason


def chat_response(
    request_id: str,
    model: str,
    choices: list[Completion],
    refusals: list[str | None],
    tools: ToolPlan | None = None,
) -> dict[str, Any]:
    """A chat.completion; a refused answer has `refusal` set, no content and finish_reason content_filter."""
    out = []
    for index, (c, refusal) in enumerate(zip(choices, refusals, strict=True)):
        message, finish = _message(c, refusal, tools)
        out.append(
            {
                "index": index,
                "message": message,
                "logprobs": None if refusal else _chat_logprobs(c.logprobs),
                "finish_reason": finish,
            }
        )
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": out,
        "usage": _usage(choices),
    }


def completion_response(
    request_id: str, model: str, choices: list[Completion], refusals: list[str | None]
) -> dict[str, Any]:
    out = [
        {
            "index": index,
            "text": "" if refusal else c.text,
            "logprobs": None if refusal else _completion_logprobs(c.logprobs),
            "finish_reason": "content_filter" if refusal else c.finish_reason,
        }
        for index, (c, refusal) in enumerate(zip(choices, refusals, strict=True))
    ]
    return {
        "id": request_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": out,
        "usage": _usage(choices),
    }


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def _pieces(c: Completion) -> list[tuple[str, tuple[TokenLogprob, ...] | None]]:
    """The answer in stream deltas: a token each, with its log-prob, when the request asked for them
    (the last delta takes any text the tokens do not cover, a stop string's cut for one); else chunks
    of STREAM_CHUNK_CHARS characters."""
    if c.logprobs is None:
        text = c.text
        return [(text[i : i + STREAM_CHUNK_CHARS], None) for i in range(0, len(text), STREAM_CHUNK_CHARS)]
    pieces, at = [], 0
    for t in c.logprobs:
        piece = c.text[at : at + len(t.token)] if c.text.startswith(t.token, at) else ""
        at += len(piece)
        pieces.append((piece, (t,)))
    if at < len(c.text) and pieces:
        pieces[-1] = (pieces[-1][0] + c.text[at:], pieces[-1][1])
    elif at < len(c.text):
        pieces.append((c.text[at:], ()))
    return pieces


def chat_stream(
    request_id: str,
    model: str,
    choices: list[Completion],
    refusals: list[str | None],
    include_usage: bool,
    tools: ToolPlan | None = None,
) -> Iterator[str]:
    """chat.completion.chunk events per choice: the role, the content (or refusal) in pieces with their
    log-probs, the tool calls, the finish reason; then the usage when asked for."""
    created = int(time.time())
    body = {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": model}

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> str:
        choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return _sse({**body, "choices": [choice]})

    for index, (c, refusal) in enumerate(zip(choices, refusals, strict=True)):
        message, finish = _message(c, refusal, tools)
        yield chunk(index, {"role": "assistant", "content": ""})
        if refusal:
            yield chunk(index, {"refusal": refusal})
        elif "tool_calls" in message:
            if message["content"]:
                yield chunk(index, {"content": message["content"]})
            calls = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
            yield chunk(index, {"tool_calls": calls})
        else:
            for piece, logprobs in _pieces(c):
                yield chunk(index, {"content": piece}, logprobs=_chat_logprobs(logprobs))
        yield chunk(index, {}, finish)
    if include_usage:
        yield _sse({**body, "choices": [], "usage": _usage(choices)})
    yield "data: [DONE]\n\n"


def completion_stream(
    request_id: str,
    model: str,
    choices: list[Completion],
    refusals: list[str | None],
    include_usage: bool,
) -> Iterator[str]:
    created = int(time.time())
    body = {"id": request_id, "object": "text_completion", "created": created, "model": model}

    def chunk(index: int, text: str, finish: str | None = None, logprobs: Any = None) -> str:
        choice = {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}
        return _sse({**body, "choices": [choice]})

    for index, (c, refusal) in enumerate(zip(choices, refusals, strict=True)):
        for piece, logprobs in [] if refusal else _pieces(c):
            yield chunk(index, piece, logprobs=_completion_logprobs(logprobs))
        yield chunk(index, "", "content_filter" if refusal else c.finish_reason)
    if include_usage:
        yield _sse({**body, "choices": [], "usage": _usage(choices)})
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
