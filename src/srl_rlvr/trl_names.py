"""TRL's (and transformers') names for the keys we name otherwise, so an unknown key a TRL user writes
gets "TRL's `beta` is our `srl.kl_penalty_weight`" instead of the nearest spelling, which is often a
different knob. Not accepted as aliases: several differ in meaning as well as name (TRL's
`scale_rewards: none` is our `reward_norm_method: group`), so the user picks the value knowingly."""

from __future__ import annotations

from collections.abc import Collection

_GROUP_TRAINERS = {  # GRPOConfig, and the PPO trainer TRL used to ship
    "beta": ("kl_penalty_weight", "dpo_beta"),
    "kl_coef": ("kl_penalty_weight",),
    "epsilon": ("clip_epsilon",),
    "cliprange": ("clip_epsilon",),
    "epsilon_high": ("clip_epsilon_high",),
    "scale_rewards": ("reward_norm_method",),
    "num_train_epochs": ("epochs",),
    "per_device_train_batch_size": ("micro_batch_size",),
    "num_ppo_epochs": ("num_iterations",),
    "vf_coef": ("value_coef",),
    "cliprange_value": ("value_clip",),
    "max_new_tokens": ("max_completion_length",),
}
_SUPERVISED = {  # SFTConfig, GKDConfig / DistillationConfig
    "num_train_epochs": ("epochs",),
    "per_device_train_batch_size": ("batch_size",),
    "max_seq_length": ("max_length",),
    "lr_scheduler_type": ("lr_scheduler",),
    "max_new_tokens": ("max_completion_length",),
}
TRL_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "srl": _GROUP_TRAINERS,
    "rlvr": _GROUP_TRAINERS,
    "sft": _SUPERVISED,
    "distill.on_policy": _SUPERVISED,
}
NOTES = {  # by (their name, our first)
    ("scale_rewards", "reward_norm_method"): " (TRL's group is our z_score, TRL's none our group)",
    ("per_device_train_batch_size", "micro_batch_size"): " (completions per pass; batch_size is per step)",
}


def trl_hints(known: Collection[str]) -> dict[str, str]:
    """Dotted path of a TRL name -> what to write instead, for each of ours that the schema has."""
    hints = {}
    for section, names in TRL_NAMES.items():
        for theirs, ours in names.items():
            found = [f"`{section}.{o}`" for o in ours if f"{section}.{o}" in known]
            if found and f"{section}.{theirs}" not in known:
                hints[f"{section}.{theirs}"] = (
                    f"TRL's `{theirs}` is our {' (DPO: '.join(found)}{')' * (len(found) - 1)}"
                    + NOTES.get((theirs, ours[0]), "")
                )
    return hints
