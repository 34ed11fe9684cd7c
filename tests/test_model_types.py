"""The encoder model types end to end: train a few steps, evaluate against the base, register, serve.

Tiny BERTs built in-process (a word-level vocabulary over the task's own words), nothing downloaded.
One module fixture trains each type once; the serving tests load the registered versions.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass

import numpy as np
import openai
import pytest
import torch

from srl_rlvr.cli import main
from srl_rlvr.config import build_config
from srl_rlvr.encoder_models import load_cross_encoder
from srl_rlvr.errors import ConfigError
from srl_rlvr.generate.retriever import KnowledgeIndex
from srl_rlvr.pipeline.encoders import run_encoder_pipeline
from srl_rlvr.serve.config import RouterConfig, build_serve_config
from srl_rlvr.serve.encoders import EncoderSet
from srl_rlvr.serve.intent_router import route
from srl_rlvr.serve.run import serve_in_thread
from srl_rlvr.tracking import registry

ROLES = {"sentiment": "sentiment", "arithmetic": "arithmetic", "codegen": "codegen"}
KEY = "sk-types"


def _train(kind: str, folder, **encoder) -> object:
    task = "sentiment" if kind == "classifier" else "retrieval"
    config = build_config(
        {
            "model": {"type": kind, "name_or_path": "tiny", "device": "cpu"},
            "task": {"name": task},
            "output_dir": str(folder / kind),
            "data": {"test_size": 30},
            "eval": {"bootstrap_samples": 200},
            "encoder": {"batch_size": 16, "learning_rate": 1e-3, "max_length": 64, **encoder},
            "registry": {"model_name": f"types-{kind}"},
        }
    )
    return run_encoder_pipeline(config)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    # One thread: a tiny model's matrices are too small to split, and on a busy 2-core box OpenMP
    # threads waiting for each other made every step four times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("types")
    try:
        yield {
            "embedding": _train("embedding", folder, steps=8),
            "reranker": _train("reranker", folder, steps=8),
            "classifier": _train(
                "classifier", folder, steps=20, learning_rate=5e-3, per_role=24, roles=ROLES
            ),
        }
    finally:
        torch.set_num_threads(threads)


def test_config_check_refuses_a_stage_the_model_type_cannot_run():
    assert build_config({"model": {"type": "embedding"}}).pipeline.stages == [
        "generate",
        "train",
        "evaluate",
        "register",
    ]
    with pytest.raises(ConfigError, match=r"model\.type reranker cannot run srl"):
        build_config({"model": {"type": "reranker"}, "pipeline": {"stages": ["generate", "srl", "evaluate"]}})
    with pytest.raises(ConfigError, match="causal_lm cannot run train"):
        build_config({"pipeline": {"stages": ["generate", "train"]}})


def test_config_check_says_so_in_one_line(tmp_path, capsys):
    (tmp_path / "router.yaml").write_text("model: {type: classifier}\n")
    with pytest.raises(SystemExit) as exited:
        main(["config", "check", str(tmp_path / "router.yaml"), "pipeline.stages=[generate,sft]"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "model.type classifier cannot run sft; its stages: generate, train, evaluate, register" in err


def test_embedding_training_beats_its_base_and_registers_with_its_type(trained):
    run = trained["embedding"]
    tuned = run.report["results"]["tuned"]["metrics"]
    assert tuned["ndcg@10"] > run.report["results"]["base"]["metrics"]["ndcg@10"]
    delta = run.report["deltas"]["tuned"]["ndcg@10"]
    assert delta["delta_low"] <= delta["delta"] <= delta["delta_high"]
    assert {"recall@1", "recall@5", "recall@10", "mrr", "ndcg@10"} <= set(tuned)
    version = registry.resolve(run.registered)
    assert version.tags["model_type"] == "embedding"
    assert version.dataset == run.data_version
    assert version.metrics["ndcg_at_10"] == pytest.approx(tuned["ndcg@10"], rel=1e-4)
    assert "staging" in registry.resolve("registry:types-embedding@staging").aliases


def test_reranker_is_judged_against_its_base_and_bm25(trained):
    report = trained["reranker"].report
    assert list(report["results"]) == ["bm25", "base", "tuned"]
    assert set(report["deltas_vs_bm25"]["tuned"]) == set(report["deltas"]["tuned"])
    bm25 = report["results"]["bm25"]["metrics"]["ndcg@10"]
    assert 0 < bm25 <= 1  # BM25's own order of its candidates: the first stage the reranker must beat
    assert registry.resolve(trained["reranker"].registered).tags["model_type"] == "reranker"


def test_intent_router_reports_accuracy_macro_f1_and_confusion(trained):
    report = trained["classifier"].report
    tuned = report["results"]["tuned"]
    assert tuned["metrics"]["accuracy"] > report["results"]["base"]["metrics"]["accuracy"]
    assert tuned["confusion"]["roles"] == list(ROLES)
    rows = tuned["confusion"]["rows"]
    assert sum(map(sum, rows)) == 30  # every held-out prompt is in the table once
    assert set(tuned["per_role"]) == set(ROLES)
    assert -1 <= report["deltas"]["tuned"]["macro_f1"]["delta"] <= 1


def test_router_below_its_confidence_floor_falls_back_to_the_default_role(trained):
    encoders = EncoderSet("cpu")
    encoders.load("router", trained["classifier"].registered, "classifier")
    message = [{"role": "user", "content": "This blender is fantastic, I love it!"}]
    sure = asyncio.run(
        route(encoders, RouterConfig(model="router", default_role="codegen", confidence_floor=0.0), message)
    )
    unsure = asyncio.run(
        route(encoders, RouterConfig(model="router", default_role="codegen", confidence_floor=1.0), message)
    )
    assert not sure.fell_back and sure.role in ROLES
    assert unsure.fell_back and unsure.role == "codegen" and unsure.confidence == sure.confidence


def test_a_trained_reranker_orders_the_context_retrievers_candidates(trained, tmp_path):
    notes = [
        "Refunds arrive within five business days.",
        "Refund requests need the order number.",
        "Tomatoes.",
    ]
    for i, note in enumerate(notes):
        (tmp_path / f"note{i}.md").write_text(note)  # a file is one passage
    bm25 = KnowledgeIndex.build(tmp_path)
    index = KnowledgeIndex.build(tmp_path, rerank_model=trained["reranker"].registered, rerank_candidates=5)
    query = "refund"
    first = [p.text for p in bm25.search(query, 5)]
    scorer = load_cross_encoder(registry.local_path(trained["reranker"].registered))
    scores = scorer.predict([(query, text) for text in first], show_progress_bar=False)
    expected = [first[i] for i in sorted(range(len(first)), key=lambda i: (-scores[i], i))]
    assert len(first) >= 2  # the two refund notes: an order to decide
    assert [p.text for p in index.search(query, 5)] == expected


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    (folder / "keys.txt").write_text(f"me: {KEY}\nnarrow: sk-narrow\n")
    models = {f"{role}-lm": {"path": "tiny"} for role in ROLES}
    models |= {kind: {"path": trained[kind].registered, "type": kind} for kind in trained}
    config = build_serve_config(
        {
            "port": 0,
            "models": models,
            "roles": {role: {"primary": f"{role}-lm"} for role in ROLES},
            "router": {"model": "classifier", "default_role": "arithmetic", "confidence_floor": 0.0},
            "auth": {
                "api_keys_env": None,
                "keys_file": str(folder / "keys.txt"),
                "key_access": {"narrow": ["sentiment"]},
            },
            "limits": {"max_inputs": 64},
            "audit_log": str(folder / "audit.jsonl"),
            "records": None,
        }
    )
    with serve_in_thread(config, KEY) as url:
        yield url


@dataclass
class Reply:
    status_code: int
    text: str

    def json(self) -> dict:
        return json.loads(self.text)


def _post(url: str, path: str, body: dict, key: str = KEY) -> Reply:
    request = urllib.request.Request(
        f"{url}{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return Reply(response.status, response.read().decode())
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.read().decode())


def test_embeddings_through_the_openai_client(server):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
    texts = ["how long do I have to send something back", "Items can be returned within 30 days."]
    reply = client.embeddings.create(model="embedding", input=texts)  # the client asks for base64
    vectors = np.array([d.embedding for d in reply.data])
    assert vectors.shape == (2, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert reply.usage.prompt_tokens > 0
    floats = _post(
        server, "/v1/embeddings", {"model": "embedding", "input": texts[0], "encoding_format": "float"}
    )
    assert np.allclose(floats.json()["data"][0]["embedding"], vectors[0], atol=1e-6)
    short = client.embeddings.create(
        model="embedding", input=texts[0], dimensions=8, encoding_format="base64"
    )
    decoded = (
        np.frombuffer(base64.b64decode(short.data[0].embedding), dtype="<f4")
        if isinstance(short.data[0].embedding, str)
        else np.array(short.data[0].embedding)
    )
    assert decoded.shape == (8,)


def test_rerank_orders_documents_and_keeps_top_n(server):
    documents = [
        "Tomatoes need six hours of sun.",
        "Refunds arrive within five business days.",
        "Git branches.",
    ]
    reply = _post(
        server,
        "/v1/rerank",
        {"model": "reranker", "query": "when will my refund arrive", "documents": documents, "top_n": 2},
    )
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert len(results) == 2
    assert results[0]["relevance_score"] >= results[1]["relevance_score"]
    assert results[0]["document"]["text"] == documents[results[0]["index"]]


def test_classify_and_auto_routing_send_a_sentiment_prompt_to_the_sentiment_role(server):
    review = "I absolutely love this phone, the battery lasts for days!"
    reply = _post(server, "/v1/classify", {"model": "classifier", "input": [review]})
    assert reply.status_code == 200, reply.text
    row = reply.json()["data"][0]
    assert row["label"] == "sentiment" and sum(row["probs"]) == pytest.approx(1, abs=1e-5)
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": review}], max_tokens=2
    )
    assert raw.headers["x-served-by"] == "sentiment-lm"


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("/v1/embeddings", {"model": "embedding", "input": ""}, "input[0]: must not be empty"),
        ("/v1/embeddings", {"model": "embedding", "input": []}, "input: must not be empty"),
        (
            "/v1/embeddings",
            {"model": "embedding", "input": ["x"] * 10_000},
            "10000 texts is over this server's limit of 64",
        ),
        (
            "/v1/embeddings",
            {"model": "embedding", "input": "x", "dimensions": 4096},
            "dimensions 4096 is over",
        ),
        ("/v1/rerank", {"model": "reranker", "query": "q", "documents": []}, "documents: must not be empty"),
        (
            "/v1/classify",
            {"model": "classifier", "input": "hi", "roles": ["weather"]},
            "roles: 'weather' is not a label",
        ),
        ("/v1/classify", {"model": "embedding", "input": "hi"}, "no classifier model 'embedding'"),
        (
            "/v1/chat/completions",
            {"model": "embedding", "messages": [{"role": "user", "content": "hi"}]},
            "POST /v1/embeddings",
        ),
    ],
)
def test_bad_encoder_input_is_a_400_with_one_clear_line(server, path, body, says):
    reply = _post(server, path, body)
    assert reply.status_code in (400, 404), reply.text
    message = reply.json()["error"]["message"]
    assert says in message and "\n" not in message


def test_a_key_limited_to_some_roles_cannot_call_an_encoder_outside_them(server):
    reply = _post(server, "/v1/embeddings", {"model": "embedding", "input": "x"}, key="sk-narrow")
    assert reply.status_code == 403
    assert json.loads(reply.text)["error"]["message"].startswith("key narrow may not call 'embedding'")
