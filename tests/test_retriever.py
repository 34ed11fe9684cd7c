import json
import re
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from srl_rlvr.errors import ConfigError, DataError
from srl_rlvr.generate.retriever import KnowledgeIndex, Passage, dense_ranker, load_passages

RULES_MD = """# Refund policy

Refunds are issued within 30 days of purchase when the customer shows the receipt.

## Chargebacks

A chargeback filed by the card issuer freezes the merchant account until the dispute is resolved.

## Shipping

Orders ship from the warehouse within two business days; express shipping costs extra.
"""

NOTES_TXT = """Escalate any invoice above 10,000 dollars to the finance lead.

Customers in the EU may withdraw from a contract within 14 days.
"""

TRAJECTORY = {
    "problem": "A customer disputes a duplicate charge.",
    "steps": [
        {"action": "Look up both transactions", "reasoning": "confirm the duplicate"},
        {"action": "Refund the second charge", "reasoning": "policy allows it"},
    ],
    "expected_outcome": "One charge remains.",
}


@pytest.fixture
def knowledge(tmp_path: Path) -> Path:
    (tmp_path / "rules.md").write_text(RULES_MD)
    (tmp_path / "notes.txt").write_text(NOTES_TXT)
    rows = [
        TRAJECTORY,
        {"text": "Gift cards are never refundable.", "tag": "rule"},
        {"rule": "VAT applies to digital goods", "region": "EU"},
    ]
    (tmp_path / "history.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "guides").mkdir()
    (tmp_path / "guides" / "tax.md").write_text("Sales tax is collected at checkout in every state.\n")
    (tmp_path / ".draft.md").write_text("Chargeback notes nobody should see.\n")
    (tmp_path / "rules.yaml").write_text("chargeback: read by the rule checker, not the retriever\n")
    return tmp_path


def hashed_bag_of_words(texts: list[str], dim: int = 512) -> np.ndarray:
    """A deterministic stand-in for a sentence embedding: word counts hashed into `dim` buckets."""
    vectors = np.zeros((len(texts), dim))
    for row, text in enumerate(texts):
        for word in re.findall(r"[a-z]{3,}", text.lower()):
            vectors[row, zlib.crc32(word.encode()) % dim] += 1
    return vectors


def test_the_passage_about_the_query_ranks_first(knowledge: Path):
    index = KnowledgeIndex.build(knowledge)

    found = index.search("What happens when the card issuer files a chargeback?", k=3)

    assert found[0].id == "rules.md#1"
    assert found[0].text.startswith("## Chargebacks")


def test_only_knowledge_files_are_read_in_sorted_order(knowledge: Path):
    passages = load_passages(knowledge)

    assert [p.id for p in passages] == [
        "guides/tax.md#0",
        "history.jsonl#0",
        "history.jsonl#1",
        "history.jsonl#2",
        "notes.txt#0",
        "rules.md#0",
        "rules.md#1",
        "rules.md#2",
    ]
    assert all("nobody should see" not in p.text and "rule checker" not in p.text for p in passages)


def test_passage_ids_are_stable_across_builds(knowledge: Path):
    first = KnowledgeIndex.build(knowledge).search("refund charge", k=10)
    second = KnowledgeIndex.build(knowledge).search("refund charge", k=10)

    assert first == second
    assert len(KnowledgeIndex.build(knowledge)) == 8


def test_long_markdown_is_split_at_paragraphs(tmp_path: Path):
    paragraphs = [f"Rule {i}: " + "the clerk checks the ledger twice. " * 3 for i in range(8)]
    (tmp_path / "manual.md").write_text("# Ledger rules\n\n" + "\n\n".join(paragraphs) + "\n")

    chunks = [p.text for p in load_passages(tmp_path, chunk_chars=300)]

    assert len(chunks) > 1
    for paragraph in paragraphs:  # each paragraph lands whole in exactly one chunk
        assert sum(paragraph.strip() in chunk for chunk in chunks) == 1
    assert all(chunk.startswith("# Ledger rules\n\n") for chunk in chunks)  # later chunks keep the heading


def test_a_paragraph_longer_than_a_chunk_is_split_at_whitespace(tmp_path: Path):
    (tmp_path / "wall.txt").write_text("audit " * 200)

    chunks = [p.text for p in load_passages(tmp_path, chunk_chars=100)]

    assert len(chunks) > 1
    assert all(len(chunk) <= 100 for chunk in chunks)
    assert sum(len(chunk.split()) for chunk in chunks) == 200  # no word lost or cut in half


def test_trajectory_rows_are_rendered_as_steps(knowledge: Path):
    by_id = {p.id: p for p in load_passages(knowledge)}

    assert by_id["history.jsonl#0"] == Passage(
        id="history.jsonl#0",
        text=(
            "Problem: A customer disputes a duplicate charge.\n"
            "Steps:\n"
            "1. Look up both transactions\n"
            "2. Refund the second charge\n"
            "Outcome: One charge remains."
        ),
        source="history.jsonl",
    )
    assert by_id["history.jsonl#1"].text == "Gift cards are never refundable."
    assert by_id["history.jsonl#2"].text == '{"rule":"VAT applies to digital goods","region":"EU"}'


def test_unrelated_query_returns_nothing(knowledge: Path):
    index = KnowledgeIndex.build(knowledge)

    assert index.search("quantum chromodynamics on a lattice", k=5) == []
    assert index.search("what is the", k=5) == []  # stopwords only


def test_search_returns_at_most_k_best_first(knowledge: Path):
    index = KnowledgeIndex.build(knowledge)

    everything = [p.id for p in index.search("refund charge shipping tax", k=100)]
    # only passages sharing a term come back; the trajectory (refund + charge, twice) ranks first
    assert set(everything) == {
        "history.jsonl#0",
        "history.jsonl#1",
        "rules.md#0",
        "rules.md#2",
        "guides/tax.md#0",
    }
    assert everything[0] == "history.jsonl#0"
    assert [p.id for p in index.search("refund charge shipping tax", k=2)] == everything[:2]
    assert index.search("refund", k=0) == []


def test_missing_folder_is_a_one_line_error(tmp_path: Path):
    with pytest.raises(DataError, match="knowledge folder not found") as err:
        KnowledgeIndex.build(tmp_path / "nope")

    assert "\n" not in str(err.value) and "nope" in str(err.value)


def test_a_folder_without_knowledge_files_says_which_files_are_read(tmp_path: Path):
    (tmp_path / "rules.yaml").write_text("max_refund: 100\n")

    with pytest.raises(DataError, match=r"\.md, \.markdown, \.txt, \.jsonl"):
        KnowledgeIndex.build(tmp_path)


def test_a_bad_jsonl_line_names_file_and_line(knowledge: Path):
    with (knowledge / "history.jsonl").open("a") as f:
        f.write('{"text": "unterminated\n')

    with pytest.raises(DataError, match=r"history\.jsonl:4: invalid JSON") as err:
        load_passages(knowledge)

    assert "\n" not in str(err.value)


def test_dense_without_sentence_transformers_says_how_to_install(
    knowledge: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # as if not installed

    with pytest.raises(ConfigError, match="pip install sentence-transformers") as err:
        KnowledgeIndex.build(knowledge, method="dense")

    assert "\n" not in str(err.value)


def test_an_unknown_method_is_a_config_error(knowledge: Path):
    with pytest.raises(ConfigError, match="'bm25' or 'dense'"):
        KnowledgeIndex.build(knowledge, method="tfidf")  # type: ignore[arg-type]


def test_dense_ranking_with_a_given_encoder(knowledge: Path):
    passages = load_passages(knowledge)
    index = KnowledgeIndex(passages, dense_ranker(passages, encode=hashed_bag_of_words))

    found = index.search("merchant account frozen by a chargeback dispute", k=2)

    assert found[0].id == "rules.md#1"
    assert len(found) <= 2
    assert index.search("zzz qqq", k=3) == []  # no shared words: cosine 0, nothing returned


def test_word_forms_match_through_stemming(tmp_path: Path) -> None:
    (tmp_path / "policy.md").write_text("A refund is issued within five days.\n\nShipping takes a week.\n")
    [hit] = KnowledgeIndex.build(tmp_path).search("how long do refunds take", k=1)
    assert "refund is issued" in hit.text
