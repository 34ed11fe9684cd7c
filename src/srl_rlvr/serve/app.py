"""The HTTP routes: OpenAI's API, vLLM's adapter routes, health, metrics and the admin routes.

Every route but the orchestrator's probes, /health (the process is up) and /ready (chat will
answer), needs an API key (`Authorization: Bearer <key>`; a Prometheus scrape of /metrics sends one
as its bearer credentials) and counts against the key's rate limit. Bodies are read up to `limits.max_body_bytes` (413 beyond) and validated here, so a bad
request gets a 400 that names the field rather than a framework's 422. The admin routes (adapters,
/admin/*) exist only for the key ids listed in `auth.admin_keys` (none by default: 404); /admin/manage
shows the management layer's state (per model: last monitor verdict, jobs, last retrain, next runs)
read from `serve.manage_db`; /admin/fail exists only with `serve.chaos: true` and makes a model
fail on purpose, to test or drill failover.
POST /v1/feedback rates a recorded answer; a key may rate only its own requests (listed admins any).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from srl_rlvr.errors import UserError
from srl_rlvr.serve.auth import key_id_of
from srl_rlvr.serve.body import decode_json
from srl_rlvr.serve.config import ServeConfig
from srl_rlvr.serve.encoder_api import add_encoder_routes
from srl_rlvr.serve.openai_api import (
    ApiError,
    ChatRequest,
    CompletionRequest,
    FailRequest,
    FeedbackRequest,
    LoadAdapterRequest,
    ShiftRequest,
    UnloadAdapterRequest,
    chat_response,
    chat_stream,
    completion_response,
    completion_stream,
    new_id,
)
from srl_rlvr.serve.sampling_params import request_sampling
from srl_rlvr.serve.server import Answer, Ask, Server
from srl_rlvr.serve.tools import plan_tools

T = TypeVar("T", bound=BaseModel)


def _presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return request.headers.get("x-api-key")


def _validation_message(e: ValidationError) -> tuple[str, str | None]:
    errors = e.errors()
    param = ".".join(str(p) for p in errors[0]["loc"]) if errors and errors[0]["loc"] else None
    text = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in errors[:5])
    return f"invalid request: {text}", param


async def _events(lines: Iterator[str]) -> AsyncIterator[str]:
    """An async iterator, so Starlette does not hop to a thread pool for every chunk."""
    for line in lines:
        yield line


_COUNTED_ROUTES = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/feedback": "feedback",
    "/v1/embeddings": "embeddings",
    "/v1/rerank": "rerank",
    "/v1/classify": "classify",
}


def build_app(config: ServeConfig, server: Server | None = None) -> FastAPI:
    """The FastAPI app over a Server; models load in the background once the app starts."""
    server = server or Server(config)
    started = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(server.start())  # /health answers while models load
        yield
        loading.cancel()
        await server.stop()

    app = FastAPI(title="srl-rlvr", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = server

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(UserError)
    async def user_error(request: Request, e: UserError) -> JSONResponse:
        return JSONResponse(ApiError(400, str(e)).body(), status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return JSONResponse(ApiError(e.status_code, str(e.detail)).body(), status_code=e.status_code)

    async def client_key(request: Request) -> str:
        key_id = "anonymous"
        if config.auth.enabled:
            found = key_id_of(server.keys, _presented_key(request))
            if found is None:
                raise ApiError(
                    401,
                    "missing or invalid API key: send `Authorization: Bearer <key>`",
                    code="invalid_api_key",
                )
            key_id = found
        wait = server.limiter.wait_time(key_id)
        if wait > 0:
            raise ApiError(
                429,
                f"key {key_id} is over its rate limit of {config.auth.requests_per_second:g} requests/s",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return key_id

    async def admin_key(key_id: str = Depends(client_key)) -> str:
        if not config.auth.admin_keys:  # opt-in: a server that names no admin has no admin routes
            raise ApiError(404, "admin routes are off: list admin key ids in serve.auth.admin_keys")
        if key_id not in config.auth.admin_keys:
            raise ApiError(403, f"key {key_id} may not manage models (serve.auth.admin_keys)")
        return key_id

    async def read_body(request: Request, model: type[T]) -> T:
        limit = config.limits.max_body_bytes
        declared = request.headers.get("content-length", "")
        too_large = ApiError(
            413, f"request body over {limit} bytes (serve.limits.max_body_bytes)", code="request_too_large"
        )
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large
        value = decode_json(bytes(body))
        try:
            return model.model_validate(value)
        except RecursionError:
            raise ApiError(400, "request body is nested too deeply", code="invalid_request") from None
        except ValidationError as e:
            message, param = _validation_message(e)
            raise ApiError(400, message, code="invalid_request", param=param) from None

    def max_tokens(asked: int | None) -> int:
        n = asked or min(config.limits.default_max_tokens, config.limits.max_tokens)
        if n > config.limits.max_tokens:
            raise ApiError(
                400,
                f"max_tokens {n} is over this server's limit of {config.limits.max_tokens}",
                param="max_tokens",
            )
        return n

    @app.middleware("http")
    async def count_refusals(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Count the model and feedback routes' requests refused before `observed` saw them (401, 413,
        429, a body that is not valid JSON, and any 500): attacks and rate limiting show on /metrics
        too, model label '-'."""
        route = _COUNTED_ROUTES.get(request.url.path)
        try:
            response = await call_next(request)
        except Exception:
            if route is not None and not getattr(request.state, "observed", False):
                server.metrics.requests.labels(route, "-", "500").inc()
            raise
        if route is not None and not getattr(request.state, "observed", False):
            server.metrics.requests.labels(route, "-", str(response.status_code)).inc()
        return response

    async def observed(route: str, name: str, run: Callable[[], Awaitable[Response]]) -> Response:
        """Count and time a model request by route, requested name and status."""
        label = name if name in server.served_names() else "-"
        began = time.perf_counter()
        status = 500
        try:
            if not server.ready:
                raise ApiError(
                    503, server.load_error or "models are still loading", headers={"Retry-After": "5"}
                )
            response = await run()
            status = response.status_code
            return response
        except ApiError as e:
            status = e.status
            raise
        finally:
            server.metrics.requests.labels(route, label, str(status)).inc()
            server.metrics.latency.labels(route, label).observe(time.perf_counter() - began)

    def temperature(asked: float | None) -> float:
        return config.limits.default_temperature if asked is None else asked

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request, key_id: str = Depends(client_key)) -> Response:
        body = await read_body(request, ChatRequest)
        request.state.observed = True

        async def run() -> Response:
            request_id = new_id("chatcmpl")
            try:
                tools = plan_tools(body.tools, body.tool_choice)
            except ValueError as e:
                raise ApiError(400, f"tool_choice {e}", param="tool_choice") from None
            ask = Ask(
                body.model,
                body.plain_messages(),
                True,
                max_tokens(body.max_completion_tokens or body.max_tokens),
                temperature(body.temperature),
                body.stops,
                key_id,
                request_id,
                n=body.n,
                sampling=request_sampling(body, temperature(body.temperature), config.limits.max_batch),
                user=body.user,
                metadata=body.metadata,
                tools=tools,
                tool_choice=body.tool_choice,
            )
            answer: Answer = await server.answer(ask)
            headers = {"x-served-by": answer.served_by}
            if body.stream:
                events = chat_stream(
                    request_id, body.model, answer.choices, answer.refusals, body.include_usage, tools
                )
                return StreamingResponse(_events(events), media_type="text/event-stream", headers=headers)
            return JSONResponse(
                chat_response(request_id, body.model, answer.choices, answer.refusals, tools),
                headers=headers,
            )

        return await observed("chat", body.model, run)

    @app.post("/v1/completions")
    async def completions(request: Request, key_id: str = Depends(client_key)) -> Response:
        body = await read_body(request, CompletionRequest)
        request.state.observed = True

        async def run() -> Response:
            request_id = new_id("cmpl")
            messages = [{"role": "user", "content": body.prompt}]
            ask = Ask(
                body.model,
                messages,
                False,
                max_tokens(body.max_tokens),
                temperature(body.temperature),
                body.stops,
                key_id,
                request_id,
                n=body.n,
                sampling=request_sampling(body, temperature(body.temperature), config.limits.max_batch),
                user=body.user,
                metadata=body.metadata,
            )
            answer = await server.answer(ask)
            headers = {"x-served-by": answer.served_by}
            if body.stream:
                events = completion_stream(
                    request_id, body.model, answer.choices, answer.refusals, body.include_usage
                )
                return StreamingResponse(_events(events), media_type="text/event-stream", headers=headers)
            return JSONResponse(
                completion_response(request_id, body.model, answer.choices, answer.refusals), headers=headers
            )

        return await observed("completions", body.model, run)

    add_encoder_routes(app, server, read_body, client_key, observed)

    @app.post("/v1/feedback")
    async def feedback(request: Request, key_id: str = Depends(client_key)) -> dict[str, Any]:
        """A rating of an answer (its response `id`), and optionally what it should have been: the
        self-learning loop's labels (srl-rlvr monitor and retrain read them)."""
        body = await read_body(request, FeedbackRequest)
        await server.feedback(key_id, body.request_id, body.rating, body.correction)
        return {"object": "feedback", "request_id": body.request_id, "rating": body.rating, "stored": True}

    @app.get("/v1/models")
    async def list_models(key_id: str = Depends(client_key)) -> dict[str, Any]:
        def entry(name: str, kind: str, **more: str) -> dict[str, Any]:
            return {
                "id": name,
                "object": "model",
                "created": started,
                "owned_by": "srl-rlvr",
                "kind": kind,
                **more,
            }

        adapters = server.models.adapters()
        data = [entry(name, "role", root=state.primary) for name, state in server.roles.states.items()]
        data += [entry(name, "model") for name in server.models.workers]
        data += [entry(name, "adapter", parent=base) for name, base in adapters.items()]
        data += [entry(name, encoder.type) for name, encoder in server.encoders.models.items()]
        return {"object": "list", "data": data}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        # No key, so no model names: how often a model's thread died and was restarted, in all.
        return {"status": "ok", "worker_restarts": sum(server.models.restarts().values())}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        # The orchestrator's readiness probe, so no key: it says whether chat will answer, nothing
        # more (the load error, which may hold paths, goes only to keyed requests' 503 answers).
        if server.ready:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "failed" if server.load_error else "loading"}, status_code=503)

    @app.get("/metrics")
    async def metrics(key_id: str = Depends(client_key)) -> Response:
        return Response(server.render_metrics(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/load_lora_adapter")
    async def load_lora_adapter(request: Request, key_id: str = Depends(admin_key)) -> PlainTextResponse:
        body = await read_body(request, LoadAdapterRequest)
        await server.load_adapter(body.lora_name, body.lora_path, body.base_model_name)
        return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' added successfully.")

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora_adapter(request: Request, key_id: str = Depends(admin_key)) -> PlainTextResponse:
        body = await read_body(request, UnloadAdapterRequest)
        await server.unload_adapter(body.lora_name)
        return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' removed successfully.")

    @app.get("/admin/roles")
    async def roles(key_id: str = Depends(admin_key)) -> dict[str, Any]:
        return server.roles.describe(server.health)

    @app.post("/admin/shift")
    async def shift(request: Request, key_id: str = Depends(admin_key)) -> dict[str, Any]:
        body = await read_body(request, ShiftRequest)
        return await server.shift(body.role, body.to, body.percent)

    @app.get("/admin/manage")
    async def manage(key_id: str = Depends(admin_key)) -> dict[str, Any]:
        if config.manage_db is None:
            raise ApiError(404, "the management view is off: set serve.manage_db to the manage state's URL")
        from srl_rlvr.data.manage_status import read_status  # SQLAlchemy: only a server that shows it

        return await asyncio.to_thread(read_status, config.manage_db, datetime.now(timezone.utc))

    @app.post("/admin/fail")
    async def fail(request: Request, key_id: str = Depends(admin_key)) -> dict[str, Any]:
        if not config.chaos:
            raise ApiError(404, "chaos routes are off (serve.chaos: true turns them on)")
        body = await read_body(request, FailRequest)
        server.set_failing(body.model, body.fail)
        return {"model": body.model, "failing": body.fail}

    return app
