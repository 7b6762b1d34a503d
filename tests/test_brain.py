"""Brains: stacked per-NPC weights evaluated batched, masking, view sizes, the shared variant, growth."""

import numpy as np
import pytest
import torch

from agents.brain import Brain, BrainConfig, BrainPolicy
from agents.layout import SlotLayout
from world.tiles import NUM_ACTIONS, NUM_CODES, PROPRIO_SIZE


def _inputs(g, m, view=7, seed=0):
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, NUM_CODES, (g, m, view, view), generator=gen).to(torch.uint8)
    proprio = torch.rand(g, m, PROPRIO_SIZE, generator=gen)
    mask = torch.rand(g, m, NUM_ACTIONS, generator=gen) < 0.6
    mask[..., 0] = True
    return codes, proprio, mask


def _single(brain: Brain, g: int) -> Brain:
    """Brain g of a stack as a one-brain Brain."""
    one = Brain(brain.config, 1)
    one.load_state_dict({k: v[g : g + 1].clone() for k, v in brain.state_dict().items()})
    return one


def test_batched_brains_equal_each_brain_run_alone():
    brain = Brain(BrainConfig(hidden=32), 3, generator=torch.Generator().manual_seed(0))
    codes, proprio, mask = _inputs(3, 5)
    actions = torch.randint(0, NUM_ACTIONS, (3, 5))
    actions[~mask.gather(-1, actions.unsqueeze(-1)).squeeze(-1)] = 0
    _, logp, ent, value = brain.get_action_and_value(codes, proprio, mask, actions)
    for g in range(3):
        one = _single(brain, g)
        _, lp1, e1, v1 = one.get_action_and_value(
            codes[g : g + 1], proprio[g : g + 1], mask[g : g + 1], actions[g : g + 1]
        )
        torch.testing.assert_close(logp[g], lp1[0])
        torch.testing.assert_close(ent[g], e1[0])
        torch.testing.assert_close(value[g], v1[0])
        torch.testing.assert_close(
            brain.get_value(codes, proprio)[g], one.get_value(codes[g : g + 1], proprio[g : g + 1])[0]
        )


def test_brains_have_their_own_weights():
    brain = Brain(BrainConfig(hidden=16), 2, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(brain.w2[0], brain.w2[1])
    codes, proprio, _ = _inputs(2, 4)
    before = brain.get_value(codes, proprio)
    with torch.no_grad():
        brain.w2[1] += 1.0
    after = brain.get_value(codes, proprio)
    torch.testing.assert_close(before[0], after[0])
    assert not torch.allclose(before[1], after[1])


def test_masked_actions_are_never_sampled_and_logprobs_stay_finite():
    brain = Brain(BrainConfig(hidden=16), 2)
    codes, proprio, mask = _inputs(2, 2000)
    action, logp, ent, _ = brain.get_action_and_value(
        codes, proprio, mask, generator=torch.Generator().manual_seed(1)
    )
    assert mask.gather(-1, action.unsqueeze(-1)).all()
    assert torch.isfinite(logp).all() and torch.isfinite(ent).all()
    only_stay = torch.zeros_like(mask)
    only_stay[..., 0] = True
    action, logp, ent, _ = brain.get_action_and_value(codes, proprio, only_stay)
    assert (action == 0).all() and torch.allclose(logp, torch.zeros_like(logp)) and (ent.abs() < 1e-6).all()
    assert mask.gather(-1, brain.get_greedy_action(codes, proprio, mask).unsqueeze(-1)).all()


def test_sampling_follows_the_policy_distribution():
    brain = Brain(BrainConfig(hidden=8), 1)
    codes, proprio, mask = _inputs(1, 1)
    mask[:] = True
    codes, proprio, mask = (
        codes.expand(1, 20000, 7, 7),
        proprio.expand(1, 20000, -1),
        mask.expand(1, 20000, -1),
    )
    action, logp, _, _ = brain.get_action_and_value(
        codes, proprio, mask, generator=torch.Generator().manual_seed(2)
    )
    freq = torch.bincount(action[0], minlength=NUM_ACTIONS).float() / 20000
    probs = torch.zeros(NUM_ACTIONS).scatter_(0, action[0], logp[0].exp())
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)


def test_smaller_views_sit_in_the_centre_and_larger_are_cropped():
    brain = Brain(BrainConfig(hidden=16, view_size=7), 1)
    codes7, proprio, mask = _inputs(1, 3, view=7)
    codes9 = torch.full((1, 3, 9, 9), 5, dtype=torch.uint8)
    codes9[..., 1:8, 1:8] = codes7
    torch.testing.assert_close(brain.get_value(codes9, proprio), brain.get_value(codes7, proprio))
    big = Brain(BrainConfig(hidden=16, view_size=9), 1)
    with torch.no_grad():  # rows of the outer ring: a 7x7 view must not touch them
        rows = big.embed.view(1, 9, 9, NUM_CODES, 16)
        rows[:, 0], rows[:, 8], rows[:, :, 0], rows[:, :, 8] = 0.0, 0.0, 0.0, 0.0
    codes9[..., 1:8, 1:8] = codes7
    torch.testing.assert_close(big.get_value(codes7, proprio), big.get_value(codes9, proprio))


def test_shared_brain_drives_every_slot_with_one_set_of_weights():
    brain = Brain(BrainConfig(hidden=16, shared=True), 4)
    assert brain.embed.shape[0] == 1
    layout = SlotLayout(shared=True, num_envs=3, num_npcs=4)
    import numpy as np

    views = np.zeros((3, 4, 7, 7), dtype=np.uint8)
    views[:, 2] = 2  # slot 2 sees food everywhere
    codes = layout.to_groups(views)
    assert codes.shape == (1, 12, 7, 7)
    values = layout.to_slots(brain.get_value(codes, torch.zeros(1, 12, PROPRIO_SIZE)).detach())
    assert values.shape == (3, 4)
    assert np.allclose(values[:, 0], values[:, 1]) and not np.allclose(values[:, 0], values[:, 2])


def test_per_npc_layout_maps_slot_i_to_brain_i():
    import numpy as np

    layout = SlotLayout(shared=False, num_envs=3, num_npcs=2)
    x = np.arange(6).reshape(3, 2)
    groups = layout.to_groups(x)
    assert groups.shape == (2, 3) and groups[1].tolist() == [1, 3, 5]
    assert np.array_equal(layout.to_slots(groups), x)


def test_grow_clones_brains_and_their_adam_moments():
    brain = Brain(BrainConfig(hidden=8), 2, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(brain.parameters(), lr=1e-3)
    codes, proprio, _ = _inputs(2, 4)
    brain.get_value(codes, proprio).sum().backward()
    opt.step()
    brain.grow(5, opt)
    assert brain.n_brains == 5 and brain.w2.shape[0] == 5
    for new, src in ((2, 0), (3, 1), (4, 0)):
        assert torch.equal(brain.w2[new], brain.w2[src])
        assert torch.equal(opt.state[brain.w2]["exp_avg"][new], opt.state[brain.w2]["exp_avg"][src])
    codes, proprio, _ = _inputs(5, 4)
    brain.get_value(codes, proprio).sum().backward()
    opt.step()  # the optimiser keeps working on the grown tensors


@pytest.mark.parametrize("field,value", [("hidden", 0), ("view_size", 6)])
def test_brain_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=rf"^brain\.{field}="):
        BrainConfig(**{field: value})


@pytest.mark.parametrize("view", [5, 7, 9, 11])
def test_numpy_policy_matches_the_torch_brain(view):
    brain = Brain(BrainConfig(hidden=32, view_size=9), 3, generator=torch.Generator().manual_seed(1))
    codes, proprio, mask = _inputs(3, 6, view=view, seed=2)
    with torch.no_grad():
        hidden = brain.trunk(codes, proprio)
        logp_all = torch.log_softmax(brain._logits(hidden, mask), -1)
        value = brain.get_value(codes, proprio)
    for g in (0, 2):
        policy = BrainPolicy(brain, g)
        for m in range(6):
            logp, v = policy.forward(codes[g, m].numpy(), proprio[g, m].numpy(), mask[g, m].numpy())
            legal = mask[g, m].numpy()
            np.testing.assert_allclose(logp[legal], logp_all[g, m].numpy()[legal], rtol=1e-5, atol=1e-5)
            assert (logp[~legal] < -1e6).all()
            assert v == pytest.approx(float(value[g, m]), rel=1e-5, abs=1e-5)


def test_numpy_policy_samples_legal_actions_by_their_probabilities():
    brain = Brain(BrainConfig(hidden=16, view_size=7), 1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        brain.w_actor.mul_(200.0)  # a peaked policy, so frequencies are far from uniform
    codes, proprio, mask = _inputs(1, 1, seed=3)
    policy = BrainPolicy(brain)
    c, p, k = codes[0, 0].numpy(), proprio[0, 0].numpy(), mask[0, 0].numpy()
    probs = np.exp(policy.forward(c, p, k)[0])
    rng = np.random.default_rng(0)
    draws = [policy.act(c, p, k, rng) for _ in range(4000)]
    counts = np.bincount([a for a, _, _ in draws], minlength=NUM_ACTIONS) / len(draws)
    assert counts[~k].sum() == 0
    np.testing.assert_allclose(counts, probs, atol=0.03)
    action, logp, _ = draws[0]
    assert logp == pytest.approx(float(np.log(probs[action])), abs=1e-5)


def test_numpy_policy_sees_optimiser_steps_and_loaded_weights():
    brain = Brain(BrainConfig(hidden=16, view_size=7), 1, generator=torch.Generator().manual_seed(0))
    policy = BrainPolicy(brain)
    codes, proprio, mask = _inputs(1, 1, seed=4)
    c, p, k = codes[0, 0].numpy(), proprio[0, 0].numpy(), mask[0, 0].numpy()
    before = policy.forward(c, p, k)[1]
    optimizer = torch.optim.Adam(brain.parameters(), lr=0.1)
    brain.get_value(codes, proprio).sum().backward()
    optimizer.step()
    after_step = policy.forward(c, p, k)[1]
    assert after_step != pytest.approx(before)
    with torch.no_grad():
        assert after_step == pytest.approx(float(brain.get_value(codes, proprio)[0, 0]), rel=1e-5, abs=1e-5)
    other = Brain(BrainConfig(hidden=16, view_size=7), 1, generator=torch.Generator().manual_seed(9))
    brain.load_state_dict(other.state_dict())
    assert policy.forward(c, p, k)[1] == pytest.approx(BrainPolicy(other).forward(c, p, k)[1], rel=1e-6)


def test_numpy_policy_rejects_a_missing_brain_group():
    with pytest.raises(ValueError, match="brain group 2"):
        BrainPolicy(Brain(BrainConfig(hidden=8), 2), 2)


# --- memory (brain.memory=gru) ---------------------------------------------------------------------

@torch.no_grad()
def _ticks(brain: Brain, g: int, T: int, m: int, seed: int = 1):
    """T ticks of inputs acted on one by one: (inputs, resets, actions, logprobs, values, start state)."""
    gen = torch.Generator().manual_seed(seed)
    steps = [_inputs(g, m, seed=seed + t) for t in range(T)]
    resets = torch.rand(T, g, m, generator=gen) < 0.2
    state = start = torch.randn(g, m, brain.state_size, generator=gen)
    actions, logprobs, values = [], [], []
    for t, (codes, proprio, mask) in enumerate(steps):
        action, logp, value, state = brain.step(codes, proprio, mask, state, resets[t], generator=gen)
        actions.append(action), logprobs.append(logp), values.append(value)
    return steps, resets, torch.stack(actions, 1), torch.stack(logprobs, 1), torch.stack(values, 1), start


def test_a_memory_brain_re_runs_a_rollout_chunk_exactly_as_it_acted():
    brain = Brain(BrainConfig(hidden=16, memory="gru"), 2, generator=torch.Generator().manual_seed(0))
    steps, resets, actions, logprobs, values, start = _ticks(brain, 2, 6, 3)
    codes, proprio, mask = (torch.stack([s[i] for s in steps], 1) for i in range(3))
    logp, entropy, value = brain.evaluate_sequence(codes, proprio, mask, actions, start,
                                                   resets.transpose(0, 1))
    torch.testing.assert_close(logp, logprobs.reshape(2, -1))
    torch.testing.assert_close(value, values.reshape(2, -1))
    assert entropy.shape == (2, 18) and torch.isfinite(entropy).all()


def test_memory_carries_the_past_and_a_reset_forgets_it():
    brain = Brain(BrainConfig(hidden=16, memory="gru"), 1, generator=torch.Generator().manual_seed(0))
    codes, proprio, mask = _inputs(1, 2)
    past = torch.randn(1, 2, 16)
    _, _, value, state = brain.step(codes, proprio, mask, past)
    _, _, fresh_value, fresh_state = brain.step(codes, proprio, mask, torch.zeros(1, 2, 16))
    assert not torch.allclose(value, fresh_value)  # what it remembered changes what it thinks now
    _, _, reset_value, reset_state = brain.step(codes, proprio, mask, past, torch.tensor([[True, False]]))
    torch.testing.assert_close(reset_value[0, 0], fresh_value[0, 0])
    torch.testing.assert_close(reset_state[0, 1], state[0, 1])


def test_a_memoryless_brain_carries_an_empty_state_and_acts_as_before():
    brain = Brain(BrainConfig(hidden=16), 2, generator=torch.Generator().manual_seed(0))
    codes, proprio, mask = _inputs(2, 4)
    state = brain.initial_state(2, 4)
    assert state.shape == (2, 4, 0)
    action, logp, value, after = brain.step(codes, proprio, mask, state,
                                            generator=torch.Generator().manual_seed(5))
    same = brain.get_action_and_value(codes, proprio, mask, generator=torch.Generator().manual_seed(5))
    assert torch.equal(action, same[0]) and torch.equal(logp, same[1]) and torch.equal(value, same[3])
    assert after.shape == (2, 4, 0)


def test_the_numpy_policy_remembers_as_the_torch_brain_does():
    brain = Brain(BrainConfig(hidden=16, memory="gru"), 2, generator=torch.Generator().manual_seed(0))
    policy = BrainPolicy(brain, g=1)
    state = brain.initial_state(2, 1)
    torch.set_grad_enabled(False)
    for t in range(5):
        codes, proprio, mask = _inputs(2, 1, seed=t)
        _, _, value, state = brain.step(codes, proprio, mask, state)
        logp, v = policy.forward(codes[1, 0].numpy(), proprio[1, 0].numpy(), mask[1, 0].numpy())
        assert v == pytest.approx(float(value[1, 0]), abs=1e-5)
        np.testing.assert_allclose(policy.state, state[1, 0].numpy(), atol=1e-5)
    torch.set_grad_enabled(True)
    policy.reset()
    assert not policy.state.any()


def test_a_memory_brain_refuses_calls_without_its_state_and_a_bad_memory_is_named():
    brain = Brain(BrainConfig(hidden=16, memory="gru"), 1)
    codes, proprio, mask = _inputs(1, 2)
    with pytest.raises(ValueError, match="needs the memory state"):
        brain.get_action_and_value(codes, proprio, mask)
    with pytest.raises(ValueError, match="memory state: shape"):
        brain.step(codes, proprio, mask, torch.zeros(1, 3, 16))
    with pytest.raises(ValueError, match=r"brain.memory='lstm': choose one of \['none', 'gru'\]"):
        BrainConfig(memory="lstm")


def test_ppo_over_sequences_trains_the_recurrent_weights():
    from agents.ppo import PPOConfig, ppo_update
    from agents.rollout import Rollout

    brain = Brain(BrainConfig(hidden=16, memory="gru"), 2, generator=torch.Generator().manual_seed(0))
    T, m = 6, 4
    steps, resets, actions, logprobs, values, start = _ticks(brain, 2, T, m)
    ro = Rollout(2, T, m, 7, PROPRIO_SIZE, NUM_ACTIONS, brain.state_size)
    for t, (codes, proprio, mask) in enumerate(steps):
        ro.codes[:, t], ro.proprio[:, t], ro.action_mask[:, t] = codes, proprio, mask
    ro.actions[:], ro.logprobs[:], ro.values[:] = actions, logprobs, values
    ro.resets[:] = resets.transpose(0, 1)
    ro.rewards[:] = torch.randn(2, T, m, generator=torch.Generator().manual_seed(3))
    ro.mask[:] = True
    ro.initial_state[:] = start
    before = brain.w_hh.detach().clone()
    stats = ppo_update(brain, torch.optim.Adam(brain.parameters(), lr=1e-2),
                       ro.batch(torch.zeros(2, m), torch.zeros(2, m, dtype=torch.bool), 0.99, 0.95),
                       PPOConfig(num_envs=m, num_steps=T, num_minibatches=1, update_epochs=1))
    assert stats["old_approx_kl"] == pytest.approx(0.0, abs=1e-6)  # the first minibatch re-ran it exactly
    assert not torch.equal(before, brain.w_hh)


def test_the_in_place_trunk_equals_its_out_of_place_formula_to_the_bit():
    # Brain.trunk adds, multiplies and rectifies in place on the embedding sums (agents/brain.py); the
    # values and every gradient must be those of relu(baddbmm(b2, relu(baddbmm(b1 + h, p, W)), W2))
    brain = Brain(BrainConfig(), 4, proprio_size=PROPRIO_SIZE, generator=torch.Generator().manual_seed(5))
    codes, proprio, _ = _inputs(4, 300, seed=6)
    weight = torch.randn(4, 300, brain.config.hidden, generator=torch.Generator().manual_seed(7))

    def out_of_place() -> torch.Tensor:
        h = brain._embed_views(codes)
        h = torch.relu(torch.baddbmm(brain.b1 + h, proprio, brain.w_proprio))
        return torch.relu(torch.baddbmm(brain.b2, h, brain.w2))

    results = []
    for forward in (out_of_place, lambda: brain.trunk(codes, proprio)):
        brain.zero_grad(set_to_none=True)
        hidden = forward()
        (hidden * weight).sum().backward()
        results.append((hidden.detach(), [p.grad.clone() for p in (brain.embed, brain.b1, brain.w_proprio,
                                                                    brain.b2, brain.w2)]))
    (want, want_grads), (got, got_grads) = results
    assert torch.equal(got, want)
    assert want_grads[0].abs().sum() > 0
    for g_got, g_want in zip(got_grads, want_grads, strict=True):
        assert torch.equal(g_got, g_want)


def test_the_trunk_without_autograd_equals_the_trunk_with_it_to_the_bit():
    brain = Brain(BrainConfig(), 4, generator=torch.Generator().manual_seed(8))
    codes, proprio, _ = _inputs(4, 300, seed=9)
    with torch.inference_mode():
        fast = brain.trunk(codes, proprio)
    assert torch.equal(fast, brain.trunk(codes, proprio).detach())
