"""Reading run directories into one tidy table, and the reference returns scores are normalised by.

The tidy table has one row per (run, step, metric): ``suite, profile, algo, task, method,
seed, step, metric, value`` plus the run's ``actor_sparsity, critic_sparsity, size,
training_flops, inference_flops`` (relative to the dense agent). Metrics: ``eval_return``
(every evaluation) and ``final_score`` (the run's score: mean of its last K evaluations,
at its last step).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rlx2.config import RunConfig, run_id
from rlx2.records import RunDirectory

COLUMNS = ["suite", "profile", "algo", "task", "method", "seed", "step", "metric", "value", "actor_sparsity",
           "critic_sparsity", "size", "training_flops", "inference_flops"]


@dataclass(frozen=True)
class Collected:
    """The finished runs of a suite as a tidy table, and the expected runs that are not there."""

    table: pd.DataFrame
    missing: list[str]  # run ids with no result (never run, unfinished, failed or corrupt)
    failed: dict[str, str]  # run id -> reason, for those with a failure record or a corrupt result


def collect(runs: list[RunConfig], results: Path, suite: str, profile: str) -> Collected:
    """Read every expected run of ``runs`` under ``results``."""
    rows, missing, failed = [], [], {}
    for cfg in runs:
        run_dir = RunDirectory(results / run_id(cfg))
        result = run_dir.result()
        if result is None:
            missing.append(run_id(cfg))
            failure, problem = run_dir.failure(), run_dir.result_problem()
            if problem:
                failed[run_id(cfg)] = f"corrupt result record: {problem}"
            elif failure:
                failed[run_id(cfg)] = f"{failure.get('kind')}: {failure.get('reason')}"
            continue
        flops = result["flops"]
        base = {"suite": suite, "profile": profile, "algo": cfg.algo, "task": cfg.env, "method": cfg.method,
                "seed": cfg.seed, "actor_sparsity": cfg.actor_sparsity, "critic_sparsity": cfg.critic_sparsity,
                "size": flops["size"], "training_flops": flops["training_flops_relative"],
                "inference_flops": flops["inference_flops_relative"]}
        with open(run_dir.path / "evaluations.csv", newline="") as f:
            for row in csv.DictReader(f):
                rows.append({**base, "step": int(row["step"]), "metric": "eval_return",
                             "value": float(row["mean_return"])})
        rows.append({**base, "step": int(result["steps"]), "metric": "final_score", "value": result["final_score"]})
    table = pd.DataFrame(rows, columns=COLUMNS)
    if not table.empty:
        table = table.sort_values(["algo", "task", "method", "seed", "metric", "step"], kind="stable")
        table = table.reset_index(drop=True)
    return Collected(table, missing, failed)


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
