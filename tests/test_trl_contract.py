"""What we lean on in TRL: the private methods our trainers override and the attributes they touch.
An upgrade that changes one must fail here, loudly, rather than train subtly wrong."""

import inspect
import re
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from trl import GRPOTrainer

from srl_rlvr.train.group_trainer import GroupTrainer
from srl_rlvr.train.ppo import PPOTrainer

# Parameter names of each TRL/transformers method we override or call, as of the tested release.
EXPECTED = {
    "_generate_single_turn": ["prompt_ids", "images", "multimodal_fields", "num_generations", "has_tool_images"],
    "_get_per_token_logps_and_entropies": [
        "model", "input_ids", "attention_mask", "logits_to_keep", "batch_size", "compute_entropy",
        "compute_aux_loss", "pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask",
        "spatial_shapes", "num_tiles", "image_sizes", "token_type_ids", "mm_token_type_ids",
        "image_position_ids",
    ],
    "_calculate_rewards": ["inputs", "prompts", "completions", "completion_ids_list"],
    # the reward overlap starts the rewards where generation returns (its 8-tuple: pinned below)
    "_generate": ["prompts"],
    # called by the reward overlap, which replays the reward functions' logging in the training thread
    "_log_metric": ["name", "value"],
    "_log_completion_extra": ["column", "values"],
    "_generate_and_score_completions": ["inputs"],
    "_compute_loss": ["model", "inputs"],
    "_prepare_inputs": ["generation_batch"],
    "_save": ["output_dir", "state_dict"],
    "_load_from_checkpoint": ["resume_from_checkpoint", "model"],
    # dynamic sampling's prompt order rides with the trainer's RNG states in each checkpoint
    "_save_rng_state": ["output_dir"],
    "_load_rng_state": ["checkpoint"],
    # called by the stability guard
    "_save_checkpoint": ["model", "trial"],
    "_load_optimizer_and_scheduler": ["checkpoint"],
}  # fmt: skip
# Attributes of GRPOTrainer our trainers and the guard read or reset.
ATTRIBUTES = (
    "_buffered_inputs",
    "_step",
    "num_iterations",
    "_metrics",
    "reward_func_names",
    "reward_weights",
    "eos_token_ids",
    # the reward overlap calls these functions, and leaves the batches of the others to TRL's order
    "reward_funcs",
    "tools",
    "environments",
    "rollout_func",
)


def parameters(method: object) -> list[str]:
    return [name for name in inspect.signature(method).parameters if name != "self"]


def test_every_trl_method_we_override_keeps_the_signature_we_wrote_against() -> None:
    overridden = {
        name
        for cls in (GroupTrainer, PPOTrainer)
        for name in vars(cls)
        if name.startswith("_") and not name.startswith("__") and hasattr(GRPOTrainer, name)
    }
    assert overridden <= EXPECTED.keys(), f"pin the signature of {overridden - EXPECTED.keys()} here"
    changed = {
        name: parameters(getattr(GRPOTrainer, name))
        for name, expected in EXPECTED.items()
        if parameters(getattr(GRPOTrainer, name)) != expected
    }
    assert not changed, f"TRL {version('trl')} changed what we override: {changed}"
    init = inspect.getsource(GRPOTrainer.__init__)
    assert all(f"self.{name} =" in init for name in ATTRIBUTES), "an attribute we use moved"
    returned = "return prompt_ids, completion_ids, tool_mask, completions, logprobs, extra_fields, images, tool_images"
    assert returned in inspect.getsource(GRPOTrainer._generate), "what _generate returns changed"


def test_trl_is_bounded_to_the_tested_release_line_and_the_installed_one_is_in_it() -> None:
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    [trl] = [Requirement(r) for r in re.findall(r'^\s*"(trl\b[^"]*)"', pyproject, flags=re.MULTILINE)]
    assert any(spec.operator in ("<", "<=", "~=", "==") for spec in trl.specifier), (
        f"{trl} has no upper bound"
    )
    assert trl.specifier.contains(version("trl")), f"installed trl {version('trl')} is outside {trl}"
