"""How many seeds a comparison needs: a seeded simulation of the verdict rule's power.

A comparison "X beats Y" is resolved when the exact one-sided Mann-Whitney test rejects at
the level the rule allows it (``rlx2.comparisons``) with at least ``MIN_SEEDS`` seeds a side.
Its power at ``n`` seeds per method is estimated by simulation: final scores drawn from
normal distributions whose means differ by ``gap`` and whose standard deviations are the
spreads measured here, ``sims`` experiments per ``n``. Normal scores are an approximation
(Hopper's are bimodal: a seed learns to hop or it does not), so read the result as an order
of magnitude, which is what deciding a budget needs.

Deterministic: the draws for ``n`` seeds come from a generator seeded with ``(seed, n)``
alone, the same standard-normal draws whatever the gap and spreads (common random numbers).
A larger gap or a proportionally smaller spread moves every simulated X score up relative
to Y, so U, and with it the power at every ``n``, never decreases: the seeds needed never
grow with the gap.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import stats as scipy_stats

from rlx2.stats import MIN_SEEDS

#: Seed counts tried, in order; the answer is the first that reaches the target power.
CANDIDATE_SEEDS = (*range(MIN_SEEDS, 21), 25, 30, 35, 40, 50, 60, 70, 80, 90, 100, 120, 150, 200)
#: Above this many seeds a side, the test's p-value uses scipy's normal approximation (exact is slow, and close).
EXACT_UP_TO = 30
TARGET_POWER = 0.8


def _p_value_of_u(n: int, u: int) -> float:
    """scipy's one-sided p-value of U = ``u`` for n against n scores without ties.

    The scores are built to have that U: ``x_i`` sits above exactly ``clip(u - n i, 0, n)``
    of ``y = 0, 1, ..., n - 1``.
    """
    x = np.clip(u - n * np.arange(n), 0, n) - 0.5
    method = "exact" if n <= EXACT_UP_TO else "asymptotic"
    return float(scipy_stats.mannwhitneyu(x, np.arange(n, dtype=float), alternative="greater", method=method).pvalue)


@functools.lru_cache(maxsize=None)
def critical_u(n: int, alpha: float) -> float:
    """The smallest U (of n against n scores, no ties) whose one-sided p-value is below ``alpha``
    (the p-value falls as U grows, so a bisection finds it); inf if none is."""
    if _p_value_of_u(n, n * n) >= alpha:
        return np.inf
    low, high = 0, n * n  # p(low) may be >= alpha; p(high) < alpha
    while low < high:
        middle = (low + high) // 2
        if _p_value_of_u(n, middle) < alpha:
            high = middle
        else:
            low = middle + 1
    return float(low)


def power(gap: float, spread_x: float, spread_y: float, n: int, alpha: float, sims: int = 2_000, seed: int = 0
          ) -> float:
    """Share of ``sims`` simulated experiments with ``n`` seeds a side in which "X beats Y" is resolved at ``alpha``."""
    rng = np.random.default_rng([seed, n])
    z_x, z_y = rng.standard_normal((sims, n)), rng.standard_normal((sims, n))
    pooled = np.concatenate([gap + spread_x * z_x, spread_y * z_y], axis=1)
    ranks = np.argsort(np.argsort(pooled, axis=1, kind="stable"), axis=1) + 1
    u = ranks[:, :n].sum(axis=1) - n * (n + 1) / 2  # Mann-Whitney U of X over Y
    return float(np.mean(u >= critical_u(n, alpha)))


def seeds_needed(gap: float, spread_x: float, spread_y: float, alpha: float, target: float = TARGET_POWER,
                 sims: int = 2_000, seed: int = 0) -> int | None:
    """The fewest seeds per method (of ``CANDIDATE_SEEDS``) resolving "X beats Y" with power ``target``.

    ``gap`` is X's mean minus Y's, in the units of the spreads (standard deviations over seeds).
    None: not even ``CANDIDATE_SEEDS[-1]`` seeds would (or the gap is not positive).
    """
    if not gap > 0:
        return None
    if not (spread_x >= 0 and spread_y >= 0):
        raise ValueError(f"spreads must be non-negative, got {spread_x!r} and {spread_y!r}")
    for n in CANDIDATE_SEEDS:
        if power(gap, spread_x, spread_y, n, alpha, sims, seed) >= target:
            return n
    return None
