"""Sparse-network primitives: masked layers, layer-density distributions, drop/grow.

Masks are explicit boolean tensors (module buffers, so they are saved in checkpoints);
nothing here is hidden in parametrizations.
"""

from rlx2.sparse.distribution import erdos_renyi_densities, layer_densities, uniform_densities
from rlx2.sparse.layers import MaskedLinear, masked_layers
from rlx2.sparse.controller import MaskController
from rlx2.sparse.topology import cosine_update_fraction, drop_and_grow

__all__ = [
    "MaskController",
    "MaskedLinear",
    "cosine_update_fraction",
    "drop_and_grow",
    "erdos_renyi_densities",
    "layer_densities",
    "masked_layers",
    "uniform_densities",
]
