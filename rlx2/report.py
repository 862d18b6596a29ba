"""Paper-style reports from results alone: ``rlx2 report <suite>`` -> ``reports/<suite>/<profile>/``.

Everything is derived from the run directories (and seeded random-policy rollouts for the
0 of normalised scores), so the same results give byte-identical tables. Written:

* ``runs.csv`` (+ ``runs.parquet`` with pyarrow): the tidy table of every finished run;
* ``table_paper.{md,tex,csv}``: the layout of the paper's Table 2: per algo and task,
  sparsities, size, training and inference FLOPs (of RLx2's networks), then every
  method's % of dense (mean over seeds [95 % bootstrap CI]), and an average row per algo;
* ``table_aggregate.{md,tex,csv}``: IQM, median, mean and optimality gap of normalised
  scores (0 = random policy, 1 = dense) with stratified-bootstrap 95 % CIs;
* ``table_vs_paper.{md,csv}``: our average % of dense beside the paper's published one;
* ``figures/``: learning curves, interval estimates, performance profiles, probability
  of improvement, score against size and against training FLOPs (PNG and PDF);
* ``index.md``: what was run, the tables, the figures, missing runs and caveats.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rlx2.config import RunConfig, run_id
from rlx2.results import Collected, collect, final_scores, random_policy_return, save_table
from rlx2.stats import aggregate_metrics, interval_estimates, normalise

#: The paper's Table 2 averages, % of dense (spec section 9: gym v3 tasks, 3M steps, 8 seeds).
PAPER_AVERAGES = {
    "td3": {"rlx2": 99.7, "rigl": 71.4, "set": 65.2, "static": 59.3, "tiny": 57.0},
    "sac": {"rlx2": 105.2, "rigl": 93.2, "set": 93.6, "static": 72.4, "tiny": 76.9},
}
METHOD_ORDER = ["dense", "tiny", "static", "set", "rigl", "rlx2", "pruning", "distillation"]


@dataclass
class ReportSettings:
    reps: int = 2_000  # bootstrap replications
    seed: int = 0  # seed of every bootstrap
    random_episodes: int = 10  # episodes of the random policy per task


def ordered(methods) -> list[str]:
    known = [m for m in METHOD_ORDER if m in methods]
    return known + sorted(m for m in methods if m not in METHOD_ORDER)


def fmt(value: float, digits: int = 1) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def cell(point: float, low: float, high: float, digits: int = 1) -> str:
    return f"{fmt(point, digits)} [{fmt(low, digits)}, {fmt(high, digits)}]"


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


def percent_of_dense(finals: pd.DataFrame, settings: ReportSettings) -> tuple[pd.DataFrame, dict]:
    """Per (algo, task, method): % of the dense mean with a bootstrap CI over seeds; and per-algo averages."""
    rows, averages = [], {}
    for algo, by_algo in finals.groupby("algo", sort=True):
        tasks = sorted(by_algo.task.unique())
        dense_mean = {t: by_algo[(by_algo.task == t) & (by_algo.method == "dense")].score.mean() for t in tasks}
        per_method: dict[str, list[np.ndarray]] = {}
        for task in tasks:
            for method in ordered(by_algo.method.unique()):
                scores = by_algo[(by_algo.task == task) & (by_algo.method == method)].sort_values("seed").score
                if scores.empty or not np.isfinite(dense_mean[task]) or dense_mean[task] == 0:
                    continue
                pct = 100.0 * scores.to_numpy() / dense_mean[task]
                point, low, high = interval_estimates({"x": pct[:, None]}, lambda s: np.mean(s), settings.reps,
                                                      settings.seed)["x"]
                rows.append({"algo": algo, "task": task, "method": method, "pct": point, "low": low, "high": high,
                             "seeds": len(pct)})
                per_method.setdefault(method, []).append(pct)
        for method, columns in per_method.items():
            if len(columns) != len(tasks):
                continue  # a task without this method: no average
            seeds = min(len(c) for c in columns)
            matrix = np.stack([c[:seeds] for c in columns], axis=1)  # [seeds, tasks]
            averages[(algo, method)] = interval_estimates({"x": matrix}, lambda s: np.mean(s), settings.reps,
                                                          settings.seed)["x"]
    return pd.DataFrame(rows), averages


def paper_table(finals: pd.DataFrame, pct: pd.DataFrame, averages: dict) -> pd.DataFrame:
    """The paper's Table 2 layout."""
    methods = [m for m in ordered(finals.method.unique()) if m != "dense"]
    rows = []
    for algo in sorted(finals.algo.unique()):
        by_algo = finals[finals.algo == algo]
        for task in sorted(by_algo.task.unique()):
            ref = by_algo[(by_algo.task == task) & (by_algo.method == "rlx2")]
            ref = ref if not ref.empty else by_algo[by_algo.task == task]
            first = ref.iloc[0]
            row = {"Algo": algo.upper(), "Task": task, "Actor sp.": f"{first.actor_sparsity:.0%}",
                   "Critic sp.": f"{first.critic_sparsity:.0%}", "Size": f"{first['size']:.3f}x",
                   "Train FLOPs": f"{first.training_flops:.3f}x", "Infer. FLOPs": f"{first.inference_flops:.3f}x"}
            for method in methods:
                hit = pct[(pct.algo == algo) & (pct.task == task) & (pct.method == method)]
                row[method] = cell(hit.pct.iloc[0], hit.low.iloc[0], hit.high.iloc[0]) if not hit.empty else "-"
            rows.append(row)
        average = {"Algo": algo.upper(), "Task": "Average", "Actor sp.": "", "Critic sp.": "", "Size": "",
                   "Train FLOPs": "", "Infer. FLOPs": ""}
        for method in methods:
            average[method] = cell(*averages[(algo, method)]) if (algo, method) in averages else "-"
        rows.append(average)
    return pd.DataFrame(rows)


def normalised_scores(finals: pd.DataFrame, random_returns: dict[str, float]) -> dict[str, dict[str, np.ndarray]]:
    """``{algo: {method: [seeds, tasks]}}`` normalised 0 = random policy, 1 = dense mean (seeds complete on all tasks)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for algo, by_algo in finals.groupby("algo", sort=True):
        tasks = sorted(by_algo.task.unique())
        dense = {t: by_algo[(by_algo.task == t) & (by_algo.method == "dense")].score.mean() for t in tasks}
        for method in ordered(by_algo.method.unique()):
            columns = []
            for task in tasks:
                scores = by_algo[(by_algo.task == task) & (by_algo.method == method)].sort_values("seed").score
                columns.append(normalise(scores.to_numpy(), random_returns[task], dense[task]))
            if any(len(c) == 0 for c in columns) or not all(np.isfinite(dense[t]) for t in tasks):
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
                row[metric] = cell(point, low, high, 2)
            rows.append(row)
    return pd.DataFrame(rows)


def versus_paper(averages: dict, budget: int, tasks: dict[str, list[str]]) -> pd.DataFrame:
    rows = []
    for (algo, method), (point, low, high) in sorted(averages.items()):
        paper = PAPER_AVERAGES.get(algo, {}).get(method)
        rows.append({"Algo": algo.upper(), "Method": method, "Ours: % of dense": cell(point, low, high),
                     "Paper: % of dense": "-" if paper is None else f"{paper:.1f}",
                     "Ours: budget, tasks": f"{budget:,} steps; {', '.join(tasks[algo])} (gymnasium v5)",
                     "Paper: budget, tasks": "3,000,000 steps; HalfCheetah, Hopper, Walker2d, Ant (gym v3)"})
    return pd.DataFrame(rows)


def reference_returns(finals: pd.DataFrame, random_returns: dict[str, float]) -> pd.DataFrame:
    """Per algo and task: the random-policy return and the dense mean, and whether "% of dense" is stable.

    A ratio to the dense mean is unstable when that mean is within two standard errors of 0
    (short budgets on tasks whose early returns hover around 0, such as HalfCheetah).
    """
    rows = []
    for (algo, task), group in finals[finals.method == "dense"].groupby(["algo", "task"], sort=True):
        scores = group.score.to_numpy()
        mean = float(scores.mean())
        se = float(scores.std(ddof=1) / np.sqrt(len(scores))) if len(scores) > 1 else float("nan")
        stable = not (np.isfinite(se) and abs(mean) < 2 * se)
        rows.append({"Algo": algo.upper(), "Task": task, "Random policy": fmt(random_returns[task]),
                     "Dense (mean ± s.e.)": f"{fmt(mean)} ± {fmt(se)}",
                     "% of dense": "stable" if stable else "unstable: dense mean within 2 s.e. of 0; read the "
                                                          "normalised aggregates instead"})
    return pd.DataFrame(rows)


def run_facts(runs: list[RunConfig], results: Path) -> dict:
    """Versions and commits recorded by the finished runs (for the index)."""
    versions, commits, seconds = set(), set(), 0.0
    for cfg in runs:
        path = results / run_id(cfg) / "config.json"
        if path.is_file() and (results / run_id(cfg) / "result.json").is_file():
            data = json.loads(path.read_text())
            versions.add(json.dumps(data.get("versions", {}), sort_keys=True))
            commits.add(str(data.get("git_commit")))
            seconds += json.loads((results / run_id(cfg) / "result.json").read_text()).get("wall_seconds", 0.0)
    return {"versions": [json.loads(v) for v in sorted(versions)], "commits": sorted(commits),
            "run_hours": seconds / 3600}


def build_report(suite_name: str, profile: str, runs: list[RunConfig], results: Path, out: Path,
                 settings: ReportSettings | None = None, description: str = "") -> dict:
    """Write the whole report for ``runs`` (a suite profile) into ``out``; returns a summary."""
    from rlx2 import figures

    settings = settings or ReportSettings()
    out.mkdir(parents=True, exist_ok=True)
    collected: Collected = collect(runs, results, suite_name, profile)
    table = collected.table
    save_table(table, out)
    finals = final_scores(table) if not table.empty else pd.DataFrame()
    tasks = {algo: sorted({c.env for c in runs if c.algo == algo}) for algo in sorted({c.algo for c in runs})}
    summary = {"finished": len(runs) - len(collected.missing), "expected": len(runs), "missing": collected.missing}
    sections = []
    if not finals.empty and "dense" in set(finals.method):
        random_returns = {task: random_policy_return(task, settings.random_episodes, settings.seed)
                          for task in sorted(finals.task.unique())}
        pct, averages = percent_of_dense(finals, settings)
        paper = paper_table(finals, pct, averages)
        write_table(paper, out, "table_paper", f"% of dense per task ({suite_name}/{profile}), mean [95% CI]")
        scores = normalised_scores(finals, random_returns)
        aggregate = aggregate_table(scores, settings)
        write_table(aggregate, out, "table_aggregate", "normalised scores (0 = random, 1 = dense), [95% CI]")
        versus = versus_paper(averages, runs[0].steps, tasks)
        write_table(versus, out, "table_vs_paper", "ours vs the paper", tex=False)
        figure_list = figures.write_all(table, finals, pct, scores, random_returns, out / "figures", settings)
        references = reference_returns(finals, random_returns)
        write_table(references, out, "table_references", "reference returns", tex=False)
        sections = [("Reference returns", references), ("% of dense (the paper's Table 2 layout)", paper),
                    ("Aggregate metrics (normalised: 0 = random policy, 1 = dense)", aggregate),
                    ("Beside the paper", versus)]
        summary["random_returns"] = random_returns
    else:
        figure_list = []
    write_index(out, suite_name, profile, description, runs, results, collected, sections, figure_list, settings)
    return summary


def write_index(out: Path, suite_name: str, profile: str, description: str, runs: list[RunConfig], results: Path,
                collected: Collected, sections, figure_list: list[str], settings: ReportSettings) -> None:
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
        f"- budget: {cfg.steps:,} environment steps per run (warm-up {cfg.warmup_steps:,}, evaluation every "
        f"{cfg.eval_every:,} steps over {cfg.eval_episodes} episodes, score = mean of the last {cfg.final_window} "
        f"evaluations); seeds: {len(seeds)}",
        f"- runs: {len(runs) - len(collected.missing)} of {len(runs)} finished, "
        f"{facts['run_hours']:.2f} h of run time in all (sum over runs, one core each)",
        f"- bootstrap: {settings.reps:,} replications, seed {settings.seed}; random-policy reference: "
        f"{settings.random_episodes} episodes per task",
        f"- code commit(s): {', '.join(facts['commits']) or 'unknown'}",
    ]
    for versions in facts["versions"]:
        lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lines.append("")
    if collected.missing:
        lines += ["## Missing runs", "",
                  f"{len(collected.missing)} expected runs have no result; every table below averages only the "
                  "finished ones (per task and method the seed count is in `table_paper.csv`'s source, "
                  "`runs.csv`).", ""]
        lines += [f"- `{name}`" + (f": {collected.failed[name]}" if name in collected.failed else "")
                  for name in collected.missing]
        lines.append("")
    for title, df in sections:
        lines += [f"## {title}", "", markdown(df)]
    if figure_list:
        lines += ["## Figures", ""]
        lines += [f"![{name}](figures/{name}.png)" for name in figure_list]
        lines.append("")
    lines += [
        "## Caveats", "",
        f"- {len(seeds)} seed(s) per cell; intervals are 95 % bootstrap intervals over those seeds and are wide.",
        f"- The budget ({cfg.steps:,} steps) is a small fraction of the paper's 3M; short runs favour methods that "
        "learn fast, and sparse topology evolution has little time to act.",
        "- gymnasium v5 tasks differ from the paper's gym v3 ones (observation sizes, some rewards): compare ratios "
        "to dense, not absolute returns.",
        "- The paper publishes per-algorithm averages over four tasks; ours average over the tasks listed above.",
        "",
    ]
    (out / "index.md").write_text("\n".join(lines))
