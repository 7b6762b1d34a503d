"""The NPC process: one brain, one life. ``python -m agents.npc --id 7 --tick-rate 5 --bus-url nats://...``

Connects to the bus, loads its own brain (``agents.brain.Brain`` with one brain: weights from its
checkpoint, or fresh with a warning, saved at once so a restart gets the same weights) and thinks,
inside the observation subscription's task, on every observation the world server sends it. The world
server (``agents.world_server``) runs every NPC's cells and nerves, batched, every world tick, and
sends an NPC its observation only when its brain is due at its tick rate (the semantics of the
in-process runtime, ``governor.runtime``), so this process wakes only at its brain ticks: its **brain**
(``agents.brain.BrainPolicy``, numpy over the brain's own parameters) proposes an action, sent to
``{env}.npc.{id}.action`` for the observation's tick (the world's nerves may still change it). A dead
body does not think.

An observation with a newer one already waiting is skipped (its reward is kept; counted in
``skipped``): behind the world, the NPC acts on the newest. Counters: ``brain_calls``,
``observations`` (received), ``skipped``; ``status.json`` has them at exit.

After a brain call, its state (lifeforce, battery, reward rate and nerve override rate - the world's
per-tick moving averages, carried by the observation -, tick rate, CPU use read from its cgroup, and
its worst lag since the last report: from the world sending an observation to being done with it) goes
to ``.state``, at most every ``state_s``; a heartbeat every ``heartbeat_s`` to
``{env}.npc.{id}.heartbeat``. ``{env}.npc.{id}.command`` (tick rate, gates) is obeyed at once (the
world server hears it too, and wakes the NPC at the new rate); a malformed command, or one for another
NPC, is rejected and logged.

With ``learn=True`` it learns online with its own PPO learner (``agents.ppo``, ``agents.rollout``)
from its brain calls (the reward of a brain call is what the world paid until the next one; a brain
action a nerve overrode stays out of the loss, as the next observation tells): every ``num_steps``
brain calls one update (the first after fewer, by a per-NPC offset, so NPCs started together update on
different ticks); weights are checkpointed atomically every ``checkpoint_every`` updates and on
SIGTERM. ``status.json`` next to the checkpoint tells where the weights came from and their digest.
Started by the fork server (``agents.forkserver``) through ``child_main(config)``; ``preload()`` warms
torch up in the server so children share those pages.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.brain import Brain, BrainConfig, BrainPolicy
from agents.ppo import PPOConfig, ppo_update
from agents.rollout import Rollout
from nervous import subjects
from nervous.bus import Bus, BusConfig
from nervous.messages import Action, Command, Heartbeat, NpcState, Observation
from world.tiles import NUM_ACTIONS, PROPRIO_SIZE, Proprio

log = logging.getLogger("agents.npc")

CHECKPOINT_FORMAT = "nimmerverse-npc-1"
ALL_LEGAL = np.ones(NUM_ACTIONS, dtype=bool)


@dataclass
class NpcConfig:
    """One NPC process (serialised to the process as JSON, never re-composed by Hydra)."""

    npc: int = 0
    """NPC id: the world slot it drives and its subjects' token."""
    tick_rate: int = 20
    """Brain calls per second (1-20) it reports until a command changes it (the world server, which hears
    both, wakes it at that rate)."""
    bus_url: str = ""
    """nats://host:port of the organism's bus (the parent's embedded server)."""
    run_dir: str = ""
    """Folder for its checkpoint and status ('' : no files; fresh weights are not kept)."""
    checkpoint: str = ""
    """Weights file to load and to write ('' : <run_dir>/npc-<id>.pt)."""
    learn: bool = False
    """Learn online with its own PPO learner."""
    num_steps: int = 64
    """Actions per online PPO update."""
    checkpoint_every: int = 5
    """PPO updates between checkpoints."""
    hidden: int = 64
    """Brain hidden width (must match a loaded checkpoint)."""
    view_size: int = 7
    """Brain view grid side."""
    brain_memory: str = "none"
    """Brain memory (``agents.brain.BrainConfig.memory``): none, or gru (its state carried from brain call
    to brain call, zeroed at birth and when an episode ends)."""
    heartbeat_s: float = 0.5
    """Seconds between heartbeats."""
    state_s: float = 0.2
    """Least seconds between two state reports (a command's tick rate shows in the next one)."""
    cpu_usage_file: str = ""
    """Its cgroup's CPU usage file (cpuacct.usage or cpu.stat); '' : its own process times."""
    seed: int = 0
    """Run seed; the NPC's generators use seed * 10007 + npc."""
    burn_cpu: bool = False
    """Spin between ticks to use all the CPU its quota allows (quota tests and benchmarks)."""

    def __post_init__(self) -> None:
        if not isinstance(self.npc, int) or self.npc < 0:
            raise ValueError(f"npc.npc={self.npc!r}: must be an integer >= 0")
        if not isinstance(self.tick_rate, int) or not 1 <= self.tick_rate <= 20:
            raise ValueError(f"npc.tick_rate={self.tick_rate!r}: must be an integer in 1..20")
        for name in ("num_steps", "checkpoint_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"npc.{name}={getattr(self, name)!r}: must be an integer >= 1")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NpcConfig:
        """A config from a dict; ValueError naming an unknown field."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"npc.{unknown[0]}: unknown NPC config field")
        return cls(**data)

    @property
    def checkpoint_path(self) -> Path | None:
        """Where its weights live (None when it keeps no files)."""
        if self.checkpoint:
            return Path(self.checkpoint)
        return Path(self.run_dir) / f"npc-{self.npc}.pt" if self.run_dir else None


def write_weights(path: Path, npc: int, brain: dict[str, torch.Tensor], hidden: int, view_size: int,
                  optimizer: dict[str, Any] | None = None, updates: int = 0, memory: str = "none") -> None:
    """Write an NPC weights file (a one-brain state dict) atomically: temp file, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": CHECKPOINT_FORMAT, "npc": npc, "brain": brain, "updates": updates, "hidden": hidden,
            "view_size": view_size, "memory": memory}
    if optimizer is not None:
        data["optimizer"] = optimizer
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(data, tmp)
    os.replace(tmp, path)


def brain_slot(brain: dict[str, torch.Tensor], g: int) -> dict[str, torch.Tensor]:
    """Brain g of a stacked state dict (``agents.brain.Brain``, G brains) as a one-brain state dict."""
    return {name: tensor[g:g + 1].clone() for name, tensor in brain.items()}


def weights_digest(brain: torch.nn.Module) -> str:
    """A short digest of the brain's weights (equal weights, equal digest)."""
    h = hashlib.sha256()
    for name, tensor in sorted(brain.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class CpuMeter:
    """CPU use (cores) of the NPC's cgroup, or of its own process, between two reads."""

    def __init__(self, usage_file: str = "", clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(usage_file) if usage_file else None
        self.clock = clock
        self.last = (clock(), self.seconds())

    def seconds(self) -> float:
        """CPU seconds used so far."""
        if self.path is not None:
            with contextlib.suppress(OSError, ValueError):
                text = self.path.read_text()
                if self.path.name == "cpu.stat":
                    return int(text.split("usage_usec", 1)[1].split()[0]) / 1e6
                return int(text) / 1e9
        return time.process_time()

    def rate(self) -> float:
        """Cores used since the last call."""
        now, used = self.clock(), self.seconds()
        (t0, u0), self.last = self.last, (now, used)
        return max(0.0, (used - u0) / (now - t0)) if now > t0 else 0.0


class NpcAgent:
    """The NPC's mind without the bus: brain, learner, counters."""

    def __init__(self, config: NpcConfig) -> None:
        self.config = config
        seed = config.seed * 10007 + config.npc
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.brain = Brain(BrainConfig(hidden=config.hidden, view_size=config.view_size,
                                       memory=config.brain_memory), 1,
                           generator=torch.Generator().manual_seed(seed))
        self.policy = BrainPolicy(self.brain)
        self.ppo = PPOConfig(num_envs=1, num_steps=config.num_steps, num_minibatches=2, update_epochs=2,
                             learning_rate=3e-4)
        self.optimizer = torch.optim.Adam(self.brain.parameters(), lr=self.ppo.learning_rate, eps=1e-5)
        self.tick_rate = config.tick_rate
        self.gates: dict[str, bool] = {}
        self.updates = 0
        self.brain_calls = 0
        """Brain calls so far (each one an action sent)."""
        self.observations = 0
        """Observations received."""
        self.skipped = 0
        """Observations skipped because a newer one was already waiting."""
        self.reward_rate = 0.0
        self.override_rate = 0.0
        self.source = "fresh"
        self.rollout: Rollout | None = None
        self.step = 0
        self.pending_reward = 0.0
        self.pending_done = False
        self.pending_overridden = False
        self.last_stats: dict[str, float] = {}
        self.lag_ms = 0.0
        #: The body was dead: the next brain call starts a new life (its memory zeroed).
        self.reborn = True
        self._to_learn: tuple[Any, ...] | None = None

    # -- weights ----------------------------------------------------------------------------------

    def load_or_create(self) -> str:
        """Load the checkpoint, or start fresh with a warning and save it; where the weights came from."""
        path = self.config.checkpoint_path
        if path is not None and path.exists():
            try:
                data = torch.load(path, map_location="cpu", weights_only=True)
                if data.get("format") != CHECKPOINT_FORMAT:
                    raise ValueError(f"format {data.get('format')!r} is not {CHECKPOINT_FORMAT}")
                self.brain.load_state_dict(data["brain"])
                if "optimizer" in data:
                    self.optimizer.load_state_dict(data["optimizer"])
                self.updates = int(data.get("updates", 0))
                self.source = "checkpoint"
                return self.source
            except Exception as exc:
                log.warning("npc %d: checkpoint %s unusable (%s); starting fresh", self.config.npc, path, exc)
        elif path is not None:
            log.warning("npc %d: no checkpoint at %s; starting fresh", self.config.npc, path)
        self.source = "fresh"
        self.save()
        return self.source

    def save(self) -> None:
        """Write the weights atomically (temp file, then rename)."""
        path = self.config.checkpoint_path
        if path is not None:
            write_weights(path, self.config.npc, self.brain.state_dict(), self.config.hidden,
                          self.config.view_size, optimizer=self.optimizer.state_dict(), updates=self.updates,
                          memory=self.config.brain_memory)

    # -- acting -----------------------------------------------------------------------------------

    def observe(self, obs: Observation) -> None:
        """Account an observation (every one, acted on or skipped): its reward, episode ends, whether a
        nerve overrode the last brain action, and the world's moving averages for the state report."""
        self.observations += 1
        self.pending_reward += obs.reward
        self.pending_done = self.pending_done or obs.terminated or obs.truncated
        self.pending_overridden = self.pending_overridden or obs.overridden
        self.reward_rate, self.override_rate = obs.reward_rate, obs.override_rate

    def act(self, obs: Observation) -> int | None:
        """The brain's action on an observation (learning when configured); None for a dead body."""
        view, proprio, mask = _senses(obs)
        if not proprio.any():  # the world zeroes a dead body's proprio
            self.reborn = True  # its next life starts with a fresh memory
            return None
        return self._think(view, proprio, mask)

    def _think(self, view: np.ndarray, proprio: np.ndarray, mask: np.ndarray) -> int:
        """The action of one brain call; learns when configured."""
        reward, done, overridden = self.pending_reward, self.pending_done, self.pending_overridden
        self.pending_reward, self.pending_done, self.pending_overridden = 0.0, False, False
        reset = done or self.reborn  # a new episode or a new life: forget the last one
        self.reborn = False
        if reset:
            self.policy.reset()
        state = self.policy.state.copy()
        action, logp, value = self.policy.act(view, proprio, mask, self.rng)
        if self.config.learn:
            self.learn()  # a caller that did not learn after the last action
            self._to_learn = (view, proprio, mask, action, logp, value, reward, done, overridden, reset,
                              state)
        self.brain_calls += 1
        return action

    def learn(self) -> None:
        """Store the last action's tick and update when a rollout is full (call after sending it)."""
        if self._to_learn is not None:
            tick, self._to_learn = self._to_learn, None
            self._learn(*tick)

    def _learn(self, view: np.ndarray, proprio: np.ndarray, mask: np.ndarray, action: int, logp: float,
               value: float, reward: float, done: bool, overridden: bool, reset: bool = False,
               state: np.ndarray | None = None) -> None:
        """Store the brain call (the reward and the nerves' override are the previous action's); one PPO
        update per full rollout."""
        T = self.config.num_steps
        if self.rollout is None:
            self.rollout = Rollout(1, T, 1, view.shape[-1], len(proprio), NUM_ACTIONS, self.brain.state_size)
            # the first rollout starts at a per-NPC offset (rows before it stay out of the loss), so the
            # NPCs of an organism, all started together, do not all update on the same tick
            self.step = self.config.npc * 37 % T
        ro = self.rollout
        if self.step > 0:
            ro.rewards[0, self.step - 1, 0] = reward
            ro.mask[0, self.step - 1, 0] = not overridden  # the brain did not choose an overridden move
        if self.step == T:  # the rollout is full: this observation bootstraps it
            batch = ro.batch(torch.tensor([[value]]), torch.tensor([[done]]), self.ppo.gamma,
                             self.ppo.gae_lambda)
            self.last_stats = ppo_update(self.brain, self.optimizer, batch, self.ppo)
            self.updates += 1
            self.step = 0
            if self.updates % self.config.checkpoint_every == 0:
                self.save()
        t = self.step
        if view.shape[-1] == ro.codes.shape[-1]:  # a view of another size cannot join this rollout
            ro.codes[0, t, 0].numpy()[:] = view
            ro.proprio[0, t, 0].numpy()[:] = proprio
            ro.action_mask[0, t, 0].numpy()[:] = mask
            ro.actions[0, t, 0] = action
            ro.logprobs[0, t, 0] = logp
            ro.values[0, t, 0] = value
            ro.dones[0, t, 0] = done
            ro.mask[0, t, 0] = True
            ro.resets[0, t, 0] = reset
            if t == 0 and state is not None:  # the memory state this rollout's sequence starts from
                ro.initial_state[0, 0].numpy()[:] = state
            self.step += 1

    def acted(self, obs: Observation, now: float) -> None:
        """Note the lag of an observation lived through (now: wall-clock seconds, as ``obs.sent``)."""
        if obs.sent > 0.0:
            self.lag_ms = max(self.lag_ms, (now - obs.sent) * 1000.0)

    def state(self, obs: Observation, cpu_use: float) -> NpcState:
        """The state report for the governor (its lag is the worst since the last report)."""
        p = np.frombuffer(obs.proprio, dtype="<f4")
        alive = bool(np.any(p != 0.0))
        lag, self.lag_ms = self.lag_ms, 0.0
        return NpcState(npc=self.config.npc, tick=obs.tick,
                        lifeforce=float(np.clip(p[Proprio.LIFEFORCE], 0.0, 1.0)),
                        battery=float(np.clip(p[Proprio.BATTERY], 0.0, 1.0)), reward_rate=self.reward_rate,
                        tick_rate=self.tick_rate, cpu_use=cpu_use, alive=alive, lag_ms=max(0.0, lag),
                        override_rate=float(np.clip(self.override_rate, 0.0, 1.0)))

    def command(self, msg: Command) -> bool:
        """Obey a command for this NPC; False (logged) when it is for another one."""
        if msg.npc != self.config.npc:
            log.warning("npc %d: rejected command for npc %d", self.config.npc, msg.npc)
            return False
        self.tick_rate = msg.tick_rate
        self.gates = {str(k): v for k, v in msg.gates.items()}
        log.info("npc %d: command: tick rate %d Hz, gates %s", self.config.npc, msg.tick_rate, self.gates)
        return True


def _senses(obs: Observation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(view uint8 [side, side], proprio float32 [P], legal actions bool [A]) of an observation."""
    view = np.frombuffer(obs.view, dtype=np.uint8).reshape(obs.side, obs.side)
    proprio = np.frombuffer(obs.proprio, dtype="<f4")[:PROPRIO_SIZE]
    mask = np.frombuffer(obs.action_mask, dtype=bool) if obs.action_mask else ALL_LEGAL  # the world's
    return view, proprio, mask


def write_status(config: NpcConfig, agent: NpcAgent, **extra: Any) -> None:
    """Write status.json (pid, weights source and digest) next to the checkpoint."""
    path = config.checkpoint_path
    if path is None:
        return
    status = {"npc": config.npc, "pid": os.getpid(), "source": agent.source,
              "weights": weights_digest(agent.brain), "updates": agent.updates, **extra}
    tmp = path.with_name(f".npc-{config.npc}.status.tmp")
    tmp.write_text(json.dumps(status))
    os.replace(tmp, path.with_name(f"npc-{config.npc}.status.json"))


async def run(config: NpcConfig) -> int:
    """Live until SIGTERM/SIGINT (0, checkpointed) or until acting fails (1, not checkpointed)."""
    torch.set_num_threads(1)
    agent = NpcAgent(config)
    agent.load_or_create()
    write_status(config, agent)
    npc = config.npc
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    counters = {"bad_commands": 0, "rejected_commands": 0}
    clock = {"state": 0.0, "cpu": time.monotonic(), "cpu_use": 0.0}
    cpu = CpuMeter(config.cpu_usage_file)
    action_subject, state_subject = subjects.npc_action(npc), subjects.npc_state(npc)
    hb_subject = subjects.heartbeat("npc", str(npc))
    obs_sub: list[Any] = []
    failed: list[BaseException] = []

    async def on_obs(obs: Observation, raw: Any) -> None:
        # thinks in the subscription's own task: no hand-over to another task on the hot path
        agent.observe(obs)
        if stop.is_set() or (obs_sub and obs_sub[0].pending_msgs > 0):
            agent.skipped += 1
            return  # stopping, or a newer observation is already waiting: act on that one
        try:
            action = agent.act(obs)
        except Exception as exc:  # a broken mind must not idle on in silence: exit and be restarted
            log.exception("npc %d: acting failed at tick %d", npc, obs.tick)
            failed.append(exc)
            stop.set()
            return
        if action is None:
            return
        try:
            await bus.publish(action_subject, Action(npc=npc, tick=obs.tick, action=action))
            agent.acted(obs, time.time())
            now = time.monotonic()
            if now - clock["state"] >= config.state_s:  # reports follow brain calls, rate-limited
                clock["state"] = now
                if now - clock["cpu"] >= 0.5:
                    clock["cpu_use"], clock["cpu"] = cpu.rate(), now
                await bus.publish(state_subject, agent.state(obs, clock["cpu_use"]))
        except Exception as exc:  # disconnected beyond the pending buffer: skip this tick
            log.debug("npc %d: publish failed: %s", npc, exc)
        if config.learn:  # after the client's flusher has sent the action (callbacks run in order)
            loop.call_soon(learn)

    def learn() -> None:
        try:
            agent.learn()
        except Exception as exc:
            log.exception("npc %d: learning failed", npc)
            failed.append(exc)
            stop.set()

    def on_command(msg: Command, raw: Any) -> None:
        if not agent.command(msg):
            counters["rejected_commands"] += 1

    async with contextlib.AsyncExitStack() as stack:
        bus = await stack.enter_async_context(Bus(BusConfig(url=config.bus_url, name=f"npc-{npc}")))
        obs_sub.append(await bus.subscribe(subjects.npc_obs(npc), Observation, on_obs))
        await bus.subscribe(subjects.npc_command(npc), Command, on_command)

        async def heartbeat() -> None:
            seq = 0
            while True:
                with contextlib.suppress(Exception):  # a broker restart must not end the NPC
                    await bus.publish(hb_subject, Heartbeat(domain="npc", service=f"npc-{npc}", seq=seq,
                                                            uptime_s=time.monotonic() - started,
                                                            requests=agent.brain_calls,
                                                            errors=sum(bus.bad_messages.values())))
                seq += 1
                await asyncio.sleep(config.heartbeat_s)

        beat = asyncio.create_task(heartbeat())
        stack.callback(beat.cancel)
        await bus.flush()
        if config.burn_cpu:  # spin in slices, letting the observations in between
            while not stop.is_set():
                end = time.perf_counter() + 0.005
                while time.perf_counter() < end:
                    pass
                await asyncio.sleep(0)
        await stop.wait()
        counters["bad_commands"] = bus.bad_messages.get(subjects.npc_command(npc), 0)
    if failed:  # keep the last good checkpoint: the supervisor restarts this NPC from it
        return 1
    agent.save()
    write_status(config, agent, brain_calls=agent.brain_calls, observations=agent.observations,
                 skipped=agent.skipped, **counters)
    log.info("npc %d: stopped after %d brain calls, %d observations (%d skipped), %d updates", npc,
             agent.brain_calls, agent.observations, agent.skipped, agent.updates)
    return 0


def preload() -> None:
    """Warm torch and the NPC up (brain, optimiser, one PPO update, a save) so children share those pages."""
    import io

    torch.set_num_threads(1)
    agent = NpcAgent(NpcConfig(learn=True, num_steps=2))
    v = 7
    obs = Observation(npc=0, tick=0, side=v, view=bytes(v * v), reward=0.0,
                      proprio=np.full(PROPRIO_SIZE, 0.5, dtype="<f4").tobytes())  # a living body thinks
    for _ in range(4):
        agent.act(obs)
        agent.learn()
    if agent.updates != 1:  # the children would pay for the first update's pages themselves
        raise RuntimeError(f"preload: {agent.updates} PPO updates, expected 1")
    agent.state(obs, 0.0)
    torch.save(agent.brain.state_dict(), io.BytesIO())


def child_main(config: dict[str, Any]) -> int:
    """Entry point in a forked child: the config dict to an exit code."""
    cfg = NpcConfig.from_dict(config)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s npc-{cfg.npc} %(levelname)s %(message)s",
                        force=True)
    return asyncio.run(run(cfg))


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.npc``: one NPC process from flags or a JSON config."""
    parser = argparse.ArgumentParser(prog="python -m agents.npc", description=__doc__.splitlines()[0])
    parser.add_argument("--config-json", default="", help="the whole NpcConfig as JSON")
    parser.add_argument("--id", type=int, dest="npc", help="NPC id")
    parser.add_argument("--tick-rate", type=int, help="actions per second, 1-20")
    parser.add_argument("--bus-url", help="nats://host:port")
    parser.add_argument("--run-dir", help="folder for checkpoint and status")
    parser.add_argument("--checkpoint", help="weights file")
    parser.add_argument("--learn", action="store_true", default=None, help="learn online with PPO")
    args = parser.parse_args(argv)
    try:
        data = json.loads(args.config_json) if args.config_json else {}
    except json.JSONDecodeError as exc:
        parser.error(f"--config-json: {exc}")
    for f in ("npc", "tick_rate", "bus_url", "run_dir", "checkpoint", "learn"):
        if getattr(args, f) is not None:
            data[f] = getattr(args, f)
    try:
        config = NpcConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    if not config.bus_url:
        parser.error("--bus-url: required (the organism's nats://host:port)")
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s npc-{config.npc} %(levelname)s %(message)s")
    return asyncio.run(run(config))


if __name__ == "__main__":
    sys.exit(main())

