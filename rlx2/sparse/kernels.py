"""Where the compiled kernels (``rlx2.sparse._numba``) come from, and the optimiser and Polyak steps on them.

A sparse network trains on compiled kernels when numba is importable (it is a dependency;
``RLX2_KERNELS=torch`` switches them off): its whole forward and whole backward
(``rlx2.sparse.compiled_mlp``), its Adam step and its Polyak update, each one call.
Without them everything runs on PyTorch operations (``rlx2.sparse.fused``, ``torch.optim.Adam``
and gradient masking), which is also the reference the compiled path is tested against.

Why the optimiser and Polyak steps: ``torch.optim.Adam`` on a 95 %-sparse 256x256 layer
passes over all 65 536 entries (and masking the result again once more), behind a
Python-heavy ``step``; the kernel visits only active entries (and the inactive ones whose
moments still decay, all that dense Adam does there before the mask zeroes the weight),
for every parameter of the network in one call, with ``torch.optim.Adam``'s formulas.

numba compiles the kernels on their first use (about 15 s of CPU once) and caches them on
disk (where, and for which CPU features: ``rlx2.sparse.numba_setup``); later processes load
them in about a second. If numba is installed but the kernels cannot load, a warning says
why and the PyTorch path runs.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from rlx2.sparse.numba_setup import prepare_numba

_KERNELS = False  # False: not loaded yet; None: unavailable or switched off


def compiled():
    """The compiled kernels module (compiled on first use, cached on disk by numba), or None."""
    global _KERNELS
    if _KERNELS is False:
        _KERNELS = None
        if os.environ.get("RLX2_KERNELS", "numba") != "torch":
            prepare_numba()
            try:
                import numba  # noqa: F401
            except ImportError:  # a platform without numba wheels: PyTorch throughout
                return None
            try:
                import rlx2.sparse._numba as _numba

                _KERNELS = _numba
            except Exception as exc:  # noqa: BLE001 - numba present but unusable here: say so, train on PyTorch
                warnings.warn(f"rlx2: the compiled kernels cannot load ({exc}); sparse networks train on PyTorch "
                              f"operations (slower; RLX2_KERNELS=torch says this on purpose)", RuntimeWarning,
                              stacklevel=2)
    return _KERNELS


def implementation() -> str:
    """``numba`` or ``torch``: what sparse networks train on in this process."""
    return "torch" if compiled() is None else "numba"


def flat_view(tensor: torch.Tensor) -> np.ndarray:
    """A tensor's memory as a flat NumPy array (shared, not copied)."""
    return tensor.detach().view(-1).numpy()


#: No positions (a dense parameter in ``adam``/``lerp``, nothing decaying).
EMPTY = np.empty(0, np.int64)


def adam_state(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> dict:
    """``param``'s Adam state, created as ``torch.optim.Adam`` creates it on a first step."""
    state = optimizer.state[param]
    if not state:
        state["step"] = torch.tensor(0.0, dtype=torch.float32)
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    return state


def decaying_positions(mask: torch.Tensor, state: dict) -> np.ndarray:
    """Flat positions outside ``mask`` whose Adam moments are not (yet) zero."""
    if not state:
        return EMPTY
    moving = (state["exp_avg"] != 0) | (state["exp_avg_sq"] != 0)
    return (moving & ~mask).reshape(-1).nonzero().squeeze(1).numpy()


def adam(params: Sequence[np.ndarray], grads: Sequence[np.ndarray], states: Sequence[tuple],
         active: Sequence[np.ndarray | None], decaying: Sequence[np.ndarray], lr: float, betas: tuple[float, float],
         eps: float) -> None:
    """One Adam step of every parameter: ``states[n] = (step 0-d array, exp_avg, exp_avg_sq)`` as flat arrays;
    ``active[n]`` None: every entry, else only those flat positions (plus the moment decay at ``decaying[n]``)."""
    compiled().adam(tuple(params), tuple(grads), tuple(s[1] for s in states), tuple(s[2] for s in states),
                    tuple(s[0] for s in states), tuple(EMPTY if a is None else a for a in active), tuple(decaying),
                    float(lr), float(betas[0]), float(betas[1]), float(eps))


def lerp(targets: Sequence[np.ndarray], sources: Sequence[np.ndarray], positions: Sequence[np.ndarray | None],
         weight: float) -> None:
    """``target += weight (source - target)`` for every pair, at its flat ``positions`` (None: everywhere)."""
    compiled().lerp(tuple(targets), tuple(sources), tuple(EMPTY if p is None else p for p in positions),
                    float(weight))


def adam_parameter(optimizer: torch.optim.Optimizer, param: torch.Tensor, grad: np.ndarray) -> None:
    """One Adam step of a single dense ``param`` of ``optimizer`` with gradient ``grad`` (flat), compiled."""
    group = next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))
    state = adam_state(optimizer, param)
    adam([flat_view(param)], [grad], [(state["step"].numpy(), flat_view(state["exp_avg"]),
                                       flat_view(state["exp_avg_sq"]))], [None], [EMPTY], group["lr"], group["betas"],
         group["eps"])
