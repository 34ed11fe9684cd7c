"""Load the encoder types (embedding, reranker, classifier) from a folder or hub id, or build a tiny one.

sentence-transformers wraps a plain transformers model: `SentenceTransformer` = the model + a pooling
layer (the sentence vector), `CrossEncoder` = a sequence classifier with one output (the pair's
score). Any HF encoder works, and so does a decoder (SmolLM2, Qwen): its last token's vector is the
sentence vector, since only that token attended to the whole text.

`tiny` builds a two-layer BERT with a word-level vocabulary drawn from the texts it will see, saved
as an ordinary HF folder, so tests and CPU smoke runs need no download.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from srl_rlvr.errors import ModelLoadError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TINY_ENCODER_SIZE = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 512,
}


def tiny_encoder_folder(
    folder: str | Path, texts: Iterable[str], seed: int = 0, vocab_size: int = 4000
) -> str:
    """A random-init BERT and a word-level tokenizer over the `vocab_size` commonest words of `texts`,
    saved in `folder` (reused when it is already there)."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = Path(folder)
    if (folder / "config.json").is_file():
        return str(folder)
    counts = Counter(word for text in texts for word in re.findall(r"\w+|[^\w\s]", text.lower()))
    words = [w for w, _ in counts.most_common(vocab_size)]
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",  # a reranker's (query, passage) pair
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=TINY_ENCODER_SIZE["max_position_embeddings"],
    )
    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=len(vocab), **TINY_ENCODER_SIZE))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def _architectures(source: str) -> list[str]:
    config = Path(source) / "config.json"
    if config.is_file():
        return json.loads(config.read_text()).get("architectures") or []
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source).architectures or []
    except OSError as e:
        raise ModelLoadError(f"cannot load model '{source}': {e}") from None


def is_decoder(source: str) -> bool:
    return any(a.endswith("ForCausalLM") for a in _architectures(source))


def _pad_like_eos(tokenizer: Any) -> None:
    """Decoders ship without a padding token; batching needs one (the mask hides it)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def load_embedding_model(
    source: str,
    pooling: Literal["auto", "mean", "cls", "lasttoken"] = "auto",
    device: str | None = None,
    max_length: int = 256,
) -> Any:
    """A SentenceTransformer: a saved one as it is, else the model under a pooling layer."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    if (Path(source) / "modules.json").is_file():
        return SentenceTransformer(source, device=device)
    if pooling == "auto":
        pooling = "lasttoken" if is_decoder(source) else "mean"
    try:
        transformer = Transformer(source, max_seq_length=max_length)
    except OSError as e:
        raise ModelLoadError(f"cannot load model '{source}': {e}") from None
    _pad_like_eos(transformer.tokenizer)
    pool = Pooling(transformer.get_embedding_dimension(), pooling_mode=pooling)
    return SentenceTransformer(modules=[transformer, pool], device=device)


def load_cross_encoder(source: str, device: str | None = None, max_length: int = 256) -> Any:
    """A CrossEncoder with one output (the relevance score); a decoder gets a fresh score head."""
    from sentence_transformers import CrossEncoder

    try:
        model = CrossEncoder(source, num_labels=1, device=device, max_length=max_length)
    except OSError as e:
        raise ModelLoadError(f"cannot load model '{source}': {e}") from None
    _pad_like_eos(model.tokenizer)
    if model.model.config.pad_token_id is None:
        model.model.config.pad_token_id = model.tokenizer.pad_token_id
    return model


def load_classifier(
    source: str, labels: list[str] | None = None, device: str | None = None
) -> tuple[Any, Any]:
    """(model, tokenizer) of a sequence classifier. With `labels`, a head of that many outputs (a new
    head unless the saved one already has exactly those labels); without, the saved labels."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    kwargs: dict[str, Any] = {}
    if labels is not None:
        kwargs = {
            "num_labels": len(labels),
            "id2label": dict(enumerate(labels)),
            "label2id": {label: i for i, label in enumerate(labels)},
            "ignore_mismatched_sizes": True,
        }
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        _pad_like_eos(tokenizer)
        model = AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
    except OSError as e:
        raise ModelLoadError(f"cannot load model '{source}': {e}") from None
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if device is not None:
        model.to(device)
    return model.eval(), tokenizer
