"""The fast rollout engine: batched prefill, CUDA-graph decode steps, on-GPU sampling, early exit.

One `generate` call:
1. Prefill. Prompts are left-padded to the longest (P) and run through the model in row chunks;
   identical prompts (a GRPO group repeats each prompt `num_generations` times) are run once and
   their cache rows copied. The first token is sampled from the last position's logits.
2. Decode. Each step feeds every row's last token at cache column P + t. On CUDA the step (forward,
   sampling, bookkeeping) is captured once per (rows, attention width, sampler) as a CUDA graph and
   replayed: ~800 kernel launches become one, and launches are what a 0.5B model's step is bound
   by (on an H100: 19.8 ms a step eager, 3.9 ms replayed, at batch 256). vLLM's and SGLang's
   decode loops and PyTorch's gpt-fast do the same; rollouts need no paged cache (Kwon et al. 2023,
   "Efficient Memory Management for Large Language Model Serving with PagedAttention"), since every
   row of a call has the same length bound. Attention reads only the first `width` cache columns,
   rounded up to `window`, so early steps do not pay for the full length.
3. Early exit. Every `check_every` steps the host reads how many rows are unfinished (the one
   sync); when all are, the loop ends; when at most half are, the unfinished rows are moved to the
   front of the cache and the step runs at the smaller batch (its own graph).
4. Refill (`max_batch` below the number of prompts). At most `max_batch` rows run at once; the
   other prompts wait in order, and at a check, once `refill_share` of the rows have finished (or the
   queue holds fewer prompts), the next prompts are prefilled into the finished rows' slots, so
   the batch stays full while rows end at different points (continuous batching, Yu et al. 2022,
   "Orca"). The cache columns are then a ring: every row still writes the shared column, modulo
   the cache width, and a row's prompt is placed in the columns just before it, so no row ever
   spans more than its prompt and `max_new_tokens`. Completions come back in prompt order, each
   group's rows together. Greedy tokens are those of the batch run at once (rows never interact).

A `processor` (HF's LogitsProcessor call shape) may rewrite each step's logits on the host side
before sampling: per-request sampling and grammar masks in serving. Such a call runs its steps
eagerly, without graphs or row compaction (rows stay in prompt order for the processor's state).

Graphs are captured lazily, a few ms each (no compiler; 0.1-0.2 s for a whole first call), and kept
across calls while the batch and length fit the cache; `warmup_s` after a call says how long
capture took. `fused=True` adds a one-off torch.compile of the elementwise ops and sampler (~9 s
cold, ~2 s from Inductor's disk cache; `ops.py`) and the Triton decode attention
(`attention.py`): 3.7 -> 1.6 ms a step at batch 256 on an H200 with packed weights. Weights are the model's
own (`decoder.py`): graphs are re-captured only if a weight tensor is replaced rather than updated.
On CPU the same steps run eagerly (tests use that path).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from srl_rlvr.rollout.cache import KVCache
from srl_rlvr.rollout.decoder import Decoder
from srl_rlvr.rollout.sampling import Rollout, SamplingParams, fused_sampler, sample

SamplerKey = tuple[bool, int, bool]  # greedy, top_k, top-p on
Processor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (last tokens, logits) -> logits
GREEDY: SamplerKey = (True, 0, False)


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


class FastEngine:
    """Generation over a supported HF model's live weights (see `decoder.unsupported_reason`).

    `fused`: fuse the elementwise ops with torch.compile (`ops.py`; CUDA only); `window`:
    attention-width and cache-length granularity; `check_every`: decode steps between finished-row
    checks; `prefill_tokens`: prompt tokens per prefill chunk (bounds its memory); `pack`: one
    matmul for q/k/v and one for gate/up (`decoder.py`; re-points the model's parameters, so only
    for a model no optimiser holds, such as a rollout copy). `max_batch`: rows run at once (None:
    every prompt of a call); `refill`: a finished row takes the next waiting prompt (else the
    prompts run in consecutive batches); `refill_share`: the share of rows that must have
    finished before a refill (each refill is one eager prefill, so they are batched).
    """

    def __init__(
        self,
        model: nn.Module,
        cuda_graphs: bool = True,
        fused: bool = False,
        window: int = 64,
        check_every: int = 8,
        prefill_tokens: int = 16384,
        pack: bool = False,
        max_batch: int | None = None,
        refill: bool = True,
        refill_share: float = 0.125,
    ) -> None:
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be at least 1 (got {max_batch})")
        self.decoder = Decoder(model, fused=fused, pack=pack)
        self.device = self.decoder.device
        self.sample = fused_sampler() if fused and self.device.type == "cuda" else sample
        self.cuda_graphs = cuda_graphs and self.device.type == "cuda"
        self.window, self.check_every, self.prefill_tokens = window, check_every, prefill_tokens
        self.max_batch, self.refill, self.refill_share = max_batch, refill, refill_share
        self.refills = 0  # prompts that started in a finished row's slot in the last call
        self.steps = 0  # decode steps the last call ran
        self.cache: KVCache | None = None
        self._graphs: dict[tuple[int, int, SamplerKey], torch.cuda.CUDAGraph] = {}
        self._pool = None
        self._pointers: tuple[int, ...] = ()
        self.warmup_s = 0.0  # graph capture time in the last call

    # ---- buffers --------------------------------------------------------------------------
    def _allocate(self, rows: int, columns: int, stops: int) -> None:
        """(Re)allocate the cache and step buffers; graphs point into them, so they go too."""
        old = self.cache
        rows, columns = max(rows, old.rows if old else 0), max(columns, old.columns if old else 0)
        self.release()
        d, device = self.decoder, self.device
        self.cache = KVCache(len(d.layers), rows, columns, d.num_kv_heads, d.head_dim, d.dtype, device)
        d.build_rope_tables(columns)
        self.tokens = torch.zeros(rows, dtype=torch.long, device=device)  # each row's next input
        self.positions = torch.zeros(rows, dtype=torch.long, device=device)  # its rope position
        self.done = torch.zeros(rows, dtype=torch.bool, device=device)
        self.row_ids = torch.zeros(rows, dtype=torch.long, device=device)  # which prompt a row holds
        # One spare output column: a finished row's later tokens land there or after its stop.
        self.out_ids = torch.zeros(rows, columns + 1, dtype=torch.long, device=device)
        self.out_logps = torch.zeros(rows, columns + 1, dtype=torch.float32, device=device)
        self.out_pos = torch.zeros(rows, dtype=torch.long, device=device)  # output column written next
        self.slot = torch.zeros(1, dtype=torch.long, device=device)  # cache column written next
        self.limit = torch.zeros(1, dtype=torch.long, device=device)  # max_new_tokens
        self.temperature = torch.ones(1, device=device)
        self.top_p = torch.ones(1, device=device)
        self.stops = torch.full((stops,), -1, dtype=torch.long, device=device)

    def release(self) -> None:
        """Free the cache and the graphs (the next call allocates and captures again)."""
        self._graphs.clear()
        self._pool = None
        self.cache = None

    def _prepare(self, batch: int, length: int, params: SamplingParams) -> None:
        columns = round_up(length, self.window)
        stops = max(8, len(params.stop_token_ids))
        cache = self.cache
        if cache is None or cache.rows < batch or cache.columns < columns or self.stops.numel() < stops:
            self._allocate(round_up(batch, 8), columns, stops)
        pointers = self.decoder.weight_pointers()
        if pointers != self._pointers:
            self._graphs.clear()
            self._pointers = pointers
        self.temperature.fill_(params.temperature or 1.0)
        self.top_p.fill_(params.top_p)
        self.limit.fill_(params.max_new_tokens)
        self.stops.fill_(-1)
        if params.stop_token_ids:
            self.stops[: len(params.stop_token_ids)] = torch.tensor(params.stop_token_ids, device=self.device)

    def _bucket(self, rows: int) -> int:
        assert self.cache is not None
        return min(self.cache.rows, round_up(rows, 8))

    # ---- one step -------------------------------------------------------------------------
    def _record(self, rows: int, token: torch.Tensor, logp: torch.Tensor) -> None:
        """Each row's token at its own output column; a row is done at a stop token or its last."""
        column = torch.minimum(self.out_pos[:rows], self.limit)[:, None]
        self.out_ids[:rows].scatter_(1, column, token[:, None])
        self.out_logps[:rows].scatter_(1, column, logp[:, None])
        self.out_pos[:rows].add_(1)
        ended = (token[:, None] == self.stops[None]).any(dim=-1) | (self.out_pos[:rows] >= self.limit)
        self.done[:rows].logical_or_(ended)
        self.tokens[:rows] = token

    def _decode_step(self, rows: int, width: int, sampler: SamplerKey) -> None:
        assert self.cache is not None
        logits = self.decoder.decode(self.cache, self.tokens[:rows], self.positions[:rows], self.slot, width)
        token, logp = self.sample(logits, *sampler, self.temperature, self.top_p)
        self._record(rows, token, logp)
        # A finished row idles on; its rope position stays inside the table (a live row's never
        # reaches the end: prompt + max_new_tokens - 1 fits the cache width).
        self.positions[:rows].add_(1).clamp_(max=self.cache.columns - 1)
        self.slot.add_(1).remainder_(self.cache.columns)  # a ring when rows are refilled

    def _run_step(self, rows: int, width: int, sampler: SamplerKey) -> None:
        if not self.cuda_graphs:
            self._decode_step(rows, width, sampler)
            return
        key = (rows, width, sampler)
        graph = self._graphs.get(key)
        if graph is None:
            start = time.perf_counter()
            graph = self._graphs[key] = self._capture(rows, width, sampler)
            self.warmup_s += time.perf_counter() - start
        graph.replay()

    def _capture(self, rows: int, width: int, sampler: SamplerKey) -> torch.cuda.CUDAGraph:
        """Warm the step up eagerly on a side stream (lazy library init must not happen inside a
        capture), undo its effect on the step state, then capture it."""
        state = (self.tokens, self.positions, self.done, self.slot, self.out_pos)
        saved = [t.clone() for t in state]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._decode_step(rows, width, sampler)
        torch.cuda.current_stream().wait_stream(side)
        for tensor, value in zip(state, saved, strict=True):
            tensor.copy_(value)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            self._decode_step(rows, width, sampler)
        return graph

    # ---- a whole call ---------------------------------------------------------------------
    def _prefill_distinct(
        self, cache: KVCache, prompts: Sequence[Sequence[int]], length: int
    ) -> tuple[torch.Tensor, list[int]]:
        """Prefill each distinct prompt once, left-padded to `length`, into cache rows 0, 1, ...;
        their last-token logits, and which of them each prompt is."""
        distinct: dict[tuple[int, ...], int] = {}
        source = [distinct.setdefault(tuple(p), len(distinct)) for p in prompts]
        unique = list(distinct)
        ids = torch.zeros(len(unique), length, dtype=torch.long)
        for i, prompt in enumerate(unique):
            ids[i, length - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        ids = ids.to(self.device)
        pads = torch.tensor([length - len(p) for p in unique], device=self.device)
        cache.bias[: len(unique)].fill_(float("-inf"))
        chunk = max(1, self.prefill_tokens // length)
        logits = torch.cat(
            [
                self.decoder.prefill(cache, slice(s, s + len(part)), part, pads[s : s + chunk])
                for s in range(0, len(unique), chunk)
                for part in [ids[s : s + chunk]]
            ]
        )
        return logits, source

    def _prefill(self, prompts: Sequence[Sequence[int]], rows: int, length: int, total: int) -> torch.Tensor:
        """Prefill the distinct prompts, copy them to every row that holds them; last-token logits
        per row. Rows beyond the prompts (batch rounding) copy prompt 0, start finished and hold
        prompt `total` (the result's spare row)."""
        assert self.cache is not None
        logits, source = self._prefill_distinct(self.cache, prompts, length)
        source += [0] * (rows - len(prompts))
        index = torch.tensor(source, device=self.device)
        if logits.size(0) < rows:
            self.cache.reorder(index, length)
        lengths = torch.tensor([len(p) for p in prompts] + [len(prompts[0])] * (rows - len(prompts)))
        self.positions[:rows] = lengths.to(self.device)
        held = torch.arange(rows, device=self.device)
        self.row_ids[:rows] = torch.where(held < len(prompts), held, total)
        self.done[:rows] = held >= len(prompts)
        self.out_pos[:rows] = 0
        return logits[index]

    def _admit(
        self,
        rows: torch.Tensor,
        prompts: Sequence[Sequence[int]],
        first: int,
        column: int,
        sampler: SamplerKey,
        final: list[torch.Tensor],
    ) -> None:
        """Start prompts first, first + 1, ... in the finished `rows` (a device index), their
        previous completions flushed: each prompt's cache goes in the ring columns just before
        `column` (the next one written), and its first token is sampled."""
        cache = self.cache
        assert cache is not None
        ids, logps = final
        ids.index_copy_(0, self.row_ids[rows], self.out_ids[rows, : ids.size(1)])
        logps.index_copy_(0, self.row_ids[rows], self.out_logps[rows, : ids.size(1)])
        length = max(len(p) for p in prompts)
        d = self.decoder
        scratch = KVCache(
            len(d.layers), len(prompts), length, d.num_kv_heads, d.head_dim, d.dtype, self.device
        )
        logits, source = self._prefill_distinct(scratch, prompts, length)
        index = torch.tensor(source, device=self.device)
        columns = (column - length + torch.arange(length, device=self.device)) % cache.columns
        block = cache.kv[:, :, rows]
        block[:, :, :, :, columns] = scratch.kv[:, :, index]
        cache.kv[:, :, rows] = block
        bias = torch.full(
            (len(prompts), cache.columns), float("-inf"), dtype=cache.bias.dtype, device=self.device
        )
        bias[:, columns] = scratch.bias[index]
        cache.bias[rows] = bias
        self.positions[rows] = torch.tensor([len(p) for p in prompts], device=self.device)
        self.row_ids[rows] = torch.arange(first, first + len(prompts), device=self.device)
        token, logp = self.sample(logits[index], *sampler, self.temperature, self.top_p)
        self.out_ids[rows, 0], self.out_logps[rows, 0], self.tokens[rows] = token, logp, token
        self.out_pos[rows] = 1
        self.done[rows] = (token[:, None] == self.stops[None]).any(dim=-1) | (self.limit <= 1)
        self.refills += len(prompts)

    def _compact(self, rows: int, new_rows: int, columns: int, final: list[torch.Tensor]) -> int:
        """Keep the unfinished rows (and finished ones to fill the bucket) at the front."""
        assert self.cache is not None
        self._flush(rows, final)
        order = torch.argsort(self.done[:rows].to(torch.int8), stable=True)[:new_rows]
        buffers = (self.tokens, self.positions, self.done, self.row_ids, self.out_ids, self.out_logps)
        for buffer in (*buffers, self.out_pos):
            buffer[:new_rows] = buffer[order]
        self.cache.reorder(order, columns)
        return new_rows

    def _flush(self, rows: int, final: list[torch.Tensor]) -> None:
        """Copy each row's outputs so far to its prompt's row of the result."""
        ids, logps = final
        count = ids.size(1)
        ids.index_copy_(0, self.row_ids[:rows], self.out_ids[:rows, :count])
        logps.index_copy_(0, self.row_ids[:rows], self.out_logps[:rows, :count])

    def _processed_step(self, rows: int, width: int, batch: int, processor: Processor) -> None:
        """A decode step whose logits `processor` rewrites (eager); its argmax is the token."""
        assert self.cache is not None
        logits = self.decoder.decode(self.cache, self.tokens[:rows], self.positions[:rows], self.slot, width)
        token, logp = self._processed_sample(logits, batch, processor)
        self._record(rows, token, logp)
        # A finished row idles on; its rope position stays inside the table (a live row's never
        # reaches the end: prompt + max_new_tokens - 1 fits the cache width).
        self.positions[:rows].add_(1).clamp_(max=self.cache.columns - 1)
        self.slot.add_(1).remainder_(self.cache.columns)

    def _processed_sample(
        self, logits: torch.Tensor, batch: int, processor: Processor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = logits.float().clone()
        chosen[:batch] = processor(self.tokens[:batch, None], chosen[:batch])
        return self.sample(chosen, *GREEDY, self.temperature, self.top_p)

    @torch.no_grad()
    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, processor: Processor | None = None
    ) -> Rollout:
        """Complete each prompt (lists of token ids); see `Rollout` for what comes back. With a
        `processor`, each step's token is the argmax of its logits after `processor` (which then
        does the sampling, as serve/row_sampling.py does) and the log-probs returned are not the
        model's; such a call runs every prompt at once (the processor holds per-row state)."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        self.warmup_s, self.refills, self.steps = 0.0, 0, 0
        most = len(prompts) if processor is not None or self.max_batch is None else self.max_batch
        if len(prompts) > most and not self.refill:
            parts = [
                self._generate(prompts[s : s + most], params, None, most)
                for s in range(0, len(prompts), most)
            ]
            return Rollout(
                [ids for part in parts for ids in part.completion_ids],
                [logps for part in parts for logps in part.logprobs],
            )
        return self._generate(prompts, params, processor, most)

    def _generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, processor: Processor | None, most: int
    ) -> Rollout:
        batch, length, new = len(prompts), max(len(p) for p in prompts), params.max_new_tokens
        running = min(batch, most)
        with torch.autocast(self.device.type, enabled=False):
            self._prepare(running, length + new - 1, params)
            assert self.cache is not None
            rows, columns = self._bucket(running), self.cache.columns
            sampler: SamplerKey = (params.greedy, params.top_k, params.top_p < 1.0)
            logits = self._prefill(prompts[:running], rows, length, batch)
            self.slot.fill_(length)
            if processor is None:
                token, logp = self.sample(logits, *sampler, self.temperature, self.top_p)
            else:
                token, logp = self._processed_sample(logits, batch, processor)
            self._record(rows, token, logp)
            final = [
                torch.zeros(batch + 1, new, dtype=torch.long, device=self.device),
                torch.zeros(batch + 1, new, device=self.device),
            ]
            waiting, step, horizon = running, 1, new  # next queued prompt; steps run while < horizon
            while step < horizon or waiting < batch:
                written = length + step - 1  # the absolute column this step writes (modulo columns)
                if step % self.check_every == 0:
                    if waiting < batch:
                        finished = self.done[:running].nonzero().flatten()  # not the bucket's spare rows
                        wanted = min(batch - waiting, max(1, int(rows * self.refill_share)))
                        if len(finished) >= wanted:
                            admitted = finished[: batch - waiting]
                            chosen = prompts[waiting : waiting + len(admitted)]
                            self._admit(admitted, chosen, waiting, written % columns, sampler, final)
                            waiting += len(admitted)
                            horizon = max(horizon, step + new - 1)
                    else:
                        unfinished = int((~self.done[:rows]).sum())
                        if unfinished == 0:
                            break
                        if processor is None and unfinished <= rows // 2 and self._bucket(unfinished) < rows:
                            moved = min(written, columns)
                            rows = self._compact(rows, self._bucket(unfinished), moved, final)
                wrapped = written >= columns
                width = columns if wrapped else min(columns, round_up(written + 1, self.window))
                if processor is None:
                    self._run_step(rows, width, sampler)
                else:
                    self._processed_step(rows, width, batch, processor)
                step += 1
            self._flush(rows, final)
        self.steps += step - 1
        return self._result(final[0][:batch], final[1][:batch])

    def _result(self, ids: torch.Tensor, logps: torch.Tensor) -> Rollout:
        """Cut each row after its first stop token; one transfer to the host."""
        hit = (ids[..., None] == self.stops).any(dim=-1)
        first = torch.where(hit.any(dim=1), hit.int().argmax(dim=1) + 1, ids.size(1))
        ids_list, logps_list, lengths = ids.tolist(), logps.tolist(), first.tolist()
        return Rollout(
            completion_ids=[row[:n] for row, n in zip(ids_list, lengths, strict=True)],
            logprobs=[row[:n] for row, n in zip(logps_list, lengths, strict=True)],
        )
