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
import math

import numpy as np
from scipy import stats as scipy_stats

from rlx2.stats import MIN_SEEDS

#: Seed counts tried, in order; the answer is the first that reaches the target power.
CANDIDATE_SEEDS = (*range(MIN_SEEDS, 21), 25, 30, 35, 40, 50, 60, 70, 80, 90, 100, 120, 150, 200)
#: Above this many seeds a side, the test's p-value uses scipy's normal approximation (exact is slow, and close).
EXACT_UP_TO = 30
TARGET_POWER = 0.8


def _p_values(n: int, u: np.ndarray) -> np.ndarray:
    """scipy's one-sided p-values of U = ``u`` (a vector) for n against n scores without ties, in one call.

    The scores are built to have each U: ``x_i`` sits above exactly ``clip(u - n i, 0, n)``
    of ``y = 0, 1, ..., n - 1``. One vectorised call gives the same values as one call per U.
    """
    x = np.clip(np.asarray(u)[:, None] - n * np.arange(n)[None, :], 0, n) - 0.5
    method = "exact" if n <= EXACT_UP_TO else "asymptotic"
    return scipy_stats.mannwhitneyu(x, np.arange(n, dtype=float)[None, :], alternative="greater", method=method,
                                    axis=1).pvalue


@functools.lru_cache(maxsize=None)
def _exact_p_values(n: int) -> np.ndarray:
    """The exact p-values of every U = 0 .. n^2, for the seed counts where that table is small."""
    return _p_values(n, np.arange(n * n + 1))


def _p_value_of_u(n: int, u: int) -> float:
    """scipy's one-sided p-value of U = ``u`` for n against n scores without ties."""
    return float(_exact_p_values(n)[u]) if n <= EXACT_UP_TO else float(_p_values(n, np.array([u]))[0])


@functools.lru_cache(maxsize=None)
def critical_u(n: int, alpha: float) -> float:
    """The smallest U (of n against n scores, no ties) whose one-sided p-value is below ``alpha``; inf if none is.

    The p-value falls as U grows, so the first U below ``alpha`` is found from a coarse grid of
    U, then every U of the bracket the grid finds, each a single vectorised call.
    """
    if _p_value_of_u(n, n * n) >= alpha:
        return np.inf
    if n <= EXACT_UP_TO:
        return float(np.argmax(_exact_p_values(n) < alpha))
    grid = np.unique(np.linspace(0, n * n, 65).round().astype(int))
    first = int(np.argmax(_p_values(n, grid) < alpha))
    if first == 0:
        return 0.0
    bracket = np.arange(grid[first - 1] + 1, grid[first] + 1)
    return float(bracket[np.argmax(_p_values(n, bracket) < alpha)])


@functools.lru_cache(maxsize=64)
def _draws(seed: int, n: int, sims: int) -> tuple[np.ndarray, np.ndarray]:
    """The standard-normal draws of X and Y for ``n`` seeds: the same whatever the gap and spreads, so they are
    drawn once for every pair a report plans (about 55 MB for every candidate seed count)."""
    rng = np.random.default_rng([seed, n])
    z_x, z_y = rng.standard_normal((sims, n)), rng.standard_normal((sims, n))
    z_x.flags.writeable = z_y.flags.writeable = False
    return z_x, z_y


def _u_statistics(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mann-Whitney U of X over Y per row (continuous scores: no ties), from one sort of each pooled row: the
    rank sum of X is the sum of the positions X's scores take."""
    n = x.shape[1]
    order = np.argsort(np.concatenate([x, y], axis=1), axis=1, kind="stable")
    return np.where(order < n, np.arange(1, 2 * n + 1), 0).sum(axis=1) - n * (n + 1) / 2


def power(gap: float, spread_x: float, spread_y: float, n: int, alpha: float, sims: int = 2_000, seed: int = 0
          ) -> float:
    """Share of ``sims`` simulated experiments with ``n`` seeds a side in which "X beats Y" is resolved at ``alpha``."""
    z_x, z_y = _draws(seed, n, sims)
    return float(np.mean(_u_statistics(gap + spread_x * z_x, spread_y * z_y) >= critical_u(n, alpha)))


def reaches(gap: float, spread_x: float, spread_y: float, n: int, alpha: float, target: float, sims: int = 2_000,
            seed: int = 0, chunk: int = 250) -> bool:
    """Whether ``power(...) >= target``: the same answer, decided as soon as the experiments simulated so far
    settle it (enough resolved, or too few left to get there), which for seed counts far from the target is a
    small part of them."""
    needed = math.ceil(target * sims)  # the fewest resolved experiments whose share reaches the target
    while needed > 0 and (needed - 1) / sims >= target:
        needed -= 1
    while needed / sims < target:
        needed += 1
    z_x, z_y = _draws(seed, n, sims)
    critical = critical_u(n, alpha)
    resolved = 0
    for start in range(0, sims, chunk):
        rows = slice(start, start + chunk)
        resolved += int(np.sum(_u_statistics(gap + spread_x * z_x[rows], spread_y * z_y[rows]) >= critical))
        if resolved >= needed or resolved + sims - min(sims, start + chunk) < needed:
            break
    return resolved >= needed


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
        if reaches(gap, spread_x, spread_y, n, alpha, target, sims, seed):
            return n
    return None
