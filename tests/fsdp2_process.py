"""One rank of the FSDP2 rollout-copy test (`test_multiprocess.py`), started by torchrun: shard a
model with FSDP2, make a rollout copy, check it against the whole model before and after an
optimiser step, and write what rank 0 saw to the JSON path given."""

from __future__ import annotations

import copy
import json
import sys

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

from srl_rlvr.modeling import byte_tokenizer, tiny_model
from srl_rlvr.rollout import FastEngine, HFEngine, SamplingParams
from srl_rlvr.rollout.weights_copy import RolloutCopy, is_sharded


def lively(model: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)
    return model


def main(out: str) -> None:
    dist.init_process_group("gloo")
    model = lively(tiny_model(byte_tokenizer()))
    whole = copy.deepcopy(model).eval()  # the same weights, unsharded: the reference
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    prompts = [[5, 17, 99, 3], [42, 8], [200, 201, 202, 7, 9]]
    greedy = SamplingParams(max_new_tokens=16, temperature=0)
    rollout_copy = RolloutCopy(model)
    engine = FastEngine(rollout_copy.model, window=16, pack=True)
    result: dict = {
        "sharded": is_sharded(model),
        "local_rows": next(model.parameters()).to_local().size(0),
        "full_rows": next(whole.parameters()).size(0),
        "copy_equals_gathered": [],
        "tokens_equal_unsharded_model": [],
    }

    def check() -> list[list[int]]:
        gathered = {n: p.full_tensor() for n, p in model.named_parameters()}
        copied = dict(rollout_copy.model.named_parameters())
        result["copy_equals_gathered"].append(all(torch.equal(copied[n], t) for n, t in gathered.items()))
        with torch.no_grad():
            for name, p in whole.named_parameters():
                p.copy_(gathered[name])
        tokens = engine.generate(prompts, greedy).completion_ids
        result["tokens_equal_unsharded_model"].append(
            tokens == HFEngine(whole).generate(prompts, greedy).completion_ids
        )
        return tokens

    before = check()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.5)
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])
    model(input_ids=ids, labels=ids).loss.backward()
    optimiser.step()
    rollout_copy.refresh()  # the gather every rank joins
    result["tokens_changed_by_the_step"] = check() != before
    if dist.get_rank() == 0:
        with open(out, "w") as f:
            json.dump(result, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
