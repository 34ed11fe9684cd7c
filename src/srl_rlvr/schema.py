"""Validation errors a user can act on, for every YAML file we read: the run config (`config/`), the
server's config (`serve/config.py`) and the selection files (`selection/catalog.py`). Each error names
the dotted path of the key, and an unknown key gets the closest known one ("did you mean ...")."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError


def _nested_models(annotation: Any) -> list[type[BaseModel]]:
    """The schemas inside a field's type, through Optional, unions, lists, dicts and Annotated."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _nested_models(arg)]


def key_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted key path the schema accepts (a field's alias where it has one)."""
    paths = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{field.alias or name}"
        paths.append(path)
        for nested in _nested_models(field.annotation):
            paths.extend(key_paths(nested, path + "."))
    return paths


def schema_errors(
    error: ValidationError,
    model: type[BaseModel],
    prefix: str = "",
    skip: Collection[str] = (),
    show_input: bool = False,
    hints: Mapping[str, str] | None = None,
) -> list[str]:
    """One line per problem: `path: what is wrong` (`skip`: location parts pydantic adds that are no
    key, such as the tag of the union member it tried; `prefix`: the section the schema sits under;
    `hints`: what to say of an unknown key, by path, instead of the closest spelling)."""
    known = [f"{prefix}.{p}" if prefix else p for p in key_paths(model)]
    lines = []
    for err in error.errors():
        parts = [str(p) for p in err["loc"] if p not in skip]
        path = ".".join([prefix, *parts] if prefix else parts) or "top level"
        if err["type"] == "extra_forbidden" and hints and path in hints:
            lines.append(f"{path}: unknown key; {hints[path]}")
            continue
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(path, known, n=1, cutoff=0.6)
            lines.append(f"{path}: unknown key" + (f"; did you mean '{close[0]}'?" if close else ""))
            continue
        line = f"{path}: {err['msg'].removeprefix('Value error, ')}"
        lines.append(line + (f" (got {err.get('input')!r})" if show_input else ""))
    return lines
