"""The tool-call format models write, found in their text: `<tool_call>{"name", "arguments"}</tool_call>`
blocks (Hermes, Qwen2.5) or one bare JSON call (Llama 3.1). Tasks that train tool use score it and the
server returns it as OpenAI `tool_calls` (serve/tools.py); one parser, so what a model is trained to
write is what the server understands. Ours: transformers has no parser for these forms that works
across its versions, and it is a dozen lines over `json`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


@dataclass(frozen=True)
class FoundCall:
    name: str
    arguments: dict[str, Any]
    span: tuple[int, int]  # where in the text the call was written


def call_block(name: str, arguments: dict[str, Any]) -> str:
    """A call as a model is taught to write it."""
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def _as_call(text: str, names: frozenset[str] | None) -> tuple[str, dict[str, Any]] | None:
    try:
        found = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(found, dict) or not isinstance(found.get("name"), str):
        return None
    if names is not None and found["name"] not in names:
        return None
    arguments = found.get("arguments", found.get("parameters", {}))
    if isinstance(arguments, str):  # some models write the arguments as JSON text already
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    return (found["name"], arguments) if isinstance(arguments, dict) else None


def find_tool_calls(text: str, names: frozenset[str] | None = None) -> list[FoundCall]:
    """The calls in `text` (of the tools in `names`, when given), in order. Blocks first; when there
    are none, the whole text as one bare JSON call. A block that does not parse is not a call."""
    calls = []
    for match in CALL_BLOCK.finditer(text):
        call = _as_call(match.group(1), names)
        if call is not None:
            calls.append(FoundCall(call[0], call[1], match.span()))
    if calls:
        return calls
    bare = _as_call(text.strip(), names)
    return [FoundCall(bare[0], bare[1], (0, len(text)))] if bare is not None else []
