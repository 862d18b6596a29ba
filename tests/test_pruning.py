"""Gradual magnitude pruning: the cubic schedule, the controller, and its piecewise FLOPs."""

import pytest
import torch

from rlx2.baselines.pruning import prune_steps, scheduled_sparsity
from rlx2.agents import make_agent
from rlx2.config import RunConfig
from rlx2.methods import get_method
from rlx2.sparse.distribution import active_counts, layer_densities
from rlx2.sparse.flops import NetworkCosts, iterations_flops
from rlx2.sparse.layers import masked_layers


def test_cubic_schedule_by_hand():
    assert scheduled_sparsity(0.9, 0, 0, 100) == 0.0
    assert scheduled_sparsity(0.9, 50, 0, 100) == pytest.approx(0.9 * (1 - 0.5**3))
    assert scheduled_sparsity(0.9, 100, 0, 100) == pytest.approx(0.9)
    assert scheduled_sparsity(0.9, 500, 0, 100) == pytest.approx(0.9)


def test_prune_steps_cover_20_to_80_percent_and_end_at_the_target():
    assert prune_steps(10_000) == (2_000, 8_000, [2_000, 3_000, 4_000, 5_000, 6_000, 7_000, 8_000])
    assert prune_steps(1_000) == (200, 800, [200, 800])


def driven_agent(iterations=3_000):
    """A small pruning TD3 agent whose controllers are stepped with random gradients."""
    method = get_method("pruning")()
    cfg = method.resolve(RunConfig(algo="td3", method="pruning", steps=iterations + 10, warmup_steps=10,
                                   hidden_sizes=(16, 16), batch_size=4, actor_sparsity=0.9, critic_sparsity=0.8))
    agent = make_agent("td3", cfg=cfg, method=method, obs_dim=5, act_dim=2, generator=torch.Generator().manual_seed(0))
    return cfg, method, agent


def test_prune_keeps_the_largest_magnitudes_and_zeroes_moments():
    cfg, method, agent = driven_agent()
    critic = agent.controllers["critic"]
    for p in agent.critic.parameters():
        p.grad = torch.ones_like(p)
    critic.step()  # creates Adam state
    _, layer = critic.layers[1]  # 16x16 hidden layer
    with torch.no_grad():
        layer.weight.copy_(torch.arange(1, 257, dtype=torch.float32).view(16, 16) * torch.where(
            torch.arange(256).view(16, 16) % 2 == 0, 1.0, -1.0))
    critic.prune(critic.t1)  # straight to the final sparsity
    kept = int(layer.mask.sum())
    shapes = [tuple(l.weight.shape) for _, l in critic.layers]
    assert kept == active_counts(shapes, layer_densities(shapes, 0.8))[1] < 256
    assert torch.equal(layer.mask.view(-1), torch.arange(256) >= 256 - kept)  # largest |w| survive
    assert torch.all(layer.weight[~layer.mask] == 0)
    assert torch.all(agent.critic_opt.state[layer.weight]["exp_avg"][~layer.mask] == 0)
    target_layer = dict(masked_layers(agent.critic_target))[critic.layers[1][0]]
    assert torch.equal(target_layer.mask, layer.mask)


def test_controller_reaches_the_er_targets_from_dense_and_stays_there():
    cfg, method, agent = driven_agent()
    g = torch.Generator().manual_seed(1)
    critic = agent.controllers["critic"]
    assert all(bool(layer.mask.all()) for _, layer in critic.layers)  # starts dense
    shapes = [tuple(layer.weight.shape) for _, layer in critic.layers]
    targets = active_counts(shapes, layer_densities(shapes, 0.8))
    for t in range(1, cfg.training_iterations + 1):
        for p in agent.critic.parameters():
            p.grad = torch.randn(p.shape, generator=g)
        critic.step()
        counts = [int(layer.mask.sum()) for _, layer in critic.layers]
        if t < critic.t0:
            assert counts == [s[0] * s[1] for s in shapes]
        if t >= critic.t1:
            assert counts == targets
    assert critic.t1 == 2_400


def test_piecewise_flops_equal_a_step_by_step_count_of_the_real_masks():
    cfg, method, agent = driven_agent()
    analytic = method.training_cost(cfg, agent)
    g = torch.Generator().manual_seed(2)
    total = 0.0
    for t in range(1, cfg.training_iterations + 1):
        total += iterations_flops(cfg, type(agent), NetworkCosts.of_agent(agent), t, t)  # costs in force during iteration t
        for role, network in (("critic", agent.critic), ("actor", agent.actor)):
            if t % agent.update_every(cfg)[role] == 0:
                for p in network.parameters():
                    p.grad = torch.randn(p.shape, generator=g)
                agent.controllers[role].step()
    assert analytic.flops == pytest.approx(total, rel=1e-12)
    assert analytic.final == NetworkCosts.of_agent(agent)
    static = get_method("static")()
    assert analytic.flops > static.training_cost(cfg, agent).flops  # the dense phase costs extra
