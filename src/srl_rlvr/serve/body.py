"""Decode a request body into plain JSON values the rest of the server can trust, or a one-line 400.

JSON may spell text that is not Unicode (a lone UTF-16 surrogate as `"\\ud800"`): Python decodes it to
a `str` that no tokenizer, UTF-8 encoder or database driver accepts, so it is refused here, at the
edge, naming the field. Nesting deeper than the decoder's recursion limit and integers longer than
Python converts (`sys.get_int_max_str_digits`) are refused here too, instead of surfacing as a 500.
"""

from __future__ import annotations

import json
from typing import Any

from srl_rlvr.serve.openai_api import ApiError


def decode_json(body: bytes) -> Any:
    """The parsed body (`{}` when empty); ApiError(400) for anything that is not valid JSON text."""
    try:
        value = json.loads(body or b"{}")
    except UnicodeDecodeError:
        raise ApiError(400, "request body is not UTF-8 text; send JSON in UTF-8") from None
    except json.JSONDecodeError as e:
        raise ApiError(400, f"request body is not JSON: {e}") from None
    except RecursionError:
        raise ApiError(400, "request body is nested too deeply", code="invalid_request") from None
    except ValueError as e:  # an integer of more digits than Python converts
        raise ApiError(400, f"request body holds an unreadable number: {e}", code="invalid_request") from None
    where = lone_surrogate_at(value)
    if where is not None:
        raise ApiError(
            400,
            f"{where or 'body'}: text holds a lone UTF-16 surrogate (not Unicode); send valid UTF-8 text",
            code="invalid_request",
            param=where or None,
        )
    return value


def lone_surrogate_at(value: Any) -> str | None:
    """The dotted path of the first string (key or value) holding a lone surrogate, or None; iterative,
    so any depth the decoder accepted is walked without recursion."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if not _is_unicode(item):
                return path
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else str(key)
                if not _is_unicode(key):
                    return path or "body"
                stack.append((child_path, child))
        elif isinstance(item, list):
            stack.extend((f"{path}.{i}" if path else str(i), child) for i, child in enumerate(item))
    return None


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
