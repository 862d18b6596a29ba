"""Mapping the agent's [-1, 1] actions onto a task's bounds, asymmetric ones included."""

import gymnasium as gym
import numpy as np

from rlx2.envs import ActionScaler


def test_action_scaler_maps_the_unit_box_onto_any_bounds():
    scale = ActionScaler(gym.spaces.Box(low=np.array([0.0, -1.0]), high=np.array([2.0, 3.0])))
    assert scale(np.array([-1.0, -1.0])).tolist() == [0.0, -1.0]
    assert scale(np.array([1.0, 1.0])).tolist() == [2.0, 3.0]
    assert scale(np.array([0.0, 0.0])).tolist() == [1.0, 1.0]
