"""The networks of spec section 2, built from ``MaskedLinear`` so any layer can be sparse.

Actions are normalised to ``[-1, 1]`` everywhere inside the agent (tanh outputs); the
training loop maps them to the environment's bounds. For the symmetric MuJoCo bounds this
equals the reference's "scale by max action".
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

from rlx2.sparse.layers import MaskedLinear, masked_layers

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int) -> nn.Sequential:
    """``in -> hidden[0] -> ... -> out`` with ReLU between layers and none after the last."""
    widths = [in_dim, *hidden, out_dim]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(MaskedLinear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@torch.no_grad()
def initialise(module: nn.Module, generator: torch.Generator, scheme: str = "default") -> None:
    """Re-draw every layer's parameters from ``generator`` (no global RNG is touched).

    ``default`` is PyTorch's Linear initialisation (reference TD3); ``orthogonal`` is
    orthogonal weights with zero biases (reference SAC).
    """
    for _, layer in masked_layers(module):
        if scheme == "default":
            layer.reset_parameters(generator)
        elif scheme == "orthogonal":
            nn.init.orthogonal_(layer.weight, generator=generator)
            if layer.bias is not None:
                layer.bias.zero_()
        else:
            raise ValueError(f"unknown initialisation scheme {scheme!r}")


class DeterministicActor(nn.Module):
    """TD3 actor: ``obs -> hidden -> act`` with a tanh output in [-1, 1]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))


class GaussianActor(nn.Module):
    """SAC actor: ``obs -> hidden -> 2*act`` (mean, log-std in [-5, 2]), tanh-squashed.

    ``log_std`` maps the raw output into [-5, 2]: ``tanh`` (the reference) as
    ``-5 + 3.5 (tanh(raw) + 1)``, smooth, with std e^-1.5 = 0.22 at raw 0; ``clamp`` by
    clamping raw, with std 1 at raw 0.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], log_std: str = "tanh") -> None:
        super().__init__()
        from rlx2.config import SAC_LOG_STDS  # the setting's choices, listed once

        if log_std not in SAC_LOG_STDS:
            raise ValueError(f"sac_log_std={log_std!r}: must be tanh or clamp")
        self.net = mlp(obs_dim, hidden, 2 * act_dim)
        self.log_std_map = log_std

    def log_std(self, raw: torch.Tensor) -> torch.Tensor:
        if self.log_std_map == "tanh":
            return LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(raw) + 1.0)
        return raw.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action ``tanh(mean)``."""
        mean, _ = self.net(obs).chunk(2, dim=-1)
        return torch.tanh(mean)

    def sample(self, obs: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action and its log-probability (summed over action dimensions)."""
        mean, raw = self.net(obs).chunk(2, dim=-1)
        log_std = self.log_std(raw)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        pre_tanh = mean + log_std.exp() * noise
        action = torch.tanh(pre_tanh)
        # log N(u; mean, std) - log(1 - tanh(u)^2), the latter in its stable softplus form.
        log_prob = -0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
        log_prob = log_prob - 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))
        return action, log_prob.sum(-1)


class TwinQ(nn.Module):
    """Two independent Q networks ``obs+act -> hidden -> 1`` (one network for sparsity)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.q1 = mlp(obs_dim + act_dim, hidden, 1)
        self.q2 = mlp(obs_dim + act_dim, hidden, 1)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, act], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def first(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Q1 only (TD3's actor loss)."""
        return self.q1(torch.cat([obs, act], dim=-1)).squeeze(-1)


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Let gradients flow *through* ``module`` without computing its parameters' gradients.

    The actor losses differentiate through the critic; the critic's own weight gradients
    from that pass would be discarded (its next update zeroes them), so skipping them saves
    a third of the critic's backward cost without changing any result.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class SoftUpdate:
    """Polyak averaging ``target <- (1 - tau) target + tau online``, parameters paired by name once."""

    def __init__(self, target: nn.Module, online: nn.Module, tau: float) -> None:
        online_params = dict(online.named_parameters())
        self.targets = [p for _, p in target.named_parameters()]
        self.onlines = [online_params[name] for name, _ in target.named_parameters()]
        self.tau = tau

    @torch.no_grad()
    def __call__(self) -> None:
        torch._foreach_lerp_(self.targets, self.onlines, self.tau)
