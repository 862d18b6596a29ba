"""Topology evolution: the drop-and-grow step and its schedule (RLx2 spec section 4).

Every ``delta`` optimiser steps of a network, until ``t_end``, each sparse layer drops the
``k = floor(zeta_t * active)`` active weights of smallest magnitude and grows ``k``
connections chosen among all connections inactive after the drop, by the largest *grow
score*. The grow score is what distinguishes methods: ``|dense gradient|`` for RigL and
RLx2, uniform noise for SET. Each layer keeps its number of active weights. What happens
to the values of grown weights (new ones start at zero; regrown ones keep theirs, by
default) is the controller's business (``rlx2.sparse.controller``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def cosine_update_fraction(t: int, t_end: int, zeta0: float) -> float:
    """Fraction of active weights replaced at optimiser step ``t``: ``zeta0/2 (1 + cos(pi t / t_end))``."""
    return zeta0 / 2.0 * (1.0 + math.cos(math.pi * t / t_end))


@dataclass(frozen=True)
class TopologySchedule:
    """When a network's topology changes, counted in that network's own optimiser steps."""

    delta: int  # optimiser steps between two topology updates
    t_end: int  # updates happen strictly before this optimiser step (where zeta_t reaches 0)
    zeta0: float  # initial update fraction

    def due(self, t: int) -> bool:
        """Whether optimiser step ``t`` (1-based) is a topology update."""
        return t % self.delta == 0 and t < self.t_end

    def fraction(self, t: int) -> float:
        return cosine_update_fraction(t, self.t_end, self.zeta0)


@dataclass(frozen=True)
class DropGrow:
    """What one drop-and-grow step did to one layer (flat indices into the weight)."""

    new_mask: torch.Tensor
    dropped: torch.Tensor
    grown: torch.Tensor


def drop_and_grow(weight: torch.Tensor, mask: torch.Tensor, grow_scores: torch.Tensor, k: int) -> DropGrow:
    """Drop the ``k`` active weights of smallest ``|weight|``; grow the ``k`` best-scored inactive ones.

    Growth candidates are all connections inactive *after* the drop (a just-dropped
    connection may come back, as in RigL). Ties are broken by ``torch.topk``.
    """
    flat_mask = mask.reshape(-1)
    if k <= 0:
        empty = torch.empty(0, dtype=torch.long)
        return DropGrow(mask.clone(), empty, empty)
    inf = torch.tensor(float("inf"), dtype=weight.dtype)
    drop_scores = torch.where(flat_mask, weight.detach().reshape(-1).abs(), inf)
    dropped = torch.topk(drop_scores, k, largest=False).indices
    new_mask = flat_mask.clone()
    new_mask[dropped] = False
    candidates = torch.where(new_mask, -inf, grow_scores.reshape(-1).to(weight.dtype))
    grown = torch.topk(candidates, k).indices
    new_mask[grown] = True
    return DropGrow(new_mask.view_as(mask), dropped, grown)


def gradient_grow_scores(weight: torch.Tensor, dense_grad: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """RigL: grow where the dense gradient of the loss is largest in magnitude."""
    return dense_grad.abs()


def random_grow_scores(weight: torch.Tensor, dense_grad: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """SET: grow uniformly at random among inactive connections."""
    return torch.rand(weight.shape, generator=generator)
