"""The NPC's mind without the bus: weights on disk, acting under the world's mask, commands, state,
CPU metering, the command line, and online learning that actually learns."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.brain import Brain, BrainConfig
from agents.npc import (
    CHECKPOINT_FORMAT,
    CpuMeter,
    NpcAgent,
    NpcConfig,
    brain_slot,
    main,
    run,
    weights_digest,
    write_status,
    write_weights,
)
from nervous import subjects
from nervous.messages import Command, Observation, Region
from world import GridWorld, stage_config
from world.tiles import NUM_ACTIONS, PROPRIO_SIZE, Action, Proprio

SIDE = 7


def _obs(tick: int = 0, reward: float = 0.0, mask: np.ndarray | None = None,
         proprio: np.ndarray | None = None, view: np.ndarray | None = None) -> Observation:
    view = np.zeros((SIDE, SIDE), np.uint8) if view is None else view
    proprio = np.full(PROPRIO_SIZE, 0.5, np.float32) if proprio is None else proprio
    mask = np.ones(NUM_ACTIONS, bool) if mask is None else mask
    return Observation(npc=0, tick=tick, side=SIDE, view=view.tobytes(),
                       proprio=proprio.astype("<f4").tobytes(), reward=reward, action_mask=mask.tobytes())


def _agent(tmp_path: Path | None = None, **kw) -> NpcAgent:
    kw.setdefault("hidden", 32)
    kw.setdefault("view_size", SIDE)
    return NpcAgent(NpcConfig(run_dir=str(tmp_path) if tmp_path else "", **kw))


# -- config -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value", "message"), [
    ("tick_rate", 0, "npc.tick_rate=0: must be an integer in 1..20"),
    ("tick_rate", 21, "npc.tick_rate=21"),
    ("npc", -1, "npc.npc=-1"),
    ("num_steps", 0, "npc.num_steps=0"),
    ("checkpoint_every", 0, "npc.checkpoint_every=0"),
])
def test_bad_config_values_are_named(field, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        NpcConfig(**{field: value})


def test_unknown_config_field_is_named():
    with pytest.raises(ValueError, match="npc.tick_hz: unknown NPC config field"):
        NpcConfig.from_dict({"npc": 1, "tick_hz": 5})


def test_command_line_without_a_bus_url_fails_in_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--id", "3"])
    assert exc.value.code == 2
    assert "--bus-url: required" in capsys.readouterr().err


def test_command_line_rejects_a_bad_tick_rate(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--id", "3", "--tick-rate", "40", "--bus-url", "nats://127.0.0.1:1"])
    assert exc.value.code == 2
    assert "npc.tick_rate=40" in capsys.readouterr().err


# -- weights ----------------------------------------------------------------------------------------

def test_missing_checkpoint_starts_fresh_with_a_warning_and_is_saved_at_once(tmp_path, caplog):
    first = _agent(tmp_path, npc=3, seed=1)
    with caplog.at_level(logging.WARNING, logger="agents.npc"):
        assert first.load_or_create() == "fresh"
    assert "npc 3: no checkpoint" in caplog.text
    path = tmp_path / "npc-3.pt"
    assert torch.load(path, weights_only=True)["format"] == CHECKPOINT_FORMAT
    again = _agent(tmp_path, npc=3, seed=99)  # another seed: different fresh weights
    assert weights_digest(again.brain) != weights_digest(first.brain)
    assert again.load_or_create() == "checkpoint"
    assert weights_digest(again.brain) == weights_digest(first.brain)


def test_unusable_checkpoint_starts_fresh_with_a_warning(tmp_path, caplog):
    (tmp_path / "npc-0.pt").write_bytes(b"not a torch file")
    with caplog.at_level(logging.WARNING, logger="agents.npc"):
        assert _agent(tmp_path).load_or_create() == "fresh"
    assert "checkpoint" in caplog.text and "unusable" in caplog.text
    wrong_width = _agent(tmp_path, hidden=16)  # the file now holds a hidden=32 brain
    assert wrong_width.load_or_create() == "fresh"


def test_status_names_the_source_and_the_weights(tmp_path):
    agent = _agent(tmp_path, npc=2)
    agent.load_or_create()
    write_status(agent.config, agent, actions=5)
    status = json.loads((tmp_path / "npc-2.status.json").read_text())
    assert status["source"] == "fresh" and status["actions"] == 5
    assert status["weights"] == weights_digest(agent.brain)


def test_a_trainer_brain_slot_becomes_an_npc_weights_file(tmp_path):
    stacked = Brain(BrainConfig(hidden=32, view_size=SIDE), 3, generator=torch.Generator().manual_seed(4))
    write_weights(tmp_path / "npc-5.pt", 5, brain_slot(stacked.state_dict(), 2), hidden=32, view_size=SIDE)
    agent = _agent(tmp_path, npc=5)
    assert agent.load_or_create() == "checkpoint"
    for name, tensor in agent.brain.state_dict().items():
        torch.testing.assert_close(tensor[0], stacked.state_dict()[name][2])


# -- acting -----------------------------------------------------------------------------------------

def test_actions_respect_the_worlds_mask():
    agent = _agent()
    only = np.zeros(NUM_ACTIONS, bool)
    only[Action.WEST] = True
    assert {agent.act(_obs(t, mask=only)) for t in range(50)} == {Action.WEST}
    anything = {agent.act(_obs(t)) for t in range(300)}
    assert len(anything) >= 4  # a fresh brain is close to uniform


def test_rewards_of_skipped_observations_are_kept_for_the_next_action():
    agent = _agent()
    agent.act(_obs(0))
    for t, r in ((1, 0.25), (2, 0.5), (3, -1.0)):
        agent.observe(_obs(t, reward=r))
    assert agent.pending_reward == pytest.approx(-0.25)
    agent.act(_obs(3))
    assert agent.pending_reward == 0.0


def test_the_state_report_carries_the_worlds_moving_averages_of_the_last_observation():
    agent = _agent()
    for t, (reward_rate, override_rate) in enumerate(((0.1, 0.5), (-0.02, 0.25))):
        obs = _obs(t)
        obs.reward_rate, obs.override_rate = reward_rate, override_rate
        agent.observe(obs)
    state = agent.state(_obs(2), 0.0)
    assert state.reward_rate == pytest.approx(-0.02) and state.override_rate == pytest.approx(0.25)


def test_a_dead_body_does_not_think():
    agent = _agent()
    assert agent.act(_obs(0, proprio=np.zeros(PROPRIO_SIZE, np.float32))) is None
    assert agent.brain_calls == 0 and agent.act(_obs(1)) is not None and agent.brain_calls == 1


def test_a_brain_action_a_nerve_overrode_stays_out_of_the_ppo_loss():
    agent = _agent(npc=0, learn=True, num_steps=16)  # npc 0: no offset, rows 0-2 are the first calls
    for t, overridden in ((0, False), (1, True), (2, False)):
        obs = _obs(t)
        obs.overridden = overridden  # the world's nerves changed the action sent at the last brain call
        agent.observe(obs)
        agent.act(obs)
        agent.learn()
    mask = agent.rollout.mask[0, :3, 0].tolist()
    assert mask == [False, True, True]  # row 0's action was overridden (told at t=1); row 2 not yet known


def test_commands_for_this_npc_are_obeyed_and_others_rejected(caplog):
    agent = _agent(npc=4, tick_rate=20)
    with caplog.at_level(logging.WARNING, logger="agents.npc"):
        assert not agent.command(Command(npc=5, tick=0, tick_rate=2))
    assert agent.tick_rate == 20 and "rejected command for npc 5" in caplog.text
    assert agent.command(Command(npc=4, tick=0, tick_rate=5, gates={Region.MATH: True}))
    assert agent.tick_rate == 5 and agent.gates == {"math": True}


def test_state_report_reads_lifeforce_battery_and_death():
    agent = _agent(npc=1, tick_rate=7)
    p = np.zeros(PROPRIO_SIZE, np.float32)
    p[Proprio.LIFEFORCE], p[Proprio.BATTERY] = 0.75, 1.5
    state = agent.state(_obs(9, proprio=p), cpu_use=0.3)
    assert (state.npc, state.tick, state.tick_rate, state.alive) == (1, 9, 7, True)
    assert state.lifeforce == pytest.approx(0.75) and state.battery == 1.0 and state.cpu_use == 0.3
    assert not agent.state(_obs(10, proprio=np.zeros(PROPRIO_SIZE, np.float32)), 0.0).alive


# -- CPU metering -----------------------------------------------------------------------------------

def test_cpu_meter_reads_cgroup_v1_and_v2_usage_files(tmp_path):
    clock = iter([100.0, 102.0])
    v1 = tmp_path / "cpuacct.usage"
    v1.write_text("1000000000\n")  # ns
    meter = CpuMeter(str(v1), clock=lambda: next(clock))
    v1.write_text("2000000000\n")
    assert meter.rate() == pytest.approx(0.5)
    v2 = tmp_path / "cpu.stat"
    v2.write_text("usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\n")
    assert CpuMeter(str(v2)).seconds() == pytest.approx(3.0)


# -- learning ---------------------------------------------------------------------------------------

def test_online_learner_learns_a_rewarded_action_and_checkpoints_every_k_updates(tmp_path):
    # a contextual bandit through the NPC's own reward path: the world pays 1 for EAST, one tick later
    agent = _agent(tmp_path, learn=True, num_steps=16, checkpoint_every=25, seed=0)
    agent.load_or_create()
    reward, east = 0.0, []
    for t in range(2000):
        obs = _obs(t, reward=reward)
        agent.observe(obs)
        action = agent.act(obs)
        reward = 1.0 if action == Action.EAST else 0.0
        east.append(action == Action.EAST)
    first, last = np.mean(east[:250]), np.mean(east[-250:])
    assert first < 0.3  # about 1/7: the fresh brain is close to a random policy
    assert last >= 0.8, f"EAST share rose only from {first:.2f} to {last:.2f}"
    assert agent.updates == (2000 - 1) // 16  # an update each 16 ticks; the 17th bootstraps and starts anew
    saved = torch.load(tmp_path / "npc-0.pt", weights_only=True)
    assert saved["updates"] == 100  # the last multiple of checkpoint_every
    assert "optimizer" in saved


def world_observation(world: GridWorld, tick: int) -> Observation:
    """NPC 0's observation of env 0 of a real world, as the world server sends it."""
    return Observation(npc=0, tick=tick, side=world.V, view=world.views[0, 0].tobytes(),
                       proprio=world.proprio[0, 0].tobytes(), reward=float(world.rewards[0, 0]),
                       action_mask=world.action_mask[0, 0].tobytes(),
                       terminated=bool(world.terminals[0, 0]), truncated=bool(world.truncations[0, 0]))


def test_online_learning_in_a_real_world_runs_updates_on_world_rewards():
    world = GridWorld(stage_config(0, n_npcs=1), num_envs=1, seed=0)
    agent = _agent(learn=True, num_steps=32)
    before = {k: v.clone() for k, v in agent.brain.state_dict().items()}
    for t in range(400):
        obs = world_observation(world, t)
        agent.observe(obs)
        action = agent.act(obs)
        world.step(np.array([[Action.STAY if action is None else action]]))
    assert agent.updates == (400 - 1) // 32
    assert np.isfinite(agent.last_stats["policy_loss"])
    changed = [k for k, v in agent.brain.state_dict().items() if not torch.equal(v, before[k])]
    assert "w_actor" in changed and "embed" in changed


def test_state_reports_the_worst_lag_since_the_last_report():
    agent = _agent()
    sent = _obs(4)
    sent.sent = 1000.0
    agent.acted(sent, 1000.003)
    agent.acted(sent, 1000.012)
    agent.acted(_obs(5), 1000.5)  # sent unknown (0): no lag measured
    assert agent.state(sent, 0.0).lag_ms == pytest.approx(12.0, abs=1e-3)
    assert agent.state(sent, 0.0).lag_ms == 0.0  # reset by the report


async def test_an_npc_whose_acting_fails_exits_1_and_keeps_its_last_checkpoint(bus, tmp_path, monkeypatch):
    config = NpcConfig(npc=0, bus_url=bus.url, run_dir=str(tmp_path), hidden=32, view_size=SIDE)
    first = NpcAgent(config)
    first.load_or_create()
    saved = (tmp_path / "npc-0.pt").read_bytes()

    def broken(self, obs):
        raise FloatingPointError("weights went NaN")

    monkeypatch.setattr(NpcAgent, "act", broken)  # what the process calls on each observation
    living = asyncio.create_task(run(config))
    for _ in range(100):  # observations until the NPC is subscribed and fails on one
        if living.done():
            break
        await bus.publish(subjects.npc_obs(0), _obs(1))
        await asyncio.sleep(0.05)
    assert await asyncio.wait_for(living, 5) == 1
    assert (tmp_path / "npc-0.pt").read_bytes() == saved


def test_npcs_started_together_do_not_all_update_on_the_same_tick():
    first_update = {}
    for npc in range(4):
        agent = _agent(npc=npc, learn=True, num_steps=16)
        for t in range(40):
            agent.act(_obs(t))
            agent.learn()  # as the NPC process does, once the action is sent
            if agent.updates:
                first_update[npc] = t
                break
    assert first_update[0] == 16  # NPC 0 fills a whole first rollout
    assert len(set(first_update.values())) == 4 and all(1 <= t <= 16 for t in first_update.values())


def test_the_update_waits_until_the_action_is_out():
    agent = _agent(learn=True, num_steps=16)
    for t in range(16):
        agent.act(_obs(t))
        agent.learn()
    agent.act(_obs(16))  # this observation bootstraps the full rollout ...
    assert agent.updates == 0  # ... but act() returned the action without updating
    agent.learn()
    assert agent.updates == 1


# -- memory (brain_memory=gru) ----------------------------------------------------------------------

def test_a_memory_npc_carries_its_state_between_calls_and_forgets_at_birth_and_episode_end():
    agent = _agent(brain_memory="gru")
    assert agent.brain.has_memory
    agent.act(_obs(0))
    first = agent.policy.state.copy()
    assert first.any()
    agent.act(_obs(1))
    assert not np.allclose(agent.policy.state, first)  # it goes on from what it remembered
    fresh = _agent(brain_memory="gru")
    fresh.act(_obs(1))
    assert not np.allclose(agent.policy.state, fresh.policy.state)  # the same input, another past
    assert agent.act(_obs(2, proprio=np.zeros(PROPRIO_SIZE, np.float32))) is None  # dead
    agent.act(_obs(3))  # born again: thinks as a fresh brain does on its first call
    reborn = _agent(brain_memory="gru")
    reborn.act(_obs(3))
    np.testing.assert_allclose(agent.policy.state, reborn.policy.state, atol=1e-6)
    ended = _obs(4)
    ended.truncated = True
    agent.observe(ended)
    agent.act(_obs(5))  # the episode ended: a new one starts from nothing too
    again = _agent(brain_memory="gru")
    again.act(_obs(5))
    np.testing.assert_allclose(agent.policy.state, again.policy.state, atol=1e-6)


def test_a_memory_npc_learns_online_over_sequences_in_a_real_world(tmp_path):
    world = GridWorld(stage_config(0, n_npcs=1), num_envs=1, seed=0)
    agent = _agent(tmp_path, learn=True, num_steps=32, brain_memory="gru")
    before = {k: v.clone() for k, v in agent.brain.state_dict().items()}
    for t in range(200):
        obs = world_observation(world, t)
        agent.observe(obs)
        action = agent.act(obs)
        agent.learn()
        world.step(np.array([[Action.STAY if action is None else action]]))
    assert agent.updates == (200 - 1) // 32 and np.isfinite(agent.last_stats["policy_loss"])
    changed = [k for k, v in agent.brain.state_dict().items() if not torch.equal(v, before[k])]
    assert "w_hh" in changed and "w_ih" in changed
    agent.save()
    saved = torch.load(tmp_path / "npc-0.pt", weights_only=True)
    assert saved["memory"] == "gru" and "w_hh" in saved["brain"]
