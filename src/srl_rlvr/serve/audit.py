"""The append-only audit log: one JSON line per guardrail violation, for whoever must answer for the model.

A line holds when, which key (its id, never the key), which model and role, which rule and what was done.
Never the request or answer text: the log would become a second copy of the PII the rules redact.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from pathlib import Path


class AuditLog:
    """Appends under a lock so concurrent requests never interleave half-lines."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(
        self, *, key_id: str, model: str, role: str | None, rule: str, action: str, request_id: str
    ) -> None:
        line = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "key_id": key_id,
            "model": model,
            "role": role,
            "rule": rule,
            "action": action,
            "request_id": request_id,
        }
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
