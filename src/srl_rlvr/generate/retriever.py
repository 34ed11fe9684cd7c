"""Context Retriever: the top-k passages of a user's knowledge folder for each problem.

`collaboration.retrieval.knowledge_dir` points at domain rules, documentation and historical
examples (.md, .txt, .jsonl); the passages found here go into the teacher LLM's prompt.

BM25 (Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25 and Beyond", 2009; via
`bm25s`) is the default because it runs offline with no model download, indexes thousands of
passages in well under a second on a CPU, and does well on rule- and keyword-heavy domain text
where the exact term ("chargeback", "Form 1099-K") is what matters. Words are stemmed with the
Snowball English stemmer (PyStemmer), so "refunds" matches "refund". Dense retrieval with a
sentence-transformers model is there for paraphrase-heavy knowledge, when the user installs it.
"""

from __future__ import annotations

import json
import logging
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import bm25s
import numpy as np
import Stemmer

from srl_rlvr.data.jsonl import iter_json_rows
from srl_rlvr.errors import ConfigError, DataError, ModelLoadError

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = (".md", ".markdown", ".txt")
JSONL_SUFFIXES = (".jsonl",)
READ_SUFFIXES = TEXT_SUFFIXES + JSONL_SUFFIXES
HEADING = re.compile(r"^#{1,6}\s")
BLANK_LINES = re.compile(r"\n[ \t]*\n")

Encoder = Callable[[list[str]], np.ndarray]
"""Texts -> one embedding row per text (shape `(len(texts), dim)`)."""

Ranker = Callable[[str, int], list[int]]
"""(query, k) -> indices of at most k passages, best first, only those with a positive score."""


@dataclass(frozen=True)
class Passage:
    """One retrievable piece of knowledge; its id is what a trajectory's provenance records."""

    id: str  # "<relative path>#<chunk index>": stable across builds, so trajectories can cite it
    text: str
    source: str  # relative path of the file


def _sections(text: str) -> list[list[str]]:
    """Paragraphs grouped by section; a markdown heading opens a new section as its own paragraph."""
    sections: list[list[str]] = [[]]
    for block in BLANK_LINES.split(text.replace("\r\n", "\n")):
        lines: list[str] = []
        for line in [*block.split("\n"), None]:  # None flushes the block's last paragraph
            if line is None or HEADING.match(line):
                if "\n".join(lines).strip():
                    sections[-1].append("\n".join(lines).strip())
                lines = []
            if line is not None and HEADING.match(line):
                if sections[-1]:
                    sections.append([])
                sections[-1].append(line.strip())
            elif line is not None:
                lines.append(line)
    return [s for s in sections if s]


def chunk_text(text: str, chunk_chars: int) -> list[str]:
    """Pack whole paragraphs into chunks of about `chunk_chars`; only a longer paragraph is split
    (at whitespace). A section's later chunks repeat its heading so each says what it is about.
    """
    chunks: list[str] = []
    for section in _sections(text):
        heading = section[0] if HEADING.match(section[0]) else ""
        current = ""
        for paragraph in section:
            pieces = [paragraph] if len(paragraph) <= chunk_chars else textwrap.wrap(paragraph, chunk_chars)
            for piece in pieces:
                if current not in ("", heading) and len(current) + 2 + len(piece) > chunk_chars:
                    chunks.append(current)
                    current = heading
                current = f"{current}\n\n{piece}" if current else piece
        if current not in ("", heading):
            chunks.append(current)
    return chunks


def render_row(row: Any) -> str:
    """One JSONL row as passage text: its "text", a trajectory as numbered steps, else compact JSON."""
    if isinstance(row, str):
        return row.strip()
    if isinstance(row, dict) and isinstance(row.get("text"), str):
        return row["text"].strip()
    if isinstance(row, dict) and "problem" in row and isinstance(row.get("steps"), list):
        lines = [f"Problem: {row['problem']}", "Steps:"]
        for i, step in enumerate(row["steps"], start=1):
            action = step.get("action", "") if isinstance(step, dict) else step
            lines.append(f"{i}. {action}")
        if row.get("expected_outcome"):
            lines.append(f"Outcome: {row['expected_outcome']}")
        return "\n".join(lines)
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


def _jsonl_passages(path: Path, source: str) -> list[Passage]:
    passages = []
    for index, (lineno, value) in enumerate(iter_json_rows(path)):
        if isinstance(value, json.JSONDecodeError):
            raise DataError(f"{path}:{lineno}: invalid JSON: {value.msg} (column {value.colno})")
        text = render_row(value)
        if text:
            passages.append(Passage(id=f"{source}#{index}", text=text, source=source))
    return passages


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def load_passages(folder: str | Path, chunk_chars: int = 800) -> list[Passage]:
    """Every passage of the .md/.markdown/.txt/.jsonl files under `folder`, in sorted path order.

    Text files are chunked at paragraphs and headings (see `chunk_text`); a JSONL file gives one
    passage per row (see `render_row`). Hidden files and other extensions are skipped.
    """
    if chunk_chars <= 0:
        raise ConfigError(f"retrieval chunk_chars must be positive, got {chunk_chars}")
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"knowledge folder not found: {folder}")
    files = sorted(
        (p.relative_to(folder) for p in folder.rglob("*") if p.is_file()), key=lambda p: p.as_posix()
    )
    passages: list[Passage] = []
    for relative in files:
        suffix = relative.suffix.lower()
        if _is_hidden(relative) or suffix not in READ_SUFFIXES:
            continue
        path, source = folder / relative, relative.as_posix()
        try:
            if suffix in JSONL_SUFFIXES:
                passages.extend(_jsonl_passages(path, source))
            else:
                text = path.read_text(encoding="utf-8")
                passages.extend(
                    Passage(id=f"{source}#{i}", text=chunk, source=source)
                    for i, chunk in enumerate(chunk_text(text, chunk_chars))
                )
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from None
    return passages


def bm25_ranker(passages: Sequence[Passage]) -> Ranker:
    """Index the passages with BM25 (English stopwords removed); a query ranks passages sharing its terms."""
    stem = Stemmer.Stemmer("english").stemWords
    corpus = bm25s.tokenize([p.text for p in passages], stopwords="en", stemmer=stem, show_progress=False)
    if not corpus.vocab:  # only stopwords and punctuation: bm25s cannot index an empty vocabulary
        return lambda query, k: []
    index = bm25s.BM25()
    index.index(corpus, show_progress=False)

    def rank(query: str, k: int) -> list[int]:
        tokens = bm25s.tokenize(query, stopwords="en", stemmer=stem, return_ids=False, show_progress=False)[0]
        tokens = [t for t in tokens if t in index.vocab_dict]
        if not tokens:  # nothing in common with any passage: bm25s would rank all-zero scores
            return []
        found = index.retrieve([tokens], k=min(k, len(passages)), show_progress=False)
        hits = zip(found.documents[0].tolist(), found.scores[0].tolist(), strict=True)
        ordered = sorted(hits, key=lambda hit: (-hit[1], hit[0]))  # ties by file order: deterministic
        return [i for i, score in ordered if score > 0]

    return rank


def cosine_top_k(query_vector: np.ndarray, passage_vectors: np.ndarray, k: int) -> list[int]:
    """Indices of the k rows most cosine-similar to the query, best first; non-positive ones dropped."""

    def unit(x: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(x, axis=-1, keepdims=True)
        return x / np.where(norms == 0, 1.0, norms)

    scores = unit(passage_vectors.astype(np.float32)) @ unit(query_vector.astype(np.float32))
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k] if k > 0 else np.array([], dtype=int)
    top = sorted(top.tolist(), key=lambda i: (-scores[i], i))
    return [i for i in top if scores[i] > 0]


def dense_ranker(passages: Sequence[Passage], encode: Encoder) -> Ranker:
    """Encode the passages once; a query ranks them by cosine similarity of its embedding."""
    passage_vectors = np.asarray(encode([p.text for p in passages]))

    def rank(query: str, k: int) -> list[int]:
        return cosine_top_k(np.asarray(encode([query]))[0], passage_vectors, k)

    return rank


def sentence_transformer_encoder(model_id: str) -> Encoder:
    """The `encode` of a sentence-transformers model; imported here so BM25 users never need it."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ConfigError(
            "retrieval method 'dense' needs sentence-transformers: pip install sentence-transformers "
            "(or set collaboration.retrieval.method: bm25)"
        ) from None
    try:
        model = SentenceTransformer(model_id)
    except (OSError, ValueError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"cannot load dense retrieval model '{model_id}': {first_line}") from None

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(texts, convert_to_numpy=True, show_progress_bar=False)

    return encode


class KnowledgeIndex:
    """The passages of a knowledge folder and the ranker that searches them; built once per run."""

    def __init__(self, passages: Sequence[Passage], rank: Ranker):
        self.passages = list(passages)
        self._rank = rank

    @classmethod
    def build(
        cls,
        folder: str | Path,
        method: Literal["bm25", "dense"] = "bm25",
        dense_model: str = "sentence-transformers/all-MiniLM-L6-v2",
        chunk_chars: int = 800,
        rerank_model: str | None = None,
        rerank_candidates: int = 20,
    ) -> KnowledgeIndex:
        """Read and index every passage of `folder`; `dense` encodes them all with `dense_model` once."""
        if method not in ("bm25", "dense"):
            raise ConfigError(f"unknown retrieval method '{method}': use 'bm25' or 'dense'")
        passages = load_passages(folder, chunk_chars)
        if not passages:
            raise DataError(
                f"no passages in knowledge folder {folder}: it reads {', '.join(READ_SUFFIXES)} files"
            )
        if method == "dense":
            rank = dense_ranker(passages, sentence_transformer_encoder(dense_model))
        else:
            rank = bm25_ranker(passages)
        if rerank_model is not None:  # a trained cross-encoder orders the first stage's candidates
            from srl_rlvr.generate.rerank_stage import cross_encoder_scorer, reranked

            rank = reranked(rank, passages, cross_encoder_scorer(rerank_model), rerank_candidates)
        logger.info("indexed %d passages from %s with %s", len(passages), folder, method)
        return cls(passages, rank)

    def search(self, query: str, k: int) -> list[Passage]:
        """The passages most relevant to `query`, best first; fewer than k when fewer match at all."""
        if k <= 0:
            return []
        return [self.passages[i] for i in self._rank(query, min(k, len(self.passages)))]

    def __len__(self) -> int:
        return len(self.passages)
