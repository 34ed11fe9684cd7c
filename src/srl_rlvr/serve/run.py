"""Start the server: in the foreground (`srl-rlvr serve`), or in a background thread (tests, benchmarks)."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from srl_rlvr.serve.app import build_app
from srl_rlvr.serve.config import ServeConfig
from srl_rlvr.serve.header_timeout import header_timeout_protocol
from srl_rlvr.serve.server import Server


def run_server(config: ServeConfig, log_level: str = "info") -> None:
    """Blocking until SIGINT/SIGTERM; uvicorn finishes in-flight requests before it exits."""
    uvicorn.run(
        build_app(config),
        host=config.host,
        port=config.port,
        log_level=log_level,
        timeout_graceful_shutdown=int(config.limits.request_timeout_s),
        http=header_timeout_protocol(config.limits.header_timeout_s),
    )


def wait_ready(base_url: str, key: str | None, timeout_s: float = 120.0) -> None:
    """Wait until /ready says the models are loaded; raise if loading failed or took too long."""
    request = urllib.request.Request(
        f"{base_url}/ready", headers={"Authorization": f"Bearer {key}"} if key else {}
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as e:
            body = json.loads(e.read() or b"{}")
            if body.get("status") == "failed":
                raise RuntimeError(f"the server could not load its models: {body.get('error')}") from None
        except OSError:
            pass  # not listening yet
        time.sleep(0.05)
    raise TimeoutError(f"{base_url} was not ready within {timeout_s:g} s")


@contextmanager
def serve_in_thread(
    config: ServeConfig, key: str | None = None, server: Server | None = None
) -> Iterator[str]:
    """The real server on `config.host` (port 0: a free one) in a daemon thread; yields its base URL
    (`http://host:port`, append /v1 for an OpenAI client) once its models are loaded. `server`: the
    Server to run, for a caller that inspects it while it serves."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))
    settings = uvicorn.Config(
        build_app(config, server),
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=5,
        http=header_timeout_protocol(config.limits.header_timeout_s),
    )
    server = uvicorn.Server(settings)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base_url = f"http://{config.host}:{sock.getsockname()[1]}"
    try:
        wait_ready(base_url, key)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
