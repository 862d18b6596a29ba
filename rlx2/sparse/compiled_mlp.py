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
Unlike ``rlx2.sparse.fused`` it does not save the parameters for backward: the kernels and
``torch.optim.Adam`` change weights in place without bumping their version counters, so
that check would catch nothing here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

import rlx2.sparse.kernels as kernels
from rlx2.sparse.backend import SparsePattern


class NetworkPattern:
    """One MLP as the compiled path runs it: its layers' CSR patterns, concatenated.

    Every layer runs in the kernels on its pattern, the input layer too (which the
    layer-density distribution leaves 30-100 % dense). Earlier a first layer more than half
    dense ran as MKL's dense product instead, faster on calls repeated alone; inside real
    updates the kernels were 1.04x per TD3 update at 90/85 % (an MKL call there pays its
    dispatch cold, between kernels; README "Speed").
    Built once per set of masks and backends (``valid_for`` checks them cheaply on every
    call), the index arrays only for networks the compiled path takes (``usable``).
    """

    def __init__(self, layers: Sequence) -> None:
        self.layers = list(layers)
        self.params = [(layer._parameters["weight"], layer._parameters["bias"]) for layer in self.layers]
        self.masks = [layer._buffers["mask"] for layer in self.layers]
        self.versions = [None if mask is None else mask._version for mask in self.masks]
        self.backends = [layer.backend for layer in self.layers]
        #: The compiled path takes networks with a CSR layer (dense ones keep MKL's dense products) and biases.
        self.usable = any(layer.uses_csr() for layer in self.layers) and all(b is not None for _, b in self.params)
        self.in_features, self.out_features = self.layers[0].in_features, self.layers[-1].out_features
        self.hidden = sum(layer.out_features for layer in self.layers[:-1])
        self._indices: tuple | None = None
        self._views: tuple | None = None
        self._grads: tuple | None = None
        if self.usable:
            self.indices()

    def valid_for(self, layers: Sequence) -> bool:
        """Whether ``layers`` are still the layers, masks (unchanged in place) and backends this was built from."""
        if len(layers) != len(self.layers):
            return False
        for layer, mine, mask, version, backend, (weight, bias) in zip(
                layers, self.layers, self.masks, self.versions, self.backends, self.params):
            current = layer._buffers["mask"]
            if (layer is not mine or current is not mask or (mask is not None and mask._version != version)
                    or layer.backend != backend or layer._parameters["weight"] is not weight
                    or layer._parameters["bias"] is not bias):
                return False
        return True

    def indices(self) -> tuple:
        """``(meta, crow, col, flat, crow_t, col_t, flat_t)`` of the layers (``rlx2.sparse._numba``)."""
        if self._indices is None:
            parts: list[list[torch.Tensor]] = [[] for _ in range(6)]
            meta = []
            rows = rows_t = entries = 0
            for layer, mask in zip(self.layers, self.masks):
                out_features, in_features = layer.weight.shape
                if mask is None:
                    pattern = SparsePattern.of(torch.ones(out_features, in_features, dtype=torch.bool))
                else:
                    pattern = layer.sparse_pattern()
                meta.append((rows, entries, out_features, in_features, rows_t))
                for part, tensor in zip(parts, (pattern.crow, pattern.col, pattern.flat, pattern.crow_t,
                                                pattern.col_t, pattern.flat_t)):
                    part.append(tensor)
                rows += out_features + 1
                rows_t += in_features + 1
                entries += len(pattern.col)
            crow, col, flat, crow_t, col_t, flat_t = (
                torch.cat(part).to(torch.int64 if i in (2, 5) else torch.int32).numpy() for i, part in enumerate(parts))
            self._indices = (np.array(meta, dtype=np.int64), crow, col, flat, crow_t, col_t, flat_t)
        return self._indices

    def arrays(self) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
        """NumPy views of the layers' weights (flat) and biases, refreshed if a parameter's storage moved."""
        pointers = tuple(t.data_ptr() for pair in self.params for t in pair)
        if self._views is None or self._views[0] != pointers:
            weights = tuple(weight.detach().view(-1).numpy() for weight, _ in self.params)
            biases = tuple(bias.detach().numpy() for _, bias in self.params)
            self._views = (pointers, weights, biases)
        return self._views[1], self._views[2]

    def grad_buffers(self) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], list[torch.Tensor]]:
        """Gradient arrays of the kernel layers' weights (flat) and biases kept for this pattern, and their
        tensors (weight, bias, weight, ...; weights in their parameter's shape), for a caller that takes each
        backward's gradients before the next (``rlx2.agents.kernel_update``).

        Why: a new weight-gradient array per backward had to be zeroed whole (256 KB for a 256x256 layer)
        to write its few active entries. These are zeroed once; the kernel writes only the pattern's
        positions, which are the same on every call (1.11x per TD3 update at 90/85 %, README "Speed").
        """
        if self._grads is None:
            weight_grads = tuple(np.zeros(w.numel(), np.float32) for w, _ in self.params)
            bias_grads = tuple(np.zeros(b.numel(), np.float32) for _, b in self.params)
            tensors = []
            for (weight, _), weight_grad, bias_grad in zip(self.params, weight_grads, bias_grads):
                tensors += [torch.from_numpy(weight_grad).view(weight.shape), torch.from_numpy(bias_grad)]
            self._grads = (weight_grads, bias_grads, tensors)
        return self._grads

    def infer(self, x: np.ndarray) -> np.ndarray:
        """The output ``[out]`` for one input ``[in]`` (for one column, ``[1, in]`` and ``[in, 1]`` share memory);
        under ``torch.no_grad`` (``MaskedMLP.infer``)."""
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, 1)
        hidden = np.empty((self.hidden, 1), np.float32)
        out = np.empty((self.out_features, 1), np.float32)
        weights, biases = self.arrays()
        kernels.compiled().mlp_forward(*self.indices()[:4], weights, biases, x, _NONE, hidden, out)
        return out.reshape(-1)


def kernel_heads(patterns: Sequence[NetworkPattern], x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each network of ``patterns`` applied to ``x`` (``[..., in]``); one output ``[..., out]`` per network."""
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    if torch.is_grad_enabled() and (x2.requires_grad or any(w.requires_grad or b.requires_grad
                                                            for pattern in patterns for w, b in pattern.params)):
        params = [t for pattern in patterns for pair in pattern.params for t in pair]
        outputs = _KernelMLP.apply(tuple(patterns), x2, *params)
    else:
        outputs = tuple(out for out, _ in network_forward(patterns, x2))
    if len(lead) == 1:
        return outputs
    return tuple(out.reshape(*lead, out.shape[-1]) for out in outputs)


_NONE = np.empty((0, 0), np.float32)


def network_forward(patterns, x: torch.Tensor) -> list[tuple[torch.Tensor, tuple]]:
    """Per network: its output ``[B, out]`` (a feature-major view) and what its backward needs."""
    x = x.detach()
    if x.dtype != torch.float32 or not x.is_contiguous():
        x = x.to(torch.float32).contiguous()
    x_array = x.numpy()
    results = []
    for pattern in patterns:
        out, saved = forward_arrays(pattern, x_array)
        results.append((torch.from_numpy(out).t(), saved))
    return results


def forward_arrays(pattern: NetworkPattern, x: np.ndarray, into=None) -> tuple[np.ndarray, tuple]:
    """One network on ``x`` (``[B, in]``, float32, C-contiguous): the output ``[out, B]`` and what its backward
    needs. ``into``: ``(x_in, hidden, out)`` arrays to write into (a caller reusing them from step to step),
    else new ones."""
    batch = x.shape[0]
    if into is None:
        x_in = np.empty((pattern.in_features, batch), np.float32)
        hidden, out = np.empty((pattern.hidden, batch), np.float32), np.empty((pattern.out_features, batch), np.float32)
    else:
        x_in, hidden, out = into
    weights, biases = pattern.arrays()
    kernels.compiled().mlp_forward(*pattern.indices()[:4], weights, biases, x_in, x, hidden, out)
    return out, (x_in, hidden)


_NO_GRADS = {}  # number of layers -> a tuple of empty arrays (no weight gradients wanted)


class _KernelMLP(torch.autograd.Function):
    """Forward and backward of ``kernel_heads`` (module docstring)."""

    @staticmethod
    def forward(ctx, patterns, x, *params):
        results = network_forward(patterns, x)
        ctx.patterns, ctx.saved = patterns, [saved for _, saved in results]
        ctx.set_materialize_grads(False)
        return tuple(out for out, _ in results)

    @staticmethod
    def backward(ctx, *grads):
        needs = ctx.needs_input_grad
        grad_x = None
        grad_params: list[torch.Tensor | None] = []
        offset = 2  # needs_input_grad: patterns, x, then weight and bias of every layer
        for pattern, saved, grad in zip(ctx.patterns, ctx.saved, grads):
            count = 2 * len(pattern.layers)
            wanted = needs[offset:offset + count]
            offset += count
            if grad is None or not (any(wanted) or needs[1]):
                grad_params.extend([None] * count)
                continue
            param_grads, gx = network_backward(pattern, saved, grad, wanted, needs[1])
            grad_params.extend(param_grads)
            if gx is not None:
                grad_x = gx if grad_x is None else grad_x + gx
        return (None, grad_x, *grad_params)


def network_backward(pattern: NetworkPattern, saved: tuple, grad: torch.Tensor, wanted: tuple, need_x: bool):
    """One network's parameter gradients (``wanted`` ones) and, with ``need_x``, its input's (``[B, in]``)."""
    g = np.ascontiguousarray(grad.detach().reshape(grad.shape[0], pattern.out_features).numpy().T)  # [out, B]
    param_grads, grad_in = backward_arrays(pattern, saved, g, wanted, need_x)
    return param_grads, None if grad_in is None else torch.from_numpy(grad_in).t()


def backward_arrays(pattern: NetworkPattern, saved: tuple, g: np.ndarray, wanted: tuple, need_x: bool,
                    reuse: bool = False):
    """``network_backward`` from ``g``, the gradient of the output as a contiguous ``[out, B]`` array: the
    parameters' gradients (weight, bias, weight, ...; None where not ``wanted``) and the input's (a
    feature-major ``[in, B]`` array, or None). With ``reuse`` the weight and bias gradients are written into ``pattern.grad_buffers()``
    (overwritten by the next such call) instead of new arrays."""
    x_in, hidden = saved
    batch = g.shape[1]
    need_weights = any(wanted)
    if need_weights and reuse:
        weight_grads, bias_grads, tensors = pattern.grad_buffers()
    elif need_weights:
        weight_grads = tuple(np.empty(w.numel(), np.float32) for w, _ in pattern.params)
        bias_grads = tuple(np.empty(b.numel(), np.float32) for _, b in pattern.params)
    else:
        weight_grads = bias_grads = _NO_GRADS.setdefault(
            len(pattern.params), tuple(np.empty(0, np.float32) for _ in pattern.params))
    grad_in = np.empty((pattern.in_features, batch), np.float32) if need_x else _NONE
    weights, _ = pattern.arrays()
    kernels.compiled().mlp_backward(*pattern.indices(), weights, x_in, hidden, g, weight_grads, bias_grads, grad_in,
                                    need_weights, not (need_weights and reuse))
    if need_weights and reuse:
        param_grads = [t if w else None for t, w in zip(tensors, wanted)]
    else:
        param_grads = []
        for i, (weight, _) in enumerate(pattern.params):
            param_grads.append(torch.from_numpy(weight_grads[i].reshape(weight.shape)) if wanted[2 * i] else None)
            param_grads.append(torch.from_numpy(bias_grads[i]) if wanted[2 * i + 1] else None)
    return param_grads, grad_in if need_x else None
