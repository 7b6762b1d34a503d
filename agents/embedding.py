"""Sum of embedding rows per bag, with a backward that scatters without sorting.

``F.embedding_bag(mode="sum")``'s CPU backward sorts every (bag, row) index before it adds the
gradient rows up: for the brain's views (49 or 81 rows per bag, thousands of bags) that sort was
two thirds of a PPO minibatch's backward pass. Here each bag's k-th row index gets the bag's
gradient with one ``index_add_`` per position k, over blocks of bags that stay in cache: the same
sums, added in the same order (bag after bag), at a third of the cost. The adds run on one torch
thread: with two, each of the thousands of small ``index_add_`` calls is a parallel region, and on a
loaded machine every one of them waits for a descheduled sibling thread (measured 20x slower).

Stacked brains (``parts``): when the bags come in equal blocks that each name rows of their own (brain
g's bags only its own table), and torch may use two threads, the two halves of the blocks scatter at
once, one in a worker thread: each row still gets its bags in the same order, so the gradient is the
same to the bit; the two threads never wait on each other until the end.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from torch import Tensor

#: Bags per block of the backward scatter: a block's gradient rows (x hidden width) stay in L2 cache.
BLOCK = 1024

#: The backward's worker thread and the process it was started in (a forked child starts its own).
_worker: tuple[int, ThreadPoolExecutor] | None = None


def _worker_pool() -> ThreadPoolExecutor:
    """The worker thread of this process."""
    global _worker
    if _worker is None or _worker[0] != os.getpid():
        pool = ThreadPoolExecutor(1, thread_name_prefix="bag_sum", initializer=torch.set_num_threads,
                                  initargs=(1,))
        _worker = (os.getpid(), pool)
    return _worker[1]


def _scatter(grad: Tensor, by_position: Tensor, grad_out: Tensor, start: int, stop: int) -> None:
    """grad[index[b, k]] += grad_out[b] for bags start..stop-1, block by block, bag after bag."""
    for block in range(start, stop, BLOCK):
        end = min(block + BLOCK, stop)
        rows = grad_out[block:end]
        for position in by_position[:, block:end]:
            grad.index_add_(0, position, rows)


class _BagSum(torch.autograd.Function):
    """out[b] = sum_k table[index[b, k]]; backward scatters grad_out[b] into each indexed row."""

    @staticmethod
    def forward(ctx, index: Tensor, table: Tensor, parts: int) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(index)
        ctx.rows, ctx.parts = table.shape[0], parts
        return F.embedding_bag(index, table, mode="sum")

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[None, Tensor, None]:  # type: ignore[override]
        (index,) = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        by_position = index.t().contiguous()  # [K, bags]: each position's indices in one run
        grad = grad_out.new_zeros(ctx.rows, grad_out.shape[1])
        bags, parts = index.shape[0], ctx.parts
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # thousands of small adds: a parallel region each costs more than it saves
        try:
            if threads >= 2 and parts >= 2 and bags % parts == 0:
                half = parts // 2 * (bags // parts)  # a block boundary: the halves' rows are disjoint
                other = _worker_pool().submit(_scatter, grad, by_position, grad_out, half, bags)
                try:
                    _scatter(grad, by_position, grad_out, 0, half)
                finally:
                    other.result()
            else:
                _scatter(grad, by_position, grad_out, 0, bags)
        finally:
            torch.set_num_threads(threads)
        return None, grad, None


def bag_sum(index: Tensor, table: Tensor, parts: int = 1) -> Tensor:
    """Per bag (row of index [bags, K]), the sum of the table's rows it names: [bags, H].

    ``parts`` > 1 promises that the bags form that many equal blocks, block p naming only rows that no
    other block names (stacked brains); the backward may then scatter two halves at once."""
    if not torch.is_grad_enabled() or not table.requires_grad:
        return F.embedding_bag(index, table, mode="sum")
    return _BagSum.apply(index, table, parts)
