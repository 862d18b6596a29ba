"""What TD3 and SAC share: acting, the policy distance, checkpoints and controllers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from rlx2.agents.networks import frozen
from rlx2.replay import NStepBatch
from rlx2.sparse.controller import MaskController

if TYPE_CHECKING:
    from rlx2.agents.kernel_update import KernelUpdate
    from rlx2.config import RunConfig


class Laps:
    """Where an update's time goes: ``lap(piece)`` adds the time since the previous mark to ``piece``.

    Agents mark their pieces on ``Agent.laps``; ``NO_LAPS`` (the default) does nothing, so
    the marks cost a method call each. ``benchmarks/throughput.py`` installs a ``Laps``.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = 0.0

    def start(self) -> None:
        self._last = time.perf_counter()

    def lap(self, piece: str) -> None:
        now = time.perf_counter()
        self.seconds[piece] = self.seconds.get(piece, 0.0) + now - self._last
        self._last = now


class _NoLaps(Laps):
    def start(self) -> None:
        pass

    def lap(self, piece: str) -> None:
        pass


NO_LAPS = _NoLaps()


def clear_grads(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.zero_grad(set_to_none=True)`` without its profiler and hook machinery (about 50 us a call)."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            param.grad = None


class MethodHooks(Protocol):
    """What an agent asks of its training method (``rlx2.methods.Method`` provides it)."""

    def hidden_sizes(self, cfg: RunConfig, role: str, in_dim: int, out_dim: int) -> tuple[int, ...]: ...

    def install_masks(self, role: str, network: nn.Module, cfg: RunConfig, generator: torch.Generator) -> None: ...

    def make_controller(self, role: str, network: nn.Module, optimizer: torch.optim.Optimizer, cfg: RunConfig,
                        update_every: int, generator: torch.Generator) -> MaskController: ...


class Agent:
    """An off-policy actor-critic. Subclasses build networks and define ``td_target``/``update``."""

    actor: nn.Module
    critic: nn.Module
    critic_opt: torch.optim.Optimizer
    controllers: dict[str, MaskController]
    #: The losses without autograd where the compiled kernels take them (``rlx2.agents.kernel_update``).
    _kernels: KernelUpdate
    #: Timing marks between the pieces of ``update`` (a no-op unless a benchmark installs ``Laps``).
    laps: Laps = NO_LAPS

    def __init__(self, cfg: RunConfig, method: MethodHooks, obs_dim: int, act_dim: int,
                 generator: torch.Generator) -> None:
        self.cfg = cfg
        self.method = method
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.generator = generator
        self.iterations = 0  # training iterations (critic updates) so far

    def masked(self, role: str, network: nn.Module, optimizer: torch.optim.Optimizer, update_every: int,
               generator: torch.Generator) -> MaskController:
        """The method's masks on ``network`` (``install_masks``), then what manages them (``make_controller``).

        Each network's masks are drawn from ``generator`` right before its controller is made, actor first.
        """
        self.method.install_masks(role, network, self.cfg, generator)
        return self.method.make_controller(role, network, optimizer, self.cfg, update_every, generator)

    @staticmethod
    def update_every(cfg: RunConfig) -> dict[str, int]:
        """Training iterations per optimiser step of each network (TD3's actor: ``policy_delay``)."""
        return {"actor": 1, "critic": 1}

    # -- acting -----------------------------------------------------------------
    def deterministic_action(self, obs: np.ndarray) -> np.ndarray:
        """The policy's action in [-1, 1] without exploration (evaluation, behaviour action).

        One observation (every environment step, every evaluation step) takes the actor's
        path without autograd or module calls (``act``); a batch runs the network as usual.
        """
        if isinstance(obs, np.ndarray) and obs.ndim == 1:
            return self.actor.act(obs)
        with torch.no_grad():
            x = torch.as_tensor(obs, dtype=torch.float32)
            return self.actor(x.unsqueeze(0) if x.dim() == 1 else x).squeeze(0).numpy()

    def explore(self, obs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(action to take, deterministic behaviour action)`` for one training step."""
        raise NotImplementedError

    def policy_distance(self, obs: np.ndarray, behaviour_act: np.ndarray) -> float:
        """How far the current deterministic policy is from the stored behaviour actions.

        reference: ``mean((pi(s) - a)^2) / 2`` over all action entries (normalised actions);
        paper (Eq. 6): mean over states of ``||pi(s) - a||_2``.
        """
        gap = self.deterministic_action(obs) - behaviour_act
        if self.cfg.policy_distance == "paper":
            return float(np.linalg.norm(gap, axis=-1).mean())
        return float((gap**2).mean() / 2.0)

    # -- learning ---------------------------------------------------------------
    def td_target(self, batch: NStepBatch) -> torch.Tensor:
        raise NotImplementedError

    def update(self, batch: NStepBatch) -> dict[str, float]:
        raise NotImplementedError

    def critic_step(self, batch: NStepBatch) -> float:
        """The critic's half of an update, TD3's and SAC's alike: the TD target, both Q heads' mean
        squared error against it, the backward, the controller's optimiser step; the loss.

        The loss and its gradients run without autograd where the compiled kernels take the
        critic (``self._kernels``, ``rlx2.agents.kernel_update``, bit-identical), else through autograd.
        """
        laps = self.laps
        laps.start()
        target = self.td_target(batch)
        laps.lap("target")
        clear_grads(self.critic_opt)
        critic_loss = self._kernels.critic_loss(batch, target)
        if critic_loss is None:
            q1, q2 = self.critic(batch.obs, batch.act)
            loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
            laps.lap("critic forward + loss")
            loss.backward()
            critic_loss = loss.item()
        laps.lap("critic backward")
        self.controllers["critic"].step()
        self.iterations += 1
        laps.lap("critic step")
        return critic_loss

    @contextmanager
    def through_critic(self) -> Iterator[None]:
        """Where a loss (the actor's) is backpropagated *through* the critic.

        The critic's own weight gradients from it are normally not computed (``frozen``): the
        next critic update would discard them. Under ``critic_grow_gradient="reference"``, when
        the critic's next optimiser step is a topology update, they are computed and carried
        into that update's grow score, as the reference's gradient accumulation does.
        """
        critic = self.controllers["critic"]
        if self.cfg.critic_grow_gradient == "reference" and critic.update_due:
            # zero_grad(set_to_none=False) with new zero tensors: a gradient the kernel path stored is a buffer it
            # writes again on its next backward (``NetworkPattern.grad_buffers``), never to be accumulated into
            for group in self.critic_opt.param_groups:
                for param in group["params"]:
                    if param.grad is not None:
                        param.grad = torch.zeros_like(param.grad)
            yield
            critic.carry_grow_gradient()
        else:
            with frozen(self.critic):
                yield

    # -- state ------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        """Every network, target included, by name (what a checkpoint saves)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {name: module.state_dict() for name, module in self.modules().items()}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimiser by name (what a checkpoint saves besides the networks)."""
        raise NotImplementedError

    def training_state(self) -> dict[str, Any]:
        """Everything needed to continue training exactly: networks, masks, optimisers, counters."""
        return {
            "networks": self.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers().items()},
            "optimizer_steps": {role: ctrl.optimizer_steps for role, ctrl in self.controllers.items()},
            "carried_grow_gradients": {role: ctrl.carried for role, ctrl in self.controllers.items()},
            "iterations": self.iterations,
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state["networks"])
        for name, opt in self.optimizers().items():
            opt.load_state_dict(state["optimizers"][name])
        for role, ctrl in self.controllers.items():
            ctrl.optimizer_steps = state["optimizer_steps"][role]
            ctrl.carried = state["carried_grow_gradients"][role]
        self.iterations = state["iterations"]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved (weights, masks, SAC's temperature)."""
        for name, module in self.modules().items():
            module.load_state_dict(state[name])
        for ctrl in self.controllers.values():
            ctrl.refresh()
        if "log_alpha" in state and hasattr(self, "log_alpha"):
            self.log_alpha.data.copy_(state["log_alpha"])

    def densities(self) -> dict[str, dict[str, float]]:
        """Per-layer densities of each online network's sparse layers."""
        return {role: ctrl.densities() for role, ctrl in self.controllers.items()}
