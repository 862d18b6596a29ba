"""Learning check: do dense TD3, RigL and RLx2 really learn? (issue 2's closing measurement)

Runs dense / rigl / rlx2 TD3 at 90/85 % sparsity on InvertedPendulum-v5 and Hopper-v5 for a
small budget with a few seeds, in a pool of worker processes (one torch thread each), then
prints final scores (mean of the last K evaluations) and training steps/s per run.

Short budgets scale the spec's step-based settings down: warm-up, topology interval
``delta`` and the n-step delay are given per task below (the spec's 300k-iteration delay
would never end inside these budgets).

    python benchmarks/learning_check.py --workers 2 --out results/learning-check
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from rlx2.config import RunConfig
from rlx2.train import train

TASKS = {
    # env: (steps, warmup, delta, nstep_delay, eval_every, final_window)
    "InvertedPendulum-v5": (30_000, 2_000, 2_500, 3_000, 1_000, 5),
    "Hopper-v5": (60_000, 5_000, 5_000, 6_000, 5_000, 3),
}
METHODS = ("dense", "rigl", "rlx2")


def one(args: tuple[RunConfig, str]) -> dict:
    cfg, out = args
    return train(cfg, out, progress=False, overwrite=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", default="results/learning-check")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    args = parser.parse_args()
    jobs = []
    for env in args.tasks:
        steps, warmup, delta, delay, eval_every, window = TASKS[env]
        for seed in args.seeds:
            for method in METHODS:
                cfg = RunConfig(algo="td3", env=env, method=method, seed=seed, steps=steps, warmup_steps=warmup,
                                delta=delta, nstep_delay=delay, eval_every=eval_every, final_window=window,
                                actor_sparsity=0.9, critic_sparsity=0.85)
                if not (Path(args.out) / f"td3/{env}/{method}/seed-{seed}/result.json").exists():
                    jobs.append((cfg, args.out))
    with ProcessPoolExecutor(args.workers) as pool:
        for result in pool.map(one, jobs):
            print(json.dumps({k: result[k] for k in ("run_id", "final_score", "steps_per_second")}), flush=True)
    print(f"{'run':45s} {'final score':>12s} {'steps/s':>8s}")
    for path in sorted(Path(args.out).glob("td3/*/*/seed-*/result.json")):
        result = json.loads(path.read_text())
        print(f"{result['run_id']:45s} {result['final_score']:12.1f} {result['steps_per_second']:8.1f}")


if __name__ == "__main__":
    main()
