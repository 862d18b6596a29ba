"""What a training method is: three small classes that every method derives from.

A method decides (1) the hidden widths of each network, (2) whether networks carry masks
and how they are initialised, (3) whether and how the topology evolves, and (4) the
defaults of the RLx2 recipe switches (``n_step``, ``dynamic_buffer``) that a user may
still override per run. The training loop and the agents only call the hooks below and
never test a method's name, so a new method is one subclass in one file.

* ``Method``: a dense agent; ``make_controller`` is the general hook.
* ``SparseMethod``: random masks by the run's layer-density distribution, never changed.
* ``DynamicSparseMethod``: adds drop/grow on the schedule of spec section 4; its
  ``grow_scores`` is the one thing SET and RigL/RLx2 disagree on.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from rlx2.config import BUFFER_BOUNDS, RunConfig
from rlx2.sparse.controller import MaskController
from rlx2.sparse.layers import sparsify
from rlx2.sparse.topology import TopologySchedule, gradient_grow_scores

ROLES = ("actor", "critic")


class Method:
    """A dense agent, and the hooks every method may override."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: Defaults of the recipe switches; a run's config may override them.
    n_step: ClassVar[int] = 1
    dynamic_buffer: ClassVar[bool] = False
    #: False for methods whose networks are dense; ``resolve`` then records 0 sparsity.
    uses_sparsity: ClassVar[bool] = False

    def resolve(self, cfg: RunConfig) -> RunConfig:
        """Fill the settings left to the method or the algorithm."""
        low, high = BUFFER_BOUNDS[cfg.algo]
        changes = {
            "n_step": self.n_step if cfg.n_step is None else cfg.n_step,
            "dynamic_buffer": self.dynamic_buffer if cfg.dynamic_buffer is None else cfg.dynamic_buffer,
            "buffer_max": high if cfg.buffer_max is None else cfg.buffer_max,
            "buffer_min": low if cfg.buffer_min is None else cfg.buffer_min,
            "t_end": cfg.training_iterations if cfg.t_end is None else cfg.t_end,
        }
        if changes["buffer_min"] > changes["buffer_max"]:
            changes["buffer_min"] = changes["buffer_max"]
        if not self.uses_sparsity:
            changes.update(actor_sparsity=0.0, critic_sparsity=0.0)
        return cfg.replace(**changes)

    def sparsity(self, cfg: RunConfig, role: str) -> float:
        return cfg.actor_sparsity if role == "actor" else cfg.critic_sparsity

    def hidden_sizes(self, cfg: RunConfig, role: str, in_dim: int, out_dim: int) -> tuple[int, ...]:
        """Hidden widths of the ``role`` network (per Q head for the critic)."""
        return cfg.hidden_sizes

    def make_controller(self, role: str, network: nn.Module, optimizer: torch.optim.Optimizer, cfg: RunConfig,
                        steps_per_iteration: float, generator: torch.Generator) -> MaskController:
        """Install masks on ``network`` and return what manages them through training.

        ``steps_per_iteration`` is how many optimiser steps the network takes per training
        iteration (TD3's actor: ``1 / policy_delay``), so schedules count its own steps.
        """
        return MaskController(network, optimizer)


class SparseMethod(Method):
    """Sparse from the first step: random masks by the layer-density distribution, kept fixed."""

    uses_sparsity = True

    def make_controller(self, role, network, optimizer, cfg, steps_per_iteration, generator):
        sparsify(network, self.sparsity(cfg, role), generator, cfg.sparsity_distribution)
        return MaskController(network, optimizer, self.schedule(cfg, steps_per_iteration),
                              type(self).grow_scores, generator)

    def schedule(self, cfg: RunConfig, steps_per_iteration: float) -> TopologySchedule | None:
        return None

    grow_scores = None


class DynamicSparseMethod(SparseMethod):
    """Drop the smallest magnitudes and grow by ``grow_scores`` every ``delta`` optimiser steps."""

    def schedule(self, cfg: RunConfig, steps_per_iteration: float) -> TopologySchedule | None:
        t_end = max(1, math.floor(cfg.t_end * steps_per_iteration))
        return TopologySchedule(delta=cfg.delta, t_end=t_end, zeta0=cfg.zeta)

    #: RigL's rule; SET overrides it with uniform noise.
    grow_scores = staticmethod(gradient_grow_scores)
