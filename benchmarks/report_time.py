"""How long `rlx2 report` takes: CPU seconds (user + sys) and wall-clock of the reference and standard profiles.

The reference profile's records are committed (results/mujoco/reference/); the standard
profile's are not, so its 48 run directories are rebuilt from the tidy table of its committed
report (reports/mujoco/standard-example/runs.csv): the same evaluations and final scores, each with
the profile's resolved config, which is all a report reads. Each report runs in a fresh
process, `--repeats` times; CPU time is the child's own (wall-clock on a shared machine says
more about the other processes than about the report).

    python benchmarks/report_time.py [--repeats 3] [--source DIR]

`--source DIR` times another checkout of this project (its rlx2/ imported first), so that
two versions can be compared in one session on the same machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def standard_results(out: Path) -> Path:
    """The standard profile's run directories, rebuilt from its committed report's runs.csv."""
    from rlx2.config import run_id
    from rlx2.methods import resolve
    from rlx2.suite import load_suite

    suite = load_suite("mujoco", "standard")
    by_id = {run_id(cfg): cfg for cfg in suite.runs}
    curves: dict[str, list[tuple[int, float]]] = {}
    finals: dict[str, dict] = {}
    with open(ROOT / "reports/mujoco/standard-example/runs.csv", newline="") as f:
        for row in csv.DictReader(f):
            name = f"{row['algo']}/{row['task']}/{row['method']}/seed-{row['seed']}"
            if row["metric"] == "eval_return":
                curves.setdefault(name, []).append((int(row["step"]), float(row["value"])))
            else:
                finals[name] = row
    for name, row in finals.items():
        run = out / name
        run.mkdir(parents=True)
        cfg = resolve(by_id[name])[0]
        (run / "config.json").write_text(json.dumps({"run_id": name, "config": cfg.to_dict(), "git_commit": "rebuilt",
                                                     "versions": {"rlx2": "rebuilt"}}, indent=2, sort_keys=True))
        (run / "evaluations.csv").write_text("step,mean_return,std_return,episodes\n" + "".join(
            f"{step},{value!r},0.0,10\n" for step, value in curves[name]))
        (run / "result.json").write_text(json.dumps({
            "run_id": name, "status": "finished", "final_score": float(row["value"]), "steps": int(row["step"]),
            "evaluations": len(curves[name]), "wall_seconds": 0.0,
            "flops": {"size": float(row["size"]), "training_flops_relative": float(row["training_flops"]),
                      "inference_flops_relative": float(row["inference_flops"])}}))
    return out


def time_report(profile: str, results: Path, out: Path, source: Path | None) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one `rlx2 report` in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(source)) if source else dict(os.environ)
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "rlx2.cli", "report", "mujoco", "--profile", profile, "--results",
                           str(results), "--out", str(out), "--allow-missing"], cwd=source or ROOT, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"report of {profile} failed:\n{done.stderr}")
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--source", type=Path, default=None, help="another checkout to time instead of this one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results = {"reference": ROOT / "results/mujoco/reference", "standard": standard_results(tmp / "standard")}
        print(f"source: {args.source or ROOT}")
        print("| profile | runs | CPU s (median, min-max) | wall s (median) |")
        print("|---|---:|---:|---:|")
        for profile, where in results.items():
            times = [time_report(profile, where, tmp / "out", args.source) for _ in range(args.repeats)]
            cpu, wall = [t[0] for t in times], [t[1] for t in times]
            runs = sum(1 for _ in where.glob("*/*/*/seed-*/result.json"))
            print(f"| {profile} | {runs} | {statistics.median(cpu):.1f} ({min(cpu):.1f}-{max(cpu):.1f}) | "
                  f"{statistics.median(wall):.1f} |", flush=True)


if __name__ == "__main__":
    main()
