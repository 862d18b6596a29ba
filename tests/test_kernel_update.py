"""TD3's and SAC's updates without autograd (``rlx2.agents.kernel_update``) give exactly what autograd gives."""

from __future__ import annotations

import pytest
import torch

from rlx2.agents import make_agent
from rlx2.config import RunConfig
from rlx2.methods import get_method
from rlx2.sparse import kernels
from test_backend import filled_buffer

pytestmark = pytest.mark.skipif(kernels.compiled() is None, reason="the compiled kernels are not available")


class Counting:
    """Wraps an agent's kernel update: counts the losses it computed and the steps it left to autograd."""

    def __init__(self, inner, enabled: bool) -> None:
        self.inner, self.enabled = inner, enabled
        self.taken = {"critic": 0, "actor": 0, "target": 0}
        self.declined = {"critic": 0, "actor": 0, "target": 0}

    def _count(self, role, value):
        self.taken[role] += value is not None
        self.declined[role] += value is None
        return value

    def critic_loss(self, batch, target):
        return self._count("critic", self.inner.critic_loss(batch, target) if self.enabled else None)

    def actor_loss(self, batch):
        return self._count("actor", self.inner.actor_loss(batch) if self.enabled else None)

    def target(self, batch):
        return self._count("target", self.inner.target(batch) if self.enabled else None)


def sparse_agent(algo: str, critic_grow_gradient: str, hidden: tuple[int, int], enabled: bool):
    method = get_method("rlx2")()
    cfg = method.resolve(RunConfig(algo=algo, steps=10_000, warmup_steps=0, hidden_sizes=hidden,
                                   actor_sparsity=0.9, critic_sparsity=0.85, delta=40, batch_size=32,
                                   critic_grow_gradient=critic_grow_gradient))
    agent = make_agent(algo, cfg=cfg, method=method, obs_dim=11, act_dim=3, generator=torch.Generator().manual_seed(5))
    agent._kernels = Counting(agent._kernels, enabled)
    return agent


@pytest.mark.parametrize(("algo", "critic_grow_gradient", "hidden"),
                         [("td3", "reference", (64, 64)), ("td3", "critic-loss", (64, 64)), ("sac", "reference", (64, 64)),
                          ("sac", "critic-loss", (64, 64)),
                          ("td3", "reference", (256, 256)), ("sac", "reference", (256, 256))])
def test_kernel_update_is_bit_identical_to_autograd_through_topology_updates(algo, critic_grow_gradient, hidden):
    """Weights, masks, Adam moments (and SAC's temperature) agree exactly over 200 updates with
    topology updates of each network; the kernel path takes every step but those before a topology update.
    Every layer runs in the kernels, the input layers (denser than the rest) too."""
    agents = {enabled: sparse_agent(algo, critic_grow_gradient, hidden, enabled) for enabled in (True, False)}
    buffer = filled_buffer(11, 3)
    batches = [buffer.sample(32, 3, 0.99) for _ in range(200)]
    losses = {enabled: [agent.update(batch) for batch in batches] for enabled, agent in agents.items()}
    # the logged losses (never differentiated) are summed in float64 on the kernel path, in PyTorch's order on the other
    assert [row.keys() for row in losses[True]] == [row.keys() for row in losses[False]]
    for fast_row, slow_row in zip(losses[True], losses[False]):
        for key, value in fast_row.items():
            assert value == pytest.approx(slow_row[key], rel=1e-5, abs=1e-6), key
    fast, slow = agents[True], agents[False]
    for network, state in slow.state_dict().items():
        if network == "log_alpha":
            assert fast.state_dict()[network].equal(state)
            continue
        for name, tensor in state.items():
            assert fast.state_dict()[network][name].equal(tensor), (network, name)
    for role, optimizer in slow.optimizers().items():
        for param, state in optimizer.state_dict()["state"].items():
            for key, value in state.items():
                assert fast.optimizers()[role].state_dict()["state"][param][key].equal(value), (role, param, key)
    events = [(e.layer, e.optimizer_step) for c in fast.controllers.values() for e in c.events]
    assert len(events) >= 8
    assert events == [(e.layer, e.optimizer_step) for c in slow.controllers.values() for e in c.events]
    counts = fast._kernels
    actor_steps = 100 if algo == "td3" else 200  # TD3's actor steps every second iteration
    assert counts.taken["critic"] >= 190 and counts.taken["actor"] >= actor_steps - 10
    assert counts.declined["critic"] >= 4 and counts.declined["actor"] >= 2  # the steps before topology updates
    # the target networks (SAC's: the actor and the target critic) never need dense gradients: every target
    # on the kernels
    assert counts.taken["target"] == 200 and counts.declined["target"] == 0


@pytest.mark.parametrize("n", [1, 2, 5, 6])
def test_sac_target_on_the_kernels_is_bit_identical_for_every_window_length(n):
    """SAC's target on the kernels equals the modules' for 1-step and n-step windows, drawing the same noise;
    past ``MAX_N`` steps (where PyTorch sums the entropy bonus in another order) it declines."""
    agents = {enabled: sparse_agent("sac", "reference", (64, 64), enabled) for enabled in (True, False)}
    buffer = filled_buffer(11, 3)
    for _ in range(3):
        batch = buffer.sample(32, n, 0.99)
        targets = {enabled: agent.td_target(batch) for enabled, agent in agents.items()}
        assert targets[True].equal(targets[False])
    assert agents[True].generator.get_state().equal(agents[False].generator.get_state())
    taken = agents[True]._kernels.taken["target"]
    assert taken == (3 if n <= agents[True]._kernels.inner.MAX_N else 0)


def test_kernel_update_declines_networks_off_the_kernels():
    """A dense TD3 agent (no CSR layer) trains through autograd: the kernel path takes none of its steps."""
    method = get_method("dense")()
    cfg = method.resolve(RunConfig(algo="td3", steps=10_000, warmup_steps=0, hidden_sizes=(64, 64), batch_size=32))
    agent = make_agent("td3", cfg=cfg, method=method, obs_dim=11, act_dim=3, generator=torch.Generator().manual_seed(5))
    agent._kernels = Counting(agent._kernels, True)
    buffer = filled_buffer(11, 3)
    for _ in range(4):
        agent.update(buffer.sample(32, 3, 0.99))
    assert agent._kernels.taken == {"critic": 0, "actor": 0, "target": 0}
    assert agent._kernels.declined == {"critic": 4, "actor": 2, "target": 4}


def test_kept_weight_gradients_are_written_only_by_the_kernels():
    """The critic's weight gradients land in arrays kept per mask pattern (``NetworkPattern.grad_buffers``),
    zero off the pattern, since the kernel writes only active positions. The reference setting's carried grow
    gradient (the actor loss backpropagated through the critic before its topology update) must not accumulate
    into them: without new zero tensors there, that dense gradient would fill the kept array off the pattern."""
    agent = sparse_agent("sac", "reference", (64, 64), True)
    buffer = filled_buffer(11, 3)
    q2 = agent.critic.q2
    middle = q2[2]
    for _ in range(3):
        agent.update(buffer.sample(32, 3, 0.99))
    pattern = q2.network_pattern(q2.fused_layers(), False)
    kept = pattern.grad_buffers()[2][2]  # the middle layer's weight gradient, in its weight's shape
    mask = middle.mask.clone()
    assert middle.weight.grad is kept
    carried = 0
    while not agent.controllers["critic"].events:  # through the critic's first topology update
        agent.update(buffer.sample(32, 3, 0.99))
        carried += agent.controllers["critic"].carried is not None
        assert kept[~mask].abs().sum() == 0
    assert carried == 1 and kept[mask].abs().sum() > 0
