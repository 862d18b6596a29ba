"""What every run procedure sets up around its own training: the ``Session``.

The contract: a procedure (a method's ``run``, or the off-policy loop of ``rlx2.loop``) is
``run(ctx: RunContext) -> RunResult``. The run lifecycle (``rlx2.train``) gives it the
resolved config, the method, the locked run directory and ``ctx.dependency``; it returns the
record that ``Session.finish`` wrote. A ``Session`` holds the rest of what every procedure
needs, so a procedure keeps only what is its own:

* the training and evaluation environments (``env``, ``eval_env``; ``obs_dim``, ``act_dim``)
  and the action scaling from [-1, 1] to the task's bounds (``scale``);
* the ``Recorder`` (``start`` writes ``config.json``; ``finish`` the model and the result);
* ``with session.attempt():`` the body of the run: a progress bar over ``steps``, and on the
  way out both environments closed (on an exception the logs too, keeping what was written);
* ``session.step(step, policy)`` after each of the steps ``1..steps``: evaluates ``policy``
  (any ``rlx2.evaluation.Policy``) when ``evaluation_due``, and advances the bar.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm

from rlx2.config import evaluation_due, run_id
from rlx2.envs import ActionScaler, make_env
from rlx2.evaluation import Policy
from rlx2.methods.base import RunContext
from rlx2.recorder import Recorder
from rlx2.records import RunResult
from rlx2.sparse.flops import TrainingCost, flops_report

__all__ = ["RunContext", "RunResult", "Session"]


class Session:
    """One attempt of a run procedure: its environments, action scaling, recorder and progress (module docstring).

    ``steps``: how many steps the bar counts and the evaluation cadence runs over (default
    ``cfg.steps``); ``label`` is added to the bar's description.
    """

    def __init__(self, ctx: RunContext, steps: int | None = None, label: str = "") -> None:
        self.ctx, self.cfg = ctx, ctx.cfg
        self.env, self.eval_env = make_env(self.cfg.env), make_env(self.cfg.env)
        self.obs_dim, self.act_dim = self.env.observation_space.shape[0], self.env.action_space.shape[0]
        self.scale = ActionScaler(self.env.action_space)
        self.recorder = Recorder(self.cfg, ctx.method, ctx.run_dir)
        self.steps = self.cfg.steps if steps is None else steps
        self.label = label
        self.bar: tqdm | None = None

    def flops(self, cost: TrainingCost) -> dict[str, Any]:
        """Size, inference and training FLOPs of a run that costs ``cost`` (``rlx2.sparse.flops.flops_report``)."""
        return flops_report(self.cfg, self.obs_dim, self.act_dim, cost)

    def start(self, modules: dict[str, Any], densities: dict, flops: dict, controllers: dict | None = None,
              versions: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
        """Begin a fresh run (``Recorder.start``): ``config.json`` and every sparse layer's initial density."""
        return self.recorder.start(self.env, modules, densities, flops, controllers, versions, **extra)

    @contextmanager
    def attempt(self, done: int = 0) -> Iterator[Session]:
        """The body of the run, with a progress bar starting at ``done`` steps (a resumed run's)."""
        self.bar = tqdm(total=self.steps, initial=done, disable=not self.ctx.progress, unit="step",
                        dynamic_ncols=True, mininterval=1.0, desc=f"{run_id(self.cfg)}{self.label}")
        try:
            with self.recorder.attempt(self.env, self.eval_env):
                yield self
        finally:
            self.bar.close()

    def step(self, step: int, policy: Policy, logged_at: int | None = None) -> float | None:
        """After step ``step`` of ``steps``: evaluate ``policy`` when due, logged at ``logged_at`` (default
        ``step``), and advance the bar. Returns the evaluation's mean return, None when none was due."""
        mean = None
        if evaluation_due(step, self.steps, self.cfg.eval_every):
            mean = self.recorder.evaluate(policy, self.eval_env, self.scale, step if logged_at is None else logged_at)
            self.bar.set_postfix(eval_return=f"{mean:.1f}", refresh=False)
        self.bar.update(1)
        return mean

    @property
    def evaluations(self) -> list[float]:
        """Mean returns of the run's evaluations so far (a resumed run's earlier ones included)."""
        return self.recorder.evaluations

    def finish(self, model: dict[str, Any] | None, result: RunResult, window: int | None = None) -> RunResult:
        """Save ``model`` (None: the method keeps none) and write ``result`` with the run's score (``Recorder.finish``)."""
        return self.recorder.finish(model, result, window)
