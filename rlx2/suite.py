"""Suites: what to run, read from ``suites/<name>.toml`` and expanded into one RunConfig per run.

A suite file has four tables (see ``suites/mujoco.toml``):

* ``[suite]``: ``algos``, ``tasks``, ``methods``, optional ``modules`` (extra method
  modules: dotted names or ``.py`` paths relative to the suite file), ``default_profile``;
* ``[sparsity.<algo>]``: ``"<task>" = [actor, critic]`` for every algo and task in use;
* ``[settings]``: RunConfig fields applied to every run (optional);
* ``[profiles.<name>]``: ``steps`` (budget per run), ``seeds`` (count), optional
  ``algos``/``tasks``/``methods`` subsets, ``method_seeds`` (``{ method = count }``: a method
  run at another seed count than ``seeds`` by declaration, so its other seeds are not
  "missing"), ``primary`` (``[X, Y]``: the comparison "X beats Y" decided before any run, which
  the report tests on its own instead of inside the family of every pair) and a ``settings``
  table of their own.

**Budget scaling**: a profile's ``steps`` is every run's budget; the step-count settings a
file leaves unset are scaled to it when a run is resolved, by the one rule every run
follows (``rlx2.config``, ``RunConfig.resolve_budget``). Settings written in the file win.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlx2.config import ALGOS, MAX_STEPS, ConfigError, RunConfig, is_sparsity

#: Where suite names are looked up: ./suites first, then the suites/ beside the package source.
SUITES_DIRS = (Path("suites"), Path(__file__).resolve().parent.parent / "suites")
SUITE_KEYS = {"algos", "tasks", "methods", "modules", "default_profile", "description"}
PROFILE_KEYS = {"steps", "seeds", "method_seeds", "primary", "algos", "tasks", "methods", "settings", "description"}
TOP_KEYS = {"suite", "sparsity", "settings", "profiles"}


class SuiteError(ValueError):
    """A malformed suite file; the message names the file, the key and the value."""

    def __init__(self, path: Path, key: str, value: Any, expected: str) -> None:
        super().__init__(f"{path}: {key} = {value!r}: {expected}")


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    profile: str
    runs: tuple[RunConfig, ...]
    modules: tuple[str, ...]
    description: str
    #: Seeds per method of the profile (every method; most have the profile's ``seeds``).
    seeds: dict[str, int]
    #: The comparison decided in advance, ``(X, Y)`` for "X beats Y", or None.
    primary: tuple[str, str] | None = None
    #: Methods added to the profile's from outside the suite file (``--add-method``), at the profile's seeds.
    added: tuple[str, ...] = ()

    def runs_of(self, methods: tuple[str, ...]) -> tuple[RunConfig, ...]:
        """The runs of ``methods`` only (``suite run --add-method``: the new method's, beside finished ones)."""
        return tuple(cfg for cfg in self.runs if cfg.method in methods)

    def declared_fewer(self) -> dict[str, int]:
        """Methods the profile runs at fewer seeds than its most-seeded method, by declaration."""
        most = max(self.seeds.values())
        return {m: n for m, n in self.seeds.items() if n < most}


def suite_path(name_or_path: str) -> Path:
    """``mujoco`` -> ``suites/mujoco.toml``; a path to a ``.toml`` file is taken as it is."""
    path = Path(name_or_path)
    if path.suffix == ".toml":
        return path
    for directory in SUITES_DIRS:
        if (directory / f"{name_or_path}.toml").is_file():
            return directory / f"{name_or_path}.toml"
    return SUITES_DIRS[0] / f"{name_or_path}.toml"


def available_suites() -> list[Path]:
    for directory in SUITES_DIRS:
        if directory.is_dir() and any(directory.glob("*.toml")):
            return sorted(directory.glob("*.toml"))
    return []


def _list(path: Path, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise SuiteError(path, key, value, "must be a non-empty list of strings")
    if len(set(value)) != len(value):
        duplicate = next(v for v in value if value.count(v) > 1)
        raise SuiteError(path, key, value, f"lists {duplicate!r} twice")
    return value


def _subset(path: Path, key: str, value: Any, allowed: list[str]) -> list[str]:
    items = _list(path, key, value)
    for item in items:
        if item not in allowed:
            raise SuiteError(path, key, item, f"not in the suite's list {allowed}")
    return items


#: Settings a suite's grid sets, so a settings table may not.
GRID_KEYS = {"algo", "env", "method", "seed", "steps", "actor_sparsity", "critic_sparsity"}
#: Sane upper bounds of a profile: more is a typo, not an experiment (and would not fit in memory).
MAX_SEEDS, MAX_RUNS = 1_000, 100_000


def _settings(path: Path, key: str, table: Any) -> dict[str, Any]:
    """A settings table, every value checked against ``RunConfig``'s types and ranges."""
    if not isinstance(table, dict):
        raise SuiteError(path, key, table, "must be a table of run settings")
    for name in table:
        if name in GRID_KEYS:
            raise SuiteError(path, f"{key}.{name}", table[name], "is set by the suite grid, not in settings")
    try:
        RunConfig.from_dict(table)
    except ConfigError as exc:
        raise SuiteError(path, f"{key}.{exc.name}", exc.value, str(exc).split(": ", 1)[1]) from None
    return dict(table)


def read_suite_file(name_or_path: str) -> tuple[Path, dict[str, Any]]:
    """The suite file's path and its parsed TOML, with only known top-level tables."""
    path = suite_path(name_or_path)
    if not path.is_file():
        known = ", ".join(p.stem for p in available_suites())
        raise SuiteError(path, "suite", name_or_path, f"no such suite file (known: {known})")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(path, "(syntax)", str(exc), "is not valid TOML") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(path, "suite", name_or_path, f"cannot be read as text ({exc})") from None
    for key in data:
        if key not in TOP_KEYS:
            raise SuiteError(path, key, data[key], f"unknown table; expected {sorted(TOP_KEYS)}")
    return path, data


def suite_listing(path: Path) -> str:
    """One line for ``rlx2 suite list``: the suite's profiles, the default marked, with budget and seeds; a file that
    cannot be read says so (one bad file does not hide the others)."""
    try:
        _, data = read_suite_file(str(path))
        profiles = data.get("profiles", {})
        default = data.get("suite", {}).get("default_profile")
        return f"{path.stem}: " + ", ".join(
            f"{name}{' (default)' if name == default else ''} [{p.get('steps'):,} steps x {_profile_seeds(p)}]"
            for name, p in profiles.items())
    except SuiteError as exc:  # names the file already
        return f"{path.stem}: unreadable ({exc})"
    except (ValueError, TypeError, AttributeError) as exc:
        return f"{path.stem}: unreadable ({path}: {exc})"


def _profile_seeds(profile: dict) -> str:
    """``5 seeds``, or ``5 seeds (sb3: 1)`` for a profile that runs some methods at other seed counts."""
    fewer = profile.get("method_seeds", {})
    listed = ", ".join(f"{m}: {n}" for m, n in fewer.items()) if isinstance(fewer, dict) else ""
    return f"{profile.get('seeds')} seeds" + (f" ({listed})" if listed else "")


def suite_head(path: Path, data: dict[str, Any]) -> tuple[dict[str, Any], list[str], list[str], list[str]]:
    """The ``[suite]`` table and its algorithms, tasks and methods."""
    head = data.get("suite")
    if not isinstance(head, dict):
        raise SuiteError(path, "suite", head, "a [suite] table is required")
    for key in head:
        if key not in SUITE_KEYS:
            raise SuiteError(path, f"suite.{key}", head[key], "unknown key")
    algos = _list(path, "suite.algos", head.get("algos"))
    for algo in algos:
        if algo not in ALGOS:
            raise SuiteError(path, "suite.algos", algo, f"unknown algorithm; expected one of {list(ALGOS)}")
    tasks = _list(path, "suite.tasks", head.get("tasks"))
    methods = _list(path, "suite.methods", head.get("methods"))
    return head, algos, tasks, methods


def check_methods(path: Path, methods: list[str]) -> None:
    """Every method is registered (after the suite's own modules were loaded)."""
    from rlx2.methods import method_descriptions

    registered = method_descriptions()
    for method in methods:
        if method not in registered:
            raise SuiteError(path, "suite.methods", method, f"unknown method; registered: {', '.join(registered)}")


def suite_modules(path: Path, head: dict[str, Any]) -> list[str]:
    """Load the suite's own method modules (``.py`` paths relative to the file); returns them resolved."""
    from rlx2.methods import load_module

    modules = head.get("modules", [])
    if not isinstance(modules, list):
        raise SuiteError(path, "suite.modules", modules, "must be a list of module names or .py paths")
    resolved = []
    for module in modules:
        spec = str((path.parent / module).resolve()) if str(module).endswith(".py") else module
        try:
            load_module(spec)
        except ValueError as exc:
            raise SuiteError(path, "suite.modules", module, str(exc)) from None
        resolved.append(spec)
    return resolved


def select_profile(path: Path, data: dict[str, Any], head: dict[str, Any], profile: str | None
                   ) -> tuple[str, dict[str, Any]]:
    """The chosen profile's name and table, its keys, budget and seed count checked."""
    profiles = data.get("profiles")
    if not isinstance(profiles, dict) or not profiles:
        raise SuiteError(path, "profiles", profiles, "at least one [profiles.<name>] table is required")
    profile = profile or head.get("default_profile") or next(iter(profiles))
    if profile not in profiles:
        raise SuiteError(path, "profile", profile, f"no such profile; the file has {sorted(profiles)}")
    prof, where = profiles[profile], f"profiles.{profile}"
    if not isinstance(prof, dict):
        raise SuiteError(path, where, prof, "must be a table")
    for key in prof:
        if key not in PROFILE_KEYS:
            raise SuiteError(path, f"{where}.{key}", prof[key], "unknown key")
    for key, limit in (("steps", MAX_STEPS), ("seeds", MAX_SEEDS)):
        value = prof.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
            raise SuiteError(path, f"{where}.{key}", value, f"must be an integer in [1, {limit:,}]")
    return profile, prof


def method_seeds(path: Path, where: str, prof: dict[str, Any], methods: list[str]) -> dict[str, int]:
    """Seed count per method: the profile's ``seeds``, or its ``method_seeds`` entry."""
    table = prof.get("method_seeds", {})
    if not isinstance(table, dict):
        raise SuiteError(path, f"{where}.method_seeds", table, "must be a table of method = seed count")
    for method, value in table.items():
        if method not in methods:
            raise SuiteError(path, f"{where}.method_seeds.{method}", value, f"not a method of the profile {methods}")
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_SEEDS:
            raise SuiteError(path, f"{where}.method_seeds.{method}", value, f"must be an integer in [1, {MAX_SEEDS:,}]")
    return {m: table.get(m, prof["seeds"]) for m in methods}


def primary_comparison(path: Path, where: str, prof: dict[str, Any], methods: list[str]) -> tuple[str, str] | None:
    """``primary = [X, Y]``: two different methods of the profile."""
    if "primary" not in prof:
        return None
    value = prof["primary"]
    if (not isinstance(value, list) or len(value) != 2 or value[0] == value[1]
            or not all(isinstance(m, str) and m in methods for m in value)):
        raise SuiteError(path, f"{where}.primary", value, f"must be [X, Y], two different methods of {methods}")
    return value[0], value[1]


def check_tasks(path: Path, tasks: list[str]) -> None:
    """Every task is a gymnasium continuous-control task rlx2 can train on."""
    from rlx2.envs import make_env

    for task in tasks:
        try:
            make_env(task).close()
        except ConfigError as exc:
            raise SuiteError(path, "suite.tasks", task, str(exc)) from None


def sparsities(path: Path, data: dict[str, Any], algos: list[str], tasks: list[str]) -> dict[str, dict[str, list]]:
    """``[sparsity.<algo>]``: an ``[actor, critic]`` pair in [0, 1) for every algorithm and task in use."""
    table = data.get("sparsity", {})
    for algo in algos:
        per_task = table.get(algo)
        if not isinstance(per_task, dict):
            raise SuiteError(path, f"sparsity.{algo}", per_task, "a table of \"<task>\" = [actor, critic] is required")
        for task in tasks:
            pair = per_task.get(task)
            if (not isinstance(pair, list) or len(pair) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)):
                raise SuiteError(path, f"sparsity.{algo}.{task}", pair, "must be [actor, critic] sparsities")
            for role, value in zip(("actor", "critic"), pair):
                if not is_sparsity(value):
                    raise SuiteError(path, f"sparsity.{algo}.{task}", pair, f"{role} sparsity {value} outside [0, 1)")
    return table


def expand(path: Path, algos: list[str], tasks: list[str], seeds: dict[str, int], steps: int,
           sparsity: dict[str, dict[str, list]], settings: dict[str, Any]) -> list[RunConfig]:
    """One checked RunConfig per algo x task x method x seed (``seeds``: count per method)."""
    runs = []
    for algo in algos:
        for task in tasks:
            actor_sp, critic_sp = sparsity[algo][task]
            for method, count in seeds.items():
                for seed in range(count):
                    values = {**settings, "algo": algo, "env": task, "method": method, "seed": seed,
                              "steps": steps, "actor_sparsity": float(actor_sp), "critic_sparsity": float(critic_sp)}
                    try:
                        cfg = RunConfig.from_dict(values)
                        cfg.validate()
                    except ConfigError as exc:
                        name = f"run {algo}/{task}/{method}/seed-{seed}"
                        raise SuiteError(path, name, getattr(exc, "value", None), str(exc)) from None
                    runs.append(cfg)
    return runs


def added_methods(path: Path, profile: str, methods: list[str], add: tuple[str, ...]) -> list[str]:
    """Methods given with ``--add-method``: registered (a user's module loaded first), new to the profile, once each."""
    from rlx2.methods import method_descriptions

    registered = method_descriptions()
    for i, name in enumerate(add):
        if name not in registered:
            raise ConfigError("add_method", name, f"unknown method; registered: {', '.join(registered)} "
                                                  "(--methods-module FILE loads a method of your own)")
        if name in methods:
            raise ConfigError("add_method", name, f"already a method of profile {profile} of {path}")
        if name in add[:i]:
            raise ConfigError("add_method", name, "given twice")
    return list(add)


def load_suite(name_or_path: str, profile: str | None = None, add_methods: tuple[str, ...] = ()) -> Suite:
    """Read, validate and expand a suite file, with ``add_methods`` beside the profile's methods (at the profile's
    seeds and settings); raises SuiteError (a bad file) or ConfigError (a bad method to add) before anything runs."""
    path, data = read_suite_file(name_or_path)
    head, algos, tasks, methods = suite_head(path, data)
    modules = suite_modules(path, head)
    check_methods(path, methods)
    profile, prof = select_profile(path, data, head, profile)
    where = f"profiles.{profile}"
    algos = _subset(path, f"{where}.algos", prof["algos"], algos) if "algos" in prof else algos
    tasks = _subset(path, f"{where}.tasks", prof["tasks"], tasks) if "tasks" in prof else tasks
    methods = _subset(path, f"{where}.methods", prof["methods"], methods) if "methods" in prof else methods
    seeds = method_seeds(path, where, prof, methods)
    added = added_methods(path, profile, methods, tuple(add_methods))
    seeds.update({name: prof["seeds"] for name in added})
    total = len(algos) * len(tasks) * sum(seeds.values())
    if total > MAX_RUNS:
        raise SuiteError(path, "runs", total, f"algos x tasks x methods x seeds must be at most {MAX_RUNS:,}")
    check_tasks(path, tasks)
    sparsity = sparsities(path, data, algos, tasks)
    settings = {**_settings(path, "settings", data.get("settings", {})),
                **_settings(path, f"{where}.settings", prof.get("settings", {}))}
    runs = expand(path, algos, tasks, seeds, prof["steps"], sparsity, settings)
    return Suite(path.stem, path, profile, tuple(runs), tuple(modules),
                 str(prof.get("description", head.get("description", ""))), seeds,
                 primary_comparison(path, where, prof, methods), tuple(added))
