"""``RunConfig``: every setting of one training run, with the spec's defaults.

One typed dataclass is the single source of truth: the ``rlx2 run`` flags are generated from
its fields (``warmup_steps`` -> ``--warmup-steps``) and their ``help`` metadata, suite files
and ``rlx2 run --config`` files are checked against the same types, and the resolved copy
is saved with every run. Types, finite numbers, ranges and sane upper bounds are declared
on the fields and enforced by pydantic, wherever a config comes from (a flag, a TOML file,
a saved ``config.json``), before anything is written; ``RunConfig.json_schema()`` (and
``rlx2 schema``) publishes them. Checks across fields, which need the budget resolved,
live in ``validate``. Every failure is a ``ConfigError``: one line ``field=value: reason``. Fields left at ``None`` are filled in when a run is resolved:
by the budget (``resolve_budget``, below), the method (``n_step``, ``dynamic_buffer``) or
the algorithm (buffer capacity).

**Budget scaling**, the one rule for ``rlx2 run`` and suites alike: a run of ``steps``
steps is a fraction ``r = steps / 3 000 000`` of the paper's budget. Every step-count
setting the paper gives for 3M steps (``BUDGET_SCALED``: warm-up 25 000, evaluation every
5 000, ``delta`` 10 000, n-step delay 300 000, buffer check every 10 000, checkpoint every
50 000, log every 1 000, and the dynamic buffer's minimum, the algorithm's lower bound)
that a run leaves unset becomes ``max(floor, round(value * r))``; ``t_end`` follows as
steps minus warm-up; the buffer capacity stays at the algorithm's (a short run keeps all
its data). The floors keep tiny budgets meaningful (warm-up and buffer minimum 1 000
steps, evaluation at most every 500 steps). The final score averages the last 5 % of a
run's evaluations, at least 3 (30 of 600 in the paper): ``final_window``, unless given.
Settings given explicitly (a flag, a suite file) are never scaled; ``config.json``
records which ones were (``scaled_to_budget``).
"""

import dataclasses
import math
from dataclasses import field
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

ALGOS = ("td3", "sac")
#: How masked layers compute (``rlx2.sparse.backend``): here, with the other settings' choices, so that reading
#: a config never imports torch.
BACKENDS = ("auto", "masked-dense", "csr")
#: ``auto`` computes a layer with CSR kernels at or below this density.
CSR_MAX_DENSITY = 0.25
#: The choices of the settings the sparse machinery and the agents implement, listed once: the settings' types
#: below and the modules that implement them (``rlx2.sparse``, ``rlx2.agents``) check against these.
DISTRIBUTIONS = ("er", "uniform")
MASK_INITS = ("magnitude", "random")
REGROWS = ("keep", "reset")
GROWN_ADAMS = ("keep", "zero")
SAC_LOG_STDS = ("tanh", "clamp")
#: Replay capacity bounds (min, max) per algorithm, spec section 6.
BUFFER_BOUNDS = {"td3": (100_000, 1_000_000), "sac": (200_000, 3_000_000)}
#: The paper's budget, environment steps per run (spec section 7).
PAPER_STEPS = 3_000_000
#: Step-count settings given for the paper's budget: ``setting: (value at 3M steps, floor)``.
BUDGET_SCALED = {
    "warmup_steps": (25_000, 1_000),
    "eval_every": (5_000, 500),
    "delta": (10_000, 100),
    "nstep_delay": (300_000, 0),
    "buffer_check_every": (10_000, 500),
    "checkpoint_every": (50_000, 1_000),
    "log_every": (1_000, 100),
}
#: The dynamic buffer's minimum never scales below this many transitions.
BUFFER_MIN_FLOOR = 1_000
#: The final score averages this fraction of a run's evaluations (30 of the paper's 600), at least FINAL_MIN.
FINAL_FRACTION, FINAL_MIN = 0.05, 3
#: Bootstrap replications of every interval of a report (``rlx2 report --reps``; ``rlx2.stats`` draws them).
DEFAULT_REPS = 2_000
#: Sane upper bounds: a setting beyond them is a typo, not an experiment.
MAX_STEPS = 100_000_000
MAX_SEED = 999_999_999
MAX_WIDTH = 16_384


def scaled_value(name: str, steps: int) -> int:
    """The budget-scaled value of step-count setting ``name`` for a run of ``steps`` steps."""
    paper, floor = BUDGET_SCALED[name]
    return max(floor, round(paper * steps / PAPER_STEPS))


def evaluation_due(step: int, last: int, every: int) -> bool:
    """The one evaluation cadence of every procedure: after every ``every``-th of steps ``1..last``, and the last."""
    return step % every == 0 or step == last


def evaluation_count(steps: int, eval_every: int) -> int:
    """How many evaluations a run makes (``evaluation_due``): every ``eval_every`` steps and at its last step."""
    return steps // eval_every + (1 if steps % eval_every else 0)


def final_window(evaluations: int) -> int:
    """Evaluations the final score averages: the last 5 % of ``evaluations``, at least 3 (all, if fewer)."""
    return min(evaluations, max(FINAL_MIN, round(FINAL_FRACTION * evaluations)))


class ConfigError(ValueError):
    """A setting has a bad value; the message names the setting and the value."""

    def __init__(self, name: str, value: Any, expected: str) -> None:
        self.name, self.value = name, value
        super().__init__(f"{name.replace('_', '-')}={value!r}: {expected}")


def _number(value: Any) -> Any:
    """Floats accept ints (``gamma = 1``) but not booleans or strings (``lr = "abc"``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a number")
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _int(**bounds: int) -> Any:
    """An integer (not a bool, not a float such as 64.5 or 500.0) within ``bounds``."""
    return Annotated[int, Strict(), Field(**bounds)]


def _float(**bounds: float) -> Any:
    """A finite number within ``bounds``."""
    return Annotated[float, Field(allow_inf_nan=False, **bounds), BeforeValidator(_number)]


Steps = _int(ge=1, le=MAX_STEPS)
Interval = _int(ge=1, le=MAX_STEPS)  # environment or optimiser steps between two events
#: A sparsity lies in [0, 1): at 1 a network would have no weight left. The one rule, for settings, suite files and
#: the density distributions.
SPARSITY_LOW, SPARSITY_BELOW = 0.0, 1.0
Fraction = _float(ge=SPARSITY_LOW, lt=SPARSITY_BELOW)


def is_sparsity(value: float) -> bool:
    """Whether ``value`` is a sparsity: in [0, 1) (``Fraction``'s range)."""
    return SPARSITY_LOW <= value < SPARSITY_BELOW
Flag = Annotated[bool, Strict()]


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, config=ConfigDict(extra="forbid", strict=False))
class RunConfig:
    """One run: algorithm x task x method x seed, and every hyperparameter (spec sections 2-7)."""

    algo: Literal[ALGOS] = _f("td3", "agent: td3 or sac")
    env: Annotated[str, Strict(), Field(min_length=1)] = _f("Hopper-v5", "any gymnasium task id with a continuous (Box) action space")
    method: Annotated[str, Strict(), Field(min_length=1)] = _f("rlx2", "registered method name (see `rlx2 methods`)")
    seed: _int(ge=0, le=MAX_SEED) = _f(0, "seed of this run's generators, environment and initial masks")
    steps: Steps = _f(3_000_000, "environment steps in total, warm-up included")
    actor_sparsity: Fraction = _f(0.9, "fraction of the actor's weights that are zero, in [0, 1)")
    critic_sparsity: Fraction = _f(0.85, "fraction of the critic's weights (both Q nets) that are zero, in [0, 1)")
    sparsity_distribution: Literal[DISTRIBUTIONS] = _f("er", "how a network's sparsity is split over layers: er or uniform")
    mask_init: Literal[MASK_INITS] = _f("magnitude", "initial masks: magnitude (reference: each layer keeps its largest initial "
                                     "weights) or random (uniformly chosen)")
    hidden_sizes: Annotated[tuple[_int(ge=1, le=MAX_WIDTH), ...], Field(min_length=1, max_length=8)] = _f((256, 256), "hidden widths of every network")
    warmup_steps: _int(ge=0, le=MAX_STEPS) | None = _f(None, "random-action steps before learning starts (default: 25 000 x steps/3M, at least 1 000)")
    batch_size: _int(ge=1, le=65_536) = _f(256, "minibatch size")
    gamma: _float(gt=0.0, le=1.0) = _f(0.99, "discount factor")
    tau: _float(gt=0.0, le=1.0) = _f(0.005, "Polyak rate of target networks")
    lr: _float(gt=0.0, le=1.0) = _f(3e-4, "Adam learning rate of every network (and SAC's temperature)")
    exploration_noise: _float(ge=0.0, le=1e3) = _f(0.1, "TD3: std of Gaussian action noise, as a fraction of the action range")
    target_noise: _float(ge=0.0, le=1e3) = _f(0.2, "TD3: std of target policy smoothing noise")
    target_noise_clip: _float(ge=0.0, le=1e3) = _f(0.5, "TD3: clip of target policy smoothing noise")
    policy_delay: _int(ge=1, le=1_000) = _f(2, "TD3: critic updates per actor and target update")
    sac_explore: Literal["mean", "sample"] = _f("mean", "SAC: act during training with the mean action (reference) or a sample of the policy")
    sac_log_std: Literal[SAC_LOG_STDS] = _f("tanh", "SAC: log-std = -5 + 3.5 (tanh(raw) + 1) (reference) or raw clamped to [-5, 2]")
    alpha_loss: Literal["reference", "log-alpha"] = _f("reference", "SAC temperature loss: reference, mean(alpha (-log pi - target entropy)), or "
                                      "log-alpha, mean(-log alpha (log pi + target entropy)), whose gradient is "
                                      "1/alpha times the reference's")
    delta: Interval | None = _f(None, "optimiser steps of a network between topology updates (default: 10 000 x steps/3M, at least 100)")
    zeta: _float(ge=0.0, le=1.0) = _f(0.5, "initial fraction of active weights replaced per topology update")
    regrow: Literal[REGROWS] = _f("keep", "a weight dropped and regrown in one topology update: keep (reference: its value and "
                             "optimiser state) or reset (to zero, as a new connection)")
    grown_adam: Literal[GROWN_ADAMS] = _f("keep", "Adam moments of newly grown connections: keep (reference: never reset) or zero")
    critic_grow_gradient: Literal["reference", "critic-loss"] = _f("reference", "the critic's grow score: reference (critic-loss gradient plus the "
                                                "actor loss's gradient through the critic from the iteration before, "
                                                "which the reference accumulates; SAC always, TD3 when delta is odd) "
                                                "or critic-loss")
    t_end: Interval | None = _f(None, "last training iteration with topology updates (default: steps - warmup)")
    n_step: _int(ge=1, le=100) | None = _f(None, "n of the multi-step TD target (default: the method's)")
    nstep_delay: _int(ge=0, le=MAX_STEPS) | None = _f(None, "training iterations with 1-step targets before n-step ones (default: 300 000 x steps/3M)")
    dynamic_buffer: Flag | None = _f(None, "shrink the replay buffer when it is too off-policy (default: the method's)")
    buffer_max: _int(ge=1, le=MAX_STEPS) | None = _f(None, "replay capacity (upper bound); default td3 1e6, sac 3e6")
    buffer_min: _int(ge=1, le=MAX_STEPS) | None = _f(None, "the dynamic buffer shrinks only while larger than this (default: td3 1e5, sac 2e5, x steps/3M, at least 1 000)")
    buffer_threshold: _float(ge=0.0, le=1e6) = _f(0.2, "policy distance above which the dynamic buffer shrinks")
    buffer_check_every: Interval | None = _f(None, "environment steps between dynamic-buffer checks (default: 10 000 x steps/3M, at least 500)")
    buffer_rule: Literal["reference", "paper"] = _f("reference", "reference: drop oldest 10%; paper: pop until the distance is below threshold")
    policy_distance: Literal["reference", "paper"] = _f("reference", "reference: mean squared action gap / 2; paper: mean L2 norm (Eq. 6)")
    eval_every: Interval | None = _f(None, "environment steps between evaluations (default: 5 000 x steps/3M, at least 500)")
    eval_episodes: _int(ge=1, le=10_000) = _f(10, "episodes per evaluation (deterministic policy, env seeded seed+100)")
    final_window: _int(ge=1, le=MAX_STEPS) | None = _f(None, "final score = mean of the last K evaluations (default: the last 5 %, at least 3)")
    log_every: Interval | None = _f(None, "environment steps between rows of training diagnostics (default: 1 000 x steps/3M, at least 100)")
    checkpoint_every: Interval | None = _f(None, "environment steps between checkpoints, each taken at the next episode end "
                                            "(default: 50 000 x steps/3M, at least 1 000)")
    torch_threads: _int(ge=1, le=256) = _f(1, "torch intra-op threads for this run")
    sparse_backend: Literal[BACKENDS] = _f("auto", f"how masked layers compute: auto (CSR kernels for layers of density <= {CSR_MAX_DENSITY}), "
                                     "masked-dense (the reference) or csr; results agree within float tolerance")
    tensorboard: Flag = _f(False, "also write diagnostics and evaluations as TensorBoard events in <run>/tensorboard")

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["hidden_sizes"] = list(self.hidden_sizes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        """A config from untrusted input (flags, a TOML table, JSON): every type and range checked.

        Raises ``ConfigError`` naming the first bad setting and its value.
        """
        if not isinstance(data, dict):
            raise ConfigError("config", data, "must be a table of settings")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(unknown[0], data[unknown[0]], "unknown setting")
        data = dict(data)
        if isinstance(data.get("hidden_sizes"), list):
            data["hidden_sizes"] = tuple(data["hidden_sizes"])
        try:
            return cls(**data)
        except ValidationError as exc:
            raise config_error(exc, data) from None

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON schema of a run's settings (types, ranges, choices), generated from the fields."""
        schema = TypeAdapter(cls).json_schema()
        for f in dataclasses.fields(cls):
            schema["properties"][f.name]["description"] = f.metadata["help"]
        return schema

    @classmethod
    def saved_matches(cls, saved: dict[str, Any], wanted: "RunConfig") -> list[str]:
        """Settings where a saved config differs from ``wanted`` (settings added since count as defaults)."""
        try:
            restored = cls.from_dict(saved).to_dict()
        except ConfigError:
            return ["(unreadable config)"]
        target = wanted.to_dict()
        return sorted(k for k in target if restored.get(k) != target[k])

    #: Settings ``resolve_budget`` fills in when a run leaves them unset.
    BUDGET_FIELDS: ClassVar[tuple[str, ...]] = (*BUDGET_SCALED, "buffer_min", "buffer_max", "t_end", "final_window")

    def unset_budget_fields(self) -> list[str]:
        """The budget-dependent settings this config leaves to the budget-scaling rule."""
        return [name for name in self.BUDGET_FIELDS if getattr(self, name) is None]

    def resolve_budget(self) -> "RunConfig":
        """Fill every unset budget-dependent setting by the budget-scaling rule (module docstring)."""
        values = {name: scaled_value(name, self.steps) for name in BUDGET_SCALED if getattr(self, name) is None}
        cfg = self.replace(**values)
        low, high = BUFFER_BOUNDS.get(cfg.algo, (BUFFER_MIN_FLOOR, BUFFER_MIN_FLOOR))
        buffer_max = high if cfg.buffer_max is None else cfg.buffer_max
        buffer_min = cfg.buffer_min
        if buffer_min is None:
            buffer_min = min(buffer_max, max(BUFFER_MIN_FLOOR, round(low * cfg.steps / PAPER_STEPS)))
        t_end = max(1, cfg.steps - cfg.warmup_steps) if cfg.t_end is None else cfg.t_end
        window = cfg.final_window
        if window is None:
            window = final_window(evaluation_count(cfg.steps, cfg.eval_every)) if cfg.eval_every > 0 else FINAL_MIN
        return cfg.replace(buffer_max=buffer_max, buffer_min=buffer_min, t_end=t_end, final_window=window)

    def n_at(self, iteration: int) -> int:
        """The n of the TD target at training iteration ``iteration`` (1-based): 1 until ``nstep_delay``."""
        return self.n_step if iteration >= self.nstep_delay else 1

    def nstep_iterations(self, first: int, last: int) -> int:
        """How many of the iterations ``first..last`` use n-step targets (n > 1)."""
        return max(0, last - max(first, self.nstep_delay) + 1) if self.n_step > 1 else 0

    @property
    def training_iterations(self) -> int:
        """Gradient steps of the run: one per environment step after warm-up."""
        warmup = scaled_value("warmup_steps", self.steps) if self.warmup_steps is None else self.warmup_steps
        return max(0, self.steps - warmup)

    def validate(self) -> None:
        """Check what the field types cannot: relations between settings, as the run will use them.

        Budget-dependent settings are checked after scaling (where unset). Types, ranges and
        choices were checked when the config was made.
        """
        cfg = self.resolve_budget()
        if cfg.warmup_steps >= cfg.steps:
            raise ConfigError("warmup_steps", cfg.warmup_steps, f"must be < steps={cfg.steps}")
        for name in ("t_end", "nstep_delay", "delta", "eval_every", "buffer_check_every", "log_every",
                     "checkpoint_every"):
            if getattr(self, name) is not None and getattr(self, name) > cfg.steps:
                raise ConfigError(name, getattr(self, name), f"must be <= steps={cfg.steps}")
        evaluations = evaluation_count(cfg.steps, cfg.eval_every)
        if cfg.final_window > evaluations:
            raise ConfigError("final_window", cfg.final_window,
                              f"must be <= the run's {evaluations} evaluations (steps={cfg.steps}, "
                              f"eval-every={cfg.eval_every})")
        if cfg.buffer_min > cfg.buffer_max:
            raise ConfigError("buffer_min", cfg.buffer_min, f"must be <= buffer-max={cfg.buffer_max}")
        if cfg.buffer_max < cfg.batch_size:
            raise ConfigError("buffer_max", cfg.buffer_max, f"must be >= batch-size={cfg.batch_size}")
        if cfg.tensorboard:
            try:
                import tensorboard  # noqa: F401
            except ImportError:
                raise ConfigError("tensorboard", True,
                                  "needs the tensorboard package (pip install 'rlx2[tensorboard]')") from None


def config_error(exc: ValidationError, data: dict[str, Any]) -> ConfigError:
    """The first error of a pydantic validation as a ``ConfigError`` (``field=value: reason``)."""
    error = exc.errors()[0]
    name = str(error["loc"][0]) if error["loc"] else "config"
    value = data.get(name, error.get("input"))
    reason = error["msg"]
    if reason.startswith("Value error, "):
        reason = reason[len("Value error, "):]
    return ConfigError(name, value, reason[0].lower() + reason[1:])


def run_id(cfg: RunConfig) -> str:
    """Deterministic run id ``<algo>/<env>/<method>/seed-<k>``: reruns find finished work."""
    return f"{cfg.algo}/{cfg.env}/{cfg.method}/seed-{cfg.seed}"
