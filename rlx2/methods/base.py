"""What a training method is: three small classes that every method derives from.

A method decides (1) the hidden widths of each network, (2) whether networks carry masks
and how they are initialised, (3) whether and how the topology evolves, and (4) the
defaults of the RLx2 recipe switches (``n_step``, ``dynamic_buffer``) that a user may
still override per run. The training loop and the agents only call the hooks below and
never test a method's name, so a new method is one subclass in one file.

* ``Method``: a dense agent; ``install_masks`` puts a network's masks on it, ``make_controller``
  returns what manages them through training (the agent calls the two in that order), ``training_cost``
  says what a whole run costs in FLOPs (rules in ``rlx2.sparse.flops``). A method whose
  procedure is not the off-policy loop (a distillation teacher, then a student) defines
  ``run(ctx: RunContext) -> RunResult``: the run lifecycle (``rlx2.train``) calls it instead
  (``rlx2.procedure.Session`` holds what every procedure sets up).
* ``SparseMethod``: masks by the run's layer-density distribution (``mask_init``: the largest
  initial weights, or random), never changed.
* ``DynamicSparseMethod``: adds drop/grow on the schedule of spec section 4; its
  ``grow_scores`` is the one thing SET and RigL/RLx2 disagree on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rlx2.config import RunConfig
from rlx2.records import RunDirectory, RunResult

if TYPE_CHECKING:  # torch and the sparse machinery are imported by the hooks that use them: naming a method, or
    # resolving a run's config (which a report does to check its run directories), does not need them
    import torch
    from torch import nn

    from rlx2.agents.base import Agent
    from rlx2.sparse.controller import MaskController
    from rlx2.sparse.flops import TrainingCost
    from rlx2.sparse.topology import TopologySchedule


@dataclass(frozen=True)
class RunContext:
    """What a run procedure (``Method.run``, or the off-policy loop) gets from the run lifecycle (``rlx2.train``)."""

    cfg: RunConfig  # resolved: the budget's and the method's defaults filled in
    method: Method
    run_dir: RunDirectory  # where the run writes (through ``rlx2.recorder.Recorder``); locked by the lifecycle
    out: Path  # the results root, where the runs it depends on live
    progress: bool  # whether to show a progress bar
    #: Train (or reuse, when finished with the same settings) another run under ``out``; returns its directory.
    dependency: Callable[[RunConfig], RunDirectory]


class Method:
    """A dense agent, and the hooks every method may override."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: Defaults of the recipe switches; a run's config may override them.
    n_step: ClassVar[int] = 1
    dynamic_buffer: ClassVar[bool] = False
    #: False for methods whose networks are dense; ``resolve`` then records 0 sparsity.
    uses_sparsity: ClassVar[bool] = False
    #: Why its evaluations lie on a step axis of their own (None: they are the run's environment steps, like every
    #: off-policy run's); learning-curve figures leave such a method out and say why.
    own_step_axis: ClassVar[str | None] = None
    #: A procedure of the method's own, ``run(ctx) -> RunResult``, replacing the off-policy loop (None: the loop).
    run: ClassVar[Callable[[RunContext], RunResult] | None] = None

    def resolve(self, cfg: RunConfig) -> RunConfig:
        """Fill the settings left to the budget (``RunConfig.resolve_budget``) and to the method."""
        cfg = cfg.resolve_budget()
        changes = {
            "n_step": self.n_step if cfg.n_step is None else cfg.n_step,
            "dynamic_buffer": self.dynamic_buffer if cfg.dynamic_buffer is None else cfg.dynamic_buffer,
        }
        if not self.uses_sparsity:
            changes.update(actor_sparsity=0.0, critic_sparsity=0.0)
        return cfg.replace(**changes)

    def check_can_train(self, cfg: RunConfig) -> None:
        """Raise ConfigError if this machine cannot train ``cfg`` (a method's optional package is missing).

        Called before a run starts (``rlx2 run``, and ``rlx2 suite run`` for every run it still
        has to train), never to resolve, compare or report finished runs: a profile whose
        stable-baselines3 runs are done plans and reports without stable-baselines3 installed.
        """

    def sparsity(self, cfg: RunConfig, role: str) -> float:
        return cfg.actor_sparsity if role == "actor" else cfg.critic_sparsity

    def hidden_sizes(self, cfg: RunConfig, role: str, in_dim: int, out_dim: int) -> tuple[int, ...]:
        """Hidden widths of the ``role`` network (per Q head for the critic)."""
        return cfg.hidden_sizes

    def schedule(self, cfg: RunConfig, update_every: int) -> TopologySchedule | None:
        """When the topology of a network stepped every ``update_every`` iterations changes (None: never)."""
        return None

    def install_masks(self, role: str, network: nn.Module, cfg: RunConfig, generator: torch.Generator) -> None:
        """Put the ``role`` network's initial masks on it (a dense method: none).

        The agent calls it right before ``make_controller``; masks drawn at random come from
        ``generator``, so the order of the calls is part of a run's random stream.
        """

    def make_controller(self, role: str, network: nn.Module, optimizer: torch.optim.Optimizer, cfg: RunConfig,
                        update_every: int, generator: torch.Generator) -> MaskController:
        """What manages ``network``'s masks (installed by ``install_masks``) through training.

        ``update_every`` is how many training iterations pass per optimiser step of this
        network (TD3's actor: ``policy_delay``), so its schedule counts its own steps.
        """
        from rlx2.sparse.controller import MaskController

        return MaskController(network, optimizer)

    def depends_on(self, cfg: RunConfig) -> list[RunConfig]:
        """Runs that must finish before this one starts (a distillation teacher); executors order by it."""
        return []

    def training_cost(self, cfg: RunConfig, agent: Agent) -> TrainingCost:
        """Training FLOPs of a whole run of this method (rules in ``rlx2.sparse.flops``).

        The default holds for every method whose per-layer active counts stay constant
        (dense, tiny, static, SET, RigL, RLx2): one phase at the agent's current costs,
        plus the dense gradients of its topology updates.
        """
        from rlx2.sparse.flops import NetworkCosts, Phase, TrainingCost, run_flops

        costs = NetworkCosts.of_agent(agent)
        updates = {role: self.topology_updates(cfg, every) for role, every in agent.update_every(cfg).items()}
        flops = run_flops(cfg, type(agent), [Phase(cfg.training_iterations, costs)], updates)
        return TrainingCost(type(agent), costs, flops, updates)

    def topology_updates(self, cfg: RunConfig, update_every: int) -> int:
        """How many topology updates a network stepped every ``update_every`` iterations gets in a run."""
        schedule = self.schedule(cfg, update_every)
        if schedule is None:
            return 0
        optimizer_steps = cfg.training_iterations // update_every
        return min(optimizer_steps, schedule.t_end - 1) // schedule.delta


class SparseMethod(Method):
    """Sparse from the first step: masks by the layer-density distribution and ``mask_init``, kept fixed."""

    uses_sparsity = True
    grow_scores = None

    def install_masks(self, role, network, cfg, generator):
        from rlx2.sparse.layers import sparsify

        sparsify(network, self.sparsity(cfg, role), generator, cfg.sparsity_distribution, cfg.mask_init)

    def make_controller(self, role, network, optimizer, cfg, update_every, generator):
        from rlx2.sparse.controller import MaskController

        return MaskController(network, optimizer, self.schedule(cfg, update_every), type(self).grow_scores, generator,
                              regrow=cfg.regrow, grown_adam=cfg.grown_adam)


class DynamicSparseMethod(SparseMethod):
    """Drop the smallest magnitudes and grow by ``grow_scores`` every ``delta`` optimiser steps."""

    def schedule(self, cfg: RunConfig, update_every: int) -> TopologySchedule | None:
        from rlx2.sparse.topology import TopologySchedule

        return TopologySchedule(delta=cfg.delta, t_end=max(1, cfg.t_end // update_every), zeta0=cfg.zeta)

    @staticmethod
    def grow_scores(weight: torch.Tensor, dense_grad: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """RigL's rule, ``rlx2.sparse.topology.gradient_grow_scores`` (|dense gradient|); SET overrides it."""
        from rlx2.sparse.topology import gradient_grow_scores

        return gradient_grow_scores(weight, dense_grad, generator)
