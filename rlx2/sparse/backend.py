"""How a masked layer computes: the masked-dense reference and the CSR sparse backend.

``masked-dense`` (the reference) runs a plain dense matmul (``dense_linear``); inactive
weights are exactly zero, so outputs and the dense weight gradient are exact. ``csr`` keeps the same
dense ``weight`` parameter (so optimisers, checkpoints, targets and drop/grow are
untouched) but computes with only its active entries:

- forward ``y = x W^T + b`` as one CSR-by-dense product ``W_csr @ x^T``;
- input gradient ``g W`` as ``(W^T)_csr @ g^T``;
- weight gradient only at the active positions (``sampled_addmm`` over the mask's
  pattern), scattered into a dense gradient that is zero elsewhere, which is what the
  controller's gradient masking would leave anyway. When the controller announces a
  topology update (``MaskedLinear.needs_dense_grad``), the dense gradient ``g^T x`` is
  computed instead, because RigL's grow step ranks *inactive* weights by it.

The products run inside one autograd operation per network (``rlx2.sparse.fused``). The
CSR index structures depend only on the mask and are rebuilt when it changes (a new
mask tensor or an in-place copy into it); ``CsrWeights`` keeps CSR tensors on them whose
values are gathered from ``weight`` on every call, so a layer never computes with stale
weights. ``auto`` (the default) uses
``csr`` for layers at most ``CSR_MAX_DENSITY`` dense and masked-dense otherwise: on this
project's 2-core CPU (256x256 layer, batch 256, 1 thread) forward + input gradient +
weight gradient cost 0.6x of dense at density 0.1, 0.66x at 0.2 and 1.15x at 0.3
(``benchmarks/throughput.py --kernels`` prints the comparison).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from rlx2.config import BACKENDS, CSR_MAX_DENSITY  # noqa: F401 - settings' choices live with the other settings

# CSR tensors are "beta" in PyTorch and say so once per process; the kernels used here are stable.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


@dataclass(frozen=True)
class SparsePattern:
    """A mask's active entries in the index forms the CSR kernels need (built once per mask)."""

    shape: tuple[int, int]
    density: float
    crow: torch.Tensor  # CSR row pointers of W
    col: torch.Tensor  # CSR column indices of W
    flat: torch.Tensor  # row-major flat indices of W's active entries, in CSR order
    crow_t: torch.Tensor  # the same three for W^T
    col_t: torch.Tensor
    flat_t: torch.Tensor
    ones: torch.Tensor  # CSR tensor of ones on the pattern (sampled_addmm's sampling pattern)

    @classmethod
    def of(cls, mask: torch.Tensor) -> SparsePattern:
        out_features, in_features = mask.shape
        flat = mask.reshape(-1).nonzero().squeeze(1)
        rows = flat // in_features
        cols = flat % in_features
        crow = _row_pointers(rows, out_features)
        order_t = torch.argsort(cols * out_features + rows)
        flat_t = flat[order_t]
        crow_t = _row_pointers(cols[order_t], in_features)
        ones = torch.sparse_csr_tensor(crow, cols, torch.ones(len(flat)), (out_features, in_features),
                                       check_invariants=False)
        return cls((out_features, in_features), len(flat) / mask.numel(), crow, cols, flat, crow_t,
                   rows[order_t], flat_t, ones)

    def weight(self, weight: torch.Tensor) -> torch.Tensor:
        """``weight``'s active entries as a CSR tensor of the same shape."""
        values = weight.detach().reshape(-1).index_select(0, self.flat)
        return torch.sparse_csr_tensor(self.crow, self.col, values, self.shape, check_invariants=False)

    def weight_t(self, weight: torch.Tensor) -> torch.Tensor:
        """``weight^T``'s active entries as a CSR tensor."""
        values = weight.detach().reshape(-1).index_select(0, self.flat_t)
        return torch.sparse_csr_tensor(self.crow_t, self.col_t, values, self.shape[::-1], check_invariants=False)


class CsrWeights:
    """Persistent CSR tensors of ``W`` and ``W^T`` on one pattern, their values gathered from ``weight`` per call.

    Building a CSR tensor costs about as much as a small sparse product; these are built once
    per mask and alias value buffers that one ``index_select`` refills from the dense
    ``weight`` on every use, so they never hold stale weights.
    """

    def __init__(self, pattern: SparsePattern) -> None:
        self.pattern = pattern
        count = len(pattern.flat)
        self._values, self._values_t = torch.empty(count), torch.empty(count)
        # 32-bit indices: MKL's sparse kernels take them as they are (64-bit ones are converted on every call).
        index = torch.int32 if pattern.shape[0] * pattern.shape[1] < 2**31 else torch.int64
        self._w = torch.sparse_csr_tensor(pattern.crow.to(index), pattern.col.to(index), self._values, pattern.shape,
                                          check_invariants=False)
        self._w_t = torch.sparse_csr_tensor(pattern.crow_t.to(index), pattern.col_t.to(index), self._values_t,
                                            pattern.shape[::-1], check_invariants=False)

    def matrix(self, weight: torch.Tensor) -> torch.Tensor:
        """``weight``'s active entries as a CSR tensor (valid until the next call)."""
        torch.index_select(weight.detach().reshape(-1), 0, self.pattern.flat, out=self._values)
        return self._w

    def transposed(self, weight: torch.Tensor) -> torch.Tensor:
        """``weight^T``'s active entries as a CSR tensor (valid until the next call)."""
        torch.index_select(weight.detach().reshape(-1), 0, self.pattern.flat_t, out=self._values_t)
        return self._w_t

    def sampled_grad(self, weight: torch.Tensor, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``g h^T`` (``g``: ``[out, B]``, ``h``: ``[in, B]``) at the active positions, zero elsewhere."""
        sampled = torch.sparse.sampled_addmm(self.pattern.ones, g, h.t(), beta=0.0)
        grad = torch.zeros_like(weight)
        grad.view(-1).index_copy_(0, self.pattern.flat, sampled.values())
        return grad


def _row_pointers(rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """CSR row pointers for entries whose (sorted) row indices are ``rows``."""
    counts = torch.bincount(rows, minlength=n_rows)
    return torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])


def dense_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x W^T + b`` for ``x`` of shape ``[B, in]``, computed feature-major as ``(W x^T + b)^T``.

    The CSR kernels produce ``[out, B]`` results; dense layers produce the same layout so that
    the elementwise ops between layers (ReLU and its backward) always see matching strides,
    which keeps them on PyTorch's fast path. For dense networks this costs nothing.
    """
    if bias is None:
        return (weight @ x.t()).t()
    return torch.addmm(bias.unsqueeze(1), weight, x.t()).t()
