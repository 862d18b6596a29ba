"""Analytic FLOPs and model size, from network shapes and masks alone (spec section 9).

These are the suite's counting rules, written once (the README repeats the table).

Unit: one FLOP is one multiply-accumulate with a weight, for one sample. ``F_X`` is the
forward cost of network ``X`` on one sample: its active (unmasked) weights. ``D_X`` is
the same network with every weight active. ``A`` = actor, ``C`` = critic (both Q heads),
``Q1`` = the first head, ``B`` = batch size, ``n_t`` = the n of iteration ``t``.

A backward pass costs twice the forward (input gradients + weight gradients, the RigL
convention), also through a network that is not being trained (the critic inside the
actor loss), because that is what autograd computes.

| term | FLOPs | stated by |
|---|---|---|
| TD3 critic update, every iteration | ``B (F_A + F_C)`` target actor + target critic, ``+ 3 B F_C`` critic forward/backward | ``TD3.update_flops`` |
| TD3 actor update, every ``policy_delay`` iterations | ``3 B (F_A + F_Q1)`` | ``TD3.update_flops`` |
| SAC critic update, every iteration | ``n_t B F_A`` policy on every next state of the window, ``+ B F_C + 3 B F_C`` | ``SAC.update_flops`` |
| SAC actor update, every iteration | ``3 B (F_A + F_C)`` | ``SAC.update_flops`` |
| acting, every environment step after warm-up | ``F_A`` | here |
| topology update of network X | ``+ B (D_X - F_X)``: its weight gradient is computed densely | here |

Not counted: biases, activations, losses, optimiser and Polyak updates, replay sampling,
evaluation episodes and random warm-up actions.

* **Model size** = active weights of every network the method trains, targets included
  (TD3: actor, target actor, critic, target critic; SAC: actor, critic, target critic;
  each agent's ``trained_weights``),
  divided by the same count for the dense agent (the config's hidden widths).
* **Inference FLOPs** = ``F_A / D_A`` of the dense agent: the actor's forward pass.
* **Training FLOPs** of a run = the sum of the terms above over its iterations; relative
  figures divide by the dense agent's run with the same steps, warm-up, batch size and
  policy delay (1-step targets, no topology updates). A method whose densities change
  (dense-to-sparse) describes its run as phases of constant cost; a method with extra
  training (a distillation teacher) adds it (``Method.training_cost``). A distilled
  student keeps only its actor: its size is the student's weights over the dense actor's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from torch import nn

from rlx2.sparse.layers import masked_layers

if TYPE_CHECKING:
    from rlx2.config import RunConfig


def forward_flops(module: nn.Module) -> tuple[int, int]:
    """``(F, D)``: active and total weights of ``module``'s linear layers, per sample."""
    active = total = 0
    for _, layer in masked_layers(module):
        total += layer.weight.numel()
        active += layer.weight.numel() if layer.mask is None else int(layer.mask.sum())
    return active, total


def mlp_weights(in_dim: int, hidden: Sequence[int], out_dim: int) -> int:
    """Weights (no biases) of an MLP ``in -> hidden... -> out``."""
    widths = [in_dim, *hidden, out_dim]
    return sum(a * b for a, b in zip(widths[:-1], widths[1:]))


@dataclass(frozen=True)
class NetworkCosts:
    """Per-sample forward FLOPs of an agent's online networks during one phase of training."""

    actor: float
    critic: float
    q1: float
    actor_dense: float  # every weight of the actor's layers active (the dense-gradient cost)
    critic_dense: float

    @classmethod
    def of_agent(cls, agent: Any) -> NetworkCosts:
        actor, actor_dense = forward_flops(agent.actor)
        critic, critic_dense = forward_flops(agent.critic)
        q1, _ = forward_flops(agent.critic.q1)
        return cls(actor, critic, q1, actor_dense, critic_dense)

    @classmethod
    def dense(cls, agent: Any, obs_dim: int, act_dim: int, hidden: Sequence[int]) -> NetworkCosts:
        """The dense ``agent`` (an agent class) with hidden widths ``hidden`` (the reference of every ratio)."""
        actor = mlp_weights(obs_dim, hidden, agent.actor_outputs(act_dim))
        q = mlp_weights(obs_dim + act_dim, hidden, 1)
        return cls(actor, 2 * q, q, actor, 2 * q)


@dataclass(frozen=True)
class Phase:
    """A stretch of ``iterations`` training iterations during which costs are constant."""

    iterations: int
    costs: NetworkCosts


def multiples(first: int, last: int, k: int) -> int:
    """How many multiples of ``k`` lie in ``[first, last]``."""
    return last // k - (first - 1) // k


def iterations_flops(cfg: RunConfig, agent: Any, costs: NetworkCosts, first: int, last: int) -> float:
    """Training FLOPs of iterations ``first..last`` (1-based, inclusive) of an ``agent`` class, acting included."""
    if last < first:
        return 0.0
    return agent.update_flops(cfg, costs, first, last) + (last - first + 1) * costs.actor


def topology_flops(cfg: RunConfig, costs: NetworkCosts, updates: dict[str, int]) -> float:
    """Extra FLOPs of the dense weight gradients of ``updates[role]`` topology updates."""
    extra = {"actor": costs.actor_dense - costs.actor, "critic": costs.critic_dense - costs.critic}
    return sum(cfg.batch_size * extra[role] * count for role, count in updates.items())


def run_flops(cfg: RunConfig, agent: Any, phases: Sequence[Phase], updates: dict[str, int]) -> float:
    """Training FLOPs of a whole run of an ``agent`` class made of ``phases`` (their iterations add up to the run's)."""
    total, first = 0.0, 1
    for phase in phases:
        total += iterations_flops(cfg, agent, phase.costs, first, first + phase.iterations - 1)
        first += phase.iterations
    return total + topology_flops(cfg, phases[-1].costs, updates)


def dense_run_flops(cfg: RunConfig, agent: Any, dense_costs: NetworkCosts) -> float:
    """Training FLOPs of the dense agent's run with ``cfg``'s budget (1-step targets, no topology updates)."""
    return run_flops(cfg.replace(n_step=1), agent, [Phase(cfg.training_iterations, dense_costs)], {})


@dataclass(frozen=True)
class TrainingCost:
    """What a method's run costs: its final networks and its total training FLOPs."""

    agent: Any  # the agent class (TD3, SAC): it states the cost terms and which networks count
    final: NetworkCosts
    flops: float
    topology_updates: dict[str, int]
    #: ``(weights, dense counterpart)`` when the method keeps other networks than the agent's
    #: (a distilled student actor); None: every network the method trains, targets included.
    kept_weights: tuple[float, float] | None = None


def flops_report(cfg: RunConfig, obs_dim: int, act_dim: int, cost: TrainingCost) -> dict[str, Any]:
    """Size, inference and training FLOPs of a run, absolute and relative to the dense agent."""
    dense_costs = NetworkCosts.dense(cost.agent, obs_dim, act_dim, cfg.hidden_sizes)
    dense_flops = dense_run_flops(cfg, cost.agent, dense_costs)
    weights, dense_weights = cost.kept_weights or (cost.agent.trained_weights(cost.final),
                                                   cost.agent.trained_weights(dense_costs))
    return {
        "model_weights": weights,
        "dense_model_weights": dense_weights,
        "size": weights / dense_weights,
        "inference_flops": cost.final.actor,
        "inference_flops_relative": cost.final.actor / dense_costs.actor,
        "training_flops": cost.flops,
        "training_flops_per_step": cost.flops / cfg.steps,
        "dense_training_flops": dense_flops,
        "training_flops_relative": cost.flops / dense_flops if dense_flops else None,
        "topology_updates": dict(cost.topology_updates),
        "network_costs": asdict(cost.final),
    }
