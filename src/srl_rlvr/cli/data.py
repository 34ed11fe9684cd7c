"""`srl-rlvr data check`: validate and describe a trajectory dataset."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from srl_rlvr.cli.common import (
    console,
)
from srl_rlvr.errors import DataError

if TYPE_CHECKING:
    pass

data_app = typer.Typer(help="Validate and describe trajectory datasets.", no_args_is_help=True)


@data_app.command("check")
def data_check(
    # a string, not a Path: a Path would fold s3://'s '//' into '/'
    path: Annotated[str, typer.Argument(help="A trajectory JSONL file or dataset folder, local or s3://.")],
) -> None:
    """Validate every row of a trajectory dataset; print its size and content hash."""
    from srl_rlvr.data.versioning import load_dataset

    if path.startswith("s3://"):
        import tempfile

        from srl_rlvr.cloud.storage import local_path

        with tempfile.TemporaryDirectory() as scratch:
            rows, manifest = load_dataset(local_path(path, Path(scratch)))
    else:
        rows, manifest = load_dataset(Path(path))
    if not rows:
        raise DataError(f"{path}: no trajectories in it (the file is empty or blank)")
    steps = [len(r.steps) for r in rows]
    console.print(f"{len(rows)} trajectories, {min(steps)}-{max(steps)} steps, hash {manifest['hash'][:16]}")


def add_commands(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
