"""``MaskController``: owns one network's masks through training.

It wraps the optimiser step of one network (actor or critic): masks the gradients, steps,
re-zeroes masked weights, and on the steps its ``TopologySchedule`` marks, runs drop/grow
instead of the optimiser step (the reference implementation's behaviour). It also keeps
target networks on the online masks, and tells its layers before a topology update that
the coming backward pass must produce dense weight gradients (``needs_dense_grad``). A
dense network gets a controller too (no masked layers): its ``step`` is then just
``optimizer.step()``.

What a topology update does to the weights it touches (``RunConfig`` settings, reference
first): only connections inactive *before* the update are new and start at exactly zero;
one dropped and regrown in the same update keeps its value and optimiser state
(``regrow="keep"``), or is reset to zero like a new one (``"reset"``). Adam moments of new
connections are left as they are (``grown_adam="keep"``: the reference never resets them)
or zeroed (``"zero"``, which also zeroes those of dropped weights). The reference's grow
score may include a gradient carried over from the iteration before (``carry_grow_gradient``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

import rlx2.sparse.kernels as kernels
from rlx2.sparse.layers import MaskedLinear, masked_layers
from rlx2.sparse.topology import TopologySchedule, drop_and_grow

GrowScores = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]

#: Adam/AdamW moment buffers (what ``zero_moments`` clears).
MOMENT_KEYS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


@torch.no_grad()
def zero_moments(optimizer: torch.optim.Optimizer, weight: torch.Tensor, keep: torch.Tensor) -> None:
    """Zero ``weight``'s Adam moments wherever ``keep`` is False (grown or pruned connections)."""
    state = optimizer.state.get(weight, {})
    for key in MOMENT_KEYS:
        if key in state:
            state[key].mul_(keep)


@dataclass
class TopologyEvent:
    """One layer's record of one topology update."""

    optimizer_step: int
    layer: str
    fraction: float
    replaced: int
    active: int
    density: float
    regrown: int = 0  # of the ``replaced`` dropped weights, how many were regrown at once


@dataclass
class MaskController:
    """Masks, gradient masking and topology evolution for one network and its optimiser."""

    network: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: TopologySchedule | None = None
    grow_scores: GrowScores | None = None
    generator: torch.Generator | None = None
    regrow: str = "keep"  # keep | reset
    grown_adam: str = "keep"  # keep | zero
    events: list[TopologyEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.layers: list[tuple[str, MaskedLinear]] = [
            (name, layer) for name, layer in masked_layers(self.network) if layer.mask is not None
        ]
        self._targets: list[list[MaskedLinear]] = []
        self._weights = [layer.weight for _, layer in self.layers]
        self._masks: list[torch.Tensor] = []
        #: Weight gradients to add to the next topology update's grow scores (see ``carry_grow_gradient``).
        self.carried: list[torch.Tensor] | None = None
        self.optimizer_steps = 0
        self._by_weight = {id(layer.weight): layer for _, layer in self.layers}
        self._arrays: dict[int, tuple] = {}  # per parameter group: NumPy views for the compiled step (_group_arrays)
        self.refresh()  # also caches the float masks used on every step
        if self.schedule is not None and self.grow_scores is None:
            raise ValueError("a topology schedule needs a grow_scores rule")
        from rlx2.config import GROWN_ADAMS, REGROWS  # the settings' choices, listed once

        if self.regrow not in REGROWS or self.grown_adam not in GROWN_ADAMS:
            raise ValueError(f"regrow={self.regrow!r} / grown_adam={self.grown_adam!r}: keep|reset / keep|zero")

    @property
    def optimizer_steps(self) -> int:
        """Optimiser steps of this network so far (topology updates included)."""
        return self._optimizer_steps

    @optimizer_steps.setter
    def optimizer_steps(self, value: int) -> None:
        self._optimizer_steps = value
        # The backward before the next step must give dense gradients if that step is a topology update
        # (the layers are told when that changes: a module attribute costs microseconds to set).
        dense = self.schedule is not None and self.schedule.due(value + 1)
        if dense is not self.__dict__.get("_announced"):
            for _, layer in self.layers:
                layer.needs_dense_grad = dense
            self._announced = dense

    @property
    def update_due(self) -> bool:
        """Whether this network's next optimiser step is a topology update."""
        return bool(self.layers) and self.schedule is not None and self.schedule.due(self.optimizer_steps + 1)

    def carry_grow_gradient(self) -> None:
        """Keep the weight gradients just computed, to be added to the next topology update's grow scores.

        The reference accumulates the dense gradient RigL grows by in a backward hook that is
        armed from the step before a topology update until that update, without clearing it
        in between: a loss backpropagated through this network in the iteration before (an
        actor loss through the critic) adds to the gradient of its own loss. Calling this
        right after such a backward reproduces that sum.
        """
        self.carried = [w.grad.detach().clone() for w in self._weights]

    def step(self) -> bool:
        """Finish one optimiser step after ``backward()``; False if it was a topology update."""
        self.optimizer_steps += 1
        if self.layers and self.schedule is not None and self.schedule.due(self.optimizer_steps):
            if self.carried is not None:
                torch._foreach_add_([w.grad for w in self._weights], self.carried)
            self.carried = None
            self.evolve()
            return False
        if self.compiled():
            self._compiled_step()
            return True
        if self.layers:
            torch._foreach_mul_([w.grad for w in self._weights], self._masks)
        self.optimizer.step()
        if self.layers:
            with torch.no_grad():
                torch._foreach_mul_(self._weights, self._masks)
        return True

    def compiled(self) -> bool:
        """Whether optimiser steps run on the compiled Adam kernel (``rlx2.sparse.kernels``).

        They do for a network with a CSR layer (the one that trains on compiled kernels) whose
        optimiser is plain ``torch.optim.Adam`` (no weight decay, AMSGrad or maximisation),
        when the kernels are available; otherwise ``step`` is mask gradients, ``optimizer.step()``,
        re-mask weights.
        """
        if kernels.compiled() is None or type(self.optimizer) is not torch.optim.Adam:
            return False
        for group in self.optimizer.param_groups:
            if (group["weight_decay"] or group["amsgrad"] or group["maximize"] or group["differentiable"]
                    or group["capturable"] or torch.is_tensor(group["lr"])):
                return False
        return any(layer.uses_csr() for _, layer in self.layers)

    def _compiled_step(self) -> None:
        """Adam on every parameter with a gradient; a masked weight only at its active entries.

        Inactive weights are never written, so they stay exactly zero without re-masking; their
        Adam moments decay as dense Adam's would (zero gradient) until they reach zero.
        """
        for index, group in enumerate(self.optimizer.param_groups):
            params = [param for param in group["params"] if param.grad is not None]  # as Adam: no gradient, no step
            if params:
                arrays = self._group_arrays(index, params)
                grads = tuple(param.grad.numpy().reshape(-1) for param in params)  # never require grad: no detach
                kernels.compiled().adam(arrays[0], grads, *arrays[1:], float(group["lr"]), float(group["betas"][0]),
                                        float(group["betas"][1]), float(group["eps"]))

    def _group_arrays(self, index: int, params: list[torch.Tensor]) -> tuple:
        """``rlx2.sparse._numba.adam``'s arrays for ``params`` of group ``index``: NumPy views of the
        parameters, moments and step counters, active and decaying positions.

        Rebuilt when the optimiser's state was replaced or grew (a first step, a loaded state dict), the
        parameters with gradients differ, or a mask changed (replaced by a topology update or edited in place).
        """
        state = self.optimizer.state
        masks = [layer._buffers["mask"] for _, layer in self.layers]
        key = (len(state), tuple(map(id, params)), tuple(map(id, masks)), tuple(mask._version for mask in masks))
        cached = self._arrays.get(index)
        if cached is not None and cached[0] is state and cached[1] == key:
            return cached[3]
        per_param = [self._param_arrays(param) for param in params]
        arrays = (tuple(a[0] for a in per_param), tuple(a[2] for a in per_param), tuple(a[3] for a in per_param),
                  tuple(a[1] for a in per_param), tuple(kernels.EMPTY if a[4] is None else a[4] for a in per_param),
                  tuple(a[5] for a in per_param))
        self._arrays[index] = (state, key, (params, masks), arrays)  # params, masks kept alive: their ids are keys
        return arrays

    def _param_arrays(self, param: torch.Tensor) -> tuple:
        """NumPy views of ``param``, its step, moments, active and decaying positions."""
        state = kernels.adam_state(self.optimizer, param)
        layer = self._by_weight.get(id(param))
        mask = None if layer is None else layer.mask
        active = decaying = None
        if mask is not None:
            active = layer.sparse_pattern().flat.numpy()
            decaying = kernels.decaying_positions(mask, state)
        return (kernels.flat_view(param), state["step"].numpy(), kernels.flat_view(state["exp_avg"]),
                kernels.flat_view(state["exp_avg_sq"]), active, kernels.EMPTY if decaying is None else decaying)

    @torch.no_grad()
    def evolve(self) -> None:
        """Drop/grow every sparse layer from the current (dense) weight gradients."""
        t = self.optimizer_steps
        fraction = self.schedule.fraction(t)
        for name, layer in self.layers:
            weight, mask = layer.weight, layer.mask
            active = int(mask.sum())
            if active == mask.numel():
                continue  # a layer the distribution made dense has nowhere to grow
            k = int(fraction * active)
            scores = self.grow_scores(weight, weight.grad, self.generator)
            result = drop_and_grow(weight, mask, scores, k)
            regrown = mask.view(-1)[result.grown]  # grown connections that were active before the update
            new = result.grown if self.regrow == "reset" else result.grown[~regrown]
            keep = result.new_mask.clone().view(-1)
            keep[new] = False  # new connections start at exactly zero; dropped ones are zeroed too
            keep = keep.view_as(mask)
            weight.mul_(keep)
            if self.grown_adam == "zero":
                zero_moments(self.optimizer, weight, keep)
            layer.mask = result.new_mask
            self.events.append(TopologyEvent(t, name, fraction, k, int(result.new_mask.sum()), layer.density,
                                             int(regrown.sum())))
        self.refresh()

    def bind_target(self, target: nn.Module) -> None:
        """Register a target copy of the network whose weights follow the online masks."""
        by_name = dict(masked_layers(target))
        self._targets.append([by_name[name] for name, _ in self.layers])
        self.refresh()

    @torch.no_grad()
    def refresh(self) -> None:
        """Re-read the masks after any change (drop/grow, pruning, loading a state dict)."""
        # Float copies: multiplying by a bool mask would convert it on every optimiser step.
        self._masks = [layer.mask.to(layer.weight.dtype) for _, layer in self.layers]
        # Target layers share the online mask tensor, so a checkpoint of either is complete.
        for target_layers in self._targets:
            for target_layer, (_, layer) in zip(target_layers, self.layers):
                target_layer.mask = layer.mask
                target_layer.weight.mul_(layer.mask)

    @torch.no_grad()
    def sync_targets(self) -> None:
        """Multiply every bound target network's weights by the online masks (after a soft update).

        Nothing to do for a network on the compiled kernels: its Polyak update moves only active
        entries, so inactive target weights stay as ``refresh`` left them, zero.
        """
        if not self.layers or self.compiled():
            return
        for target_layers in self._targets:
            torch._foreach_mul_([layer.weight for layer in target_layers], self._masks)

    def densities(self) -> dict[str, float]:
        """Per-layer density of the online network's sparse layers."""
        return {name: layer.density for name, layer in self.layers}
