"""`srl-rlvr serve CONFIG` starts the server; `srl-rlvr serve shift|status` talk to a running one.

`add_commands(app)` registers the group. `shift` and `status` are plain HTTP clients of the admin
routes (stdlib urllib, so they need none of the server's dependencies); the key comes from an
environment variable, never from the command line, where shell history and `ps` would keep it.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.table import Table
from typer.core import TyperGroup

from srl_rlvr.cli.common import console
from srl_rlvr.errors import UserError


class _StartByDefault(TyperGroup):
    """`serve CONFIG ...` means `serve start CONFIG ...`: the common case needs no subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["start", *args]
        return super().parse_args(ctx, args)


serve_app = typer.Typer(
    cls=_StartByDefault,
    help="Serve models over an OpenAI-compatible API (`serve CONFIG`), or steer a running server.",
    no_args_is_help=True,
)

UrlOpt = Annotated[str, typer.Option("--url", help="The running server.")]
KeyEnvOpt = Annotated[str, typer.Option("--key-env", help="Environment variable holding an admin API key.")]


@serve_app.command("start")
def start_command(
    config: Annotated[
        str, typer.Argument(help="YAML file with a `serve:` section (see examples/serve.yaml).")
    ],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Dotted overrides, e.g. serve.port=9000 serve.device=cpu.")
    ] = None,
) -> None:
    """Load the models and serve until Ctrl-C (in-flight requests finish first)."""
    from srl_rlvr.serve.config import load_serve_config
    from srl_rlvr.serve.run import run_server

    settings = load_serve_config(config, overrides or [])
    if settings.auth.enabled:
        from srl_rlvr.serve.auth import load_keys

        load_keys(settings.auth)  # no keys: say so now, not after announcing the address
    for name, served in settings.models.items():
        _check_model(f"serve.models.{name}.path", served.path)
    console.print(
        f"serving {', '.join([*settings.roles, *settings.models])} on http://{settings.host}:{settings.port}/v1",
        highlight=False,
    )
    run_server(settings)


def _check_model(field: str, path: str) -> None:
    """A model that is not there stops the server before it announces an address it cannot serve."""
    from srl_rlvr.errors import ModelLoadError
    from srl_rlvr.modeling import check_source
    from srl_rlvr.tracking.registry import PREFIX, resolve
    from srl_rlvr.tracking.runs import tracking_uri

    try:
        if path.startswith(PREFIX):
            uri = tracking_uri()
            store = Path(uri.removeprefix("sqlite:///"))
            if uri.startswith("sqlite:///") and not store.is_file():  # reading would create it empty
                raise ModelLoadError(
                    f"'{path}': no registry at {store.absolute()}; run where you trained, or set "
                    "MLFLOW_TRACKING_URI"
                )
            resolve(path)
        else:
            check_source(path)
    except UserError as e:
        raise UserError(f"{field}: {e}") from None


def _call(url: str, key_env: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    # The variable the server reads its keys from works here too: its first key is used.
    key = next((k.strip() for k in os.environ.get(key_env, "").split(",") if k.strip()), None)
    if not key:
        raise UserError(
            f"set ${key_env} to an API key of the server (or name another variable with --key-env)"
        )
    request = urllib.request.Request(
        url.rstrip("/") + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = e.reason
        raise UserError(f"{url}{path}: {e.code} {message}") from None
    except urllib.error.URLError as e:
        raise UserError(f"cannot reach {url}: {e.reason}") from None


def _role_table(roles: dict[str, Any]) -> Table:
    table = Table("role", "primary", "backups", "canary", "health", "last rollback")
    for name, r in roles.items():
        canary = f"{r['canary']['model']} {r['canary']['percent']:g}%" if r["canary"] else "-"
        rollback = r["last_rollback"]
        table.add_row(
            name,
            r["primary"],
            ", ".join(r["backups"]) or "-",
            canary,
            "  ".join(f"{m} {s}" for m, s in r["health"].items()),
            f"{rollback['model']}: {rollback['reason']}" if rollback else "-",
        )
    return table


@serve_app.command("shift")
def shift_command(
    role: Annotated[str, typer.Argument(help="The role whose traffic moves.")],
    to: Annotated[
        str, typer.Option("--to", help="A served model, an adapter/model path or registry:NAME/VERSION.")
    ],
    percent: Annotated[
        str,
        typer.Option(
            "--percent", help="Share of traffic; '10,50,100' raises it in steps. 0 withdraws, 100 promotes."
        ),
    ],
    hold: Annotated[
        float, typer.Option("--hold", help="Seconds to watch each step before the next (several steps only).")
    ] = 60.0,
    url: UrlOpt = "http://127.0.0.1:8000",
    key_env: KeyEnvOpt = "SRL_RLVR_API_KEYS",
) -> None:
    """Canary a model for a role; the server rolls it back by itself when it does worse than the primary.

    Worse: an error rate or p95 latency beyond the margins in `serve.canary`, or failed health checks.
    """
    try:
        steps = [float(p) for p in percent.split(",")]
    except ValueError:
        raise UserError(f"--percent '{percent}': expected a number or a list like 10,50,100") from None
    for i, step in enumerate(steps):
        state = _call(url, key_env, "/admin/shift", {"role": role, "to": to, "percent": step})
        console.print(f"{role}: {to} at {step:g}%", highlight=False)
        if i == len(steps) - 1:
            break
        time.sleep(hold)
        state = _call(url, key_env, "/admin/roles")[role]
        if state["canary"] is None:
            console.print(_role_table({role: state}))
            raise UserError(f"the canary was rolled back: {state['last_rollback']['reason']}")
    console.print(_role_table({role: state}))


@serve_app.command("status")
def status_command(url: UrlOpt = "http://127.0.0.1:8000", key_env: KeyEnvOpt = "SRL_RLVR_API_KEYS") -> None:
    """Each role's primary, backups, canary, the health of its models and its last rollback."""
    console.print(_role_table(_call(url, key_env, "/admin/roles")))


def add_commands(app: typer.Typer) -> None:
    app.add_typer(serve_app, name="serve")
