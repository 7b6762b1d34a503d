"""Sum of embedding rows per bag, with a backward that scatters without sorting.

``F.embedding_bag(mode="sum")``'s CPU backward sorts every (bag, row) index before it adds the
gradient rows up: for the brain's views (49 or 81 rows per bag, thousands of bags) that sort was
two thirds of a PPO minibatch's backward pass. Here each bag's k-th row index gets the bag's
gradient with one ``index_add_`` per position k, over blocks of bags that stay in cache: the same
sums, added in the same order (bag after bag), at a third of the cost. The adds run on one thread:
with two, each of the thousands of small ``index_add_`` calls is a parallel region, and on a loaded
machine every one of them waits for a descheduled sibling thread (measured 20x slower).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: Bags per block of the backward scatter: a block's gradient rows (x hidden width) stay in L2 cache.
BLOCK = 1024


class _BagSum(torch.autograd.Function):
    """out[b] = sum_k table[index[b, k]]; backward scatters grad_out[b] into each indexed row."""

    @staticmethod
    def forward(ctx, index: Tensor, table: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(index)
        ctx.rows = table.shape[0]
        return F.embedding_bag(index, table, mode="sum")

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[None, Tensor]:  # type: ignore[override]
        (index,) = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        by_position = index.t().contiguous()  # [K, bags]: each position's indices in one run
        grad = grad_out.new_zeros(ctx.rows, grad_out.shape[1])
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # thousands of small adds: a parallel region each costs more than it saves
        try:
            for start in range(0, index.shape[0], BLOCK):
                rows = grad_out[start:start + BLOCK]
                for position in by_position[:, start:start + BLOCK]:
                    grad.index_add_(0, position, rows)
        finally:
            torch.set_num_threads(threads)
        return None, grad


def bag_sum(index: Tensor, table: Tensor) -> Tensor:
    """Per bag (row of index [bags, K]), the sum of the table's rows it names: [bags, H]."""
    if not torch.is_grad_enabled() or not table.requires_grad:
        return F.embedding_bag(index, table, mode="sum")
    return _BagSum.apply(index, table)
