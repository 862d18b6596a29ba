"""The networks of spec section 2, built from ``MaskedLinear`` so any layer can be sparse.

Actions are normalised to ``[-1, 1]`` everywhere inside the agent (tanh outputs); the
training loop maps them to the environment's bounds. For the symmetric MuJoCo bounds this
equals the reference's "scale by max action".
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import rlx2.sparse.kernels as kernels
from rlx2.sparse.layers import MaskedLinear, MaskedMLP, masked_layers, mlp_heads

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int) -> MaskedMLP:
    """``in -> hidden[0] -> ... -> out`` with ReLU between layers and none after the last."""
    widths = [in_dim, *hidden, out_dim]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(MaskedLinear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return MaskedMLP(*layers)


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

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The action for one observation (``[obs]`` in, ``[act]`` out), through ``MaskedMLP.infer`` when it can."""
        raw = self.net.infer(obs)
        if raw is None:
            with torch.no_grad():
                return self(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)).squeeze(0).numpy()
        return torch.tanh(torch.from_numpy(raw)).numpy()


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

    def act(self, obs: np.ndarray) -> np.ndarray:
        """``tanh(mean)`` for one observation (``[obs]`` in, ``[act]`` out), through ``MaskedMLP.infer`` when it can."""
        raw = self.net.infer(obs)
        if raw is None:
            with torch.no_grad():
                return self(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)).squeeze(0).numpy()
        return torch.tanh(torch.from_numpy(raw[: len(raw) // 2])).numpy()

    def sample(self, obs: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action and its log-probability (summed over action dimensions).

        Where the network trains on the compiled kernels, the steps after it are one compiled
        operation too (``rlx2.agents.gaussian_kernel``, the same formulas and noise).
        """
        out = self.net(obs)
        if out.dim() == 2 and self.net.on_kernels():
            from rlx2.agents.gaussian_kernel import SquashedGaussian

            noise = torch.randn((out.shape[0], out.shape[1] // 2), generator=generator, dtype=out.dtype)
            return SquashedGaussian.apply(out, noise, self.log_std_map == "clamp")
        mean, raw = out.chunk(2, dim=-1)
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
        q1, q2 = mlp_heads([self.q1, self.q2], torch.cat([obs, act], dim=-1))  # both heads as one operation
        return q1.squeeze(-1), q2.squeeze(-1)

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
    """Polyak averaging ``target <- (1 - tau) target + tau online``, parameters paired by name once.

    For a network on the compiled kernels (one with a CSR layer, ``rlx2.sparse.kernels``) it
    is one kernel call, and a masked weight moves at its active entries only: elsewhere both
    weights are zero (the target shares the online mask, the controller never writes
    inactive entries), so a dense average would change nothing there.
    """

    def __init__(self, target: nn.Module, online: nn.Module, tau: float) -> None:
        online_params = dict(online.named_parameters())
        self.targets = [p for _, p in target.named_parameters()]
        self.onlines = [online_params[name] for name, _ in target.named_parameters()]
        self.tau = tau
        online_layers = dict(masked_layers(online))
        self.layers = [(online_layers[name], layer) for name, layer in masked_layers(target)]
        self._weights = {id(layer.weight): (online_layers[name], layer) for name, layer in masked_layers(target)}
        self._arrays: tuple | None = None

    def compiled(self) -> bool:
        return kernels.compiled() is not None and any(online.uses_csr() for online, _ in self.layers)

    @torch.no_grad()
    def __call__(self) -> None:
        if not self.compiled():
            torch._foreach_lerp_(self.targets, self.onlines, self.tau)
            return
        pointers = tuple((t.data_ptr(), o.data_ptr()) for t, o in zip(self.targets, self.onlines))
        masks = [(online._buffers["mask"], target._buffers["mask"]) for online, target in self.layers]
        versions = tuple(None if online is None else online._version for online, _ in masks)
        cached = self._arrays
        if (cached is None or cached[0] != pointers or cached[2] != versions
                or any(a is not c or b is not d for (a, b), (c, d) in zip(masks, cached[1]))):
            positions = []
            for target in self.targets:
                online, target_layer = self._weights.get(id(target), (None, None))
                shared = online is not None and online.mask is not None and target_layer.mask is online.mask
                positions.append(online.sparse_pattern().flat.numpy() if shared else None)
            self._arrays = (pointers, masks, versions, [kernels.flat_view(t) for t in self.targets],
                            [kernels.flat_view(o) for o in self.onlines], positions)
        targets, onlines, positions = self._arrays[3:]
        kernels.lerp(targets, onlines, positions, self.tau)
