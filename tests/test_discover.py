"""`srl-rlvr discover` against a local server answering recorded Hub API responses (HF_ENDPOINT)."""

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from srl_rlvr.config import build_config
from srl_rlvr.selection.discovery import (
    FINDINGS_FILE,
    SNAPSHOT_FILE,
    DiscoveryError,
    discovery_due,
    run_discovery,
)

RECORDED = Path(__file__).parent / "data" / "hub_models.json"  # a /api/models answer, in the Hub's shape
RECORDED_AT = datetime(2026, 12, 1, tzinfo=timezone.utc)
CATALOG = """
candidates:
  - id: Qwen/Qwen3-4B-Instruct
    context_window: 32768
    hardware: [L4]
    latency_ms: {p50: 40, p95: 90}
    cost_per_1m_tokens: 0.2
"""


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict]]:
    """A Hub on 127.0.0.1 that answers /api/models with the recorded rows; the queries it got."""
    queries: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            queries.append({"path": url.path, **parse_qs(url.query)})
            body = RECORDED.read_bytes() if url.path == "/api/models" else b'{"error": "not found"}'
            self.send_response(200 if url.path == "/api/models" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    yield queries
    server.shutdown()
    server.server_close()


def test_discover_lists_the_candidates_that_pass_3_of_5_and_explains_the_rest(hub, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    config = build_config(
        overrides=[f"model_selection.discovery.catalog={catalog}", "model_selection.discovery.limit=20"]
    )

    found = run_discovery(config, tmp_path / "out", now=RECORDED_AT)

    (listing,) = [q for q in hub if q["path"] == "/api/models"]  # one list call judges every candidate
    assert listing["pipeline_tag"] == ["text-generation"] and listing["sort"] == ["downloads"]
    verdicts = {f.model.id: (f.met, f.passed, f.in_catalog) for f in found.findings}
    assert verdicts == {
        "Qwen/Qwen3-4B-Instruct": (5, True, True),  # passes, but the catalog has it already
        "acme-labs/reasoner-7b": (4, True, False),  # no benchmarks in its card
        "tiny-lab/mini-1.1b": (3, True, False),  # no benchmarks, nearly two years old: exactly 3
        "someone/gpt2-finetune": (2, False, False),  # 0.12B and old
        "anon/merge-x": (1, False, False),  # only recent
    }
    assert [f.model.id for f in found.new] == ["acme-labs/reasoner-7b", "tiny-lab/mini-1.1b"]
    assert found.proposals[0].startswith("srl-rlvr costbenefit --role ")
    assert "--new acme-labs/reasoner-7b" in found.proposals[0] and len(found.proposals) == 2
    written = yaml.safe_load((tmp_path / "out" / FINDINGS_FILE).read_text())
    small = next(c for c in written["candidates"] if c["id"] == "someone/gpt2-finetune")
    assert small["passed"] is False
    assert small["reasons"]["size_reasonable"] == "not met: 0.12B parameters outside 1-1000B"
    assert small["reasons"]["recent"] == "not met: created 1308 days ago (limit 90)"
    assert written["new"] == ["acme-labs/reasoner-7b", "tiny-lab/mini-1.1b"]

    # offline: the snapshot the online run saved gives the same findings, without a request
    asked = len(hub)
    offline = run_discovery(
        config, tmp_path / "offline", offline=tmp_path / "out" / SNAPSHOT_FILE, now=RECORDED_AT
    )
    assert len(hub) == asked
    assert [(f.model.id, f.passed) for f in offline.findings] == [
        (f.model.id, f.passed) for f in found.findings
    ]
    assert json.loads((tmp_path / "out" / SNAPSHOT_FILE).read_text()) == json.loads(RECORDED.read_text())


def test_an_unreachable_hub_is_one_line_that_names_the_offline_way(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    with pytest.raises(DiscoveryError, match=r"run offline with --offline hub-snapshot\.json"):
        run_discovery(build_config(), tmp_path)


def test_discovery_is_due_every_update_frequency_days() -> None:
    assert discovery_due(None, RECORDED_AT, 7)
    assert not discovery_due(RECORDED_AT - timedelta(days=6), RECORDED_AT, 7)
    assert discovery_due(RECORDED_AT - timedelta(days=7), RECORDED_AT, 7)
