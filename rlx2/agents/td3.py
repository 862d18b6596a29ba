"""TD3 (Fujimoto et al. 2018) with sparse networks and n-step targets.

Target: ``y = sum_k gamma^k r_{t+k} + gamma^m * min(Q1', Q2')(s_{t+m}, a')`` where ``a'`` is
the target actor's action with clipped Gaussian smoothing noise; the discount factor is 0
when the sample ended at a terminal. The actor, its target and the critic target are
updated every ``policy_delay`` critic updates; the actor maximises Q1.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from rlx2.agents.base import Agent, clear_grads
from rlx2.agents.kernel_update import TD3KernelUpdate
from rlx2.agents.networks import DeterministicActor, SoftUpdate, TwinQ, initialise
from rlx2.replay import NStepBatch
from rlx2.sparse.flops import NetworkCosts, multiples


class TD3(Agent):
    def __init__(self, cfg, method, obs_dim, act_dim, generator) -> None:
        super().__init__(cfg, method, obs_dim, act_dim, generator)
        actor_hidden = method.hidden_sizes(cfg, "actor", obs_dim, act_dim)
        critic_hidden = method.hidden_sizes(cfg, "critic", obs_dim + act_dim, 1)
        self.actor = DeterministicActor(obs_dim, act_dim, actor_hidden)
        self.critic = TwinQ(obs_dim, act_dim, critic_hidden)
        initialise(self.actor, generator)
        initialise(self.critic, generator)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr, fused=True)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr, fused=True)
        every = self.update_every(cfg)
        self.controllers = {
            "actor": self.masked("actor", self.actor, self.actor_opt, every["actor"], generator),
            "critic": self.masked("critic", self.critic, self.critic_opt, every["critic"], generator),
        }
        self.actor_target = copy.deepcopy(self.actor)
        self.critic_target = copy.deepcopy(self.critic)
        self.controllers["actor"].bind_target(self.actor_target)
        self.controllers["critic"].bind_target(self.critic_target)
        self._soft_actor = SoftUpdate(self.actor_target, self.actor, cfg.tau)
        self._soft_critic = SoftUpdate(self.critic_target, self.critic, cfg.tau)
        self._kernels = TD3KernelUpdate(self)

    @staticmethod
    def update_every(cfg):
        return {"actor": cfg.policy_delay, "critic": 1}  # the actor counts its own, delayed steps

    @staticmethod
    def actor_outputs(act_dim: int) -> int:
        return act_dim

    @staticmethod
    def trained_weights(costs: NetworkCosts) -> float:
        """Actor, target actor, critic and target critic."""
        return 2 * costs.actor + 2 * costs.critic

    @staticmethod
    def update_flops(cfg, costs: NetworkCosts, first: int, last: int) -> float:
        """FLOPs of ``update`` over iterations ``first..last`` (rules in ``rlx2.sparse.flops``): every iteration
        the target actor and critic forward and the critic forward/backward, ``B (F_A + F_C) + 3 B F_C``; every
        ``policy_delay`` iterations the actor loss through Q1, forward and backward, ``3 B (F_A + F_Q1)``."""
        b = cfg.batch_size
        critic = (last - first + 1) * b * (costs.actor + 4 * costs.critic)
        return critic + multiples(first, last, cfg.policy_delay) * 3 * b * (costs.actor + costs.q1)

    def optimizers(self):
        return {"actor": self.actor_opt, "critic": self.critic_opt}

    def modules(self):
        return {"actor": self.actor, "critic": self.critic, "actor_target": self.actor_target,
                "critic_target": self.critic_target}

    def explore(self, obs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        behaviour = self.deterministic_action(obs)
        noise = rng.normal(0.0, self.cfg.exploration_noise, size=behaviour.shape)
        return np.clip(behaviour + noise, -1.0, 1.0).astype(np.float32), behaviour

    @torch.no_grad()
    def td_target(self, batch: NStepBatch) -> torch.Tensor:
        """On the compiled kernels where the target networks run there (``rlx2.agents.kernel_update``,
        bit-identical), else through the modules."""
        target = self._kernels.target(batch)
        if target is not None:
            return target
        cfg = self.cfg
        noise = torch.randn(batch.act.shape, generator=self.generator)
        noise = (noise * cfg.target_noise).clamp_(-cfg.target_noise_clip, cfg.target_noise_clip)
        next_act = (self.actor_target(batch.bootstrap_obs) + noise).clamp_(-1.0, 1.0)
        q1, q2 = self.critic_target(batch.bootstrap_obs, next_act)
        return batch.returns + batch.discount * torch.minimum(q1, q2)

    def update(self, batch: NStepBatch) -> dict[str, float]:
        """One critic step, and every ``policy_delay`` iterations one actor step and the soft updates.

        Each loss's forward and backward runs without autograd where the compiled kernels take
        it (``rlx2.agents.kernel_update``, bit-identical), else through autograd.
        """
        stats = {"critic_loss": self.critic_step(batch)}
        if self.iterations % self.cfg.policy_delay == 0:
            clear_grads(self.actor_opt)
            actor_loss = self._kernels.actor_loss(batch)
            if actor_loss is None:
                with self.through_critic():
                    loss = -self.critic.first(batch.obs, self.actor(batch.obs)).mean()
                    loss.backward()
                actor_loss = loss.item()
            self.laps.lap("actor forward + backward")
            self.controllers["actor"].step()
            self._soft_critic()
            self._soft_actor()
            self.controllers["critic"].sync_targets()
            self.controllers["actor"].sync_targets()
            stats["actor_loss"] = actor_loss
            self.laps.lap("actor step, soft updates")
        return stats
