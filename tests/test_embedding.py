"""agents.embedding.bag_sum: embedding_bag's sums and gradients, from a backward that does not sort."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

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
