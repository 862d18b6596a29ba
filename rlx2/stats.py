"""Statistics over runs: bootstrap intervals of rliable's metrics, and exact rank tests.

Two questions, kept apart:

* **How large is an effect, and how sure are we of it?** Point estimates with stratified
  bootstrap intervals. ``bootstrap`` resamples each method's runs within each task, with
  replacement and independently of the other methods, from a seeded ``numpy`` Generator,
  and evaluates rliable's metrics (IQM, median, mean, optimality gap, probability of
  improvement, score distributions) on all replicates at once; the interval is the
  percentile one, as rliable's. The metrics are rliable's definitions written to work over
  a leading replicate axis (``tests/test_stats.py`` checks each against rliable's own
  function, and the intervals against ``rliable.library.get_interval_estimates``): rliable's
  bootstrap (``arch``) calls the metric once per replicate and draws from NumPy's global
  generator, and took nearly all of a report's time. Below ``MIN_SEEDS`` seeds a side such
  an interval is about the range of the seeds: the report labels it so, never "95 %".
* **Is an ordering established, at what error rate?** ``rank_test_p`` is the exact one-sided
  Mann-Whitney (Wilcoxon rank-sum) p-value: the share of all splits of the pooled scores
  into groups of the observed sizes whose U statistic is at least the observed one (ties
  count one half), so it is exact with ties and unequal counts. ``holm`` corrects a family
  of them. The verdict rule is in ``rlx2.comparisons``.

The same scores, ``reps`` and ``seed`` give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy import stats as scipy_stats

from rlx2.config import DEFAULT_REPS  # noqa: F401 - bootstrap replications: one default, where the CLI reads it
#: Seeds a side below which no ordering verdict is made and an interval is called a range.
MIN_SEEDS = 5
#: Family-wise error rate of the verdicts.
ALPHA = 0.05
#: Above this many splits of the pooled scores, ``rank_test_p`` uses the normal approximation.
EXACT_SPLITS = 2_000_000

Interval = tuple[float, float, float]  # (point, low, high)


def iqm(scores: np.ndarray) -> np.ndarray:
    """Interquartile mean of all runs and tasks (rliable's ``aggregate_iqm``), over ``scores[..., runs, tasks]``."""
    return scipy_stats.trim_mean(scores.reshape(*scores.shape[:-2], -1), 0.25, axis=-1)


def median(scores: np.ndarray) -> np.ndarray:
    """Median over tasks of the mean over runs (rliable's ``aggregate_median``)."""
    return np.median(np.mean(scores, axis=-2), axis=-1)


def mean(scores: np.ndarray) -> np.ndarray:
    """Mean over runs and tasks (rliable's ``aggregate_mean``)."""
    return np.mean(np.mean(scores, axis=-2), axis=-1)


def optimality_gap(scores: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """How far runs fall short of ``gamma`` on average (rliable's ``aggregate_optimality_gap``)."""
    return gamma - np.mean(np.minimum(scores, gamma), axis=(-2, -1))


def improvement_probability(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(a run of ``x`` scores above a run of ``y``), ties one half, per task and averaged over tasks
    (rliable's ``probability_of_improvement``), for ``x[..., runs, tasks]`` and ``y[..., runs, tasks]``."""
    signs = np.sign(x[..., :, None, :] - y[..., None, :, :])
    return np.mean((signs + 1) / 2, axis=(-3, -2)).mean(axis=-1)


def score_distribution(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """The share of runs scoring above each ``tau``, per task and averaged over tasks (rliable's
    ``create_performance_profile``), for ``scores[..., runs, tasks]``: ``[..., len(taus)]``."""
    return np.mean(np.mean(scores[..., None] > taus, axis=-3), axis=-2)


#: rliable's aggregate metrics, over ``[..., runs, tasks]``.
AGGREGATES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "IQM": iqm,
    "Median": median,
    "Mean": mean,
    "Optimality gap": optimality_gap,
}


def normalise(scores: np.ndarray, low: float | np.ndarray, high: float | np.ndarray) -> np.ndarray:
    """``(scores - low) / (high - low)``: 0 = ``low`` (a random policy), 1 = ``high`` (dense)."""
    return (np.asarray(scores, dtype=float) - low) / (np.asarray(high, dtype=float) - low)


def bootstrap(samples: Sequence[np.ndarray], statistic: Callable[..., np.ndarray], reps: int, seed: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point estimate and 95 % percentile interval of ``statistic(*samples)``.

    Each sample is ``[runs]`` or ``[runs, tasks]``; a replicate redraws every sample's runs with
    replacement within each task (a stratified bootstrap), each sample independently, so a
    statistic of two samples (a ratio to dense, P(X > Y)) carries the uncertainty of both.
    ``statistic`` takes arrays with a leading replicate axis and returns a value (or a vector)
    per replicate, so all ``reps`` replicates are one call.
    """
    samples = [np.asarray(s, dtype=float) for s in samples]
    rng = np.random.default_rng(seed)
    draws = []
    for sample in samples:
        matrix = sample[:, None] if sample.ndim == 1 else sample
        index = rng.integers(0, matrix.shape[0], size=(reps, *matrix.shape))
        drawn = np.take_along_axis(matrix[None], index, axis=1)
        draws.append(drawn[..., 0] if sample.ndim == 1 else drawn)
    values = np.asarray(statistic(*draws), dtype=float)
    point = np.asarray(statistic(*(s[None] for s in samples)), dtype=float)[0]
    low, high = np.percentile(values, [2.5, 97.5], axis=0)
    return point, low, high


def interval(samples: Sequence[np.ndarray], statistic: Callable[..., np.ndarray], reps: int, seed: int) -> Interval:
    """``bootstrap`` of a scalar statistic as ``(point, low, high)``."""
    point, low, high = bootstrap(samples, statistic, reps, seed)
    return float(point), float(low), float(high)


def all_aggregates(scores: np.ndarray) -> np.ndarray:
    """Every ``AGGREGATES`` metric of ``scores[..., runs, tasks]``, stacked on a last axis."""
    return np.stack([func(scores) for func in AGGREGATES.values()], axis=-1)


def _by_name(point: np.ndarray, low: np.ndarray, high: np.ndarray) -> dict[str, Interval]:
    return {name: (float(point[i]), float(low[i]), float(high[i])) for i, name in enumerate(AGGREGATES)}


def aggregate_metrics(score_dict: Mapping[str, np.ndarray], reps: int, seed: int) -> dict[str, dict[str, Interval]]:
    """``{method: {metric: (point, low, high)}}`` for IQM, median, mean and optimality gap of ``[runs, tasks]``."""
    return {method: _by_name(*bootstrap([scores], all_aggregates, reps, seed)) for method, scores in score_dict.items()}


def normalised_aggregates(raw: np.ndarray, dense: Sequence[np.ndarray] | None, random: Sequence[float], reps: int,
                          seed: int) -> dict[str, Interval]:
    """The aggregates of ``raw[runs, tasks]`` normalised per task (0 = ``random``, 1 = dense's mean), dense's
    seeds (``dense[t]``, one array per task) redrawn in every replicate along with the method's.
    ``dense=None``: ``raw`` is dense itself, normalised by the mean of its own draw."""
    low = np.asarray(random, dtype=float)

    def statistic(scores, *dense_draw):
        if dense is None:
            high = np.mean(scores, axis=-2, keepdims=True)
        else:
            high = np.stack([np.mean(d, axis=-1) for d in dense_draw], axis=-1)[..., None, :]
        return all_aggregates(normalise(scores, low, high))

    return _by_name(*bootstrap([raw, *(dense or [])], statistic, reps, seed))


def improvement(better: np.ndarray | Sequence[np.ndarray], worse: np.ndarray | Sequence[np.ndarray], reps: int,
                seed: int) -> Interval:
    """P(a run of ``better`` scores above a run of ``worse``) with its interval.

    Two arrays of scores by seed (one task), or two lists of per-task arrays (seed counts may
    differ between tasks and sides): the per-task probabilities are averaged over tasks.
    """
    xs = [better] if np.ndim(better[0]) == 0 else list(better)
    ys = [worse] if np.ndim(worse[0]) == 0 else list(worse)
    tasks = len(xs)

    def statistic(*draws):
        return np.mean([improvement_probability(draws[t][..., None], draws[tasks + t][..., None])
                        for t in range(tasks)], axis=0)

    return interval([*xs, *ys], statistic, reps, seed)


def probability_of_improvement(score_dict: Mapping[str, np.ndarray], reference: str, reps: int, seed: int
                               ) -> dict[str, Interval]:
    """P(``reference`` > other) for every other method of ``{method: [runs, tasks]}``, keyed ``"reference,other"``."""
    def per_task(scores):
        return [scores[:, t] for t in range(scores.shape[1])]

    return {f"{reference},{other}": improvement(per_task(score_dict[reference]), per_task(score_dict[other]), reps, seed)
            for other in score_dict if other != reference}


def performance_profiles(score_dict: Mapping[str, np.ndarray], taus: np.ndarray, reps: int, seed: int
                         ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per method, the share of runs above each ``tau`` and its ``[2, len(taus)]`` interval (rliable's layout)."""
    profiles, intervals = {}, {}
    for method, scores in score_dict.items():
        point, low, high = bootstrap([scores], lambda s: score_distribution(s, taus), reps, seed)
        profiles[method], intervals[method] = point, np.stack([low, high])
    return profiles, intervals


def _u_statistic(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mann-Whitney U of ``x`` over ``y`` along ``axis``: pairs with x > y, plus one half per tie."""
    x, y = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
    return (np.sign(x[..., :, None] - y[..., None, :]) + 1).sum(axis=(-1, -2)) / 2


def rank_test_p(x: Sequence[float], y: Sequence[float]) -> float:
    """Exact one-sided Mann-Whitney p-value of "``x`` tends to exceed ``y``".

    The share of the ``C(n + m, n)`` equally likely splits of the pooled scores (under "no
    difference") whose U is at least the observed one: 1/252 for five runs of ``x`` all above
    five of ``y``. Exact with ties and with unequal counts; beyond ``EXACT_SPLITS`` splits
    (about 11 seeds a side), the tie-corrected normal approximation.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) == 0 or len(y) == 0:
        raise ValueError("rank_test_p needs at least one score on each side")
    if math.comb(len(x) + len(y), len(x)) > EXACT_SPLITS:
        return float(scipy_stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic").pvalue)
    result = scipy_stats.permutation_test((x, y), _u_statistic, permutation_type="independent", vectorized=True,
                                          alternative="greater", n_resamples=np.inf)
    return float(min(1.0, result.pvalue))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (family-wise error rate, any dependence)."""
    if len(pvalues) == 0:
        return np.array([], dtype=float)
    from statsmodels.stats.multitest import multipletests

    return multipletests(np.asarray(pvalues, dtype=float), method="holm")[1]
