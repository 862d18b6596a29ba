"""Training throughput: env steps/s of the real training loop, beside stable-baselines3, and where it goes.

Every measurement is a fresh child process (one torch thread) that runs the real loop
(``rlx2.train.train``, or stable-baselines3's ``learn``) for ``--warmup`` random steps and
``--learn`` learning steps, and reports the learning steps per second of wall-clock after
warm-up (the one evaluation episode at the last step left out), its own peak resident
memory, the median time of one actor call on one observation, and, for our agents, the
breakdown of an environment step into the pieces of an update (``Agent.laps``), acting
and the rest (environment step, replay sampling, buffer, loop). Measurements are
interleaved (every config once, then again, ``--repeats`` times) so a machine whose speed
drifts affects all configs alike, and each repeat starts one measurement later than the
one before (a rotation), so no config always runs in the same slot: on one shared host
(2026-12-02) the same checkout measured against itself as a baseline read 0.66x and 0.96x
in fixed slots, and one config's speed moved 1.5-2x within minutes, inside one process too. Read
ratios from several repeats, and an engine change from an interleaved comparison inside
one process where it can be made; the tables show medians, the min-max spread, ratios
of medians from this one run and the range of the ratios to stable-baselines3 paired within
each repeat; the ratios are against stable-baselines3 with the same algorithm, network
sizes (256, 256), batch (256) and schedule (one gradient step per env step, policy delay
2), and against our own dense agent. ``--baseline PYTHON`` also measures another checkout
of this project (an interpreter whose ``rlx2`` is, say, today's engine) in the same run,
configs ``--baseline-configs``, labelled ``--baseline-label``; both may be given more than
once (one label per interpreter, in order), each baseline getting its own ratio column.

    python benchmarks/throughput.py                      # the default grid (about 40 min on 2 cores)
    python benchmarks/throughput.py --algos td3 --configs sb3 dense "rlx2 98/95" --repeats 5
    python benchmarks/throughput.py --baseline ../rlx2-03d10a0/.venv/bin/python --baseline-label 03d10a0
    python benchmarks/throughput.py --baseline ../old/.venv/bin/python --baseline-label old \
        --baseline ../older/.venv/bin/python --baseline-label older
    python benchmarks/throughput.py --kernels            # CSR vs dense kernels by density
    python benchmarks/throughput.py --floor              # the compiled kernels' own cost of one TD3 step
    python benchmarks/throughput.py --in-place           # the same kernels timed inside real TD3 updates
    python benchmarks/throughput.py --scaling            # local executor, 1 vs 2 workers

Clock: by default every time is the child's CPU time (``--clock cpu``: the child replaces
``time.perf_counter`` by ``time.process_time`` before it imports anything, so the loop's own
steps/s, the breakdown and the actor call all count the CPU seconds of that one-thread
process). On a shared, loaded machine wall-clock time mostly measures the other processes;
CPU time does not count their time slices, though it still sees their effect on caches and
on a core's sibling thread. ``--clock wall`` measures wall-clock time, for an idle machine.

``tox -e bench`` runs the default grid; ``--json FILE`` also writes every measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

#: The behaviour before the reference-fidelity defaults: every setting at its variant.
VARIANTS = {"mask_init": "random", "regrow": "reset", "grown_adam": "zero", "critic_grow_gradient": "critic-loss",
            "sac_explore": "sample", "sac_log_std": "clamp", "alpha_loss": "log-alpha"}
#: ``name: (method, actor sparsity, critic sparsity, other settings)``; ``sb3`` is stable-baselines3's own agent.
CONFIGS = {
    "sb3": ("sb3", 0.0, 0.0, {}),
    "dense": ("dense", 0.0, 0.0, {}),
    "static 90/85": ("static", 0.9, 0.85, {}),
    "set 90/85": ("set", 0.9, 0.85, {}),
    "rigl 90/85": ("rigl", 0.9, 0.85, {}),
    "rlx2 90/85": ("rlx2", 0.9, 0.85, {}),
    "rlx2 98/95": ("rlx2", 0.98, 0.95, {}),
    "rlx2 98/95 variants": ("rlx2", 0.98, 0.95, VARIANTS),
    "rlx2 90/85 masked-dense": ("rlx2", 0.9, 0.85, {"sparse_backend": "masked-dense"}),
}
#: SET costs what RigL does; the variants row is for comparing the reference defaults' cost (``--configs``).
DEFAULT_CONFIGS = [name for name in CONFIGS if name not in ("set 90/85", "rlx2 98/95 variants")]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


#: The pieces of one environment step in the breakdown, in order (``Agent.laps`` marks the update's).
PIECES = ("target", "critic forward + loss", "critic backward", "critic step", "actor forward + backward",
          "actor step, soft updates", "acting", "env step, replay, loop")


def child_rlx2(algo: str, env: str, config: str, warmup: int, learn: int, seed: int) -> dict:
    """One measurement of our loop (runs inside the child process, with whichever ``rlx2`` it imports)."""
    import importlib

    import numpy as np
    import rlx2.loop
    from rlx2.config import RunConfig
    from rlx2.recorder import Recorder
    from rlx2.train import train

    laps_class = getattr(importlib.import_module("rlx2.agents.base"), "Laps", None)  # older checkouts have none
    seconds = {"acting": 0.0, "evaluation": 0.0}
    agents = []
    make_agent = rlx2.loop.make_agent

    def instrumented_agent(*args, **kwargs):
        agent = make_agent(*args, **kwargs)
        if laps_class is not None:
            agent.laps = laps_class()
        explore = agent.explore

        def timed_explore(obs, rng):
            started = time.perf_counter()
            try:
                return explore(obs, rng)
            finally:
                seconds["acting"] += time.perf_counter() - started

        agent.explore = timed_explore
        agents.append(agent)
        return agent

    evaluate = Recorder.evaluate

    def timed_evaluate(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return evaluate(self, *args, **kwargs)
        finally:
            seconds["evaluation"] += time.perf_counter() - started

    rlx2.loop.make_agent, Recorder.evaluate = instrumented_agent, timed_evaluate
    method, actor_sparsity, critic_sparsity, settings = CONFIGS[config]
    steps = warmup + learn
    # The topology interval is scaled so a drop/grow step happens inside the measured window,
    # at the paper's rate relative to the budget it would be far rarer. stable-baselines3 runs
    # through the sb3 method: the same loop sizes and schedule, its own update.
    cfg = RunConfig(algo=algo, env=env, method=method, seed=seed, steps=steps, warmup_steps=warmup,
                    actor_sparsity=actor_sparsity, critic_sparsity=critic_sparsity, delta=max(1, learn // 2),
                    nstep_delay=0, eval_every=steps, eval_episodes=1, final_window=1, log_every=steps,
                    buffer_max=steps, **settings)
    with tempfile.TemporaryDirectory() as out:
        warm_up(cfg.replace(seed=seed + 1, steps=400, warmup_steps=300, delta=50, eval_every=400, log_every=400,
                            buffer_max=400), out)
        agents.clear()
        seconds.update(acting=0.0, evaluation=0.0)
        result = train(cfg, out, progress=False)
    learning = learn / result["steps_per_second"] - seconds["evaluation"]  # the learning window, no evaluation
    got = {"steps_per_second": learn / learning, "peak_rss_mb": peak_rss_mb()}
    if agents:  # our loop (stable-baselines3 has its own agent)
        agent = agents[0]
        pieces = {piece: 1e3 * value / learn for piece, value in getattr(getattr(agent, "laps", None), "seconds", {}).items()}
        if pieces:
            pieces["acting"] = 1e3 * seconds["acting"] / learn
            pieces["env step, replay, loop"] = 1e3 * learning / learn - sum(pieces.values())
            got["pieces_ms"] = pieces
        obs = np.random.default_rng(seed).normal(size=agent.obs_dim).astype(np.float32)
        got["act_us"] = act_microseconds(agent, obs)
    return got


def warm_up(cfg, out: str) -> None:
    """A short run of the same config before the measured one: what a process does once (loading the
    compiled kernels from numba's cache, first allocations) stays out of the measured window."""
    from rlx2.train import train

    train(cfg, out, progress=False)


def act_microseconds(agent, obs) -> float:
    """Median time of one ``deterministic_action`` call on one observation (microseconds)."""
    for _ in range(50):
        agent.deterministic_action(obs)
    times = []
    for _ in range(21):
        started = time.perf_counter()
        for _ in range(100):
            agent.deterministic_action(obs)
        times.append((time.perf_counter() - started) / 100 * 1e6)
    return statistics.median(times)


def measure(python: str, algo: str, env: str, config: str, warmup: int, learn: int, seed: int,
            clock: str = "cpu") -> dict:
    """Run one measurement in a fresh process of ``python`` and return what it reported."""
    command = [python, __file__, "--child", algo, env, config, str(warmup), str(learn), str(seed), clock]
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=environ)
    if done.returncode != 0:
        raise RuntimeError(f"{algo} {config} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def plan(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """``(label, interpreter, config)`` of every measurement of one repeat, this checkout first."""
    runs = [("", sys.executable, config) for config in args.configs]
    for label, python in zip(args.baseline_label, args.baseline):
        runs += [(label, python, config) for config in args.baseline_configs]
    return runs


def throughput(args: argparse.Namespace) -> list[dict]:
    rows = []
    for repeat in range(args.repeats):
        for algo in args.algos:
            runs = plan(args)
            shift = repeat % len(runs)  # each repeat starts one measurement later: no config keeps one slot
            for label, python, config in runs[shift:] + runs[:shift]:
                got = measure(python, algo, args.env, config, args.warmup, args.learn, seed=repeat, clock=args.clock)
                name = f"{config} @{label}" if label else config
                rows.append({"algo": algo, "env": args.env, "config": name, "repeat": repeat, **got})
                print(f"  repeat {repeat} {algo} {name:28s} {got['steps_per_second']:7.1f} steps/s "
                      f"{got['peak_rss_mb']:6.0f} MiB", file=sys.stderr, flush=True)
    return rows


def paired_ratios(rows: list[dict], algo: str, config: str, reference: str) -> list[float]:
    """``config``'s steps/s over ``reference``'s measured in the same repeat, one ratio per repeat with both."""
    by_repeat = {r["repeat"]: r["steps_per_second"] for r in rows if r["algo"] == algo and r["config"] == reference}
    return [r["steps_per_second"] / by_repeat[r["repeat"]] for r in rows
            if r["algo"] == algo and r["config"] == config and r["repeat"] in by_repeat]


def table(rows: list[dict], algos: list[str], configs: list[str], baselines: Sequence[str] = ()) -> str:
    """Medians per config, with ratios to stable-baselines3, to our dense agent and (``baselines``: labels)
    of each config to the same config of each baseline checkout.

    Beside the ratio of medians to stable-baselines3, the range of the ratios paired within each
    repeat: on a shared host the two can tell different stories (2026-12-02: 3.02x of medians,
    2.64-3.48x paired, median pair 2.91x), and a goal met only by the medians is met at the margin.
    """
    vs_base = "".join(f" vs {label} |" for label in baselines)
    lines = ["| algo | config | steps/s median | min-max | vs SB3 | vs SB3 per repeat | vs our dense |" + vs_base +
             " actor call us | peak RSS MiB |", "|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(baselines) +
             "---:|---:|"]
    for algo in algos:
        medians = {}
        for config in configs:
            values = [r["steps_per_second"] for r in rows if r["algo"] == algo and r["config"] == config]
            medians[config] = statistics.median(values)
        for config in configs:
            chosen = [r for r in rows if r["algo"] == algo and r["config"] == config]
            values = [r["steps_per_second"] for r in chosen]
            rss = max(r["peak_rss_mb"] for r in chosen)
            act = [r["act_us"] for r in chosen if "act_us" in r]
            vs_sb3 = f"{medians[config] / medians['sb3']:.2f}x" if "sb3" in medians else "-"
            paired = paired_ratios(rows, algo, config, "sb3") if config != "sb3" else []
            per_repeat = f"{min(paired):.2f}-{max(paired):.2f}x" if paired else "-"
            vs_dense = f"{medians[config] / medians['dense']:.2f}x" if "dense" in medians else "-"
            act_text = f"{statistics.median(act):.0f}" if act else "-"
            base_text = ""
            for label in baselines:
                before = medians.get(f"{config} @{label}")
                base_text += f" {medians[config] / before:.2f}x |" if before and "@" not in config else " - |"
            lines.append(f"| {algo} | {config} | {medians[config]:.1f} | {min(values):.1f}-{max(values):.1f} | "
                         f"{vs_sb3} | {per_repeat} | {vs_dense} |{base_text} {act_text} | {rss:.0f} |")
    return "\n".join(lines)


def breakdown(rows: list[dict], algos: list[str], configs: list[str]) -> str:
    """Median ms per environment step of every piece (``PIECES``), for every config that reported them."""
    lines = ["| algo | config | " + " | ".join(PIECES) + " | total |", "|---|---|" + "---:|" * (len(PIECES) + 1)]
    for algo in algos:
        for config in configs:
            chosen = [r["pieces_ms"] for r in rows if r["algo"] == algo and r["config"] == config and "pieces_ms" in r]
            if not chosen:
                continue
            medians = [statistics.median(r.get(piece, 0.0) for r in chosen) for piece in PIECES]
            total = statistics.median(sum(r.values()) for r in chosen)
            lines.append(f"| {algo} | {config} | " + " | ".join(f"{m:.2f}" for m in medians) + f" | {total:.2f} |")
    return "\n".join(lines)


def best_microseconds(fn, n: int = 200, rounds: int = 7, warm: int = 0, timer=time.process_time) -> float:
    """The fastest of ``rounds`` rounds of ``n`` calls of ``fn`` (after ``warm`` calls), microseconds per call."""
    for _ in range(warm):
        fn()
    best = float("inf")
    for _ in range(rounds):
        start = timer()
        for _ in range(n):
            fn()
        best = min(best, (timer() - start) / n * 1e6)
    return best


def kernels() -> None:
    """Forward, input-gradient and weight-gradient times of a 256x256 layer, batch 256, by density."""
    import torch

    from rlx2.sparse.backend import SparsePattern

    torch.set_num_threads(1)

    def clock(fn):
        return best_microseconds(fn, rounds=3, warm=20, timer=time.perf_counter)

    generator = torch.Generator().manual_seed(0)
    x, g = torch.randn(256, 256, generator=generator).t(), torch.randn(256, 256, generator=generator).t()
    print("| density | dense fwd us | CSR fwd us | dense grad_in us | CSR grad_in us | dense grad_w us | sampled grad_w us |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for density in (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5):
        mask = torch.rand(256, 256, generator=generator) < density
        weight = torch.randn(256, 256, generator=generator) * mask
        pattern = SparsePattern.of(mask)
        products = (
            lambda w=weight: w @ x.t(), lambda w=weight, p=pattern: torch.sparse.mm(p.weight(w), x.t()),
            lambda w=weight: w.t() @ g.t(), lambda w=weight, p=pattern: torch.sparse.mm(p.weight_t(w), g.t()),
            lambda: g.t() @ x, lambda p=pattern: torch.sparse.sampled_addmm(p.ones, g.t(), x, beta=0.0),
        )
        row = [clock(product) for product in products]
        print(f"| {density:.2f} | " + " | ".join(f"{v:.0f}" for v in row) + " |")


def floor(args: argparse.Namespace) -> None:
    """The compiled kernels' own cost of one RLx2-TD3 environment step's update, without the Python around them.

    On an agent with real masks (``--env``'s sizes, batch 256): the target actor and both
    target critics forward, the critics forward and backward, their Adam step, and every
    second step the actor's forward, Q1's forward and input gradient and the actor's
    backward, each through ``rlx2.agents.kernel_update`` (the calls ``TD3.update`` makes),
    best of 7 rounds of CPU time. Whatever an update costs beyond this sum is overhead.
    """
    import gymnasium as gym
    import torch

    from rlx2.agents import make_agent
    from rlx2.agents.kernel_update import Workspace, kernel_patterns, run_network, store_grads
    from rlx2.config import RunConfig
    from rlx2.methods import get_method
    from rlx2.sparse.compiled_mlp import backward_arrays

    torch.set_num_threads(1)
    env = gym.make(args.env)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]

    clock = best_microseconds
    print("| sparsity (actor/critic) | critics forward (target + online) | target actor forward | critics backward "
          "| critic Adam | actor step (every 2nd) | sum, ms per env step |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for actor_sparsity, critic_sparsity in ((0.9, 0.85), (0.98, 0.95)):
        method = get_method("rlx2")()
        cfg = method.resolve(RunConfig(algo="td3", env=args.env, actor_sparsity=actor_sparsity,
                                       critic_sparsity=critic_sparsity))
        agent = make_agent("td3", cfg=cfg, method=method, obs_dim=obs_dim, act_dim=act_dim,
                           generator=torch.Generator().manual_seed(0))
        generator = torch.Generator().manual_seed(1)
        obs = torch.randn(256, obs_dim, generator=generator).numpy()
        pairs = torch.randn(256, obs_dim + act_dim, generator=generator).numpy()
        grad_q = torch.randn(1, 256, generator=generator).numpy()  # feature-major, as the kernels take it
        grad_act = torch.randn(act_dim, 256, generator=generator).numpy()
        workspace = Workspace()
        with torch.no_grad():
            critics = kernel_patterns([agent.critic.q1, agent.critic.q2], backward=True)
            actor = kernel_patterns([agent.actor.net], backward=True)
            if critics is None or actor is None:
                raise SystemExit("--floor needs the compiled kernels (numba; RLX2_KERNELS unset)")

            def critics_forward():
                return [run_network(workspace, f"q{i}", pattern, pairs)[1] for i, pattern in enumerate(critics)]

            def actor_forward():
                return run_network(workspace, "actor", actor[0], obs)[1]

            def q1_forward():
                return run_network(workspace, "q1 on the actor's pairs", critics[0], pairs)[1]

            critic_saved, actor_saved, q1_saved = critics_forward(), actor_forward(), q1_forward()
            no_params = (False,) * (2 * len(critics[0].layers))
            pieces = [
                2 * clock(critics_forward),
                clock(actor_forward),
                clock(lambda: [store_grads(p, s, grad_q) for p, s in zip(critics, critic_saved)]),
            ]
            controller = agent.controllers["critic"]
            pieces.append(clock(controller._compiled_step))
            pieces.append(0.5 * (clock(actor_forward) + clock(q1_forward)
                                 + clock(lambda: backward_arrays(critics[0], q1_saved, grad_q, no_params, True))
                                 + clock(lambda: store_grads(actor[0], actor_saved, grad_act))))
        print(f"| {actor_sparsity:.0%}/{critic_sparsity:.0%} | " + " | ".join(f"{v:.0f} us" for v in pieces)
              + f" | {sum(pieces) / 1000:.2f} |")


def child_in_place(config: str, env: str, warmup: int, learn: int) -> dict:
    """Inside one real TD3 run of ``config``: ms per update in ``TD3.update`` and in each compiled kernel it calls
    (timed in place, after the warm-up run), for ``in_place``."""
    import rlx2.agents.base as base
    import rlx2.agents.td3 as td3
    import rlx2.sparse.kernels as kernels_module

    spent: dict[str, float] = {}
    timing = {"on": False, "inside": False}  # after the warm-up run; inside an update (not acting, evaluating)

    class KernelLaps(base.Laps):
        """``Agent.laps`` that also books the kernel time since the last mark to the piece it ends."""

        def __init__(self) -> None:
            super().__init__()
            self.kernel_seconds: dict[str, float] = {}
            self._kernels_at_mark = 0.0

        def start(self) -> None:
            super().start()
            self._kernels_at_mark = sum(v for k, v in spent.items() if k != "update")

        def lap(self, piece: str) -> None:
            super().lap(piece)
            now = sum(v for k, v in spent.items() if k != "update")
            self.kernel_seconds[piece] = self.kernel_seconds.get(piece, 0.0) + now - self._kernels_at_mark
            self._kernels_at_mark = now

    base.Laps = KernelLaps  # child_rlx2 installs the agent's Laps from this module

    def timed(name, fn):
        def call(*args, **kwargs):
            if not (timing["on"] and (timing["inside"] or name == "update")):
                return fn(*args, **kwargs)
            timing["inside"] = True
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - started
                timing["inside"] = name != "update"
        return call

    compiled = kernels_module.compiled()
    pieces = {"mlp_forward": "sparse forward", "mlp_backward": "sparse backward", "adam": "Adam", "lerp": "Polyak",
              **dict.fromkeys(("squared_error_grad", "mean_grad", "smoothed_actions", "bootstrapped_target"),
                              "loss and target steps")}
    for attribute, name in pieces.items():
        setattr(compiled, attribute, timed(name, getattr(compiled, attribute)))
    td3.TD3.update = timed("update", td3.TD3.update)
    warm = globals()["warm_up"]

    def warm_then_time(cfg, out):
        warm(cfg, out)
        timing["on"] = True

    globals()["warm_up"] = warm_then_time
    agents = []
    make = td3.TD3.__init__

    def counting_init(self, *args, **kwargs):
        make(self, *args, **kwargs)
        agents.append(self)

    td3.TD3.__init__ = counting_init
    child_rlx2("td3", env, config, warmup, learn, seed=0)
    agent = agents[-1]  # the measured run's agent: every update after the warm-up run
    updates = agent.iterations
    got = {name: 1e3 * seconds / updates for name, seconds in spent.items()}
    got["pieces"] = {piece: [1e3 * seconds / updates, 1e3 * agent.laps.kernel_seconds.get(piece, 0.0) / updates]
                     for piece, seconds in agent.laps.seconds.items()}
    return got


def in_place(args: argparse.Namespace) -> None:
    """Where a real TD3 update's time goes at 90/85 % and 98/95 %: the compiled kernels timed in
    place (each a fresh child process, one thread, ``--clock``); compare them with ``--floor``'s repeated calls
    run just before (a shared host's speed moves within minutes). The rest is Python and small tensor
    operations, split by the update's pieces (``Agent.laps``)."""
    print("| config | update ms | sparse forward | sparse backward | Adam | Polyak | loss and target steps | rest |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    by_piece = {}
    for config in ("rlx2 90/85", "rlx2 98/95"):
        command = [sys.executable, __file__, "--in-place-child", config, args.env, str(args.warmup), str(args.learn),
                   args.clock]
        environ = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        done = subprocess.run(command, capture_output=True, text=True, env=environ)
        if done.returncode != 0:
            raise RuntimeError(f"{config} failed:\n{done.stderr[-3000:]}")
        got = json.loads(done.stdout.strip().splitlines()[-1])
        named = ("sparse forward", "sparse backward", "Adam", "Polyak", "loss and target steps")
        rest = got["update"] - sum(got.get(name, 0.0) for name in named)
        print(f"| {config} | {got['update']:.2f} | " + " | ".join(f"{got.get(name, 0.0):.2f}" for name in named)
              + f" | {rest:.2f} |")
        by_piece[config] = got["pieces"]
    print("\nThe rest by piece of the update (ms per update: the piece's time, minus its kernels):\n")
    pieces = PIECES[:6]
    print("| config | " + " | ".join(pieces) + " |")
    print("|---|" + "---:|" * len(pieces))
    for config, got in by_piece.items():
        print(f"| {config} | " + " | ".join(f"{got[p][0] - got[p][1]:.2f}" if p in got else "-" for p in pieces) + " |")


def late(args: argparse.Namespace) -> None:
    """The critic's Adam step late in a RigL or RLx2 run, when every weight dropped so far has subnormal moments.

    A dropped weight's moments decay under a zero gradient and, in float32, stop short of
    zero (``m`` at 1-4 units of 2**-149, ``v`` at up to about 500): a long run accumulates
    them at most inactive positions it ever used, which a short measurement never reaches.
    On an RLx2-TD3 critic at 97/95 % (``--env``'s sizes) this sets six times each layer's
    active count of inactive positions to such values (about what the headline profile's
    RigL seed 6 held at step 250 000), then times, best of 7 rounds of CPU time, the whole
    compiled Adam step and its zero-gradient decay, against the decay as the two float32
    lines it replaces (``m += (1 - beta1)(0 - m)``, ``v *= beta2``), which give the same bits.
    """
    import gymnasium as gym
    import numba
    import numpy as np
    import torch

    from rlx2.agents import make_agent
    from rlx2.config import RunConfig
    from rlx2.methods import get_method
    from rlx2.sparse import kernels

    @numba.njit(nogil=True)
    def float_decay(exp_avg, exp_avg_sq, positions, one_minus_beta1, b2):
        for i in range(positions.shape[0]):
            k = positions[i]
            exp_avg[k] = exp_avg[k] + one_minus_beta1 * (np.float32(0.0) - exp_avg[k])
            exp_avg_sq[k] = exp_avg_sq[k] * b2

    torch.set_num_threads(1)
    env = gym.make(args.env)
    method = get_method("rlx2")()
    cfg = method.resolve(RunConfig(algo="td3", env=args.env, actor_sparsity=0.97, critic_sparsity=0.95))
    agent = make_agent("td3", cfg=cfg, method=method, obs_dim=env.observation_space.shape[0],
                       act_dim=env.action_space.shape[0], generator=torch.Generator().manual_seed(0))
    controller = agent.controllers["critic"]
    if not controller.compiled():
        raise SystemExit("--late needs the compiled kernels (numba; RLX2_KERNELS unset)")
    rng = np.random.default_rng(0)
    for param in agent.critic.parameters():
        param.grad = torch.from_numpy(rng.standard_normal(param.shape).astype(np.float32))
    controller._compiled_step()  # creates the moments
    tiny = np.float32(1.4e-45)  # 2**-149, float32's smallest subnormal
    stuck = 0
    for _, layer in controller.layers:
        state = controller.optimizer.state[layer.weight]
        inactive = np.flatnonzero(~layer.mask.numpy().ravel())
        chosen = rng.choice(inactive, min(inactive.size, 6 * int(layer.mask.sum())), replace=False)
        state["exp_avg"].view(-1).numpy()[chosen] = tiny * rng.integers(1, 5, chosen.size).astype(np.float32)
        state["exp_avg_sq"].view(-1).numpy()[chosen] = tiny * rng.integers(1, 500, chosen.size).astype(np.float32)
        stuck += chosen.size
    controller._arrays.clear()  # the decaying positions are listed again from the moments
    arrays = controller._group_arrays(0, [p for p in controller.optimizer.param_groups[0]["params"]
                                          if p.grad is not None])
    exp_avgs, exp_avg_sqs, decaying = arrays[1], arrays[2], arrays[5]  # as _numba.adam takes them
    one_minus_beta1, b2 = np.float32(1.0 - 0.9), np.float32(0.999)

    def decay(kernel):
        for exp_avg, exp_avg_sq, positions in zip(exp_avgs, exp_avg_sqs, decaying):
            kernel(exp_avg, exp_avg_sq, positions, one_minus_beta1, b2)

    step = best_microseconds(controller._compiled_step)
    integer, floating = best_microseconds(lambda: decay(kernels.compiled()._decay)), best_microseconds(
        lambda: decay(float_decay))
    print(f"critic at 97/95 % on {args.env}, {stuck} inactive weights with subnormal moments "
          f"({sum(len(p) for p in decaying)} decaying positions):")
    print(f"  whole compiled Adam step: {step:.0f} us; its decay on integer bits: {integer:.0f} us; "
          f"the same decay as float32 arithmetic: {floating:.0f} us ({floating / integer:.1f}x)")


def scaling(args: argparse.Namespace) -> None:
    """Total env steps/s of the local executor with 1 and with 2 workers on the same 4 runs."""
    suite = f"""
[suite]
description = "executor scaling: 4 RLx2 TD3 runs"
algos = ["td3"]
tasks = ["{args.env}"]
methods = ["rlx2"]
default_profile = "scaling"
[sparsity.td3]
"{args.env}" = [0.9, 0.85]
[settings]
eval_episodes = 1
[profiles.scaling]
steps = {args.warmup + args.learn}
seeds = 4
"""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scaling.toml"
        path.write_text(suite)
        for workers in (1, 2):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "rlx2.cli", "suite", "run", str(path), "--results",
                            f"{tmp}/w{workers}", "--workers", str(workers), "--quiet"], check=True)
            wall = time.perf_counter() - start
            print(f"workers {workers}: 4 runs x {args.warmup + args.learn} steps in {wall:.1f} s -> "
                  f"{4 * (args.warmup + args.learn) / wall:.1f} env steps/s in total", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        algo, env, config, warmup, learn, seed, clock = sys.argv[2:9]
        if clock == "cpu":  # before anything reads the clock (module docstring)
            time.perf_counter = time.process_time
        import torch

        torch.set_num_threads(1)
        got = child_rlx2(algo, env, config, int(warmup), int(learn), int(seed))
        print(json.dumps(got))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--in-place-child":
        config, env, warmup, learn, clock = sys.argv[2:7]
        if clock == "cpu":
            time.perf_counter = time.process_time
        import torch

        torch.set_num_threads(1)
        print(json.dumps(child_in_place(config, env, int(warmup), int(learn))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", choices=("td3", "sac"), default=["td3", "sac"])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=DEFAULT_CONFIGS)
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--warmup", type=int, default=1000, help="random-action steps before learning")
    parser.add_argument("--learn", type=int, default=2000, help="measured learning steps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="what a second is: the measured process's CPU time (default) or wall-clock time")
    parser.add_argument("--json", help="also write every measurement to this file")
    parser.add_argument("--kernels", action="store_true", help="only compare CSR and dense kernels by density")
    parser.add_argument("--scaling", action="store_true", help="only measure the local executor, 1 vs 2 workers")
    parser.add_argument("--floor", action="store_true",
                        help="only time the compiled kernels of one RLx2-TD3 step, without the Python around them")
    parser.add_argument("--in-place", action="store_true",
                        help="only time the compiled kernels inside real TD3 updates (90/85 and 98/95 %%)")
    parser.add_argument("--late", action="store_true",
                        help="only time the critic's Adam step late in a RigL/RLx2 run (subnormal moments)")
    parser.add_argument("--baseline", action="append", default=[],
                        help="also measure the rlx2 this Python interpreter imports (another checkout); repeatable")
    parser.add_argument("--baseline-label", action="append", default=[],
                        help="how each baseline's rows are labelled, in --baseline's order (default: baseline, "
                             "baseline-2, ...)")
    parser.add_argument("--baseline-configs", nargs="+", choices=[c for c in CONFIGS if c != "sb3"],
                        default=["dense", "rlx2 90/85", "rlx2 98/95"])
    args = parser.parse_args()
    if len(args.baseline_label) > len(args.baseline):
        parser.error(f"--baseline-label given {len(args.baseline_label)} times for {len(args.baseline)} --baseline")
    args.baseline_label += [f"baseline-{i + 1}" if i else "baseline" for i in range(len(args.baseline_label),
                                                                                   len(args.baseline))]
    for name in ("warmup", "learn", "repeats"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive, got {getattr(args, name)}")
    if args.kernels:
        kernels()
        return
    if args.scaling:
        scaling(args)
        return
    if args.floor:
        floor(args)
        return
    if args.late:
        late(args)
        return
    if args.in_place:
        in_place(args)
        return
    import torch

    print(f"# throughput, {args.env}, {args.warmup} warm-up + {args.learn} measured steps, {args.repeats} repeats, "
          f"1 torch thread, {args.clock} clock, torch {torch.__version__}, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}")
    rows = throughput(args)
    configs = [f"{config} @{label}" if label else config for label, _, config in plan(args)]
    print(table(rows, args.algos, configs, args.baseline_label))
    print(f"\nWhere an environment step goes (ms, median of {args.repeats}; the update's pieces as the agents mark "
          f"them, acting = the exploration action, the rest = environment step, replay sampling, buffer, loop):\n")
    print(breakdown(rows, args.algos, configs))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
