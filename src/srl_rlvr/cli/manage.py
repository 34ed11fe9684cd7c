"""`srl-rlvr manage`: the always-on management layer. `serve` runs it; `tick` is one pass (what a cron
line or systemd timer calls); `status` shows per model its last verdict, jobs and next runs."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from srl_rlvr.cli.common import ConfigArg, OverridesArg, console, load_cli_config
from srl_rlvr.errors import ConfigError

manage_app = typer.Typer(
    help="Watch every production model, queue and run retraining and distillation, alert, count cost.",
    no_args_is_help=True,
)


def _now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(timezone.utc)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--now: '{value}' is not an ISO time (2026-12-07T03:00:00+00:00)") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


NowOption = Annotated[
    str | None, typer.Option("--now", help="The pass's clock (ISO time, UTC if no zone); default: now.")
]


@manage_app.command("tick")
def tick_command(config: ConfigArg = None, overrides: OverridesArg = None, now: NowOption = None) -> None:
    """One idempotent pass: monitor what is due, queue retrains, run queued jobs, alert."""
    cfg = load_cli_config(config, overrides)
    from srl_rlvr.manage.tick import tick

    result = tick(cfg, _now(now))
    for name, verdict in result.monitored.items():
        console.print(f"monitor {escape(name)}: {escape(verdict)}", highlight=False)
    for key in result.queued:
        console.print(f"queued {escape(key)}", highlight=False)
    for line in result.ran:
        console.print(f"ran {escape(line)}", highlight=False)
    if result.discovered is not None:
        console.print(
            f"discovery: {len(result.discovered)} new: {escape(', '.join(result.discovered))}",
            highlight=False,
        )
    for line in result.alerts:
        console.print(f"alert {escape(line)}", highlight=False)


@manage_app.command("serve")
def serve_command(config: ConfigArg = None, overrides: OverridesArg = None) -> None:
    """Run a pass every manage.tick_seconds (APScheduler) and serve Prometheus metrics; Ctrl-C stops."""
    cfg = load_cli_config(config, overrides)
    from srl_rlvr.manage.fleet import production_models
    from srl_rlvr.manage.service import serve

    production_models(cfg)  # an unknown model is one line now, not in the log of every pass
    console.print(
        f"manage: a pass every {cfg.manage.tick_seconds:g}s; metrics on :{cfg.manage.metrics_port}"
        if cfg.manage.metrics_port
        else f"manage: a pass every {cfg.manage.tick_seconds:g}s"
    )
    try:
        serve(cfg, config, list(overrides or []))
    except KeyboardInterrupt:
        console.print("manage: stopped")


@manage_app.command("status")
def status_command(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print it as JSON, for scripts and dashboards.")
    ] = False,
    now: NowOption = None,
) -> None:
    """Per model: last monitor verdict, queued and running jobs, last retrain; the schedules' next runs."""
    cfg = load_cli_config(config, overrides)
    from srl_rlvr.data.manage_status import status
    from srl_rlvr.manage.state import open_state
    from srl_rlvr.manage.tick import state_url

    found = status(open_state(state_url(cfg)), _now(now))
    if as_json:
        print(json.dumps(found, indent=2))  # plain: a pipe gets JSON, not a styled rendering
        return
    table = Table("model", "monitor", "queued", "running", "last retrain", "spend this month")
    for name, m in found["models"].items():
        last = m["last_retrain"]
        table.add_row(
            name,
            "-" if m["monitor"] is None else m["monitor"]["verdict"],
            ", ".join(j["kind"] for j in m["queued"]) or "-",
            ", ".join(j["kind"] for j in m["running"]) or "-",
            "-" if last is None else f"{last['deployed']} ({last['finished']})",
            f"${m['spend_usd_this_month']:.2f}",
        )
    console.print(table)
    for name, s in found["schedules"].items():
        console.print(f"{name}: last {s['last_run']}, next {s['next_run']}", highlight=False)


def add_commands(app: typer.Typer) -> None:
    app.add_typer(manage_app, name="manage")
