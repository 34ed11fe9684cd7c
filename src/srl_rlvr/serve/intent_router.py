"""`model: "auto"`: the intent router reads the request and names the role that should answer it.

The router is a served classifier whose labels are the server's roles (train it with
`model.type: classifier`). It reads the last user message, the request itself rather than the
conversation's history. Below `router.confidence_floor` the request goes to `router.default_role`:
an unsure guess sends a request to a specialist that answers it worse than the generalist would. So
does a request when the router itself fails: routing is an optimisation, not a reason to refuse.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass

from srl_rlvr.serve.config import RouterConfig
from srl_rlvr.serve.encoders import EncoderSet
from srl_rlvr.serve.guardrails import Message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Routed:
    role: str
    confidence: float
    fell_back: bool


def request_text(messages: list[Message]) -> str:
    users = [m.get("content") or "" for m in messages if m.get("role") == "user"]
    return str(users[-1] if users else (messages[-1].get("content") or "" if messages else ""))


def unknown_labels(encoders: EncoderSet, router: RouterConfig, roles: Collection[str]) -> list[str]:
    """The router's labels this server has no role for: a router trained for another server."""
    return [label for label in encoders.get(router.model, "classifier").labels if label not in roles]


async def route(encoders: EncoderSet, router: RouterConfig, messages: list[Message]) -> Routed:
    text = request_text(messages)
    if not text.strip():
        return Routed(router.default_role, 0.0, True)
    try:
        [probs], _ = await encoders.classify(router.model, [text])
    except Exception:  # a broken router must not fail the request: the default role can answer it
        log.exception("intent router '%s' failed; routing to %s", router.model, router.default_role)
        return Routed(router.default_role, 0.0, True)
    role, confidence = max(probs.items(), key=lambda item: item[1])
    if confidence < router.confidence_floor:
        return Routed(router.default_role, confidence, True)
    return Routed(role, confidence, False)
