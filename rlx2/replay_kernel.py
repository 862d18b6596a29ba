"""The replay buffer's n-step sampling as one compiled call (numba; ``rlx2.replay`` falls back to NumPy).

``ReplayBuffer.sample`` in NumPy is about forty array operations per batch (a gather per
window step and field, masks, a BLAS product for the returns), which cost an environment
step about a fifth of a millisecond; this kernel walks each sampled window once. It makes
the same batch from the same draws, with the NumPy path's arithmetic: the n-step return
summed in window order (``r_0 + g r_1 + g^2 r_2``) and powers of ``g`` by repeated float32
multiplication, IEEE operations whose bits do not depend on the CPU.
"""

from __future__ import annotations

import numpy as np

from rlx2.sparse.numba_setup import prepare_numba

prepare_numba()  # before numba loads: it fixes its cache directory and compile target then

import numba  # noqa: E402 - after prepare_numba


@numba.njit(cache=True, nogil=True)
def nstep_sample(first, start, size, n, gamma, obs_store, act_store, next_obs_store, reward, terminated, episode_end):
    """The windows of up to ``n`` steps starting at logical positions ``first`` (``ReplayBuffer.sample``)."""
    batch = first.shape[0]
    capacity = reward.shape[0]
    obs = np.empty((batch, obs_store.shape[1]), np.float32)
    act = np.empty((batch, act_store.shape[1]), np.float32)
    rewards = np.zeros((batch, n), np.float32)
    valid = np.zeros((batch, n), np.float32)
    next_obs = np.empty((batch, n, obs_store.shape[1]), np.float32)
    returns = np.empty(batch, np.float32)
    bootstrap = np.empty((batch, obs_store.shape[1]), np.float32)
    discount = np.empty(batch, np.float32)
    g = np.float32(gamma)
    powers = np.ones(n + 1, np.float32)  # as rlx2.replay.discount_powers
    for k in range(1, n + 1):
        powers[k] = powers[k - 1] * g
    for b in range(batch):
        begin = (start + first[b]) % capacity
        obs[b] = obs_store[begin]
        act[b] = act_store[begin]
        last = begin
        alive = True
        steps = 0
        for k in range(n):
            logical = first[b] + k
            if k > 0:  # the window ends after an episode end or at the newest transition
                alive = alive and not episode_end[last] and logical < size
            idx = (start + min(logical, size - 1)) % capacity if alive else last
            last = idx
            if alive:
                valid[b, k] = 1.0
                rewards[b, k] = reward[idx]
                steps += 1
            next_obs[b, k] = next_obs_store[idx]
        total = np.float32(0.0)
        for k in range(n):
            total += rewards[b, k] * powers[k]
        returns[b] = total
        bootstrap[b] = next_obs_store[last]
        discount[b] = np.float32(0.0) if terminated[last] else powers[steps]
    return obs, act, rewards, next_obs, valid, returns, bootstrap, discount
