"""A real HTTP server on 127.0.0.1 that speaks OpenAI's chat-completions protocol and answers from a script.

Tests (and benchmarks) point the real `openai` client at it, so the client's retries, timeouts, error
parsing and headers are exercised for real; only the model behind the endpoint is scripted.

A reply is a string (the assistant's content) or a dict:
    {"content": str, "delay": float?}                       answer, after an optional delay
    {"status": int, "message": str?, "retry_after": float?} an error in OpenAI's error JSON shape
    {"echo_auth": True, "status": 401}                      an error whose message holds the request's
                                                            Authorization header (to prove scrubbing)
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = str | dict[str, Any]
Script = list[Reply] | Callable[[dict[str, Any]], Reply]

MODEL_ID = "scripted-model"


def _words(text: str) -> int:
    return len(text.split())


def completion_json(content: str, model: str, prompt_text: str) -> dict[str, Any]:
    """A chat.completion object as OpenAI sends it; tokens are approximated by whitespace words."""
    prompt_tokens, completion_tokens = _words(prompt_text), _words(content)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def error_json(status: int, message: str) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "code": str(status)}}


class _Listener(ThreadingHTTPServer):
    # socketserver's default backlog of 5 refuses connections when many clients connect at once on a
    # busy machine; a client's many concurrent requests are what some tests are about.
    request_queue_size = 128
    daemon_threads = True


class ScriptedChatServer:
    """Context manager: serves the script on a free port in a daemon thread until `__exit__`."""

    def __init__(self, replies: Script, latency_s: float = 0.0) -> None:
        self._script = replies if callable(replies) else list(replies)
        self.latency_s = latency_s
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    def __enter__(self) -> ScriptedChatServer:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in separate writes; with Nagle on, delayed ACKs add ~40 ms to each
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: test output is for test failures."""

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    models = {
                        "object": "list",
                        "data": [{"id": MODEL_ID, "object": "model", "owned_by": "test"}],
                    }
                    self._send(200, models)
                else:
                    self._send(404, error_json(404, f"no route {self.path}"))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, error_json(404, f"no route {self.path}"))
                    return
                body["_headers"] = {k.lower(): v for k, v in self.headers.items()}
                server._record(body)
                if server.latency_s:
                    time.sleep(server.latency_s)
                self._answer(server._next_reply(body), body)

            def _answer(self, reply: Reply, body: dict[str, Any]) -> None:
                if isinstance(reply, str):
                    reply = {"content": reply}
                if "status" in reply:
                    message = reply.get("message") or HTTPStatus(reply["status"]).phrase
                    if reply.get("echo_auth"):
                        message = f"invalid credentials: {self.headers.get('Authorization')}"
                    headers = {}
                    if "retry_after" in reply:
                        headers["Retry-After"] = str(reply["retry_after"])
                    self._send(reply["status"], error_json(reply["status"], message), headers)
                    return
                time.sleep(reply.get("delay", 0.0))
                prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
                self._send(200, completion_json(reply["content"], body.get("model", MODEL_ID), prompt))

            def _send(
                self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up; that is the point of a delayed reply

        self._httpd = _Listener(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        # A short poll interval: shutdown() waits up to one interval, once per test.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _record(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(body)

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        if callable(self._script):
            return self._script(body)
        with self._lock:
            if not self._script:
                return {"status": 500, "message": "script exhausted"}
            return self._script.pop(0)
