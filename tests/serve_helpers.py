"""What the serving tests share: a LoRA adapter of the tiny model, saved as a training run saves one."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from srl_rlvr.config import ModelConfig
from srl_rlvr.modeling import load_model


def make_adapter(folder: Path, seed: int) -> str:
    """An adapter with random (non-zero) weights, so it changes what the model writes."""
    model, _ = load_model(ModelConfig(name_or_path="tiny", device="cpu"))
    torch.manual_seed(seed)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(folder)
    return str(folder)
