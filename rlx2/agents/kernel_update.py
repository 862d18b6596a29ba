"""TD3's and SAC's updates on the compiled kernels without autograd: the gradients written out.

Why: at 98/95 % sparsity the kernels' arithmetic was about half of an update's time; the
rest was the machinery around it (module calls, the autograd graph and its engine, loss
operations, checks repeated on every call). Where every network of an update trains on the
compiled kernels (``rlx2.sparse.compiled_mlp``), this module runs the same computation as
direct calls: forward kernels, the loss gradients by the same formulas autograd applies
(``mse_loss_backward``, ``tanh_backward``, a mean's ``1/B``, ``minimum``'s split of ties,
SAC's squashed Gaussian backward), backward kernels, and the gradients stored in each
parameter's ``.grad`` for the controller's (unchanged) optimiser step. Results are
bit-identical to the autograd path (``tests/test_kernel_update.py``), which still runs
every step this does not take: a network off the kernels, a backward that must give dense
weight gradients (the step before a topology update), and an actor loss whose critic's
next step is a topology update (there the autograd path runs the critic on PyTorch and,
under the reference setting, carries its gradient into that update).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rlx2.agents.gaussian_kernel import sample, sample_backward
from rlx2.sparse.compiled_mlp import NetworkPattern, network_backward, network_forward
from rlx2.sparse.layers import MaskedMLP

_MEAN = 1  # torch's reduction enum: 'mean'
_ONE = torch.tensor(1.0)


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


def forward(patterns: Sequence[NetworkPattern], x: torch.Tensor) -> tuple[list[torch.Tensor], list[tuple]]:
    """Every network on ``x`` (``[B, in]``): outputs ``[B, out]`` and what each backward needs."""
    results = network_forward(patterns, x)
    return [out for out, _ in results], [saved for _, saved in results]


def store_parameter_grads(pattern: NetworkPattern, saved: tuple, grad: torch.Tensor) -> None:
    """Backward of one network from ``grad`` (of its output) into every parameter's ``.grad``."""
    wanted = (True,) * (2 * len(pattern.layers))
    head, kernel, _ = network_backward(pattern, saved, grad, wanted, False)
    for (weight, bias), weight_grad, bias_grad in zip(pattern.params, (head + kernel)[0::2], (head + kernel)[1::2]):
        weight.grad, bias.grad = weight_grad, bias_grad


def input_grad(pattern: NetworkPattern, saved: tuple, grad: torch.Tensor) -> torch.Tensor:
    """The gradient of one network's input (``[B, in]``) from ``grad`` of its output; no parameter's."""
    _, _, grad_x = network_backward(pattern, saved, grad, (False,) * (2 * len(pattern.layers)), True)
    return grad_x


def mse_grad(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The gradient of ``mse_loss(prediction, target)`` (mean) with respect to ``prediction``."""
    return torch.ops.aten.mse_loss_backward(_ONE, prediction, target, _MEAN)


def mean_grad(values: torch.Tensor, scale: torch.Tensor = _ONE) -> torch.Tensor:
    """The gradient of ``scale * values.mean()`` with respect to ``values``, as the mean's backward computes it."""
    return scale.div(values.numel()).expand_as(values)


def minimum_grads(grad: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of ``torch.minimum(a, b)``'s inputs from its output's (a tie gives each half)."""
    split = torch.where(a == b, grad / 2, grad)
    return split.masked_fill(a > b, 0), split.masked_fill(a < b, 0)


class KernelUpdate:
    """The critic step both agents share; ``actor_loss`` is each agent's (module docstring)."""

    def __init__(self, agent) -> None:
        self.agent = agent

    @torch.no_grad()  # the kernels' inputs are plain arrays (a dense first layer runs on MKL)
    def critic_loss(self, batch, target: torch.Tensor) -> float | None:
        """Critic forward, loss and gradients (into ``.grad``), or None where the autograd path must run."""
        agent = self.agent
        critic = agent.critic
        patterns = kernel_patterns([critic.q1, critic.q2], backward=True)
        if patterns is None:
            return None
        (q1, q2), saved = forward(patterns, torch.cat([batch.obs, batch.act], dim=-1))
        q1, q2 = q1.squeeze(-1), q2.squeeze(-1)
        loss = torch.nn.functional.mse_loss(q1, target) + torch.nn.functional.mse_loss(q2, target)
        agent.laps.lap("critic forward + loss")
        for pattern, state, q in zip(patterns, saved, (q1, q2)):
            store_parameter_grads(pattern, state, mse_grad(q, target).unsqueeze(-1))
        return loss.item()

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
    def actor_loss(self, batch) -> float | None:
        """Actor forward, ``-mean Q1(s, pi(s))`` and the actor's gradients (into ``.grad``; the critic gets
        none), or None where the autograd path must run."""
        patterns = self.actor_patterns([self.agent.critic.q1])
        if patterns is None:
            return None
        (actor,), (q1,) = patterns
        (raw,), (actor_saved,) = forward([actor], batch.obs)
        action = torch.tanh(raw)
        (q,), (q_saved,) = forward([q1], torch.cat([batch.obs, action], dim=-1))
        loss = -q.mean()
        grad_action = input_grad(q1, q_saved, mean_grad(q, -_ONE).contiguous())[:, batch.obs.shape[-1]:]
        store_parameter_grads(actor, actor_saved, torch.ops.aten.tanh_backward(grad_action, action))
        return loss.item()


class SACKernelUpdate(KernelUpdate):
    @torch.no_grad()
    def actor_loss(self, batch) -> tuple[float, torch.Tensor] | None:
        """Actor forward, ``mean(alpha log pi - min(Q1, Q2))`` and the actor's gradients (into ``.grad``; the
        critic gets none): ``(loss, log pi)``, or None where the autograd path must run."""
        agent = self.agent
        patterns = self.actor_patterns([agent.critic.q1, agent.critic.q2])
        if patterns is None:
            return None
        (actor,), critic = patterns
        (out,), (actor_saved,) = forward([actor], batch.obs)
        noise = torch.randn((out.shape[0], out.shape[1] // 2), generator=agent.generator, dtype=out.dtype)
        action, logp, sample_saved = sample(out, noise, agent.actor.log_std_map == "clamp")
        (q1, q2), saved = forward(critic, torch.cat([batch.obs, action], dim=-1))
        q1, q2 = q1.squeeze(-1), q2.squeeze(-1)
        alpha = agent.alpha
        inner = alpha * logp - torch.minimum(q1, q2)
        grad = mean_grad(inner)
        grad_q1, grad_q2 = minimum_grads(-grad, q1, q2)
        grad_x = input_grad(critic[0], saved[0], grad_q1.unsqueeze(-1))
        grad_x = grad_x + input_grad(critic[1], saved[1], grad_q2.unsqueeze(-1))
        grad_out = sample_backward(sample_saved, grad_x[:, batch.obs.shape[-1]:], grad * alpha)
        store_parameter_grads(actor, actor_saved, grad_out)
        return inner.mean().item(), logp
