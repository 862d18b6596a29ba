"""TD3 and SAC n-step targets against hand-computed values (buffer data from test_replay)."""

import math

import pytest
import torch

from rlx2.agents import make_agent
from rlx2.config import RunConfig
from rlx2.methods import get_method
from test_replay import FixedIndices, three_episodes


def agent_for(algo, **changes):
    method = get_method("dense")()
    cfg = method.resolve(RunConfig(algo=algo, gamma=0.5, target_noise=0.0, **changes))
    return make_agent(algo, cfg=cfg, method=method, obs_dim=1, act_dim=1, generator=torch.Generator().manual_seed(0))


def fixed_critic(obs, act):
    """Target critic stand-in: Q1 = s, Q2 = s + 1, so min(Q1, Q2) = s."""
    return obs[:, 0], obs[:, 0] + 1.0


def sample(starts, n):
    buffer = three_episodes()
    buffer.rng = FixedIndices(starts)
    return buffer.sample(len(starts), n, 0.5)


def test_td3_nstep_targets():
    agent = agent_for("td3")
    agent.actor_target = lambda obs: torch.zeros(obs.shape[0], 1)
    agent.critic_target = fixed_critic
    # terminal inside the window, truncation, neither, truncation at once; gamma = 0.5
    target = agent.td_target(sample([1, 3, 5, 4], 3))
    expected = [
        2 + 0.5 * 3,  # r1 + g r2, terminal: no bootstrap
        4 + 0.5 * 5 + 0.25 * 50,  # truncated after 2 steps: bootstrap from s = 50 with g^2
        6 + 0.5 * 7 + 0.25 * 8 + 0.125 * 80,  # full 3 steps
        5 + 0.5 * 50,  # truncated after its first step
    ]
    assert target.tolist() == pytest.approx(expected)


def test_td3_one_step_target_and_smoothing_noise_is_clipped():
    agent = agent_for("td3")
    agent.critic_target = lambda obs, act: (act[:, 0], act[:, 0])
    agent.actor_target = lambda obs: torch.full((obs.shape[0], 1), 0.9)
    agent.cfg = agent.cfg.replace(target_noise=100.0, target_noise_clip=0.5)
    target = agent.td_target(sample([5, 5, 5, 5], 1))
    # Q = next action = clamp(0.9 + clip(noise, +-0.5), -1, 1) in [0.4, 1.0]
    assert torch.all(target >= 6 + 0.5 * 0.4 - 1e-6) and torch.all(target <= 6 + 0.5 * 1.0 + 1e-6)


def test_sac_nstep_targets_with_intermediate_entropy_bonuses():
    agent = agent_for("sac")
    agent.log_alpha.data.fill_(math.log(0.5))
    # policy stand-in: log pi(a | s) = s / 10 at every state
    agent.actor.sample = lambda obs, generator: (torch.zeros(obs.shape[0], 1), obs[:, 0] / 10.0)
    agent.critic_target = fixed_critic
    a = 0.5  # alpha
    target = agent.td_target(sample([0, 1, 3, 5], 3))
    expected = [
        # 3 steps ending at a terminal: rewards and the bonuses at s1 = 10 and s2 = 20
        1 + 0.5 * 2 + 0.25 * 3 + 0.5 * (-a * 1.0) + 0.25 * (-a * 2.0),
        # 2 steps ending at a terminal: bonus at s2 = 20
        2 + 0.5 * 3 + 0.5 * (-a * 2.0),
        # truncated after 2 steps: bonus at s4 = 40, bootstrap at s5 = 50 with its own entropy term
        4 + 0.5 * 5 + 0.5 * (-a * 4.0) + 0.25 * (50 - a * 5.0),
        # full 3 steps: bonuses at s6 = 60, s7 = 70; bootstrap at s8 = 80
        6 + 0.5 * 7 + 0.25 * 8 + 0.5 * (-a * 6.0) + 0.25 * (-a * 7.0) + 0.125 * (80 - a * 8.0),
    ]
    assert target.tolist() == pytest.approx(expected)


def test_sac_one_step_target():
    agent = agent_for("sac")
    agent.actor.sample = lambda obs, generator: (torch.zeros(obs.shape[0], 1), obs[:, 0] / 10.0)
    agent.critic_target = fixed_critic
    target = agent.td_target(sample([2, 4], 1))
    # alpha = 1: terminal -> r only; truncated -> r + g (Q(s5) - log pi(s5)) = 5 + 0.5 (50 - 5)
    assert target.tolist() == pytest.approx([3.0, 5 + 0.5 * 45])
