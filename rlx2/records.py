"""The run directory: what one run writes, and in which order.

``results/<...>/<algo>/<env>/<method>/seed-<k>/`` holds

* ``config.json``      resolved config, environment facts, package versions, git commit;
* ``evaluations.csv``  step, mean_return, std_return, episodes (one row per evaluation);
* ``topology.csv``     per-layer densities at initialisation and at each topology update (dropped =
                       grown, and how many of them were regrown at once);
* ``diagnostics.csv``  losses, buffer size, current n, policy distance, steps/s, ...;
* ``model.pt``         final weights and masks of every network (``torch.load(weights_only=True)``);
* ``checkpoint.pt``    the latest checkpoint of an unfinished run (removed when it finishes);
* ``failure.json``     why the last attempt failed (a divergence or a crash), if it did;
* ``result.json``      written last and atomically: a directory without it is unfinished.

A run that finds a valid checkpoint resumes from it: the CSV logs are cut back to the
checkpoint's step, so no row is ever duplicated. A run holds ``.lock`` (an ``flock``)
while it works, so two runners never run the same run at once.
"""

from __future__ import annotations

import csv
import fcntl
import json
import math
import os
import platform
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"
EVALUATIONS_FILE = "evaluations.csv"
TOPOLOGY_FILE = "topology.csv"
DIAGNOSTICS_FILE = "diagnostics.csv"
MODEL_FILE = "model.pt"
RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.pt"
FAILURE_FILE = "failure.json"
LOCK_FILE = ".lock"
LOG_FILE = "worker.log"  # a suite worker's output
#: The files a run writes (besides its lock and a suite worker's log), which a fresh start clears.
#: What a finished run keeps for its report and its reader: small text records, the files to commit when results are
#: shared (``rlx2 runs DIR --records`` lists them); never the checkpoint or the model, which are large and rebuildable.
RECORD_FILES = (CONFIG_FILE, EVALUATIONS_FILE, TOPOLOGY_FILE, DIAGNOSTICS_FILE, RESULT_FILE)
RUN_FILES = (CONFIG_FILE, EVALUATIONS_FILE, TOPOLOGY_FILE, DIAGNOSTICS_FILE, MODEL_FILE, CHECKPOINT_FILE,
             FAILURE_FILE, RESULT_FILE)


class RunLocked(RuntimeError):
    """Another process is working on this run right now."""


PACKAGES = ("rlx2", "torch", "gymnasium", "mujoco", "numpy", "scipy")


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class RunResult:
    """A finished run's result record (``result.json``), the one schema every procedure writes and every reader reads.

    A procedure gives what only it knows (``steps`` .. ``extra``) to ``Recorder.finish``, which
    adds the score from the evaluations it logged (``final_score``, ``final_window``,
    ``evaluations``) and the ``run_id``. ``flops`` is ``rlx2.sparse.flops.flops_report``'s dict;
    a report needs its ``size`` and ``inference_flops_relative``. ``extra`` holds a procedure's
    own fields (distillation: ``teacher_final_score``), stored beside the others.
    """

    steps: int  # the last step of the run's evaluation axis (distillation: teacher's steps + student's)
    iterations: int  # training iterations (gradient steps)
    wall_seconds: float
    steps_per_second: float | None  # training iterations per second of learning
    final_densities: dict[str, dict[str, float]]
    flops: dict[str, Any]
    final_buffer_size: int | None = None
    resumes: list[dict[str, Any]] = field(default_factory=list)  # {"step", "git_commit"} of each resume
    extra: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    final_score: float = math.nan
    final_window: int = 0
    evaluations: int = 0
    status: str = "finished"

    def to_record(self) -> dict[str, Any]:
        """The JSON object ``result.json`` holds."""
        record = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**record, **self.extra}

    def __getitem__(self, key: str) -> Any:
        """A field of the record by its JSON name (``result["final_score"]``), as scripts that read the object do."""
        return self.to_record()[key]

    @classmethod
    def from_record(cls, record: Any) -> RunResult:
        """The result of a ``result.json`` object; ValueError saying why it is not a finished run's record."""
        problem = result_problem(record)
        if problem is not None:
            raise ValueError(problem)
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in record.items() if k in names}
        return cls(**{"iterations": 0, "wall_seconds": 0.0, "steps_per_second": None, "final_densities": {},
                      **known}, extra={k: v for k, v in record.items() if k not in names})


def result_problem(record: Any) -> str | None:
    """Why ``record`` is not a finished run's result (None when it is one): status, score and cost types."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("status") != "finished":
        return f"status={record.get('status')!r}, not 'finished'"
    if not _real(record.get("final_score")):
        return f"final_score={record.get('final_score')!r}: not a finite number"
    if not isinstance(record.get("steps"), int) or isinstance(record.get("steps"), bool) or record["steps"] < 1:
        return f"steps={record.get('steps')!r}: not a positive integer"
    flops = record.get("flops")
    if not isinstance(flops, dict) or not all(_real(flops.get(k)) for k in ("size", "inference_flops_relative")):
        return "flops: missing or not numbers"
    resumes = record.get("resumes", [])
    if not isinstance(resumes, list) or not all(isinstance(r, dict) for r in resumes):
        return f"resumes={resumes!r}: not a list of objects"
    return None


def writable_directory(path: Path) -> str | None:
    """Why files cannot be created at or under ``path`` (None: they can), found before anything is written.

    Checks the nearest existing ancestor: a file in the way, or a directory this process
    cannot write in (read-only, immutable, no permission), tried with a temporary file that
    is removed at once.
    """
    path = Path(path)
    too_long = long_name(path)
    if too_long:
        return too_long
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a directory"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return f"cannot write in {existing} ({exc.strerror})"
    return None


#: Room left below a directory for what rlx2 writes there (run ids, file names, temporary suffixes).
PATH_ROOM = 256


def long_name(path: Path) -> str | None:
    """Why ``path`` is too long for this filesystem to hold it and what goes below it (None: it is not)."""
    name_max, path_max = 255, 4096
    try:
        name_max, path_max = os.pathconf("/", "PC_NAME_MAX"), os.pathconf("/", "PC_PATH_MAX")
    except (OSError, ValueError):
        pass
    for part in path.parts:
        if len(os.fsencode(part)) > name_max:
            return f"the name {part[:24]}... is {len(os.fsencode(part))} bytes long; at most {name_max} fit in a name"
    length = len(os.fsencode(str(path.absolute())))
    if length + PATH_ROOM > path_max:
        return (f"is {length} bytes long; what rlx2 writes below it needs up to {PATH_ROOM} more, and a path may be "
                f"at most {path_max}")
    return None


def write_atomically(path: Path, write: Callable[[Any], None], mode: str,
                     check: Callable[[Path], Any] | None = None) -> Any:
    """Write ``path`` through ``path.tmp`` and ``os.replace``: never half-written; on any failure (a full
    disk, or ``check`` of the written temporary file raising) the temporary file is removed and an
    OSError names ``path``. Returns what ``check`` returned."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        checked = check(tmp) if check is not None else None
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not exc.filename:
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    return checked


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (``write_atomically``)."""
    write_atomically(path, lambda f: f.write(text), "w")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` atomically; through a file object, so a full disk is an OSError (ENOSPC)."""
    import torch  # here, not at the top: reading records (reports, status) never needs torch

    write_atomically(path, lambda f: torch.save(obj, f), "wb")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    """The commit of the rlx2 source tree, when it is a git checkout (None otherwise)."""
    source = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class CsvLog:
    """Append-only CSV with a fixed header, flushed per row so a killed run keeps its rows."""

    def __init__(self, path: Path, columns: list[str], keep_until_step: int | None = None) -> None:
        """A new log, or (``keep_until_step`` given) the existing one cut back to that step."""
        self.columns = columns
        if keep_until_step is not None and path.is_file():
            with open(path, newline="") as f:
                kept = [row for row in csv.DictReader(f) if row.get("step") and int(row["step"]) <= keep_until_step]
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(kept)
            os.replace(tmp, path)
            self._file = open(path, "a", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=columns, extrasaction="raise")
            return
        self._file = open(path, "w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=columns, extrasaction="raise")
        self._writer.writeheader()
        self._file.flush()

    def write(self, row: dict[str, Any]) -> None:
        try:
            self._writer.writerow({k: _fmt(row.get(k)) for k in self.columns})
            self._file.flush()
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror or str(exc), self._file.name) from exc

    def close(self) -> None:
        self._file.close()


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)  # shortest exact round-trip form
    return "" if value is None else value


def _file(name: str) -> property:
    """A run directory's path of its file ``name``."""
    return property(lambda run_dir: run_dir.path / name, doc=f"The run's {name}.")


class RunDirectory:
    """Creates and fills one run directory (see module docstring for its layout)."""

    EVAL_COLUMNS = ["step", "mean_return", "std_return", "episodes"]
    TOPOLOGY_COLUMNS = ["step", "network", "layer", "optimizer_step", "fraction", "replaced", "regrown", "active",
                        "density"]
    DIAGNOSTIC_COLUMNS = ["step", "iterations", "critic_loss", "actor_loss", "alpha", "buffer_size", "n_step",
                          "policy_distance", "episodes", "train_return", "steps_per_second"]

    def __init__(self, path: Path) -> None:
        self.path = path
        #: Extra entries ``start`` adds to ``config.json`` (e.g. which settings were scaled to the budget).
        self.metadata: dict[str, Any] = {}

    # -- where each file lies (readers open them through these) -----------------
    config_file = _file(CONFIG_FILE)
    evaluations_file = _file(EVALUATIONS_FILE)
    diagnostics_file = _file(DIAGNOSTICS_FILE)
    model_file = _file(MODEL_FILE)
    log_file = _file(LOG_FILE)

    def result(self) -> RunResult | None:
        """The result record, or None when the run is unfinished (or the record is unreadable or corrupt)."""
        record, problem = self._read_result()
        return RunResult.from_record(record) if problem is None else None

    def result_problem(self) -> str | None:
        """Why an existing ``result.json`` is not a valid finished record (None: valid, or no record at all)."""
        if not (self.path / RESULT_FILE).exists():
            return None
        return self._read_result()[1]

    def _read_result(self) -> tuple[dict[str, Any] | None, str | None]:
        try:
            record = json.loads((self.path / RESULT_FILE).read_text())
        except OSError as exc:
            return None, f"unreadable ({exc.strerror})"
        except ValueError:
            return None, "not valid JSON (truncated?)"
        return record, result_problem(record)

    @property
    def finished(self) -> bool:
        return self.result() is not None

    def saved_config(self) -> dict[str, Any] | None:
        """What ``config.json`` holds (the resolved config under ``"config"``, versions, ...), or None if unreadable."""
        try:
            data = json.loads(self.config_file.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def settings_differ(self, cfg: Any) -> list[str]:
        """Settings where the run saved here differs from the resolved ``cfg`` ([] when none or nothing is saved)."""
        saved = (self.saved_config() or {}).get("config")
        return [] if saved is None else type(cfg).saved_matches(saved, cfg)

    def failure(self) -> dict[str, Any] | None:
        """Why the last attempt failed, or None (no record, or one that cannot be read as an object)."""
        try:
            record = json.loads((self.path / FAILURE_FILE).read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def lock(self) -> None:
        """Take this run's lock for the life of this process (or until ``unlock``); RunLocked if held."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path / LOCK_FILE, "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise RunLocked(f"{self.path} is being run by another process") from None

    def unlock(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()
            self._lock = None

    def is_locked(self) -> bool:
        """Whether some process holds this run's lock now."""
        try:
            with open(self.path / LOCK_FILE) as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(f, fcntl.LOCK_UN)
                return False
        except FileNotFoundError:
            return False
        except BlockingIOError:
            return True

    def start(self, config: dict[str, Any]) -> None:
        """Begin a fresh run: clear leftovers of an unfinished one, write the config, open the logs."""
        self.path.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:  # only what a run writes: a file someone else put here stays
            for leftover in (self.path / name, self.path / f"{name}.tmp"):
                leftover.unlink(missing_ok=True)
        atomic_write_text(self.config_file,
                          json.dumps({**config, **self.metadata}, indent=2, sort_keys=True) + "\n")
        self.evaluations = CsvLog(self.evaluations_file, self.EVAL_COLUMNS)
        self.topology = CsvLog(self.path / TOPOLOGY_FILE, self.TOPOLOGY_COLUMNS)
        self.diagnostics = CsvLog(self.diagnostics_file, self.DIAGNOSTIC_COLUMNS)

    def resume(self, step: int) -> None:
        """Continue from a checkpoint taken at ``step``: logs are cut back to it."""
        (self.path / FAILURE_FILE).unlink(missing_ok=True)
        self.evaluations = CsvLog(self.evaluations_file, self.EVAL_COLUMNS, keep_until_step=step)
        self.topology = CsvLog(self.path / TOPOLOGY_FILE, self.TOPOLOGY_COLUMNS, keep_until_step=step)
        self.diagnostics = CsvLog(self.diagnostics_file, self.DIAGNOSTIC_COLUMNS, keep_until_step=step)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        atomic_torch_save(state, self.path / CHECKPOINT_FILE)

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint, or None when there is none; an unreadable one is removed (the run restarts)."""
        path = self.path / CHECKPOINT_FILE
        if not path.is_file():
            return None
        import torch

        try:
            return torch.load(path, weights_only=True)
        except Exception:  # truncated or corrupt: start afresh rather than crash
            path.unlink(missing_ok=True)
            return None

    def fail(self, reason: str, kind: str) -> None:
        """Record why this attempt failed (``kind``: ``diverged`` or ``crashed``)."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / FAILURE_FILE, json.dumps({"status": "failed", "kind": kind, "reason": reason},
                                                               indent=2) + "\n")

    def open_tensorboard(self, fresh: bool) -> None:
        """Mirror diagnostics and evaluations as TensorBoard scalars under ``tensorboard/``."""
        import shutil

        from torch.utils.tensorboard import SummaryWriter

        if fresh:
            shutil.rmtree(self.path / "tensorboard", ignore_errors=True)
        self.tensorboard = SummaryWriter(str(self.path / "tensorboard"))

    def scalars(self, step: int, values: dict[str, Any], prefix: str) -> None:
        writer = getattr(self, "tensorboard", None)
        if writer is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)) and key != "step":
                writer.add_scalar(f"{prefix}/{key}", value, step)
        writer.flush()

    def save_model(self, state: dict[str, Any]) -> None:
        atomic_torch_save(state, self.model_file)

    def finish(self, result: RunResult) -> None:
        """Close the logs and write the result record, last and atomically."""
        self.abort()
        (self.path / FAILURE_FILE).unlink(missing_ok=True)
        atomic_write_text(self.path / RESULT_FILE, json.dumps(result.to_record(), indent=2, sort_keys=True) + "\n")
        (self.path / CHECKPOINT_FILE).unlink(missing_ok=True)

    def abort(self) -> None:
        """Close every open log (the run stops here, finished or not)."""
        for name in ("evaluations", "topology", "diagnostics", "tensorboard"):
            log = getattr(self, name, None)
            if log is not None:
                log.close()
                setattr(self, name, None)
