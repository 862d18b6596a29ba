"""Gradual magnitude pruning (Zhu and Gupta 2017), as used by Graesser et al. (2022).

Dense-to-sparse: each network starts dense. Between 20 % and 80 % of its optimiser steps,
every 1 000 of them (and once more at the 80 % mark, so the target is always reached),
each layer keeps the largest-magnitude weights up to sparsity
``s_l(t) = s_l (1 - (1 - (t - t0) / (t1 - t0))^3)``, where ``s_l`` is the layer's final
sparsity from the run's layer-density distribution (ER by default) at the network's target
sparsity. Masks are then fixed. Pruned weights and their Adam moments are zeroed. Its
training FLOPs count the dense phase and every step of the schedule.
"""

from __future__ import annotations

import torch

from rlx2.methods import Method, register
from rlx2.sparse.controller import MaskController, TopologyEvent, zero_moments
from rlx2.sparse.distribution import active_counts, layer_densities
from rlx2.sparse.flops import NetworkCosts, Phase, TrainingCost, run_flops
from rlx2.sparse.layers import masked_layers, top_k_mask

START, END, EVERY = 0.2, 0.8, 1_000


def prune_steps(optimizer_steps: int) -> tuple[int, int, list[int]]:
    """``(t0, t1, steps at which to prune)`` for a network taking ``optimizer_steps`` steps."""
    t0, t1 = max(1, round(START * optimizer_steps)), max(1, round(END * optimizer_steps))
    return t0, t1, sorted({*range(t0, t1, EVERY), t1})


def scheduled_sparsity(final: float, t: int, t0: int, t1: int) -> float:
    """Zhu-Gupta cubic schedule from 0 at ``t0`` to ``final`` at ``t1``."""
    progress = min(1.0, max(0.0, (t - t0) / (t1 - t0))) if t1 > t0 else 1.0
    return final * (1.0 - (1.0 - progress) ** 3)


class PruningController(MaskController):
    """A dense network's masks, pruned by magnitude on the cubic schedule after optimiser steps."""

    def __init__(self, network, optimizer, final_sparsities: list[float], optimizer_steps: int) -> None:
        super().__init__(network, optimizer)  # the all-ones masks are ``GradualPruning.install_masks``'s
        self.final_sparsities = final_sparsities
        self.t0, self.t1, steps = prune_steps(optimizer_steps)
        self.prune_at = set(steps)

    def step(self) -> bool:
        took_step = super().step()
        if self.optimizer_steps in self.prune_at:
            self.prune(self.optimizer_steps)
        return took_step

    @torch.no_grad()
    def prune(self, t: int) -> None:
        for (name, layer), final in zip(self.layers, self.final_sparsities):
            sparsity = scheduled_sparsity(final, t, self.t0, self.t1)
            keep = active_counts([tuple(layer.weight.shape)], [1.0 - sparsity])[0]
            before = int(layer.mask.sum())
            if keep >= before:
                continue
            layer.mask = top_k_mask(torch.where(layer.mask, layer.weight.abs(), torch.tensor(-1.0)), keep)
            layer.weight.mul_(layer.mask)
            zero_moments(self.optimizer, layer.weight, layer.mask)
            self.events.append(TopologyEvent(t, name, (before - keep) / before, before - keep, keep, layer.density))
        self.refresh()


def final_layer_sparsities(network, sparsity: float, distribution: str) -> list[float]:
    shapes = [tuple(layer.weight.shape) for _, layer in masked_layers(network)]
    return [1.0 - d for d in layer_densities(shapes, sparsity, distribution)]


@register
class GradualPruning(Method):
    name = "pruning"
    description = "gradual magnitude pruning (Zhu-Gupta cubic schedule, 20-80 % of training), starts dense"
    uses_sparsity = True

    def install_masks(self, role, network, cfg, generator):
        for _, layer in masked_layers(network):  # dense to start with, masked so that pruning can remove weights
            layer.set_mask(torch.ones_like(layer.weight, dtype=torch.bool))

    def make_controller(self, role, network, optimizer, cfg, update_every, generator):
        finals = final_layer_sparsities(network, self.sparsity(cfg, role), cfg.sparsity_distribution)
        return PruningController(network, optimizer, finals, cfg.training_iterations // update_every)

    def training_cost(self, cfg, agent) -> TrainingCost:
        """Piecewise-constant costs: dense until 20 %, then one phase per pruning step."""
        every = agent.update_every(cfg)
        q1_layers = {id(layer) for _, layer in masked_layers(agent.critic.q1)}
        layers: dict[str, tuple[str, bool]] = {}  # layer key -> (network, belongs to Q1)
        active: dict[str, int] = {}  # active weights per layer now; dense at the start
        changes: dict[int, dict[str, int]] = {}  # training iteration -> layer key -> active weights after it
        for role, network in (("actor", agent.actor), ("critic", agent.critic)):
            finals = final_layer_sparsities(network, self.sparsity(cfg, role), cfg.sparsity_distribution)
            t0, t1, steps = prune_steps(cfg.training_iterations // every[role])
            for (name, layer), final in zip(masked_layers(network), finals):
                key = f"{role}.{name}"
                layers[key] = (role, id(layer) in q1_layers)
                active[key] = layer.weight.numel()
                for t in steps:
                    kept = active_counts([tuple(layer.weight.shape)], [1.0 - scheduled_sparsity(final, t, t0, t1)])[0]
                    changes.setdefault(t * every[role], {})[key] = kept
        dense = NetworkCosts.of_agent(agent)

        def costs() -> NetworkCosts:
            total = {"actor": 0, "critic": 0, "q1": 0}
            for key, count in active.items():
                role, in_q1 = layers[key]
                total[role] += count
                total["q1"] += count if in_q1 else 0
            return NetworkCosts(total["actor"], total["critic"], total["q1"], dense.actor_dense, dense.critic_dense)

        phases, done = [], 0
        for iteration in sorted(i for i in changes if i <= cfg.training_iterations):
            phases.append(Phase(iteration - done, costs()))
            active.update(changes[iteration])
            done = iteration
        phases.append(Phase(cfg.training_iterations - done, costs()))
        return TrainingCost(type(agent), phases[-1].costs, run_flops(cfg, type(agent), phases, {}),
                            {"actor": 0, "critic": 0})
