"""Reading run directories into one tidy table, and the reference returns scores are normalised by.

The tidy table has one row per (run, step, metric): ``suite, profile, algo, task, method,
seed, step, metric, value`` plus the run's ``actor_sparsity, critic_sparsity, size,
training_flops, inference_flops`` (relative to the dense agent). Metrics: ``eval_return``
(every evaluation) and ``final_score`` (the run's score: mean of its last K evaluations,
at its last step).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rlx2.config import RunConfig, run_id
from rlx2.records import CONFIG_FILE, RunDirectory

COLUMNS = ["suite", "profile", "algo", "task", "method", "seed", "step", "metric", "value", "actor_sparsity",
           "critic_sparsity", "size", "training_flops", "inference_flops"]


@dataclass(frozen=True)
class Collected:
    """The finished runs of a suite as a tidy table, and the expected runs that are not there."""

    table: pd.DataFrame
    missing: list[str]  # run ids with no result (never run, unfinished, failed or corrupt)
    failed: dict[str, str]  # run id -> reason, for those with a failure record or a corrupt record


def collect(runs: list[RunConfig], results: Path, suite: str, profile: str, paths: dict[str, Path] | None = None
            ) -> Collected:
    """Read every expected run of ``runs`` under ``results`` (or at ``paths[run id]``, for runs found anywhere).

    A finished run whose evaluations cannot be read (a garbage line, a missing file) is corrupt:
    missing, with the file and line in ``failed``.
    """
    rows, missing, failed = [], [], {}
    for cfg in runs:
        name = run_id(cfg)
        run_dir = RunDirectory((paths or {}).get(name, results / name))
        result = run_dir.result()
        curve, problem = (None, None) if result is None else read_evaluations(run_dir.evaluations_file)
        problem = problem or (config_problem(run_dir) if result is not None else None)
        if result is None or problem is not None:
            missing.append(name)
            failure, corrupt = run_dir.failure(), problem or run_dir.result_problem()
            if corrupt:
                failed[name] = f"corrupt record: {corrupt}" if problem else f"corrupt result record: {corrupt}"
            elif failure:
                failed[name] = f"{failure.get('kind')}: {failure.get('reason')}"
            continue
        flops = result.flops
        base = {"suite": suite, "profile": profile, "algo": cfg.algo, "task": cfg.env, "method": cfg.method,
                "seed": cfg.seed, "actor_sparsity": cfg.actor_sparsity, "critic_sparsity": cfg.critic_sparsity,
                "size": flops["size"], "training_flops": flops.get("training_flops_relative", np.nan),
                "inference_flops": flops["inference_flops_relative"]}
        rows += [{**base, "step": step, "metric": "eval_return", "value": value} for step, value in curve]
        rows.append({**base, "step": result.steps, "metric": "final_score", "value": result.final_score})
    table = pd.DataFrame(rows, columns=COLUMNS)
    if not table.empty:
        table = table.sort_values(["algo", "task", "method", "seed", "metric", "step"], kind="stable")
        table = table.reset_index(drop=True)
    return Collected(table, missing, failed)


def read_evaluations(path: Path) -> tuple[list[tuple[int, float]], str | None]:
    """``[(step, mean return)]`` of an ``evaluations.csv``, or why it cannot be read (naming the file and line)."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"step", "mean_return"} <= set(reader.fieldnames):
                return [], f"{path}: no step and mean_return columns"
            curve = []
            for row in reader:
                try:
                    step, value = int(row["step"]), float(row["mean_return"])
                except (TypeError, ValueError):
                    step, value = -1, float("nan")
                if step < 0 or not math.isfinite(value):  # a finished run never logs a non-finite return
                    return [], f"{path}: line {reader.line_num}: not a step and a return ({row['step']!r}, " \
                               f"{row['mean_return']!r})"
                curve.append((step, value))
    except OSError as exc:
        return [], f"{path}: {exc.strerror}"
    except (UnicodeDecodeError, csv.Error) as exc:
        return [], f"{path}: not a CSV file ({exc})"
    return curve, None


def find_run_dirs(root: Path) -> list[Path]:
    """Every run directory under ``root`` (a directory holding a ``config.json``), sorted; hidden folders and the
    inside of a run directory are not searched."""
    found = []
    for folder, subfolders, files in os.walk(root):
        if CONFIG_FILE in files:
            found.append(Path(folder))
            subfolders.clear()
        else:
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
    return sorted(found)


def config_problem(run_dir: RunDirectory) -> str | None:
    """Why the ``config.json`` of ``run_dir`` is not a run's config, naming it (None: it is one, or there is none)."""
    config = run_dir.config_file
    if not config.exists():
        return None
    saved = run_dir.saved_config()
    if saved is None or not isinstance(saved.get("config"), dict):
        return f"{config}: not a run's config (unreadable, not JSON, or no \"config\" table)"
    try:
        RunConfig.from_dict(saved["config"])
    except ValueError as exc:
        return f"{config}: not a run's config ({exc})"
    return None


def other_settings(cfg: RunConfig, run_dir: RunDirectory) -> str | None:
    """Why ``run_dir`` holds another run than ``cfg`` asks for, naming its ``config.json`` (None: the same settings,
    or nothing readable yet). What ``suite run`` refuses; ``report`` and ``suite status`` say the same."""
    from rlx2.methods import resolve

    differ = run_dir.settings_differ(resolve(cfg)[0]) if config_problem(run_dir) is None else []
    return f"{run_dir.config_file}: holds a run with other settings ({', '.join(differ)})" if differ else None


def runs_from_directory(root: Path) -> tuple[list[RunConfig], dict[str, Path], list[str]]:
    """The runs found under ``root`` (``rlx2 report --runs``): their saved configs, where each lies, and one line
    per run directory left out (an unreadable ``config.json``).

    Raises ValueError (one line naming both files) when two directories hold the same run, or
    when runs of one algorithm, task and method differ in settings other than the seed.
    """
    runs, paths, skipped, groups = [], {}, [], {}
    for path in find_run_dirs(root):
        problem = config_problem(RunDirectory(path))
        if problem:
            skipped.append(f"{problem}; left out")
            continue
        cfg = RunConfig.from_dict(RunDirectory(path).saved_config()["config"])
        name = run_id(cfg)
        if name in paths:
            raise ValueError(f"{path / CONFIG_FILE} and {paths[name] / CONFIG_FILE} hold the same run {name}")
        first = groups.setdefault((cfg.algo, cfg.env, cfg.method), (cfg, path))
        differ = sorted(k for k, v in cfg.to_dict().items() if k != "seed" and v != first[0].to_dict()[k])
        if differ:
            raise ValueError(f"{path / CONFIG_FILE} and {first[1] / CONFIG_FILE}: runs of {cfg.algo}/{cfg.env}/"
                             f"{cfg.method} with other settings ({', '.join(differ)}); report them separately")
        runs.append(cfg)
        paths[name] = path
    return runs, paths, skipped


def random_policy_return(env_id: str, episodes: int = 10, seed: int = 0) -> float:
    """Mean return of uniformly random actions (seeded, so the same every time): the 0 of normalised scores."""
    from rlx2.envs import make_env

    env = make_env(env_id)
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    total = 0.0
    env.reset(seed=seed)
    for _ in range(episodes):
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(rng.uniform(low, high))
            total += float(reward)
            done = terminated or truncated
        env.reset()
    env.close()
    return total / episodes


def save_table(table: pd.DataFrame, out: Path) -> list[Path]:
    """Write the tidy table as CSV (and Parquet when pyarrow is installed)."""
    paths = [out / "runs.csv"]
    table.to_csv(paths[0], index=False, float_format="%.6g", lineterminator="\n")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return paths
    paths.append(out / "runs.parquet")
    table.to_parquet(paths[1], index=False)
    return paths


def final_scores(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run: algo, task, method, seed, score, sparsities, size, FLOPs."""
    finals = table[table.metric == "final_score"].drop(columns=["metric", "step"]).rename(columns={"value": "score"})
    return finals.reset_index(drop=True)
