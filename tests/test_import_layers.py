"""The import contract: every import inside srl_rlvr points down the floors below, never up or sideways.

A room is a top-level package or module of srl_rlvr (`serve`, `modeling`, ...). Rooms on a higher floor
may import rooms on any lower floor; rooms on one floor do not import each other, so each floor can be
read, tested and replaced without the ones above it. The floors are the design's data flow, measured:
`serve` sits beside `pipeline` because its MCP tool runs an evaluation, `evaluate` sits under `train`
because training validates its checkpoints with the evaluation's scorer, and the modules that import
nothing of ours (errors, schema, ...) sit under `data` and `config`, which use them. Imports inside
functions and under `TYPE_CHECKING` count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import srl_rlvr

# Top floor first. A new room (package or top-level module) must be placed on a floor here, or this fails.
FLOORS: list[tuple[str, ...]] = [
    ("__main__",),  # `python -m srl_rlvr`
    ("cli",),  # the commands: parse, call one library function, print
    ("manage",),  # the always-on service that schedules the jobs below
    ("feedback", "distill", "experiment", "selection"),  # jobs that run stages and decide on models
    ("pipeline", "serve"),  # the stage runners; the server
    ("train", "generate", "cloud"),  # the stages' components; AWS
    ("evaluate",),  # scoring a model on a task: training validates its checkpoints with it
    ("rollout", "encoder_data"),  # the generation engines; the encoder types' training data
    ("modeling", "encoder_models", "tracking", "tasks"),  # models, MLflow, tasks and verifiers
    ("data", "config"),  # what is on disk; the run config
    (
        "errors",
        "schema",
        "trl_names",
        "distributed",
        "model_types",
        "progress",
        "__init__",
    ),  # import nothing of ours
]
FLOOR_OF = {room: level for level, rooms in enumerate(FLOORS) for room in rooms}

# Known imports that break the floors, each with what would mend it. Keep this list short.
EXCEPTIONS = {
    # The retrieval task scores with the generate stage's BM25 index: the index belongs a floor down.
    ("srl_rlvr/tasks/retrieval.py", "srl_rlvr.generate.retriever"),
}

PACKAGE = Path(srl_rlvr.__file__).parent


def statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement, nested ones too (in functions, classes, if/try/with blocks): an import is a
    statement, so expressions need no visit (ten times fewer nodes than `ast.walk`)."""
    for node in body:
        yield node
        for name in ("body", "orelse", "finalbody", "handlers", "cases"):
            for child in getattr(node, name, ()):
                yield from statements(
                    child.body if isinstance(child, ast.excepthandler | ast.match_case) else [child]
                )


def imported_modules(path: Path, module: str) -> list[tuple[int, str]]:
    """Every module `path` imports, made absolute, with its line: `from . import x` resolved against
    `module`, and `from srl_rlvr import name` counted as `srl_rlvr.name` since the name may be a room."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in statements(ast.parse(path.read_text(), filename=str(path)).body):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            if "." in source:
                found.append((node.lineno, source))
            else:
                found += [(node.lineno, f"{source}.{alias.name}") for alias in node.names]
    return found


def room_of(module: str, root: str) -> str | None:
    """`srl_rlvr.serve.app` is in room `serve`; the package itself is `__init__`; None when not ours."""
    if module != root and not module.startswith(root + "."):
        return None
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def upward_imports(package_dir: Path) -> list[str]:
    """One line per import that breaks the contract, naming the file, line and both rooms."""
    root = package_dir.name
    broken: list[str] = []
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        room = room_of(module, root)
        assert room is not None
        if room not in FLOOR_OF:
            broken.append(
                f"{relative}.py: room '{room}' is on no floor; add it to FLOORS in {Path(__file__).name}"
            )
            continue
        for line, target in imported_modules(path, module):
            target_room = room_of(target, root)
            if target_room is None or target_room == room or (f"{relative}.py", target) in EXCEPTIONS:
                continue
            if not (package_dir / target_room).is_dir() and not (package_dir / f"{target_room}.py").is_file():
                target_room = "__init__"  # `from srl_rlvr import __version__`: a name, not a room
            if target_room not in FLOOR_OF:
                broken.append(f"{relative}.py:{line}: imports '{target}', whose room is on no floor")
            elif FLOOR_OF[target_room] <= FLOOR_OF[room]:
                way = "sideways" if FLOOR_OF[target_room] == FLOOR_OF[room] else "up"
                broken.append(f"{relative}.py:{line}: {room} imports {target} ({target_room}): {way}")
    return broken


def test_every_import_in_the_package_points_down_the_floors() -> None:
    broken = upward_imports(PACKAGE)
    assert not broken, "imports that break the floors:\n" + "\n".join(broken)


def test_an_upward_a_sideways_and_an_unplaced_import_are_each_reported(tmp_path: Path) -> None:
    package = tmp_path / "srl_rlvr"
    for folder in ("data", "serve", "pipeline", "newroom"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "data" / "records.py").write_text("import json\nfrom srl_rlvr.serve.app import build_app\n")
    (package / "serve" / "app.py").write_text(
        "from srl_rlvr.data import records\nfrom ..pipeline import run\n"
    )
    (package / "pipeline" / "run.py").write_text("from . import stages\nfrom srl_rlvr import data\n")
    (package / "newroom" / "x.py").write_text("")

    broken = upward_imports(package)

    assert len(broken) == 4, broken
    assert "srl_rlvr/data/records.py:2: data imports srl_rlvr.serve.app (serve): up" in broken
    assert "srl_rlvr/serve/app.py:2: serve imports srl_rlvr.pipeline (pipeline): sideways" in broken
    assert sum("room 'newroom' is on no floor" in line for line in broken) == 2
