"""Layer densities: Erdos-Renyi against hand-computed values, and the exact non-zero budget."""

import pytest
import torch

from rlx2.agents.networks import TwinQ
from rlx2.sparse.distribution import active_counts, erdos_renyi_densities, layer_densities, uniform_densities
from rlx2.sparse.layers import masked_layers, sparsify


def test_er_matches_hand_computed_values():
    # shapes (out, in): sizes 12 and 8, N = 20, S = 0.5 -> budget 10 weights.
    # eps = 10 / ((3+4) + (4+2)) = 10/13; d1 = eps*7/12, d2 = eps*6/8.
    d1, d2 = erdos_renyi_densities([(4, 3), (2, 4)], 0.5)
    assert d1 == pytest.approx(70 / 156)
    assert d2 == pytest.approx(60 / 104)
    assert d1 * 12 + d2 * 8 == pytest.approx(10)


def test_er_makes_an_overfull_layer_dense_and_solves_again():
    # sizes 1000 and 10, S = 0.5 -> budget 505. First eps = 505/121 gives the small layer
    # density 4.59 > 1, so it becomes dense and eps = (505 - 10)/110 = 4.5 over the rest.
    d1, d2 = erdos_renyi_densities([(10, 100), (1, 10)], 0.5)
    assert d2 == 1.0
    assert d1 == pytest.approx(4.5 * 110 / 1000)


def test_er_with_no_overfull_layer_is_not_forced_dense():
    densities = erdos_renyi_densities([(256, 256), (256, 256)], 0.9)
    assert densities == pytest.approx([0.1, 0.1])


def test_uniform_and_unknown_distribution():
    assert uniform_densities([(3, 3), (5, 2)], 0.25) == [0.75, 0.75]
    with pytest.raises(ValueError, match="distribution"):
        layer_densities([(3, 3)], 0.5, "lognormal")


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5])
def test_sparsity_outside_unit_interval_is_rejected(sparsity):
    with pytest.raises(ValueError, match="sparsity"):
        erdos_renyi_densities([(3, 3)], sparsity)


@pytest.mark.parametrize("sparsity", [0.5, 0.85, 0.95, 0.98])
def test_critic_masks_hold_the_global_budget_within_one_weight_per_layer(sparsity):
    critic = TwinQ(17, 6, (256, 256))
    sparsify(critic, sparsity, torch.Generator().manual_seed(0))
    layers = [layer for _, layer in masked_layers(critic)]
    total = sum(layer.weight.numel() for layer in layers)
    nonzero = sum(int(layer.mask.sum()) for layer in layers)
    assert abs(nonzero - (1 - sparsity) * total) <= len(layers)
    # masked weights are zero, every active one is not
    for layer in layers:
        assert torch.all(layer.weight[~layer.mask] == 0)
        assert int((layer.weight != 0).sum()) == int(layer.mask.sum())


def test_active_counts_round_to_nearest_weight():
    assert active_counts([(4, 3), (2, 4)], [0.5, 1.0]) == [6, 8]
