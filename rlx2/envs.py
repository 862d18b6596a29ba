"""Creating and checking gymnasium tasks, and mapping normalised actions to their bounds."""

from __future__ import annotations

import sys

import gymnasium as gym
import numpy as np

from rlx2.config import ConfigError


#: MuJoCo warnings about the task files gymnasium ships (not about anything a user can change), dropped at the
#: source: HalfCheetah's model sets ``settotalmass``, which MuJoCo 3.3+ calls deprecated on every load.
KNOWN_MUJOCO_NOISE = ("compiler attribute 'settotalmass' is deprecated",)


def quiet_known_mujoco_noise() -> None:
    """Route MuJoCo's warnings through a handler that drops ``KNOWN_MUJOCO_NOISE`` and prints the rest on stderr
    (MuJoCo's own handler prints every one and appends it to ``MUJOCO_LOG.TXT`` in the working directory).
    A handler someone else installed is left alone."""
    try:
        import mujoco
    except ImportError:
        return
    if mujoco.get_mju_user_warning() is not None:
        return

    def warn(message: str) -> None:
        if not message.startswith(KNOWN_MUJOCO_NOISE):
            print(f"MuJoCo warning: {message}", file=sys.stderr)

    mujoco.set_mju_user_warning(warn)


def make_env(env_id: str, render_mode: str | None = None) -> gym.Env:
    """Make ``env_id`` and check it is a continuous-control task rlx2 can train on."""
    quiet_known_mujoco_noise()
    if env_id not in gym.registry:
        raise ConfigError("env", env_id, "not a registered gymnasium task id")
    try:
        env = gym.make(env_id, render_mode=render_mode)
    except Exception as exc:  # noqa: BLE001 - a registered task whose own dependencies are missing, ...
        raise ConfigError("env", env_id, f"cannot be made: {type(exc).__name__}: {exc}") from None
    action_space, obs_space = env.action_space, env.observation_space
    if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
        env.close()
        raise ConfigError("env", env_id, f"needs a 1-D continuous (Box) action space, has {action_space}")
    if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
        env.close()
        raise ConfigError("env", env_id, "action bounds must be finite")
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        env.close()
        raise ConfigError("env", env_id, f"needs a 1-D Box observation space, has {obs_space}")
    return env


class ActionScaler:
    """Maps agent actions in [-1, 1] to the environment's ``[low, high]`` box."""

    def __init__(self, space: gym.spaces.Box) -> None:
        self.low = space.low.astype(np.float64)
        self.half_range = (space.high.astype(np.float64) - self.low) / 2.0

    def __call__(self, action: np.ndarray) -> np.ndarray:
        return self.low + (np.asarray(action, np.float64) + 1.0) * self.half_range
