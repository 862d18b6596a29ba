"""Replay buffer with n-step sampling and the dynamic capacity rule (spec sections 5-6).

Storage is float32 NumPy arrays used as a FIFO ring: the oldest transition sits at
``start``, and the buffer holds ``size`` transitions. Besides the usual fields each
transition keeps the behaviour policy's *deterministic* action (before exploration
noise), which the dynamic capacity rule compares with the current policy.

An n-step sample starting at transition ``t`` walks ``t, t+1, ...`` and stops early at an
episode end (a terminal: no bootstrap; a time-limit truncation: bootstrap from that
transition's real next state); the bootstrap discount is ``gamma ** m`` for the ``m`` steps
actually taken. As in the reference, samples start only where a whole window of ``n``
stored transitions exists (the ``n - 1`` newest transitions start none).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class NStepBatch:
    """A minibatch of n-step transitions (``n`` = the largest number of steps per sample)."""

    obs: torch.Tensor  # [B, obs_dim] state s_t
    act: torch.Tensor  # [B, act_dim] action a_t (normalised)
    rewards: torch.Tensor  # [B, n] r_{t+k}, zero after the sample's last step
    next_obs: torch.Tensor  # [B, n, obs_dim] s_{t+k+1}
    valid: torch.Tensor  # [B, n] 1.0 where step k belongs to the sample
    returns: torch.Tensor  # [B] sum_k gamma^k r_{t+k} over the valid steps
    bootstrap_obs: torch.Tensor  # [B, obs_dim] s_{t+m}, the state to bootstrap from
    discount: torch.Tensor  # [B] gamma^m, or 0 when the sample ended at a terminal


class ReplayBuffer:
    """FIFO replay of at most ``capacity`` transitions that can also drop its oldest data."""

    def __init__(self, obs_dim: int, act_dim: int, capacity: int, rng: np.random.Generator) -> None:
        self.capacity = capacity
        self.rng = rng
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.act = np.zeros((capacity, act_dim), np.float32)
        self.behaviour_act = np.zeros((capacity, act_dim), np.float32)
        self.reward = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, bool)
        self.episode_end = np.zeros(capacity, bool)  # terminated or truncated
        self.start = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs, act, behaviour_act, reward: float, next_obs, terminated: bool, truncated: bool) -> None:
        """Append one transition; when full, the oldest one is overwritten."""
        i = (self.start + self.size) % self.capacity
        self.obs[i] = obs
        self.act[i] = act
        self.behaviour_act[i] = behaviour_act
        self.reward[i] = reward
        self.next_obs[i] = next_obs
        self.terminated[i] = terminated
        self.episode_end[i] = terminated or truncated
        if self.size < self.capacity:
            self.size += 1
        else:
            self.start = (self.start + 1) % self.capacity

    FIELDS = ("obs", "next_obs", "act", "behaviour_act", "reward", "terminated", "episode_end")

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The stored transitions, oldest first (sampling depends only on this order)."""
        idx = self._physical(np.arange(self.size))
        return {name: torch.from_numpy(getattr(self, name)[idx].copy()) for name in self.FIELDS}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        size = len(state["reward"])
        if size > self.capacity:
            raise ValueError(f"replay state holds {size} transitions, capacity is {self.capacity}")
        for name in self.FIELDS:
            getattr(self, name)[:size] = state[name].numpy()
        self.start, self.size = 0, size

    def _physical(self, logical: np.ndarray) -> np.ndarray:
        return (self.start + logical) % self.capacity

    def sample(self, batch_size: int, n: int, gamma: float) -> NStepBatch:
        """Uniformly sampled n-step transitions (``n = 1``: ordinary one-step transitions).

        On the compiled kernels when they are available (``rlx2.replay_kernel``: the same
        windows from the same draws), else the NumPy operations below.
        """
        first = self.rng.integers(0, max(1, self.size - n + 1), size=batch_size)
        kernel = _replay_kernel()
        if kernel is not None:  # the same arithmetic, compiled
            arrays = kernel.nstep_sample(first, self.start, self.size, n, gamma, self.obs, self.act, self.next_obs,
                                         self.reward, self.terminated, self.episode_end)
            return NStepBatch(*(torch.from_numpy(a) for a in arrays))
        rewards = np.zeros((batch_size, n), np.float32)
        valid = np.zeros((batch_size, n), np.float32)
        next_obs = np.empty((batch_size, n, self.obs.shape[1]), np.float32)
        alive = np.ones(batch_size, bool)
        last = self._physical(first)
        for k in range(n):
            logical = first + k
            if k > 0:
                alive &= ~self.episode_end[last] & (logical < self.size)
            idx = np.where(alive, self._physical(np.minimum(logical, self.size - 1)), last)
            last = idx
            valid[:, k] = alive
            rewards[:, k] = self.reward[idx] * alive
            next_obs[:, k] = self.next_obs[idx]
        powers = discount_powers(gamma, n)
        returns = np.zeros(batch_size, np.float32)
        for k in range(n):  # in window order, as the compiled kernel sums (no BLAS: the same bits on any CPU)
            returns += rewards[:, k] * powers[k]
        steps = valid.sum(axis=1).astype(np.int64)
        discount = np.where(self.terminated[last], np.float32(0.0), powers[steps]).astype(np.float32)
        start_idx = self._physical(first)
        return NStepBatch(
            obs=torch.from_numpy(self.obs[start_idx]),
            act=torch.from_numpy(self.act[start_idx]),
            rewards=torch.from_numpy(rewards),
            next_obs=torch.from_numpy(next_obs),
            valid=torch.from_numpy(valid),
            returns=torch.from_numpy(returns.astype(np.float32)),
            bootstrap_obs=torch.from_numpy(self.next_obs[last]),
            discount=torch.from_numpy(discount),
        )

    def oldest(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """States and behaviour actions of the ``count`` oldest transitions."""
        idx = self._physical(np.arange(min(count, self.size)))
        return self.obs[idx], self.behaviour_act[idx]

    def drop_oldest(self, count: int) -> None:
        """Forget the ``count`` oldest transitions."""
        count = min(count, self.size)
        self.start = (self.start + count) % self.capacity
        self.size -= count


def discount_powers(gamma: float, n: int) -> np.ndarray:
    """``[1, g, g^2, ..., g^n]`` for ``g = float32(gamma)``, by repeated float32 multiplication (exact IEEE
    steps, unlike a vectorised ``pow``, whose last bit depends on the CPU's SIMD library)."""
    powers = np.ones(n + 1, np.float32)
    for k in range(1, n + 1):
        powers[k] = powers[k - 1] * np.float32(gamma)
    return powers


def _replay_kernel():
    """``rlx2.replay_kernel`` when the compiled kernels are on (``rlx2.sparse.kernels``), else None."""
    import rlx2.sparse.kernels as kernels

    if kernels.compiled() is None:
        return None
    from rlx2 import replay_kernel

    return replay_kernel


PolicyDistance = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class DynamicCapacity:
    """The dynamic-capacity rule: shrink the buffer while its oldest data is too off-policy.

    Every check measures the policy distance on the oldest ``window`` transitions. Above
    ``threshold``, while the buffer holds more than ``min_size``, the *reference* rule drops
    the oldest 10 % once (so, as in the reference, one cut may end below ``min_size``); the
    *paper* rule drops ``window`` transitions at a time, re-measuring, until the distance is
    at most the threshold, never going below ``min_size``.
    """

    threshold: float
    min_size: int
    window: int
    rule: str = "reference"

    def apply(self, buffer: ReplayBuffer, distance: PolicyDistance) -> float:
        """Shrink ``buffer`` as the rule says; return the first distance measured."""
        measured = distance(*buffer.oldest(self.window))
        current = measured
        while current > self.threshold and buffer.size > self.min_size:
            if self.rule == "reference":
                buffer.drop_oldest(buffer.size // 10)
                break
            buffer.drop_oldest(max(1, min(self.window, buffer.size - self.min_size)))
            current = distance(*buffer.oldest(self.window))
        return measured
