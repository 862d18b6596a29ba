"""One autograd operation per network (``rlx2.sparse.fused``) computes what the layers compute one by one.

These test the PyTorch path (the compiled kernels switched off); ``test_compiled.py`` holds
the compiled path to it.
"""

import copy

import pytest
import torch
from torch import nn

from rlx2.agents.networks import TwinQ, frozen, mlp
from rlx2.sparse.layers import MaskedMLP, mlp_heads, random_mask, set_backend

pytestmark = pytest.mark.usefixtures("torch_path")


def sparse_mlp(in_dim=10, hidden=(48, 48), out_dim=3, densities=(0.6, 0.08, 1.0), seed=0):
    """An MLP whose middle layer is sparse enough for CSR under ``auto`` (the outer ones compute dense)."""
    generator = torch.Generator().manual_seed(seed)
    net = mlp(in_dim, hidden, out_dim)
    for layer, density in zip(net.fused_layers(), densities):
        layer.reset_parameters(generator)
        if density < 1.0:
            layer.set_mask(random_mask(tuple(layer.weight.shape), int(density * layer.weight.numel()), generator))
    return net


def layer_by_layer(net: MaskedMLP, x: torch.Tensor) -> torch.Tensor:
    """The same network as a chain of separate modules (each ``MaskedLinear`` and ``nn.ReLU`` its own autograd node)."""
    for module in net:
        x = module(x)
    return x


def outputs_and_grads(net, forward, x, grad_out):
    net.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    y = forward(net, x)
    y.backward(grad_out)
    return [y.detach(), x.grad] + [p.grad for p in net.parameters()]


@pytest.mark.parametrize("dense_grad", [False, True])
def test_fused_network_gives_the_bits_of_its_layers_one_by_one(dense_grad):
    net = sparse_mlp()
    layers = net.fused_layers()
    assert [layer.uses_csr() for layer in layers] == [False, True, False]
    for layer in layers:
        layer.needs_dense_grad = dense_grad
    x, grad_out = torch.randn(32, 10), torch.randn(32, 3)
    fused = outputs_and_grads(net, lambda n, v: n(v), x, grad_out)
    separate = outputs_and_grads(net, layer_by_layer, x, grad_out)
    for a, b in zip(fused, separate):
        assert torch.equal(a, b)
    hidden_grad = layers[1].weight.grad
    assert hidden_grad[~layers[1].mask].abs().sum() > 0 if dense_grad else not hidden_grad[~layers[1].mask].any()


def test_fused_network_matches_the_masked_dense_reference():
    net = sparse_mlp()
    reference = copy.deepcopy(net)
    set_backend(reference, "masked-dense")
    assert reference.fused_layers() is None  # the reference keeps the layer-by-layer path
    x, grad_out = torch.randn(64, 10), torch.randn(64, 3)
    got = outputs_and_grads(net, lambda n, v: n(v), x, grad_out)
    want = outputs_and_grads(reference, lambda n, v: n(v), x, grad_out)
    # Only CSR layers leave the weight gradient zero off the mask (the controller masks the others).
    masks = [None, None] + [m for layer in net.fused_layers() for m in (layer.mask if layer.uses_csr() else None, None)]
    for a, b, mask in zip(got, want, masks):
        torch.testing.assert_close(a, b if mask is None else b * mask)


def test_twin_heads_as_one_operation_equal_each_head_alone():
    critic = TwinQ(5, 2, (32, 32))
    generator = torch.Generator().manual_seed(1)
    for head in (critic.q1, critic.q2):
        middle = head.fused_layers()[1]
        middle.set_mask(random_mask((32, 32), 60, generator))
    obs, act = torch.randn(16, 5), torch.randn(16, 2, requires_grad=True)
    q1, q2 = critic(obs, act)
    (q1.sum() + 2 * q2.sum()).backward()
    together = [q1.detach(), q2.detach(), act.grad.clone()] + [p.grad.clone() for p in critic.parameters()]
    critic.zero_grad(set_to_none=True)
    act.grad = None
    x = torch.cat([obs, act], -1)
    s1, s2 = critic.q1(x).squeeze(-1), critic.q2(x).squeeze(-1)
    (s1.sum() + 2 * s2.sum()).backward()
    alone = [s1.detach(), s2.detach(), act.grad] + [p.grad for p in critic.parameters()]
    for a, b in zip(together, alone):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_frozen_network_passes_the_input_gradient_and_computes_no_weight_gradient():
    net = sparse_mlp()
    x = torch.randn(8, 10, requires_grad=True)
    with frozen(net):
        net(x).sum().backward()
    assert all(p.grad is None for p in net.parameters())
    expected = torch.autograd.grad(layer_by_layer(net, x).sum(), x)[0]
    assert torch.equal(x.grad, expected)


def test_one_head_output_unused_and_no_grad_calls():
    critic = TwinQ(4, 1, (16,))
    obs, act = torch.randn(6, 4), torch.randn(6, 1)
    q1, _ = critic(obs, act)
    q1.sum().backward()  # q2's gradient is None: its weights get none
    assert critic.q1[0].weight.grad is not None and critic.q2[0].weight.grad is None
    with torch.no_grad():
        again, _ = critic(obs, act)
    assert torch.equal(again, q1.detach())
    assert critic.first(obs, act).equal(q1.detach())


def test_leading_dimensions_and_a_single_observation():
    net = sparse_mlp()
    x = torch.randn(4, 5, 10)
    y = net(x)
    assert y.shape == (4, 5, 3)
    assert torch.equal(y.reshape(20, 3), net(x.reshape(20, 10)))
    assert net(x[0, 0].unsqueeze(0)).shape == (1, 3)


def test_weights_changed_in_place_are_seen_and_copies_compute_with_their_own():
    net = sparse_mlp()
    target = copy.deepcopy(net)
    x = torch.randn(8, 10)
    before = net(x).detach()
    # Fused Adam changes weights in place without bumping their version counter: nothing may be cached by version.
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    torch.optim.Adam(net.parameters(), lr=0.1, fused=True).step()
    after = net(x).detach()
    assert not torch.equal(before, after)
    assert torch.equal(after, layer_by_layer(net, x).detach())
    assert torch.equal(target(x), before)


def test_other_containers_take_the_plain_path():
    odd = MaskedMLP(*list(mlp(3, (4,), 2)), nn.Tanh())
    assert odd.fused_layers() is None
    assert odd(torch.randn(2, 3)).shape == (2, 2)
    assert len(mlp_heads([odd, odd], torch.randn(2, 3))) == 2
