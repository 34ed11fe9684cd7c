"""`srl-rlvr`: the command line, one module per command group. It prints; the library it calls only
returns values and logs.

Heavy imports (torch, transformers, trl) happen inside the commands that need them, so `--help`
and `config check` answer instantly.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import typer
from rich.markup import escape

from srl_rlvr.cli import (
    aws,
    configs,
    data,
    discover,
    distill,
    evaluate,
    experiment,
    feedback,
    generate,
    manage,
    mcp,
    registry,
    run,
    selection,
    serve,
    tasks,
    testdata,
    train,
)
from srl_rlvr.cli.common import err_console, quiet_libraries, show_progress_lines
from srl_rlvr.cli.train import default_train_out
from srl_rlvr.errors import UserError

__all__ = ["app", "default_train_out", "main", "quiet_libraries"]


def _flags_without_a_type() -> None:
    """typer's rich help labels every on/off flag `<bool>` (`--help <bool>`), which reads as if the
    flag took a value; drop the label for flags. A typer without the method keeps its own help."""
    from typer import core

    shown = getattr(core.TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_ours", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if getattr(self, "is_flag", False) and not self.secondary_opts else shown(self, ctx)

    display_type_rich._ours = True  # type: ignore[attr-defined]
    core.TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_without_a_type()

app = typer.Typer(
    help="Make a small language model better at a job: expert trajectories -> SRL -> RLVR -> evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

for group in (
    configs,
    tasks,
    data,
    testdata,
    generate,
    train,
    evaluate,
    run,
    experiment,
    distill,
    registry,
    selection,
    discover,
    serve,
    mcp,
    feedback,
    manage,
    aws,
):
    group.add_commands(app)

DEBUG_ENV = "SRL_RLVR_DEBUG"


def main(argv: list[str] | None = None) -> None:
    """Entry point: a user error is one red line and exit code 2; anything else is one line that says
    it is our bug and how to get its traceback (`--debug` or SRL_RLVR_DEBUG=1), exit code 1."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not sys.stderr.isatty():  # a log file or pipe: no bar can draw, so a progress line every few steps
        show_progress_lines()
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    try:
        app(args=args)
    except UserError as e:
        if debug:
            raise
        err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        raise SystemExit(2) from None
    except Exception as e:  # the last line of defence: a bug of ours, not the user's input
        if debug:
            raise
        if _interrupted(e):  # SIGTERM during training: the operator asked for it, not a bug
            err_console.print(
                f"[yellow]interrupted; checkpoint saved at {escape(str(getattr(e, 'checkpoint', None)))}; "
                "the command stopped there, nothing after training ran[/yellow]",
                highlight=False,
                soft_wrap=True,
            )
            raise SystemExit(143) from None
        first = (str(e).strip().splitlines() or [""])[0]
        err_console.print(
            f"[red]internal error:[/red] {type(e).__name__}: {escape(first)} — a bug in srl-rlvr, not in "
            f"your input; rerun with --debug (or {DEBUG_ENV}=1) for the traceback and include it in your "
            "report",
            highlight=False,
            soft_wrap=True,
        )
        raise SystemExit(1) from None


def _interrupted(error: Exception) -> bool:
    """Whether `error` is training's SIGTERM stop (`TrainingInterrupted`). Only a command that trained
    can raise it, and that command imported the module: the check never imports torch itself."""
    runner = sys.modules.get("srl_rlvr.train.runner")
    return runner is not None and isinstance(error, runner.TrainingInterrupted)
