"""Statistics over runs, with rliable: aggregate metrics, intervals, profiles, improvement.

Scores arrive as ``{method: array[num_runs, num_tasks]}``. Every bootstrap is repeatable:
rliable draws from NumPy's *global* generator whatever its ``random_state`` says, so each
call runs inside ``seeded`` (global state saved, seeded, then restored). The same scores,
``reps`` and ``seed`` give the same numbers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

import numpy as np
from rliable import library as rly
from rliable import metrics

AGGREGATES: dict[str, Callable[[np.ndarray], float]] = {
    "IQM": metrics.aggregate_iqm,
    "Median": metrics.aggregate_median,
    "Mean": metrics.aggregate_mean,
    "Optimality gap": metrics.aggregate_optimality_gap,
}


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed NumPy's global generator for the duration of the block, then restore it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def normalise(scores: np.ndarray, low: float, high: float) -> np.ndarray:
    """``(scores - low) / (high - low)``: 0 = ``low`` (a random policy), 1 = ``high`` (dense)."""
    return (np.asarray(scores, dtype=float) - low) / (high - low)


def interval_estimates(score_dict: Mapping[str, np.ndarray], func: Callable, reps: int, seed: int
                       ) -> dict[str, tuple[float, float, float]]:
    """``{key: (point, low, high)}``: point estimate and 95 % stratified-bootstrap interval."""
    with seeded(seed):
        points, intervals = rly.get_interval_estimates(dict(score_dict), func, reps=reps)
    return {key: (float(np.squeeze(points[key])), float(np.ravel(intervals[key])[0]),
                  float(np.ravel(intervals[key])[1])) for key in score_dict}


def aggregate_metrics(score_dict: Mapping[str, np.ndarray], reps: int, seed: int
                      ) -> dict[str, dict[str, tuple[float, float, float]]]:
    """``{method: {metric: (point, low, high)}}`` for IQM, median, mean and optimality gap."""
    def all_metrics(scores: np.ndarray) -> np.ndarray:
        return np.array([func(scores) for func in AGGREGATES.values()])

    with seeded(seed):
        points, intervals = rly.get_interval_estimates(dict(score_dict), all_metrics, reps=reps)
    return {method: {name: (float(points[method][i]), float(intervals[method][0][i]), float(intervals[method][1][i]))
                     for i, name in enumerate(AGGREGATES)} for method in score_dict}


def probability_of_improvement(score_dict: Mapping[str, np.ndarray], reference: str, reps: int, seed: int
                               ) -> dict[str, tuple[float, float, float]]:
    """P(``reference`` > other) for every other method, with intervals (rliable's definition)."""
    pairs = {f"{reference},{other}": (score_dict[reference], score_dict[other])
             for other in score_dict if other != reference}
    if not pairs:
        return {}
    return interval_estimates(pairs, metrics.probability_of_improvement, reps, seed)


def performance_profiles(score_dict: Mapping[str, np.ndarray], taus: np.ndarray, reps: int, seed: int
                         ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Fraction of runs scoring above each ``tau``, with intervals (rliable's score distributions)."""
    with seeded(seed):
        return rly.create_performance_profile(dict(score_dict), taus, reps=reps)
