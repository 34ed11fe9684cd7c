import time
from pathlib import Path

import pytest
import torch

from srl_rlvr.config import LoraConfig, ModelConfig
from srl_rlvr.errors import ModelLoadError
from srl_rlvr.modeling import byte_tokenizer, load_model, materialize


def test_byte_tokenizer_round_trips_any_text() -> None:
    tokenizer = byte_tokenizer()
    text = 'Start with 7. Add 5.\n7+5=12 — naïve ✓ {"json": 1}'
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_tiny_model_forward_pass_gives_finite_logits_over_the_vocabulary() -> None:
    model, tokenizer = load_model(ModelConfig(name_or_path="tiny", device="cpu"))
    batch = tokenizer(["7+5=", "Start with 3."], return_tensors="pt", padding=True)
    logits = model(**batch).logits
    assert logits.shape[:2] == batch["input_ids"].shape and logits.shape[-1] == len(tokenizer)
    assert torch.isfinite(logits).all()


def test_lora_trains_only_the_adapters() -> None:
    model, _ = load_model(ModelConfig(name_or_path="tiny", device="cpu", lora=LoraConfig(r=4)))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)


def test_an_unloadable_model_is_a_one_line_user_error_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match="no such folder"):
        load_model(ModelConfig(name_or_path=str(tmp_path / "no-such-model"), device="cpu"))
    with pytest.raises(ModelLoadError, match="no such folder"):
        load_model(ModelConfig(name_or_path="runs/x/srl", device="cpu"))
    assert time.monotonic() - started < 5, "a missing folder must not wait on hub retries"


def test_materialized_tiny_model_reloads_identically(tmp_path: Path) -> None:
    config = materialize(ModelConfig(name_or_path="tiny", device="cpu"), tmp_path / "base")
    first, tokenizer = load_model(config)
    second, _ = load_model(config)
    ids = tokenizer(["1+1="], return_tensors="pt")["input_ids"]
    assert torch.equal(first(ids).logits, second(ids).logits)


def test_a_lora_stage_output_loads_as_its_base_with_the_adapter_merged(tmp_path: Path) -> None:
    base = materialize(ModelConfig(name_or_path="tiny"), tmp_path / "base")
    model, tokenizer = load_model(base.model_copy(update={"lora": LoraConfig(r=4, alpha=8)}))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero: make the adapter change the outputs
            parameter.data.normal_(0, 0.5)
    model.eval()
    model.save_pretrained(tmp_path / "adapter")
    tokenizer.save_pretrained(tmp_path / "adapter")
    inputs = tokenizer(["Start with 3. Add 4."], return_tensors="pt")
    with torch.no_grad():
        expected = model(**inputs).logits
        merged, _ = load_model(ModelConfig(name_or_path=str(tmp_path / "adapter")))
        assert not hasattr(merged, "peft_config")
        assert torch.allclose(merged.eval()(**inputs).logits, expected, atol=1e-5)
        # materialize writes the merged weights out: the folder TRL rebuilds its reference from.
        full = materialize(ModelConfig(name_or_path=str(tmp_path / "adapter")), tmp_path / "full")
        assert (tmp_path / "full" / "config.json").is_file()
        reloaded, _ = load_model(full)
        assert torch.allclose(reloaded.eval()(**inputs).logits, expected, atol=1e-5)
