"""``RunConfig``: every setting of one training run, with the spec's defaults.

One dataclass is the single source of truth: the ``rlx2 run`` flags are generated from its
fields (``warmup_steps`` -> ``--warmup-steps``) and their ``help`` metadata, and the resolved
copy is saved with every run. Fields left at ``None`` are chosen by the method (``n_step``,
``dynamic_buffer``) or the algorithm (buffer bounds) in ``resolve``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rlx2.sparse.backend import BACKENDS, CSR_MAX_DENSITY

ALGOS = ("td3", "sac")
#: Replay capacity bounds (min, max) per algorithm, spec section 6.
BUFFER_BOUNDS = {"td3": (100_000, 1_000_000), "sac": (200_000, 3_000_000)}


class ConfigError(ValueError):
    """A setting has a bad value; the message names the setting and the value."""

    def __init__(self, name: str, value: Any, expected: str) -> None:
        self.name, self.value = name, value
        super().__init__(f"{name.replace('_', '-')}={value!r}: {expected}")


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class RunConfig:
    """One run: algorithm x task x method x seed, and every hyperparameter (spec sections 2-7)."""

    algo: str = _f("td3", "agent: td3 or sac")
    env: str = _f("Hopper-v5", "any gymnasium task id with a continuous (Box) action space")
    method: str = _f("rlx2", "registered method name (see `rlx2 methods`)")
    seed: int = _f(0, "seed of this run's generators, environment and initial masks")
    steps: int = _f(3_000_000, "environment steps in total, warm-up included")
    actor_sparsity: float = _f(0.9, "fraction of the actor's weights that are zero, in [0, 1)")
    critic_sparsity: float = _f(0.85, "fraction of the critic's weights (both Q nets) that are zero, in [0, 1)")
    sparsity_distribution: str = _f("er", "how a network's sparsity is split over layers: er or uniform")
    hidden_sizes: tuple[int, ...] = _f((256, 256), "hidden widths of every network")
    warmup_steps: int = _f(25_000, "random-action steps before learning starts")
    batch_size: int = _f(256, "minibatch size")
    gamma: float = _f(0.99, "discount factor")
    tau: float = _f(0.005, "Polyak rate of target networks")
    lr: float = _f(3e-4, "Adam learning rate of every network (and SAC's temperature)")
    exploration_noise: float = _f(0.1, "TD3: std of Gaussian action noise, as a fraction of the action range")
    target_noise: float = _f(0.2, "TD3: std of target policy smoothing noise")
    target_noise_clip: float = _f(0.5, "TD3: clip of target policy smoothing noise")
    policy_delay: int = _f(2, "TD3: critic updates per actor and target update")
    delta: int = _f(10_000, "optimiser steps of a network between topology updates")
    zeta: float = _f(0.5, "initial fraction of active weights replaced per topology update")
    t_end: int | None = _f(None, "last training iteration with topology updates (default: steps - warmup)")
    n_step: int | None = _f(None, "n of the multi-step TD target (default: the method's)")
    nstep_delay: int = _f(300_000, "training iterations with 1-step targets before n-step ones")
    dynamic_buffer: bool | None = _f(None, "shrink the replay buffer when it is too off-policy (default: the method's)")
    buffer_max: int | None = _f(None, "replay capacity (upper bound); default td3 1e6, sac 3e6")
    buffer_min: int | None = _f(None, "the dynamic buffer never shrinks below this; default td3 1e5, sac 2e5")
    buffer_threshold: float = _f(0.2, "policy distance above which the dynamic buffer shrinks")
    buffer_check_every: int = _f(10_000, "environment steps between dynamic-buffer checks")
    buffer_rule: str = _f("reference", "reference: drop oldest 10%; paper: pop until the distance is below threshold")
    policy_distance: str = _f("reference", "reference: mean squared action gap / 2; paper: mean L2 norm (Eq. 6)")
    eval_every: int = _f(5_000, "environment steps between evaluations")
    eval_episodes: int = _f(10, "episodes per evaluation (deterministic policy, env seeded seed+100)")
    final_window: int = _f(30, "final score = mean of the last K evaluations")
    log_every: int = _f(1_000, "environment steps between rows of training diagnostics")
    checkpoint_every: int = _f(50_000, "environment steps between checkpoints (each taken at the next episode end)")
    torch_threads: int = _f(1, "torch intra-op threads for this run")
    sparse_backend: str = _f("auto", f"how masked layers compute: auto (CSR kernels for layers of density <= {CSR_MAX_DENSITY}), "
                                     "masked-dense (the reference) or csr; results agree within float tolerance")
    tensorboard: bool = _f(False, "also write diagnostics and evaluations as TensorBoard events in <run>/tensorboard")

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["hidden_sizes"] = list(self.hidden_sizes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(unknown[0], data[unknown[0]], "unknown setting")
        data = dict(data)
        if "hidden_sizes" in data:
            data["hidden_sizes"] = tuple(data["hidden_sizes"])
        return cls(**data)

    @classmethod
    def saved_matches(cls, saved: dict[str, Any], wanted: RunConfig) -> list[str]:
        """Settings where a saved config differs from ``wanted`` (settings added since count as defaults)."""
        try:
            restored = cls.from_dict(saved).to_dict()
        except (ConfigError, TypeError):
            return ["(unreadable config)"]
        target = wanted.to_dict()
        return sorted(k for k in target if restored.get(k) != target[k])

    @property
    def training_iterations(self) -> int:
        """Gradient steps of the run: one per environment step after warm-up."""
        return max(0, self.steps - self.warmup_steps)

    def validate(self) -> None:
        """Check every value that does not need the method registry or an environment."""
        if self.algo not in ALGOS:
            raise ConfigError("algo", self.algo, f"must be one of {', '.join(ALGOS)}")
        for name in ("actor_sparsity", "critic_sparsity"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(name, value, "must be in [0, 1)")
        if self.sparsity_distribution not in ("er", "uniform"):
            raise ConfigError("sparsity_distribution", self.sparsity_distribution, "must be er or uniform")
        positive = ("steps", "batch_size", "policy_delay", "delta", "eval_every", "eval_episodes",
                    "final_window", "log_every", "torch_threads", "buffer_check_every", "checkpoint_every")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(name, getattr(self, name), "must be a positive integer")
        if self.seed < 0:
            raise ConfigError("seed", self.seed, "must be >= 0")
        if self.warmup_steps < 0 or self.warmup_steps >= self.steps:
            raise ConfigError("warmup_steps", self.warmup_steps, f"must be in [0, steps={self.steps})")
        if not self.hidden_sizes or any(h <= 0 for h in self.hidden_sizes):
            raise ConfigError("hidden_sizes", self.hidden_sizes, "must be one or more positive widths")
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError("gamma", self.gamma, "must be in (0, 1]")
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError("tau", self.tau, "must be in (0, 1]")
        if self.lr <= 0:
            raise ConfigError("lr", self.lr, "must be positive")
        if not 0.0 <= self.zeta <= 1.0:
            raise ConfigError("zeta", self.zeta, "must be in [0, 1]")
        for name in ("exploration_noise", "target_noise", "target_noise_clip", "buffer_threshold", "nstep_delay"):
            if getattr(self, name) < 0:
                raise ConfigError(name, getattr(self, name), "must be >= 0")
        if self.t_end is not None and self.t_end <= 0:
            raise ConfigError("t_end", self.t_end, "must be positive")
        if self.n_step is not None and self.n_step < 1:
            raise ConfigError("n_step", self.n_step, "must be >= 1")
        if self.sparse_backend not in BACKENDS:
            raise ConfigError("sparse_backend", self.sparse_backend, f"must be one of {', '.join(BACKENDS)}")
        if self.buffer_rule not in ("reference", "paper"):
            raise ConfigError("buffer_rule", self.buffer_rule, "must be reference or paper")
        if self.policy_distance not in ("reference", "paper"):
            raise ConfigError("policy_distance", self.policy_distance, "must be reference or paper")
        for name in ("buffer_max", "buffer_min"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(name, value, "must be a positive integer")
        if self.buffer_max is not None and self.buffer_min is not None and self.buffer_min > self.buffer_max:
            raise ConfigError("buffer_min", self.buffer_min, f"must be <= buffer-max={self.buffer_max}")
        if self.tensorboard:
            try:
                import tensorboard  # noqa: F401
            except ImportError:
                raise ConfigError("tensorboard", True,
                                  "needs the tensorboard package (pip install 'rlx2[tensorboard]')") from None
        if self.buffer_max is not None and self.buffer_max < self.batch_size:
            raise ConfigError("buffer_max", self.buffer_max, f"must be >= batch-size={self.batch_size}")


def run_id(cfg: RunConfig) -> str:
    """Deterministic run id ``<algo>/<env>/<method>/seed-<k>``: reruns find finished work."""
    return f"{cfg.algo}/{cfg.env}/{cfg.method}/seed-{cfg.seed}"
