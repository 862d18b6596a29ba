"""One run's lifecycle, the same for every procedure: prepare, lock, check, run, record the outcome.

``prepare`` checks every input before anything is written (settings, method, task, that the
run fits in memory, that ``out`` is writable). ``run`` then takes the run's lock, refuses to
redo a finished run or to resume one made with other settings, and hands a ``RunContext``
to the method's procedure (``train`` is ``prepare`` then ``run``): its own ``run`` if it has one (distillation, stable-baselines3),
otherwise the off-policy loop (``rlx2.loop``). A run that diverges is recorded as failed
(``failure.json``); whatever happens, the lock is released.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from rlx2.config import ConfigError, RunConfig, run_id
from rlx2.envs import make_env
from rlx2.loop import run_off_policy
from rlx2.methods import resolve
from rlx2.methods.base import Method, RunContext
from rlx2.recorder import RunDiverged
from rlx2.records import CHECKPOINT_FILE, RunDirectory, RunResult, writable_directory
from rlx2.sparse.flops import mlp_weights

__all__ = ["RunAlreadyFinished", "RunContext", "RunDiverged", "RunResult", "RunSettingsMismatch", "prepare", "run",
           "train"]


class RunAlreadyFinished(RuntimeError):
    """The run directory already holds a result record."""


class RunSettingsMismatch(RuntimeError):
    """The run directory holds an unfinished run with other settings: resuming would mix them."""


@dataclass
class Prepared:
    """A run whose inputs are all checked: what ``train`` needs before touching the disk."""

    cfg: RunConfig  # resolved
    method: Method
    run_dir: RunDirectory
    out: Path  # the results root


def available_memory() -> int | None:
    """Bytes of memory this machine can still give a process (Linux ``MemAvailable``), or None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(cfg: RunConfig, obs_dim: int, act_dim: int) -> None:
    """Refuse a run that could not fit in memory (a typo'd width or capacity), before anything is written.

    The estimate: replay storage for ``min(buffer_max, steps)`` transitions, and ten float32
    copies of every weight (weights, gradients, Adam's two moments, targets, masks, slack).
    """
    replay = min(cfg.buffer_max, cfg.steps) * (4 * (2 * obs_dim + 2 * act_dim + 1) + 2)
    weights = mlp_weights(obs_dim, cfg.hidden_sizes, 2 * act_dim) + 2 * mlp_weights(obs_dim + act_dim, cfg.hidden_sizes, 1)
    networks = 10 * 4 * weights
    available = available_memory()
    if available is None or replay + networks <= available:
        return
    name, value = ("buffer_max", cfg.buffer_max) if replay > networks else ("hidden_sizes", cfg.hidden_sizes)
    raise ConfigError(name, value, f"a run would need about {(replay + networks) / 2**30:.1f} GiB of memory; "
                                   f"{available / 2**30:.1f} GiB are available")


def prepare(cfg: RunConfig, out: Path | str) -> Prepared:
    """Validate every input (config, method, task, memory, output directory) before anything is written."""
    cfg.validate()
    resolved, method = resolve(cfg)
    method.check_can_train(resolved)
    env = make_env(cfg.env)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    check_memory(resolved, obs_dim, act_dim)
    problem = writable_directory(Path(out))
    if problem:
        raise ConfigError("out", str(out), problem)
    run_dir = RunDirectory(Path(out) / run_id(resolved))
    run_dir.metadata["scaled_to_budget"] = cfg.unset_budget_fields()  # recorded in config.json
    return Prepared(resolved, method, run_dir, Path(out))


def train(cfg: RunConfig, out: Path | str, *, progress: bool = True, overwrite: bool = False) -> RunResult:
    """Run one training run into ``out/<run-id>/`` and return its result record (``prepare``, then ``run``)."""
    return run(prepare(cfg, out), progress=progress, overwrite=overwrite)


def run(prepared: Prepared, *, progress: bool = True, overwrite: bool = False) -> RunResult:
    """Run a prepared run: lock it, refuse what must not be redone or mixed, call its procedure, record a divergence."""
    cfg, method, run_dir, out = prepared.cfg, prepared.method, prepared.run_dir, prepared.out
    run_dir.lock()
    try:
        if run_dir.finished and not overwrite:
            raise RunAlreadyFinished(f"{run_dir.path} already holds a finished run (pass --overwrite to redo it)")
        if overwrite:
            (run_dir.path / CHECKPOINT_FILE).unlink(missing_ok=True)
        elif (run_dir.path / CHECKPOINT_FILE).is_file():
            differ = run_dir.settings_differ(cfg)
            if differ:
                raise RunSettingsMismatch(f"{run_dir.path} holds an unfinished run with other settings "
                                          f"({', '.join(differ)}); pass --overwrite to start it afresh")
        torch.set_num_threads(cfg.torch_threads)
        ctx = RunContext(cfg, method, run_dir, out, progress,
                         dependency=lambda other: finished_run(other, out, progress))
        procedure = method.run or run_off_policy
        try:
            return procedure(ctx)
        except RunDiverged as exc:
            run_dir.fail(str(exc), "diverged")
            raise
    finally:
        run_dir.unlock()


def finished_run(cfg: RunConfig, out: Path, progress: bool) -> RunDirectory:
    """The finished run ``cfg`` under ``out``: reused when its settings match, trained now when absent."""
    run_dir = RunDirectory(out / run_id(cfg))
    if run_dir.finished:
        differ = run_dir.settings_differ(cfg)
        if differ:
            raise RunSettingsMismatch(f"{run_dir.path} holds a finished run with other settings ({', '.join(differ)})")
        return run_dir
    train(cfg, out, progress=progress)
    return run_dir
