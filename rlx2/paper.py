"""The paper's published figures, for the report's side-by-side columns (spec RLX2.md section 9).

RLx2 (Tan et al., ICLR 2023), Table 2: return as % of the dense agent's, at 3M environment
steps, 8 seeds, gym v3 MuJoCo tasks with mujoco-py. Our tasks are gymnasium's v5 ones of
the same name, so ``paper_row("td3", "Hopper-v5")`` finds the paper's Hopper row.
"""

from __future__ import annotations

from collections.abc import Iterable

#: The methods of the paper's Table 2 columns, in its order.
PAPER_METHODS = ("tiny", "static", "set", "rigl", "rlx2")

#: ``(algo, task): ((actor sparsity, critic sparsity), {method: % of dense})``.
TABLE2: dict[tuple[str, str], tuple[tuple[float, float], dict[str, float]]] = {
    (algo, task): (sparsity, dict(zip(PAPER_METHODS, row)))
    for algo, task, sparsity, row in [
        ("td3", "HalfCheetah", (0.90, 0.85), (86.3, 77.1, 92.6, 90.8, 99.8)),
        ("td3", "Hopper", (0.98, 0.95), (64.5, 67.7, 66.5, 90.6, 97.0)),
        ("td3", "Walker2d", (0.97, 0.95), (60.8, 42.9, 39.3, 35.7, 98.1)),
        ("td3", "Ant", (0.96, 0.88), (16.5, 49.6, 62.5, 68.5, 103.9)),
        ("td3", "Average", (0.95, 0.91), (57.0, 59.3, 65.2, 71.4, 99.7)),
        ("sac", "HalfCheetah", (0.90, 0.80), (95.0, 75.4, 94.8, 89.8, 102.2)),
        ("sac", "Hopper", (0.98, 0.95), (89.1, 81.6, 103.9, 110.0, 109.7)),
        ("sac", "Walker2d", (0.90, 0.90), (73.8, 83.4, 95.8, 81.9, 103.2)),
        ("sac", "Ant", (0.90, 0.75), (49.6, 49.3, 79.8, 90.9, 105.6)),
        ("sac", "Average", (0.92, 0.85), (76.9, 72.4, 93.6, 93.2, 105.2)),
    ]
}

#: How methods are ordered in every table and figure (others follow, sorted).
METHOD_ORDER = ["dense", "sb3", "tiny", "static", "set", "rigl", "rlx2", "pruning", "distillation"]


def ordered(methods: Iterable[str]) -> list[str]:
    methods = set(methods)
    return [m for m in METHOD_ORDER if m in methods] + sorted(methods - set(METHOD_ORDER))


def paper_task(task: str) -> str:
    """``Hopper-v5`` -> ``Hopper``: the paper's name of a task."""
    return task.split("-v")[0]


def paper_row(algo: str, task: str) -> tuple[tuple[float, float], dict[str, float]] | None:
    """The paper's sparsities and % of dense per method for ``algo`` on ``task`` (None: not in the paper)."""
    return TABLE2.get((algo, paper_task(task)))
