"""The report's figures (matplotlib/seaborn and rliable's plot helpers), as PNG and PDF, with captions.

Files carry no creation dates, so the same results give the same figures. Every method
keeps one colour across figures; RLx2's is black, which no palette colour resembles.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from rliable import plot_utils  # noqa: E402

from rlx2.paper import ordered  # noqa: E402
from rlx2.stats import bootstrap, performance_profiles, probability_of_improvement  # noqa: E402

METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None}}
MARKERS = "osD^vP*Xh<>p"
#: Methods whose evaluation steps are not the run's environment steps (a student after its teacher).

Figure = tuple[str, str]  # (file name without extension, caption)


def save(fig, out: Path, name: str, caption: str) -> Figure:
    """Write ``fig`` as PNG and PDF, both cropped to its content plus the usual padding. The crop is measured once
    (``bbox_inches="tight"`` would draw the figure once more per file, a third of the figures' time)."""
    out.mkdir(parents=True, exist_ok=True)
    fig.canvas.draw()
    crop = fig.get_tightbbox(fig.canvas.get_renderer()).padded(matplotlib.rcParams["savefig.pad_inches"])
    for ext in ("png", "pdf"):
        fig.savefig(out / f"{name}.{ext}", dpi=110, bbox_inches=crop, metadata=METADATA[ext])
    plt.close(fig)
    return name, caption


def palette_for(methods: list[str]) -> dict[str, tuple]:
    """One colour per method; RLx2 black, the others from the colourblind palette."""
    others = [m for m in methods if m != "rlx2"]
    colours = dict(zip(others, sns.color_palette("colorblind", max(1, len(others)))))
    if "rlx2" in methods:
        colours["rlx2"] = (0.0, 0.0, 0.0)
    return colours


def learning_curves(table: pd.DataFrame, out: Path, order: list[str], palette: dict, settings,
                    own_step_axis: dict[str, str]) -> Figure:
    """Evaluation returns against environment steps; ``own_step_axis``: methods left out, and why
    (``Method.own_step_axis``)."""
    curves = table[(table.metric == "eval_return") & ~table.method.isin(list(own_step_axis))]
    panels = sorted({(a, t) for a, t in zip(curves.algo, curves.task)})
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), squeeze=False)
    for ax, (algo, task) in zip(axes[0], panels):
        data = curves[(curves.algo == algo) & (curves.task == task)]
        for method in [m for m in order if m in set(data.method)]:
            steps, mean, low, high = curve_band(data[data.method == method], min(settings.reps, 1000), settings.seed)
            ax.plot(steps, mean, color=palette[method], label=method, linewidth=1.5)
            ax.fill_between(steps, low, high, color=palette[method], alpha=0.2, linewidth=0)
        ax.set(title=f"{algo.upper()} {task}", xlabel="environment steps", ylabel="evaluation return")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k"))
        ax.legend(fontsize=7)
    skipped = sorted(set(own_step_axis) & set(table.method))
    caption = ("Learning curves: mean evaluation return (deterministic policy) over seeds against environment steps, "
               "with 95 % bootstrap bands.")
    if skipped:
        caption += f" Not drawn: {', '.join(f'{m} ({own_step_axis[m]})' for m in skipped)}."
    return save(fig, out, "learning_curves", caption)


def curve_band(runs: pd.DataFrame, reps: int, seed: int) -> tuple[np.ndarray, ...]:
    """One method's learning curve: per evaluation step, the mean return over its seeds and a 95 % percentile
    bootstrap band (``rlx2.stats.bootstrap``, one vectorised call for every step whose seeds all evaluated; it
    replaces seaborn's bootstrap, which took most of a report's time)."""
    grid = runs.pivot_table(index="seed", columns="step", values="value", aggfunc="first").sort_index(axis=1)
    steps = grid.columns.to_numpy()
    values = grid.to_numpy(dtype=float)
    complete = ~np.isnan(values).any(axis=0)
    mean, low, high = (np.full(len(steps), np.nan) for _ in range(3))
    if complete.any():  # [seeds, steps]: seeds are resampled within each step (a stratified bootstrap)
        mean[complete], low[complete], high[complete] = bootstrap([values[:, complete]],
                                                                 lambda v: np.mean(v, axis=-2), reps, seed)
    for k in np.flatnonzero(~complete):  # a step only some seeds reached (a run cut short): its own seeds
        present = values[~np.isnan(values[:, k]), k]
        mean[k], low[k], high[k] = bootstrap([present], lambda v: np.mean(v, axis=-1), reps, seed)
    return steps, mean, low, high


def score_against(finals: pd.DataFrame, pct: pd.DataFrame, column: str, label: str, out: Path, name: str,
                  palette: dict) -> Figure:
    merged = pct.merge(finals.groupby(["algo", "task", "method"], as_index=False)[column].mean(),
                       on=["algo", "task", "method"])
    summary = merged.groupby(["algo", "method"], as_index=False).agg(pct=("pct", "mean"), x=(column, "mean"))
    algos = sorted(summary.algo.unique())
    fig, axes = plt.subplots(1, len(algos), figsize=(5.5 * len(algos), 3.8), squeeze=False)
    for ax, algo in zip(axes[0], algos):
        data = summary[summary.algo == algo]
        for i, method in enumerate(ordered(data.method)):  # a legend, not labels on the points: no overlaps
            point = data[data.method == method]
            ax.scatter(point.x, point.pct, color=palette[method], marker=MARKERS[i % len(MARKERS)], s=55,
                       label=method, edgecolor="white", linewidth=0.5)
        ax.set(xscale="log", title=algo.upper(), xlabel=f"{label} (relative to dense, log)", ylabel="% of dense")
        ax.legend(fontsize=7, loc="best")
    caption = (f"Mean % of dense against {label} relative to the dense agent, per method, averaged over the tasks "
               "where % of dense is reported.")
    return save(fig, out, name, caption)


def write_all(table, finals, pct, scores, aggregates, out: Path, settings, own_step_axis: dict[str, str]
              ) -> list[Figure]:
    """Every figure of the report, with its caption (files ``<name>.png`` and ``<name>.pdf``).

    ``scores``: ``{algo: {method: normalised [runs, tasks]}}``; ``aggregates``: the aggregate
    table's ``{algo: {method: {metric: (point, low, high)}}}`` (so figure and table agree).
    """
    order = ordered(finals.method.unique())
    palette = palette_for(order)
    figures = [learning_curves(table, out, order, palette, settings, own_step_axis)]
    for algo, by_method in scores.items():
        methods = ordered(by_method)
        colors = {m: palette[m] for m in methods}
        results = aggregates[algo]
        names = list(next(iter(results.values())))
        points = {m: np.array([results[m][n][0] for n in names]) for m in methods}
        intervals = {m: np.array([[results[m][n][1] for n in names], [results[m][n][2] for n in names]])
                     for m in methods}
        fig, _ = plot_utils.plot_interval_estimates(points, intervals, metric_names=names, algorithms=methods,
                                                    colors=colors, xlabel="normalised score (0 random, 1 dense)")
        figures.append(save(fig, out, f"intervals_{algo}",
                            f"{algo.upper()}: {', '.join(names)} of normalised scores (0 = random policy, 1 = dense) "
                            "with stratified-bootstrap intervals (dense's seeds resampled too; over fewer than 5 seeds "
                            "an interval is a range, see the aggregate table)."))

        top = max(1.2, float(max(np.max(s) for s in by_method.values())))
        taus = np.linspace(0.0, top, 61)
        profiles, profile_cis = performance_profiles(by_method, taus, min(settings.reps, 1000), settings.seed)
        fig, ax = plt.subplots(figsize=(6, 3.8))
        plot_utils.plot_performance_profiles(profiles, taus, performance_profile_cis=profile_cis, colors=colors,
                                             xlabel=r"normalised score $\tau$", ax=ax)
        ax.legend([Line2D([0], [0], color=colors[m]) for m in methods], methods, fontsize=7)
        figures.append(save(fig, out, f"performance_profiles_{algo}",
                            f"{algo.upper()}: performance profiles: the fraction of runs whose normalised score "
                            "exceeds tau, with 95 % bands."))

        if "rlx2" in by_method and len(by_method) > 1:
            improvement = probability_of_improvement(by_method, "rlx2", settings.reps, settings.seed)
            fig, ax = plt.subplots(figsize=(5, 0.45 * len(improvement) + 1))
            labels = [pair.split(",")[1] for pair in improvement]
            values = np.array([improvement[p][0] for p in improvement])
            errors = np.array([[values[i] - improvement[p][1], improvement[p][2] - values[i]]
                               for i, p in enumerate(improvement)]).T
            ax.barh(labels, values, xerr=errors, color=[palette[m] for m in labels], capsize=3)
            ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
            ax.set(xlim=(0, 1), xlabel="P(RLx2 > method)", title=f"{algo.upper()}: probability of improvement")
            figures.append(save(fig, out, f"probability_of_improvement_{algo}",
                                f"{algo.upper()}: probability that an RLx2 run scores above a run of each method "
                                "(bars coloured by that method), with 95 % intervals; right of the dashed line, "
                                "RLx2 is better."))
    if not pct.empty:
        figures.append(score_against(finals, pct, "size", "model size", out, "score_vs_size", palette))
        figures.append(score_against(finals, pct, "training_flops", "training FLOPs", out, "score_vs_training_flops",
                                     palette))
    return figures
