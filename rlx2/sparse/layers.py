"""The masked linear layer: the one place where a weight mask meets the compute.

``MaskedLinear`` keeps its mask as an explicit boolean buffer (``None`` for a dense
layer), so masks travel with ``state_dict`` and checkpoints under a predictable name
(``<layer>.mask``). Masked weights are kept at exactly zero by ``MaskController``, which
lets the reference backend run a plain dense matmul: its output and its dense
weight gradient (which RigL's grow step needs) are exact. ``forward`` picks the compute
backend (``rlx2.sparse.backend``: masked-dense or CSR, by density under ``auto``);
methods and agents only ever read ``weight``, ``bias`` and ``mask``, so no backend choice
reaches them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

import rlx2.sparse.kernels as kernels
from rlx2.sparse.backend import BACKENDS, CSR_MAX_DENSITY, CsrWeights, SparsePattern, dense_linear
from rlx2.sparse.compiled_mlp import NetworkPattern, kernel_heads
from rlx2.sparse.fused import fused_heads
from rlx2.sparse.distribution import active_counts, layer_densities


class MaskedLinear(nn.Linear):
    """``nn.Linear`` whose weight may carry a boolean mask (``mask is None``: dense)."""

    mask: torch.Tensor | None
    #: Compute backend (``rlx2.sparse.backend.BACKENDS``); results agree within float tolerance.
    backend: str = "auto"
    #: Set by ``MaskController`` before the backward of a topology update, which needs the
    #: dense weight gradient (the CSR backend otherwise computes only active entries).
    needs_dense_grad: bool = False

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias)
        self.register_buffer("mask", None)
        self._pattern: tuple[torch.Tensor, int, SparsePattern] | None = None  # (mask, its version, pattern)
        self._csr: CsrWeights | None = None  # persistent CSR tensors on the current pattern

    def __getstate__(self) -> dict:
        """Copies and pickles leave out the CSR caches: they are rebuilt on demand (and sparse tensors can't be copied)."""
        state = self.__dict__.copy()
        state["_pattern"] = state["_csr"] = None
        return state

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """PyTorch's default Linear initialisation, drawn from ``generator`` when given."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=generator)
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            nn.init.uniform_(self.bias, -bound, bound, generator=generator)
        self._zero_masked()

    def set_mask(self, mask: torch.Tensor) -> None:
        """Install ``mask`` (same shape as the weight) and zero the weights it removes."""
        if mask.shape != self.weight.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} != weight shape {tuple(self.weight.shape)}")
        self.mask = mask.to(dtype=torch.bool, device=self.weight.device).clone()
        self._zero_masked()

    def _zero_masked(self) -> None:
        if getattr(self, "mask", None) is not None:
            with torch.no_grad():
                self.weight.mul_(self.mask)

    @property
    def density(self) -> float:
        """Fraction of active weights (1.0 for a dense layer)."""
        if self.mask is None:
            return 1.0
        return float(self.mask.sum()) / self.mask.numel()

    def sparse_pattern(self) -> SparsePattern | None:
        """The mask's CSR index structures, rebuilt only when the mask changed (None: dense)."""
        mask = self._buffers["mask"]  # not ``self.mask``: nn.Module's attribute lookup, on every update
        if mask is None:
            return None
        cached = self._pattern
        # Holding the mask itself (not its id) means a later tensor can never be mistaken for it.
        if cached is None or cached[0] is not mask or cached[1] != mask._version:
            cached = self._pattern = (mask, mask._version, SparsePattern.of(mask))
        return cached[2]

    def csr_pattern(self) -> SparsePattern | None:
        """The pattern ``forward`` computes with, or None when it takes the masked-dense path."""
        if self.backend == "masked-dense" or self._buffers["mask"] is None:
            return None
        pattern = self.sparse_pattern()
        return pattern if self.backend == "csr" or pattern.density <= CSR_MAX_DENSITY else None

    def uses_csr(self) -> bool:
        """Whether ``forward`` takes the CSR path for the current mask and backend."""
        return self.csr_pattern() is not None

    def csr_weights(self) -> CsrWeights | None:
        """The persistent CSR tensors ``forward`` computes with, or None on the dense path."""
        pattern = self.csr_pattern()
        if pattern is None:
            return None
        if self._csr is None or self._csr.pattern is not pattern:
            self._csr = CsrWeights(pattern)
        return self._csr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.uses_csr():
            return fused_heads([[self]], x)[0]
        # masked-dense: inactive weights are exactly zero
        y = dense_linear(x.reshape(-1, self.in_features), self.weight, self.bias)
        return y.reshape(*x.shape[:-1], self.out_features)


class MaskedMLP(nn.Sequential):
    """``MaskedLinear`` layers with a ReLU between consecutive ones (none after the last).

    Unless a layer is on the ``masked-dense`` reference backend, the whole network runs as
    one operation: compiled (``rlx2.sparse.compiled_mlp``) when it has a CSR layer and the
    kernels are available, else in PyTorch (``rlx2.sparse.fused``). Submodule names and
    ``state_dict`` keys are those of the plain ``nn.Sequential`` (``0.weight``, ``0.mask``,
    ``2.weight``, ...).
    """

    def __getstate__(self) -> dict:
        """Copies and pickles leave out the caches of the fused paths (rebuilt on demand)."""
        state = self.__dict__.copy()
        state.pop("_network_pattern", None)
        state.pop("_structure", None)
        return state

    def fused_layers(self) -> list[MaskedLinear] | None:
        """The linear layers when the fused path applies, else None."""
        modules = tuple(self._modules.values())
        cached = self.__dict__.get("_structure")
        if cached is None or len(cached[0]) != len(modules) or any(a is not b for a, b in zip(cached[0], modules)):
            linear = list(modules[0::2])
            plain = (len(modules) % 2 == 1 and all(isinstance(m, MaskedLinear) for m in linear)
                     and all(isinstance(m, nn.ReLU) for m in modules[1::2]))
            cached = self.__dict__["_structure"] = (modules, linear if plain else None)
        linear = cached[1]
        if linear is None or any(layer.backend == "masked-dense" for layer in linear):
            return None
        return linear

    def network_pattern(self, layers: list[MaskedLinear], backward: bool) -> NetworkPattern | None:
        """The compiled path's view of ``layers``, or None where it does not apply (module docstring)."""
        if kernels.compiled() is None:
            return None
        cached = self.__dict__.get("_network_pattern")
        if cached is None or not cached.valid_for(layers):
            cached = self.__dict__["_network_pattern"] = NetworkPattern(layers)
        if not cached.usable or (backward and any(layer.needs_dense_grad for layer in layers)):
            return None
        return cached

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mlp_heads([self], x)[0]

    def on_kernels(self) -> bool:
        """Whether this network runs on the compiled kernels (``rlx2.sparse.compiled_mlp``)."""
        layers = self.fused_layers()
        return layers is not None and self.network_pattern(layers, backward=False) is not None

    @torch.no_grad()
    def infer(self, x: np.ndarray) -> np.ndarray | None:
        """The output for one input vector without autograd or module calls (acting: 20-40 us where the
        module path takes 60-150), on the compiled kernels or as matrix-vector products on the dense
        weights (masked entries are exactly zero); None for a network the fused paths do not take."""
        layers = self.fused_layers()
        if layers is None or any(layer.bias is None for layer in layers):
            return None
        pattern = self.network_pattern(layers, backward=False)
        if pattern is not None:
            return pattern.infer(x)
        h = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        for i, layer in enumerate(layers):
            h = torch.addmv(layer.bias, layer.weight, h)
            if i < len(layers) - 1:
                h.relu_()
        return h.numpy()


def mlp_heads(heads: list[MaskedMLP], x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Every network of ``heads`` applied to the same ``x``, as one operation when all can fuse."""
    layers = [head.fused_layers() for head in heads]
    if any(plan is None for plan in layers):
        return tuple(nn.Sequential.forward(head, x) if plan is None else mlp_heads([head], x)[0]
                     for head, plan in zip(heads, layers))
    backward = torch.is_grad_enabled()
    patterns = [head.network_pattern(plan, backward) for head, plan in zip(heads, layers)]
    if all(pattern is not None for pattern in patterns):
        return kernel_heads(patterns, x)
    return fused_heads(layers, x)


def set_backend(module: nn.Module, backend: str) -> None:
    """Make every ``MaskedLinear`` of ``module`` compute with ``backend``."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown sparse backend {backend!r} (choose from {', '.join(BACKENDS)})")
    for _, layer in masked_layers(module):
        layer.backend = backend


def masked_layers(module: nn.Module) -> Iterator[tuple[str, MaskedLinear]]:
    """Every ``MaskedLinear`` in ``module`` with its qualified name, in registration order."""
    for name, child in module.named_modules():
        if isinstance(child, MaskedLinear):
            yield name, child


def random_mask(shape: tuple[int, int], n_active: int, generator: torch.Generator) -> torch.Tensor:
    """A boolean mask of ``shape`` with exactly ``n_active`` uniformly chosen True entries."""
    numel = shape[0] * shape[1]
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[torch.randperm(numel, generator=generator)[:n_active]] = True
    return mask.view(shape)


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """A boolean mask, shaped like ``scores``, of its ``k`` largest entries (ties: the lower flat index wins)."""
    order = torch.sort(scores.detach().reshape(-1), descending=True, stable=True).indices
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    mask[order[:k]] = True
    return mask.view(scores.shape)


def magnitude_mask(weight: torch.Tensor, n_active: int) -> torch.Tensor:
    """The mask keeping ``weight``'s ``n_active`` largest-magnitude entries (the reference's initial mask)."""
    return top_k_mask(weight.abs(), n_active)


#: How ``sparsify`` chooses a layer's initial active weights (``RunConfig.mask_init``).
from rlx2.config import MASK_INITS  # noqa: E402 - the setting's choices, listed once


def sparsify(module: nn.Module, sparsity: float, generator: torch.Generator, distribution: str = "er",
             init: str = "magnitude") -> list[float]:
    """Give every ``MaskedLinear`` of ``module`` a mask; the layers share one budget.

    Densities come from ``distribution`` over all of the module's masked layers (so a twin-Q
    critic is one network); each layer keeps ``active_counts`` weights. ``init`` picks which:
    ``magnitude`` (the reference) keeps the largest entries of the freshly initialised weights,
    so it must run after initialisation and draws nothing from ``generator``; ``random``
    chooses them uniformly. Returns the per-layer densities that were asked for.
    """
    if init not in MASK_INITS:
        raise ValueError(f"mask_init={init!r}: must be one of {', '.join(MASK_INITS)}")
    layers = [layer for _, layer in masked_layers(module)]
    shapes = [tuple(layer.weight.shape) for layer in layers]
    densities = layer_densities(shapes, sparsity, distribution)
    for layer, shape, n_active in zip(layers, shapes, active_counts(shapes, densities)):
        if init == "magnitude":
            layer.set_mask(magnitude_mask(layer.weight, n_active))
        else:
            layer.set_mask(random_mask(shape, n_active, generator))
    return densities
