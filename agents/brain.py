"""Brains: N per-NPC actor-critics held as stacked weights and evaluated as one batched computation.

Inputs are brain-major: ``codes`` int [G, M, V, V] (view cell codes), ``proprio`` float [G, M, P],
``mask`` bool [G, M, A], where group g is driven by brain g (or by the one shared brain when
``shared``, with G = 1 and all NPC slots flattened into M).

Network (per brain): the view's cell codes are one-hot per cell position and fed to a linear layer,
computed as a sum of embedding rows (``embedding_bag``: 49 row adds instead of a 588-wide matmul);
plus a linear layer of the proprio vector; ReLU; a hidden layer (grouped ``baddbmm``); ReLU; with
``memory=gru`` a GRU cell (grouped too) whose state carries what an NPC saw before; a policy head whose
illegal actions get a large negative logit; a value head.

Memory: the state is a tensor [G, M, H] (width 0 with ``memory=none``, so callers carry it either way)
kept by the caller per NPC slot: ``initial_state`` makes it, ``step`` acts and returns the next one,
and ``reset`` (bool [G, M]) zeroes it where a life or an episode begins. PPO re-runs the whole rollout
chunk from the state stored at its start (``evaluate_sequence``, truncated BPTT as in CleanRL's
``ppo_atari_lstm.py``).

View sizes: the brain has a fixed ``view_size`` S. A smaller view (V < S) sits in the centre of the
S x S grid (the cells around it add nothing, exactly like an unused one-hot); a larger view is
centre-cropped. The default S = 9 is stage 5's view: stages 0-4 (7x7) train the centre, and at
stage 5 the outer ring joins in with the trained weights unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from agents.embedding import bag_sum
from world.tiles import NUM_ACTIONS, NUM_CODES, PROPRIO_SIZE

CodesT = TypeVar("CodesT", Tensor, np.ndarray)

#: The brain's memory kinds (``BrainConfig.memory``).
MEMORIES = ("none", "gru")
#: Logit given to illegal actions: large and finite, so entropy and log-probs stay NaN-free.
MASKED_LOGIT = -1e8


def _gumbel_sample(logp_all: Tensor, generator: torch.Generator | None) -> Tensor:
    """Actions sampled from log-probabilities [..., A]: Gumbel-max, argmax(logp + Gumbel noise)."""
    noise = torch.rand(logp_all.shape, generator=generator).clamp_(min=1e-20)
    return torch.argmax(logp_all - torch.log(-torch.log(noise)), dim=-1)


def log_prob_and_entropy(logp_all: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
    """(log-prob of action [...], entropy [...]) from every action's log-probabilities [..., A]."""
    logprob = logp_all.gather(-1, action.unsqueeze(-1)).squeeze(-1)
    return logprob, -(logp_all.exp() * logp_all).sum(-1)


@dataclass
class BrainConfig:
    """The NPC brain network."""

    shared: bool = False
    """One parameter-shared brain for every NPC slot instead of one brain per slot (for comparison)."""
    hidden: int = 128
    """Width of both hidden layers."""
    view_size: int = 9
    """Side S of the view grid the encoder reads; other view sizes are centred (padded) or cropped."""
    memory: str = "none"
    """What the brain remembers between ticks: none (each tick on its own) or gru (a recurrent core)."""

    def __post_init__(self) -> None:
        if self.memory not in MEMORIES:
            raise ValueError(f"brain.memory={self.memory!r}: choose one of {list(MEMORIES)}")
        if not isinstance(self.hidden, int) or self.hidden < 1:
            raise ValueError(f"brain.hidden={self.hidden!r}: must be an integer >= 1")
        if not isinstance(self.view_size, int) or self.view_size < 1 or self.view_size % 2 == 0:
            raise ValueError(f"brain.view_size={self.view_size!r}: must be an odd integer >= 1")


def crop_view(codes: CodesT, size: int) -> CodesT:
    """Views [..., V, V] centre-cropped to size x size when larger (smaller ones are left as they are)."""
    view = codes.shape[-1]
    if view <= size:
        return codes
    lo = (view - size) // 2
    return codes[..., lo:lo + size, lo:lo + size]


def _orthogonal(shape: tuple[int, ...], gain: float, generator: torch.Generator | None = None) -> Tensor:
    """A stack of independently drawn orthogonal matrices [G, fan_in, fan_out] times gain."""
    out = torch.empty(shape)
    for g in range(shape[0]):
        w = torch.empty(shape[2], shape[1])  # nn.init works on [out, in]
        nn.init.orthogonal_(w, gain=gain, generator=generator)
        out[g] = w.T
    return out


class Brain(nn.Module):
    """G stacked actor-critic brains (G = n_brains, or 1 when shared)."""

    def __init__(self, config: BrainConfig, n_brains: int, n_codes: int = NUM_CODES,
                 proprio_size: int = PROPRIO_SIZE, n_actions: int = NUM_ACTIONS,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if n_brains < 1:
            raise ValueError(f"n_brains={n_brains!r}: must be >= 1")
        self.config = config
        self.n_brains = n_brains
        self.groups = G = 1 if config.shared else n_brains
        self.n_codes, self.proprio_size, self.n_actions = n_codes, proprio_size, n_actions
        S, H = config.view_size, config.hidden
        self.cells = S * S
        root2 = math.sqrt(2.0)
        self.embed = nn.Parameter(_orthogonal((G, self.cells * n_codes, H), root2, generator))
        self.w_proprio = nn.Parameter(_orthogonal((G, proprio_size, H), root2, generator))
        self.b1 = nn.Parameter(torch.zeros(G, 1, H))
        self.w2 = nn.Parameter(_orthogonal((G, H, H), root2, generator))
        self.b2 = nn.Parameter(torch.zeros(G, 1, H))
        self.w_actor = nn.Parameter(_orthogonal((G, H, n_actions), 0.01, generator))
        self.b_actor = nn.Parameter(torch.zeros(G, 1, n_actions))
        self.w_critic = nn.Parameter(_orthogonal((G, H, 1), 1.0, generator))
        self.b_critic = nn.Parameter(torch.zeros(G, 1, 1))
        self.has_memory = config.memory == "gru"
        if self.has_memory:  # gates in r, z, n order, as torch.nn.GRUCell
            self.w_ih = nn.Parameter(_orthogonal((G, H, 3 * H), 1.0, generator))
            self.w_hh = nn.Parameter(_orthogonal((G, H, 3 * H), 1.0, generator))
            self.b_ih = nn.Parameter(torch.zeros(G, 1, 3 * H))
            self.b_hh = nn.Parameter(torch.zeros(G, 1, 3 * H))
        self._layout: dict[int, Tensor] = {}

    # --- inputs ------------------------------------------------------------------------------
    def _cell_rows(self, view: int) -> Tensor:
        """Embedding row base (cell position * n_codes) of each cell of a view x view view, [view*view]."""
        if view not in self._layout:
            S = self.config.view_size
            pad = (S - min(view, S)) // 2
            ys, xs = torch.meshgrid(torch.arange(min(view, S)), torch.arange(min(view, S)), indexing="ij")
            self._layout[view] = ((ys + pad) * S + (xs + pad)).reshape(-1) * self.n_codes
        return self._layout[view]

    def _embed_views(self, codes: Tensor) -> Tensor:
        """Sum of the embedding rows picked by every (cell, code) of every view: [G', M, H]."""
        codes = crop_view(codes, self.config.view_size)
        g, m, view = codes.shape[0], codes.shape[1], codes.shape[-1]
        rows = self._cell_rows(view)
        table = self.embed[:g]
        group_base = (torch.arange(g) * table.shape[1]).view(g, 1, 1)
        index = codes.reshape(g, m, view * view).long() + (rows + group_base)
        out = bag_sum(index.reshape(g * m, -1), table.reshape(-1, table.shape[-1]))
        return out.view(g, m, -1)

    def _groups_for(self, codes: Tensor) -> int:
        g = codes.shape[0]
        if g > self.groups:
            raise ValueError(f"inputs have {g} brain groups but the brain holds {self.groups}")
        return g

    # --- network -----------------------------------------------------------------------------
    def trunk(self, codes: Tensor, proprio: Tensor) -> Tensor:
        """Hidden features [G', M, H] of views [G', M, V, V] and proprio [G', M, P]."""
        g = self._groups_for(codes)
        h = self._embed_views(codes)
        # the relus in place (their backward reads only their output); without autograd (collection)
        # the bias and the proprio product too, on the fresh embedding sums: the same sums, fewer
        # [G', M, H] buffers to fill (with autograd the in-place bias measured slower in backward)
        if torch.is_grad_enabled():
            h = torch.baddbmm(self.b1[:g] + h, proprio, self.w_proprio[:g])
        else:
            h = h.add_(self.b1[:g]).baddbmm_(proprio, self.w_proprio[:g])
        return torch.baddbmm(self.b2[:g], h.relu_(), self.w2[:g]).relu_()

    # --- memory ------------------------------------------------------------------------------
    @property
    def state_size(self) -> int:
        """Width of the memory state (0 without memory)."""
        return self.config.hidden if self.has_memory else 0

    def initial_state(self, groups: int, width: int) -> Tensor:
        """A zero memory state [groups, width, state_size]."""
        return torch.zeros(groups, width, self.state_size)

    def _gru(self, gi: Tensor, state: Tensor) -> Tensor:
        """One GRU step from input gates gi [G', M, 3H] and state [G', M, H]: the next state."""
        g, H = state.shape[0], self.config.hidden
        gh = torch.baddbmm(self.b_hh[:g], state, self.w_hh[:g])
        r = torch.sigmoid(gi[..., :H] + gh[..., :H])
        z = torch.sigmoid(gi[..., H:2 * H] + gh[..., H:2 * H])
        n = torch.tanh(gi[..., 2 * H:] + r * gh[..., 2 * H:])
        return n + z * (state - n)

    def remember(self, hidden: Tensor, state: Tensor, reset: Tensor | None = None) -> Tensor:
        """The memory's next state [G', M, H] from trunk features and the state (zeroed where reset)."""
        if not self.has_memory:
            return state
        if state.shape[:2] != hidden.shape[:2] or state.shape[-1] != self.state_size:
            raise ValueError(f"memory state: shape {tuple(state.shape)} does not fit features "
                             f"{tuple(hidden.shape[:2])} x {self.state_size}")
        if reset is not None:
            state = state.masked_fill(reset.unsqueeze(-1), 0.0)
        g = hidden.shape[0]
        return self._gru(torch.baddbmm(self.b_ih[:g], hidden, self.w_ih[:g]), state)

    def _heads(self, hidden: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(logits [G', M, A], illegal ones masked when a mask is given; values [G', M]) of hidden features
        [G', M, hidden]: the actor and the critic as one product with A + 1 columns (two products with
        7 and 1 columns cost twice as much, their backward more)."""
        g = hidden.shape[0]
        out = torch.baddbmm(torch.cat([self.b_actor[:g], self.b_critic[:g]], dim=-1), hidden,
                            torch.cat([self.w_actor[:g], self.w_critic[:g]], dim=-1))
        logits, value = out[..., :-1], out[..., -1]
        return (logits if mask is None else logits.masked_fill(~mask, MASKED_LOGIT)), value

    def _stateless(self) -> None:
        if self.has_memory:
            raise ValueError("brain.memory=gru: this call needs the memory state; use Brain.step")

    def get_value(self, codes: Tensor, proprio: Tensor, state: Tensor | None = None,
                  reset: Tensor | None = None) -> Tensor:
        """State values [G', M] (a memory brain needs its state; it is not advanced)."""
        hidden = self.trunk(codes, proprio)
        if self.has_memory:
            if state is None:
                self._stateless()
            hidden = self.remember(hidden, state, reset)
        return self._heads(hidden)[1]

    def step(self, codes: Tensor, proprio: Tensor, mask: Tensor, state: Tensor, reset: Tensor | None = None,
             generator: torch.Generator | None = None, greedy: bool = False
             ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(action, log-prob, value, next state) of one tick, carrying the memory state [G', M, state_size]
        (zeroed where reset, bool [G', M]); samples the action, or takes the likeliest when greedy."""
        hidden = self.trunk(codes, proprio)
        if self.has_memory:
            state = hidden = self.remember(hidden, state, reset)
        logits, value = self._heads(hidden, mask)
        logp_all = torch.log_softmax(logits, dim=-1)
        if greedy:
            action = logp_all.argmax(-1)
        else:
            action = _gumbel_sample(logp_all, generator)
        logprob = logp_all.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        return action, logprob, value, state

    def evaluate_sequence(self, codes: Tensor, proprio: Tensor, mask: Tensor, action: Tensor, state: Tensor,
                          reset: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(log-prob, entropy, value), each [G', T * m] (t-major), of a chunk of T ticks [G', T, m, ...]
        re-run from the memory state at its start [G', m, H], zeroed wherever reset [G', T, m] says."""
        g, T, m = action.shape
        logp_all, value = self.sequence_policy(codes, proprio, mask, state, reset)
        logprob, entropy = log_prob_and_entropy(logp_all, action.reshape(g, T * m))
        return logprob, entropy, value

    def sequence_policy(self, codes: Tensor, proprio: Tensor, mask: Tensor, state: Tensor, reset: Tensor
                        ) -> tuple[Tensor, Tensor]:
        """(log-probabilities of every action [G', T * m, A], value [G', T * m]) of a chunk of T ticks, as
        ``evaluate_sequence`` runs it (the kickstarting teacher's term needs every action's log-prob)."""
        g, T, m = codes.shape[:3]
        hidden = self.trunk(codes.reshape(g, T * m, *codes.shape[3:]), proprio.reshape(g, T * m, -1))
        if self.has_memory:
            gi = torch.baddbmm(self.b_ih[:g], hidden, self.w_ih[:g]).view(g, T, m, -1)
            out = []
            for t in range(T):
                state = self._gru(gi[:, t], state.masked_fill(reset[:, t].unsqueeze(-1), 0.0))
                out.append(state)
            hidden = torch.stack(out, dim=1).view(g, T * m, -1)
        logits, value = self._heads(hidden, mask.reshape(g, T * m, -1))
        return torch.log_softmax(logits, dim=-1), value

    def _logits(self, hidden: Tensor, mask: Tensor) -> Tensor:
        return self._heads(hidden, mask)[0]

    def get_greedy_action(self, codes: Tensor, proprio: Tensor, mask: Tensor) -> Tensor:
        """The most likely legal action [G', M] (memoryless brains; a memory brain uses ``step``)."""
        self._stateless()
        return self._logits(self.trunk(codes, proprio), mask).argmax(-1)

    def get_action_and_value(self, codes: Tensor, proprio: Tensor, mask: Tensor,
                             action: Tensor | None = None, generator: torch.Generator | None = None
                             ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(action, log-prob, entropy, value), each [G', M]; samples an action when none is given
        (memoryless brains; a memory brain uses ``step`` and ``evaluate_sequence``)."""
        logp_all, value = self.policy(codes, proprio, mask)
        if action is None:
            action = _gumbel_sample(logp_all, generator)
        logprob, entropy = log_prob_and_entropy(logp_all, action)
        return action, logprob, entropy, value

    def policy(self, codes: Tensor, proprio: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(log-probabilities of every action [G', M, A], value [G', M]) (memoryless brains)."""
        self._stateless()
        logits, value = self._heads(self.trunk(codes, proprio), mask)
        return torch.log_softmax(logits, dim=-1), value

    # --- growth ------------------------------------------------------------------------------
    @torch.no_grad()
    def grow(self, n_brains: int, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Add brains up to n_brains; new brain i is a clone of brain i mod n_old (Adam moments too)."""
        old = self.n_brains
        if n_brains <= old:
            return
        self.n_brains = n_brains
        if self.config.shared:
            return
        src = torch.tensor([i % old for i in range(old, n_brains)])
        for param in self.parameters():
            states = optimizer.state.get(param, {}) if optimizer is not None else {}
            for key, value in list(states.items()):
                if isinstance(value, Tensor) and value.shape == param.shape:
                    states[key] = torch.cat([value, value[src]])
            param.data = torch.cat([param.data, param.data[src]])
            param.grad = None
        self.groups = n_brains


class BrainPolicy:
    """Brain g's network for one NPC at a time, in numpy over views of the brain's own parameters.

    The NPC process acts on one observation per tick, where torch's per-op dispatch costs more than
    the arithmetic (about 0.95 ms a call measured in a live NPC, against 0.2 ms here). The arrays
    share memory with the parameters, so optimiser steps and ``load_state_dict`` show at once;
    ``Brain.grow`` replaces the parameters, after which a new policy must be made. A memory brain's
    state (``state``, [H]) advances with every ``forward``; ``reset`` zeroes it (a birth, a new episode).
    """

    def __init__(self, brain: Brain, g: int = 0) -> None:
        if not 0 <= g < brain.groups:
            raise ValueError(f"brain group {g} is not in 0..{brain.groups - 1}")
        self.brain = brain

        def view(param: nn.Parameter) -> np.ndarray:
            return param.detach()[g].numpy()

        self.embed, self.w_proprio, self.b1 = view(brain.embed), view(brain.w_proprio), view(brain.b1)[0]
        self.w2, self.b2 = view(brain.w2), view(brain.b2)[0]
        self.w_actor, self.b_actor = view(brain.w_actor), view(brain.b_actor)[0]
        self.w_critic, self.b_critic = view(brain.w_critic)[:, 0], view(brain.b_critic)[0]
        if brain.has_memory:
            self.w_ih, self.w_hh = view(brain.w_ih), view(brain.w_hh)
            self.b_ih, self.b_hh = view(brain.b_ih)[0], view(brain.b_hh)[0]
        self.state = np.zeros(brain.state_size, dtype=np.float32)
        self._rows: dict[int, np.ndarray] = {}

    def reset(self) -> None:
        """Forget: zero the memory state."""
        self.state[:] = 0.0

    def _remember(self, h: np.ndarray) -> np.ndarray:
        """The GRU step of ``Brain._gru`` on one NPC; stores and returns the next state."""
        H = len(self.state)
        gi = h @ self.w_ih + self.b_ih
        gh = self.state @ self.w_hh + self.b_hh
        r = 1.0 / (1.0 + np.exp(-(gi[:H] + gh[:H])))
        z = 1.0 / (1.0 + np.exp(-(gi[H:2 * H] + gh[H:2 * H])))
        n = np.tanh(gi[2 * H:] + r * gh[2 * H:])
        self.state = (n + z * (self.state - n)).astype(np.float32)
        return self.state.copy()

    def _cell_rows(self, view: int) -> np.ndarray:
        if view not in self._rows:
            self._rows[view] = self.brain._cell_rows(view).numpy()
        return self._rows[view]

    def forward(self, codes: np.ndarray, proprio: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float]:
        """(log-probabilities float32 [A], value) of one view uint8 [V, V], proprio [P], mask bool [A];
        advances the memory state."""
        codes = crop_view(codes, self.brain.config.view_size)
        h = self.embed[self._cell_rows(codes.shape[-1]) + codes.reshape(-1)].sum(axis=0)
        h += proprio @ self.w_proprio
        h += self.b1
        np.maximum(h, 0.0, out=h)
        h = h @ self.w2
        h += self.b2
        np.maximum(h, 0.0, out=h)
        if self.brain.has_memory:
            h = self._remember(h)
        logits = h @ self.w_actor
        logits += self.b_actor
        logits[~mask] = MASKED_LOGIT
        top = logits.max()
        logp = logits - (top + np.log(np.exp(logits - top).sum()))
        return logp, float(h @ self.w_critic + self.b_critic[0])

    def act(self, codes: np.ndarray, proprio: np.ndarray, mask: np.ndarray,
            rng: np.random.Generator) -> tuple[int, float, float]:
        """(sampled action, its log-probability, value) for one NPC's senses."""
        logp, value = self.forward(codes, proprio, mask)
        noise = np.maximum(rng.random(len(logp)), 1e-20)
        action = int(np.argmax(logp - np.log(-np.log(noise))))  # Gumbel-max, as Brain samples
        return action, float(logp[action]), value
