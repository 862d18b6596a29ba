"""TD3's and SAC's updates on the compiled kernels without autograd: the gradients written out.

Why: at 98/95 % sparsity the kernels' arithmetic was about half of an update's time; the
rest was the machinery around it (module calls, the autograd graph and its engine, loss
operations, checks repeated on every call). Where every network of an update trains on the
compiled kernels (``rlx2.sparse.compiled_mlp``), this module runs the same computation as
direct calls: forward kernels, the loss gradients by the same formulas autograd applies
(``mse_loss_backward``, ``tanh_backward``, a mean's ``1/B``, ``minimum``'s split of ties,
SAC's squashed Gaussian backward), backward kernels, and the gradients stored in each
parameter's ``.grad`` for the controller's (unchanged) optimiser step. Both agents' targets
run here too. Inputs, activations and outputs go into arrays kept from step to step
(``Workspace``), and the element-wise steps of losses and targets (the loss gradients,
TD3's smoothing, the bootstraps, SAC's entropy bonus) are small compiled calls
(``rlx2.sparse._numba``) of the IEEE operations PyTorch applies, in its order, so they round
alike: a PyTorch call between kernels runs cold, several times its cost in a loop. ``tanh``
and its backward stay PyTorch operations. Weights, Adam moments and masks are bit-identical
to the autograd path (the logged loss values, summed in float64 here, agree to rounding;
``tests/test_kernel_update.py``), which still runs every step this does not take: a
network off the kernels, a backward that must give dense weight gradients (the step before
a topology update), and an actor loss whose critic's next step is a topology update (there
the autograd path runs the critic on PyTorch and, under the reference setting, carries its
gradient into that update).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

import rlx2.agents.gaussian_kernel as gaussian
from rlx2.agents.networks import DeterministicActor, GaussianActor, TwinQ
from rlx2.sparse import kernels
from rlx2.sparse.compiled_mlp import NetworkPattern, backward_arrays, forward_arrays
from rlx2.sparse.layers import MaskedMLP

def kernel_patterns(networks: Sequence[MaskedMLP], backward: bool) -> list[NetworkPattern] | None:
    """Each network's compiled view, or None unless every one of them runs on the kernels
    (and, with ``backward``, none needs a dense weight gradient)."""
    found = []
    for network in networks:
        layers = network.fused_layers()
        pattern = None if layers is None else network.network_pattern(layers, backward)
        if pattern is None:
            return None
        found.append(pattern)
    return found


def store_grads(pattern: NetworkPattern, saved: tuple, g: np.ndarray) -> None:
    """Backward of one network from ``g`` (``[out, B]``, contiguous) into every parameter's ``.grad``."""
    grads, _ = backward_arrays(pattern, saved, g, (True,) * (2 * len(pattern.layers)), False, reuse=True)
    for (weight, bias), weight_grad, bias_grad in zip(pattern.params, grads[0::2], grads[1::2]):
        weight.grad, bias.grad = weight_grad, bias_grad


class Workspace:
    """Float32 arrays an update writes its intermediate values into, kept from step to step by name.

    Why: allocating them and wrapping them as tensors, call by call, cost about as much as the
    arithmetic of a 95 %-sparse layer. Only values used within one loss live here (inputs,
    activations, outputs); whatever outlives the call (gradients, targets) is a new array.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def array(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        held = self._arrays.get(name)
        if held is None or held.shape != shape:
            held = self._arrays[name] = np.empty(shape, np.float32)
        return held

    def network(self, name: str, pattern: NetworkPattern, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x_in, hidden, out)`` for ``forward_arrays`` on ``pattern``."""
        return (self.array(f"{name}.x_in", (pattern.in_features, batch)),
                self.array(f"{name}.hidden", (pattern.hidden, batch)),
                self.array(f"{name}.out", (pattern.out_features, batch)))

    def joined(self, name: str, first: np.ndarray, second: np.ndarray | int) -> np.ndarray:
        """``[first, second]`` side by side (``torch.cat(..., dim=-1)`` of two ``[B, n]`` arrays); an ``int``
        ``second`` leaves that many columns for the caller to fill."""
        batch, split = first.shape
        joined = self.array(name, (batch, split + (second if isinstance(second, int) else second.shape[1])))
        joined[:, :split] = first
        if not isinstance(second, int):
            joined[:, split:] = second
        return joined


def run_network(workspace: Workspace, name: str, pattern: NetworkPattern, x: np.ndarray) -> tuple[np.ndarray, tuple]:
    """``forward_arrays`` of ``pattern`` on ``x`` (``[B, in]``) into the workspace's arrays named ``name``."""
    return forward_arrays(pattern, x, workspace.network(name, pattern, x.shape[0]))


class KernelUpdate:
    """The critic step both agents share; ``actor_loss`` is each agent's (module docstring)."""

    def __init__(self, agent) -> None:
        self.agent = agent
        self.workspace = Workspace()

    @torch.no_grad()  # no graph: the gradients are written out
    def critic_loss(self, batch, target: torch.Tensor) -> float | None:
        """Critic forward, loss and gradients (into ``.grad``), or None where the autograd path must run.

        The loss's gradient with respect to each Q is ``mse_loss_backward``'s ``(2 / B) (q - y)``
        (times the output gradient 1), in the same operations, so it rounds alike; the loss itself
        (logged, never differentiated) is summed in float64, not in PyTorch's order.
        """
        agent = self.agent
        critic = agent.critic
        patterns = kernel_patterns([critic.q1, critic.q2], backward=True)
        if patterns is None:
            return None
        pairs = self.workspace.joined("critic.x", batch.obs.numpy(), batch.act.numpy())
        target_array = target.numpy()
        batch_size = target_array.shape[0]
        norm = np.float32(2.0 / batch_size)
        loss, states = 0.0, []
        for name, pattern in zip(("critic.q1", "critic.q2"), patterns):
            out, saved = run_network(self.workspace, name, pattern, pairs)
            grad = self.workspace.array(f"{name}.grad", (1, batch_size))
            loss += kernels.compiled().squared_error_grad(out[0], target_array, norm, grad[0])
            states.append((pattern, saved, grad))
        agent.laps.lap("critic forward + loss")
        for pattern, saved, g in states:
            store_grads(pattern, saved, g)
        return loss

    def actor_patterns(self, critic_heads: list) -> tuple[list[NetworkPattern], list[NetworkPattern]] | None:
        """The actor's and the critic heads' compiled views for an actor loss, or None where autograd must run:
        also when the critic's next step is a topology update, where the autograd path runs the critic on
        PyTorch (and, under ``critic_grow_gradient="reference"``, carries its gradient into that update)."""
        agent = self.agent
        actor = kernel_patterns([agent.actor.net], backward=True)
        critic = kernel_patterns(critic_heads, backward=True)
        return None if actor is None or critic is None else (actor, critic)


class TD3KernelUpdate(KernelUpdate):
    @torch.no_grad()
    def target(self, batch) -> torch.Tensor | None:
        """``TD3.td_target`` on the kernels: the same noise draw and operations, or None where the target
        networks do not run there. The element-wise steps are single IEEE operations (add, multiply, clamp,
        minimum), compiled, which round as PyTorch's do; ``tanh`` stays PyTorch's."""
        agent = self.agent
        if type(agent.actor_target) is not DeterministicActor or type(agent.critic_target) is not TwinQ:
            return None  # replaced by something else (a subclass, a test's stand-in): its own forward decides
        actor = kernel_patterns([agent.actor_target.net], backward=False)
        critics = kernel_patterns([agent.critic_target.q1, agent.critic_target.q2], backward=False)
        if actor is None or critics is None:
            return None
        cfg = agent.cfg
        compiled = kernels.compiled()
        noise = torch.randn(batch.act.shape, generator=agent.generator).numpy()
        obs = batch.bootstrap_obs.numpy()
        raw, _ = run_network(self.workspace, "target.actor", actor[0], obs)
        action = torch.tanh(torch.from_numpy(raw)).numpy()  # [act, B]
        pairs = self.workspace.joined("target.x", obs, noise.shape[1])
        compiled.smoothed_actions(action, noise, cfg.target_noise, cfg.target_noise_clip, pairs[:, obs.shape[1]:])
        q1, _ = run_network(self.workspace, "target.q1", critics[0], pairs)
        q2, _ = run_network(self.workspace, "target.q2", critics[1], pairs)
        target = np.empty(obs.shape[0], np.float32)  # outlives the call: the critic loss's
        compiled.bootstrapped_target(batch.returns.numpy(), batch.discount.numpy(), q1[0], q2[0], target)
        return torch.from_numpy(target)

    @torch.no_grad()
    def actor_loss(self, batch) -> float | None:
        """Actor forward, ``-mean Q1(s, pi(s))`` and the actor's gradients (into ``.grad``; the critic gets
        none), or None where the autograd path must run."""
        patterns = self.actor_patterns([self.agent.critic.q1])
        if patterns is None:
            return None
        (actor,), (q1,) = patterns
        obs = batch.obs.numpy()
        raw, actor_saved = run_network(self.workspace, "actor", actor, obs)
        action = torch.tanh(torch.from_numpy(raw))  # [act, B]
        pairs = self.workspace.joined("actor.x", obs, action.numpy().T)
        q, q_saved = run_network(self.workspace, "actor.q1", q1, pairs)
        grad_q = self.workspace.array("actor.q1.grad", q.shape)
        loss = -kernels.compiled().mean_grad(q, -1.0, grad_q)
        _, grad_x = backward_arrays(q1, q_saved, grad_q, (False,) * (2 * len(q1.layers)), True)  # [in, B]
        grad_action = torch.from_numpy(grad_x[obs.shape[1]:])  # [act, B], contiguous
        store_grads(actor, actor_saved, torch.ops.aten.tanh_backward(grad_action, action).numpy())
        return loss


class SACKernelUpdate(KernelUpdate):
    #: The most window steps whose entropy bonus sums in PyTorch's order here: its sum over up to 4 terms
    #: adds them one by one from zero (``sac_bootstrapped_target``), over more it does not.
    MAX_N = 5

    def __init__(self, agent) -> None:
        super().__init__(agent)
        self._gammas: dict[tuple[float, int], np.ndarray] = {}

    @torch.no_grad()
    def target(self, batch) -> torch.Tensor | None:
        """``SAC.td_target`` on the kernels: the policy's pass over every next state, its squashed Gaussian
        sample (the same noise draw), the target critics and the target's element-wise steps in PyTorch's
        order of IEEE operations (bit-identical), or None where they do not all run there."""
        agent = self.agent
        if type(agent.actor) is not GaussianActor or type(agent.critic_target) is not TwinQ:
            return None  # replaced by something else (a subclass, a test's stand-in): its own forward decides
        batch_size, n, obs_dim = batch.next_obs.shape
        if n > self.MAX_N:
            return None
        actor = kernel_patterns([agent.actor.net], backward=False)
        critics = kernel_patterns([agent.critic_target.q1, agent.critic_target.q2], backward=False)
        if actor is None or critics is None:
            return None
        compiled, workspace = kernels.compiled(), self.workspace
        states = (batch.bootstrap_obs if n == 1 else batch.next_obs.reshape(-1, obs_dim)).numpy()
        out, _ = run_network(workspace, "target.actor", actor[0], states)  # [2A, B n]
        acts = out.shape[0] // 2
        noise = torch.randn((states.shape[0], acts), generator=agent.generator).numpy()
        action, pre, log_std = (workspace.array(f"target.{name}", noise.shape) for name in ("action", "pre", "std"))
        logp = workspace.array("target.logp", (states.shape[0],))
        gaussian.forward(out, noise, agent.actor.log_std_map == "clamp", action, logp, pre, log_std)
        obs = batch.bootstrap_obs.numpy()
        pairs = workspace.joined("target.x", obs, acts)
        valid = batch.valid.numpy()
        next_logp = workspace.array("target.next_logp", (batch_size,))
        compiled.sac_next_actions(action, logp, valid, n, pairs, obs_dim, next_logp)
        q1, _ = run_network(workspace, "target.q1", critics[0], pairs)
        q2, _ = run_network(workspace, "target.q2", critics[1], pairs)
        key = (agent.cfg.gamma, n)
        if key not in self._gammas:  # PyTorch's powers, as td_target computes them
            self._gammas[key] = (agent.cfg.gamma ** torch.arange(1, max(n, 2), dtype=torch.float32)).numpy()
        target = np.empty(batch_size, np.float32)  # outlives the call: the critic loss's
        compiled.sac_bootstrapped_target(batch.returns.numpy(), batch.discount.numpy(), valid, logp,
                                         self._gammas[key], n, q1[0], q2[0], next_logp, agent.alpha.numpy()[()], target)
        return torch.from_numpy(target)

    @torch.no_grad()
    def actor_loss(self, batch) -> tuple[float, torch.Tensor] | None:
        """Actor forward, ``mean(alpha log pi - min(Q1, Q2))`` and the actor's gradients (into ``.grad``; the
        critic gets none): ``(loss, log pi)``, or None where the autograd path must run. The loss's element-wise
        gradients are compiled calls of autograd's operations (``sac_actor_grads``), bit-identical."""
        agent = self.agent
        patterns = self.actor_patterns([agent.critic.q1, agent.critic.q2])
        if patterns is None:
            return None
        (actor,), critic = patterns
        compiled, workspace = kernels.compiled(), self.workspace
        obs = batch.obs.numpy()
        batch_size, obs_dim = obs.shape
        out, actor_saved = run_network(workspace, "actor", actor, obs)  # [2A, B]
        acts = out.shape[0] // 2
        noise = torch.randn((batch_size, acts), generator=agent.generator).numpy()
        action, pre, log_std = (workspace.array(f"actor.{name}", noise.shape) for name in ("action", "pre", "std"))
        logp = np.empty(batch_size, np.float32)  # outlives the call: the temperature step's
        clamp = agent.actor.log_std_map == "clamp"
        gaussian.forward(out, noise, clamp, action, logp, pre, log_std)
        pairs = workspace.joined("actor.x", obs, action)
        q1, q1_saved = run_network(workspace, "actor.q1", critic[0], pairs)
        q2, q2_saved = run_network(workspace, "actor.q2", critic[1], pairs)
        grad_q1, grad_q2 = workspace.array("actor.q1.grad", q1.shape), workspace.array("actor.q2.grad", q2.shape)
        grad_logp = workspace.array("actor.logp.grad", (batch_size,))
        loss = compiled.sac_actor_grads(q1[0], q2[0], logp, agent.alpha.numpy()[()], grad_q1[0], grad_q2[0], grad_logp)
        no_params = (False,) * (2 * len(critic[0].layers))
        _, grad_x1 = backward_arrays(critic[0], q1_saved, grad_q1, no_params, True)  # [in, B]
        _, grad_x2 = backward_arrays(critic[1], q2_saved, grad_q2, no_params, True)
        grad_action = workspace.array("actor.action.grad", noise.shape)
        compiled.summed_rows_transposed(grad_x1, grad_x2, obs_dim, grad_action)
        grad_out = workspace.array("actor.out.grad", out.shape)
        gaussian.backward(out, noise, clamp, action, pre, log_std, grad_action, grad_logp, grad_out)
        store_grads(actor, actor_saved, grad_out)
        return loss, torch.from_numpy(logp)
