"""One training run, top to bottom: the environment loop, updates, evaluation and records.

Order of one environment step ``t`` (1-based):
1. act: uniform random actions during the ``warmup_steps`` first steps, then the agent's
   exploration policy; the deterministic behaviour action is stored with the transition;
2. every ``buffer_check_every`` steps, the dynamic-capacity rule (when on);
3. after warm-up, one training iteration: sample (n-step once ``nstep_delay`` iterations
   have passed) and update; method hooks inside the agent evolve the topology;
4. every ``eval_every`` steps (and at the last step) evaluate ``eval_episodes`` episodes with
   the deterministic policy on a separate environment reset with seed ``seed + 100`` at the
   start of every evaluation (so evaluations share their initial states).

Randomness: one ``torch.Generator`` (initialisation, masks, policy noise, SET growth) and
NumPy generators spawned from one ``SeedSequence`` (warm-up actions and exploration noise,
replay sampling), all from ``cfg.seed``; the global RNGs are never used.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from rlx2.agents import Agent, make_agent
from rlx2.config import ConfigError, RunConfig, run_id
from rlx2.envs import ActionScaler, make_env
from rlx2.evaluation import EVAL_SEED_OFFSET, evaluate
from rlx2.methods import get_method
from rlx2.records import CHECKPOINT_FILE, RunDirectory, git_commit, package_versions, writable_directory
from rlx2.replay import DynamicCapacity, ReplayBuffer
from rlx2.sparse.flops import flops_report

class RunDiverged(RuntimeError):
    """A loss or return became NaN/inf; the run cannot continue."""


class RunAlreadyFinished(RuntimeError):
    """The run directory already holds a result record."""


class RunSettingsMismatch(RuntimeError):
    """The run directory holds an unfinished run with other settings: resuming would mix them."""


@dataclass
class Prepared:
    """A run whose inputs are all checked: what ``train`` needs before touching the disk."""

    cfg: RunConfig  # resolved
    method: Any
    run_dir: RunDirectory


def available_memory() -> int | None:
    """Bytes of memory this machine can still give a process (Linux ``MemAvailable``), or None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(cfg: RunConfig, obs_dim: int, act_dim: int) -> None:
    """Refuse a run that could not fit in memory (a typo'd width or capacity), before anything is written.

    The estimate: replay storage for ``min(buffer_max, steps)`` transitions, and ten float32
    copies of every weight (weights, gradients, Adam's two moments, targets, masks, slack).
    """
    from rlx2.sparse.flops import mlp_weights

    transitions = min(cfg.buffer_max, cfg.steps)
    replay = transitions * (4 * (2 * obs_dim + 2 * act_dim + 1) + 2)
    weights = mlp_weights(obs_dim, cfg.hidden_sizes, 2 * act_dim) + 2 * mlp_weights(obs_dim + act_dim, cfg.hidden_sizes, 1)
    networks = 10 * 4 * weights
    available = available_memory()
    if available is None or replay + networks <= available:
        return
    name, value = ("buffer_max", cfg.buffer_max) if replay > networks else ("hidden_sizes", cfg.hidden_sizes)
    raise ConfigError(name, value, f"a run would need about {(replay + networks) / 2**30:.1f} GiB of memory; "
                                   f"{available / 2**30:.1f} GiB are available")


def prepare(cfg: RunConfig, out: Path | str) -> Prepared:
    """Validate every input (config, method, task) before anything is written."""
    cfg.validate()
    method = get_method(cfg.method)()
    resolved = method.resolve(cfg)
    env = make_env(cfg.env)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    check_memory(resolved, obs_dim, act_dim)
    problem = writable_directory(Path(out))
    if problem:
        raise ConfigError("out", str(out), problem)
    run_dir = RunDirectory(Path(out) / run_id(resolved))
    run_dir.metadata["scaled_to_budget"] = cfg.unset_budget_fields()  # recorded in config.json
    return Prepared(resolved, method, run_dir)


def evaluate_and_record(agent, env, scale: ActionScaler, cfg: RunConfig, run_dir: RunDirectory, step: int) -> float:
    """One evaluation (``cfg.eval_episodes`` episodes), written to the run's logs; its mean return."""
    returns = evaluate(agent, env, scale, cfg.eval_episodes, cfg.seed + EVAL_SEED_OFFSET)
    mean = float(np.mean(returns))
    if not math.isfinite(mean):
        raise RunDiverged(f"non-finite evaluation return at step {step}")
    run_dir.evaluations.write({"step": step, "mean_return": mean, "std_return": float(np.std(returns)),
                               "episodes": len(returns)})
    run_dir.scalars(step, {"mean_return": mean}, "eval")
    return mean


def train(cfg: RunConfig, out: Path | str, *, progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Run one training run into ``out/<run-id>/`` and return its result record."""
    prepared = prepare(cfg, out)
    cfg, method, run_dir = prepared.cfg, prepared.method, prepared.run_dir
    run_dir.lock()
    try:
        if run_dir.finished and not overwrite:
            raise RunAlreadyFinished(f"{run_dir.path} already holds a finished run (pass --overwrite to redo it)")
        if overwrite:
            (run_dir.path / CHECKPOINT_FILE).unlink(missing_ok=True)
        elif (run_dir.path / CHECKPOINT_FILE).is_file():
            try:
                saved = json.loads((run_dir.path / "config.json").read_text())["config"]
            except (OSError, ValueError, KeyError):
                saved = None
            differ = RunConfig.saved_matches(saved, cfg) if saved is not None else []
            if differ:
                raise RunSettingsMismatch(f"{run_dir.path} holds an unfinished run with other settings "
                                          f"({', '.join(differ)}); pass --overwrite to start it afresh")
        torch.set_num_threads(cfg.torch_threads)
        try:
            return method.run(cfg, Path(out), run_dir, progress=progress)
        except RunDiverged as exc:
            run_dir.fail(str(exc), "diverged")
            raise
    finally:
        run_dir.unlock()


def run_metadata(cfg: RunConfig, method: Any, env, modules: dict[str, Any], densities, flops) -> dict[str, Any]:
    """What ``config.json`` holds: the resolved config and everything needed to trace a number."""
    return {
        "run_id": run_id(cfg),
        "config": cfg.to_dict(),
        "method_description": method.description,
        "env": {"obs_dim": env.observation_space.shape[0], "act_dim": env.action_space.shape[0],
                "action_low": env.action_space.low.tolist(), "action_high": env.action_space.high.tolist()},
        "networks": {name: {"parameters": sum(p.numel() for p in m.parameters())} for name, m in modules.items()},
        "initial_densities": densities,
        "flops": flops,
        "versions": package_versions(),
        "git_commit": git_commit(),
    }


def run_off_policy(cfg: RunConfig, method: Any, run_dir: RunDirectory, *, progress: bool = True) -> dict[str, Any]:
    """The standard run of every method: one off-policy agent trained for ``cfg.steps`` steps.

    Resumes from ``run_dir``'s checkpoint when there is a valid one. Checkpoints are taken
    at the first episode end after every ``checkpoint_every`` steps and hold everything
    the loop depends on (networks, masks, optimisers, replay, every generator, the training
    env's generator before its reset), so a resumed run continues exactly as an
    uninterrupted one would.
    """
    act_rng, replay_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(2))
    generator = torch.Generator().manual_seed(cfg.seed)
    env, eval_env = make_env(cfg.env), make_env(cfg.env)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    scale = ActionScaler(env.action_space)

    agent = make_agent(cfg.algo, cfg=cfg, method=method, obs_dim=obs_dim, act_dim=act_dim, generator=generator)
    buffer = ReplayBuffer(obs_dim, act_dim, min(cfg.buffer_max, cfg.steps), replay_rng)  # never holds more
    capacity_rule = DynamicCapacity(cfg.buffer_threshold, cfg.buffer_min, 8 * cfg.batch_size, cfg.buffer_rule)
    loop = LoopState()
    obs, _ = env.reset(seed=cfg.seed)
    env_rng = env.unwrapped.np_random  # the training env's generator (episode initial states)
    checkpoint = run_dir.load_checkpoint()
    if checkpoint is not None:
        agent.load_training_state(checkpoint["agent"])
        buffer.load_state_dict(checkpoint["replay"])
        act_rng.bit_generator.state = checkpoint["rng"]["act"]
        replay_rng.bit_generator.state = checkpoint["rng"]["replay"]
        generator.set_state(checkpoint["rng"]["torch"])
        env_rng.bit_generator.state = checkpoint["rng"]["env_before_reset"]
        obs, _ = env.reset()  # the very reset the checkpoint was taken after
        loop = LoopState(**checkpoint["loop"])
        print(f"{run_id(cfg)}: resuming from step {loop.step:,} of {cfg.steps:,}", file=sys.stderr, flush=True)
        run_dir.resume(loop.step)
        if cfg.tensorboard:
            run_dir.open_tensorboard(fresh=False)
    else:
        run_dir.start(run_metadata(cfg, method, env, agent.modules(), agent.densities(),
                                   flops_report(cfg, obs_dim, act_dim, method.training_cost(cfg, agent))))
        _log_topology(run_dir, agent, step=0, initial=True)
        if cfg.tensorboard:
            run_dir.open_tensorboard(fresh=True)

    next_checkpoint = (loop.step // cfg.checkpoint_every + 1) * cfg.checkpoint_every
    env_state_before_reset = None
    attempt_started = time.perf_counter()
    learning_since: float | None = None
    bar = tqdm(total=cfg.steps, initial=loop.step, disable=not progress, unit="step", dynamic_ncols=True,
               mininterval=1.0, desc=run_id(cfg))
    try:
        for step in range(loop.step + 1, cfg.steps + 1):
            episode_ended = False
            if step <= cfg.warmup_steps:
                action = act_rng.uniform(-1.0, 1.0, act_dim).astype(np.float32)
                behaviour = action
            else:
                action, behaviour = agent.explore(obs, act_rng)
            next_obs, reward, terminated, truncated, _ = env.step(scale(action))
            buffer.add(obs, action, behaviour, reward, next_obs, terminated, truncated)
            loop.episode_return += float(reward)
            obs = next_obs
            if terminated or truncated:
                loop.episode_returns.append(loop.episode_return)
                loop.episodes += 1
                loop.episode_return = 0.0
                env_state_before_reset = copy.deepcopy(env_rng.bit_generator.state)
                obs, _ = env.reset()
                episode_ended = True

            if cfg.dynamic_buffer and step % cfg.buffer_check_every == 0:
                loop.distance = capacity_rule.apply(buffer, agent.policy_distance)

            if step > cfg.warmup_steps:
                if learning_since is None:
                    learning_since = time.perf_counter()
                iteration = step - cfg.warmup_steps
                n = cfg.n_step if iteration >= cfg.nstep_delay else 1
                stats = agent.update(buffer.sample(cfg.batch_size, n, cfg.gamma))
                for key, value in stats.items():
                    loop.window.setdefault(key, []).append(value)
                if any(ctrl.events for ctrl in agent.controllers.values()):
                    _log_topology(run_dir, agent, step)

            if step % cfg.log_every == 0:
                learning_seconds = loop.learning_seconds + (time.perf_counter() - learning_since if learning_since else 0)
                row = {key: float(np.mean(values)) for key, values in loop.window.items()}
                if not all(math.isfinite(v) for v in row.values()):
                    raise RunDiverged(f"non-finite training loss at step {step}: {row}")
                diagnostics = {
                    **row, "step": step, "iterations": agent.iterations, "buffer_size": len(buffer),
                    "n_step": cfg.n_step if step - cfg.warmup_steps >= cfg.nstep_delay else 1,
                    "policy_distance": loop.distance, "episodes": loop.episodes,
                    "train_return": float(np.mean(loop.episode_returns)) if loop.episode_returns else None,
                    "steps_per_second": agent.iterations / learning_seconds if learning_seconds > 0 else None,
                }
                run_dir.diagnostics.write(diagnostics)
                run_dir.scalars(step, diagnostics, "train")
                loop.window.clear()
                loop.episode_returns.clear()

            if step % cfg.eval_every == 0 or step == cfg.steps:
                mean = evaluate_and_record(agent, eval_env, scale, cfg, run_dir, step)
                loop.evaluations.append(mean)
                bar.set_postfix(eval_return=f"{mean:.1f}", refresh=False)
            bar.update(1)

            if episode_ended and step >= next_checkpoint and step < cfg.steps:
                now = time.perf_counter()
                loop.step = step
                loop.wall_seconds += now - attempt_started
                loop.learning_seconds += now - learning_since if learning_since else 0.0
                attempt_started, learning_since = now, (now if learning_since else None)
                run_dir.save_checkpoint({
                    "agent": agent.training_state(), "replay": buffer.state_dict(), "loop": asdict(loop),
                    "rng": {"act": act_rng.bit_generator.state, "replay": replay_rng.bit_generator.state,
                            "torch": generator.get_state(), "env_before_reset": env_state_before_reset},
                })
                next_checkpoint = (step // cfg.checkpoint_every + 1) * cfg.checkpoint_every
    except BaseException:
        run_dir.abort()
        raise
    finally:
        bar.close()
        env.close()
        eval_env.close()

    now = time.perf_counter()
    wall = loop.wall_seconds + now - attempt_started
    learning_seconds = loop.learning_seconds + (now - learning_since if learning_since else 0.0)
    last = loop.evaluations[-cfg.final_window:]
    run_dir.save_model(agent.state_dict())
    result = {
        "run_id": run_id(cfg),
        "status": "finished",
        "final_score": float(np.mean(last)),
        "final_window": len(last),
        "evaluations": len(loop.evaluations),
        "steps": cfg.steps,
        "iterations": agent.iterations,
        "wall_seconds": wall,
        "steps_per_second": agent.iterations / learning_seconds if learning_seconds > 0 else None,
        "final_buffer_size": len(buffer),
        "final_densities": agent.densities(),
        "flops": flops_report(cfg, obs_dim, act_dim, method.training_cost(cfg, agent)),
    }
    run_dir.finish(result)
    return result


@dataclass
class LoopState:
    """What the environment loop carries from one step to the next (checkpointed)."""

    step: int = 0
    episode_return: float = 0.0
    episode_returns: list[float] = field(default_factory=list)
    episodes: int = 0
    distance: float = math.nan
    window: dict[str, list[float]] = field(default_factory=dict)
    evaluations: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    learning_seconds: float = 0.0


def _log_topology(run_dir: RunDirectory, agent: Agent, step: int, initial: bool = False) -> None:
    """Write pending topology events (or, initially, every sparse layer's density)."""
    for network, ctrl in agent.controllers.items():
        if initial:
            for name, layer in ctrl.layers:
                run_dir.topology.write({"step": step, "network": network, "layer": name, "optimizer_step": 0,
                                        "fraction": 0.0, "replaced": 0, "regrown": 0, "active": int(layer.mask.sum()),
                                        "density": layer.density})
            continue
        for event in ctrl.events:
            run_dir.topology.write({"step": step, "network": network, "layer": event.layer,
                                    "optimizer_step": event.optimizer_step, "fraction": event.fraction,
                                    "replaced": event.replaced, "regrown": event.regrown, "active": event.active,
                                    "density": event.density})
        ctrl.events.clear()
