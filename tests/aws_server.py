"""A moto server (AWS emulated over real HTTP) on 127.0.0.1, and the environment pointing boto3,
and any other AWS client, at it."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest

ACCOUNT = "123456789012"  # moto's account


def start_moto() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server._server.server_port}"  # port 0: the OS picked a free one
    finally:
        server.stop()


def use_moto(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> str:
    """Point every AWS client at `endpoint` with dummy credentials, and clear the emulator's state."""
    from srl_rlvr.cloud.session import reset

    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).read()
    for key, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_CONFIG_FILE": "/nonexistent",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    reset()
    return endpoint
