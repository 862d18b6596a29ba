"""Sparse networks in two compiled calls: the whole forward, the whole backward (``rlx2.sparse._numba``).

Why: even as one autograd operation (``rlx2.sparse.fused``) a sparse MLP's forward and
backward are about twenty PyTorch operations (products, ReLUs and their backward, gathers
of CSR values, gradient scatters, bias sums), each with its fixed cost and a pass over a
``[256, batch]`` tensor; at 95 % sparsity those costs, not the arithmetic, decide the
speed. Here the forward of all layers is one numba call (bias, products and ReLU per output
row while it is in cache) and the backward another (sampled weight gradients at the active
positions, bias gradients, the input gradient through each ReLU).

Every layer runs on its pattern (``NetworkPattern``): the active entries of a masked layer,
all entries of an unmasked one, read straight from the dense ``weight``. It is used for
networks with at least one CSR layer (dense networks keep MKL's dense products), never
for a backward that needs dense weight gradients (a topology update: ``rlx2.sparse.fused``
computes those), and only when the kernels are compiled (``rlx2.sparse.kernels``).
Weight gradients are dense tensors, zero off the pattern, as the CSR backend's are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from rlx2.sparse import kernels
from rlx2.sparse.backend import SparsePattern


class NetworkPattern:
    """The layers of one MLP as concatenated CSR patterns (built once per set of masks)."""

    def __init__(self, layers: Sequence) -> None:
        self.layers = list(layers)
        self.key = self.key_of(self.layers)
        crows, cols, flats, crows_t, cols_t, flats_t, meta = [], [], [], [], [], [], []
        rows = rows_t = entries = 0
        for layer in self.layers:
            out_features, in_features = layer.weight.shape
            if layer.mask is None:
                full = torch.ones(out_features, in_features, dtype=torch.bool)
                pattern = SparsePattern.of(full)
            else:
                pattern = layer.sparse_pattern()
            meta.append((rows, entries, out_features, in_features, rows_t))
            crows.append(pattern.crow)
            cols.append(pattern.col)
            flats.append(pattern.flat)
            crows_t.append(pattern.crow_t)
            cols_t.append(pattern.col_t)
            flats_t.append(pattern.flat_t)
            rows += out_features + 1
            rows_t += in_features + 1
            entries += len(pattern.col)
        self.meta = np.array(meta, dtype=np.int64)
        self.crow, self.crow_t = (torch.cat(c).to(torch.int32).numpy() for c in (crows, crows_t))
        self.col, self.col_t = (torch.cat(c).to(torch.int32).numpy() for c in (cols, cols_t))
        self.flat, self.flat_t = (torch.cat(c).to(torch.int64).numpy() for c in (flats, flats_t))
        self.hidden = sum(int(m[2]) for m in meta[:-1])
        self.in_features, self.out_features = int(meta[0][3]), int(meta[-1][2])
        self._views: tuple | None = None

    @staticmethod
    def key_of(layers: Sequence) -> tuple:
        """What the pattern depends on: each layer's mask tensor and its version."""
        return tuple((layer.mask, None if layer.mask is None else layer.mask._version) for layer in layers)

    def matches(self, layers: Sequence) -> bool:
        key = self.key_of(layers)
        return len(key) == len(self.key) and all(a[0] is b[0] and a[1] == b[1] for a, b in zip(key, self.key))

    def arrays(self) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
        """NumPy views of every weight (flat) and bias, refreshed if a parameter's storage moved."""
        pointers = tuple(t.data_ptr() for layer in self.layers for t in (layer.weight, layer.bias))
        if self._views is None or self._views[0] != pointers:
            weights = tuple(layer.weight.detach().view(-1).numpy() for layer in self.layers)
            biases = tuple(layer.bias.detach().numpy() for layer in self.layers)
            self._views = (pointers, weights, biases)
        return self._views[1], self._views[2]


def kernel_heads(patterns: Sequence[NetworkPattern], x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each network of ``patterns`` applied to ``x`` (``[..., in]``); one output ``[..., out]`` per network."""
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    params = [t for pattern in patterns for layer in pattern.layers for t in (layer.weight, layer.bias)]
    if torch.is_grad_enabled() and (x2.requires_grad or any(p.requires_grad for p in params)):
        outputs = _KernelMLP.apply(tuple(patterns), x2, *params)
    else:
        outputs = tuple(out for out, _ in _forward(patterns, x2))
    return tuple(out.reshape(*lead, out.shape[-1]) for out in outputs)


def _forward(patterns, x: torch.Tensor) -> list[tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]]:
    """Per network: its output ``[B, out]`` (a feature-major view) and what its backward needs."""
    x = x.detach()
    if x.dtype != torch.float32 or not x.is_contiguous():
        x = x.to(torch.float32).contiguous()
    batch = x.shape[0]
    compiled = kernels.compiled()
    results = []
    for pattern in patterns:
        xt = torch.empty(pattern.in_features, batch)
        hidden = torch.empty(pattern.hidden, batch)
        out = torch.empty(pattern.out_features, batch)
        weights, biases = pattern.arrays()
        compiled.mlp_forward(pattern.meta, pattern.crow, pattern.col, pattern.flat, weights, biases, x.numpy(),
                             xt.numpy(), hidden.numpy(), out.numpy())
        results.append((out.t(), (xt, hidden)))
    return results


_NONE = np.empty((0, 0), np.float32)


class _KernelMLP(torch.autograd.Function):
    """Forward and backward of ``kernel_heads`` (module docstring)."""

    @staticmethod
    def forward(ctx, patterns, x, *params):
        results = _forward(patterns, x)
        ctx.patterns, ctx.saved = patterns, [saved for _, saved in results]
        ctx.save_for_backward(*params)  # in-place changes before backward fail loudly
        ctx.set_materialize_grads(False)
        return tuple(out for out, _ in results)

    @staticmethod
    def backward(ctx, *grads):
        ctx.saved_tensors  # noqa: B018 (checks that no parameter changed in place)
        compiled = kernels.compiled()
        needs = ctx.needs_input_grad
        grad_x = None
        grad_params: list[torch.Tensor | None] = []
        offset = 2  # needs_input_grad: patterns, x, then weight and bias of every layer
        for pattern, (xt, hidden), grad in zip(ctx.patterns, ctx.saved, grads):
            count = 2 * len(pattern.layers)
            wanted = needs[offset:offset + count]
            offset += count
            if grad is None or not (any(wanted) or needs[1]):
                grad_params.extend([None] * count)
                continue
            need_weights = any(wanted)
            batch = grad.shape[0]
            shapes = [tuple(layer.weight.shape) for layer in pattern.layers]
            if need_weights:
                weight_grads = tuple(torch.empty(shape) for shape in shapes)
                bias_grads = tuple(torch.empty(shape[0]) for shape in shapes)
            else:
                weight_grads = bias_grads = tuple(torch.empty(0) for _ in shapes)
            gx = torch.empty(batch, pattern.in_features) if needs[1] else None
            weights, _ = pattern.arrays()
            g = grad.reshape(batch, pattern.out_features).t().contiguous()
            compiled.mlp_backward(pattern.meta, pattern.crow, pattern.col, pattern.flat, pattern.crow_t,
                                  pattern.col_t, pattern.flat_t, weights, xt.numpy(),
                                  hidden.numpy(), g.numpy(), tuple(t.view(-1).numpy() for t in weight_grads),
                                  tuple(t.numpy() for t in bias_grads), _NONE if gx is None else gx.numpy(),
                                  need_weights, gx is not None)
            for i in range(len(pattern.layers)):
                grad_params.append(weight_grads[i] if wanted[2 * i] else None)
                grad_params.append(bias_grads[i] if wanted[2 * i + 1] else None)
            if gx is not None:
                grad_x = gx if grad_x is None else grad_x + gx
        return (None, grad_x, *grad_params)
