"""`srl-rlvr config check`: a config with every key's default and reason."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from srl_rlvr.cli.common import (
    ConfigArg,
    OverridesArg,
    console,
    err_console,
    load_cli_config,
)

if TYPE_CHECKING:
    pass

config_app = typer.Typer(help="Check and inspect YAML configs.", no_args_is_help=True)


@config_app.command("check")
def config_check(config: ConfigArg = None, overrides: OverridesArg = None) -> None:
    """Validate a config and print it fully resolved (every default filled in), each key with its
    description as a comment above it."""
    from srl_rlvr.config import dump_config
    from srl_rlvr.tasks import load_task

    loaded = load_cli_config(config, overrides)
    load_task(loaded.task.name, loaded.task.options)  # imports a user task now, not at `run`
    console.print(dump_config(loaded, described=True), end="", markup=False, highlight=False)
    err_console.print(f"[green]ok[/green] {config or 'defaults'}")


def add_commands(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
