"""A static, preallocated KV cache for left-padded batches.

Layout: one tensor (layers, 2, rows, kv_heads, columns, head_dim) for every layer's keys and values,
plus an additive attention bias (rows, columns): 0 where a column holds one of that row's tokens,
-inf elsewhere. Prompts are left-padded to a common length P, so every row writes decode step t to
the same column P + t: the write is one `index_copy_` at a device-side column index, which a CUDA
graph can replay for any step. Padding costs a few masked columns per row, not a page table.

One tensor for all layers makes reordering rows (moving the unfinished rows to the front when many
have finished: `reorder`) a single gather. Static shapes are what let the decode step be captured:
the cache is allocated once at the largest batch and length seen, and reused while calls fit.
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(
        self,
        layers: int,
        rows: int,
        columns: int,
        kv_heads: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.rows, self.columns = rows, columns
        self.kv = torch.zeros(layers, 2, rows, kv_heads, columns, head_dim, dtype=dtype, device=device)
        self.bias = torch.full((rows, columns), float("-inf"), dtype=dtype, device=device)

    def nbytes(self) -> int:
        return self.kv.nbytes + self.bias.nbytes

    def reorder(self, order: torch.Tensor, columns: int) -> None:
        """Rows 0..len(order)-1 become the rows `order` (only the first `columns` columns move: the
        rest are not yet written in this call)."""
        count = order.numel()
        self.kv[:, :, :count, :, :columns] = self.kv[:, :, order, :, :columns]
        self.bias[:count] = self.bias[order]
