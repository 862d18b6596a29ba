"""Evaluating a policy, and loading a finished run's agent to evaluate, render or record it.

``evaluate`` is the one evaluation protocol of the suite (deterministic actions, the
environment reset with one seed before the first episode, so every evaluation of a run
starts from the same states). ``load_agent`` rebuilds a run's agent from its directory
alone: its own resolved config (``config.json``) and final weights and masks
(``model.pt``, loaded with ``weights_only=True``).
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from rlx2.config import ConfigError, RunConfig
from rlx2.envs import ActionScaler
from rlx2.records import RunDirectory

#: The evaluation environment of a run with seed ``s`` is reset with ``s + EVAL_SEED_OFFSET``.
EVAL_SEED_OFFSET = 100


class Policy(Protocol):
    """What ``evaluate`` acts with: the deterministic action in [-1, 1] for one observation.

    An agent is one; so are ``ActorPolicy`` (an actor network alone: distillation's student)
    and stable-baselines3's model in the ``sb3`` method's wrapper.
    """

    def deterministic_action(self, obs: np.ndarray) -> np.ndarray: ...


class ActorPolicy:
    """An actor network (observations -> actions in [-1, 1]) as a ``Policy``."""

    def __init__(self, actor: torch.nn.Module) -> None:
        self.actor = actor

    @torch.no_grad()
    def deterministic_action(self, obs: np.ndarray) -> np.ndarray:
        return self.actor(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)).squeeze(0).numpy()


@torch.no_grad()
def evaluate(policy: Policy, env, scale: Callable[[np.ndarray], np.ndarray], episodes: int, seed: int) -> list[float]:
    """Returns of ``episodes`` deterministic episodes; the env is reset with ``seed`` first."""
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed) if episode == 0 else env.reset()
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(scale(policy.deterministic_action(obs)))
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
        cfg = RunConfig.from_dict(meta["config"])
        obs_dim, act_dim = meta["env"]["obs_dim"], meta["env"]["act_dim"]
        for name, value in (("obs_dim", obs_dim), ("act_dim", act_dim)):
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 100_000:
                raise ValueError(f"env.{name}={value!r}: not a size")
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError("run_dir", str(run_dir), f"not a run directory with a readable config.json ({exc})") from None
    return cfg, obs_dim, act_dim


def load_agent(run_dir: str | Path):
    """The trained agent of a finished run, ready to act (``agent.deterministic_action(obs)``).

    Its config is ``agent.cfg``. A distilled run's agent acts with its sparse student actor.
    A method defined in a user's module must be registered first (``rlx2.methods.load_module``).
    """
    from rlx2.agents import make_agent
    from rlx2.methods import get_method

    run_dir = Path(run_dir)
    cfg, obs_dim, act_dim = run_settings(run_dir)
    model = RunDirectory(run_dir).model_file
    if not model.is_file():
        raise ConfigError("run_dir", str(run_dir), "has no model.pt (unfinished, or a method that keeps none)")
    method = get_method(cfg.method)()
    try:
        agent = make_agent(cfg.algo, cfg=cfg, method=method, obs_dim=obs_dim, act_dim=act_dim,
                           generator=torch.Generator().manual_seed(cfg.seed))
    except (TypeError, ValueError) as exc:
        raise ConfigError("run_dir", str(run_dir), f"config.json describes no agent that can be built ({exc})") from None
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles before refusing them
            warnings.simplefilter("ignore")
            state = torch.load(model, weights_only=True)
    except pickle.UnpicklingError:
        raise ConfigError("run_dir", str(run_dir), f"{model} holds more than weights and masks (refused: loading "
                                                   "it could run code)") from None
    except Exception as exc:  # noqa: BLE001 - truncated, not a zip, not a torch file: all unreadable
        raise ConfigError("run_dir", str(run_dir), f"{model} cannot be read ({_first_line(exc)})") from None
    try:
        if isinstance(state, dict) and "student_actor" in state:  # distillation keeps only its student
            agent.actor.load_state_dict(state["student_actor"])
            for ctrl in agent.controllers.values():
                ctrl.refresh()
        else:
            agent.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError("run_dir", str(run_dir), f"{model} does not fit the agent its config.json describes "
                                                   f"({_first_line(exc)})") from None
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


def _first_line(exc: BaseException) -> str:
    """An exception's message on one line, cut to a readable length (torch's run over many lines)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


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
        check_video_directory(Path(video), f"{cfg.method}-seed-{cfg.seed}", episodes)
        os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering
    render_mode = "human" if render else "rgb_array" if video is not None else None
    env = make_env(cfg.env, render_mode=render_mode)
    scale = agent.scale if policy is not None else ActionScaler(env.action_space)
    if video is not None:  # no file it would write exists (checked): its "overwriting" warning says nothing
        warnings.filterwarnings("ignore", message=".*Overwriting existing videos")
        env = gym.wrappers.RecordVideo(env, str(video), episode_trigger=lambda _: True, disable_logger=True,
                                       name_prefix=f"{cfg.method}-seed-{cfg.seed}")
    try:
        returns = evaluate(agent, env, scale, episodes, seed)
    finally:
        env.close()
    got = {"run_dir": str(run_dir), "episodes": episodes, "seed": seed, "mean_return": float(np.mean(returns)),
           "std_return": float(np.std(returns)), "returns": returns}
    return got if policy is None else {**got, "policy": str(policy)}


def check_video_directory(video: Path, prefix: str, episodes: int) -> None:
    """Videos go to a directory, and never over a file already there (gymnasium's recorder would replace it)."""
    from rlx2.records import writable_directory

    if not str(video).strip():
        raise ConfigError("video", str(video), "is empty: name a directory")
    if video.exists() and not video.is_dir():
        raise ConfigError("video", str(video), "is a file, not a directory")
    problem = writable_directory(video)
    if problem:
        raise ConfigError("video", str(video), problem)
    taken = [video / f"{prefix}-episode-{k}.mp4" for k in range(episodes) if (video / f"{prefix}-episode-{k}.mp4").exists()]
    if taken:
        raise ConfigError("video", str(video), f"already holds {taken[0]}; choose another directory")
