"""Registered versions in MLflow's own model format (the `transformers` flavour), so MLflow's tools
work on our registry: `mlflow.pyfunc.load_model("models:/arithmetic@production")`,
`mlflow.transformers.load_model(...)`, `mlflow models serve`.

MLflow writes the weights under `model/` and the tokenizer under `components/tokenizer/`; we copy the
model folder's own other files (tokenizer, generation config, validation.json) into `model/` too, so
that `model/` stays an ordinary Hugging Face folder our own loader (`modeling.load_model`) reads.
A LoRA adapter folder, or a folder transformers cannot load as a causal LM (an embedding model,
a classifier), is kept as it is: MLflow's flavour needs the whole model.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

WEIGHTS_FOLDER = "model"  # the transformers flavour's `model_binary`


def is_causal_lm_folder(model_dir: Path) -> bool:
    try:
        architectures = json.loads((model_dir / "config.json").read_text()).get("architectures") or []
    except (OSError, ValueError):
        return False
    return any(a.endswith("ForCausalLM") for a in architectures)


def save_transformers_flavour(model_dir: Path, out: Path) -> bool:
    """`model_dir` as an MLflow transformers model (text-generation) in `out`; False when it is not a
    causal LM folder, for the caller to keep it as a plain folder."""
    if not is_causal_lm_folder(model_dir):
        return False
    import mlflow.transformers
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    mlflow.transformers.save_model(
        transformers_model={"model": model, "tokenizer": tokenizer},
        path=str(out),
        task="text-generation",
        # named, not inferred: inference loads the model again in a subprocess
        pip_requirements=[
            f"transformers=={transformers.__version__}",
            f"torch=={torch.__version__.split('+')[0]}",
        ],
    )
    weights = out / WEIGHTS_FOLDER
    for path in model_dir.iterdir():
        if path.is_file() and not (weights / path.name).exists() and not path.name.endswith(".safetensors"):
            shutil.copy2(path, weights / path.name)
    return True


def huggingface_folder(folder: str | Path) -> str:
    """The folder our loader reads inside a registered version: `model/` of an MLflow model, else the
    folder itself (versions registered as plain folders)."""
    folder = Path(folder)
    return str(folder / WEIGHTS_FOLDER) if (folder / "MLmodel").is_file() else str(folder)
