"""GAE, the PPO loss and per-brain gradient clipping on hand-computed cases."""

import math

import pytest
import torch

from agents.ppo import PPOConfig, clip_grad_norm_per_brain, explained_variance, gae, ppo_loss


def test_gae_hand_computed_with_a_life_ending_mid_rollout():
    rewards = torch.tensor([1.0, 0.0, 2.0])
    values = torch.tensor([0.5, 1.0, 0.2])
    dones = torch.tensor([False, False, True])  # obs 2 starts a new life: step 1 does not bootstrap
    adv, ret = gae(rewards, values, dones, torch.tensor(0.4), torch.tensor(False), gamma=0.9, gae_lambda=0.8)
    # t=2: 2 + 0.9*0.4 - 0.2 = 2.16;  t=1: 0 - 1.0 = -1.0;  t=0: 1 + 0.9*1.0 - 0.5 + 0.9*0.8*(-1.0) = 0.68
    torch.testing.assert_close(adv, torch.tensor([0.68, -1.0, 2.16]))
    torch.testing.assert_close(ret, torch.tensor([1.18, 0.0, 2.36]))


def test_gae_next_done_stops_bootstrap_and_batches_broadcast():
    rewards = torch.tensor([[1.0, 1.0]])  # T=1, two samples
    values = torch.tensor([[0.0, 0.0]])
    adv, _ = gae(
        rewards,
        values,
        torch.zeros(1, 2, dtype=torch.bool),
        torch.tensor([5.0, 5.0]),
        torch.tensor([True, False]),
        gamma=0.5,
        gae_lambda=1.0,
    )
    torch.testing.assert_close(adv, torch.tensor([[1.0, 3.5]]))


def _gae_per_tick(rewards, values, dones, next_value, next_done, gamma, gae_lambda):
    """CleanRL's GAE loop as written there: everything per tick."""
    T = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(T)):
        if t == T - 1:
            nonterminal, next_values = 1.0 - next_done.float(), next_value
        else:
            nonterminal, next_values = 1.0 - dones[t + 1].float(), values[t + 1]
        delta = rewards[t] + gamma * next_values * nonterminal - values[t]
        advantages[t] = last = delta + gamma * gae_lambda * nonterminal * last
    return advantages, advantages + values


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gae_equals_cleanrls_per_tick_loop_to_the_bit(seed):
    g = torch.Generator().manual_seed(seed)
    T, G, M = 32, 4, 64
    rewards = torch.randn(T, G, M, generator=g)
    values = torch.randn(T, G, M, generator=g)
    dones = torch.rand(T, G, M, generator=g) < 0.1  # lives end all over the rollout
    next_value = torch.randn(G, M, generator=g)
    next_done = torch.rand(G, M, generator=g) < 0.1
    adv, ret = gae(rewards, values, dones, next_value, next_done, gamma=0.99, gae_lambda=0.95)
    ref_adv, ref_ret = _gae_per_tick(rewards, values, dones, next_value, next_done, 0.99, 0.95)
    assert dones.any() and next_done.any()
    assert torch.equal(adv, ref_adv)
    assert torch.equal(ret, ref_ret)


def _loss_inputs():
    return dict(
        new_logprob=torch.log(torch.tensor([[1.5, 0.5]])),
        entropy=torch.tensor([[1.0, 0.5]]),
        new_value=torch.tensor([[1.0, 0.0]]),
        old_logprob=torch.zeros(1, 2),
        old_value=torch.tensor([[0.5, 0.5]]),
        advantages=torch.tensor([[1.0, 1.0]]),
        returns=torch.tensor([[2.0, 0.0]]),
    )


def test_ppo_loss_hand_computed():
    loss, stats = ppo_loss(
        **_loss_inputs(),
        mask=torch.ones(1, 2),
        clip_coef=0.2,
        vf_coef=0.5,
        ent_coef=0.01,
        clip_vloss=True,
        norm_adv=False,
    )
    # policy: mean(max(-1.5, -1.2), max(-0.5, -0.8)) = -0.85; value: 0.5 * mean(1.69, 0.09) = 0.445
    assert stats["policy_loss"] == pytest.approx(-0.85)
    assert stats["value_loss"] == pytest.approx(0.445)
    assert stats["entropy"] == pytest.approx(0.75)
    assert loss.item() == pytest.approx(-0.85 - 0.01 * 0.75 + 0.5 * 0.445)
    assert stats["approx_kl"] == pytest.approx(((0.5 - math.log(1.5)) + (-0.5 - math.log(0.5))) / 2)
    assert stats["old_approx_kl"] == pytest.approx(-(math.log(1.5) + math.log(0.5)) / 2)
    assert stats["clipfrac"] == pytest.approx(1.0)


def test_ppo_loss_masks_dead_samples_and_unclipped_value():
    loss, stats = ppo_loss(
        **_loss_inputs(),
        mask=torch.tensor([[1.0, 0.0]]),
        clip_coef=0.2,
        vf_coef=0.5,
        ent_coef=0.01,
        clip_vloss=False,
        norm_adv=False,
    )
    assert stats["policy_loss"] == pytest.approx(-1.2)
    assert stats["value_loss"] == pytest.approx(0.5)  # 0.5 * (1 - 2)^2, the masked sample ignored
    assert loss.item() == pytest.approx(-1.2 - 0.01 * 1.0 + 0.5 * 0.5)


def test_ppo_loss_normalises_advantages_per_brain_and_sums_brains():
    inputs = _loss_inputs()
    two = {k: torch.cat([v, v]) for k, v in inputs.items()}
    two["advantages"] = torch.tensor([[1.0, 3.0], [10.0, 30.0]])  # normalise to [-1/sqrt2, 1/sqrt2] each
    loss, stats = ppo_loss(
        **two, mask=torch.ones(2, 2), clip_coef=0.2, vf_coef=0.0, ent_coef=0.0, norm_adv=True
    )
    a = 1 / math.sqrt(2)
    # sample 0: adv -a, ratio 1.5 -> max(1.5a, 1.2a) = 1.5a;  sample 1: adv a, ratio 0.5 -> max(-0.5a, -0.8a)
    per_brain = (1.5 * a - 0.5 * a) / 2
    assert stats["policy_loss"] == pytest.approx(per_brain, rel=1e-5)
    assert loss.item() == pytest.approx(2 * per_brain, rel=1e-5)


def test_each_brain_gets_only_its_own_gradient():
    w = torch.tensor([[1.0], [2.0]], requires_grad=True)  # two brains, one weight each
    new_logprob = (w * torch.ones(2, 3)) - w.detach()
    loss, _ = ppo_loss(
        new_logprob,
        torch.zeros(2, 3),
        torch.zeros(2, 3),
        torch.zeros(2, 3),
        torch.zeros(2, 3),
        torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]),
        torch.zeros(2, 3),
        torch.ones(2, 3),
        0.2,
        0.5,
        0.0,
        norm_adv=False,
    )
    loss.backward()
    assert w.grad[0].item() == pytest.approx(-1.0)
    assert w.grad[1].item() == 0.0


def test_clip_grad_norm_per_brain_scales_only_large_brains():
    a = torch.zeros(2, 2, requires_grad=True)
    a.grad = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    norms = clip_grad_norm_per_brain([a], max_norm=1.0)
    torch.testing.assert_close(norms, torch.tensor([5.0, 0.5]))
    torch.testing.assert_close(a.grad, torch.tensor([[0.6, 0.8], [0.3, 0.4]]), atol=1e-5, rtol=1e-5)


def test_explained_variance():
    y = torch.tensor([1.0, 2.0, 3.0, 100.0])
    mask = torch.tensor([True, True, True, False])
    assert explained_variance(y, y, mask) == pytest.approx(1.0)
    assert explained_variance(torch.full((4,), 2.0), y, mask) == pytest.approx(0.0)
    assert math.isnan(explained_variance(torch.zeros(4), torch.ones(4), torch.ones(4, dtype=torch.bool)))


@pytest.mark.parametrize(
    "field,value",
    [("num_envs", 0), ("update_epochs", 0), ("gamma", 1.5), ("learning_rate", 0.0), ("ent_coef", -1.0)],
)
def test_ppo_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"^ppo\.{field}="):
        PPOConfig(**{field: value})
