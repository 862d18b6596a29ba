"""Evaluating a policy, and loading a finished run's agent to evaluate, render or record it.

``evaluate`` is the one evaluation protocol of the suite (deterministic actions, the
environment reset with one seed before the first episode, so every evaluation of a run
starts from the same states). ``load_agent`` rebuilds a run's agent from its directory
alone: its own resolved config (``config.json``) and final weights and masks
(``model.pt``, loaded with ``weights_only=True``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rlx2.config import ConfigError, RunConfig
from rlx2.envs import ActionScaler
from rlx2.records import RunDirectory

#: The evaluation environment of a run with seed ``s`` is reset with ``s + EVAL_SEED_OFFSET``.
EVAL_SEED_OFFSET = 100


@torch.no_grad()
def evaluate(agent, env, scale: ActionScaler, episodes: int, seed: int) -> list[float]:
    """Returns of ``episodes`` deterministic episodes; the env is reset with ``seed`` first."""
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed) if episode == 0 else env.reset()
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(scale(agent.deterministic_action(obs)))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


def run_settings(run_dir: Path) -> tuple[RunConfig, int, int]:
    """``(config, obs_dim, act_dim)`` of a run directory, from its ``config.json``; ConfigError if it has none."""
    try:
        meta = RunDirectory(run_dir).saved_config()
        if meta is None:
            raise ValueError("missing or not JSON")
        return RunConfig.from_dict(meta["config"]), meta["env"]["obs_dim"], meta["env"]["act_dim"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError("run_dir", str(run_dir), f"not a run directory with a readable config.json ({exc})") from None


def load_agent(run_dir: str | Path):
    """The trained agent of a finished run, ready to act (``agent.deterministic_action(obs)``).

    Its config is ``agent.cfg``. A distilled run's agent acts with its sparse student actor.
    A method defined in a user's module must be registered first (``rlx2.methods.load_module``).
    """
    from rlx2.agents import make_agent
    from rlx2.methods import get_method

    run_dir = Path(run_dir)
    cfg, obs_dim, act_dim = run_settings(run_dir)
    model = run_dir / "model.pt"
    if not model.is_file():
        raise ConfigError("run_dir", str(run_dir), "has no model.pt (unfinished, or a method that keeps none)")
    method = get_method(cfg.method)()
    agent = make_agent(cfg.algo, cfg=cfg, method=method, obs_dim=obs_dim, act_dim=act_dim,
                       generator=torch.Generator().manual_seed(cfg.seed))
    try:
        state = torch.load(model, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated zip, bad pickle, ...: torch raises several kinds
        raise ConfigError("run_dir", str(run_dir), f"its model.pt cannot be read (truncated or corrupt: "
                                                   f"{type(exc).__name__})") from None
    if "student_actor" in state:  # distillation keeps only its student
        agent.actor.load_state_dict(state["student_actor"])
        for ctrl in agent.controllers.values():
            ctrl.refresh()
    else:
        agent.load_state_dict(state)
    return agent


class _Exported:
    """An exported policy (``rlx2.deploy``) in the agent's place: its actions are already environment actions."""

    def __init__(self, policy) -> None:
        self.deterministic_action = policy

    @staticmethod
    def scale(action: np.ndarray) -> np.ndarray:
        return action


def _exported(run_dir: Path, policy_file: str | Path) -> tuple[_Exported, RunConfig]:
    """The exported policy of ``policy_file`` and the run's config; PolicyFileError if it does not fit the run."""
    from rlx2.deploy import PolicyFileError, load_policy

    cfg, obs_dim, act_dim = run_settings(run_dir)
    policy = load_policy(policy_file)
    if (policy.obs_dim, policy.act_dim) != (obs_dim, act_dim):
        raise PolicyFileError(policy_file, f"maps {policy.obs_dim} observations to {policy.act_dim} actions; "
                                           f"the run's task {cfg.env} has {obs_dim} and {act_dim}")
    return _Exported(policy), cfg


def evaluate_run(run_dir: str | Path, episodes: int | None = None, seed: int | None = None,
                 video: str | Path | None = None, render: bool = False, policy: str | Path | None = None) -> dict:
    """Evaluate a finished run's agent as its own evaluations did (same episodes and seed unless given).

    ``video``: record every episode as MP4 into that directory (gymnasium's ``RecordVideo``,
    needs moviepy: ``rlx2[video]``); ``render``: show the episodes in a window. ``policy``: act
    with that file of ``rlx2 export`` (``.npz`` or ``.onnx``) instead of the run's agent, under
    the run's protocol (the run directory then needs only its ``config.json``).
    """
    import os

    import gymnasium as gym

    from rlx2.envs import make_env

    if policy is None:
        agent = load_agent(run_dir)
        cfg = agent.cfg
    else:
        agent, cfg = _exported(Path(run_dir), policy)
    episodes = cfg.eval_episodes if episodes is None else episodes
    seed = cfg.seed + EVAL_SEED_OFFSET if seed is None else seed
    if video is not None:
        try:
            import moviepy  # noqa: F401
        except ImportError:
            raise ConfigError("video", str(video), "needs moviepy (pip install 'rlx2[video]')") from None
        os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering
    render_mode = "human" if render else "rgb_array" if video is not None else None
    env = make_env(cfg.env, render_mode=render_mode)
    scale = agent.scale if policy is not None else ActionScaler(env.action_space)
    if video is not None:
        env = gym.wrappers.RecordVideo(env, str(video), episode_trigger=lambda _: True, disable_logger=True,
                                       name_prefix=f"{cfg.method}-seed-{cfg.seed}")
    try:
        returns = evaluate(agent, env, scale, episodes, seed)
    finally:
        env.close()
    got = {"run_dir": str(run_dir), "episodes": episodes, "seed": seed, "mean_return": float(np.mean(returns)),
           "std_return": float(np.std(returns)), "returns": returns}
    return got if policy is None else {**got, "policy": str(policy)}
