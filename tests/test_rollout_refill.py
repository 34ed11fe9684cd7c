"""Finished rows refilled from the queue: the same completions, in prompt order, groups together."""

import random
from collections import Counter

import torch

from srl_rlvr.modeling import byte_tokenizer, tiny_model
from srl_rlvr.rollout import FastEngine, SamplingParams
from tests.test_rollout import lively

GREEDY = dict(max_new_tokens=24, temperature=0)


def grouped_prompts(groups: int = 10, size: int = 4, seed: int = 2) -> list[list[int]]:
    """A GRPO batch: each prompt repeated `size` times in a row, lengths mixed."""
    rng = random.Random(seed)
    prompts = [[rng.randrange(256) for _ in range(rng.randint(1, 14))] for _ in range(groups)]
    return [p for p in prompts for _ in range(size)]


def test_refilled_rows_give_the_completions_of_the_whole_batch_in_prompt_order() -> None:
    model = lively(tiny_model(byte_tokenizer()))
    prompts = grouped_prompts()
    whole = FastEngine(model, window=8, check_every=2)
    free = whole.generate(prompts, SamplingParams(**GREEDY)).completion_ids
    stops = tuple(t for t, _ in Counter(t for row in free for t in row).most_common(3))
    params = SamplingParams(**GREEDY, stop_token_ids=stops)
    expected = whole.generate(prompts, params)
    lengths = [len(c) for c in expected.completion_ids]
    assert min(lengths) < 8 and max(lengths) == 24  # rows end at different points

    refilling = FastEngine(model, window=8, check_every=2, max_batch=6, refill_share=0.3)
    got = refilling.generate(prompts, params)
    assert got.completion_ids == expected.completion_ids
    for mine, theirs in zip(got.logprobs, expected.logprobs, strict=True):
        assert torch.allclose(torch.tensor(mine), torch.tensor(theirs), atol=1e-5)
    assert refilling.refills == len(prompts) - 6  # every prompt past the first six took a slot
    assert refilling.cache is not None and sum(lengths) > 6 * refilling.cache.columns  # the ring wrapped
    for start in range(0, len(prompts), 4):  # each group's rows together, identical (greedy)
        assert len({tuple(c) for c in got.completion_ids[start : start + 4]}) == 1

    batches = FastEngine(model, window=8, check_every=2, max_batch=6, refill=False)
    assert batches.generate(prompts, params).completion_ids == expected.completion_ids
    assert batches.refills == 0


def test_refilled_sampling_keeps_each_prompts_completion_in_its_row() -> None:
    """Top-k 1 through the sampling path, rows refilled: each prompt's greedy completion, cut at
    its first stop, at its own index."""
    model = lively(tiny_model(byte_tokenizer()))
    prompts = grouped_prompts(groups=6, size=3, seed=5)
    greedy = FastEngine(model, window=8).generate(prompts, SamplingParams(max_new_tokens=16, temperature=0))
    stop = Counter(t for row in greedy.completion_ids for t in row).most_common(1)[0][0]
    engine = FastEngine(model, window=8, check_every=2, max_batch=4, refill_share=0.25)
    rollout = engine.generate(prompts, SamplingParams(max_new_tokens=16, top_k=1, stop_token_ids=(stop,)))
    assert engine.refills == len(prompts) - 4
    for got, want in zip(rollout.completion_ids, greedy.completion_ids, strict=True):
        cut = next((i + 1 for i, t in enumerate(want) if t == stop), len(want))
        assert got == want[:cut]
