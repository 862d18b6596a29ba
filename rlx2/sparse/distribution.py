"""How a network's global sparsity is split over its layers.

A network (the TD3/SAC critic counts as one network: both Q heads together) with global
sparsity ``S`` keeps ``(1 - S) * sum_l I_l * O_l`` non-zero weights in total.

* **Erdos-Renyi (ER)**, the RLx2 default: layer ``l`` of shape ``(O_l, I_l)`` gets density
  ``eps * (I_l + O_l) / (I_l * O_l)`` with one ``eps`` for the whole network. A layer whose
  density would exceed 1 is made dense and ``eps`` is solved again over the remaining
  layers, until every density is valid. No layer is forced dense up front.
* **Uniform**: every layer gets density ``1 - S``.
"""

from __future__ import annotations

from collections.abc import Sequence

from rlx2.config import DISTRIBUTIONS as NAMES, is_sparsity

Shape = tuple[int, int]  # (out_features, in_features), as torch stores Linear weights


def _check_sparsity(sparsity: float) -> None:
    if not is_sparsity(sparsity):
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")


def erdos_renyi_densities(shapes: Sequence[Shape], sparsity: float) -> list[float]:
    """Per-layer densities by the Erdos-Renyi rule (see module docstring)."""
    _check_sparsity(sparsity)
    sizes = [out_f * in_f for out_f, in_f in shapes]
    budget = (1.0 - sparsity) * sum(sizes)
    dense: set[int] = set()
    while True:
        free = [i for i in range(len(shapes)) if i not in dense]
        remaining = budget - sum(sizes[i] for i in dense)
        raw = {i: shapes[i][0] + shapes[i][1] for i in free}
        eps = remaining / sum(raw.values()) if free else 0.0
        densities = {i: eps * raw[i] / sizes[i] for i in free}
        overfull = [i for i, d in densities.items() if d > 1.0]
        if not overfull:
            break
        dense.update(overfull)
    return [1.0 if i in dense else densities[i] for i in range(len(shapes))]


def uniform_densities(shapes: Sequence[Shape], sparsity: float) -> list[float]:
    """Every layer gets the same density ``1 - sparsity``."""
    _check_sparsity(sparsity)
    return [1.0 - sparsity for _ in shapes]


DISTRIBUTIONS = dict(zip(NAMES, (erdos_renyi_densities, uniform_densities)))  # the settings' order: er, uniform


def layer_densities(shapes: Sequence[Shape], sparsity: float, distribution: str = "er") -> list[float]:
    """Densities for ``shapes`` by the named distribution (``"er"`` or ``"uniform"``)."""
    try:
        rule = DISTRIBUTIONS[distribution]
    except KeyError:
        raise ValueError(f"distribution must be one of {sorted(DISTRIBUTIONS)}, got {distribution!r}") from None
    return rule(shapes, sparsity)


def active_counts(shapes: Sequence[Shape], densities: Sequence[float]) -> list[int]:
    """Non-zero weights per layer, the reference's count: ``n - int(S_l * n)`` with ``S_l = 1 - density``.

    (It keeps the fractional weight that rounding to the nearest would sometimes drop; at least one.)
    """
    return [min(o * i, max(1, o * i - int((1.0 - d) * o * i))) for (o, i), d in zip(shapes, densities)]
