"""Supervised Reinforcement Learning (SRL).

Deng et al. 2025, "Supervised Reinforcement Learning: From Expert Trajectories to Step-wise
Reasoning", arXiv 2510.25992. No library ships it, so it lives here, on top of the rollout trainer
shared with RLVR (`train/group_trainer.py`: TRL's GRPOTrainer plus our advantage rule), with the paper's parts:

- Step-wise expansion (§4.2 "action-based problem formulation"): a trajectory with n expert steps becomes n
  instances; instance k's prompt is the task prompt plus expert actions 1..k-1, its target action k.
- Output format: the policy thinks inside `<think>...</think>` (its inner monologue, unrewarded),
  then writes the action. With `prompt_style: continue` (our addition, for small models that write
  plain solutions one step a line) there is no instruction and no think block: the prompt is the
  solution so far, the action is the model's next line, and rollouts stop at the newline. For a chat
  model the solution so far is the start of the assistant's turn, after the task prompt as the user
  turn: step 1's prompt is then exactly the prompt it answers at evaluation, and each later one the
  same answer further on, so SRL trains the continuation the model writes at inference.
- Reward (§4.2): difflib sequence similarity 2M/T between the policy's action and the expert's, in
  [0, 1]; a completion that breaks the format scores `format_penalty` (-1 in the paper).
- Objective: GRPO group rollouts with group-normalised advantages and the clipped ratio.
- Dynamic sampling (§4.2, after DAPO): a group whose rewards' std is at most `min_group_std` is
  dropped and more step-wise instances are drawn "until the batch is filled" (`train/group_trainer.py`).
- Checkpoint selection (§5.1): validation every `eval_steps`; the best model is kept as `final/`.
  The paper validates on held-out data; we select by the task's verifier on whole answers to the
  task's validation problems (the metric the stage gate judges), and log the mean step reward of
  greedy next-step predictions on held-out trajectories beside it.

Where we depart from the paper, on purpose (the README lists these too):
- A KL anchor to the reference (base) model, weight `kl_penalty_weight` (0.1) held near `max_kl` by
  an adaptive controller; the paper trains with KL coefficient 0 (its Table 8). Our users fine-tune
  small models on small data, where the anchor keeps SRL from drifting; `srl.kl_penalty_weight: 0`
  restores the paper's objective.
- A step's optional `reward` is an importance weight multiplied into the advantages of its
  instance, and `reward_norm_method` picks z_score | group | none normalisation (both default to the
  paper's behaviour: weight 1, z-score).
- A completion that gives the task's answer is judged by the task's verifier, not by similarity
  (`judge_answer`): a right answer at any step earns the verifier's score (1 for a right binary
  answer, the step's maximum), a wrong one `format_penalty`; the last step scores
  0.5 x similarity + 0.5 x verifier, so a right answer in the expert's form beats a right answer in
  another form, and a wrong answer in the expert's form (similarity 0.9) no longer beats a right one.
  With similarity alone, a chat model's right JSON answer at step 1 scored -1 (it ended the turn) or
  0.21 (it went on), below `Sentiment: <label>` at 0.27 (BENCHMARKS.md), so SRL taught the model the
  prose line it then repeated at test time. The paper's math steps have no such early answer.
- `step_check` (default 0, the paper) mixes a task's own check of a step's result (arithmetic's
  running value, extraction's field) into the similarity: (1 - w) x similarity + w x check.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import TrainerCallback

from srl_rlvr.config import Config, SRLConfig
from srl_rlvr.data.trajectory import Trajectory
from srl_rlvr.errors import ConfigError, DataError
from srl_rlvr.modeling import chat_prompt
from srl_rlvr.tasks import Problem, Task, problem_of, safe_reward
from srl_rlvr.train.group_trainer import GroupTrainer, grpo_args, stage_callbacks
from srl_rlvr.train.runner import run_trainer, start_model
from srl_rlvr.train.similarity import similarities

log = logging.getLogger(__name__)

NEXT_STEP = "Next step (think inside {open}{close}, then write only the step):\n"
STEP_HINT = "Next: step {k} of {n} (think inside {open}{close}, then write only that step):\n"


def srl_prompt(
    task_prompt: str, previous_actions: Sequence[str], cfg: SRLConfig, hint: tuple[int, int] | None = None
) -> str:
    """`hint` (k, n) names the step to write, as the paper's prompt tells the model which step it is
    on; our trajectories carry no step titles, so the hint is the step's number and the count."""
    context = "".join(f"{action}\n" for action in previous_actions)
    if cfg.prompt_style == "continue":
        return task_prompt + context
    if hint is not None:
        k, n = hint
        return task_prompt + context + STEP_HINT.format(k=k, n=n, open=cfg.think_open, close=cfg.think_close)
    return task_prompt + context + NEXT_STEP.format(open=cfg.think_open, close=cfg.think_close)


def build_srl_dataset(
    trajectories: Sequence[Trajectory], task: Task, cfg: SRLConfig | None = None, tokenizer: Any = None
) -> Dataset:
    """Expand each n-step trajectory into n (prompt, expert action) instances. With a `tokenizer`
    that has a chat template, an `instruct` prompt is the user turn of it, and a `continue` prompt is
    the task prompt as the user turn followed by the solution so far as the assistant's answer."""
    cfg = cfg or SRLConfig()
    rows: dict[str, list[Any]] = {
        "prompt": [],
        "expert_action": [],
        "weight": [],
        "step": [],
        "num_steps": [],
        "context": [],
        "problem": [],
    }
    for trajectory in trajectories:
        problem = problem_of(trajectory)
        task_prompt = task.prompt(problem)
        actions = [step.action for step in trajectory.steps]
        problem_json = json.dumps(
            {"id": problem.id, "text": problem.text, "answer": problem.answer, "metadata": problem.metadata}
        )
        for k, step in enumerate(trajectory.steps):
            hint = (k + 1, len(actions)) if cfg.step_hint else None
            if tokenizer is None:
                prompt = srl_prompt(task_prompt, actions[:k], cfg, hint)
            elif cfg.prompt_style == "continue":
                prompt = srl_prompt(chat_prompt(tokenizer, task_prompt), actions[:k], cfg)
            else:
                prompt = chat_prompt(tokenizer, srl_prompt(task_prompt, actions[:k], cfg, hint))
            rows["prompt"].append(prompt)
            rows["expert_action"].append(step.action)
            rows["weight"].append(1.0 if step.reward is None else float(step.reward))
            rows["step"].append(k + 1)
            rows["num_steps"].append(len(actions))
            rows["context"].append("".join(f"{action}\n" for action in actions[:k]))
            rows["problem"].append(problem_json)
    if not rows["prompt"]:
        raise DataError("no trajectories to train on: the dataset is empty")
    return Dataset.from_dict(rows)


def parse_action(completion: str, cfg: SRLConfig, whole: bool = False) -> str | None:
    """The action after a closed think block, or None when the format is broken.

    With `require_think` off, a completion with no think block at all is taken whole as the action;
    an opened but unclosed block is still broken. In `continue` style the action is the first line
    written (blank lines before it are skipped), or with `whole` (the last step, whose answer may span
    lines) everything written.
    """
    if cfg.prompt_style == "continue":
        text = completion.strip("\n")
        return (text.strip() if whole else text.split("\n", 1)[0].strip()) or None
    if cfg.think_close in completion:
        head, _, action = completion.rpartition(cfg.think_close)
        if cfg.think_open not in head:
            return None
    elif cfg.think_open in completion or cfg.require_think:
        return None
    else:
        action = completion
    return action.strip() or None


def make_srl_reward(cfg: SRLConfig, task: Task | None = None) -> Callable[..., list[float]]:
    """A TRL reward function: receives completions and the dataset's columns (`build_srl_dataset`).

    Without a `task` (or without the `problem` column) answers cannot be verified: a `continue`-style
    completion that ends the answer before the last step is a format failure, and every other
    well-formed action scores its similarity, as in the paper."""

    def srl_step_reward(
        completions: list[str],
        expert_action: list[str],
        step: list[int] | None = None,
        num_steps: list[int] | None = None,
        context: list[str] | None = None,
        problem: list[str] | None = None,
        log_metric: Callable[[str, float], None] | None = None,
        **_: Any,
    ) -> list[float]:
        n = len(completions)
        last = [s == k for s, k in zip(step, num_steps, strict=True)] if step and num_steps else [None] * n
        contexts = context or [""] * n
        problems = [_problem(p) for p in problem] if problem and task is not None else [None] * n
        actions = [
            parse_action(c, cfg, whole=bool(is_last)) for c, is_last in zip(completions, last, strict=True)
        ]
        # a continue-style rollout that opened with a blank line stopped there: an empty step, not broken format
        actions = [
            "" if a is None and cfg.prompt_style == "continue" and "\n" in c and not c.strip() else a
            for a, c in zip(actions, completions, strict=True)
        ]
        scored = [(a, e) for a, e in zip(actions, expert_action, strict=True) if a is not None]
        scores = iter(similarities(scored))  # in worker processes for a large batch (similarity.py)
        rewards, answered = [], 0
        for i, action in enumerate(actions):
            if action is None:
                rewards.append(cfg.format_penalty)
                continue
            similarity = next(scores)
            gives = last[i] is not None and (last[i] or ends_answer(completions[i], cfg))
            target = problems[i]
            if target is not None and task is not None:
                gives = gives or _newly_answers(task, contexts[i], action)
                if gives:
                    answered += 1
                    verdict = safe_reward(task, contexts[i] + action, target)
                    rewards.append(judge_answer(verdict, similarity, bool(last[i]), cfg))
                    continue
            elif gives and not last[i]:
                rewards.append(cfg.format_penalty)  # unverifiable early stop: the old rule
                continue
            rewards.append(_mix_check(task, target, step[i] - 1 if step else None, action, similarity, cfg))
        if log_metric is not None:
            log_metric("format_failure_rate", sum(r == cfg.format_penalty for r in rewards) / max(n, 1))
            log_metric("answered_rate", answered / max(n, 1))
        return rewards

    return srl_step_reward


def judge_answer(verdict: float, similarity: float, last: bool, cfg: SRLConfig) -> float:
    """A completion that gives the task's answer: a wrong one (verdict 0) scores `format_penalty`; a
    right one its verdict before the last step, and 0.5 x similarity + 0.5 x verdict at it."""
    if verdict <= 0:
        return cfg.format_penalty
    return 0.5 * similarity + 0.5 * verdict if last else verdict


def _newly_answers(task: Task, context: str, action: str) -> bool:
    """Whether this step's line makes an answer parseable that the steps before it did not hold."""
    return task.parse(context + action) is not None and task.parse(context) is None


def _mix_check(
    task: Task | None,
    problem: Problem | None,
    index: int | None,
    action: str,
    similarity: float,
    cfg: SRLConfig,
) -> float:
    check = getattr(task, "check_step", None)
    if not cfg.step_check or check is None or problem is None or index is None:
        return similarity
    result = check(problem, index, action)
    return similarity if result is None else (1 - cfg.step_check) * similarity + cfg.step_check * result


def _problem(serialised: str) -> Problem:
    data = json.loads(serialised)
    return Problem(id=data["id"], text=data["text"], answer=data["answer"], metadata=data["metadata"])


def ends_answer(completion: str, cfg: SRLConfig) -> bool:
    """In `continue` style, whether a completion ended without finishing its line: its end-of-turn
    token came before any newline (or it ran out of tokens). Before the last step that is a format failure: the
    step's line may be right, but a model that learns to stop after it never writes the steps after
    it when asked the whole question (measured: SmolLM2's SRL model stopped after line 1 of 3 and
    scored 0 on held-out sentiment, BENCHMARKS.md)."""
    blank_line = "\n" in completion and not completion.strip()  # stopped at a blank line: not an end
    return cfg.prompt_style == "continue" and not blank_line and "\n" not in completion.lstrip("\n")


def line_end_tokens(tokenizer: Any) -> list[int]:
    """Every token id whose text holds a newline, so `continue`-style rollouts stop at the end of the
    line: byte-level BPE vocabularies merge ".\n", "\n\n", ":\n" and the like, and a rollout that only
    stopped on a bare "\n" would run on into the next line, whose tokens share the line's advantage."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    special = set(tokenizer.all_special_ids)
    ids = [i for i, text in enumerate(texts) if "\n" in text and i not in special]
    if not ids:
        raise ConfigError("srl.prompt_style 'continue' needs a tokenizer that can write a newline")
    return ids


def split_validation(
    trajectories: Sequence[Trajectory], fraction: float, seed: int
) -> tuple[list[Trajectory], list[Trajectory]]:
    """Hold out `fraction` of the trajectories (at least one, when there are two or more), chosen by
    `seed`, to validate on; the rest train."""
    count = max(1, round(fraction * len(trajectories))) if fraction > 0 and len(trajectories) > 1 else 0
    order = list(range(len(trajectories)))
    random.Random(seed).shuffle(order)
    held = set(order[:count])
    train = [t for i, t in enumerate(trajectories) if i not in held]
    return train, [trajectories[i] for i in sorted(held)]


def train_srl(
    config: Config,
    trajectories: Sequence[Trajectory],
    out_dir: str | Path | None = None,
    task: Task | None = None,
    resume: bool = False,
    callbacks: Sequence[TrainerCallback] = (),
    val_trajectories: Sequence[Trajectory] | None = None,
) -> Path:
    """Run SRL on `trajectories`; return the folder of the trained model (`out_dir/final`: the best on
    validation when `srl.eval_steps` > 0, else the last).

    `val_trajectories` default to `srl.val_fraction` of `trajectories`, held out from training.
    """
    from srl_rlvr.evaluate.evaluation import evaluate_task
    from srl_rlvr.tasks import headline_metric, load_task

    cfg = config.srl
    out_dir = Path(out_dir or Path(config.output_dir) / "srl")
    task = task or load_task(config.task.name, config.task.options)
    if val_trajectories is None and cfg.eval_steps:
        trajectories, val_trajectories = split_validation(trajectories, cfg.val_fraction, config.data.seed)
    if not trajectories:
        raise DataError("no trajectories to train on: the dataset is empty")
    model, tokenizer = start_model(config, out_dir)
    dataset = build_srl_dataset(trajectories, task, cfg, tokenizer)
    stops = line_end_tokens(tokenizer) if cfg.prompt_style == "continue" else []
    trainer = GroupTrainer(
        model=model,
        reward_funcs=[make_srl_reward(cfg, task)],
        args=grpo_args(config, cfg, out_dir, cfg.loss_type),
        train_dataset=dataset,
        processing_class=tokenizer,
        stage=cfg,
        stop_token_ids=stops,
    )
    held_out = (
        build_srl_dataset(val_trajectories, task, cfg, tokenizer)
        if cfg.eval_steps and val_trajectories
        else None
    )

    val_problems = task.sample(config.data.val_size, config.data.seed, "val") if cfg.eval_steps else []
    metric = headline_metric(task, config.pipeline.gate_metric) if val_problems else "mean_step_reward"

    def score(model: Any, tokenizer: Any) -> dict[str, float]:
        """The checkpoint is chosen by the task's verifier on whole answers, as the stage gate judges it;
        step similarity rose while accuracy stayed 0 on SmolLM2 (BENCHMARKS.md), so it is only logged."""
        steps = evaluate_step_reward(model, tokenizer, held_out, cfg, config.eval.batch_size, task)
        if not val_problems:
            return steps
        answers = evaluate_task(
            model, tokenizer, task, val_problems, config.eval.max_new_tokens, config.eval.batch_size
        )
        return {**steps, **answers}

    shared = stage_callbacks(trainer, out_dir, cfg, score if held_out is not None else None, metric)
    log.info(
        "SRL: %d step-wise instances from %d trajectories (%d held out to validate)",
        len(dataset),
        len(trajectories),
        len(val_trajectories or []),
    )
    return run_trainer(
        trainer,
        tokenizer,
        out_dir,
        resume=resume,
        callbacks=[*shared, *callbacks],
        save_minutes=cfg.save_minutes,
    )


def evaluate_step_reward(
    model: Any,
    tokenizer: Any,
    dataset: Dataset,
    cfg: SRLConfig,
    batch_size: int = 64,
    task: Task | None = None,
) -> dict[str, float]:
    """Greedy next-step predictions on step-wise prompts, scored by the SRL reward: the learning signal
    SRL optimises, measured on held-out trajectories (mean reward, exact-step rate, format failures)."""
    from srl_rlvr.rollout import generate_texts

    completions = generate_texts(
        model, tokenizer, dataset["prompt"], cfg.max_completion_length, batch_size=batch_size
    ).completions
    actions = dataset["expert_action"]
    rewards = make_srl_reward(cfg, task)(
        completions=completions,
        expert_action=actions,
        step=dataset["step"],
        num_steps=dataset["num_steps"],
        context=dataset["context"],
        problem=dataset["problem"],
    )
    exact = sum(parse_action(c, cfg) == a.strip() for c, a in zip(completions, actions, strict=True))
    n = max(len(rewards), 1)
    return {
        "mean_step_reward": sum(rewards) / n,
        "exact_step_rate": exact / n,
        "format_failure_rate": sum(r == cfg.format_penalty for r in rewards) / n,
    }
