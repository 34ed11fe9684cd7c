"""Find why RL weights go non-finite: record per-step numerics and stop at the first non-finite gradient.

Runs one arm of `benchmarks/learning.py` (same base, data, config and time budget) with probes on the
rollout trainer: for every micro-batch, the extremes of the policy's and the reference's token
log-probabilities, of `ref - logp` and of TRL's k3 KL term, inside and outside the completion mask;
and before every clip, the gradient norm and whether every gradient is finite. At the first
non-finite gradient it writes the step's record, the parameters hit, and the micro-batch itself,
so the step can be replayed.

    python benchmarks/stability_probe.py --arm srl --seed 3 --budget-s 90 --out runs/probe
    python benchmarks/stability_probe.py --replay runs/probe/srl-seed3

`--replay` recomputes a dumped micro-batch's loss and gradients under variants (attention
implementation and SDPA backend, autocast, TRL's fused LM head, masked rows dropped) and says which
give non-finite gradients. Run under training code that predates the fix, this is how the cause
was found: only PyTorch's cuDNN attention backend did (`train/runner.py: avoid_cudnn_attention`).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from trl import GRPOTrainer

from srl_rlvr.cli import quiet_libraries
from srl_rlvr.config import load_config
from srl_rlvr.modeling import model_source
from srl_rlvr.tasks import load_task
from srl_rlvr.train import group_trainer
from srl_rlvr.train.rlvr import train_rlvr
from srl_rlvr.train.srl import train_srl

RECORDS: list[dict[str, Any]] = []
STATE: dict[str, Any] = {"step": 0, "out": Path("."), "hit": False}


class NonFiniteGradient(RuntimeError):
    pass


def _stats(trainer: Any, model: Any, inputs: dict[str, Any]) -> dict[str, float]:
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    attention = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    keep = inputs["completion_ids"].size(1)
    with torch.no_grad():
        raw, _, _ = GRPOTrainer._get_per_token_logps_and_entropies(trainer, model, ids, attention, keep)
    mask = inputs["completion_mask"].bool()
    out: dict[str, float] = {"tokens": float(mask.sum())}
    if mask.any():
        out["logp_min_masked_in"] = float(raw[mask].min())
        out["logp_below_-20"] = float((raw[mask] < -20).sum())
    out["logp_min_all"] = float(raw.min())
    ref = inputs.get("ref_per_token_logps")
    if ref is not None:
        floored = raw.clamp(min=group_trainer.LOGP_FLOOR)
        gap = ref - floored
        k3 = torch.exp(gap) - gap - 1
        out["ref_min"] = float(ref.min())
        out["gap_max_all"] = float(gap.max())
        out["k3_max_all"] = float(k3.max())
        if mask.any():
            out["gap_max_in"] = float(gap[mask].max())
            out["k3_max_in"] = float(k3[mask].max())
            out["k3_mean_in"] = float(k3[mask].mean())
    sampled = inputs.get("sampling_per_token_logps")
    if sampled is not None and mask.any():
        out["sampling_logp_min_in"] = float(sampled[mask].min())
        out["sampling_vs_train_max_gap_in"] = float((sampled - raw)[mask].abs().max())
    out["advantage_absmax"] = float(inputs["advantages"].abs().max())
    return out


def install_probes() -> None:
    original_loss = group_trainer.GroupTrainer._compute_loss

    def probed_loss(self: Any, model: Any, inputs: dict[str, Any]) -> Any:
        record = _stats(self, model, inputs)
        loss = original_loss(self, model, inputs)
        record["loss"] = float(loss.detach())
        record["beta"] = float(self.beta)
        STATE["micro"] = {k: v.detach().cpu() for k, v in inputs.items() if torch.is_tensor(v)}
        STATE["pending"] = record
        return loss

    group_trainer.GroupTrainer._compute_loss = probed_loss  # type: ignore[method-assign]

    original_init = group_trainer.GroupTrainer.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        clip = self.accelerator.clip_grad_norm_
        trainer = self

        def probed_clip(parameters: Any, max_norm: float, *a: Any, **k: Any) -> Any:
            parameters = list(parameters)
            named = dict(trainer.model.named_parameters())
            by_id = {id(p): n for n, p in named.items()}
            bad = [
                by_id.get(id(p), "?")
                for p in parameters
                if p.grad is not None and not torch.isfinite(p.grad).all()
            ]
            absmax = max((float(p.grad.abs().max()) for p in parameters if p.grad is not None), default=0.0)
            norm = clip(parameters, max_norm, *a, **k)
            STATE["step"] += 1
            record = {
                "step": STATE["step"],
                **STATE.get("pending", {}),
                "grad_norm": float(norm),
                "grad_absmax": absmax,
            }
            record["bad_grads"] = bad[:10]
            RECORDS.append(record)
            if bad or not math.isfinite(float(norm)):
                STATE["hit"] = True
                out = STATE["out"]
                (out / "event.json").write_text(
                    json.dumps({"event": record, "before": RECORDS[-6:-1]}, indent=1)
                )
                torch.save(STATE["micro"], out / "microbatch.pt")
                torch.save({n: p.detach().cpu() for n, p in named.items()}, out / "weights_before.pt")
                raise NonFiniteGradient(f"non-finite gradient at step {STATE['step']}: {bad[:3]}")
            return norm

        self.accelerator.clip_grad_norm_ = probed_clip

    group_trainer.GroupTrainer.__init__ = init  # type: ignore[method-assign]


def replay(folder: Path, reps: int = 3) -> None:
    """Which variant of the step's computation makes the dumped micro-batch's gradients non-finite."""
    from contextlib import nullcontext

    from torch.nn.attention import SDPBackend, sdpa_kernel
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    device = "cuda" if torch.cuda.is_available() else "cpu"
    batch = {k: v.to(device) for k, v in torch.load(folder / "microbatch.pt").items()}
    weights = torch.load(folder / "weights_before.pt")
    beta = json.loads((folder / "event.json").read_text())["event"]["beta"]

    def run(attention: str = "sdpa", autocast: bool = True, fused: bool = True, backend: Any = None) -> str:
        model = AutoModelForCausalLM.from_pretrained(
            model_source("embedded"), attn_implementation=attention, dtype=torch.float32
        ).to(device)
        model.load_state_dict(weights, strict=False)  # tied embeddings: no separate lm_head weight
        if fused:
            add_fused_lm_head(model, outputs=("log_probs", "entropy"))
        ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
        attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
        mask, keep = batch["completion_mask"], batch["completion_ids"].size(1)
        hits = 0
        for _ in range(reps):
            model.zero_grad()
            cast = torch.autocast(device, dtype=torch.bfloat16) if autocast else nullcontext()
            kernels = sdpa_kernel([backend]) if backend is not None else nullcontext()
            with cast, kernels:
                if fused:
                    labels = ids.masked_fill(attention_mask == 0, -100)
                    labels[:, :-keep] = -100
                    logp = model(
                        input_ids=ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True
                    )
                    logp = logp.log_probs[:, -keep:]
                else:
                    logits = model(input_ids=ids, attention_mask=attention_mask).logits[:, -keep - 1 : -1]
                    logp = (
                        logits.float().log_softmax(-1).gather(-1, batch["completion_ids"][..., None])[..., 0]
                    )
            logp = logp.clamp(min=group_trainer.LOGP_FLOOR)
            gap = batch["ref_per_token_logps"] - logp
            per_token = -torch.exp(logp - logp.detach()) * batch["advantages"][:, None] + beta * (
                gap.exp() - gap - 1
            )
            loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
            loss.backward()
            hits += any(p.grad is not None and not torch.isfinite(p.grad).all() for p in model.parameters())
        return f"loss {loss.item():+.4g}, non-finite gradients in {hits}/{reps} runs"

    print(f"{folder}: as trained (sdpa, bf16 autocast, fused head): {run()}")
    print(f"  float32, no autocast: {run(autocast=False)}")
    print(f"  eager attention: {run(attention='eager')}")
    print(f"  plain LM head: {run(fused=False)}")
    if device == "cuda":
        for backend in (SDPBackend.MATH, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION):
            print(f"  SDPA backend {backend.name}: {run(backend=backend)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm", choices=["srl", "rlvr"], default="srl")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--options", default='{"min_steps": 4, "max_steps": 5}')
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--budget-s", type=float, default=90)
    parser.add_argument("--config", default="examples/quickstart.yaml")
    parser.add_argument("--set", nargs="*", default=[])
    parser.add_argument("--out", type=Path, default=Path("runs/probe"))
    parser.add_argument("--replay", nargs="*", type=Path, help="folders with a dumped event to replay")
    args = parser.parse_args()
    quiet_libraries()
    if args.replay:
        for folder in args.replay:
            replay(folder)
        return
    from learning import TimeBudget  # benchmarks/ is on sys.path when this script runs

    out = args.out / f"{args.arm}-seed{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    STATE["out"] = out
    install_probes()
    options = json.loads(args.options)
    task = load_task("arithmetic", options)
    config = load_config(
        args.config,
        [
            f"seed={args.seed}",
            "srl.max_steps=100000",
            "rlvr.max_steps=100000",
            f"output_dir={out}",
            *args.set,
        ],
    )
    config.task.options = options
    base = model_source("embedded")
    config = config.model_copy(update={"model": config.model.model_copy(update={"name_or_path": base})})
    train = task.sample(args.train, seed=args.seed, split="train")
    budget = [TimeBudget(args.budget_s)]
    started = time.time()
    try:
        if args.arm == "srl":
            train_srl(config, [task.solve(p) for p in train], out / "srl", task=task, callbacks=budget)
        else:
            train_rlvr(config, train, out / "rlvr", task=task, model=base, callbacks=budget)
        verdict = "no non-finite gradient"
    except NonFiniteGradient as e:
        verdict = str(e)
    with (out / "probe.jsonl").open("w") as f:
        for record in RECORDS:
            f.write(json.dumps(record) + "\n")
    worst = {
        key: max((r.get(key, float("-inf")) for r in RECORDS), default=None)
        for key in ("k3_max_in", "k3_max_all", "gap_max_in", "grad_norm", "grad_absmax", "logp_below_-20")
    }
    low = min((r.get("logp_min_masked_in", 0.0) for r in RECORDS), default=None)
    print(
        f"{args.arm} seed {args.seed}: {verdict} after {STATE['step']} steps, {time.time() - started:.0f} s"
    )
    print(f"  worst over the run: {json.dumps(worst)}; lowest in-mask logp {low}")


if __name__ == "__main__":
    main()
