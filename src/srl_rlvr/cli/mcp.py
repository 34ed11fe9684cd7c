"""`srl-rlvr mcp CONFIG`: serve the system's operations to agents over MCP (stdio, or streamable HTTP)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def mcp_command(
    config: Annotated[
        str, typer.Argument(help="YAML file with a `serve:` section: its auth (keys, admin_keys) applies.")
    ],
    http: Annotated[
        bool, typer.Option("--http", help="Streamable HTTP on serve.host:serve.port/mcp instead of stdio.")
    ] = False,
    workdir: Annotated[
        Path, typer.Option("--workdir", help="Where evaluation reports and run logs go.")
    ] = Path("mcp-runs"),
) -> None:
    """Run the MCP server: models and versions, evaluate, start/follow runs, monitor, promote, roll back."""
    from srl_rlvr.serve.config import load_serve_config
    from srl_rlvr.serve.mcp_server import build_mcp_server

    settings = load_serve_config(config)
    server = build_mcp_server(settings.auth, workdir)
    if http:
        server.run("streamable-http", host=settings.host, port=settings.port)
    else:
        server.run("stdio")


def add_commands(app: typer.Typer) -> None:
    app.command("mcp")(mcp_command)
