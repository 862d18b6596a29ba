"""The run directory: what one run writes, and in which order.

``results/<...>/<algo>/<env>/<method>/seed-<k>/`` holds

* ``config.json``      resolved config, environment facts, package versions, git commit;
* ``evaluations.csv``  step, mean_return, std_return, episodes (one row per evaluation);
* ``topology.csv``     per-layer densities at initialisation and at each topology update;
* ``diagnostics.csv``  losses, buffer size, current n, policy distance, steps/s, ...;
* ``model.pt``         final weights and masks of every network (``torch.load(weights_only=True)``);
* ``result.json``      written last and atomically: a directory without it is unfinished.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

RESULT_FILE = "result.json"
PACKAGES = ("rlx2", "torch", "gymnasium", "mujoco", "numpy", "scipy")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``: never half-written."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.columns = columns
        self._file = open(path, "w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=columns, extrasaction="raise")
        self._writer.writeheader()
        self._file.flush()

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow({k: _fmt(row.get(k)) for k in self.columns})
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)  # shortest exact round-trip form
    return "" if value is None else value


class RunDirectory:
    """Creates and fills one run directory (see module docstring for its layout)."""

    EVAL_COLUMNS = ["step", "mean_return", "std_return", "episodes"]
    TOPOLOGY_COLUMNS = ["step", "network", "layer", "optimizer_step", "fraction", "replaced", "active", "density"]
    DIAGNOSTIC_COLUMNS = ["step", "iterations", "critic_loss", "actor_loss", "alpha", "buffer_size", "n_step",
                          "policy_distance", "episodes", "train_return", "steps_per_second"]

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def finished(self) -> bool:
        return (self.path / RESULT_FILE).is_file()

    def start(self, config: dict[str, Any]) -> None:
        """Begin a fresh run: clear leftovers of an unfinished one, write the config, open the logs."""
        self.path.mkdir(parents=True, exist_ok=True)
        for child in self.path.iterdir():
            if child.is_file():
                child.unlink()
        atomic_write_text(self.path / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
        self.evaluations = CsvLog(self.path / "evaluations.csv", self.EVAL_COLUMNS)
        self.topology = CsvLog(self.path / "topology.csv", self.TOPOLOGY_COLUMNS)
        self.diagnostics = CsvLog(self.path / "diagnostics.csv", self.DIAGNOSTIC_COLUMNS)

    def save_model(self, state: dict[str, Any]) -> None:
        atomic_torch_save(state, self.path / "model.pt")

    def finish(self, result: dict[str, Any]) -> None:
        """Close the logs and write the result record, last and atomically."""
        for log in (self.evaluations, self.topology, self.diagnostics):
            log.close()
        atomic_write_text(self.path / RESULT_FILE, json.dumps(result, indent=2, sort_keys=True) + "\n")

    def abort(self) -> None:
        for log in (self.evaluations, self.topology, self.diagnostics):
            log.close()
