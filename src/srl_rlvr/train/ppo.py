"""PPO with a value head and GAE (Schulman et al. 2017, "Proximal Policy Optimization"; GAE: Schulman
et al. 2016, "High-Dimensional Continuous Control Using Generalized Advantage Estimation").

TRL no longer ships PPO, and users ask for it (`rlvr.use_ppo: true`). Rather than a
parallel trainer, PPO is a subclass of the rollout trainer GRPO uses (`train/group_trainer.py`), so rollouts,
reward functions, the clipped ratio objective, the KL anchor and its adaptive controller, logging,
checkpoints and multi-GPU are the same code. What PPO changes:

- **Value head.** One linear layer on the policy's last hidden state (a shared trunk, as in
  Ziegler et al. 2019). A forward hook on the backbone hands us the hidden states of the forward
  pass TRL already runs for the log-probs, so values cost no second pass during the update.
- **Advantages.** The outcome reward sits on a completion's last token; GAE(gamma, lambda) over the
  value estimates turns it into per-token advantages, whitened over the batch. TRL's loss accepts
  (batch, tokens) advantages as they are. gamma defaults to 1, as in InstructGPT and TRL's former
  PPOTrainer: with one terminal reward, gamma < 1 only shrinks early tokens' advantages.
- **Epochs and minibatches.** Each rollout batch is split into `steps_per_generation` minibatches and
  passed over `num_iterations` times (default 4 x 4, as in Schulman et al. 2017's experiments), with
  old log-probabilities and old values taken once at rollout time, so the ratio and value clips act
  from the second minibatch on. Each epoch draws a new split, as PPO implementations do (TRL splits
  once and reuses it for every pass).
- **Loss.** TRL's clipped surrogate (+ its entropy bonus, `entropy_coef`, + the KL term) plus
  `value_coef` x the clipped value loss. The KL penalty stays a loss term, as in GRPO, rather than a
  per-token reward, so one adaptive controller holds KL under `rlvr.max_kl` for every algorithm.

The value head is saved beside the model as `value_head.pt` (the model folder itself stays a
plain causal LM that any later stage loads).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from trl.trainer.utils import shuffle_sequence_dict, split_tensor_dict

from srl_rlvr.config import RLVRConfig
from srl_rlvr.train.group_trainer import GroupTrainer

VALUE_HEAD_FILE = "value_head.pt"


def terminal_rewards(outcome: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token rewards: each sequence's outcome on its last unmasked token, zero elsewhere."""
    rewards = torch.zeros_like(mask, dtype=outcome.dtype)
    lengths = mask.sum(dim=1).long()
    rows = torch.nonzero(lengths > 0).squeeze(1)
    rewards[rows, lengths[rows] - 1] = outcome[rows]
    return rewards


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns over (batch, tokens), right-padded by `mask`.

    delta_t = r_t + gamma V_{t+1} - V_t, A_t = delta_t + gamma lambda A_{t+1}; the state after the last
    token is terminal (value 0). Returns are A + V, the value head's regression target.
    """
    mask = mask.to(values.dtype)
    values, rewards = values * mask, rewards * mask
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    length = values.size(1)
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def joined(minibatches: list[dict[str, Any]]) -> dict[str, Any]:
    """The rollout batch TRL split into `minibatches` (equal widths, so plain concatenation); scalars
    such as `num_items_in_batch` are the whole batch's and kept once."""
    first = minibatches[0]
    whole: dict[str, Any] = {}
    for key, value in first.items():
        if value is None or (isinstance(value, torch.Tensor) and value.dim() == 0):
            whole[key] = value
        elif isinstance(value, torch.Tensor):
            whole[key] = torch.cat([m[key] for m in minibatches], dim=0)
        else:
            whole[key] = [item for m in minibatches for item in m[key]]
    return whole


class ValueHead(nn.Module):
    """V(state) from the last hidden state; zero-initialised so early advantages are the raw returns."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.to(self.linear.weight.dtype)).squeeze(-1)


class HiddenStates:
    """Collects the backbone's last hidden states while `capturing()` is active, for the value head."""

    def __init__(self, backbone: nn.Module) -> None:
        self._active = False
        self._captured: list[torch.Tensor] = []
        backbone.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: Any, output: Any) -> None:
        if self._active:
            hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
            self._captured.append(hidden)

    @contextmanager
    def capturing(self) -> Iterator[list[torch.Tensor]]:
        self._active, self._captured = True, []
        try:
            yield self._captured
        finally:
            self._active = False


def _backbone(model: nn.Module) -> nn.Module:
    """The transformer body whose output feeds the LM head (what TRL's fused head calls)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.base_model


class PPOTrainer(GroupTrainer):
    """Our rollout trainer with PPO's value head, GAE advantages and value loss (see module docstring)."""

    def __init__(self, *args: Any, model: Any, stage: RLVRConfig, **kwargs: Any) -> None:
        # The head joins the model before TRL/accelerate see it: the optimizer and DDP then include it.
        model.value_head = ValueHead(model.config.hidden_size).to(next(model.parameters()).device)
        self._hidden = HiddenStates(_backbone(model))
        super().__init__(*args, model=model, stage=stage, **kwargs)

    @property
    def value_head(self) -> ValueHead:
        return self.accelerator.unwrap_model(self.model).value_head

    def _values(self, hidden: list[torch.Tensor], num_tokens: int) -> torch.Tensor:
        # Position j's hidden state predicts token j+1: the last `num_tokens` predicting positions are
        # the states before each completion token, as TRL's log-probs are.
        states = torch.cat(hidden, dim=0)[:, :-1][:, -num_tokens:]
        return self.value_head(states)

    def _generate_and_score_completions(self, inputs):  # type: ignore[no-untyped-def]
        # PPO's baseline is the value head, not the group: skip GroupTrainer's group rule.
        output = self._trl_scoring(inputs)
        assert self._global_rewards is not None
        prompt_ids, completion_ids = output["prompt_ids"], output["completion_ids"]
        mask = output["completion_mask"]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([output["prompt_mask"], mask], dim=1)
        # Old values are constants of the update, like old log-probs: no graph back into the value head.
        with torch.no_grad(), self._hidden.capturing() as hidden:
            self._get_per_token_logps_and_entropies(
                self.model, input_ids, attention_mask, completion_ids.size(1)
            )
            values = self._values(hidden, completion_ids.size(1)).float() * mask
        outcome = self._local_slice(self._global_rewards, len(prompt_ids)).float()
        advantages, returns = gae(
            terminal_rewards(outcome, mask), values, mask, self.stage.gamma, self.stage.lam
        )
        output["advantages"] = self._whiten(advantages, mask)
        output["returns"], output["old_values"] = returns, values
        return output

    def _prepare_inputs(self, generation_batch):  # type: ignore[no-untyped-def]
        minibatches = self.args.steps_per_generation
        new_epoch = self._step % minibatches == 0 and self._step % (minibatches * self.num_iterations) != 0
        if self.model.training and self._buffered_inputs is not None and new_epoch:
            self._buffered_inputs = split_tensor_dict(
                shuffle_sequence_dict(joined(self._buffered_inputs)), minibatches
            )
        return super()._prepare_inputs(generation_batch)

    def _whiten(self, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Zero mean, unit variance over every completion token on every process."""
        mask = mask.to(advantages.dtype)
        totals = torch.stack([(advantages * mask).sum(), (advantages**2 * mask).sum(), mask.sum()])
        total, squares, count = self.accelerator.reduce(totals, reduction="sum").tolist()
        mean = total / max(count, 1.0)
        std = max(squares / max(count, 1.0) - mean**2, 0.0) ** 0.5
        return (advantages - mean) / (std + 1e-8) * mask

    def _compute_loss(self, model, inputs):  # type: ignore[no-untyped-def]
        with self._hidden.capturing() as hidden:
            loss = super()._compute_loss(model, inputs)
        mask = inputs["completion_mask"].to(torch.float32)
        values = self._values(hidden, inputs["completion_ids"].size(1)).float()
        old, returns = inputs["old_values"], inputs["returns"]
        clipped = old + (values - old).clamp(-self.stage.value_clip, self.stage.value_clip)
        unclipped_loss, clipped_loss = (values - returns) ** 2, (clipped - returns) ** 2
        per_token = 0.5 * torch.maximum(unclipped_loss, clipped_loss)
        value_loss = (per_token * mask).sum() / mask.sum().clamp(min=1.0)
        mode = "train" if self.model.training else "eval"
        normalizer = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        self._metrics[mode]["value_loss"].append(self.accelerator.gather(value_loss.detach()).mean().item())
        # Tokens where the clipped term is the larger one: their value gradient is cut (0 while every
        # minibatch is the first pass over fresh rollouts, where values == old values).
        clipped_tokens = ((clipped_loss > unclipped_loss).float() * mask).sum()
        counts = self.accelerator.reduce(torch.stack([clipped_tokens, mask.sum()]).detach(), reduction="sum")
        self._metrics[mode]["value_clip_ratio"].append((counts[0] / counts[1].clamp(min=1.0)).item())
        return loss + self.stage.value_coef * value_loss / normalizer

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Save the policy as a plain causal LM and the value head beside it."""
        output_dir = output_dir or self.args.output_dir
        if state_dict is None:
            state_dict = self.accelerator.unwrap_model(self.model).state_dict()
        head = {
            k.removeprefix("value_head."): v for k, v in state_dict.items() if k.startswith("value_head.")
        }
        policy = {k: v for k, v in state_dict.items() if not k.startswith("value_head.")}
        super()._save(output_dir, state_dict=policy)
        if self.args.should_save:
            torch.save(head, Path(output_dir) / VALUE_HEAD_FILE)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = Path(resume_from_checkpoint) / VALUE_HEAD_FILE
        if path.is_file():
            self.value_head.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
