"""SAC (Haarnoja et al. 2018) with sparse networks and n-step targets.

Target, for a sample of ``m`` steps from ``s_t``:
``y = sum_{k<m} gamma^k r_{t+k} - alpha * sum_{1<=k<m} gamma^k log pi(a_k | s_{t+k})
      + gamma^m * (min Q'(s_{t+m}, a') - alpha log pi(a' | s_{t+m}))``,
the last term dropped at a terminal. Actions ``a_k`` and ``a'`` are fresh samples of the
current policy. Actor and temperature (target entropy ``-act_dim``) update every step, the
target critic too; networks use orthogonal initialisation.

Reference behaviour, each with its variant (``RunConfig``): during training the agent acts
with the policy's mean action (``sac_explore="mean"``; ``"sample"``: a sample of the
policy); the actor's log-std is ``-5 + 3.5 (tanh(raw) + 1)`` (``sac_log_std="tanh"``;
``"clamp"``: raw clamped to [-5, 2]); the temperature loss is
``mean(alpha (-log pi - target_entropy))`` with the bracket detached
(``alpha_loss="reference"``; ``"log-alpha"``: ``mean(-log_alpha (log pi + target_entropy))``,
whose gradient w.r.t. ``log_alpha`` is the reference's divided by alpha).
"""

from __future__ import annotations

import copy

import numpy as np
import torch

import rlx2.sparse.kernels as kernels
from rlx2.agents.base import Agent, clear_grads
from rlx2.agents.kernel_update import SACKernelUpdate
from rlx2.agents.networks import GaussianActor, SoftUpdate, TwinQ, initialise
from rlx2.replay import NStepBatch
from rlx2.sparse.flops import NetworkCosts


class SAC(Agent):
    def __init__(self, cfg, method, obs_dim, act_dim, generator) -> None:
        super().__init__(cfg, method, obs_dim, act_dim, generator)
        actor_hidden = method.hidden_sizes(cfg, "actor", obs_dim, 2 * act_dim)
        critic_hidden = method.hidden_sizes(cfg, "critic", obs_dim + act_dim, 1)
        self.actor = GaussianActor(obs_dim, act_dim, actor_hidden, cfg.sac_log_std)
        self.critic = TwinQ(obs_dim, act_dim, critic_hidden)
        initialise(self.actor, generator, "orthogonal")
        initialise(self.critic, generator, "orthogonal")
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr, fused=True)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr, fused=True)
        self.log_alpha = torch.zeros((), requires_grad=True)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.lr)
        self.target_entropy = -float(act_dim)
        self.controllers = {
            "actor": self.masked("actor", self.actor, self.actor_opt, 1, generator),
            "critic": self.masked("critic", self.critic, self.critic_opt, 1, generator),
        }
        self.critic_target = copy.deepcopy(self.critic)
        self.controllers["critic"].bind_target(self.critic_target)
        self._soft_critic = SoftUpdate(self.critic_target, self.critic, cfg.tau)
        self._kernels = SACKernelUpdate(self)

    def optimizers(self):
        return {"actor": self.actor_opt, "critic": self.critic_opt, "alpha": self.alpha_opt}

    @staticmethod
    def actor_outputs(act_dim: int) -> int:
        return 2 * act_dim  # mean and log-std

    @staticmethod
    def trained_weights(costs: NetworkCosts) -> float:
        """Actor, critic and target critic (SAC keeps no target actor)."""
        return costs.actor + 2 * costs.critic

    @staticmethod
    def update_flops(cfg, costs: NetworkCosts, first: int, last: int) -> float:
        """FLOPs of ``update`` over iterations ``first..last`` (rules in ``rlx2.sparse.flops``): the policy on
        every next state of each sample's window, ``n_t B F_A``, the target critic ``B F_C``, the critic forward
        and backward ``3 B F_C``, and the actor loss through the critic ``3 B (F_A + F_C)``."""
        b, count = cfg.batch_size, last - first + 1
        nstep = cfg.nstep_iterations(first, last)
        policy_targets = b * costs.actor * ((count - nstep) + cfg.n_step * nstep)
        return policy_targets + count * 4 * b * costs.critic + count * 3 * b * (costs.actor + costs.critic)

    def modules(self):
        return {"actor": self.actor, "critic": self.critic, "critic_target": self.critic_target}

    def state_dict(self):
        state = super().state_dict()
        state["log_alpha"] = self.log_alpha.detach().clone()
        return state

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.detach().exp()

    def explore(self, obs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        behaviour = self.deterministic_action(obs)
        if self.cfg.sac_explore == "mean":
            return behaviour, behaviour
        with torch.no_grad():
            action, _ = self.actor.sample(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0), self.generator)
        return action.squeeze(0).numpy(), behaviour

    @torch.no_grad()
    def td_target(self, batch: NStepBatch) -> torch.Tensor:
        """On the compiled kernels where the actor and target critics run there (``rlx2.agents.kernel_update``,
        bit-identical), else through the modules."""
        target = self._kernels.target(batch)
        if target is not None:
            return target
        batch_size, n, obs_dim = batch.next_obs.shape
        alpha = self.alpha
        if n == 1:
            next_act, next_logp = self.actor.sample(batch.bootstrap_obs, self.generator)
            q1, q2 = self.critic_target(batch.bootstrap_obs, next_act)
            return batch.returns + batch.discount * (torch.minimum(q1, q2) - alpha * next_logp)
        # One actor pass over every next state: entries k < m-1 give the intermediate
        # entropy bonuses, entry m-1 (the bootstrap state) gives a' and its log-probability.
        acts, logps = self.actor.sample(batch.next_obs.reshape(-1, obs_dim), self.generator)
        acts, logps = acts.view(batch_size, n, -1), logps.view(batch_size, n)
        steps = batch.valid.sum(1).long()
        rows = torch.arange(batch_size)
        next_act, next_logp = acts[rows, steps - 1], logps[rows, steps - 1]
        gammas = self.cfg.gamma ** torch.arange(1, n, dtype=torch.float32)
        # s_{t+k} = next_obs[:, k-1] is part of the sample when step k is valid.
        bonus = -(alpha * gammas * batch.valid[:, 1:] * logps[:, :-1]).sum(1)
        q1, q2 = self.critic_target(batch.bootstrap_obs, next_act)
        return batch.returns + bonus + batch.discount * (torch.minimum(q1, q2) - alpha * next_logp)

    def temperature_loss(self, logp: torch.Tensor) -> torch.Tensor:
        """The loss ``log_alpha`` descends, by ``cfg.alpha_loss`` (module docstring)."""
        if self.cfg.alpha_loss == "reference":
            return (self.log_alpha.exp() * (-logp - self.target_entropy)).mean()
        return -(self.log_alpha * (logp + self.target_entropy)).mean()

    def temperature_gradient(self, logp: torch.Tensor) -> float:
        """``d temperature_loss / d log_alpha``, written out: ``alpha mean(-log pi - H)`` (reference) or
        ``-mean(log pi + H)`` (log-alpha)."""
        mean_logp = float(logp.mean())
        if self.cfg.alpha_loss == "reference":
            return float(self.alpha) * (-mean_logp - self.target_entropy)
        return -(mean_logp + self.target_entropy)

    def temperature_step(self, logp: torch.Tensor) -> None:
        """One optimiser step of ``log_alpha`` on ``temperature_loss``.

        With the actor on the compiled kernels, the gradient is ``temperature_gradient`` and
        the step the compiled Adam (``rlx2.sparse.kernels``): for one scalar, autograd and
        ``torch.optim.Adam``'s machinery cost more than the rest of this update's tail.
        """
        if self.actor.net.on_kernels() and type(self.alpha_opt) is torch.optim.Adam:
            grad = np.array([self.temperature_gradient(logp)], np.float32)
            kernels.adam_parameter(self.alpha_opt, self.log_alpha, grad)
            return
        alpha_loss = self.temperature_loss(logp)
        clear_grads(self.alpha_opt)
        alpha_loss.backward()
        self.alpha_opt.step()

    def update(self, batch: NStepBatch) -> dict[str, float]:
        """One critic step, one actor step, one temperature step and the critic's soft update.

        Each loss's forward and backward runs without autograd where the compiled kernels take
        it (``rlx2.agents.kernel_update``, bit-identical), else through autograd.
        """
        critic_loss = self.critic_step(batch)

        clear_grads(self.actor_opt)
        result = self._kernels.actor_loss(batch)
        if result is None:
            action, logp = self.actor.sample(batch.obs, self.generator)
            with self.through_critic():
                q1_pi, q2_pi = self.critic(batch.obs, action)
                loss = (self.alpha * logp - torch.minimum(q1_pi, q2_pi)).mean()
                loss.backward()
            result = loss.item(), logp.detach()
        actor_loss, logp = result
        self.laps.lap("actor forward + backward")
        self.controllers["actor"].step()

        self.temperature_step(logp)

        self._soft_critic()
        self.controllers["critic"].sync_targets()
        stats = {"critic_loss": critic_loss, "actor_loss": actor_loss, "alpha": float(self.alpha)}
        self.laps.lap("actor step, soft updates")  # SAC: with the temperature's step
        return stats
