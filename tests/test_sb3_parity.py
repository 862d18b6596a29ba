"""Our dense TD3 update is stable-baselines3's: same start, same batches -> the same networks.

The suite's "% of dense" is only as good as its dense agent, so the update itself is held to
an established implementation: stable-baselines3's TD3 and ours start from the same weights,
see the same minibatches (target smoothing noise off, the one random input they draw
differently) and must end with the same actor, critic and target networks.
"""

import numpy as np
import pytest
import torch

sb3 = pytest.importorskip("stable_baselines3")

from rlx2.agents import make_agent  # noqa: E402
from rlx2.config import RunConfig  # noqa: E402
from rlx2.methods import get_method  # noqa: E402
from rlx2.replay import ReplayBuffer  # noqa: E402


def linear_layers(module):
    return [m for m in module.modules() if isinstance(m, torch.nn.Linear)]


def test_dense_td3_updates_like_stable_baselines3():
    import gymnasium as gym
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.type_aliases import ReplayBufferSamples

    env = gym.make("Hopper-v5")
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    model = sb3.TD3("MlpPolicy", env, learning_rate=3e-4, batch_size=64, tau=0.005, gamma=0.99, policy_delay=2,
                    target_policy_noise=0.0, target_noise_clip=0.5, policy_kwargs={"net_arch": [64, 64]},
                    seed=0, device="cpu")
    method = get_method("dense")()
    cfg = method.resolve(RunConfig(algo="td3", hidden_sizes=(64, 64), batch_size=64, target_noise=0.0))
    agent = make_agent("td3", cfg=cfg, method=method, obs_dim=obs_dim, act_dim=act_dim,
                       generator=torch.Generator().manual_seed(0))
    pairs = [(agent.actor, model.actor.mu), (agent.actor_target, model.actor_target.mu),
             (agent.critic.q1, model.critic.qf0), (agent.critic.q2, model.critic.qf1),
             (agent.critic_target.q1, model.critic_target.qf0), (agent.critic_target.q2, model.critic_target.qf1)]
    with torch.no_grad():  # start from stable-baselines3's initial weights
        for ours, theirs in pairs:
            for a, b in zip(linear_layers(ours), linear_layers(theirs), strict=True):
                a.weight.copy_(b.weight)
                a.bias.copy_(b.bias)

    rng = np.random.default_rng(0)
    buffer = ReplayBuffer(obs_dim, act_dim, 5_000, rng)
    for i in range(5_000):  # random transitions with terminals and time-limit truncations
        buffer.add(rng.normal(size=obs_dim), rng.uniform(-1, 1, act_dim), np.zeros(act_dim), rng.normal(),
                   rng.normal(size=obs_dim), i % 97 == 96, i % 211 == 210)
    batches = [buffer.sample(64, 1, 0.99) for _ in range(40)]
    feed = iter(batches)

    def sample(batch_size, env=None):
        batch = next(feed)
        return ReplayBufferSamples(batch.obs, batch.act, batch.bootstrap_obs, (batch.discount == 0).float()[:, None],
                                   batch.returns[:, None])

    model.replay_buffer.sample = sample
    model.set_logger(configure(None, []))  # train() records its losses
    model.train(gradient_steps=len(batches), batch_size=64)
    for batch in batches:
        agent.update(batch)

    for ours, theirs in pairs:
        for a, b in zip(linear_layers(ours), linear_layers(theirs), strict=True):
            torch.testing.assert_close(a.weight, b.weight, rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(a.bias, b.bias, rtol=1e-4, atol=1e-6)
    assert agent.iterations == model._n_updates == 40
