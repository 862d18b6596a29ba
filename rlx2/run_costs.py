"""What runs cost here: each method's measured hours per run, and what the rest of a profile will take.

Why: compute decides what a profile can settle. "Not resolvable at this budget" is only
actionable with what more seeds would cost, and a long profile's owner wants to know
when it will be done. Both are read from the records, never predicted from a model:
a run's cost is its ``wall_seconds`` (summed over its attempts, one core each; the
work lost when an attempt was killed is not in it), and a method's cost per run on a
task is the median over its finished runs there, so one run resumed on a faster engine
or slowed by a loaded machine moves it little. A method with no finished run on a task
has no cost yet: what depends on it is said to be unknown, never guessed from another
method (a dense run costs about twice a 95 %-sparse one here).
"""

from __future__ import annotations

import heapq
import os
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rlx2.config import RunConfig, run_id

#: (algo, task, method) -> hours of one core per finished run, the median over the finished runs.
Hours = dict[tuple[str, str, str], float]


def measured_hours(runs: Iterable[RunConfig], results: Path, paths: dict[str, Path] | None = None) -> Hours:
    """The median hours per finished run of each method on each task, over ``runs`` that have a result."""
    from rlx2.records import RunDirectory

    seen: dict[tuple[str, str, str], list[float]] = {}
    for cfg in runs:
        result = RunDirectory((paths or {}).get(run_id(cfg), results / run_id(cfg))).result()
        if result is not None and result.wall_seconds and result.wall_seconds > 0:
            seen.setdefault((cfg.algo, cfg.env, cfg.method), []).append(result.wall_seconds / 3600)
    return {key: statistics.median(hours) for key, hours in sorted(seen.items())}


def hours_to_reach(hours: Hours, algo: str, task: str, sides: Iterable[tuple[str, int]], seeds: int) -> float | None:
    """Core-hours of the runs that bring each ``(method, seeds it has)`` side to ``seeds``; None when a side that
    needs runs has no measured cost."""
    total = 0.0
    for method, have in sides:
        more = max(seeds - have, 0)
        if more:
            per_run = hours.get((algo, task, method))
            if per_run is None:
                return None
            total += more * per_run
    return total


def makespan(costs: Iterable[float], workers: int) -> float:
    """Hours until ``workers`` parallel workers finish runs of these ``costs`` taken in order, each by the first
    worker free (what the local executor does): more than ``sum / workers`` when runs cannot be split."""
    free = [0.0] * max(1, workers)
    for cost in costs:
        heapq.heappush(free, heapq.heappop(free) + cost)
    return max(free)


@dataclass(frozen=True)
class Remaining:
    """What a profile's unfinished runs will take, at the measured cost per run."""

    costs: tuple[float, ...]  # core-hours of each unfinished run whose method has a measured cost, in suite order
    runs: int  # unfinished runs (pending, partial or running)
    unpriced: int  # of them, runs whose method has no finished run on that task yet

    @property
    def hours(self) -> float:
        return sum(self.costs)

    def text(self, hours_per_run: Hours, workers: int | None = None) -> str:
        if not self.runs:
            return "nothing left to run"
        if self.unpriced == self.runs:
            return (f"left: {self.runs} unfinished run{'s' if self.runs != 1 else ''}; no run time to price them with "
                    "yet (a method's cost is measured from its finished runs on the task)")
        workers = workers or os.cpu_count() or 1
        costs = "; ".join(f"{method} {algo.upper()} {task} {h:.2f} h"
                          for (algo, task, method), h in hours_per_run.items())
        line = (f"left: about {self.hours:.1f} core-hours for {self.runs} unfinished run{'s' if self.runs != 1 else ''}"
                f" (about {makespan(self.costs, workers):.1f} h of wall-clock with {workers} worker"
                f"{'s' if workers != 1 else ''}), at the median run time of each method's finished runs here "
                f"({costs or 'none yet'})")
        if self.unpriced:
            line += f"; {self.unpriced} of them not counted: their method has no finished run on that task yet"
        return line


def remaining(unfinished: Iterable[tuple[RunConfig, int]], hours: Hours) -> Remaining:
    """``unfinished``: each run not done with the steps it has logged (a running or partial run costs its rest)."""
    costs, count, unpriced = [], 0, 0
    for cfg, step in unfinished:
        count += 1
        per_run = hours.get((cfg.algo, cfg.env, cfg.method))
        if per_run is None:
            unpriced += 1
            continue
        costs.append(per_run * max(0.0, 1.0 - min(step, cfg.steps) / cfg.steps))
    return Remaining(tuple(costs), count, unpriced)
