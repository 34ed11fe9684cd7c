"""`srl-rlvr mcp` driven by the MCP SDK's own client over stdio: the real CLI in a subprocess, the
session's sqlite MLflow registry, the keys and admin keys of a serve config."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from srl_rlvr.modeling import byte_tokenizer, tiny_model
from srl_rlvr.tracking.registry import promote, register, versions

NAME = "mcp-sentiment"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A serve config whose key 'admin' may change models and 'alice' may not; a model with two
    evaluated versions, v1 in production."""
    tmp = tmp_path_factory.mktemp("mcp")
    (tmp / "keys.txt").write_text("alice: sk-alice\nadmin: sk-admin\n")
    serve = {
        "models": {"tiny": {"path": "tiny"}},
        "auth": {"api_keys_env": None, "keys_file": str(tmp / "keys.txt"), "admin_keys": ["admin"]},
    }
    path = tmp / "serve.yaml"
    path.write_text(json.dumps({"serve": serve}))  # JSON is YAML
    model_dir = tmp / "model"
    tokenizer = byte_tokenizer()
    tiny_model(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    register(NAME, model_dir, stage="sft", parent="tiny", metrics={"reward": 0.5})
    register(NAME, model_dir, stage="rlvr", parent="tiny", metrics={"reward": 0.7})
    promote(NAME, 1)
    return path


def session_calls(config: Path, key: str, calls: list[tuple[str, dict[str, Any]]]) -> tuple[list[Any], Any]:
    """Start `srl-rlvr mcp CONFIG` over stdio with `key`, list its tools and make `calls` in order."""
    env = {
        "SRL_RLVR_API_KEY": key,
        "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"],
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    parameters = StdioServerParameters(
        command=sys.executable,
        args=["-m", "srl_rlvr", "mcp", str(config), "--workdir", str(config.parent / "work")],
        env=env,
        cwd=str(config.parent),
    )

    async def run() -> tuple[list[Any], Any]:
        async with stdio_client(parameters) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            tools = (await session.list_tools()).tools
            results = [await session.call_tool(name, arguments) for name, arguments in calls]
            return results, tools

    return asyncio.run(run())


def test_an_agent_lists_tools_models_and_evaluates_but_may_not_promote_without_an_admin_key(
    config: Path,
) -> None:
    evaluate = {
        "model": "tiny",
        "task": "arithmetic",
        "n": 2,
        "overrides": ["eval.max_new_tokens=4", "eval.bootstrap_samples=10"],
    }
    (listed, evaluated, refused), tools = session_calls(
        config,
        "sk-alice",
        [("list_models", {}), ("evaluate", evaluate), ("promote", {"name": NAME, "version": 2})],
    )
    by_name = {tool.name: tool for tool in tools}
    assert {"list_models", "describe_model", "evaluate", "start_run", "follow_run", "monitor_status"} <= set(
        by_name
    )
    assert (
        by_name["promote"].annotations.destructive_hint and by_name["rollback"].annotations.destructive_hint
    )
    assert by_name["list_models"].annotations.read_only_hint
    assert by_name["evaluate"].input_schema["properties"]["n"]["type"] == "integer"

    assert not listed.is_error
    models = {m["name"]: m for m in listed.structured_content["result"]}
    assert models[NAME]["latest"] == 2 and models[NAME]["aliases"] == {"production": 1}

    assert not evaluated.is_error, evaluated.content
    (result,) = evaluated.structured_content["results"].values()
    assert (
        0.0 <= result["metrics"]["accuracy"] <= 1.0 and Path(evaluated.structured_content["report"]).is_file()
    )

    assert refused.is_error and "key alice may not change models" in refused.content[0].text
    assert next(v for v in versions(NAME) if v.version == 1).aliases == ["production"]


def test_an_admin_key_promotes_and_rolls_back(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In memory (the SDK's Client on the server object): the same tools, no process to start."""
    from mcp.client import Client

    from srl_rlvr.serve.config import load_serve_config
    from srl_rlvr.serve.mcp_server import build_mcp_server

    server = build_mcp_server(load_serve_config(config).auth, config.parent / "work")
    monkeypatch.setenv("SRL_RLVR_API_KEY", "sk-admin")

    bad_run = config.parent / "bad-run.yaml"
    bad_run.write_text("srl: {max_stepz: 3}\n")
    no_store = config.parent / "no-store.yaml"
    no_store.write_text(f"feedback: {{store: 'sqlite:///{config.parent / 'missing.db'}'}}\n")

    async def run() -> list[Any]:
        async with Client(server) as client:
            results = [
                await client.call_tool("promote", {"name": NAME, "version": 2}),
                await client.call_tool("describe_model", {"name": NAME}),
                await client.call_tool("rollback", {"name": NAME}),
                await client.call_tool("follow_run", {"run_id": "run-0"}),
                started := await client.call_tool("start_run", {"config": str(bad_run)}),
            ]
            run_id = started.structured_content["run_id"]
            followed = await client.call_tool("follow_run", {"run_id": run_id, "wait_s": 300})
            return [*results, followed, await client.call_tool("monitor_status", {"config": str(no_store)})]

    promoted, described, rolled_back, unknown_run, started, followed, monitored = asyncio.run(run())
    assert not promoted.is_error and "v2 is production; v1 is backup" in promoted.content[0].text
    aliases = {v["version"]: v["aliases"] for v in described.structured_content["result"]}
    assert aliases == {1: ["backup"], 2: ["production"]}
    assert "v1 is production again; v2 is backup" in rolled_back.content[0].text
    assert unknown_run.is_error and "no run 'run-0'" in unknown_run.content[0].text
    assert not started.is_error
    run = followed.structured_content  # the run's own user error: one line naming the key, exit 2
    assert run["state"] == "failed" and run["exit_code"] == 2
    assert any("max_stepz" in line for line in run["log_tail"])
    assert monitored.is_error and "no record store" in monitored.content[0].text


def test_over_streamable_http_the_bearer_key_decides(config: Path) -> None:
    import socket
    import threading

    import httpx2
    import uvicorn
    from mcp.client.streamable_http import streamable_http_client

    from srl_rlvr.serve.config import load_serve_config
    from srl_rlvr.serve.mcp_server import build_mcp_server

    app = build_mcp_server(load_serve_config(config).auth, config.parent / "work").streamable_http_app()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()  # connections queue until uvicorn accepts them: no wait for it to start
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"

    async def call(key: str, tool: str, arguments: dict[str, Any]) -> Any:
        headers = {"Authorization": f"Bearer {key}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=120) as http,
            streamable_http_client(url, http_client=http) as streams,
            ClientSession(streams[0], streams[1]) as session,
        ):
            await session.initialize()
            return await session.call_tool(tool, arguments)

    try:
        refused = asyncio.run(call("sk-alice", "rollback", {"name": NAME}))
        described = asyncio.run(call("sk-alice", "describe_model", {"name": NAME}))
        unknown = asyncio.run(call("sk-wrong", "list_models", {}))
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
    assert refused.is_error and "key alice may not change models" in refused.content[0].text
    assert not described.is_error and len(described.structured_content["result"]) == 2
    assert unknown.is_error and "invalid API key" in unknown.content[0].text
