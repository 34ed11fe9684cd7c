"""`srl-rlvr mcp`: the system's own operations as MCP tools, so an agent can run it.

Built on the official `mcp` SDK (`MCPServer`), over stdio or streamable HTTP. The tools read and steer
what the CLI does: the registry (list, describe, promote, roll back), evaluation, training runs
(started as `srl-rlvr run` subprocesses and followed through their logs), the production monitor and a
running server's roles. Heavy work runs in a thread so the server keeps answering.

Permissions are the HTTP API's, from the same `serve:` config: a caller presents an API key (HTTP:
`Authorization: Bearer <key>`; stdio: the SRL_RLVR_API_KEY environment variable the client launches the
server with), every tool needs a valid one, and the tools that change what is served or spend compute
(promote, rollback, start_run) need one of `auth.admin_keys`. Tools that change state carry MCP's
`destructiveHint`, read-only ones `readOnlyHint`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

from srl_rlvr.errors import UserError
from srl_rlvr.serve.auth import key_id_of, load_keys
from srl_rlvr.serve.config import AuthConfig

STDIO_KEY_ENV = "SRL_RLVR_API_KEY"
READ = ToolAnnotations(read_only_hint=True, destructive_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=True)


@dataclass
class Access:
    """Who may call what: the serve config's keys and admin keys."""

    auth: AuthConfig
    keys: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, auth: AuthConfig) -> Access:
        return cls(auth, load_keys(auth) if auth.enabled else {})

    def caller(self, ctx: Context, admin: bool = False) -> str:
        """The calling key's id; ToolError when it is missing, invalid, or not an admin key where one
        is needed."""
        if not self.auth.enabled:
            return "anonymous"
        key_id = key_id_of(self.keys, _presented(ctx))
        if key_id is None:
            raise ToolError(
                f"missing or invalid API key (HTTP: Authorization: Bearer; stdio: ${STDIO_KEY_ENV})"
            )
        if admin and self.auth.admin_keys is not None and key_id not in self.auth.admin_keys:
            raise ToolError(f"key {key_id} may not change models or start runs (serve.auth.admin_keys)")
        return key_id


@contextmanager
def _as_tool_errors() -> Iterator[None]:
    """Our one-line user errors (an unknown model, a refused promotion) reach the agent as they are."""
    try:
        yield
    except UserError as e:
        raise ToolError(str(e)) from None


@dataclass
class Runs:
    """Training runs this server started: `srl-rlvr run` subprocesses, each with its log file."""

    folder: Path
    started: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=itertools.count)

    def start(self, config: str, overrides: list[str]) -> dict[str, Any]:
        self.folder.mkdir(parents=True, exist_ok=True)
        run_id = f"run-{os.getpid()}-{next(self._ids)}"
        log = self.folder / f"{run_id}.log"
        command = [sys.executable, "-m", "srl_rlvr", "run", config, *overrides]
        with log.open("wb") as out:
            self.started[run_id] = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        return {"run_id": run_id, "log": str(log), "pid": self.started[run_id].pid}

    def follow(self, run_id: str, lines: int, wait_s: float = 0.0) -> dict[str, Any]:
        """The run's state and log tail, after waiting up to `wait_s` for it to end."""
        process = self.started.get(run_id)
        if process is None:
            raise ToolError(
                f"no run '{run_id}' started by this server; runs: {', '.join(self.started) or 'none'}"
            )
        try:
            code = process.wait(timeout=wait_s) if wait_s > 0 else process.poll()
        except subprocess.TimeoutExpired:
            code = None
        log = self.folder / f"{run_id}.log"
        tail = log.read_text(errors="replace").splitlines()[-lines:] if log.is_file() else []
        state = "running" if code is None else "finished" if code == 0 else "failed"
        return {"run_id": run_id, "state": state, "exit_code": code, "log_tail": tail}


def _command(args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "srl_rlvr", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )


def build_mcp_server(auth: AuthConfig, workdir: Path) -> MCPServer:
    """The MCP server with every tool; `workdir` holds evaluation reports and run logs."""
    access = Access.from_config(auth)
    runs = Runs(workdir / "runs")
    server = MCPServer("srl-rlvr", instructions="Train, evaluate, register and serve small models.")

    def tool(annotations: ToolAnnotations) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return server.tool(annotations=annotations)

    @tool(READ)
    async def list_models(ctx: Context) -> list[dict[str, Any]]:
        """Registered models: latest version and where the production/staging/backup aliases point."""
        access.caller(ctx)
        from srl_rlvr.tracking.registry import models

        with _as_tool_errors():
            found = await asyncio.to_thread(models)
        return [{"name": n, "latest": latest, "aliases": aliases} for n, latest, aliases in found]

    @tool(READ)
    async def describe_model(name: str, ctx: Context) -> list[dict[str, Any]]:
        """Every version of a registered model: stage, parent, data, evaluation metrics, aliases."""
        access.caller(ctx)
        from srl_rlvr.tracking.registry import versions

        with _as_tool_errors():
            found = await asyncio.to_thread(versions, name)
        return [
            {
                "version": v.version,
                "aliases": sorted(v.aliases),
                "stage": v.stage,
                "parent": v.parent,
                "dataset": v.dataset,
                "metrics": v.metrics,
            }
            for v in found
        ]

    @tool(READ)
    async def evaluate(
        model: str,
        ctx: Context,
        task: str | None = None,
        n: int = 20,
        split: Literal["test", "val"] = "test",
        config: str | None = None,
        overrides: list[str] | None = None,
    ) -> dict[str, Any]:
        """Evaluate a model ('tiny', a folder, a hub id or registry:NAME@ALIAS) on `n` held-out problems
        of a task, under a run config (YAML path; dotted overrides such as eval.max_new_tokens=64);
        returns its metrics and latency, and writes a report."""
        access.caller(ctx)
        from srl_rlvr.config import build_config, load_config
        from srl_rlvr.evaluate.run import run_evaluation

        def run() -> Any:
            cfg = load_config(config, overrides or []) if config else build_config(overrides=overrides or [])
            return run_evaluation(cfg, [model], task_name=task, n=n, split=split, out_dir=workdir / "eval")

        with _as_tool_errors():
            done = await asyncio.to_thread(run)
        results = {
            label: {
                "metrics": r.metrics,
                "latency_ms": r.latency_ms,
                "tokens_per_second": r.tokens_per_second,
            }
            for label, r in done.results.items()
        }
        return {"results": results, "report": str(done.report)}

    @tool(ToolAnnotations(read_only_hint=False, destructive_hint=False))
    async def start_run(config: str, ctx: Context, overrides: list[str] | None = None) -> dict[str, Any]:
        """Start `srl-rlvr run` on a YAML config (dotted overrides allowed) in the background; follow it
        with follow_run."""
        access.caller(ctx, admin=True)
        if not Path(config).is_file():
            raise ToolError(f"config file not found: {config}")
        return runs.start(config, overrides or [])

    @tool(READ)
    async def follow_run(run_id: str, ctx: Context, lines: int = 40, wait_s: float = 0.0) -> dict[str, Any]:
        """A started run's state (running, finished, failed), exit code and the last lines of its log,
        after waiting up to `wait_s` seconds (at most 600) for it to end."""
        access.caller(ctx)
        return await asyncio.to_thread(runs.follow, run_id, lines, min(max(wait_s, 0.0), 600.0))

    @tool(READ)
    async def monitor_status(ctx: Context, config: str | None = None) -> dict[str, Any]:
        """Production against the retrain criteria (`srl-rlvr monitor`): whether retraining is due."""
        access.caller(ctx)
        done = await asyncio.to_thread(_command, ["monitor", *([config] if config else [])], 600)
        if done.returncode not in (0, 3):
            raise ToolError(
                (done.stderr or done.stdout).strip()[-2000:] or f"monitor exited {done.returncode}"
            )
        return {"retrain_due": done.returncode == 3, "report": done.stdout.strip()}

    @tool(READ)
    async def serving_status(url: str, ctx: Context) -> dict[str, Any]:
        """A running server's roles: chains, health, canary, traffic served (its /admin/roles)."""
        access.caller(ctx)
        key = _presented(ctx)
        request = urllib.request.Request(
            f"{url.rstrip('/')}/admin/roles", headers={"Authorization": f"Bearer {key}"} if key else {}
        )

        def call() -> dict[str, Any]:
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return dict(json.loads(response.read()))
            except (urllib.error.URLError, OSError) as e:
                raise ToolError(f"{url}: {e}") from None

        return await asyncio.to_thread(call)

    @tool(WRITE)
    async def promote(
        name: str,
        version: int,
        ctx: Context,
        to: Literal["production", "staging", "backup"] = "production",
        metric: str = "reward",
        force: bool = False,
    ) -> str:
        """Point an alias at a version; to production, the old production becomes backup and a version
        that evaluates worse is refused unless force."""
        access.caller(ctx, admin=True)
        from srl_rlvr.tracking.registry import promote as promote_version

        with _as_tool_errors():
            return await asyncio.to_thread(promote_version, name, version, to, metric, force)

    @tool(WRITE)
    async def rollback(name: str, ctx: Context) -> str:
        """Swap production and backup: the previous production version serves again."""
        access.caller(ctx, admin=True)
        from srl_rlvr.tracking.registry import rollback as rollback_model

        with _as_tool_errors():
            return await asyncio.to_thread(rollback_model, name)

    return server


def _presented(ctx: Context) -> str | None:
    """The caller's key: the bearer token over HTTP, the environment's over stdio (no headers)."""
    headers = ctx.headers
    if headers is None:
        return os.environ.get(STDIO_KEY_ENV)
    authorization = headers.get("authorization", "")
    return authorization[7:].strip() if authorization.lower().startswith("bearer ") else None
