"""The compiled kernels (``rlx2.sparse.compiled_mlp``, ``rlx2.sparse.kernels``) compute what the PyTorch path computes."""

import copy

import numpy as np
import pytest
import torch

from rlx2.agents.networks import SoftUpdate, TwinQ, frozen, mlp
from rlx2.sparse import kernels
from rlx2.sparse.compiled_mlp import NetworkPattern
from rlx2.sparse.controller import MaskController
from rlx2.sparse.layers import masked_layers, random_mask
from rlx2.sparse.topology import TopologySchedule, gradient_grow_scores

pytestmark = pytest.mark.skipif(kernels.compiled() is None, reason="numba is not importable here")


def sparse_mlp(in_dim=10, hidden=(48, 40), out_dim=3, densities=(0.6, 0.08, None), seed=0):
    """A masked input layer too dense for CSR, a CSR middle layer and an unmasked output layer."""
    generator = torch.Generator().manual_seed(seed)
    net = mlp(in_dim, hidden, out_dim)
    for layer, density in zip(net.fused_layers(), densities):
        layer.reset_parameters(generator)
        if density is not None:
            layer.set_mask(random_mask(tuple(layer.weight.shape), int(density * layer.weight.numel()), generator))
    return net


def run(net, x, grad_out, compiled: bool, monkeypatch):
    monkeypatch.setattr(kernels, "_KERNELS", False if compiled else None)
    net.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    y = net(x)
    y.backward(grad_out)
    return [y.detach(), x.grad] + [p.grad for p in net.parameters()]


@pytest.mark.parametrize("first_density", [0.6, 0.1])
@pytest.mark.parametrize("batch", [1, 7, 64])
def test_compiled_network_matches_the_pytorch_path(batch, first_density, monkeypatch):
    net = sparse_mlp(densities=(first_density, 0.08, None))
    layers = net.fused_layers()
    assert [layer.uses_csr() for layer in layers] == [first_density < 0.25, True, False]
    pattern = net.network_pattern(layers, backward=True)
    assert pattern is not None  # every layer in the kernels, a dense first one too
    x, grad_out = torch.randn(batch, 10), torch.randn(batch, 3)
    got = run(net, x, grad_out, True, monkeypatch)
    want = run(net, x, grad_out, False, monkeypatch)
    # A masked layer's weight gradient only at its active entries: off them it is zero here (as the CSR backend
    # leaves it), dense on PyTorch's dense path; the optimiser step masks it either way.
    for layer in layers:
        if layer.mask is not None:
            index = 2 + 2 * layers.index(layer)
            assert not got[index][~layer.mask].any()
            want[index] = want[index] * layer.mask
    names = ["output", "input grad"] + [name for name, _ in net.named_parameters()]
    for name, a, b in zip(names, got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)


def test_pattern_lists_every_entry_of_an_unmasked_layer_and_the_transpose():
    net = sparse_mlp()
    pattern = NetworkPattern(net.fused_layers())
    assert pattern.in_features == 10
    meta, crow, col, flat, crow_t, col_t, flat_t = pattern.indices()
    # (row, entry, out, in, transposed row): the first layer's 288 active entries (60 % of 48 x 10), the second's 153
    assert meta.tolist() == [[0, 0, 48, 10, 0], [49, 288, 40, 48, 11], [90, 441, 3, 40, 60]]
    assert crow[90:94].tolist() == [0, 40, 80, 120]  # the output layer: every entry, row by row
    assert flat[441:444].tolist() == [0, 1, 2] and col[441:444].tolist() == [0, 1, 2]
    assert flat_t[441:444].tolist() == [0, 40, 80]  # W^T's first row: column 0 of each of the 3 output rows
    assert col_t[441:444].tolist() == [0, 1, 2] and crow_t[60:63].tolist() == [0, 3, 6]


def test_frozen_heads_and_a_single_unused_head(monkeypatch):
    critic = TwinQ(5, 2, (40, 40))
    generator = torch.Generator().manual_seed(1)
    for head in (critic.q1, critic.q2):
        head.fused_layers()[1].set_mask(random_mask((40, 40), 80, generator))
    obs = torch.randn(16, 5)
    results = {}
    for compiled in (True, False):
        monkeypatch.setattr(kernels, "_KERNELS", False if compiled else None)
        act = torch.randn(16, 2, generator=torch.Generator().manual_seed(2), requires_grad=True)
        with frozen(critic):
            q1, q2 = critic(obs, act)
            (q1 - 2 * q2).sum().backward()
        assert all(p.grad is None for p in critic.parameters())
        critic.first(obs, act.detach()).sum().backward()  # q2 unused: no gradient for it
        assert critic.q2[0].weight.grad is None and critic.q1[0].weight.grad is not None
        results[compiled] = (q1.detach(), q2.detach(), act.grad, critic.q1[2].weight.grad.clone())
        critic.zero_grad(set_to_none=True)
    for a, b in zip(results[True], results[False]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_topology_update_takes_the_dense_gradient_path(monkeypatch):
    net = sparse_mlp()
    middle = net.fused_layers()[1]
    middle.needs_dense_grad = True
    assert net.network_pattern(net.fused_layers(), backward=True) is None
    assert net.network_pattern(net.fused_layers(), backward=False) is not None  # targets and acting still compile
    net(torch.randn(8, 10)).sum().backward()
    assert middle.weight.grad[~middle.mask].abs().sum() > 0


def test_pattern_follows_a_changed_mask_and_copies_rebuild_their_own(monkeypatch):
    net = sparse_mlp()
    x = torch.randn(5, 10)
    first = net.network_pattern(net.fused_layers(), backward=False)
    middle = net.fused_layers()[1]
    middle.mask = random_mask((40, 48), 100, torch.Generator().manual_seed(9))
    with torch.no_grad():
        middle.weight.mul_(middle.mask)
    second = net.network_pattern(net.fused_layers(), backward=False)
    assert second is not first and second.indices()[2].shape[0] != first.indices()[2].shape[0]
    target = copy.deepcopy(net)
    assert "_network_pattern" not in target.__dict__
    with torch.no_grad():
        want = net(x)
        for p in net.parameters():
            p.add_(1.0)
        assert torch.equal(target(x), want)  # the copy computes with its own weights
        monkeypatch.setattr(kernels, "_KERNELS", None)
        torch.testing.assert_close(net(x), (lambda: net(x))(), rtol=0, atol=0)


def test_adam_kernel_is_torch_adam_at_the_listed_positions():
    generator = torch.Generator().manual_seed(0)
    reference = torch.nn.Parameter(torch.randn(6, 5, generator=generator))
    dense_ref = torch.nn.Parameter(torch.randn(4, generator=generator))
    param, dense = (torch.nn.Parameter(t.detach().clone()) for t in (reference, dense_ref))
    optimizer = torch.optim.Adam([reference, dense_ref], lr=0.01, betas=(0.8, 0.99), eps=1e-6, foreach=False)
    mine = torch.optim.Adam([param, dense], lr=0.01, betas=(0.8, 0.99), eps=1e-6)
    active = np.array([0, 3, 7, 12, 29])
    for _ in range(5):
        grads = torch.randn(6, 5, generator=generator), torch.randn(4, generator=generator)
        reference.grad, dense_ref.grad = (g.clone() for g in grads)
        optimizer.step()
        states = [kernels.adam_state(mine, p) for p in (param, dense)]
        kernels.adam([kernels.flat_view(param), kernels.flat_view(dense)], [g.view(-1).numpy() for g in grads],
                     [(s["step"].numpy(), kernels.flat_view(s["exp_avg"]), kernels.flat_view(s["exp_avg_sq"]))
                      for s in states], [active, None], [kernels.EMPTY, kernels.EMPTY], 0.01, (0.8, 0.99), 1e-6)
    assert float(mine.state[param]["step"]) == 5.0 and mine.state[param]["step"].dtype == torch.float32
    for got, want, positions in ((param, reference, torch.from_numpy(active)), (dense, dense_ref, torch.arange(4))):
        for a, b in ((got, want), (mine.state[got]["exp_avg"], optimizer.state[want]["exp_avg"]),
                     (mine.state[got]["exp_avg_sq"], optimizer.state[want]["exp_avg_sq"])):
            torch.testing.assert_close(a.detach().view(-1)[positions], b.detach().view(-1)[positions],
                                       rtol=1e-6, atol=1e-8)
    others = torch.ones(30, dtype=torch.bool)
    others[active] = False
    assert not mine.state[param]["exp_avg"].view(-1)[others].any()


def test_adam_kernel_decays_listed_inactive_moments_and_leaves_their_weight():
    param = np.zeros(4, np.float32)
    step = np.zeros((), np.float32)
    exp_avg = np.array([0.0, 2.0, 4.0, 1.0], np.float32)
    exp_avg_sq = np.array([0.0, 8.0, 0.0, 1.0], np.float32)
    kernels.adam([param], [np.zeros(4, np.float32)], [(step, exp_avg, exp_avg_sq)], [np.array([0])],
                 [np.array([1, 2])], 0.1, (0.5, 0.75), 1e-8)
    assert exp_avg.tolist() == [0.0, 1.0, 2.0, 1.0]  # lerp towards a zero gradient by 1 - beta1
    assert exp_avg_sq.tolist() == [0.0, 6.0, 0.0, 1.0]  # times beta2; position 3 is not listed
    assert param.tolist() == [0.0, 0.0, 0.0, 0.0] and float(step) == 1.0


def test_moment_decay_rounds_subnormals_as_ieee_arithmetic_does():
    """The decay works on a subnormal moment's bits (the CPU's float path is ~40x slower there): every
    result must be the float32 arithmetic's, bit for bit, from normal values down through subnormals
    to zero, both signs, at the reference's betas and at odd ones."""
    rng = np.random.default_rng(0)
    n = 4096
    m0 = (rng.standard_normal(n) * 10.0 ** rng.uniform(-45, -30, n)).astype(np.float32)
    v0 = (np.abs(rng.standard_normal(n)) * 10.0 ** rng.uniform(-45, -34, n)).astype(np.float32)
    m0[:4] = [np.float32(1.4e-45), np.float32(-1.4e-45), np.float32(1.1754942e-38), np.float32(0.0)]  # edges
    for beta1, beta2 in ((0.9, 0.999), (0.5, 0.75), (0.7, 0.9993)):
        m, v, m_ieee, v_ieee = m0.copy(), v0.copy(), m0.copy(), v0.copy()
        c, b2 = np.float32(1.0 - beta1), np.float32(beta2)
        positions = np.arange(n, dtype=np.int64)
        for _ in range(300):
            kernels.compiled()._decay(m, v, positions, c, b2)
            m_ieee = m_ieee + c * (np.float32(0.0) - m_ieee)  # NumPy: IEEE float32 with gradual underflow
            v_ieee = v_ieee * b2
        assert np.array_equal(m.view(np.int32), m_ieee.view(np.int32))
        assert np.array_equal(v.view(np.int32), v_ieee.view(np.int32))
    assert ((v != 0) & (v < np.finfo(np.float32).tiny)).sum() > 1000  # the subnormal path ran


def test_decaying_positions_are_the_inactive_ones_with_moments():
    mask = torch.tensor([[True, False], [False, False]])
    state = {"exp_avg": torch.tensor([[1.0, 0.5], [0.0, 0.0]]), "exp_avg_sq": torch.tensor([[1.0, 0.0], [0.0, 3.0]])}
    assert kernels.decaying_positions(mask, state).tolist() == [1, 3]
    assert kernels.decaying_positions(mask, {}).tolist() == []


def test_lerp_kernel_moves_only_the_listed_positions():
    target, other = np.arange(6, dtype=np.float32), np.arange(3, dtype=np.float32)
    kernels.lerp([target, other], [np.full(6, 10, np.float32), np.full(3, 1, np.float32)], [np.array([1, 4]), None],
                 0.25)
    assert target.tolist() == [0.0, 3.25, 2.0, 3.0, 5.5, 5.0]  # 1 + 9/4, 4 + 6/4
    assert other.tolist() == [0.25, 1.0, 1.75]  # every entry of a parameter without positions


def sparse_critic(seed=0):
    generator = torch.Generator().manual_seed(seed)
    critic = TwinQ(6, 2, (64, 64))
    for _, layer in masked_layers(critic):
        layer.reset_parameters(generator)
        share = 12 if layer.weight.shape == (64, 64) else 2  # hidden layers CSR, the others masked-dense
        layer.set_mask(random_mask(tuple(layer.weight.shape), layer.weight.numel() // share, generator))
    return critic


def train(critic, steps: int, schedule):
    """``steps`` controller steps of a masked critic with a target, a topology update included."""
    target = copy.deepcopy(critic)
    optimizer = torch.optim.Adam(critic.parameters(), lr=1e-2, fused=True)
    controller = MaskController(critic, optimizer, schedule, gradient_grow_scores, torch.Generator().manual_seed(0))
    controller.bind_target(target)
    soft = SoftUpdate(target, critic, 0.05)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        obs, act = torch.randn(32, 6, generator=generator), torch.randn(32, 2, generator=generator)
        q1, q2 = critic(obs, act)
        optimizer.zero_grad(set_to_none=True)
        ((q1 - 1.0) ** 2 + (q2 + 1.0) ** 2).mean().backward()
        controller.step()
        soft()
        controller.sync_targets()
    return critic, target, optimizer, controller


def test_compiled_training_matches_the_pytorch_path_through_a_topology_update(monkeypatch):
    """Weights, targets, masks and Adam moments: compiled kernels against dense Adam + masking."""
    schedule = TopologySchedule(delta=15, t_end=1_000, zeta0=0.3)
    results = {}
    for compiled in (True, False):
        monkeypatch.setattr(kernels, "_KERNELS", False if compiled else None)
        results[compiled] = train(sparse_critic(), 40, schedule)
        assert results[compiled][3].compiled() is compiled
    (csr, csr_target, csr_opt, ctrl), (ref, ref_target, ref_opt, _) = results[True], results[False]
    assert len(ctrl.events) == 12  # two topology updates of six layers
    for (name, a), b in zip(csr.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(csr_opt.state[a][key], ref_opt.state[b][key], rtol=1e-4, atol=1e-7)
        assert csr_opt.state[a]["step"] == ref_opt.state[b]["step"]
    for a, b in zip(csr_target.parameters(), ref_target.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for (_, a), (_, b), (_, t) in zip(masked_layers(csr), masked_layers(ref), masked_layers(csr_target)):
        assert torch.equal(a.mask, b.mask)
        assert not a.weight[~a.mask].any() and not t.weight[~t.mask].any()
    # Dropped connections kept moments that decay; they were listed and decayed like dense Adam's.
    assert any(len(kernels.decaying_positions(layer.mask, csr_opt.state[layer.weight]))
               for _, layer in masked_layers(csr))


def test_other_optimisers_and_dense_networks_take_the_pytorch_step():
    critic = sparse_critic()
    assert not MaskController(critic, torch.optim.AdamW(critic.parameters(), lr=1e-2)).compiled()
    assert not MaskController(critic, torch.optim.Adam(critic.parameters(), weight_decay=1e-3)).compiled()
    assert MaskController(critic, torch.optim.Adam(critic.parameters())).compiled()
    dense = TwinQ(6, 2, (16,))
    assert not MaskController(dense, torch.optim.Adam(dense.parameters())).compiled()


def test_sac_actor_loss_gradients_are_autograd_s_ties_included():
    """``sac_actor_grads`` gives exactly autograd's gradients of ``mean(alpha log pi - min(q1, q2))``: a tie
    gives each Q half, the larger Q none, log pi ``alpha / B``; the loss itself to rounding."""
    generator = torch.Generator().manual_seed(3)
    q1, q2, logp = (torch.randn(33, generator=generator) for _ in range(3))
    q2[::4] = q1[::4]  # ties
    alpha = torch.tensor(0.37)
    leaves = [t.clone().requires_grad_() for t in (q1, q2, logp)]
    loss = (alpha * leaves[2] - torch.minimum(leaves[0], leaves[1])).mean()
    loss.backward()
    grads = [np.empty(33, np.float32) for _ in range(3)]
    got = kernels.compiled().sac_actor_grads(q1.numpy(), q2.numpy(), logp.numpy(), alpha.numpy()[()], *grads)
    for leaf, grad in zip(leaves, grads):
        assert np.array_equal(leaf.grad.numpy(), grad)
    assert got == pytest.approx(loss.item(), rel=1e-6)
    assert (grads[0][::4] == grads[1][::4]).all() and grads[0][0] == np.float32(-1.0) / np.float32(33) / np.float32(2)
