"""What each reference-behaviour default changes: paired measurements against its variant.

Every setting of issue "reference fidelity" (``mask_init``, ``regrow``, ``grown_adam``,
``critic_grow_gradient``, ``sac_explore``, ``sac_log_std``, ``alpha_loss``) is measured
against its variant with everything else equal (same seeds, same budget):

* ``--init`` (seconds): at initialisation, no training: RMS of the active weights and the
  scale of the networks' outputs on real task states (actor output std, mean |Q|), and
  SAC's initial policy std, magnitude vs random masks and tanh vs clamp log-std, over 10 seeds;
* ``--runs`` (the default, about 75 min on one core): short real runs, the reference
  defaults beside one variant at a time: TD3 Hopper-v5 at 98/95 % (rlx2, and static for
  ``mask_init``) and SAC HalfCheetah-v5 at 90/80 % (rlx2), 2 seeds, 30 000 steps; final
  score (last 5 % of evaluations), steps/s, and the diagnostic each setting moves (share of
  dropped weights regrown at once, SAC's mean temperature, and for ``critic_grow_gradient``
  the norm of the actor-loss term and how many grown connections it changes).

    python benchmarks/fidelity.py --init
    python benchmarks/fidelity.py --runs [--steps 30000] [--seeds 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rlx2.agents import make_agent
from rlx2.config import RunConfig
from rlx2.envs import make_env
from rlx2.methods import get_method
from rlx2.sparse.controller import MaskController
from rlx2.sparse.topology import drop_and_grow

#: ``name: (algo, env, method, actor sparsity, critic sparsity, settings)``: each variant changes one setting.
TD3 = ("td3", "Hopper-v5", 0.98, 0.95)
SAC = ("sac", "HalfCheetah-v5", 0.90, 0.80)
PAIRS = {
    "td3 rlx2 (reference defaults)": (*TD3, "rlx2", {}),
    "td3 rlx2 mask_init=random": (*TD3, "rlx2", {"mask_init": "random"}),
    "td3 rlx2 regrow=reset": (*TD3, "rlx2", {"regrow": "reset"}),
    "td3 rlx2 grown_adam=zero": (*TD3, "rlx2", {"grown_adam": "zero"}),
    "td3 static (reference defaults)": (*TD3, "static", {}),
    "td3 static mask_init=random": (*TD3, "static", {"mask_init": "random"}),
    "sac rlx2 (reference defaults)": (*SAC, "rlx2", {}),
    "sac rlx2 sac_explore=sample": (*SAC, "rlx2", {"sac_explore": "sample"}),
    "sac rlx2 sac_log_std=clamp": (*SAC, "rlx2", {"sac_log_std": "clamp"}),
    "sac rlx2 alpha_loss=log-alpha": (*SAC, "rlx2", {"alpha_loss": "log-alpha"}),
    "sac rlx2 critic_grow_gradient=critic-loss": (*SAC, "rlx2", {"critic_grow_gradient": "critic-loss"}),
}


def task_states(env_id: str, count: int = 256, seed: int = 0) -> torch.Tensor:
    """States a uniformly random policy visits (what the networks see first)."""
    env = make_env(env_id)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    states = []
    while len(states) < count:
        states.append(obs)
        obs, _, terminated, truncated, _ = env.step(rng.uniform(env.action_space.low, env.action_space.high))
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return torch.as_tensor(np.array(states), dtype=torch.float32)


def initial_scales(algo: str, env_id: str, actor_sp: float, critic_sp: float, seeds: int = 10) -> list[dict]:
    """Active-weight RMS and output scales at initialisation, per mask_init (and log-std map for SAC)."""
    states = task_states(env_id)
    obs_dim, act_dim = states.shape[1], make_env(env_id).action_space.shape[0]
    rows = []
    variants = [{"mask_init": "magnitude"}, {"mask_init": "random"}]
    if algo == "sac":
        variants += [{"mask_init": "magnitude", "sac_log_std": "clamp"}]
    for settings in variants:
        stats: dict[str, list[float]] = {}
        for seed in range(seeds):
            method = get_method("rlx2")()
            cfg = method.resolve(RunConfig(algo=algo, env=env_id, seed=seed, actor_sparsity=actor_sp,
                                           critic_sparsity=critic_sp, **settings))
            agent = make_agent(algo, cfg=cfg, method=method, obs_dim=obs_dim, act_dim=act_dim,
                               generator=torch.Generator().manual_seed(seed))
            with torch.no_grad():
                active = torch.cat([layer.weight[layer.mask] for _, layer in agent.controllers["critic"].layers])
                stats.setdefault("critic active-weight RMS", []).append(float(active.pow(2).mean().sqrt()))
                raw = agent.actor.net(states)
                mean = raw[:, :act_dim]
                stats.setdefault("actor pre-tanh output std", []).append(float(mean.std()))
                actions = agent.actor(states)
                q1, _ = agent.critic(states, actions)
                stats.setdefault("mean |Q|", []).append(float(q1.abs().mean()))
                if algo == "sac":
                    std = agent.actor.log_std(raw[:, act_dim:]).exp()
                    stats.setdefault("policy std", []).append(float(std.mean()))
        rows.append({"algo": algo, "env": env_id, "settings": settings,
                     **{k: statistics.mean(v) for k, v in stats.items()}})
    return rows


def run_init() -> None:
    print("| algo, task, sparsity | settings | critic active-weight RMS | actor pre-tanh output std | mean abs Q | "
          "policy std |")
    print("|---|---|---:|---:|---:|---:|")
    for algo, env_id, a, c in (TD3, SAC):
        for row in initial_scales(algo, env_id, a, c):
            settings = ", ".join(f"{k}={v}" for k, v in row["settings"].items())
            std = f"{row['policy std']:.3f}" if "policy std" in row else "-"
            print(f"| {algo} {env_id} {a:.0%}/{c:.0%} | {settings} | {row['critic active-weight RMS']:.4f} | "
                  f"{row['actor pre-tanh output std']:.4f} | {row['mean |Q|']:.4f} | {std} |", flush=True)


class GrowGradientProbe:
    """Counts what the carried actor-loss term changes at critic topology updates (a spy, changes nothing)."""

    def __init__(self) -> None:
        self.norm_share: list[float] = []  # |actor term| / |grow score| per layer and update
        self.changed: list[float] = []  # share of grown connections that the critic-loss gradient alone would not grow
        self._carried: dict[int, torch.Tensor] = {}
        original_carry, original_evolve = MaskController.carry_grow_gradient, MaskController.evolve
        probe = self

        def carry(ctrl):
            original_carry(ctrl)
            probe._carried = {id(w): c for w, c in zip(ctrl._weights, ctrl.carried)}

        def evolve(ctrl):
            if probe._carried:
                rule = ctrl.grow_scores

                def spy(weight, dense_grad, generator):
                    term = probe._carried.get(id(weight))
                    if term is not None:
                        mask = ctrl_masks[id(weight)]
                        probe.norm_share.append(float(term.norm() / dense_grad.norm()))
                        k = int(ctrl.schedule.fraction(ctrl.optimizer_steps) * int(mask.sum()))
                        if k > 0:
                            full = drop_and_grow(weight, mask, dense_grad.abs(), k).grown.tolist()
                            alone = drop_and_grow(weight, mask, (dense_grad - term).abs(), k).grown.tolist()
                            probe.changed.append(1.0 - len(set(full) & set(alone)) / k)
                    return rule(weight, dense_grad, generator)

                ctrl_masks = {id(layer.weight): layer.mask for _, layer in ctrl.layers}
                ctrl.grow_scores = spy
                try:
                    original_evolve(ctrl)
                finally:
                    ctrl.grow_scores = rule
                probe._carried = {}
            else:
                original_evolve(ctrl)

        MaskController.carry_grow_gradient = carry
        MaskController.evolve = evolve


def one_run(name: str, seed: int, steps: int, out: Path) -> dict:
    from rlx2.train import train

    algo, env_id, actor_sp, critic_sp, method, settings = PAIRS[name]
    eval_every = 2_000 if algo == "td3" else 5_000  # HalfCheetah's 1 000-step episodes make evaluation costly
    cfg = RunConfig(algo=algo, env=env_id, method=method, seed=seed, steps=steps, actor_sparsity=actor_sp,
                    critic_sparsity=critic_sp, eval_every=eval_every, eval_episodes=5, **settings)
    run_out = out / name.replace(" ", "_").replace("=", "-").replace("(", "").replace(")", "")
    started = time.perf_counter()
    result = train(cfg, run_out, progress=False)
    row = {"name": name, "seed": seed, "final_score": result["final_score"], "wall_seconds":
           time.perf_counter() - started, "steps_per_second": result["steps_per_second"]}
    run_dir = run_out / algo / env_id / method / f"seed-{seed}"
    with open(run_dir / "topology.csv", newline="") as f:
        events = [r for r in csv.DictReader(f) if int(r["optimizer_step"]) > 0]
    replaced = sum(int(r["replaced"]) for r in events)
    row["regrown_share"] = sum(int(r["regrown"]) for r in events) / replaced if replaced else None
    with open(run_dir / "diagnostics.csv", newline="") as f:
        alphas = [float(r["alpha"]) for r in csv.DictReader(f) if r["alpha"]]
    row["mean_alpha"] = statistics.mean(alphas) if alphas else None
    return row


def run_pairs(args: argparse.Namespace) -> None:
    probe = GrowGradientProbe()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for name in args.pairs:
                before = len(probe.norm_share)
                row = one_run(name, seed, args.steps, Path(tmp))
                if len(probe.norm_share) > before:
                    row["actor_term_norm_share"] = statistics.mean(probe.norm_share[before:])
                    row["grown_changed_share"] = statistics.mean(probe.changed[before:])
                rows.append(row)
                print(f"  {name} seed {seed}: score {row['final_score']:.1f}, {row['steps_per_second']:.0f} steps/s",
                      file=sys.stderr, flush=True)
    print(f"# {args.steps:,} steps per run, seeds 0..{args.seeds - 1}, {time.strftime('%Y-%m-%d')}")
    print("| run | final scores by seed | mean | steps/s | regrown share | mean alpha | actor term / grow score | "
          "grown sets changed by it |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")

    def mean(key, chosen):
        values = [r[key] for r in chosen if r.get(key) is not None]
        return f"{statistics.mean(values):.3f}" if values else "-"

    for name in args.pairs:
        chosen = [r for r in rows if r["name"] == name]
        scores = [r["final_score"] for r in chosen]
        print(f"| {name} | {', '.join(f'{s:.1f}' for s in scores)} | {statistics.mean(scores):.1f} | "
              f"{statistics.mean(r['steps_per_second'] for r in chosen):.0f} | {mean('regrown_share', chosen)} | "
              f"{mean('mean_alpha', chosen)} | {mean('actor_term_norm_share', chosen)} | "
              f"{mean('grown_changed_share', chosen)} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", action="store_true", help="only the initialisation diagnostics (seconds)")
    parser.add_argument("--runs", action="store_true", help="the paired short runs (the default)")
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--pairs", nargs="+", choices=list(PAIRS), default=list(PAIRS))
    parser.add_argument("--json", help="also write every run's row to this file")
    args = parser.parse_args()
    if args.steps <= 0 or args.seeds <= 0:
        parser.error(f"--steps and --seeds must be positive, got {args.steps} and {args.seeds}")
    torch.set_num_threads(1)
    if args.init:
        run_init()
        return
    run_pairs(args)


if __name__ == "__main__":
    main()
