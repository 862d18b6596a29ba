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

from rlx2.agents import make_agent
from rlx2.config import run_id
from rlx2.procedure import RunContext, RunResult, Session
from rlx2.records import git_commit
from rlx2.replay import DynamicCapacity, ReplayBuffer


@dataclass
class LoopState:
    """What the environment loop carries from one step to the next (checkpointed, with the recorder's evaluations)."""

    step: int = 0
    episode_return: float = 0.0
    episode_returns: list[float] = field(default_factory=list)
    episodes: int = 0
    distance: float = math.nan
    window: dict[str, list[float]] = field(default_factory=dict)
    wall_seconds: float = 0.0
    learning_seconds: float = 0.0
    #: Each resume's step and the code's commit then: a run resumed after the code moved on trained on both commits.
    resumes: list[dict[str, Any]] = field(default_factory=list)


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


def run_off_policy(ctx: RunContext) -> RunResult:
    """The procedure of every method that brings none of its own: ``OffPolicyRun(ctx).run()``."""
    return OffPolicyRun(ctx).run()


class OffPolicyRun:
    """One off-policy agent trained for ``cfg.steps`` steps into ``ctx.run_dir``, resumed from its checkpoint.

    State: the agent, its replay buffer, the run's generators, the session (environments,
    action scaling, recorder, progress), the loop state and the clock. ``run`` steps the
    environment loop of the module docstring: ``act``, the capacity rule, ``learn``, ``log``,
    the evaluation due (``Session.step``) and ``checkpoint``; ``restore`` puts a checkpoint back.
    """

    def __init__(self, ctx: RunContext) -> None:
        cfg = self.cfg = ctx.cfg
        self.method = ctx.method
        self.rngs = Generators.of(cfg.seed)
        self.session = session = Session(ctx)
        self.agent = make_agent(cfg.algo, cfg=cfg, method=self.method, obs_dim=session.obs_dim,
                                act_dim=session.act_dim, generator=self.rngs.torch)
        self.buffer = ReplayBuffer(session.obs_dim, session.act_dim, min(cfg.buffer_max, cfg.steps),  # never holds more
                                   self.rngs.replay)
        self.capacity = DynamicCapacity(cfg.buffer_threshold, cfg.buffer_min, 8 * cfg.batch_size, cfg.buffer_rule)
        self.state = LoopState()
        self.obs, _ = session.env.reset(seed=cfg.seed)
        self.env_rng = session.env.unwrapped.np_random  # the training env's generator (episode initial states)
        self.env_state_before_reset: dict | None = None
        self.clock: Clock  # from ``run``: after a restore, the restored state's times

    def run(self) -> RunResult:
        """Steps ``state.step + 1 .. cfg.steps`` (from the checkpoint, if there is one), then the result."""
        cfg, session = self.cfg, self.session
        checkpoint = session.ctx.run_dir.load_checkpoint()
        if checkpoint is not None:
            self.restore(checkpoint)
        else:
            session.start(self.agent.modules(), self.agent.densities(), self.flops(), self.agent.controllers)
        if cfg.tensorboard:
            session.ctx.run_dir.open_tensorboard(fresh=checkpoint is None)
        self.clock = Clock(self.state)
        next_checkpoint = self.next_checkpoint(self.state.step)
        with session.attempt(done=self.state.step):
            for step in range(self.state.step + 1, cfg.steps + 1):
                episode_ended = self.act(step)
                if cfg.dynamic_buffer and step % cfg.buffer_check_every == 0:
                    self.state.distance = self.capacity.apply(self.buffer, self.agent.policy_distance)
                if step > cfg.warmup_steps:
                    self.learn(step)
                if step % cfg.log_every == 0:
                    self.log(step)
                session.step(step, self.agent)
                if episode_ended and step >= next_checkpoint and step < cfg.steps:
                    self.checkpoint(step)
                    next_checkpoint = self.next_checkpoint(step)
        return session.finish(self.agent.state_dict(), RunResult(
            steps=cfg.steps, iterations=self.agent.iterations, wall_seconds=self.clock.wall_seconds(),
            steps_per_second=self.rate(), final_buffer_size=len(self.buffer), final_densities=self.agent.densities(),
            flops=self.flops(), resumes=self.state.resumes))

    def flops(self) -> dict[str, Any]:
        """The run's FLOPs and size by the method's accounting, at the agent's current masks."""
        return self.session.flops(self.method.training_cost(self.cfg, self.agent))

    def next_checkpoint(self, step: int) -> int:
        """The step after which the first episode end takes the next checkpoint."""
        return (step // self.cfg.checkpoint_every + 1) * self.cfg.checkpoint_every

    def act(self, step: int) -> bool:
        """Environment step ``step``: a uniform random action during warm-up, then the agent's exploration policy;
        the transition (with the deterministic behaviour action) is stored. Returns whether an episode ended."""
        cfg, state, env = self.cfg, self.state, self.session.env
        if step <= cfg.warmup_steps:
            action = self.rngs.act.uniform(-1.0, 1.0, self.session.act_dim).astype(np.float32)
            behaviour = action
        else:
            action, behaviour = self.agent.explore(self.obs, self.rngs.act)
        next_obs, reward, terminated, truncated, _ = env.step(self.session.scale(action))
        self.buffer.add(self.obs, action, behaviour, reward, next_obs, terminated, truncated)
        state.episode_return += float(reward)
        self.obs = next_obs
        if not (terminated or truncated):
            return False
        state.episode_returns.append(state.episode_return)
        state.episodes += 1
        state.episode_return = 0.0
        self.env_state_before_reset = copy.deepcopy(self.env_rng.bit_generator.state)
        self.obs, _ = env.reset()
        return True

    def learn(self, step: int) -> None:
        """One training iteration on a sampled batch (n-step once ``nstep_delay`` iterations have passed); the
        controllers' topology events are recorded."""
        cfg, agent = self.cfg, self.agent
        self.clock.learning()
        stats = agent.update(self.buffer.sample(cfg.batch_size, cfg.n_at(step - cfg.warmup_steps), cfg.gamma))
        for key, value in stats.items():
            self.state.window.setdefault(key, []).append(value)
        if any(ctrl.events for ctrl in agent.controllers.values()):
            self.session.recorder.topology_events(agent.controllers, step)

    def log(self, step: int) -> None:
        """One row of training diagnostics: the window's mean losses and the loop's state at ``step``."""
        cfg, state = self.cfg, self.state
        row = {key: float(np.mean(values)) for key, values in state.window.items()}
        self.session.recorder.diagnostics({
            **row, "step": step, "iterations": self.agent.iterations, "buffer_size": len(self.buffer),
            "n_step": cfg.n_at(step - cfg.warmup_steps), "policy_distance": state.distance, "episodes": state.episodes,
            "train_return": float(np.mean(state.episode_returns)) if state.episode_returns else None,
            "steps_per_second": self.rate(),
        })
        state.window.clear()
        state.episode_returns.clear()

    def rate(self) -> float | None:
        """Training iterations per second of learning so far."""
        seconds = self.clock.learning_seconds()
        return self.agent.iterations / seconds if seconds > 0 else None

    def checkpoint(self, step: int) -> None:
        """Save everything the loop depends on, taken at an episode end after step ``step``."""
        self.state.step = step
        self.clock.bank()
        self.session.ctx.run_dir.save_checkpoint({
            "agent": self.agent.training_state(), "replay": self.buffer.state_dict(),
            "loop": {**asdict(self.state), "evaluations": list(self.session.evaluations)},
            "rng": {**self.rngs.state(), "env_before_reset": self.env_state_before_reset},
        })

    def restore(self, checkpoint: dict) -> None:
        """Put a checkpoint's state back (the run directory's logs are cut back to its step)."""
        self.agent.load_training_state(checkpoint["agent"])
        self.buffer.load_state_dict(checkpoint["replay"])
        self.rngs.restore(checkpoint["rng"])
        self.env_rng.bit_generator.state = checkpoint["rng"]["env_before_reset"]
        loop = dict(checkpoint["loop"])
        self.session.recorder.evaluations = list(loop.pop("evaluations"))
        self.state = LoopState(**loop)
        self.state.resumes.append({"step": self.state.step, "git_commit": git_commit()})
        print(f"{run_id(self.cfg)}: resuming from step {self.state.step:,} of {self.cfg.steps:,}", file=sys.stderr,
              flush=True)
        self.session.ctx.run_dir.resume(self.state.step)
        self.obs, _ = self.session.env.reset()  # the very reset the checkpoint was taken after
