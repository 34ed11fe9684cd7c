"""The kinds of model a run can train, and the stages and settings each kind uses.

`causal_lm` is every text-generating model (task LLMs, extractors, the SRL parser). The other three
are encoders trained with a contrastive or classification loss instead of a reward: `embedding`
(a sentence-transformers bi-encoder for retrieval), `reranker` (a sentence-transformers
CrossEncoder scoring (query, passage) pairs) and `classifier` (a transformers sequence classifier;
the server's intent router). They share the pipeline's generate -> train -> evaluate -> register
path; SFT, SRL and RLVR optimise generated text and mean nothing for them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ModelType = Literal["causal_lm", "embedding", "reranker", "classifier"]
ENCODER_TYPES: tuple[ModelType, ...] = ("embedding", "reranker", "classifier")

CAUSAL_STAGES = ("generate", "sft", "srl", "rlvr", "evaluate", "register")
ENCODER_STAGES = ("generate", "train", "evaluate", "register")


def stages_for(model_type: ModelType) -> tuple[str, ...]:
    """The stages a model of this type can run, in order (also its default `pipeline.stages`)."""
    return CAUSAL_STAGES if model_type == "causal_lm" else ENCODER_STAGES


# The five built-in roles a server usually runs, each named for the task its model was trained on:
# the intent router learns to tell their requests apart.
DEFAULT_ROUTER_ROLES = {
    "arithmetic": "arithmetic",
    "sentiment": "sentiment",
    "moderation": "moderation",
    "codegen": "codegen",
    "extraction": "extraction",
}


class EncoderConfig(BaseModel):
    """Training and evaluation of the encoder types (model.type embedding, reranker, classifier)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    steps: int = Field(
        200,
        gt=0,
        description="Optimiser steps; a few hundred move a pretrained encoder on a few "
        "thousand pairs without forgetting what it knew (sentence-transformers' own examples).",
    )
    batch_size: int = Field(
        32,
        gt=1,
        description="Pairs a step. With MultipleNegativesRankingLoss every other pair's passage is a "
        "negative, so a larger batch is a harder task; 32 fits a 135M model on one GPU or a CPU.",
    )
    learning_rate: float = Field(
        2e-5, gt=0, description="sentence-transformers' default for fine-tuning a pretrained encoder."
    )
    warmup_ratio: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Share of steps with a rising learning rate: a fresh head's first gradients are large.",
    )
    max_length: int = Field(
        256,
        gt=0,
        description="Tokens per text (a pair for the reranker); the packaged corpus's "
        "passages are under 120 words.",
    )
    hard_negatives: int = Field(
        1,
        ge=0,
        description="Negatives mined per training pair from the corpus with the base model (sentence-"
        "transformers' mine_hard_negatives), added to the in-batch ones: the passages the base model "
        "confuses teach more than random ones. 0: in-batch negatives only.",
    )
    hard_negative_skip: int = Field(
        1,
        ge=0,
        description="Top-ranked candidates skipped when mining: the very top often answers the query "
        "too (a false negative the loss would push away).",
    )
    pooling: Literal["auto", "mean", "cls", "lasttoken"] = Field(
        "auto",
        description="How token vectors become one embedding. 'auto': mean for an encoder (BERT-like), "
        "lasttoken for a decoder (SmolLM2, Qwen), whose last token is the only one that saw the whole text.",
    )
    scale: float = Field(
        20.0,
        gt=0,
        description="Inverse temperature of the contrastive softmax (MultipleNegativesRankingLoss's default).",
    )
    top_k: list[int] = Field(
        default_factory=lambda: [1, 5, 10],
        description="k of the recall@k the evaluation reports (nDCG@10 and MRR are always reported).",
    )
    rerank_candidates: int = Field(
        20,
        gt=1,
        description="Candidates BM25 proposes per query for the reranker to order, in training "
        "(its negatives) and evaluation (nDCG@10 over the list).",
    )
    roles: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_ROUTER_ROLES),
        description="classifier: role -> the task whose problems are that role's requests (a built-in "
        "name or module:Class); the labels the intent router predicts.",
    )
    records_url: str | None = Field(
        None,
        description="classifier: a records store (serve.records.url) whose requests that named a role "
        "and were not rated down become extra labelled examples; None: task prompts only.",
    )
    per_role: int = Field(
        200, gt=0, description="classifier: training prompts sampled from each role's task."
    )
