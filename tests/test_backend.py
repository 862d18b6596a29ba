"""The CSR backend computes what the masked-dense reference computes (within float tolerance)."""

import numpy as np
import pytest
import torch

from rlx2.agents import make_agent
from rlx2.agents.networks import TwinQ, frozen
from rlx2.config import ConfigError, RunConfig
from rlx2.methods import get_method
from rlx2.replay import ReplayBuffer
from rlx2.sparse.backend import CSR_MAX_DENSITY, SparsePattern
from rlx2.sparse.controller import MaskController
from rlx2.sparse.topology import TopologySchedule, gradient_grow_scores
from rlx2.sparse.layers import MaskedLinear, random_mask, set_backend


def twin_layers(out_features, in_features, density, bias=True, seed=0):
    generator = torch.Generator().manual_seed(seed)
    reference = MaskedLinear(in_features, out_features, bias)
    reference.reset_parameters(generator)
    reference.set_mask(random_mask((out_features, in_features), int(density * out_features * in_features), generator))
    sparse = MaskedLinear(in_features, out_features, bias)
    sparse.set_mask(reference.mask)
    sparse.load_state_dict(reference.state_dict())
    reference.backend, sparse.backend = "masked-dense", "csr"
    return reference, sparse


def test_pattern_indexes_the_active_weights_of_w_and_its_transpose():
    mask = torch.tensor([[True, False, True], [False, False, True]])
    weight = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]])
    pattern = SparsePattern.of(mask)
    assert pattern.density == pytest.approx(0.5)
    assert pattern.weight(weight).to_dense().equal(weight)
    assert pattern.weight_t(weight).to_dense().equal(weight.t())
    assert pattern.crow.tolist() == [0, 2, 3] and pattern.col.tolist() == [0, 2, 2]
    assert pattern.crow_t.tolist() == [0, 1, 1, 3] and pattern.col_t.tolist() == [0, 0, 1]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lead", [(32,), (4, 8), (1,)])
def test_csr_layer_matches_the_reference_forward_and_backward(bias, lead):
    reference, sparse = twin_layers(48, 40, 0.1, bias)
    x = torch.randn(*lead, 40)
    grad_out = torch.randn(*lead, 48)
    results = []
    for layer in (reference, sparse):
        xi = x.clone().requires_grad_()
        y = layer(xi)
        y.backward(grad_out)
        results.append((y.detach(), xi.grad, layer.weight.grad, layer.bias.grad if bias else None))
    (y_ref, gx_ref, gw_ref, gb_ref), (y, gx, gw, gb) = results
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(gx, gx_ref)
    # Only active entries are computed; the rest are zero, as gradient masking would leave them.
    torch.testing.assert_close(gw, gw_ref * reference.mask)
    assert not gw[~reference.mask].any()
    if bias:
        torch.testing.assert_close(gb, gb_ref)


def test_dense_weight_gradient_when_the_controller_asks_for_it():
    reference, sparse = twin_layers(32, 32, 0.05)
    sparse.needs_dense_grad = True
    x, grad_out = torch.randn(16, 32), torch.randn(16, 32)
    for layer in (reference, sparse):
        layer(x).backward(grad_out)
    torch.testing.assert_close(sparse.weight.grad, reference.weight.grad)
    assert sparse.weight.grad[~sparse.mask].abs().sum() > 0


def test_auto_picks_csr_by_density_and_follows_a_changed_mask():
    layer = MaskedLinear(100, 100)
    assert not layer.uses_csr()  # dense layer
    layer.set_mask(torch.rand(100, 100) < 0.05)
    assert layer.uses_csr()
    with torch.no_grad():
        layer.mask.copy_(torch.ones(100, 100, dtype=torch.bool))  # an in-place change (load_state_dict does this)
    assert layer.sparse_pattern().density == 1.0 and not layer.uses_csr()
    layer.mask = torch.rand(100, 100) < CSR_MAX_DENSITY / 2
    assert layer.uses_csr()
    set_backend(layer, "masked-dense")
    assert not layer.uses_csr()
    with pytest.raises(ValueError, match="unknown sparse backend 'fast'"):
        set_backend(layer, "fast")


def test_bad_backend_setting_names_the_field():
    with pytest.raises(ConfigError, match="sparse-backend=.gpu.: input should be 'auto', 'masked-dense' or 'csr'"):
        RunConfig.from_dict({"sparse_backend": "gpu"})


def filled_buffer(obs_dim, act_dim, seed=0):
    rng = np.random.default_rng(seed)
    buffer = ReplayBuffer(obs_dim, act_dim, 2_000, rng)
    for i in range(2_000):
        buffer.add(rng.normal(size=obs_dim), rng.uniform(-1, 1, act_dim), rng.uniform(-1, 1, act_dim),
                   rng.normal(), rng.normal(size=obs_dim), i % 97 == 96, i % 211 == 210)
    return buffer


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_backends_train_alike_through_a_drop_and_grow_step(algo, implementation):
    """Same losses, weights and masks over 300 updates, two topology updates included, on the compiled
    kernels and on the PyTorch path (``implementation``; the masked-dense reference is PyTorch either way)."""
    obs_dim, act_dim, updates = 11, 3, 300
    agents = {}
    for backend in ("masked-dense", "csr"):
        method = get_method("rlx2")()
        cfg = method.resolve(RunConfig(algo=algo, steps=10_000, warmup_steps=0, hidden_sizes=(64, 64),
                                       actor_sparsity=0.9, critic_sparsity=0.85, delta=120, batch_size=32,
                                       sparse_backend=backend))
        agents[backend] = make_agent(algo, cfg=cfg, method=method, obs_dim=obs_dim, act_dim=act_dim,
                                     generator=torch.Generator().manual_seed(3))
    assert any(layer.uses_csr() for _, layer in agents["csr"].controllers["critic"].layers)
    buffer = filled_buffer(obs_dim, act_dim)
    batches = [buffer.sample(32, 3, 0.99) for _ in range(updates)]
    losses = {backend: [agent.update(batch) for batch in batches] for backend, agent in agents.items()}
    for step, (ref, got) in enumerate(zip(losses["masked-dense"], losses["csr"])):
        for key in ref:
            assert got[key] == pytest.approx(ref[key], rel=1e-3, abs=1e-5), (step, key)
    events = {b: [(e.layer, e.optimizer_step) for c in a.controllers.values() for e in c.events]
              for b, a in agents.items()}
    assert events["csr"] == events["masked-dense"] and len(events["csr"]) >= 2
    ref_state, state = agents["masked-dense"].state_dict(), agents["csr"].state_dict()
    for network in ref_state:
        if network == "log_alpha":
            torch.testing.assert_close(state[network], ref_state[network], rtol=1e-4, atol=1e-5)
            continue
        for name, tensor in ref_state[network].items():
            if name.endswith("mask"):
                assert state[network][name].equal(tensor), (network, name)
            else:
                torch.testing.assert_close(state[network][name], tensor, rtol=1e-3, atol=1e-4,
                                           msg=lambda m, n=f"{network}.{name}": f"{n}: {m}")


def test_controller_announces_dense_gradients_before_each_topology_update_also_after_a_restore():
    net = TwinQ(3, 1, (16,))
    for _, layer in [(n, m) for n, m in net.named_modules() if isinstance(m, MaskedLinear)]:
        layer.set_mask(torch.rand(layer.weight.shape) < 0.5)
    ctrl = MaskController(net, torch.optim.Adam(net.parameters()), TopologySchedule(delta=5, t_end=100, zeta0=0.5),
                          gradient_grow_scores, torch.Generator().manual_seed(0))
    announced = []
    for _ in range(11):
        announced.append(ctrl.layers[0][1].needs_dense_grad)
        for p in net.parameters():
            p.grad = torch.zeros_like(p)
        ctrl.step()
    assert [i + 1 for i, dense in enumerate(announced) if dense] == [5, 10]  # steps 5 and 10 drop/grow
    ctrl.optimizer_steps = 14  # what a checkpoint restore does
    assert all(layer.needs_dense_grad for _, layer in ctrl.layers)


def test_frozen_module_passes_gradients_through_without_its_own():
    net = TwinQ(3, 1, (8,))
    obs, act = torch.randn(4, 3), torch.randn(4, 1, requires_grad=True)
    with frozen(net):
        net.first(obs, act).sum().backward()
    assert act.grad is not None and act.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())
    assert all(p.requires_grad for p in net.parameters())
