"""Drop/grow, its schedule, and the MaskController invariants of spec section 4."""

import copy
import math

import pytest
import torch

from rlx2.agents.networks import SoftUpdate, TwinQ, mlp
from rlx2.sparse.controller import MaskController
from rlx2.sparse.layers import MaskedLinear, masked_layers, sparsify
from rlx2.sparse.topology import (TopologySchedule, cosine_update_fraction, drop_and_grow,
                                  gradient_grow_scores, random_grow_scores)


def test_cosine_update_fraction():
    assert cosine_update_fraction(0, 100, 0.5) == pytest.approx(0.5)
    assert cosine_update_fraction(50, 100, 0.5) == pytest.approx(0.25)
    assert cosine_update_fraction(100, 100, 0.5) == pytest.approx(0.0)
    assert cosine_update_fraction(25, 100, 0.3) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))


def test_schedule_updates_every_delta_until_t_end():
    schedule = TopologySchedule(delta=10, t_end=35, zeta0=0.5)
    assert [t for t in range(1, 60) if schedule.due(t)] == [10, 20, 30]
    # at t_end the update fraction is 0: no update (and no skipped optimiser step) there
    assert [t for t in range(1, 60) if TopologySchedule(10, 30, 0.5).due(t)] == [10, 20]


def test_drop_and_grow_by_hand():
    weight = torch.tensor([[0.5, -0.1, 0.0], [0.3, 0.0, -0.9]])
    mask = torch.tensor([[True, True, False], [True, False, True]])
    scores = torch.tensor([[9.0, 9.0, 0.2], [9.0, 0.7, 9.0]])  # active entries' scores must not matter
    result = drop_and_grow(weight, mask, scores, k=2)
    # drop the two smallest active magnitudes: -0.1 (flat 1) and 0.3 (flat 3);
    # grow the two best inactive-after-drop by score: flat 1 (9.0) and flat 3 (9.0).
    assert sorted(result.dropped.tolist()) == [1, 3]
    assert sorted(result.grown.tolist()) == [1, 3]
    assert int(result.new_mask.sum()) == int(mask.sum())
    scores = torch.tensor([[0.0, 0.0, 0.2], [0.0, 0.7, 0.0]])
    result = drop_and_grow(weight, mask, scores, k=1)
    assert result.dropped.tolist() == [1]
    assert result.grown.tolist() == [4]  # 0.7 beats 0.2 and the just-dropped 0.0
    assert result.new_mask.tolist() == [[True, False, False], [True, True, True]]


def test_drop_and_grow_with_k_zero_changes_nothing():
    weight, mask = torch.randn(4, 4), torch.rand(4, 4) > 0.5
    result = drop_and_grow(weight, mask, torch.rand(4, 4), k=0)
    assert torch.equal(result.new_mask, mask)


def test_grow_score_rules():
    g = torch.Generator().manual_seed(0)
    grad = torch.tensor([[-3.0, 1.0]])
    assert torch.equal(gradient_grow_scores(torch.zeros(1, 2), grad, g), torch.tensor([[3.0, 1.0]]))
    a = random_grow_scores(torch.zeros(5, 5), grad, torch.Generator().manual_seed(1))
    b = random_grow_scores(torch.zeros(5, 5), grad, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (5, 5)


def _network(seed=0, sparsity=0.8):
    g = torch.Generator().manual_seed(seed)
    net = TwinQ(5, 2, (16, 16))
    for _, layer in masked_layers(net):
        layer.reset_parameters(g)
    sparsify(net, sparsity, g)
    return net, g


def _train_step(net, controller, optimizer, seed):
    x = torch.randn(32, 5, generator=torch.Generator().manual_seed(seed))
    a = torch.randn(32, 2, generator=torch.Generator().manual_seed(seed + 1))
    q1, q2 = net(x, a)
    loss = (q1 - 1).pow(2).mean() + (q2 + 1).pow(2).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grads = {name: layer.weight.grad.clone() for name, layer in masked_layers(net)}
    return controller.step(), grads


@pytest.mark.parametrize(("regrow", "grown_adam"), [("keep", "keep"), ("reset", "zero"), ("keep", "zero")])
@pytest.mark.parametrize("grow", [gradient_grow_scores, random_grow_scores])
def test_controller_invariants_through_training_and_an_update(grow, regrow, grown_adam):
    net, g = _network()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    controller = MaskController(net, optimizer, TopologySchedule(delta=5, t_end=100, zeta0=0.5), grow, g,
                                regrow=regrow, grown_adam=grown_adam)
    target = copy.deepcopy(net)
    controller.bind_target(target)
    soft = SoftUpdate(target, net, 0.5)
    counts = {name: int(layer.mask.sum()) for name, layer in controller.layers}

    for step in range(1, 5):
        took_step, _ = _train_step(net, controller, optimizer, step)
        assert took_step
        for _, layer in controller.layers:  # masked weights stay exactly zero and never train
            assert torch.all(layer.weight[~layer.mask] == 0)
            assert torch.all(optimizer.state[layer.weight]["exp_avg"][~layer.mask] == 0)

    before = {name: (layer.weight.detach().clone(), layer.mask.clone()) for name, layer in controller.layers}
    moments = {name: {k: v.clone() for k, v in optimizer.state[layer.weight].items() if k != "step"}
               for name, layer in controller.layers}
    biases_before = [layer.bias.detach().clone() for _, layer in controller.layers]
    took_step, grads = _train_step(net, controller, optimizer, 5)
    assert not took_step  # topology-update step: the optimiser step is skipped
    assert len(controller.events) == sum(1 for _, l in controller.layers if not l.mask.all())

    regrown_total = 0
    for (name, layer), bias in zip(controller.layers, biases_before):
        old_weight, old_mask = before[name]
        mask = layer.mask
        assert int(mask.sum()) == counts[name]  # active count preserved
        if old_mask.all():
            assert torch.equal(mask, old_mask)  # a dense layer has nowhere to grow
            continue
        k = int(0.5 / 2 * (1 + math.cos(math.pi * 5 / 100)) * counts[name])
        assert k > 0
        # expected drop: the k active weights of smallest magnitude
        magnitudes = torch.where(old_mask, old_weight.abs(), torch.tensor(float("inf"))).flatten()
        expected_drop = torch.zeros(old_mask.numel(), dtype=torch.bool)
        expected_drop[torch.argsort(magnitudes)[:k]] = True
        survivors = old_mask & ~expected_drop.view_as(old_mask)
        grown = mask & ~survivors
        new, regrown = grown & ~old_mask, grown & old_mask
        regrown_total += int(regrown.sum())
        event = next(e for e in controller.events if e.layer == name)
        assert (event.replaced, event.regrown) == (k, int(regrown.sum()))
        assert torch.all(mask[survivors])  # everything not dropped stays active ...
        assert torch.equal(layer.weight[survivors], old_weight[survivors])  # ... untouched by an optimiser step
        assert int(grown.sum()) == k
        assert torch.all(layer.weight[new] == 0)  # new connections start at zero
        if regrow == "keep":  # dropped and regrown at once: keeps its value
            assert torch.equal(layer.weight[regrown], old_weight[regrown])
        else:
            assert torch.all(layer.weight[regrown] == 0)
        state = optimizer.state[layer.weight]
        for key, value in moments[name].items():
            if grown_adam == "keep":  # the reference never resets Adam moments
                assert torch.equal(state[key], value)
            else:
                zeroed = new | (regrown if regrow == "reset" else torch.zeros_like(regrown))
                assert torch.all(state[key][zeroed] == 0)
                assert torch.equal(state[key][mask & ~zeroed], value[mask & ~zeroed])
        assert torch.all(layer.weight[~mask] == 0)
        assert torch.equal(layer.bias, bias)
        if grow is gradient_grow_scores:
            # grown connections have the largest dense-gradient magnitudes among the candidates
            others = grads[name].abs()[~survivors & ~grown]
            assert grads[name].abs()[grown].min() >= others.max()
    if grow is gradient_grow_scores:
        assert regrown_total > 0  # the case the regrow setting is about does occur here

    # target networks follow the online masks after a soft update
    soft()
    controller.sync_targets()
    for (_, layer), (_, target_layer) in zip(controller.layers, masked_layers(target)):
        assert torch.equal(target_layer.mask, layer.mask)
        assert torch.all(target_layer.weight[~layer.mask] == 0)


def _one_layer_update(regrow, grown_adam, grad):
    """A 1x4 layer, weights [0.1, 0.5, 0.9, 0] with the last inactive, one Adam step, then an update of k = 1."""
    layer = MaskedLinear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.1, 0.5, 0.9, 0.0]]))
    layer.set_mask(torch.tensor([[True, True, True, False]]))
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-3)
    # fraction 0.5 at t = 0 of a long schedule: k = int(0.5 * 3) = 1 at the update on step 2
    controller = MaskController(layer, optimizer, TopologySchedule(delta=2, t_end=10**9, zeta0=0.5),
                                gradient_grow_scores, regrow=regrow, grown_adam=grown_adam)
    layer.weight.grad = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    assert controller.step()  # a normal Adam step: every active weight moves by lr, moments non-zero
    weight = layer.weight.detach().clone()
    moments = optimizer.state[layer.weight]["exp_avg"].clone()
    layer.weight.grad = grad.clone()
    assert not controller.step()
    return layer, optimizer.state[layer.weight]["exp_avg"], weight, moments


@pytest.mark.parametrize("regrow", ["keep", "reset"])
@pytest.mark.parametrize("grown_adam", ["keep", "zero"])
def test_a_weight_dropped_and_regrown_at_once_by_hand(regrow, grown_adam):
    # The smallest active weight (index 0) is dropped; its gradient is the largest: it is grown back.
    layer, exp_avg, weight, moments = _one_layer_update(regrow, grown_adam, torch.tensor([[5.0, 0.0, 0.0, 1.0]]))
    assert layer.mask.tolist() == [[True, True, True, False]]
    expected = weight[0, 0] if regrow == "keep" else 0.0
    assert layer.weight[0, 0] == expected and torch.equal(layer.weight[0, 1:3], weight[0, 1:3])
    zeroed = grown_adam == "zero" and regrow == "reset"
    assert exp_avg[0, 0] == (0.0 if zeroed else moments[0, 0]) and moments[0, 0] != 0


@pytest.mark.parametrize("regrow", ["keep", "reset"])
@pytest.mark.parametrize("grown_adam", ["keep", "zero"])
def test_a_new_connection_starts_at_zero_with_moments_as_set(regrow, grown_adam):
    # Index 0 is dropped; the inactive index 3 has the largest gradient: a new connection.
    layer, exp_avg, weight, moments = _one_layer_update(regrow, grown_adam, torch.tensor([[0.0, 0.0, 0.0, 5.0]]))
    assert layer.mask.tolist() == [[False, True, True, True]]
    assert layer.weight[0, 3] == 0.0 and layer.weight[0, 0] == 0.0
    # Adam moments of the never-active index 3 are zero anyway; those of the dropped index 0 are
    # kept by the reference (they come back if it regrows later) and zeroed under "zero".
    assert exp_avg[0, 0] == (0.0 if grown_adam == "zero" else moments[0, 0]) and moments[0, 0] != 0


def test_a_carried_gradient_adds_to_the_next_updates_grow_scores_only():
    layer = MaskedLinear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.1, 0.5, 0.9, 0.0]]))
    layer.set_mask(torch.tensor([[True, True, True, False]]))
    controller = MaskController(layer, torch.optim.SGD(layer.parameters(), lr=0.1),
                                TopologySchedule(delta=2, t_end=10**9, zeta0=0.5), gradient_grow_scores)
    layer.weight.grad = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    assert controller.step() and controller.update_due
    layer.weight.grad = torch.tensor([[-4.0, 0.0, 0.0, 0.0]])  # e.g. an actor loss through this network
    controller.carry_grow_gradient()
    layer.weight.grad = torch.tensor([[1.0, 0.0, 0.0, 2.0]])  # this update's own loss: alone, index 3 would grow
    assert not controller.step()
    # index 0 (smallest) is dropped; its summed score |1 - 4| = 3 beats index 3's 2: it is grown back
    assert layer.mask.tolist() == [[True, True, True, False]]
    assert controller.carried is None


def test_dense_network_controller_is_a_plain_optimizer_step():
    net = mlp(3, (4,), 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    controller = MaskController(net, optimizer)
    assert not controller.layers
    before = [p.detach().clone() for p in net.parameters()]
    net(torch.ones(2, 3)).sum().backward()
    assert controller.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    controller.sync_targets()  # no masks: nothing to do, and no error


def test_schedule_without_grow_rule_is_rejected():
    net, _ = _network()
    with pytest.raises(ValueError, match="grow_scores"):
        MaskController(net, torch.optim.Adam(net.parameters()), TopologySchedule(5, 10, 0.5))
