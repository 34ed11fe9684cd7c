"""The encoder routes: POST /v1/embeddings (OpenAI's format), /v1/rerank (vLLM's and Jina's) and
/v1/classify (vLLM's), each served by a model of that type (`serve.models.NAME.type`).

Bad input is a 400 that names the field: an empty `input` or document list, an empty text, more texts
than `serve.limits.max_inputs`, token arrays instead of text, a `dimensions` the model cannot give,
a `roles` entry the classifier does not know. `encoding_format: base64` is little-endian float32, as
OpenAI sends it (the `openai` client asks for it by default and decodes it).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from srl_rlvr.serve.openai_api import ApiError, new_id

Texts = str | list[str] | list[int] | list[list[int]]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients send fields of the formats we do not use (user)

    model: str


class EmbeddingRequest(_Body):
    input: Texts
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, gt=0)


class RerankRequest(_Body):
    query: str
    documents: list[str | dict[str, Any]]
    top_n: int | None = Field(None, gt=0)
    return_documents: bool = True


class ClassifyRequest(_Body):
    input: Texts
    roles: list[str] | None = Field(
        None, description="Only these labels compete (renormalised), e.g. the roles a key may call."
    )


def texts_of(value: Texts, field: str, limit: int) -> list[str]:
    """The request's texts, or a 400 naming what is wrong with them."""
    texts = [value] if isinstance(value, str) else value
    if not texts:
        raise ApiError(400, f"{field}: must not be empty", param=field)
    if not all(isinstance(t, str) for t in texts):
        raise ApiError(400, f"{field}: token arrays are not supported; send text", param=field)
    if len(texts) > limit:
        raise ApiError(
            400,
            f"{field}: {len(texts)} texts is over this server's limit of {limit} (serve.limits.max_inputs)",
            param=field,
        )
    empty = next((i for i, t in enumerate(texts) if not t.strip()), None)  # type: ignore[union-attr]
    if empty is not None:
        raise ApiError(400, f"{field}[{empty}]: must not be empty", param=field)
    return texts  # type: ignore[return-value]


def _document_text(document: str | dict[str, Any], index: int) -> str:
    text = document if isinstance(document, str) else document.get("text")
    if not isinstance(text, str):
        raise ApiError(
            400, f"documents[{index}]: a string or an object with a `text` string", param="documents"
        )
    return text


def _encoded(vector: Any, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.tolist()


def add_encoder_routes(
    app: FastAPI,
    server: Any,
    read_body: Callable[[Request, type], Awaitable[Any]],
    client_key: Callable[..., Awaitable[str]],
    observed: Callable[[str, str, Callable[[], Awaitable[Response]]], Awaitable[Response]],
) -> None:
    """Add the three routes to `app`, sharing the chat routes' auth, body limits and metrics."""
    limit = server.config.limits.max_inputs

    def allowed(key_id: str, name: str) -> None:
        names = server.config.auth.key_access.get(key_id)
        if names is not None and name not in names:
            raise ApiError(403, f"key {key_id} may not call '{name}' (serve.auth.key_access)")

    def lookup(error: LookupError) -> ApiError:
        return ApiError(404, str(error).strip("'\""), code="model_not_found", param="model")

    @app.post("/v1/embeddings")
    async def embeddings(request: Request, key_id: str = Depends(client_key)) -> Response:
        body: EmbeddingRequest = await read_body(request, EmbeddingRequest)
        request.state.observed = True

        async def run() -> Response:
            allowed(key_id, body.model)
            texts = texts_of(body.input, "input", limit)
            try:
                vectors, tokens = await server.encoders.embed(body.model, texts, body.dimensions)
            except LookupError as e:
                raise lookup(e) from None
            data = [
                {"object": "embedding", "index": i, "embedding": _encoded(v, body.encoding_format)}
                for i, v in enumerate(vectors)
            ]
            usage = {"prompt_tokens": tokens, "total_tokens": tokens}
            return JSONResponse({"object": "list", "data": data, "model": body.model, "usage": usage})

        return await observed("embeddings", body.model, run)

    @app.post("/v1/rerank")
    async def rerank(request: Request, key_id: str = Depends(client_key)) -> Response:
        body: RerankRequest = await read_body(request, RerankRequest)
        request.state.observed = True

        async def run() -> Response:
            allowed(key_id, body.model)
            if not body.query.strip():
                raise ApiError(400, "query: must not be empty", param="query")
            documents = texts_of(
                [_document_text(d, i) for i, d in enumerate(body.documents)], "documents", limit
            )
            try:
                scores, tokens = await server.encoders.rerank(body.model, body.query, documents)
            except LookupError as e:
                raise lookup(e) from None
            order = sorted(range(len(documents)), key=lambda i: -scores[i])[: body.top_n]
            results = [
                {
                    "index": i,
                    "relevance_score": scores[i],
                    **({"document": {"text": documents[i]}} if body.return_documents else {}),
                }
                for i in order
            ]
            return JSONResponse(
                {
                    "id": new_id("rerank"),
                    "model": body.model,
                    "usage": {"total_tokens": tokens},
                    "results": results,
                }
            )

        return await observed("rerank", body.model, run)

    @app.post("/v1/classify")
    async def classify(request: Request, key_id: str = Depends(client_key)) -> Response:
        body: ClassifyRequest = await read_body(request, ClassifyRequest)
        request.state.observed = True

        async def run() -> Response:
            allowed(key_id, body.model)
            texts = texts_of(body.input, "input", limit)
            try:
                labels = server.encoders.get(body.model, "classifier").labels
            except LookupError as e:
                raise lookup(e) from None
            keep = body.roles or labels
            unknown = [r for r in keep if r not in labels]
            if unknown:
                raise ApiError(
                    400,
                    f"roles: '{unknown[0]}' is not a label of model '{body.model}'; labels: {', '.join(labels)}",
                    param="roles",
                )
            rows, tokens = await server.encoders.classify(body.model, texts)
            data = []
            for i, probs in enumerate(rows):
                total = sum(probs[r] for r in keep) or 1.0
                kept = [probs[r] / total for r in keep]
                best = max(range(len(keep)), key=lambda j: kept[j])
                data.append(
                    {"index": i, "label": keep[best], "probs": kept, "labels": keep, "num_classes": len(keep)}
                )
            usage = {"prompt_tokens": tokens, "total_tokens": tokens}
            return JSONResponse(
                {
                    "id": new_id("classify"),
                    "object": "list",
                    "created": int(time.time()),
                    "model": body.model,
                    "data": data,
                    "usage": usage,
                }
            )

        return await observed("classify", body.model, run)
