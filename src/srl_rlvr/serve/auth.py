"""API keys and the per-key rate limit.

Keys come from an environment variable (comma-separated) and/or a keys file of `id: key` lines. Logs,
metrics and the audit log only ever see a key's id: the file's id, or `env:` plus the first 8 hex digits
of the key's SHA-256 for a key from the environment. Keys are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from srl_rlvr.errors import ConfigError
from srl_rlvr.serve.config import AuthConfig


def load_keys(config: AuthConfig) -> dict[str, str]:
    """key -> key id, from the environment variable and the keys file the config names."""
    keys: dict[str, str] = {}
    if config.api_keys_env and os.environ.get(config.api_keys_env):
        for key in os.environ[config.api_keys_env].split(","):
            if key.strip():
                keys[key.strip()] = env_key_id(key.strip())
    if config.keys_file:
        path = Path(config.keys_file)
        if not path.is_file():
            raise ConfigError(f"serve.auth.keys_file: no such file {path}")
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            key_id, sep, key = line.partition(":")
            if not sep or not key_id.strip() or not key.strip():
                raise ConfigError(f"{path}:{number}: expected `id: key`")  # the line itself holds a key
            keys[key.strip()] = key_id.strip()
    if config.enabled and not keys:
        raise ConfigError(
            f"no API keys: set ${config.api_keys_env or 'SRL_RLVR_API_KEYS'} (comma-separated) or "
            "serve.auth.keys_file, or turn auth off with serve.auth.enabled=false"
        )
    return keys


def env_key_id(key: str) -> str:
    """The id logs and `admin_keys` know a key from the environment by."""
    return "env:" + hashlib.sha256(key.encode()).hexdigest()[:8]


def key_id_of(keys: dict[str, str], presented: str | None) -> str | None:
    """The id of a presented key, or None when it is not one of ours."""
    if not presented:
        return None
    found = None
    for key, key_id in keys.items():  # no early exit: the time taken says nothing about which key matched
        if hmac.compare_digest(key.encode(), presented.encode()):
            found = key_id
    return found


class RateLimiter:
    """A token bucket per key id: `burst` requests at once, refilled at `rate` per second."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, when)
        self._lock = threading.Lock()

    def wait_time(self, key_id: str) -> float:
        """0 and a token taken when the key may go ahead; else the seconds until it may."""
        with self._lock:
            now = self.clock()
            tokens, when = self._buckets.get(key_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - when) * self.rate)
            if tokens >= 1:
                self._buckets[key_id] = (tokens - 1, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1 - tokens) / self.rate
