"""Whole networks as one autograd operation (``fused_heads``; ``MaskedMLP`` and ``MaskedLinear`` call it).

Why: computed layer by layer, a 3-layer masked MLP is about ten autograd nodes (module
calls, transposes, ReLUs, reshapes) and, on its CSR layers, two CSR tensors built per
call; at 95 % sparsity that bookkeeping costs more than the arithmetic. Here one
``torch.autograd.Function`` runs every layer of one or more MLPs that share their input
(both Q heads of a critic) forward, and their backward in one call, with:

- feature-major activations ``[features, batch]`` throughout (``W h + b`` is one
  ``addmm``; ReLU and its backward see one memory layout);
- CSR layers computed on persistent CSR tensors (``CsrWeights``), refilled from the dense
  ``weight`` by one gather per use, and no gradient computed for a frozen network's
  weights (``frozen``), nor for an input that needs none.

The operations per layer are the ones the layer-by-layer path runs (the same ``addmm``,
``sparse_sampled_addmm`` and ``threshold_backward`` on the same layouts), so results are
those of ``MaskedLinear.forward``; ``tests/test_fused.py`` checks outputs and every
gradient against it. The ``masked-dense`` backend (the reference) keeps the
layer-by-layer path.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rlx2.sparse.backend import CsrWeights


def fused_heads(heads: Sequence[Sequence], x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each head (its ``MaskedLinear`` layers, ReLU between them) applied to ``x`` (``[..., in]``) as one
    operation; one output per head."""
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    plans = tuple(tuple(_LayerPlan.of(layer) for layer in head) for head in heads)
    params: list[torch.Tensor | None] = [t for plan in plans for layer in plan for t in (layer.weight, layer.bias)]
    if torch.is_grad_enabled() and (x2.requires_grad or any(p is not None and p.requires_grad for p in params)):
        outputs = _FusedMLP.apply(plans, x2, *params)
    else:
        outputs, _ = _forward(plans, x2, keep=False)
    return tuple(out.reshape(*lead, out.shape[-1]) for out in outputs)


class _LayerPlan:
    """How one layer computes in this call: dense ``weight`` or its CSR form, and which weight gradient."""

    __slots__ = ("weight", "bias", "csr", "dense_grad")

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, csr: CsrWeights | None,
                 dense_grad: bool) -> None:
        self.weight, self.bias, self.csr, self.dense_grad = weight, bias, csr, dense_grad

    @classmethod
    def of(cls, layer) -> _LayerPlan:
        """The plan of a ``MaskedLinear`` for its current mask, backend and ``needs_dense_grad``."""
        return cls(layer.weight, layer.bias, layer.csr_weights(), layer.needs_dense_grad)

    def matrix(self) -> torch.Tensor:
        return self.weight if self.csr is None else self.csr.matrix(self.weight)


def _forward(plans, x: torch.Tensor, keep: bool) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """Outputs ``[B, out]`` (feature-major views) per head, and (``keep``) each layer's input ``[in, B]``."""
    outputs, inputs = [], []
    for plan in plans:
        h = x.t()
        seen = []
        for i, layer in enumerate(plan):
            if keep:
                seen.append(h)
            bias = layer.bias
            matrix = layer.matrix()
            h = torch.mm(matrix, h) if bias is None else torch.addmm(bias.unsqueeze(1), matrix, h)
            if i < len(plan) - 1:
                h.relu_()
        outputs.append(h.t())
        inputs.append(seen)
    return outputs, inputs


class _FusedMLP(torch.autograd.Function):
    """Forward and backward of ``fused_heads`` (see the module docstring)."""

    @staticmethod
    def forward(ctx, plans, x, *params):
        outputs, inputs = _forward(plans, x, keep=True)
        ctx.plans, ctx.inputs = plans, inputs
        ctx.save_for_backward(x, *[p for p in params if p is not None])  # in-place changes before backward fail loudly
        ctx.set_materialize_grads(False)
        return tuple(outputs)

    @staticmethod
    def backward(ctx, *grads):
        ctx.saved_tensors  # noqa: B018 (checks that no saved tensor changed in place)
        plans, inputs = ctx.plans, ctx.inputs
        needs = ctx.needs_input_grad
        grad_x = None
        grad_params: list[torch.Tensor | None] = []
        offset = 2  # needs_input_grad: plans, x, then weight and bias of every layer
        for plan, seen, grad in zip(plans, inputs, grads):
            head_grads: list[torch.Tensor | None] = [None] * (2 * len(plan))
            first = offset
            offset += 2 * len(plan)
            if grad is None:
                grad_params.extend(head_grads)
                continue
            g = grad.t()  # [out, B]
            for i in range(len(plan) - 1, -1, -1):
                layer, h = plan[i], seen[i]
                if needs[first + 2 * i]:
                    head_grads[2 * i] = _weight_grad(layer, g, h)
                if layer.bias is not None and needs[first + 2 * i + 1]:
                    head_grads[2 * i + 1] = g.sum(1)
                if i == 0 and not needs[1]:
                    break
                if layer.csr is None:
                    g_in = _dense_input_grad(layer.weight, g, h)
                else:
                    g_in = torch.sparse.mm(layer.csr.transposed(layer.weight), g)
                if i > 0:
                    g = torch.ops.aten.threshold_backward(g_in, h, 0)
                else:
                    grad_x = g_in.t() if grad_x is None else grad_x + g_in.t()
            grad_params.extend(head_grads)
        return (None, grad_x, *grad_params)


def _dense_input_grad(weight: torch.Tensor, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``W^T g`` in ``h``'s memory layout, computed as autograd's ``mm`` backward does (same bits)."""
    if h.stride(0) == 1 and h.stride(1) == h.shape[0]:  # column-major input (a contiguous [B, in] batch)
        return g.t().mm(weight).t()
    return torch.mm(weight.t(), g)


def _weight_grad(layer: _LayerPlan, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``g h^T``: dense, or (a CSR layer outside topology updates) only at the active positions."""
    if layer.csr is None or layer.dense_grad:
        return torch.mm(g, h.t())
    return layer.csr.sampled_grad(layer.weight, g, h)
