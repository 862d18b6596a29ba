"""Paper-style reports from results alone: ``rlx2 report <suite>`` -> ``reports/<suite>/<profile>/``.

Everything is derived from the run directories (and seeded random-policy rollouts), so the
same results give byte-identical tables. Written:

* ``runs.csv`` (+ ``runs.parquet`` with pyarrow): the tidy table of every finished run;
* ``table_plan.{md,csv}``: per task and pair of the paper's methods, the seeds now and the
  seeds per method the verdict rule needs at the paper's gap and the spread measured here
  (``rlx2.comparisons``), whether the profile declares enough, and the core-hours to get
  there (``rlx2.run_costs``); first in the index;
* ``table_seeds.{md,csv}``: every finished run's final score by method and seed, each
  method's mean, SD and measured hours per run;
* ``table_references.{md,csv}``: per task, the random policy's return and dense's mean with
  its interval, and whether dense clearly beats both the random policy and zero. Only then
  are "% of dense" and normalised scores findings; elsewhere they are left out, saying why;
* ``table_paper.{md,tex,csv}``: the paper's Table 2 layout: sparsities, size, training and
  inference FLOPs, then every method's % of dense (its interval resamples dense's seeds too);
* ``table_vs_paper.{md,csv}``: per task and method, ours beside the paper's published figure;
* ``table_ordering.{md,csv}``: for every pair of the paper's methods, P(first > second) as
  the effect size and the exact one-sided Mann-Whitney p-values, Holm-corrected within the
  task (a profile's primary comparison alone): "holds" / "reversed" only below ``ALPHA``
  with ``MIN_SEEDS`` seeds a side;
* ``table_improvement.{md,csv}``: P(RLx2 > method) for every other method (effect sizes);
* ``table_aggregate.{md,tex,csv}``: rliable's aggregates of normalised scores (0 = random
  policy, 1 = dense), dense's seeds resampled along;
* ``table_sb3.{md,csv}`` when the suite ran ``sb3``: our dense agent beside
  stable-baselines3's (final scores per seed, mean and IQM, P(dense > sb3), a two-sided test);
* ``figures/`` and ``index.md``, which ties them together with what was run and caveats;
* ``summary.json``: the counts a later ``rlx2 report`` compares with before replacing this one.

A report is built in a temporary directory and swapped in whole (no stale file survives),
and a report built from fewer finished runs than the one it would replace is refused unless
forced (``ReportRefused``).
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from rlx2.comparisons import (Pair, Planned, Tested, decide, declared_enough, interim, judge_pairs, paper_pairs,
                              plan_pairs)
from rlx2.config import PAPER_STEPS, RunConfig, run_id
from rlx2.paper import PAPER_METHODS, ordered, paper_row
from rlx2.power import CANDIDATE_SEEDS
from rlx2.results import Collected, collect, final_scores, random_policy_return, save_table
from rlx2.run_costs import Hours, hours_to_reach, measured_hours
from rlx2.scores import (DenseReference, Normalised, ReportSettings, cells, dense_references, fmt, interval_cell,
                         mean_interval, normalised_scores, percent_of_dense, score_matrix, scores_of, task_scores)
from rlx2.stats import AGGREGATES, ALPHA, MIN_SEEDS, aggregate_metrics, improvement, normalised_aggregates, rank_test_p

SUMMARY_FILE = "summary.json"


class ReportRefused(RuntimeError):
    """Writing the report would replace one built from more finished runs."""


def p_value(p: float | None) -> str:
    return "-" if p is None else f"{p:.4f}" if p >= 0.0001 else f"{p:.1e}"


INTERVAL_NOTE = (f"Intervals are percentile stratified-bootstrap intervals over seeds: `x [low, high]` is a 95 % "
                 f"interval (at least {MIN_SEEDS} seeds); `x (range low to high)` rests on 2-{MIN_SEEDS - 1} seeds, "
                 "where a bootstrap interval is about the range of the seeds and no 95 % interval; `x (1 seed)` has "
                 "none.\n")


def markdown(df: pd.DataFrame) -> str:
    header = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    lines = ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *lines]) + "\n"


def latex(df: pd.DataFrame, caption: str) -> str:
    def esc(text) -> str:
        return str(text).replace("%", r"\%").replace("_", r"\_").replace("&", r"\&")

    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{esc(caption)}}}", r"\small",
             r"\begin{tabular}{" + "l" * len(df.columns) + "}", r"\toprule",
             " & ".join(esc(c) for c in df.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(esc(v) for v in row) + r" \\" for row in df.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, out: Path, stem: str, caption: str, tex: bool = True) -> None:
    (out / f"{stem}.md").write_text(markdown(df))
    df.to_csv(out / f"{stem}.csv", index=False, lineterminator="\n")
    if tex:
        (out / f"{stem}.tex").write_text(latex(df, caption))


def declared_seeds(runs: list[RunConfig], algo: str, task: str) -> dict[str, int]:
    """Seeds per method the profile runs on one algo and task (its declaration, finished or not)."""
    counts: dict[str, int] = {}
    for cfg in runs:
        if cfg.algo == algo and cfg.env == task:
            counts[cfg.method] = counts.get(cfg.method, 0) + 1
    return counts


def references_table(refs: dict[tuple[str, str], DenseReference]) -> pd.DataFrame:
    return pd.DataFrame([{
        "Algo": algo.upper(), "Task": task, "Random policy": fmt(ref.random), "Dense seeds": ref.seeds,
        "Dense mean": interval_cell(ref.mean, ref.low, ref.high, ref.seeds),
        "% of dense and normalised scores": "reported" if ref.problem is None else f"not reported: {ref.problem}",
    } for (algo, task), ref in refs.items()])


NOT_REPORTED = "n/a (see reference returns)"


def paper_table(finals: pd.DataFrame, pct: pd.DataFrame, averages: dict, refs: dict) -> pd.DataFrame:
    """The paper's Table 2 layout."""
    methods = [m for m in ordered(finals.method.unique()) if m != "dense"]
    rows = []
    for algo in sorted(finals.algo.unique()):
        for task in [t for a, t in cells(finals) if a == algo]:
            here = finals[(finals.algo == algo) & (finals.task == task)]
            first = here.iloc[0]
            row = {"Algo": algo.upper(), "Task": task, "Actor sp.": f"{first.actor_sparsity:.0%}",
                   "Critic sp.": f"{first.critic_sparsity:.0%}", "Size": "-", "Train FLOPs": "-", "Infer. FLOPs": "-"}
            if "rlx2" in set(here.method):  # the paper's cost columns are RLx2's; no stand-in when it is missing
                rlx2 = here[here.method == "rlx2"].iloc[0]
                row.update({"Size": f"{rlx2['size']:.3f}x", "Train FLOPs": f"{rlx2.training_flops:.3f}x",
                            "Infer. FLOPs": f"{rlx2.inference_flops:.3f}x"})
            for method in methods:
                hit = pct[(pct.algo == algo) & (pct.task == task) & (pct.method == method)]
                if refs[(algo, task)].problem is not None:
                    row[method] = NOT_REPORTED
                else:
                    row[method] = interval_cell(*hit[["pct", "low", "high", "seeds"]].iloc[0]) if not hit.empty else "-"
            rows.append(row)
        if sum(1 for a, _ in cells(finals) if a == algo) < 2:
            continue  # one task: its average is the task's own row
        average = {"Algo": algo.upper(), "Task": "Average (reported tasks)", "Actor sp.": "", "Critic sp.": "",
                   "Size": "", "Train FLOPs": "", "Infer. FLOPs": ""}
        for method in methods:
            average[method] = interval_cell(*averages[(algo, method)]) if (algo, method) in averages else "-"
        rows.append(average)
    return pd.DataFrame(rows)


def versus_paper(pct: pd.DataFrame, averages: dict, refs: dict, budget: int,
                 planned: dict[tuple[str, str], set[str]] | None = None) -> pd.DataFrame:
    """Per task (and per algo on average, when it has several tasks) and method: ours beside the paper's.

    ``planned`` names the methods the profile runs per (algo, task): a paper method outside it
    reads "not in this profile", one inside it without a finished run "no finished run yet"
    (None: every paper method is planned).
    """
    rows = []
    for algo, task in refs:
        row = paper_row(algo, task)
        if row is None:
            continue
        (actor_sp, critic_sp), published = row
        for method in PAPER_METHODS:
            hit = pct[(pct.algo == algo) & (pct.task == task) & (pct.method == method)]
            if planned is not None and method not in planned.get((algo, task), set()):
                ours = "not in this profile"
            elif refs[(algo, task)].problem is not None:
                ours = NOT_REPORTED
            else:
                ours = interval_cell(*hit[["pct", "low", "high", "seeds"]].iloc[0]) if not hit.empty else \
                    "no finished run yet"
            rows.append({"Algo": algo.upper(), "Task": task, "Method": method,
                         f"Ours ({budget:,} steps, gymnasium v5)": ours,
                         f"Paper ({PAPER_STEPS:,} steps, gym v3)": f"{published[method]:.1f}",
                         "Paper's sparsity (actor/critic)": f"{actor_sp:.0%}/{critic_sp:.0%}"})
    for algo in sorted({a for a, _ in refs}):
        if sum(1 for a, _ in refs if a == algo) < 2 or paper_row(algo, "Average") is None:
            continue
        (actor_sp, critic_sp), published = paper_row(algo, "Average")
        for method in PAPER_METHODS:
            ours = interval_cell(*averages[(algo, method)]) if (algo, method) in averages else "-"
            rows.append({"Algo": algo.upper(), "Task": "Average (reported tasks; paper: four tasks)", "Method": method,
                         f"Ours ({budget:,} steps, gymnasium v5)": ours,
                         f"Paper ({PAPER_STEPS:,} steps, gym v3)": f"{published[method]:.1f}",
                         "Paper's sparsity (actor/critic)": f"{actor_sp:.0%}/{critic_sp:.0%}"})
    return pd.DataFrame(rows)


def effect_cell(tested: Tested) -> str:
    """P(first > second) with its interval, labelled by the smaller side's seed count."""
    return interval_cell(*tested.effect, min(tested.n_first, tested.n_second), digits=2)


def ordering_table(finals: pd.DataFrame, runs: list[RunConfig], primary: tuple[str, str] | None,
                   settings: ReportSettings, added: tuple[str, ...] = ()) -> pd.DataFrame:
    """For each pair of the paper's methods on each task (and each added method against every other one): the
    exact test of its order and the verdict."""
    rows = []
    for algo, task in cells(finals):
        scores = task_scores(finals, algo, task)
        pairs = paper_pairs(algo, task, list(scores), primary, added)
        for tested in judge_pairs(pairs, scores, declared_seeds(runs, algo, task), settings.reps, settings.seed):
            pair = tested.pair
            adjusted = ("tested alone (primary)" if pair.primary and tested.p is not None else
                        f"{p_value(tested.p_adjusted)} / {p_value(tested.p_reverse_adjusted)}"
                        if tested.p_adjusted is not None else "-")
            rows.append({"Algo": algo.upper(), "Task": task,
                         "Paper's order": pair.label() + (" (primary)" if pair.primary else ""),
                         "Seeds": f"{tested.n_first} vs {tested.n_second}",
                         "P(first > second)": effect_cell(tested),
                         "p: paper's direction / reverse": f"{p_value(tested.p)} / {p_value(tested.p_reverse)}"
                         if tested.p is not None else "-",
                         "Holm-adjusted": adjusted, "Verdict": tested.verdict})
    return pd.DataFrame(rows)


def improvement_table(finals: pd.DataFrame, settings: ReportSettings) -> pd.DataFrame:
    """P(RLx2 > method) per algo, averaged over the tasks both ran (rliable's definition): effect sizes."""
    rows = []
    for algo in sorted(finals.algo.unique()):
        if "rlx2" not in set(finals[finals.algo == algo].method):
            continue
        for method in ordered(finals[finals.algo == algo].method.unique()):
            tasks = [t for a, t in cells(finals) if a == algo
                     and len(scores_of(finals, a, t, "rlx2")) and len(scores_of(finals, a, t, method))]
            if method == "rlx2" or not tasks:
                continue
            ours = [scores_of(finals, algo, t, "rlx2") for t in tasks]
            theirs = [scores_of(finals, algo, t, method) for t in tasks]
            seeds = min(len(s) for s in [*ours, *theirs])
            rows.append({"Algo": algo.upper(), "Method": method, "Tasks": len(tasks),
                         "Seeds (RLx2 vs method, fewest per task)": f"{min(map(len, ours))} vs {min(map(len, theirs))}",
                         "P(RLx2 > method)": interval_cell(*improvement(ours, theirs, settings.reps, settings.seed),
                                                           seeds, digits=2)})
    return pd.DataFrame(rows)


def aggregate_names(tasks: int) -> list[str]:
    """The aggregates worth a column: over one or two tasks the median of task means is their mean."""
    return [name for name in AGGREGATES if not (name == "Median" and tasks <= 2)]


def aggregate_table(normalised: dict[str, Normalised], settings: ReportSettings) -> tuple[pd.DataFrame, dict]:
    """The aggregates table, and its values ``{algo: {method: {metric: (point, low, high)}}}`` for the figure."""
    rows, values = [], {}
    for algo, data in normalised.items():
        names = aggregate_names(len(data.tasks))
        for method in ordered(data.raw):
            # dense against itself: one draw is numerator and denominator (its normalised mean is 1 by definition)
            got = normalised_aggregates(data.raw[method], None if method == "dense" else data.dense, data.random,
                                        settings.reps, settings.seed)
            values.setdefault(algo, {})[method] = {name: got[name] for name in names}
            seeds = min([data.raw[method].shape[0], *(len(d) for d in data.dense)])
            row = {"Algo": algo.upper(), "Method": method, "Runs": data.raw[method].size}
            for metric in names:
                row[metric] = interval_cell(*got[metric], seeds, 2)
            rows.append(row)
    return pd.DataFrame(rows), values


def separation(finals: pd.DataFrame, runs: list[RunConfig], settings: ReportSettings) -> str | None:
    """Whether this budget separates methods at all: does dense beat static sparse training, by the exact test?

    One test per task (dense > static, one-sided), Holm-corrected across tasks. If it does not
    hold, differences between sparse methods are noise, and the report says so first.
    """
    items, names, declared_per_task = [], [], []
    for algo, task in cells(finals):
        dense, static = scores_of(finals, algo, task, "dense"), scores_of(finals, algo, task, "static")
        if len(dense) and len(static):
            declared = declared_seeds(runs, algo, task)
            pair = Pair("dense", "static")
            items.append((pair, dense, static, declared_enough(pair, declared)))
            names.append(f"{algo.upper()} {task}")
            declared_per_task.append(declared)
    if not items:
        return None
    tested = [interim(t, declared) for t, declared in zip(decide(items, settings.reps, settings.seed),
                                                           declared_per_task)]
    described = [f"{name}: P(dense > static) = {effect_cell(t)}, " + (
        f"p = {p_value(t.p)} (Holm-adjusted {p_value(t.p_adjusted)}), {t.n_first} vs {t.n_second} seeds: {t.verdict}"
        if t.p_adjusted is not None else t.verdict) for name, t in zip(names, tested)]
    if all(t.verdict.startswith("holds") for t in tested):
        look = ("At this interim look (not every declared seed has finished)"
                if any("interim" in t.verdict for t in tested) else "At this budget")
        return (f"{look} dense beats static sparse training on every task (exact one-sided Mann-Whitney test, "
                f"Holm-corrected across tasks, family-wise error rate {ALPHA:.0%}): the methods separate, and the "
                "tables below are evidence about them (" + "; ".join(described) + ").\n")
    return ("**At this budget it is not established that dense beats static sparse training** (" + "; ".join(described)
            + "). Until that gap is resolved, differences between the sparse methods are not evidence about them: read "
            "this report as the pipeline working, and the table below for the seeds each comparison would need.\n")


def plan_table(finals: pd.DataFrame, runs: list[RunConfig], primary: tuple[str, str] | None,
               assumed_spread: float | None = None, seed: int = 0, added: tuple[str, ...] = (),
               hours: Hours | None = None) -> pd.DataFrame:
    """Per task: the separation check (dense > static) and every pair of the paper's methods, with seeds now, seeds
    needed for 80 % power under the rule, whether the profile's declared seeds suffice (``plan_pairs``) and, with
    ``hours`` (``rlx2.run_costs.measured_hours``), the core-hours of the runs that bring both sides there."""
    rows = []
    tasks = sorted({(c.algo, c.env) for c in runs})
    for algo, task in tasks:
        scores = task_scores(finals, algo, task) if not finals.empty else {}
        declared = declared_seeds(runs, algo, task)
        planned = []
        row = paper_row(algo, task)
        if {"dense", "static"} <= set(declared) and row is not None:  # its own family: one pair per task
            separation_pair = Pair("dense", "static", 100.0, row[1]["static"])
            planned += plan_pairs([separation_pair], scores, declared, assumed_spread, seed=seed,
                                  alpha=ALPHA / (2 * len(tasks)))
        # added methods' pairs count in the family (so the levels are the verdicts'), but have no paper gap to plan by
        planned += [plan for plan in plan_pairs(paper_pairs(algo, task, list(declared), primary, added), scores,
                                                declared, assumed_spread, seed=seed)
                    if plan.pair.first not in added and plan.pair.second not in added]
        for plan in planned:
            rows.append({"Algo": algo.upper(), "Task": task,
                         "Comparison": plan.pair.label() + (" (primary)" if plan.pair.primary else "")
                         + (" (separation check)" if plan.pair.first == "dense" else ""),
                         "Paper's gap (% of dense)": fmt(plan.gap),
                         "Spread (SD, % of dense)": " / ".join(fmt(s) for s in plan.spreads) if plan.spreads else "-",
                         "Seeds now": f"{plan.n_first} vs {plan.n_second}",
                         "Level (one-sided)": f"{plan.alpha:.4g}",
                         "Seeds needed (80 % power)": plan.needed_text(),
                         "Resolvable at this budget": plan.budget_text(),
                         **({} if hours is None else {"Core-hours to get there": cost_text(plan, hours, algo, task)})})
    return pd.DataFrame(rows)


def cost_text(plan: Planned, hours: Hours, algo: str, task: str) -> str:
    """The measured core-hours of the runs a pair still needs to reach its seeds needed (``rlx2.run_costs``)."""
    if plan.why:
        return "-"
    seeds = CANDIDATE_SEEDS[-1] if plan.needed is None else plan.needed
    sides = [(plan.pair.first, plan.n_first), (plan.pair.second, plan.n_second)]
    cost = hours_to_reach(hours, algo, task, sides, seeds)
    if cost is None:
        unpriced = [m for m, n in sides if n < seeds and (algo, task, m) not in hours]
        return f"unknown (no finished {' or '.join(unpriced)} run yet)"
    return f"{cost:.1f}" if plan.needed is not None else f"more than {cost:.0f}"


PLAN_NOTE = (f"Seeds per method that each of the paper's comparisons needs to be resolved with 80 % power by the "
             f"rule below (exact one-sided Mann-Whitney test, at least {MIN_SEEDS} seeds a side; the primary "
             f"comparison at {ALPHA}, every other pair at {ALPHA} over twice the task's family size, Bonferroni's "
             "bound on Holm; the separation check dense > static at its own level, Holm across tasks), if the true gap is the paper's (its % of dense, times dense's mean here) and final scores "
             "spread as measured here (each method's SD over its seeds; a method with one seed takes the task's pooled "
             "SD). A seeded simulation with normal scores (`rlx2.power`): an order of magnitude, not a promise. "
             "Core-hours to get there: the runs both sides still need to reach the seeds needed, each at the median "
             "run time (`wall_seconds`, one core) of that method's finished runs on the task (`rlx2.run_costs`).\n")


def sb3_table(finals: pd.DataFrame, settings: ReportSettings) -> pd.DataFrame:
    """Our dense agent beside stable-baselines3's on every task both ran: is the base agent sound?"""
    rows = []
    for algo, task in cells(finals):
        dense, sb3 = scores_of(finals, algo, task, "dense"), scores_of(finals, algo, task, "sb3")
        if not len(dense) or not len(sb3):
            continue
        pair = {method: score_matrix(finals, algo, [task], method)[0] for method in ("dense", "sb3")}
        iqm = aggregate_metrics(pair, settings.reps, settings.seed)
        seeds = min(len(dense), len(sb3))
        effect = interval_cell(*improvement(dense, sb3, settings.reps, settings.seed), seeds, digits=2)
        if seeds < MIN_SEEDS:
            said = f"too few seeds (n = {len(dense)} vs {len(sb3)})"
        else:  # no direction is claimed: two-sided, the smaller one-sided p doubled
            p = min(1.0, 2 * min(rank_test_p(dense, sb3), rank_test_p(sb3, dense)))
            said = (f"no clear difference (two-sided p = {p_value(p)})" if p >= ALPHA else
                    f"ours {'better' if np.median(dense) > np.median(sb3) else 'worse'} (two-sided p = {p_value(p)})")
        for method, scores in (("dense (ours)", dense), ("sb3", sb3)):
            key = "dense" if method.startswith("dense") else "sb3"
            rows.append({"Algo": algo.upper(), "Task": task, "Agent": method,
                         "Final scores by seed": ", ".join(fmt(s) for s in scores),
                         "Mean": interval_cell(*mean_interval(scores, settings), len(scores)),
                         "IQM": interval_cell(*iqm[key]["IQM"], len(scores)),
                         "P(ours > sb3)": effect if key == "dense" else "",
                         "Verdict": said if key == "dense" else ""})
    return pd.DataFrame(rows)


def seeds_table(finals: pd.DataFrame, hours: Hours) -> pd.DataFrame:
    """Every finished run's final score, by method and seed, with each method's mean, SD and measured hours per run:
    the numbers a reader checks a rerun against, and what a budget is planned from."""
    rows = []
    for algo, task in cells(finals):
        cell = finals[(finals.algo == algo) & (finals.task == task)]
        for method in ordered(cell.method.unique()):
            runs = cell[cell.method == method].sort_values("seed")
            scores = runs.score.to_numpy(dtype=float)
            per_run = hours.get((algo, task, method))
            rows.append({"Algo": algo.upper(), "Task": task, "Method": method, "Seeds": len(scores),
                         "Final score by seed": ", ".join(f"{seed}: {fmt(score)}"
                                                          for seed, score in zip(runs.seed, scores)),
                         "Mean": fmt(float(np.mean(scores))),
                         "SD": fmt(float(np.std(scores, ddof=1))) if len(scores) > 1 else "-",
                         "Hours per run (median)": "-" if per_run is None else f"{per_run:.2f}"})
    return pd.DataFrame(rows)


SEEDS_NOTE = ("Final score of every finished run (the mean of its last evaluations, as everywhere in this report), by "
              "seed; SD over seeds; hours per run: the median `wall_seconds` of the method's finished runs on the task "
              "(one core; summed over a run's attempts), as the plan prices seeds with.\n")


def own_step_axes(runs: list[RunConfig]) -> dict[str, str]:
    """The profile's methods whose evaluations lie on a step axis of their own, and why (``Method.own_step_axis``)."""
    from rlx2.methods import get_method

    return {method: why for method in sorted({cfg.method for cfg in runs})
            if (why := get_method(method).own_step_axis) is not None}


def run_facts(runs: list[RunConfig], results: Path, paths: dict[str, Path] | None = None) -> dict:
    """Versions and commits recorded by the finished runs (for the index)."""
    from rlx2.records import RunDirectory

    versions, commits, seconds = set(), set(), 0.0
    for cfg in runs:
        run_dir = RunDirectory((paths or {}).get(run_id(cfg), results / run_id(cfg)))
        result = run_dir.result()
        if result is None:
            continue
        data = run_dir.saved_config() or {}
        versions.add(json.dumps(data.get("versions", {}), sort_keys=True))
        commits.add(str(data.get("git_commit")))
        commits.update(str(resume.get("git_commit")) for resume in result.resumes)  # resumed on later code
        seconds += float(result.wall_seconds or 0.0)
    return {"versions": [json.loads(v) for v in sorted(versions)], "commits": sorted(commits),
            "run_hours": seconds / 3600}


def package_versions(recorded: list[dict]) -> str:
    """One line for the versions the runs recorded: ``pkg 1.0``, ``pkg 1.0 / 1.1`` where runs differ, and
    ``(some runs)`` for a package only some runs use (e.g. stable-baselines3)."""
    names = sorted({name for versions in recorded for name in versions})
    parts = []
    for name in names:
        seen = sorted({str(versions[name]) for versions in recorded if name in versions})
        some = "" if all(name in versions for versions in recorded) else " (some runs)"
        parts.append(f"{name} {' / '.join(seen)}{some}")
    return ", ".join(parts) or "unknown"


def existing_finished(out: Path) -> int | None:
    """How many finished runs the report in ``out`` was built from (None: no report there)."""
    try:
        return int(json.loads((out / SUMMARY_FILE).read_text())["finished"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:  # a report written before summary.json existed: count its runs
        table = pd.read_csv(out / "runs.csv")
        return len(table[table.metric == "final_score"])
    except (OSError, ValueError, AttributeError, pd.errors.EmptyDataError):
        return None


def report_out_problem(out: Path) -> str | None:
    """Why ``out`` cannot take a report (None: it can). A report replaces its directory whole, so ``out`` must be
    new, empty or a report already: never a file, a link or a directory of someone else's files."""
    if str(out) in ("", "."):
        return "is empty or the current directory: name a report directory"
    if out.is_symlink():
        return "is a symbolic link: name the report directory itself"
    if not out.exists():
        return None
    if not out.is_dir():
        return "is a file, not a report directory: choose another --out"
    if any(out.iterdir()) and not is_report(out):
        return ("is a directory that holds no report (no summary.json); a report replaces its directory whole, "
                "so choose another --out")
    return None


def is_report(path: Path) -> bool:
    """Whether ``path`` holds a report this command wrote (``summary.json``, or ``index.md`` and ``runs.csv``
    from before ``summary.json`` existed)."""
    try:
        summary = json.loads((path / SUMMARY_FILE).read_text())
        return isinstance(summary, dict) and {"suite", "profile", "finished"} <= set(summary)
    except (OSError, ValueError):
        return (path / "index.md").is_file() and (path / "runs.csv").is_file()


def build_report(suite_name: str, profile: str, runs: list[RunConfig], results: Path, out: Path,
                 settings: ReportSettings | None = None, description: str = "", force: bool = False,
                 primary: tuple[str, str] | None = None, *, added: tuple[str, ...] = (),
                 paths: dict[str, Path] | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Write the whole report for ``runs`` (a suite profile) into ``out``; returns a summary.

    ``primary`` is the profile's comparison decided in advance (tested alone); ``added`` are
    methods added to the profile (``--add-method``), compared with every other one; ``paths``
    maps run ids to run directories found anywhere (``--runs``; default ``results/<run id>``);
    ``progress`` is told each phase. Raises ``ReportRefused`` (writing nothing) when ``out``
    holds a report of more finished runs than this one would have, unless ``force``, and
    ValueError when ``out`` cannot take a report (``report_out_problem``).
    """
    settings = settings or ReportSettings()
    problem = report_out_problem(out)
    if problem:
        raise ValueError(f"{out} {problem}")
    say = progress or (lambda phase: None)
    say(f"reading {len(runs)} run directories")
    collected: Collected = collect(runs, results, suite_name, profile, paths)
    summary = {"suite": suite_name, "profile": profile, "finished": len(runs) - len(collected.missing),
               "expected": len(runs), "missing": collected.missing}
    before = existing_finished(out)
    if before is not None and summary["finished"] < before and not force:
        raise ReportRefused(f"{out} holds a report of {before} finished runs; this one would have "
                            f"{summary['finished']} of {len(runs)} (pass --force to replace it anyway)")
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out)
    with staging_directory(out) as staging:
        try:
            summary.update(write_report(suite_name, profile, runs, results, staging, settings, description,
                                        collected, primary, added, paths, say))
            (staging / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        except OSError as exc:  # a full disk while a library writes a file: name the report it was for
            if exc.filename:
                raise
            raise OSError(exc.errno, exc.strerror or str(exc), str(out)) from exc
        say("swapping the new report in")
        swap_in(staging, out)
    return {**summary, "failed": collected.failed}


#: A staging directory's mark, locked while its report is being built: unlocked, it is a leftover.
STAGING_MARK = ".rlx2-report-staging"


@contextmanager
def staging_directory(out: Path) -> Iterator[Path]:
    """A fresh hidden directory beside ``out`` (``.<name>.XXXX``), marked and locked while in use, removed on the
    way out whatever happens (an exception, or a signal the command turned into one)."""
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    mark = open(staging / STAGING_MARK, "w")
    try:
        fcntl.flock(mark, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield staging
    finally:
        mark.close()
        shutil.rmtree(staging, ignore_errors=True)
        (out / STAGING_MARK).unlink(missing_ok=True)  # swapped in with the report


def remove_stale_staging(out: Path) -> None:
    """Remove what an interrupted report on ``out`` left beside it: staging directories whose mark nobody holds,
    and an older report moved aside (put back when ``out`` itself is missing). Nothing else is touched."""
    for leftover in sorted(out.parent.glob(f".{glob.escape(out.name)}.*")):
        if not leftover.is_dir() or leftover.is_symlink():
            continue
        if (leftover / STAGING_MARK).is_file():
            try:
                with open(leftover / STAGING_MARK) as mark:
                    fcntl.flock(mark, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # being built now by another process
            shutil.rmtree(leftover, ignore_errors=True)
        elif is_report(leftover):
            if out.exists():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                os.replace(leftover, out)


def swap_in(staging: Path, out: Path) -> None:
    """Replace ``out`` by ``staging`` whole: no file of the old report survives, and no half-written one shows."""
    os.chmod(staging, 0o755)
    if not out.exists():
        os.replace(staging, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.replace(out, old)  # onto the empty directory just made: the old report, aside for a moment
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)


def write_report(suite_name: str, profile: str, runs: list[RunConfig], results: Path, out: Path,
                 settings: ReportSettings, description: str, collected: Collected,
                 primary: tuple[str, str] | None = None, added: tuple[str, ...] = (),
                 paths: dict[str, Path] | None = None, say: Callable[[str], None] = lambda phase: None) -> dict:
    """The report's files, into the (fresh) directory ``out``; ``say`` is told each phase."""
    table = collected.table
    save_table(table, out)
    finals = final_scores(table) if not table.empty else pd.DataFrame()
    budget = runs[0].steps
    sections: list[tuple[str, str]] = []
    figure_list: list[tuple[str, str]] = []
    extra: dict = {}
    say("the plan: seeds each comparison needs (power simulation)")
    hours = measured_hours(runs, results, paths)
    plan = plan_table(finals, runs, primary, seed=settings.seed, added=added, hours=hours)
    say("the separation check")
    can_say = []
    if not finals.empty:
        verdict_text = separation(finals, runs, settings)
        if verdict_text is None and {"dense", "static"} <= {c.method for c in runs}:
            verdict_text = ("Not judged yet: dense and static sparse training have no finished runs on a common task, "
                            "so nothing below says whether this budget separates the methods at all.\n")
        if verdict_text:
            can_say.append(verdict_text)
    if primary is not None:
        can_say.append(f"Primary comparison, decided before any run: **{primary[0]} beats {primary[1]}**, tested alone "
                       f"at {ALPHA} (every other verdict is Holm-corrected within its task).\n")
    if not plan.empty:
        write_table(plan, out, "table_plan", "seeds each comparison needs", tex=False)
        can_say.append(PLAN_NOTE + "\n" + markdown(plan))
    if can_say:
        sections.append(("What this budget can say", "\n".join(can_say)))
    if finals.empty:
        sections.append(("Results", "No run of this profile has finished yet: there is nothing to tabulate.\n"))
    else:
        say("random-policy returns")
        random_returns = {task: random_policy_return(task, settings.random_episodes, settings.seed)
                          for task in sorted(finals.task.unique())}
        say("tables")
        extra["random_returns"] = random_returns
        refs = dense_references(finals, random_returns, settings)
        references = references_table(refs)
        write_table(references, out, "table_references", "reference returns", tex=False)
        sections.append(("Reference returns", INTERVAL_NOTE + "\n" + markdown(references)))
        by_seed = seeds_table(finals, hours)
        write_table(by_seed, out, "table_seeds", "final score of every run", tex=False)
        sections.append(("Every finished run", SEEDS_NOTE + "\n" + markdown(by_seed)))
        pct, averages = percent_of_dense(finals, refs, settings)
        if "dense" not in set(finals.method):
            sections.append(("% of dense", "No dense run has finished: % of dense and normalised scores need it, "
                                           "so those tables are not written.\n"))
        else:
            paper = paper_table(finals, pct, averages, refs)
            write_table(paper, out, "table_paper", f"% of dense per task ({suite_name}/{profile}), mean with interval")
            sections.append(("% of dense (the paper's Table 2 layout)", PERCENT_NOTE + "\n" + markdown(paper)))
            planned: dict[tuple[str, str], set[str]] = {}
            for cfg in runs:
                planned.setdefault((cfg.algo, cfg.env), set()).add(cfg.method)
            versus = versus_paper(pct, averages, refs, budget, planned)
            if not versus.empty:
                write_table(versus, out, "table_vs_paper", "ours beside the paper", tex=False)
                sections.append(("Beside the paper, task by task", markdown(versus)))
        ordering = ordering_table(finals, runs, primary, settings, added)
        if not ordering.empty:
            write_table(ordering, out, "table_ordering", "does the paper's ordering hold", tex=False)
            added_note = (f"A method added to the profile ({', '.join(added)}) is compared with every other one, itself "
                          "first (no paper figure, so no direction is claimed: \"holds\" says it is better, "
                          "\"reversed\" that it is worse); these pairs join the task's Holm family.\n" if added else "")
            sections.append(("Does the paper's ordering hold?", ORDERING_NOTE + added_note + "\n" + markdown(ordering)))
        improvement_rows = improvement_table(finals, settings)
        if not improvement_rows.empty:
            write_table(improvement_rows, out, "table_improvement", "probability of improvement", tex=False)
            sections.append(("Probability that RLx2 beats each method",
                             IMPROVEMENT_NOTE + "\n" + markdown(improvement_rows)))
        normalised, cut = normalised_scores(finals, refs) if "dense" in set(finals.method) else ({}, [])
        scores = {algo: data.scores for algo, data in normalised.items()}
        aggregates: dict = {}
        if normalised:
            aggregate, aggregates = aggregate_table(normalised, settings)
            write_table(aggregate, out, "table_aggregate", "normalised scores (0 = random, 1 = dense)")
            note = AGGREGATE_NOTE + "".join(f"- {line}.\n" for line in cut)
            sections.append(("Aggregate metrics (normalised: 0 = random policy, 1 = dense)",
                             note + "\n" + markdown(aggregate)))
        elif "dense" in set(finals.method):
            sections.append(("Aggregate metrics", "Not reported: on no task does dense clearly beat both the random "
                                                  "policy and zero (see reference returns), so normalised scores "
                                                  "would not keep the ordering of raw scores.\n"))
        sb3 = sb3_table(finals, settings)
        if not sb3.empty:
            write_table(sb3, out, "table_sb3", "our dense agent beside stable-baselines3", tex=False)
            sections.append(("Dense parity with stable-baselines3", SB3_NOTE + "\n" + markdown(sb3)))
        say("figures")
        from rlx2 import figures  # matplotlib: only when there is something to draw

        figure_list = figures.write_all(table, finals, pct, scores, aggregates, out / "figures", settings,
                                        own_step_axes(runs))
    write_index(out, suite_name, profile, description, runs, results, collected, sections, figure_list, settings,
                added, paths)
    return extra


ORDERING_NOTE = (f"For every pair of the paper's methods on each task it reports, in the paper's order (its % of dense "
                 "in brackets): the seeds each side has, the probability that a run of the first method here scores "
                 "above a run of the second (raw final scores, an effect size), and the exact one-sided Mann-Whitney "
                 "p-value of the paper's direction and of the reverse, over every finished seed. **holds** / "
                 f"**reversed**: the Holm-adjusted p-value of that direction is below {ALPHA} (both directions of every "
                 f"pair the profile runs at {MIN_SEEDS}+ seeds form the task's family, so the chance of any false "
                 f"verdict among them is at most {ALPHA:.0%}); a primary comparison is tested alone, in its declared "
                 f"direction. No verdict with fewer than {MIN_SEEDS} seeds on a side: with 2 seeds a side, two "
                 "identical methods look ordered one time in six.\n")
IMPROVEMENT_NOTE = ("P(RLx2 > method): the probability that an RLx2 run's final score exceeds the method's, per task "
                    "on raw scores and averaged over the tasks both ran (rliable's definition), with its bootstrap "
                    "interval. An effect size, not a test: the verdicts are in the table above.\n")
PERCENT_NOTE = ("Mean final score as % of dense's mean on the same task; each interval resamples dense's seeds as well "
                "as the method's, so it carries both uncertainties. " + INTERVAL_NOTE)
AGGREGATE_NOTE = ("rliable's aggregates of normalised scores over runs and tasks (the median of task means is left out "
                  "where it equals their mean, with one or two tasks); every bootstrap replicate redraws dense's seeds "
                  "too, so the intervals carry the uncertainty of the normalisation. They need the same seed count on "
                  "every task.\n")
SB3_NOTE = ("The same task, budget and hyperparameters (warm-up, batch, learning rate, noises, network widths, "
            "discount, tau, policy delay) in stable-baselines3's own implementation, evaluated with this suite's "
            "protocol: if ours were clearly worse, every % of dense would be measured against a weak baseline. "
            f"No direction is claimed, so the exact test is two-sided; no verdict under {MIN_SEEDS} seeds a side.\n")


def write_index(out: Path, suite_name: str, profile: str, description: str, runs: list[RunConfig], results: Path,
                collected: Collected, sections: list[tuple[str, str]], figure_list: list[tuple[str, str]],
                settings: ReportSettings, added: tuple[str, ...] = (), paths: dict[str, Path] | None = None) -> None:
    facts = run_facts(runs, results, paths)
    cfg = runs[0].resolve_budget()
    per_method: dict[str, int] = {}
    for c in runs:
        per_method[c.method] = max(per_method.get(c.method, 0), c.seed + 1)
    most = max(per_method.values())
    fewer = {m: n for m, n in per_method.items() if n < most}
    seeds_text = f"{most} per method" + (
        " (by the profile's declaration fewer for " + ", ".join(f"{m}: {n}" for m, n in fewer.items()) + ")"
        if fewer else "")
    lines = [f"# Report: suite `{suite_name}`, profile `{profile}`", ""]
    if description:
        lines += [description, ""]
    lines += [
        "## What was run", "",
        f"- algorithms: {', '.join(sorted({c.algo for c in runs}))}; tasks: {', '.join(sorted({c.env for c in runs}))}",
        f"- methods: {', '.join(ordered({c.method for c in runs}))}"
        + (f" ({', '.join(added)} added to the profile's, compared with each of them)" if added else ""),
        f"- budget: {cfg.steps:,} environment steps per run ({cfg.steps / PAPER_STEPS:.1%} of the paper's), warm-up "
        f"{cfg.warmup_steps:,}, evaluation every {cfg.eval_every:,} steps over {cfg.eval_episodes} episodes; the "
        f"score of a run is the mean of its last {cfg.final_window} evaluations (the last 5 %); seeds: {seeds_text}",
        f"- runs: {len(runs) - len(collected.missing)} of {len(runs)} finished, "
        f"{facts['run_hours']:.2f} h of run time in all (sum over runs, one core each)",
        f"- bootstrap: {settings.reps:,} replications, seed {settings.seed}; random-policy reference: "
        f"{settings.random_episodes} episodes per task",
        f"- code commit(s): {', '.join(facts['commits']) or 'unknown'}",
    ]
    lines.append("- versions: " + package_versions(facts["versions"]))
    lines.append("")
    if collected.missing:
        lines += ["## Missing runs", "",
                  f"{len(collected.missing)} expected runs have no result; every table below uses only the finished "
                  "ones (per cell, the seed counts are in `runs.csv`).", ""]
        lines += [f"- `{name}`" + (f": {collected.failed[name]}" if name in collected.failed else "")
                  for name in collected.missing]
        lines.append("")
    for title, body in sections:
        lines += [f"## {title}", "", body]
    if figure_list:
        lines += ["## Figures", ""]
        for name, caption in figure_list:
            lines += [f"![{name}](figures/{name}.png)", "", f"*{caption}*", ""]
    lines += [
        "## Caveats", "",
        f"- {seeds_text if not collected.missing else f'up to {seeds_text}'} (each cell's count is in `runs.csv`); "
        f"an interval over fewer than {MIN_SEEDS} seeds is printed as a range, not a 95 % interval, and no ordering "
        f"verdict rests on fewer than {MIN_SEEDS} seeds a side.",
        "- Verdicts are exact rank tests with the family-wise error rate stated above; while runs are missing they "
        "are interim looks at a family fixed by the profile's declared seeds, and the final verdict is the one made "
        "when every declared run has finished.",
        f"- The budget ({cfg.steps:,} steps) is {cfg.steps / PAPER_STEPS:.1%} of the paper's 3M; short runs favour "
        "methods that learn fast, and sparse topology evolution has less time to act.",
        "- gymnasium v5 tasks differ from the paper's gym v3 ones (observation sizes, some rewards): compare ratios "
        "to dense, not absolute returns.",
        "- The paper's averages are over four tasks; ours are over the tasks listed above where % of dense is reported.",
        "",
    ]
    (out / "index.md").write_text("\n".join(lines))
