"""agents.embedding.bag_sum: embedding_bag's sums and gradients, from a backward that does not sort."""

from __future__ import annotations

import multiprocessing

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from agents.embedding import BLOCK, bag_sum


@pytest.mark.parametrize(("bags", "positions", "exact"), [(BLOCK * 2 + 37, 49, True), (300, 81, False)])
def test_bag_sum_matches_embedding_bag_forward_and_backward(bags: int, positions: int, exact: bool) -> None:
    # bit for bit at the trainer's sizes (thousands of bags); small batches, where embedding_bag adds
    # in another order, agree to rounding
    gen = torch.Generator().manual_seed(3)
    codes, width = 12, 16
    table = torch.randn(positions * codes, width, generator=gen, requires_grad=True)
    # the brain's layout: position k of every bag names one of that position's 12 rows
    index = torch.randint(0, codes, (bags, positions), generator=gen) + torch.arange(positions) * codes
    grad_out = torch.randn(bags, width, generator=gen)
    want = F.embedding_bag(index, table, mode="sum")
    want.backward(grad_out)
    want_grad, table.grad = table.grad, None
    got = bag_sum(index, table)
    got.backward(grad_out)
    assert torch.equal(got, want)
    if exact:
        assert torch.equal(table.grad, want_grad)
    else:
        torch.testing.assert_close(table.grad, want_grad, rtol=1e-5, atol=1e-5)


def test_bag_sum_adds_a_row_named_twice_in_a_bag_twice() -> None:
    table = torch.eye(3, requires_grad=True)
    out = bag_sum(torch.tensor([[0, 0, 2]]), table)
    assert out.tolist() == [[2.0, 0.0, 1.0]]
    out.sum().backward()
    assert table.grad[:, 0].tolist() == [2.0, 0.0, 1.0]


def test_bag_sum_without_grad_is_embedding_bag() -> None:
    table = torch.randn(24, 4)
    index = torch.randint(0, 24, (5, 3))
    with torch.inference_mode():
        assert torch.equal(bag_sum(index, table), F.embedding_bag(index, table, mode="sum"))


@pytest.mark.parametrize("parts", [2, 4, 5])
def test_stacked_brains_scatter_two_halves_at_once_to_the_same_bits(parts: int) -> None:
    # the brain's layout for `parts` stacked brains: brain p's bags name only brain p's rows; on two
    # torch threads the backward scatters the halves in parallel and must give the one-thread gradient
    gen = torch.Generator().manual_seed(4)
    per, positions, codes, width = 700, 49, 12, 32
    rows = positions * codes
    table = torch.randn(parts * rows, width, generator=gen, requires_grad=True)
    bags = parts * per
    index = (torch.randint(0, codes, (bags, positions), generator=gen) + torch.arange(positions) * codes
             + (torch.arange(bags) // per * rows).unsqueeze(1))
    grad_out = torch.randn(parts * per, width, generator=gen)
    grads = []
    threads = torch.get_num_threads()
    try:
        for n, p in ((1, 1), (2, parts)):
            torch.set_num_threads(n)
            table.grad = None
            bag_sum(index, table, parts=p).backward(grad_out)
            grads.append(table.grad)
            assert torch.get_num_threads() == n  # the backward gives back the caller's thread count
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(grads[0], grads[1])
    assert (grads[1][-rows:] != 0).any()  # the worker's half was scattered


def _two_thread_backward(parts: int) -> Tensor:
    """The gradient of a stacked-brain bag_sum whose backward runs on two torch threads (the worker's
    path; its tensors are small enough that torch opens no parallel region of its own, which a forked
    child of a process that used OpenMP could not join)."""
    gen = torch.Generator().manual_seed(5)
    per, positions, codes, width = 300, 9, 12, 8
    rows, bags = positions * codes, parts * per
    table = torch.randn(parts * rows, width, generator=gen, requires_grad=True)
    index = (torch.randint(0, codes, (bags, positions), generator=gen) + torch.arange(positions) * codes
             + (torch.arange(bags) // per * rows).unsqueeze(1))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        out = bag_sum(index, table, parts=parts)
        torch.set_num_threads(2)
        out.backward(torch.ones(bags, width))
    finally:
        torch.set_num_threads(threads)
    return table.grad


def _child(queue: multiprocessing.Queue) -> None:
    queue.put(_two_thread_backward(4).sum().item())


def test_a_forked_child_starts_its_own_worker_thread() -> None:
    # the parent's worker thread does not exist in a fork (the NPC fork server forks the trainer's
    # process): a child that reused it would wait for it forever
    want = _two_thread_backward(4).sum().item()  # the parent's worker exists now
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0
    assert queue.get(timeout=5) == want
