"""Paper-style reports from results alone: ``rlx2 report <suite>`` -> ``reports/<suite>/<profile>/``.

Everything is derived from the run directories (and seeded random-policy rollouts), so the
same results give byte-identical tables. Written:

* ``runs.csv`` (+ ``runs.parquet`` with pyarrow): the tidy table of every finished run;
* ``table_references.{md,csv}``: per task, the random policy's return and dense's mean with
  its 95 % CI, and whether dense clearly beats both the random policy and zero. Only then
  are "% of dense" and normalised scores findings; elsewhere they are left out, saying why;
* ``table_paper.{md,tex,csv}``: the paper's Table 2 layout: sparsities, size, training and
  inference FLOPs, then every method's % of dense (mean over seeds [95 % bootstrap CI]);
* ``table_vs_paper.{md,csv}``: per task and method, ours beside the paper's published figure;
* ``table_ordering.{md,csv}``: for every pair of the paper's methods, the paper's order and
  the probability that it holds here (rliable's probability of improvement, with its CI):
  "holds" when the interval lies above 1/2, "reversed" below, "unresolved" otherwise;
* ``table_improvement.{md,csv}``: P(RLx2 > method) for every other method, with CIs;
* ``table_aggregate.{md,tex,csv}``: IQM, median, mean and optimality gap of normalised
  scores (0 = random policy, 1 = dense) with stratified-bootstrap 95 % CIs;
* ``table_sb3.{md,csv}`` when the suite ran ``sb3``: our dense agent beside
  stable-baselines3's (final scores per seed, IQM with CIs, P(dense > sb3));
* ``figures/`` and ``index.md``, which ties them together with what was run and caveats;
* ``summary.json``: the counts a later ``rlx2 report`` compares with before replacing this one.

A report is built in a temporary directory and swapped in whole (no stale file survives),
and a report built from fewer finished runs than the one it would replace is refused unless
forced (``ReportRefused``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rlx2.config import PAPER_STEPS, RunConfig, run_id
from rlx2.paper import PAPER_METHODS, ordered, paper_row, paper_task
from rlx2.results import Collected, collect, final_scores, random_policy_return, save_table
from rlx2.stats import aggregate_metrics, interval_estimates, normalise, probability_of_improvement

SUMMARY_FILE = "summary.json"


class ReportRefused(RuntimeError):
    """Writing the report would replace one built from more finished runs."""


@dataclass
class ReportSettings:
    reps: int = 2_000  # bootstrap replications
    seed: int = 0  # seed of every bootstrap
    random_episodes: int = 10  # episodes of the random policy per task


@dataclass(frozen=True)
class DenseReference:
    """What "% of dense" and normalised scores of one task are relative to, and whether they mean anything."""

    random: float  # mean return of a uniformly random policy
    mean: float  # dense's mean final score (nan: no dense run)
    low: float  # its 95 % bootstrap interval over seeds
    high: float
    seeds: int

    @property
    def problem(self) -> str | None:
        """Why ratios to dense are not findings on this task (None: they are)."""
        if self.seeds == 0:
            return "no finished dense run"
        if self.seeds == 1:
            return "one dense run: no interval to tell whether it beats the random policy"
        if not self.low > self.random:
            return (f"dense does not clearly beat the random policy (95 % CI of its mean [{fmt(self.low)}, "
                    f"{fmt(self.high)}], random policy {fmt(self.random)})")
        if not self.low > 0:
            return f"the 95 % CI of dense's mean [{fmt(self.low)}, {fmt(self.high)}] reaches 0 or below"
        return None


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def cell(point: float, low: float, high: float, digits: int = 1) -> str:
    return f"{fmt(point, digits)} [{fmt(low, digits)}, {fmt(high, digits)}]"


def seeded_cell(point: float, low: float, high: float, seeds: int, digits: int = 1) -> str:
    """``cell``, except that one seed has no interval (a bootstrap over one value collapses to it): "x (1 seed)"."""
    return cell(point, low, high, digits) if seeds >= 2 else f"{fmt(point, digits)} (1 seed)"


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


def mean_interval(values: np.ndarray, settings: ReportSettings) -> tuple[float, float, float]:
    """Mean of ``values`` (one per seed, or ``[seeds, tasks]``) with its 95 % stratified-bootstrap interval."""
    values = np.asarray(values, dtype=float)
    matrix = values[:, None] if values.ndim == 1 else values
    return interval_estimates({"x": matrix}, lambda s: np.mean(s), settings.reps, settings.seed)["x"]


def scores_of(finals: pd.DataFrame, algo: str, task: str, method: str) -> np.ndarray:
    """Final scores of one cell, by seed."""
    chosen = finals[(finals.algo == algo) & (finals.task == task) & (finals.method == method)]
    return chosen.sort_values("seed").score.to_numpy(dtype=float)


def cells(finals: pd.DataFrame) -> list[tuple[str, str]]:
    """Every ``(algo, task)`` with finished runs, sorted."""
    return sorted({(a, t) for a, t in zip(finals.algo, finals.task)})


def dense_references(finals: pd.DataFrame, random_returns: dict[str, float], settings: ReportSettings
                     ) -> dict[tuple[str, str], DenseReference]:
    refs = {}
    for algo, task in cells(finals):
        dense = scores_of(finals, algo, task, "dense")
        point, low, high = mean_interval(dense, settings) if len(dense) else (np.nan, np.nan, np.nan)
        refs[(algo, task)] = DenseReference(random_returns[task], point, low, high, len(dense))
    return refs


def references_table(refs: dict[tuple[str, str], DenseReference]) -> pd.DataFrame:
    return pd.DataFrame([{
        "Algo": algo.upper(), "Task": task, "Random policy": fmt(ref.random), "Dense seeds": ref.seeds,
        "Dense mean [95% CI]": cell(ref.mean, ref.low, ref.high),
        "% of dense and normalised scores": "reported" if ref.problem is None else f"not reported: {ref.problem}",
    } for (algo, task), ref in refs.items()])


def percent_of_dense(finals: pd.DataFrame, refs: dict, settings: ReportSettings) -> tuple[pd.DataFrame, dict]:
    """Per valid (algo, task, method): % of dense's mean with a CI over seeds; per algo, averages over its valid tasks."""
    rows, averages = [], {}
    for algo in sorted(finals.algo.unique()):
        tasks = [t for a, t in cells(finals) if a == algo and refs[(a, t)].problem is None]
        columns: dict[str, list[np.ndarray]] = {}
        for task in tasks:
            for method in ordered(finals[(finals.algo == algo) & (finals.task == task)].method.unique()):
                pct = 100.0 * scores_of(finals, algo, task, method) / refs[(algo, task)].mean
                point, low, high = mean_interval(pct, settings)
                rows.append({"algo": algo, "task": task, "method": method, "pct": point, "low": low, "high": high,
                             "seeds": len(pct)})
                columns.setdefault(method, []).append(pct)
        for method, per_task in columns.items():
            if len(per_task) == len(tasks):  # a task without this method: no average
                seeds = min(len(c) for c in per_task)
                averages[(algo, method)] = (*mean_interval(np.stack([c[:seeds] for c in per_task], axis=1), settings),
                                            seeds)
    return pd.DataFrame(rows, columns=["algo", "task", "method", "pct", "low", "high", "seeds"]), averages


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
                    row[method] = seeded_cell(*hit[["pct", "low", "high", "seeds"]].iloc[0]) if not hit.empty else "-"
            rows.append(row)
        average = {"Algo": algo.upper(), "Task": "Average (reported tasks)", "Actor sp.": "", "Critic sp.": "",
                   "Size": "", "Train FLOPs": "", "Infer. FLOPs": ""}
        for method in methods:
            average[method] = seeded_cell(*averages[(algo, method)]) if (algo, method) in averages else "-"
        rows.append(average)
    return pd.DataFrame(rows)


def versus_paper(pct: pd.DataFrame, averages: dict, refs: dict, budget: int) -> pd.DataFrame:
    """Per task (and per algo on average, when it has several tasks) and method: ours beside the paper's."""
    rows = []
    for algo, task in refs:
        row = paper_row(algo, task)
        if row is None:
            continue
        (actor_sp, critic_sp), published = row
        for method in PAPER_METHODS:
            hit = pct[(pct.algo == algo) & (pct.task == task) & (pct.method == method)]
            ours = (NOT_REPORTED if refs[(algo, task)].problem is not None else
                    seeded_cell(*hit[["pct", "low", "high", "seeds"]].iloc[0]) if not hit.empty else "not run")
            rows.append({"Algo": algo.upper(), "Task": task, "Method": method,
                         f"Ours ({budget:,} steps, gymnasium v5)": ours,
                         f"Paper ({PAPER_STEPS:,} steps, gym v3)": f"{published[method]:.1f}",
                         "Paper's sparsity (actor/critic)": f"{actor_sp:.0%}/{critic_sp:.0%}"})
    for algo in sorted({a for a, _ in refs}):
        if sum(1 for a, _ in refs if a == algo) < 2 or paper_row(algo, "Average") is None:
            continue
        (actor_sp, critic_sp), published = paper_row(algo, "Average")
        for method in PAPER_METHODS:
            ours = seeded_cell(*averages[(algo, method)]) if (algo, method) in averages else "-"
            rows.append({"Algo": algo.upper(), "Task": "Average (reported tasks; paper: four tasks)", "Method": method,
                         f"Ours ({budget:,} steps, gymnasium v5)": ours,
                         f"Paper ({PAPER_STEPS:,} steps, gym v3)": f"{published[method]:.1f}",
                         "Paper's sparsity (actor/critic)": f"{actor_sp:.0%}/{critic_sp:.0%}"})
    return pd.DataFrame(rows)


def raw_score_matrices(finals: pd.DataFrame, algo: str, methods: list[str]) -> dict[str, np.ndarray]:
    """``{method: [seeds, tasks]}`` of raw final scores over the algo's tasks that every method ran (equal seeds)."""
    tasks = [t for a, t in cells(finals) if a == algo
             and all(len(scores_of(finals, a, t, m)) for m in methods)]
    if not tasks:
        return {}
    columns = {m: [scores_of(finals, algo, t, m) for t in tasks] for m in methods}
    seeds = min(len(c) for per_task in columns.values() for c in per_task)
    return {m: np.stack([c[:seeds] for c in per_task], axis=1) for m, per_task in columns.items()}


@dataclass(frozen=True)
class Comparison:
    """P(first method > second) with its 95 % CI, and the seeds per method it rests on."""

    p: float
    low: float
    high: float
    seeds: int

    def cell(self) -> str:
        return cell(self.p, self.low, self.high, digits=2)


def improvement_probability(finals: pd.DataFrame, algo: str, better: str, worse: str,
                            settings: ReportSettings) -> Comparison | None:
    """P(``better`` > ``worse``) on raw scores (scale-free, so valid on any task) with its 95 % CI."""
    scores = raw_score_matrices(finals, algo, [better, worse])
    if not scores:
        return None
    p, low, high = probability_of_improvement(scores, better, settings.reps, settings.seed)[f"{better},{worse}"]
    return Comparison(p, low, high, len(scores[better]))


def verdict(got: Comparison) -> str:
    """"holds" / "reversed" when the interval excludes 1/2; one seed each gives a degenerate interval, so never."""
    if got.seeds < 2:
        return "unresolved (one seed)"
    return "holds" if got.low > 0.5 else "reversed" if got.high < 0.5 else "unresolved"


def ordering_table(finals: pd.DataFrame, settings: ReportSettings) -> pd.DataFrame:
    """For each pair of the paper's methods on each task the paper reports: does its order hold here?"""
    rows = []
    for algo, task in cells(finals):
        row = paper_row(algo, task)
        present = set(finals[(finals.algo == algo) & (finals.task == task)].method)
        if row is None:
            continue
        published = row[1]
        methods = sorted((m for m in PAPER_METHODS if m in present), key=lambda m: -published[m])
        for i, above in enumerate(methods):
            for below in methods[i + 1:]:
                got = improvement_probability(finals[finals.task == task], algo, above, below, settings)
                if got is None:
                    continue
                rows.append({"Algo": algo.upper(), "Task": task,
                             "Paper's order": f"{above} ({published[above]:.1f}) > {below} ({published[below]:.1f})",
                             "Ours: P(first > second) [95% CI]": got.cell(), "Verdict": verdict(got)})
    return pd.DataFrame(rows)


def improvement_table(finals: pd.DataFrame, settings: ReportSettings) -> pd.DataFrame:
    """P(RLx2 > method) per algo over its tasks (rliable's average of per-task probabilities)."""
    rows = []
    for algo in sorted(finals.algo.unique()):
        for method in ordered(finals[finals.algo == algo].method.unique()):
            if method == "rlx2" or "rlx2" not in set(finals[finals.algo == algo].method):
                continue
            got = improvement_probability(finals, algo, "rlx2", method, settings)
            if got is not None:
                said = verdict(got)
                rows.append({"Algo": algo.upper(), "Method": method, "P(RLx2 > method) [95% CI]": got.cell(),
                             "Verdict": {"holds": "RLx2 better", "reversed": "RLx2 worse"}.get(said, said)})
    return pd.DataFrame(rows)


def normalised_scores(finals: pd.DataFrame, refs: dict) -> dict[str, dict[str, np.ndarray]]:
    """``{algo: {method: [seeds, tasks]}}``: 0 = random policy, 1 = dense mean, over the algo's reported tasks.

    Only tasks where dense clearly beats the random policy are used, so normalising keeps
    every task's ordering of raw scores.
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    for algo in sorted(finals.algo.unique()):
        tasks = [t for a, t in cells(finals) if a == algo and refs[(a, t)].problem is None]
        if not tasks:
            continue
        for method in ordered(finals[finals.algo == algo].method.unique()):
            columns = [normalise(scores_of(finals, algo, t, method), refs[(algo, t)].random, refs[(algo, t)].mean)
                       for t in tasks]
            if any(len(c) == 0 for c in columns):
                continue
            seeds = min(len(c) for c in columns)
            out.setdefault(algo, {})[method] = np.stack([c[:seeds] for c in columns], axis=1)
    return out


def aggregate_table(scores: dict[str, dict[str, np.ndarray]], settings: ReportSettings) -> pd.DataFrame:
    rows = []
    for algo, by_method in scores.items():
        results = aggregate_metrics(by_method, settings.reps, settings.seed)
        for method in ordered(by_method):
            row = {"Algo": algo.upper(), "Method": method, "Runs": by_method[method].size}
            for metric, (point, low, high) in results[method].items():
                row[metric] = seeded_cell(point, low, high, by_method[method].shape[0], 2)
            rows.append(row)
    return pd.DataFrame(rows)


def separation(finals: pd.DataFrame, settings: ReportSettings) -> str | None:
    """Whether this budget separates methods at all: does dense clearly beat static sparse training on every task?

    If it does not, differences between sparse methods are noise, and the report says so first.
    """
    verdicts = []
    for algo, task in cells(finals):
        got = improvement_probability(finals[finals.task == task], algo, "dense", "static", settings)
        if got is not None:
            verdicts.append((f"{algo.upper()} {task}", got))
    if not verdicts:
        return None
    unresolved = [(name, got) for name, got in verdicts if verdict(got) != "holds"]
    if not unresolved:
        return ("At this budget dense clearly beats static sparse training on every task (P(dense > static), 95 % "
                "interval above 0.5): the methods separate, and the tables below are evidence about them.\n")
    listed = "; ".join(f"{name}: P(dense > static) = {got.cell()}" + (", one seed each" if got.seeds < 2 else "")
                       for name, got in unresolved)
    return (f"**At this budget dense does not clearly beat static sparse training** ({listed}). Where even that gap "
            "is not resolved, differences between the sparse methods are not evidence about them: read this report "
            "as the pipeline working, and the profile's description for where to find a budget that separates them.\n")


def sb3_table(finals: pd.DataFrame, settings: ReportSettings) -> pd.DataFrame:
    """Our dense agent beside stable-baselines3's on every task both ran: is the base agent sound?"""
    rows = []
    for algo, task in cells(finals):
        dense, sb3 = scores_of(finals, algo, task, "dense"), scores_of(finals, algo, task, "sb3")
        if not len(dense) or not len(sb3):
            continue
        pair = {"dense": dense[:, None], "sb3": sb3[:, None]}
        iqm = aggregate_metrics(pair, settings.reps, settings.seed)
        p = Comparison(*probability_of_improvement(pair, "dense", settings.reps, settings.seed)["dense,sb3"],
                       seeds=min(len(dense), len(sb3)))
        said = verdict(p)
        for method, scores in (("dense (ours)", dense), ("sb3", sb3)):
            key = "dense" if method.startswith("dense") else "sb3"
            rows.append({"Algo": algo.upper(), "Task": task, "Agent": method,
                         "Final scores by seed": ", ".join(fmt(s) for s in scores),
                         "Mean [95% CI]": seeded_cell(*mean_interval(scores, settings), len(scores)),
                         "IQM [95% CI]": seeded_cell(*iqm[key]["IQM"], len(scores)),
                         "P(ours > sb3) [95% CI]": p.cell() if key == "dense" else "",
                         "Verdict": {"holds": "ours better", "reversed": "ours worse",
                                     "unresolved": "no clear difference"}.get(said, said) if key == "dense" else ""})
    return pd.DataFrame(rows)


def run_facts(runs: list[RunConfig], results: Path) -> dict:
    """Versions and commits recorded by the finished runs (for the index)."""
    from rlx2.records import RunDirectory

    versions, commits, seconds = set(), set(), 0.0
    for cfg in runs:
        run_dir = RunDirectory(results / run_id(cfg))
        result = run_dir.result()
        if result is None:
            continue
        data = run_dir.saved_config() or {}
        versions.add(json.dumps(data.get("versions", {}), sort_keys=True))
        commits.add(str(data.get("git_commit")))
        seconds += float(result.get("wall_seconds", 0.0) or 0.0)
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


def build_report(suite_name: str, profile: str, runs: list[RunConfig], results: Path, out: Path,
                 settings: ReportSettings | None = None, description: str = "", force: bool = False) -> dict:
    """Write the whole report for ``runs`` (a suite profile) into ``out``; returns a summary.

    Raises ``ReportRefused`` (writing nothing) when ``out`` holds a report of more finished
    runs than this one would have, unless ``force``.
    """
    settings = settings or ReportSettings()
    collected: Collected = collect(runs, results, suite_name, profile)
    summary = {"suite": suite_name, "profile": profile, "finished": len(runs) - len(collected.missing),
               "expected": len(runs), "missing": collected.missing}
    before = existing_finished(out)
    if before is not None and summary["finished"] < before and not force:
        raise ReportRefused(f"{out} holds a report of {before} finished runs; this one would have "
                            f"{summary['finished']} of {len(runs)} (pass --force to replace it anyway)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        summary.update(write_report(suite_name, profile, runs, results, staging, settings, description, collected))
        (staging / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        swap_in(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


def swap_in(staging: Path, out: Path) -> None:
    """Replace ``out`` by ``staging`` whole: no file of the old report survives, and no half-written one shows."""
    os.chmod(staging, 0o755)
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)


def write_report(suite_name: str, profile: str, runs: list[RunConfig], results: Path, out: Path,
                 settings: ReportSettings, description: str, collected: Collected) -> dict:
    """The report's files, into the (fresh) directory ``out``."""
    from rlx2 import figures

    table = collected.table
    save_table(table, out)
    finals = final_scores(table) if not table.empty else pd.DataFrame()
    budget = runs[0].steps
    sections: list[tuple[str, str]] = []
    figure_list: list[tuple[str, str]] = []
    extra: dict = {}
    if finals.empty:
        sections.append(("Results", "No run of this profile has finished yet: there is nothing to tabulate.\n"))
    else:
        verdict_text = separation(finals, settings)
        if verdict_text is None and {"dense", "static"} <= {c.method for c in runs}:
            verdict_text = ("Not judged yet: dense and static sparse training have no finished runs on a common task, "
                            "so nothing below says whether this budget separates the methods at all.\n")
        if verdict_text:
            sections.append(("What this budget can say", verdict_text))
        random_returns = {task: random_policy_return(task, settings.random_episodes, settings.seed)
                          for task in sorted(finals.task.unique())}
        extra["random_returns"] = random_returns
        refs = dense_references(finals, random_returns, settings)
        references = references_table(refs)
        write_table(references, out, "table_references", "reference returns", tex=False)
        sections.append(("Reference returns", markdown(references)))
        pct, averages = percent_of_dense(finals, refs, settings)
        if "dense" not in set(finals.method):
            sections.append(("% of dense", "No dense run has finished: % of dense and normalised scores need it, "
                                           "so those tables are not written.\n"))
        else:
            paper = paper_table(finals, pct, averages, refs)
            write_table(paper, out, "table_paper", f"% of dense per task ({suite_name}/{profile}), mean [95% CI]")
            sections.append(("% of dense (the paper's Table 2 layout)", markdown(paper)))
            versus = versus_paper(pct, averages, refs, budget)
            if not versus.empty:
                write_table(versus, out, "table_vs_paper", "ours beside the paper", tex=False)
                sections.append(("Beside the paper, task by task", markdown(versus)))
        ordering = ordering_table(finals, settings)
        if not ordering.empty:
            write_table(ordering, out, "table_ordering", "does the paper's ordering hold", tex=False)
            sections.append(("Does the paper's ordering hold?", ORDERING_NOTE + "\n" + markdown(ordering)))
        improvement = improvement_table(finals, settings)
        if not improvement.empty:
            write_table(improvement, out, "table_improvement", "probability of improvement", tex=False)
            sections.append(("Probability that RLx2 beats each method", IMPROVEMENT_NOTE + "\n" + markdown(improvement)))
        scores = normalised_scores(finals, refs) if "dense" in set(finals.method) else {}
        if scores:
            aggregate = aggregate_table(scores, settings)
            write_table(aggregate, out, "table_aggregate", "normalised scores (0 = random, 1 = dense), [95% CI]")
            sections.append(("Aggregate metrics (normalised: 0 = random policy, 1 = dense)", markdown(aggregate)))
        elif "dense" in set(finals.method):
            sections.append(("Aggregate metrics", "Not reported: on no task does dense clearly beat both the random "
                                                  "policy and zero (see reference returns), so normalised scores "
                                                  "would not keep the ordering of raw scores.\n"))
        sb3 = sb3_table(finals, settings)
        if not sb3.empty:
            write_table(sb3, out, "table_sb3", "our dense agent beside stable-baselines3", tex=False)
            sections.append(("Dense parity with stable-baselines3", SB3_NOTE + "\n" + markdown(sb3)))
        figure_list = figures.write_all(table, finals, pct, scores, out / "figures", settings)
    write_index(out, suite_name, profile, description, runs, results, collected, sections, figure_list, settings)
    return extra


ORDERING_NOTE = ("For every pair of the paper's methods on each task it reports, the paper's order (its % of dense "
                 "in brackets) and the probability that a run of the first method here scores above a run of the "
                 "second (raw final scores, so no reference is needed), with its 95 % bootstrap interval: "
                 "**holds** when the interval lies above 0.5, **reversed** below 0.5, **unresolved** otherwise.\n")
IMPROVEMENT_NOTE = ("P(RLx2 > method): the probability that an RLx2 run's final score exceeds the method's, per task "
                    "on raw scores and averaged over tasks (rliable), with 95 % stratified-bootstrap intervals.\n")
SB3_NOTE = ("The same task, budget and hyperparameters (warm-up, batch, learning rate, noises, network widths, "
            "discount, tau, policy delay) in stable-baselines3's own implementation, evaluated with this suite's "
            "protocol: if ours were clearly worse, every % of dense would be measured against a weak baseline.\n")


def write_index(out: Path, suite_name: str, profile: str, description: str, runs: list[RunConfig], results: Path,
                collected: Collected, sections: list[tuple[str, str]], figure_list: list[tuple[str, str]],
                settings: ReportSettings) -> None:
    facts = run_facts(runs, results)
    cfg = runs[0].resolve_budget()
    seeds = sorted({c.seed for c in runs})
    lines = [f"# Report: suite `{suite_name}`, profile `{profile}`", ""]
    if description:
        lines += [description, ""]
    lines += [
        "## What was run", "",
        f"- algorithms: {', '.join(sorted({c.algo for c in runs}))}; tasks: {', '.join(sorted({c.env for c in runs}))}",
        f"- methods: {', '.join(ordered({c.method for c in runs}))}",
        f"- budget: {cfg.steps:,} environment steps per run ({cfg.steps / PAPER_STEPS:.1%} of the paper's), warm-up "
        f"{cfg.warmup_steps:,}, evaluation every {cfg.eval_every:,} steps over {cfg.eval_episodes} episodes; the "
        f"score of a run is the mean of its last {cfg.final_window} evaluations (the last 5 %); seeds: {len(seeds)}",
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
        (f"- {len(seeds)} seed(s) per cell; intervals are 95 % bootstrap intervals over those seeds."
         if not collected.missing else
         f"- up to {len(seeds)} seed(s) per cell ({len(collected.missing)} runs missing: a cell's count is in "
         "`runs.csv`); intervals are 95 % bootstrap intervals over the finished seeds, and a comparison resting on "
         "one seed per method is never called a finding."),
        f"- The budget ({cfg.steps:,} steps) is {cfg.steps / PAPER_STEPS:.1%} of the paper's 3M; short runs favour "
        "methods that learn fast, and sparse topology evolution has less time to act.",
        "- gymnasium v5 tasks differ from the paper's gym v3 ones (observation sizes, some rewards): compare ratios "
        "to dense, not absolute returns.",
        "- The paper's averages are over four tasks; ours are over the tasks listed above where % of dense is reported.",
        "",
    ]
    (out / "index.md").write_text("\n".join(lines))
