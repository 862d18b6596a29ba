"""Score statistics of a report: final scores by cell, the dense reference, % of dense and normalised scores.

Pure functions of the tidy table's final scores (``rlx2.results.final_scores``) and the
random-policy returns, drawn with ``rlx2.stats``'s seeded bootstraps; ``rlx2.report`` only
assembles their values into tables, ``rlx2.figures`` draws them.

* ``scores_of`` / ``task_scores`` / ``score_matrix``: final scores of one cell by seed, of
  every method on a task, and of one method over tasks as rliable's ``[seeds, tasks]`` matrix;
* ``DenseReference`` (``dense_references``): per task the random policy's return and dense's
  mean with its interval, and whether ratios to dense mean anything there;
* ``percent_of_dense``: every method's mean as % of dense's, each interval resampling dense's
  seeds too (``ratio_to_dense``); ``normalised_scores``: 0 = random policy, 1 = dense's mean;
* ``fmt`` / ``interval_cell``: how a score and its interval are written (what the interval is
  at that seed count).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rlx2.paper import ordered
from rlx2.stats import DEFAULT_REPS, MIN_SEEDS, Interval, interval, normalise


@dataclass
class ReportSettings:
    reps: int = DEFAULT_REPS  # bootstrap replications
    seed: int = 0  # seed of every bootstrap
    random_episodes: int = 10  # episodes of the random policy per task


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def interval_cell(point: float, low: float, high: float, seeds: int, digits: int = 1) -> str:
    """A point with its bootstrap interval, labelled by what it is at ``seeds`` (the fewest seeds it rests on).

    ``MIN_SEEDS`` or more: ``x [low, high]``, a 95 % interval. Fewer: ``x (range low to high)``,
    since a percentile bootstrap over 2-4 values is about their range, not a 95 % interval.
    One seed: ``x (1 seed)``, no interval at all.
    """
    if seeds >= MIN_SEEDS:
        return f"{fmt(point, digits)} [{fmt(low, digits)}, {fmt(high, digits)}]"
    if seeds >= 2:
        return f"{fmt(point, digits)} (range {fmt(low, digits)} to {fmt(high, digits)})"
    return f"{fmt(point, digits)} (1 seed)"


def mean_interval(values: np.ndarray, settings: ReportSettings) -> Interval:
    """Mean of ``values`` (one per seed) with its bootstrap interval."""
    return interval([np.asarray(values, dtype=float)], lambda v: np.mean(v, axis=-1), settings.reps, settings.seed)


def scores_of(finals: pd.DataFrame, algo: str, task: str, method: str) -> np.ndarray:
    """Final scores of one cell, by seed."""
    chosen = finals[(finals.algo == algo) & (finals.task == task) & (finals.method == method)]
    return chosen.sort_values("seed").score.to_numpy(dtype=float)


def task_scores(finals: pd.DataFrame, algo: str, task: str) -> dict[str, np.ndarray]:
    """``{method: final scores by seed}`` of one algo and task."""
    here = finals[(finals.algo == algo) & (finals.task == task)]
    return {method: scores_of(finals, algo, task, method) for method in ordered(here.method.unique())}


def cells(finals: pd.DataFrame) -> list[tuple[str, str]]:
    """Every ``(algo, task)`` with finished runs, sorted."""
    return sorted({(a, t) for a, t in zip(finals.algo, finals.task)})


def score_matrix(finals: pd.DataFrame, algo: str, tasks: list[str], method: str) -> tuple[np.ndarray, list[int]]:
    """``method``'s final scores on ``tasks`` as one ``[seeds, tasks]`` matrix (rliable's shape), cut to the seeds
    every task has, and each task's own seed count (so a caller can say what was cut)."""
    columns = [scores_of(finals, algo, task, method) for task in tasks]
    seeds = min(len(c) for c in columns)
    return np.stack([c[:seeds] for c in columns], axis=1), [len(c) for c in columns]


@dataclass(frozen=True)
class DenseReference:
    """What "% of dense" and normalised scores of one task are relative to, and whether they mean anything."""

    random: float  # mean return of a uniformly random policy
    mean: float  # dense's mean final score (nan: no dense run)
    low: float  # its bootstrap interval over seeds (a range below MIN_SEEDS seeds)
    high: float
    seeds: int
    scores: tuple[float, ...] = ()  # dense's final scores by seed (ratios to dense resample them)

    @property
    def problem(self) -> str | None:
        """Why ratios to dense are not findings on this task (None: they are)."""
        if self.seeds == 0:
            return "no finished dense run"
        if self.seeds == 1:
            return "one dense run: no interval to tell whether it beats the random policy"
        if not self.low > self.random:
            return (f"dense does not clearly beat the random policy (its mean {interval_cell(self.mean, self.low, self.high, self.seeds)}, "
                    f"random policy {fmt(self.random)})")
        if not self.low > 0:
            return f"dense's mean {interval_cell(self.mean, self.low, self.high, self.seeds)} reaches 0 or below"
        return None


def dense_references(finals: pd.DataFrame, random_returns: dict[str, float], settings: ReportSettings
                     ) -> dict[tuple[str, str], DenseReference]:
    refs = {}
    for algo, task in cells(finals):
        dense = scores_of(finals, algo, task, "dense")
        point, low, high = mean_interval(dense, settings) if len(dense) else (np.nan, np.nan, np.nan)
        refs[(algo, task)] = DenseReference(random_returns[task], point, low, high, len(dense), tuple(dense))
    return refs


def ratio_to_dense(method_scores: list[np.ndarray], dense_scores: list[np.ndarray], settings: ReportSettings
                   ) -> Interval:
    """100 x mean(method) / mean(dense), averaged over tasks, with dense's seeds resampled too.

    Every task's runs of the method and of dense are redrawn independently in each bootstrap
    replicate, so the interval carries dense's uncertainty as well as the method's, and tasks
    with different seed counts need no truncation.
    """
    tasks = len(method_scores)

    def statistic(*draws):
        return np.mean([100.0 * np.mean(draws[t], axis=-1) / np.mean(draws[tasks + t], axis=-1) for t in range(tasks)],
                       axis=0)

    return interval([*method_scores, *dense_scores], statistic, settings.reps, settings.seed)


def percent_of_dense(finals: pd.DataFrame, refs: dict, settings: ReportSettings) -> tuple[pd.DataFrame, dict]:
    """Per valid (algo, task, method): % of dense's mean with its interval; per algo, averages over its valid tasks."""
    rows, averages = [], {}
    for algo in sorted(finals.algo.unique()):
        tasks = [t for a, t in cells(finals) if a == algo and refs[(a, t)].problem is None]
        columns: dict[str, list[np.ndarray]] = {}
        for task in tasks:
            dense = np.array(refs[(algo, task)].scores)
            for method, scores in task_scores(finals, algo, task).items():
                if method == "dense":  # dense against itself: only its own spread (numerator and denominator are one)
                    point, low, high = interval([scores], lambda d: 100.0 * np.mean(d, axis=-1) / np.mean(dense),
                                                settings.reps, settings.seed)
                    seeds = len(scores)
                else:
                    point, low, high = ratio_to_dense([scores], [dense], settings)
                    seeds = min(len(scores), len(dense))
                rows.append({"algo": algo, "task": task, "method": method, "pct": point, "low": low, "high": high,
                             "seeds": seeds})
                columns.setdefault(method, []).append(scores)
        for method, per_task in columns.items():
            if method != "dense" and len(per_task) == len(tasks):  # a task without this method: no average
                dense = [np.array(refs[(algo, t)].scores) for t in tasks]
                seeds = min(len(c) for c in [*per_task, *dense])
                averages[(algo, method)] = (*ratio_to_dense(per_task, dense, settings), seeds)
    return pd.DataFrame(rows, columns=["algo", "task", "method", "pct", "low", "high", "seeds"]), averages


@dataclass(frozen=True)
class Normalised:
    """One algo's scores over its reported tasks, per method ``[seeds, tasks]``: raw, and normalised
    (0 = random policy, 1 = dense's mean), with what normalising needs."""

    tasks: list[str]
    raw: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]
    random: list[float]
    dense: list[np.ndarray]  # dense's final scores per task


def normalised_scores(finals: pd.DataFrame, refs: dict) -> tuple[dict[str, Normalised], list[str]]:
    """Per algo, its methods' scores over the reported tasks, and a note per method that had to be cut to
    the seeds every task has (rliable's aggregates need a matrix).

    Only tasks where dense clearly beats the random policy are used, so normalising keeps
    every task's ordering of raw scores.
    """
    out: dict[str, Normalised] = {}
    notes = []
    for algo in sorted(finals.algo.unique()):
        tasks = [t for a, t in cells(finals) if a == algo and refs[(a, t)].problem is None]
        if not tasks:
            continue
        random = [refs[(algo, t)].random for t in tasks]
        means = [refs[(algo, t)].mean for t in tasks]
        raw, scores = {}, {}
        for method in ordered(finals[finals.algo == algo].method.unique()):
            matrix, counts = score_matrix(finals, algo, tasks, method)
            if matrix.shape[0] == 0:
                continue
            if any(count != matrix.shape[0] for count in counts):
                notes.append(f"{algo.upper()} {method}: its tasks have {', '.join(map(str, counts))} "
                             f"seeds; the aggregates use the first {matrix.shape[0]} of each")
            raw[method] = matrix
            scores[method] = normalise(raw[method], np.array(random), np.array(means))
        out[algo] = Normalised(tasks, raw, scores, random, [np.array(refs[(algo, t)].scores) for t in tasks])
    return out, notes
