"""The off-policy loop: the procedure of every method that brings none of its own.

Order of one environment step ``t`` (1-based):
1. act: uniform random actions during the ``warmup_steps`` first steps, then the agent's
   exploration policy; the deterministic behaviour action is stored with the transition;
2. every ``buffer_check_every`` steps, the dynamic-capacity rule (when on);
3. after warm-up, one training iteration: sample (n-step once ``nstep_delay`` iterations
   have passed, ``RunConfig.n_at``) and update; method hooks inside the agent evolve the topology;
4. every ``eval_every`` steps (and at the last step) evaluate ``eval_episodes`` episodes with
   the deterministic policy on a separate environment reset with seed ``seed + 100`` at the
   start of every evaluation (so evaluations share their initial states).

Randomness: one ``torch.Generator`` (initialisation, masks, policy noise, SET growth) and
NumPy generators spawned from one ``SeedSequence`` (warm-up actions and exploration noise,
replay sampling), all from ``cfg.seed``; the global RNGs are never used.

Checkpoints are taken at the first episode end after every ``checkpoint_every`` steps and
hold everything the loop depends on (networks, masks, optimisers, replay, every generator,
the training env's generator before its reset), so a resumed run continues exactly as an
uninterrupted one would.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from rlx2.agents import make_agent
from rlx2.config import RunConfig, run_id
from rlx2.envs import ActionScaler, make_env
from rlx2.recorder import Recorder
from rlx2.replay import DynamicCapacity, ReplayBuffer
from rlx2.sparse.flops import flops_report


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


class Clock:
    """Wall-clock and learning time (after warm-up) of a run, across resumed attempts."""

    def __init__(self, loop: LoopState) -> None:
        self.loop = loop
        self.attempt_started = time.perf_counter()
        self.learning_since: float | None = None

    def learning(self) -> None:
        if self.learning_since is None:
            self.learning_since = time.perf_counter()

    def learning_seconds(self) -> float:
        now = time.perf_counter()
        return self.loop.learning_seconds + (now - self.learning_since if self.learning_since else 0.0)

    def wall_seconds(self) -> float:
        return self.loop.wall_seconds + time.perf_counter() - self.attempt_started

    def bank(self) -> None:
        """Fold this attempt's time so far into the loop state (before a checkpoint)."""
        now = time.perf_counter()
        self.loop.wall_seconds += now - self.attempt_started
        self.loop.learning_seconds += now - self.learning_since if self.learning_since else 0.0
        self.attempt_started, self.learning_since = now, (now if self.learning_since else None)


@dataclass
class Generators:
    """Every source of randomness of a run, from its seed (restored exactly by a checkpoint)."""

    act: np.random.Generator
    replay: np.random.Generator
    torch: torch.Generator

    @classmethod
    def of(cls, seed: int) -> Generators:
        act, replay = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
        return cls(act, replay, torch.Generator().manual_seed(seed))

    def state(self) -> dict[str, Any]:
        return {"act": self.act.bit_generator.state, "replay": self.replay.bit_generator.state,
                "torch": self.torch.get_state()}

    def restore(self, state: dict[str, Any]) -> None:
        self.act.bit_generator.state = state["act"]
        self.replay.bit_generator.state = state["replay"]
        self.torch.set_state(state["torch"])


def run_off_policy(ctx) -> dict[str, Any]:
    """One off-policy agent trained for ``cfg.steps`` steps into ``ctx.run_dir`` (resumed from its checkpoint)."""
    cfg, method, run_dir = ctx.cfg, ctx.method, ctx.run_dir
    rngs = Generators.of(cfg.seed)
    env, eval_env = make_env(cfg.env), make_env(cfg.env)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    scale = ActionScaler(env.action_space)
    agent = make_agent(cfg.algo, cfg=cfg, method=method, obs_dim=obs_dim, act_dim=act_dim, generator=rngs.torch)
    buffer = ReplayBuffer(obs_dim, act_dim, min(cfg.buffer_max, cfg.steps), rngs.replay)  # never holds more
    recorder = Recorder(cfg, method, run_dir)
    obs, _ = env.reset(seed=cfg.seed)
    env_rng = env.unwrapped.np_random  # the training env's generator (episode initial states)
    checkpoint = run_dir.load_checkpoint()
    if checkpoint is not None:
        loop = restore(checkpoint, agent, buffer, rngs, env_rng, recorder)
        obs, _ = env.reset()  # the very reset the checkpoint was taken after
    else:
        loop = LoopState()
        recorder.evaluations = loop.evaluations  # one list: the recorder appends, checkpoints keep it
        flops = flops_report(cfg, obs_dim, act_dim, method.training_cost(cfg, agent))
        recorder.start(env, agent.modules(), agent.densities(), flops, agent.controllers)
    if cfg.tensorboard:
        run_dir.open_tensorboard(fresh=checkpoint is None)
    with recorder.attempt(env, eval_env):
        clock = steps(cfg, agent, buffer, rngs, env, eval_env, scale, obs, env_rng, loop, recorder, ctx.progress)
    return recorder.finish(agent.state_dict(), steps=cfg.steps, iterations=agent.iterations,
                           wall_seconds=clock.wall_seconds(), steps_per_second=_rate(agent, clock),
                           final_buffer_size=len(buffer), final_densities=agent.densities(),
                           flops=flops_report(cfg, obs_dim, act_dim, method.training_cost(cfg, agent)))


def restore(checkpoint: dict, agent, buffer: ReplayBuffer, rngs: Generators, env_rng, recorder: Recorder) -> LoopState:
    """Put a checkpoint's state back (the run directory's logs are cut back to its step)."""
    agent.load_training_state(checkpoint["agent"])
    buffer.load_state_dict(checkpoint["replay"])
    rngs.restore(checkpoint["rng"])
    env_rng.bit_generator.state = checkpoint["rng"]["env_before_reset"]
    loop = LoopState(**checkpoint["loop"])
    recorder.evaluations = loop.evaluations  # one list: the recorder appends, checkpoints keep it
    print(f"{run_id(recorder.cfg)}: resuming from step {loop.step:,} of {recorder.cfg.steps:,}", file=sys.stderr,
          flush=True)
    recorder.run_dir.resume(loop.step)
    return loop


def _rate(agent, clock: Clock) -> float | None:
    seconds = clock.learning_seconds()
    return agent.iterations / seconds if seconds > 0 else None


def steps(cfg: RunConfig, agent, buffer: ReplayBuffer, rngs: Generators, env, eval_env, scale: ActionScaler, obs,
          env_rng, loop: LoopState, recorder: Recorder, progress: bool) -> Clock:
    """Steps ``loop.step + 1 .. cfg.steps`` of the environment loop (module docstring); returns the run's clock."""
    capacity_rule = DynamicCapacity(cfg.buffer_threshold, cfg.buffer_min, 8 * cfg.batch_size, cfg.buffer_rule)
    act_dim = env.action_space.shape[0]
    clock = Clock(loop)
    next_checkpoint = (loop.step // cfg.checkpoint_every + 1) * cfg.checkpoint_every
    env_state_before_reset = None
    bar = tqdm(total=cfg.steps, initial=loop.step, disable=not progress, unit="step", dynamic_ncols=True,
               mininterval=1.0, desc=run_id(cfg))
    try:
        for step in range(loop.step + 1, cfg.steps + 1):
            episode_ended = False
            if step <= cfg.warmup_steps:
                action = rngs.act.uniform(-1.0, 1.0, act_dim).astype(np.float32)
                behaviour = action
            else:
                action, behaviour = agent.explore(obs, rngs.act)
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
                clock.learning()
                stats = agent.update(buffer.sample(cfg.batch_size, cfg.n_at(step - cfg.warmup_steps), cfg.gamma))
                for key, value in stats.items():
                    loop.window.setdefault(key, []).append(value)
                if any(ctrl.events for ctrl in agent.controllers.values()):
                    recorder.topology_events(agent.controllers, step)

            if step % cfg.log_every == 0:
                log_diagnostics(cfg, agent, buffer, loop, recorder, clock, step)

            if step % cfg.eval_every == 0 or step == cfg.steps:
                mean = recorder.evaluate(agent, eval_env, scale, step)
                bar.set_postfix(eval_return=f"{mean:.1f}", refresh=False)
            bar.update(1)

            if episode_ended and step >= next_checkpoint and step < cfg.steps:
                loop.step = step
                clock.bank()
                recorder.run_dir.save_checkpoint({
                    "agent": agent.training_state(), "replay": buffer.state_dict(), "loop": asdict(loop),
                    "rng": {**rngs.state(), "env_before_reset": env_state_before_reset},
                })
                next_checkpoint = (step // cfg.checkpoint_every + 1) * cfg.checkpoint_every
    finally:
        bar.close()
    return clock


def log_diagnostics(cfg: RunConfig, agent, buffer: ReplayBuffer, loop: LoopState, recorder: Recorder, clock: Clock,
                    step: int) -> None:
    """One row of training diagnostics: the window's mean losses and the loop's state at ``step``."""
    row = {key: float(np.mean(values)) for key, values in loop.window.items()}
    recorder.diagnostics({
        **row, "step": step, "iterations": agent.iterations, "buffer_size": len(buffer),
        "n_step": cfg.n_at(step - cfg.warmup_steps), "policy_distance": loop.distance, "episodes": loop.episodes,
        "train_return": float(np.mean(loop.episode_returns)) if loop.episode_returns else None,
        "steps_per_second": _rate(agent, clock),
    })
    loop.window.clear()
    loop.episode_returns.clear()
