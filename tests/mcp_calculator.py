"""An MCP server with one tool, `add`, over stdio: what a role's model calls in the serving tests.
Each call is appended to the file named by $CALCULATOR_LOG, so a test sees what actually ran."""

from __future__ import annotations

import os
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import Field

server = MCPServer("calculator")


@server.tool()
def add(a: Annotated[int, Field(ge=0, le=99)], b: Annotated[int, Field(ge=0, le=99)]) -> int:
    """Add two whole numbers from 0 to 99."""
    with open(os.environ["CALCULATOR_LOG"], "a") as log:
        log.write(f"{a}+{b}\n")
    return a + b


if __name__ == "__main__":
    server.run("stdio")
