"""A role's model using MCP tools: offered in its prompt, run by the server, the results fed back.

For a role with `mcp_servers`, one request opens a client to each server (the `mcp` SDK's `Client`:
stdio or streamable HTTP), offers their tools through the chat template (tools.py), and loops: the
model answers; each call it makes of a known tool is run (at most `tool_loop.max_calls` per request,
each within `call_timeout_s`; a failure or timeout is the tool's answer, so the model can recover)
and appended as a `tool` message; the model answers again. When the calls are spent it answers with
no tools offered. Every call is audited (rule `tool.<server>.<tool>`, action call, error or timeout),
never its arguments or result: the audit log keeps no request text. A tool's result goes into the
prompt as it is: the input guardrails do not see it (the README says what injection patterns cannot
stop). The response's usage counts the final round's tokens only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

from srl_rlvr.serve.config import McpToolServer, ToolLoopConfig
from srl_rlvr.serve.generation import Completion
from srl_rlvr.serve.tools import ToolCall, ToolDef, parse_tool_calls, plan_tools

Generate = Callable[[Any], Awaitable[Completion]]  # an Ask (server.py) in, its first completion out


@dataclass
class ToolSession:
    clients: dict[str, Client]  # by server name
    owner: dict[str, str]  # tool name -> server name
    tools: list[ToolDef]


@asynccontextmanager
async def connect(servers: dict[str, McpToolServer]) -> AsyncIterator[ToolSession]:
    """Clients of every server, and their tools as OpenAI function definitions."""
    async with AsyncExitStack() as stack:
        clients: dict[str, Client] = {}
        owner: dict[str, str] = {}
        tools: list[ToolDef] = []
        for name, server in servers.items():
            target: StdioServerParameters | str
            if server.command is not None:
                target = StdioServerParameters(
                    command=server.command[0], args=server.command[1:], env=server.env
                )
            else:
                assert server.url is not None
                target = server.url
            client = await stack.enter_async_context(Client(target))
            clients[name] = client
            for tool in (await client.list_tools()).tools:
                if tool.name in owner:
                    raise RuntimeError(f"tool '{tool.name}' is offered by both {owner[tool.name]} and {name}")
                owner[tool.name] = name
                definition = {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.input_schema,
                }
                tools.append(ToolDef.model_validate({"type": "function", "function": definition}))
        yield ToolSession(clients, owner, tools)


async def run_call(session: ToolSession, call: ToolCall, timeout_s: float) -> tuple[str, str]:
    """What the tool answered (or why it did not), and the audit action: call, error or timeout."""
    client = session.clients[session.owner[call.name]]
    try:
        result = await asyncio.wait_for(client.call_tool(call.name, json.loads(call.arguments)), timeout_s)
    except TimeoutError:
        return f"error: the tool did not answer within {timeout_s:g} s", "timeout"
    except Exception as e:  # a broken server or transport: the model is told, the request goes on
        return f"error: {type(e).__name__}: {e}", "error"
    texts = [block.text for block in result.content if getattr(block, "text", None) is not None]
    text = "\n".join(texts) if texts else json.dumps(result.structured_content)
    return (f"error: {text}", "error") if result.is_error else (text, "call")


async def answer_with_tools(
    ask: Any,
    servers: dict[str, McpToolServer],
    limits: ToolLoopConfig,
    generate: Generate,
    audit: Callable[[str, str], None],
) -> Completion:
    """The model's final answer to `ask` after its tool calls. `ask.tool_choice` applies to every round
    that offers tools ("required" makes each of them a call); `audit(rule, action)` logs each call."""
    async with connect(servers) as session:
        plan = plan_tools(session.tools, ask.tool_choice)
        messages = list(ask.messages)
        calls_left = limits.max_calls
        while True:
            offered = plan if calls_left > 0 else None
            grammar = offered.forced if offered is not None else None
            sampling = replace(ask.row(), grammar=grammar or ask.row().grammar)
            completion = await generate(replace(ask, messages=messages, tools=offered, sampling=sampling))
            if offered is None:
                return completion
            content, calls = parse_tool_calls(completion.text, offered)
            if not calls:
                return completion
            calls = calls[:calls_left]
            calls_left -= len(calls)
            messages.append(
                {
                    "role": "assistant",
                    "content": content or "",
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": json.loads(c.arguments)},
                        }
                        for c in calls
                    ],
                }
            )
            for call in calls:
                text, action = await run_call(session, call, limits.call_timeout_s)
                audit(f"tool.{session.owner[call.name]}.{call.name}", action)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": text})
