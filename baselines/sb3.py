"""stable-baselines3's own TD3 / SAC: the external check that our dense agent is sound.

Not a sparse method: the same dense agent as ``dense``, trained by another well-kept
implementation with this run's hyperparameters (warm-up, batch, learning rate, discount,
tau, policy delay, exploration and target noises, hidden widths, replay capacity), and
evaluated with the suite's protocol (deterministic policy, ``eval_episodes`` episodes every
``eval_every`` steps, evaluation env reset with ``seed + 100``), so that its scores sit
beside ``dense`` in a report. Needs the optional extra ``rlx2[bench]``.

Differences that remain are stable-baselines3's own: SAC's log-std is clamped to
[-20, 2] and it acts with sampled actions; evaluation happens inside its step callback,
i.e. before that step's gradient update (ours: after). Runs are not checkpointed: a
killed one starts again from scratch.
"""

from __future__ import annotations

import importlib.util
import time

import numpy as np

from rlx2.config import ConfigError
from rlx2.methods import Method, register


def _sb3():
    try:
        import stable_baselines3
    except ImportError:
        raise ConfigError("method", "sb3", "needs stable-baselines3 (pip install 'rlx2[bench]')") from None
    return stable_baselines3


class _Policy:
    """stable-baselines3's model as an ``rlx2.evaluation.Policy``: its deterministic action in [-1, 1]."""

    def __init__(self, model) -> None:
        self.model = model

    def deterministic_action(self, obs: np.ndarray) -> np.ndarray:
        action, _ = self.model.predict(obs, deterministic=True)
        return self.model.policy.scale_action(action)


@register
class StableBaselines3(Method):
    name = "sb3"
    description = "stable-baselines3's own dense TD3/SAC with the same hyperparameters (external reference for dense)"

    def check_can_train(self, cfg):
        if importlib.util.find_spec("stable_baselines3") is None:  # before anything is written; not importing it here
            _sb3()

    def resolve(self, cfg):
        # stable-baselines3's TD3/SAC cannot honour these: refuse them by name rather than record them unused
        if cfg.n_step not in (None, 1):
            raise ConfigError("n_step", cfg.n_step, "the sb3 method cannot honour it (stable-baselines3 uses 1-step "
                                                    "TD targets); leave it out")
        if cfg.dynamic_buffer:
            raise ConfigError("dynamic_buffer", cfg.dynamic_buffer, "the sb3 method cannot honour it "
                                                                    "(stable-baselines3's replay buffer has a fixed "
                                                                    "capacity); leave it out")
        return super().resolve(cfg)

    def model(self, cfg, env):
        """The stable-baselines3 agent for ``cfg`` on ``env``."""
        sb3 = _sb3()
        from stable_baselines3.common.noise import NormalActionNoise

        common = dict(learning_rate=cfg.lr, buffer_size=min(cfg.buffer_max, cfg.steps),  # never holds more
                      learning_starts=cfg.warmup_steps,
                      batch_size=cfg.batch_size, tau=cfg.tau, gamma=cfg.gamma, train_freq=1, gradient_steps=1,
                      policy_kwargs={"net_arch": list(cfg.hidden_sizes)}, seed=cfg.seed, device="cpu", verbose=0)
        if cfg.algo == "td3":
            act_dim = env.action_space.shape[0]
            noise = NormalActionNoise(np.zeros(act_dim), cfg.exploration_noise * np.ones(act_dim))
            return sb3.TD3("MlpPolicy", env, action_noise=noise, policy_delay=cfg.policy_delay,
                           target_policy_noise=cfg.target_noise, target_noise_clip=cfg.target_noise_clip, **common)
        return sb3.SAC("MlpPolicy", env, ent_coef="auto", **common)

    def run(self, ctx):
        """stable-baselines3's ``learn``, recorded through the suite's recorder and evaluation protocol."""
        from stable_baselines3.common.callbacks import BaseCallback

        from rlx2.agents import AGENTS  # here, not at the top: resolving an sb3 config (a report does) needs no torch
        from rlx2.procedure import RunResult, Session
        from rlx2.sparse.flops import NetworkCosts, TrainingCost, dense_run_flops

        cfg, session = ctx.cfg, Session(ctx)
        model = self.model(cfg, session.env)
        agent = AGENTS[cfg.algo]  # the same dense agent, in our accounting
        costs = NetworkCosts.dense(agent, session.obs_dim, session.act_dim, cfg.hidden_sizes)
        flops = session.flops(TrainingCost(agent, costs, dense_run_flops(cfg, agent, costs), {"actor": 0, "critic": 0}))
        session.start({"actor": model.policy.actor, "critic": model.policy.critic}, {}, flops,
                      versions={"stable_baselines3": _sb3().__version__})
        started = time.perf_counter()
        learning_since: list[float] = []

        class Record(BaseCallback):
            def _on_step(self) -> bool:
                step = self.num_timesteps
                if step == cfg.warmup_steps + 1:
                    learning_since.append(time.perf_counter())
                if step % cfg.log_every == 0 and learning_since:
                    seconds = time.perf_counter() - learning_since[0]
                    iterations = max(0, step - cfg.warmup_steps - 1)
                    session.recorder.diagnostics({"step": step, "iterations": iterations,
                                                  "steps_per_second": iterations / seconds if seconds > 0 else None})
                session.step(step, _Policy(self.model))
                return True

        with session.attempt():
            model.learn(total_timesteps=cfg.steps, callback=Record(), progress_bar=False)
        learning = time.perf_counter() - learning_since[0] if learning_since else 0.0
        return session.finish(None, RunResult(
            steps=cfg.steps, iterations=cfg.training_iterations, wall_seconds=time.perf_counter() - started,
            steps_per_second=cfg.training_iterations / learning if learning > 0 else None,
            final_buffer_size=int(model.replay_buffer.size()), final_densities={}, flops=flops))
