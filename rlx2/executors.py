"""Executors: carry out a suite's runs, locally (a bounded pool of worker processes) or on Ray.

Both start one ``rlx2.worker`` process per run attempt, so a run behaves the same
everywhere: one torch thread, a per-run lock, a checkpoint to resume from, exit codes
that say finished / diverged / locked / crashed. A crashed attempt (killed, out of
memory, ...) is retried up to ``retries`` times and resumes from its checkpoint; a
diverged run is recorded as failed and not retried; the suite goes on either way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from rlx2.config import RunConfig, run_id
from rlx2.records import CHECKPOINT_FILE, RunDirectory
from rlx2.worker import attempt_outcome

#: What ``run_state`` can say of a run.
STATES = ("done", "running", "corrupt", "failed", "partial", "pending")


@dataclass
class Outcome:
    """What a suite run achieved; ``failed`` maps run ids to reasons."""

    total: int
    finished: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    elsewhere: list[str] = field(default_factory=list)  # held by another runner

    @property
    def ok(self) -> bool:
        return not self.failed and not self.elsewhere

    def summary(self) -> str:
        lines = [f"{self.finished + self.skipped}/{self.total} runs finished "
                 f"({self.skipped} already done, {len(self.failed)} failed, {len(self.elsewhere)} held elsewhere)"]
        lines += [f"  FAILED {run}: {reason}" for run, reason in sorted(self.failed.items())]
        lines += [f"  HELD ELSEWHERE {run}" for run in sorted(self.elsewhere)]
        return "\n".join(lines)


def run_state(run_dir: RunDirectory) -> tuple[str, str]:
    """``(state, detail)``: done, running (lock held), corrupt (a result record that is not one), failed (last
    attempt), partial or pending."""
    result = run_dir.result()
    if result is not None:
        return "done", f"score {result.final_score:.1f}"
    if run_dir.is_locked():
        return "running", f"step {steps_logged(run_dir)}"
    problem = run_dir.result_problem()
    if problem is not None:
        return "corrupt", f"result.json {problem} (rerunning the suite redoes it)"
    failure = run_dir.failure()
    if failure is not None:
        return "failed", f"{failure.get('kind')}: {failure.get('reason')}"
    if (run_dir.path / CHECKPOINT_FILE).is_file():
        return "partial", f"checkpoint, step {steps_logged(run_dir)}"
    return "pending", ""


def steps_logged(run_dir: RunDirectory) -> int:
    """The last step a run logged diagnostics for (0 when none)."""
    try:
        with open(run_dir.diagnostics_file, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 512))
            last = f.read().decode(errors="ignore").strip().splitlines()[-1]
        return int(last.split(",", 1)[0])
    except (OSError, IndexError, ValueError):
        return 0


def execute(executor, runs: list[RunConfig], results: Path, modules: tuple[str, ...] = (), *,
            retry_failed: bool = False) -> Outcome:
    """Run a suite's runs with ``executor``; runs recorded as diverged are skipped (and count as failed)
    unless ``retry_failed``, since rerunning the same settings would diverge again."""
    skipped: dict[str, str] = {}
    if not retry_failed:
        for cfg in runs:
            failure = RunDirectory(results / run_id(cfg)).failure()
            if failure and failure.get("kind") == "diverged":
                skipped[run_id(cfg)] = f"diverged earlier: {failure.get('reason')} (--retry-failed reruns it)"
    outcome = executor.run([cfg for cfg in runs if run_id(cfg) not in skipped], results, modules)
    outcome.total = len(runs)
    outcome.failed.update(skipped)
    return outcome


def check_results_match(runs: list[RunConfig], results: Path) -> None:
    """Refuse to mix settings: an existing run directory must hold the same resolved config
    (an unreadable one is fine: that run starts afresh)."""
    from rlx2.methods import resolve

    for cfg in runs:
        run_dir = RunDirectory(results / run_id(cfg))
        differ = run_dir.settings_differ(resolve(cfg)[0])
        if differ:
            raise ValueError(f"{run_dir.path} holds a run with other settings ({', '.join(differ)}); "
                             "use another --results directory")


def worker_command(cfg: RunConfig, results: Path, modules: tuple[str, ...], parent: int | None) -> list[str]:
    command = [sys.executable, "-m", "rlx2.worker", "--config", json.dumps(cfg.to_dict()), "--results", str(results)]
    for module in modules:
        command += ["--module", module]
    if parent is not None:
        command += ["--parent", str(parent)]
    return command


def _divergence(run_dir: RunDirectory) -> str:
    """Why a run diverged, as its worker recorded it."""
    return (run_dir.failure() or {}).get("reason", "diverged")


def _crash_reason(code: int, run_dir: RunDirectory) -> str:
    reason = f"signal {-code}" if code < 0 else f"exit code {code}"
    try:
        tail = run_dir.log_file.read_text().strip().splitlines()[-1:]
    except OSError:
        tail = []
    return reason + (f" ({tail[0][:200]})" if tail else "")


class SuiteProgress:
    """The suite's progress bar (steps of all its runs) and one line per run that resumes, finishes or fails.

    What was done before this start (finished runs, the logged steps of unfinished ones) is the
    bar's starting count, and a running run adds only the steps it logs beyond where it stood when
    it started: so the rate and the ETA come from steps run since this start (a resumed run's
    checkpoint is not thousands of steps done in no time). ``quiet``: neither bar nor lines.
    """

    def __init__(self, runs: list[RunConfig], results: Path, quiet: bool = False, file=None) -> None:
        self.quiet, self.file = quiet, file or sys.stderr
        self.total = len(runs)
        self.steps = {run_id(cfg): cfg.steps for cfg in runs}
        self.done: dict[str, int] = {}  # steps counted per run so far
        for cfg in runs:
            run_dir = RunDirectory(results / run_id(cfg))
            self.done[run_id(cfg)] = cfg.steps if run_dir.finished else min(cfg.steps, steps_logged(run_dir))
        self.base: dict[str, int] = {}  # where each running run stood when it started
        self.finished = 0
        self.bar = tqdm(total=sum(self.steps.values()), initial=sum(self.done.values()), disable=quiet, unit="step",
                        dynamic_ncols=True, file=self.file, desc=f"runs 0/{self.total}")

    def say(self, line: str) -> None:
        if not self.quiet:
            tqdm.write(line, file=self.file)

    def skipped(self) -> None:
        """A run found finished (before the start, or by another runner meanwhile)."""
        self.finished += 1

    def started(self, cfg: RunConfig, run_dir: RunDirectory) -> None:
        name = run_id(cfg)
        self.base[name] = self.done[name] = min(cfg.steps, steps_logged(run_dir))
        if (run_dir.path / CHECKPOINT_FILE).is_file():
            self.say(f"resuming {name} from its checkpoint ({self.done[name]:,} of {cfg.steps:,} steps logged)")

    def ended(self, cfg: RunConfig, run_dir: RunDirectory, failed: str | None = None) -> None:
        """A run's attempt ended: finished (``failed`` None) or failed for good (``failed``: why)."""
        name = run_id(cfg)
        if failed is not None:
            self.say(f"FAILED {name}: {failed}")
            return
        self.finished += 1
        self.done[name] = cfg.steps
        result = run_dir.result()
        score = f": score {result.final_score:.1f}" if result is not None else ""
        self.say(f"finished {name}{score}")

    def refresh(self, running: list[tuple[RunConfig, RunDirectory]]) -> None:
        """Count the steps the running runs have logged beyond where they started."""
        for cfg, run_dir in running:
            name = run_id(cfg)
            self.done[name] = max(self.done[name], min(cfg.steps, steps_logged(run_dir)))
        self.bar.set_description(f"runs {self.finished}/{self.total}", refresh=False)
        self.bar.update(max(0, sum(self.done.values()) - self.bar.n))

    def close(self) -> None:
        self.bar.close()


class LocalExecutor:
    """A bounded pool of worker subprocesses on this machine."""

    def __init__(self, workers: int | None = None, retries: int = 2, quiet: bool = False) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.retries = retries
        self.quiet = quiet

    def run(self, runs: list[RunConfig], results: Path, modules: tuple[str, ...] = ()) -> Outcome:
        outcome = Outcome(total=len(runs))
        queue: list[tuple[RunConfig, int]] = []
        progress = SuiteProgress(runs, results, self.quiet)
        # Seed by seed: a suite stopped half-way has whole seeds of every method, not all seeds of a few.
        for cfg in sorted(runs, key=lambda c: c.seed):
            if RunDirectory(results / run_id(cfg)).finished:
                outcome.skipped += 1
                progress.skipped()
            else:
                queue.append((cfg, 0))
        waiting_on = dependencies(runs, results)
        running: dict[subprocess.Popen, tuple[RunConfig, int, RunDirectory]] = {}
        try:
            while queue or running:
                unfinished = {run_id(c) for c, _ in queue} | {run_id(c) for c, _, _ in running.values()}
                for cfg, attempt in list(queue):  # a run whose dependency failed cannot run
                    failed = [d for d in waiting_on[run_id(cfg)] if d in outcome.failed]
                    if failed:
                        queue.remove((cfg, attempt))
                        outcome.failed[run_id(cfg)] = f"depends on failed run {failed[0]}"
                        progress.ended(cfg, RunDirectory(results / run_id(cfg)), outcome.failed[run_id(cfg)])
                ready = [item for item in queue if not unfinished & set(waiting_on[run_id(item[0])])]
                while ready and len(running) < self.workers:
                    cfg, attempt = ready.pop(0)
                    run_dir = RunDirectory(results / run_id(cfg))
                    if run_dir.is_locked():
                        continue  # another runner has it: wait, then find it finished (or resume it)
                    queue.remove((cfg, attempt))
                    if run_dir.finished:  # finished by another runner meanwhile
                        outcome.skipped += 1
                        progress.skipped()
                        continue
                    run_dir.path.mkdir(parents=True, exist_ok=True)
                    progress.started(cfg, run_dir)
                    log = open(run_dir.log_file, "a")
                    process = subprocess.Popen(worker_command(cfg, results, modules, os.getpid()), stdout=log,
                                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                    log.close()
                    running[process] = (cfg, attempt, run_dir)
                for process in [p for p in running if p.poll() is not None]:
                    cfg, attempt, run_dir = running.pop(process)
                    name, code = run_id(cfg), process.returncode
                    ended = attempt_outcome(code)
                    if ended == "done":
                        outcome.finished += 1
                        progress.ended(cfg, run_dir)
                    elif ended == "diverged":
                        outcome.failed[name] = _divergence(run_dir)
                        progress.ended(cfg, run_dir, outcome.failed[name])
                    elif ended == "locked":
                        queue.append((cfg, attempt))  # lost a race for the lock: wait for the other runner
                    else:
                        reason = _crash_reason(code, run_dir)
                        if attempt < self.retries:
                            queue.append((cfg, attempt + 1))  # resumes from its checkpoint
                            progress.say(f"retrying {name} ({reason})")
                        else:
                            run_dir.fail(reason, "crashed")
                            outcome.failed[name] = reason
                            progress.ended(cfg, run_dir, reason)
                if not self.quiet:
                    progress.refresh([(c, rd) for c, _, rd in running.values()])
                time.sleep(0.5)
        finally:
            for process in running:
                process.kill()
            progress.close()
        return outcome


class RayExecutor:
    """One Ray task per run (``num_cpus=1``), retried by Ray when its worker process crashes."""

    def __init__(self, address: str | None = None, retries: int = 2, quiet: bool = False) -> None:
        self.address = address
        self.retries = retries
        self.quiet = quiet

    def run(self, runs: list[RunConfig], results: Path, modules: tuple[str, ...] = ()) -> Outcome:
        try:
            import ray
        except ImportError:
            raise RuntimeError("the ray executor needs Ray: pip install 'rlx2[ray]'") from None
        outcome = Outcome(total=len(runs))
        pending = []
        for cfg in runs:
            if RunDirectory(results / run_id(cfg)).finished:
                outcome.skipped += 1
            else:
                pending.append(cfg)
        started_here = not ray.is_initialized()
        if started_here:
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:  # no cluster there, a malformed address
                raise OSError(f"cannot reach a Ray cluster at {self.address!r} ({str(exc).splitlines()[0]})") from None
        task = ray.remote(num_cpus=1, max_retries=self.retries, retry_exceptions=[WorkerCrashed])(_ray_run)
        waiting_on = dependencies(runs, results)
        by_id: dict[str, object] = {}
        futures = {}
        for cfg in sorted(pending, key=lambda c: len(waiting_on[run_id(c)])):  # dependencies first
            after = [by_id[d] for d in waiting_on[run_id(cfg)] if d in by_id]
            future = task.remote(cfg.to_dict(), str(results.resolve()), modules, *after)
            by_id[run_id(cfg)] = future
            futures[future] = cfg
        bar = tqdm(total=len(runs), initial=outcome.skipped, disable=self.quiet, unit="run", dynamic_ncols=True,
                   file=sys.stderr)
        try:
            remaining = list(futures)
            while remaining:
                done, remaining = ray.wait(remaining, num_returns=1)
                cfg = futures[done[0]]
                name, run_dir = run_id(cfg), RunDirectory(results / run_id(cfg))
                try:
                    code = ray.get(done[0])
                except Exception as exc:  # retries exhausted
                    reason = str(exc).strip().splitlines()[-1][:300]
                    run_dir.fail(reason, "crashed")
                    outcome.failed[name] = reason
                    code = None
                line, ended = f"ended {name}", attempt_outcome(code)
                if ended == "done":
                    outcome.finished += 1
                    result = run_dir.result()
                    line = f"finished {name}" + (f": score {result.final_score:.1f}" if result is not None else "")
                elif ended == "diverged":
                    outcome.failed[name] = _divergence(run_dir)
                elif ended == "locked":
                    outcome.elsewhere.append(name)
                    line = f"held elsewhere: {name}"
                if name in outcome.failed:
                    line = f"FAILED {name}: {outcome.failed[name]}"
                if not self.quiet:
                    bar.write(line, file=sys.stderr)
                bar.update(1)
        finally:
            bar.close()
            if started_here:
                ray.shutdown()
        return outcome


class WorkerCrashed(RuntimeError):
    """A run's worker process ended abnormally (Ray retries the task)."""


def _ray_run(config: dict, results: str, modules: tuple[str, ...], *after: int) -> int:
    """A Ray task: run the worker process for one run; raise on a crash so that Ray retries.

    ``after`` are the exit codes of the runs this one depends on (Ray passes them once done).
    """
    cfg = RunConfig.from_dict(config)
    run_dir = RunDirectory(Path(results) / run_id(cfg))
    run_dir.path.mkdir(parents=True, exist_ok=True)
    with open(run_dir.log_file, "a") as log:
        code = subprocess.run(worker_command(cfg, Path(results), modules, os.getpid()), stdout=log,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    if attempt_outcome(code) == "crashed":
        raise WorkerCrashed(_crash_reason(code, run_dir))
    return code


def dependencies(runs: list[RunConfig], results: Path) -> dict[str, list[str]]:
    """Run id -> ids of the suite's runs it must wait for (``Method.depends_on``)."""
    from rlx2.methods import get_method

    in_suite = {run_id(cfg) for cfg in runs}
    return {run_id(cfg): [run_id(d) for d in get_method(cfg.method)().depends_on(cfg) if run_id(d) in in_suite]
            for cfg in runs}

