"""Tool calls: OpenAI's `tools` rendered through the model's chat template, its answer parsed into
`tool_calls`, and `tool_choice` honoured.

The tools go to the tokenizer's chat template (transformers' tool-use templates take OpenAI's function
definitions as they are), so a model is asked in the format it was tuned on. Its calls come back in
the Hermes / Qwen2.5 form, `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (any number of
them, text around them is the message content), or as one bare JSON call (Llama 3.1's form). When
`tool_choice` forces a call ("required", or one named function), the answer is decoded under a
grammar of exactly that JSON call (structured.py), so it parses whatever the model would have
written. The format's parser is shared with the tasks that train tool use (tasks/tool_calls.py).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from srl_rlvr.serve.structured import Grammar
from srl_rlvr.tasks.tool_calls import find_tool_calls


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class ToolDef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["function"]
    function: FunctionDef


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it

    def body(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True)
class ToolPlan:
    """What a request's tools mean for generation: the definitions to render, which names a call may
    use, and the grammar when a call is forced."""

    rendered: list[dict[str, Any]]
    names: frozenset[str]
    forced: Grammar | None = None


def plan_tools(tools: list[ToolDef] | None, tool_choice: Any) -> ToolPlan | None:
    """None when no tool may be called (no tools, or tool_choice "none"). Raises ValueError naming
    what is wrong with tool_choice."""
    if not tools or tool_choice == "none":
        return None
    by_name = {t.function.name: t.function for t in tools}
    rendered = [t.model_dump(exclude_none=True) for t in tools]
    if tool_choice in (None, "auto"):
        return ToolPlan(rendered, frozenset(by_name))
    if tool_choice == "required":
        return ToolPlan(rendered, frozenset(by_name), _call_grammar(list(by_name.values())))
    name = tool_choice.get("function", {}).get("name") if isinstance(tool_choice, dict) else None
    if name is None:
        raise ValueError(
            'must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}'
        )
    if name not in by_name:
        raise ValueError(f"names '{name}', which is not among tools: {', '.join(by_name)}")
    return ToolPlan(rendered, frozenset(by_name), _call_grammar([by_name[name]]))


def _call_grammar(functions: list[FunctionDef]) -> Grammar:
    """One JSON call of one of `functions`, its arguments valid for that function's parameters."""
    calls = [
        {
            "type": "object",
            "properties": {"name": {"const": f.name}, "arguments": f.parameters},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for f in functions
    ]
    schema = calls[0] if len(calls) == 1 else {"anyOf": calls}
    return Grammar("json_schema", json.dumps(schema), strict=True)


def parse_tool_calls(text: str, plan: ToolPlan) -> tuple[str | None, list[ToolCall]]:
    """The message content (None when the answer is only calls) and the calls of known tools.
    A block that does not parse, or names an unknown tool, stays in the content."""
    found = find_tool_calls(text, plan.names)
    calls = [ToolCall(f"call_{uuid.uuid4().hex[:24]}", c.name, json.dumps(c.arguments)) for c in found]
    content = text
    for c in reversed(found):
        content = content[: c.span[0]] + content[c.span[1] :]
    return (content.strip() or None) if calls else text, calls
