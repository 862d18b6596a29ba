"""The ``Recorder``: what every run procedure writes into its run directory, in order.

``start`` writes ``config.json`` (the resolved config and everything needed to trace a
number) and every sparse layer's initial density; during the run it records topology
events, evaluations (``evaluate`` + the log row, a non-finite return ends the run as
diverged) and diagnostics; ``finish`` saves the final model and writes the result record
last (the final score is the mean of the last ``final_window`` evaluations). The off-policy
loop (``rlx2.loop``) and the procedures of methods that bring their own (distillation,
stable-baselines3) all record through it, so a run directory always has the same form.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np

from rlx2.config import RunConfig, run_id
from rlx2.envs import ActionScaler
from rlx2.evaluation import EVAL_SEED_OFFSET, evaluate
from rlx2.records import RunDirectory, RunResult, git_commit, package_versions


class RunDiverged(RuntimeError):
    """A loss or return became NaN/inf; the run cannot continue."""


class Recorder:
    """Writes one run's records into ``run_dir`` (see the module docstring)."""

    def __init__(self, cfg: RunConfig, method: Any, run_dir: RunDirectory) -> None:
        self.cfg, self.method, self.run_dir = cfg, method, run_dir
        self.evaluations: list[float] = []  # mean returns of this attempt's evaluations (a resume restores them)

    # -- start ------------------------------------------------------------------
    def start(self, env, modules: dict[str, Any], densities: dict, flops: dict, controllers: dict | None = None,
              versions: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
        """Begin a fresh run: ``config.json`` (plus ``extra`` entries and further package ``versions``) and
        every sparse layer's initial density."""
        meta = {
            "run_id": run_id(self.cfg),
            "config": self.cfg.to_dict(),
            "method_description": self.method.description,
            "env": {"obs_dim": env.observation_space.shape[0], "act_dim": env.action_space.shape[0],
                    "action_low": env.action_space.low.tolist(), "action_high": env.action_space.high.tolist()},
            "networks": {name: {"parameters": sum(p.numel() for p in m.parameters())} for name, m in modules.items()},
            "initial_densities": densities,
            "flops": flops,
            "versions": {**package_versions(), **(versions or {})},
            "git_commit": git_commit(),
            **extra,
        }
        self.run_dir.start(meta)
        for network, ctrl in (controllers or {}).items():
            for name, layer in ctrl.layers:
                self.run_dir.topology.write({"step": 0, "network": network, "layer": name, "optimizer_step": 0,
                                             "fraction": 0.0, "replaced": 0, "regrown": 0,
                                             "active": int(layer.mask.sum()), "density": layer.density})
        return meta

    # -- during the run ---------------------------------------------------------
    def topology_events(self, controllers: dict, step: int) -> None:
        """Write and clear the controllers' pending topology events."""
        for network, ctrl in controllers.items():
            for event in ctrl.events:
                self.run_dir.topology.write({"step": step, "network": network, "layer": event.layer,
                                             "optimizer_step": event.optimizer_step, "fraction": event.fraction,
                                             "replaced": event.replaced, "regrown": event.regrown,
                                             "active": event.active, "density": event.density})
            ctrl.events.clear()

    def evaluate(self, agent, env, scale: ActionScaler, step: int) -> float:
        """One evaluation (``cfg.eval_episodes`` episodes, env reset with ``seed + 100``), logged; its mean return."""
        returns = evaluate(agent, env, scale, self.cfg.eval_episodes, self.cfg.seed + EVAL_SEED_OFFSET)
        mean = float(np.mean(returns))
        if not math.isfinite(mean):
            raise RunDiverged(f"non-finite evaluation return at step {step}")
        self.run_dir.evaluations.write({"step": step, "mean_return": mean, "std_return": float(np.std(returns)),
                                        "episodes": len(returns)})
        self.run_dir.scalars(step, {"mean_return": mean}, "eval")
        self.evaluations.append(mean)
        return mean

    def diagnostics(self, row: dict[str, Any]) -> None:
        """One row of training diagnostics (a non-finite loss ends the run as diverged)."""
        losses = {k: v for k, v in row.items() if k.endswith("_loss") or k == "alpha"}
        if not all(math.isfinite(v) for v in losses.values() if v is not None):
            raise RunDiverged(f"non-finite training loss at step {row['step']}: {losses}")
        self.run_dir.diagnostics.write(row)
        self.run_dir.scalars(row["step"], row, "train")

    # -- the end ----------------------------------------------------------------
    def finish(self, model: dict[str, Any] | None, result: RunResult, window: int | None = None) -> RunResult:
        """Save ``model`` (if any), then write the result record last: ``result`` with the run's score. Returns it.

        The final score is the mean of the last ``window`` evaluations (default: the config's ``final_window``).
        """
        last = self.evaluations[-(window or self.cfg.final_window):]
        if model is not None:
            self.run_dir.save_model(model)
        result = replace(result, run_id=run_id(self.cfg), status="finished", final_score=float(np.mean(last)),
                         final_window=len(last), evaluations=len(self.evaluations))
        self.run_dir.finish(result)
        return result

    def abort(self) -> None:
        """The run stops here without a result (an error, a kill): close the logs, keep what was written."""
        self.run_dir.abort()

    @contextmanager
    def attempt(self, *envs) -> Iterator[None]:
        """The body of a run: on any exception the logs are closed (what was written stays) and the error
        passes on; the environments are closed either way."""
        try:
            yield
        except BaseException:
            self.abort()
            raise
        finally:
            for env in envs:
                env.close()
