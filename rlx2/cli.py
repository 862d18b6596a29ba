"""The ``rlx2`` command line (argparse): ``run``, ``evaluate``, ``export``, ``flops``, ``methods``, ``schema``,
``suite run | status | plan | list``, ``report`` and ``runs``.

``rlx2 run`` flags are generated from ``RunConfig``'s fields, so every hyperparameter of the
spec is overridable and the help text lives next to the default. Settings can also come
from a TOML file (``--config``; flags override it). Every value is checked by
``RunConfig``'s types before anything is written.

Every error is one line on stderr, ``rlx2 <command>: <what>``: bad input (argparse's own
complaints included, with a pointer to ``--help`` instead of the usage) exits 2; a fault or
a refusal (a run held by another process, a full disk, a report that would replace a fuller
one) exits 1; an interruption (Ctrl-C, SIGTERM, SIGHUP) exits 130 after cleaning up. Heavy
libraries (torch, gymnasium, pandas) are imported by the commands that use them, so
``--version``, ``--help``, ``methods`` and ``schema`` answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import signal
import sys
import threading
import time
import types
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path

from rlx2 import __version__
from rlx2.config import DEFAULT_REPS, MAX_SEED, ConfigError, RunConfig
from rlx2.suite import SuiteError

EXIT_BAD_INPUT, EXIT_FAULT, EXIT_INTERRUPTED = 2, 1, 130
_STARTED = time.perf_counter()  # progress lines count from here: imports are part of the wait


class CommandFailed(Exception):
    """Ends a command with one line ``rlx2 <command>: <message>`` and exit status ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAULT) -> None:
        super().__init__(message)
        self.code = code


class Interrupted(BaseException):
    """SIGTERM or SIGHUP, raised where the command is so that its clean-up runs (as Ctrl-C's KeyboardInterrupt).

    A BaseException, as KeyboardInterrupt is: a library's ``except Exception`` (matplotlib's, Ray's) must not
    swallow or convert it into another error when the signal lands inside the library's code."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line naming the command, with a pointer to ``--help`` instead of the usage."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: {message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None) -> argparse.Namespace:
        """Unknown arguments are reported by the command they were given to (argparse blames the top level)."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            prog = " ".join([self.prog, *(getattr(parsed, k) for k in ("command", "suite_command")
                                          if getattr(parsed, k, None))])
            self.exit(EXIT_BAD_INPUT, f"{prog}: unrecognized arguments: {' '.join(extras)} (see {prog} --help)\n")
        return parsed


def _integer(text: str) -> int:
    """An integer, also written as ``3e6`` or ``100_000``."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}")
    return int(value)


def _lenient(convert):
    """A config flag's parser: the converted value, or the text itself for ``RunConfig`` to reject by name."""
    def parse(text: str):
        try:
            return convert(text)
        except (ValueError, argparse.ArgumentTypeError):
            return text
    return parse


def _kind(hint) -> type | str:
    """``int``, ``float``, ``bool``, ``str`` or ``"tuple"``: what a field's flag parses its text as."""
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return _kind(typing.get_args(hint)[0])
    if origin in (typing.Union, types.UnionType):
        return _kind(next(a for a in typing.get_args(hint) if a is not type(None)))
    if origin is typing.Literal:
        return str
    if origin is tuple:
        return "tuple"
    return hint


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per ``RunConfig`` field; a flag left out stays None (= not given), so a file or the default applies."""
    hints = typing.get_type_hints(RunConfig, include_extras=True)
    parser.add_argument("--config", metavar="FILE.toml", default=None,
                        help="read settings from a TOML file of RunConfig fields (flags given here override it)")
    for f in dataclasses.fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = _kind(hints[f.name])
        help_text = f.metadata["help"].replace("%", "%%")  # argparse formats help with %
        if f.default is not None and "default" not in help_text:
            shown = " ".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
            help_text += f" (default: {shown})"
        if kind == "tuple":
            parser.add_argument(flag, type=_lenient(_integer), nargs="+", default=None, help=help_text)
        elif kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            convert = _lenient({int: _integer, float: float, str: str}[kind])
            parser.add_argument(flag, type=convert, default=None, help=help_text)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run's config: defaults, then the ``--config`` file, then the flags given. Raises ConfigError."""
    values: dict[str, typing.Any] = {}
    if args.config is not None:
        values.update(read_config_file(Path(args.config)))
    for f in dataclasses.fields(RunConfig):
        given = getattr(args, f.name)
        if given is not None:
            values[f.name] = tuple(given) if isinstance(given, list) else given
    return RunConfig.from_dict(values)


def read_config_file(path: Path) -> dict[str, typing.Any]:
    """The settings of a ``--config`` TOML file: top-level keys that are RunConfig fields."""
    import tomllib

    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError("config", str(path), f"cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError("config", str(path), "is not a text (TOML) file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", str(path), f"is not valid TOML ({exc})") from None
    known = {f.name for f in dataclasses.fields(RunConfig)}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(key, value, f"unknown setting in {path}")
    return data


class _ShowDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Append "(default: X)" to every flag's help except where the default is None (said in the help)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help if action.default is None else super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rlx2", description="Sparse deep RL from scratch: RLx2 and its baselines.")
    parser.add_argument("--version", action="version", version=f"rlx2 {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="one training run", formatter_class=_ShowDefaults)
    run.add_argument("--out", default="results/adhoc", help="results root; the run goes to <out>/<algo>/<env>/<method>/seed-<k>")
    _methods_module_flag(run)
    run.add_argument("--overwrite", action="store_true", help="redo a run that already finished")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_flags(run)

    evaluate = sub.add_parser("evaluate", help="evaluate a finished run's agent (optionally render or record it)",
                              formatter_class=_ShowDefaults)
    evaluate.add_argument("run_dir", help="a finished run's directory (holding config.json and model.pt)")
    evaluate.add_argument("--episodes", type=_integer, default=None, help="episodes (default: the run's eval-episodes)")
    evaluate.add_argument("--seed", type=_integer, default=None,
                          help="seed the environment is reset with first (default: the run's evaluation seed, seed+100)")
    evaluate.add_argument("--video", default=None, metavar="DIR", help="record every episode as MP4 into DIR")
    evaluate.add_argument("--render", action="store_true", help="show the episodes in a window")
    evaluate.add_argument("--json", action="store_true", help="print one JSON line instead of a sentence")
    evaluate.add_argument("--policy", default=None, metavar="FILE",
                          help="act with a file of `rlx2 export` (.npz or .onnx) instead of the run's agent")
    _methods_module_flag(evaluate)

    export = sub.add_parser("export", help="a finished run's actor as a file that runs without torch (.npz) or as ONNX",
                            formatter_class=_ShowDefaults)
    export.add_argument("run_dir", help="a finished run's directory (holding config.json and model.pt)")
    export.add_argument("--out", required=True, metavar="FILE",
                        help="where to write; the suffix picks the format: .npz (numpy, CSR weights) or .onnx")
    export.add_argument("--json", action="store_true", help="print one JSON line instead of a sentence")
    _methods_module_flag(export)

    flops = sub.add_parser("flops", help="model size and FLOPs of a method, from shapes and masks alone",
                           formatter_class=_ShowDefaults)
    flops.add_argument("--obs-dim", type=_integer, required=True, help="observation size")
    flops.add_argument("--act-dim", type=_integer, required=True, help="action size")
    flops.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _methods_module_flag(flops)
    _add_config_flags(flops)

    suite = sub.add_parser("suite", help="run a suite of runs (suites/<name>.toml), see its status, list suites")
    suite_sub = suite.add_subparsers(dest="suite_command", required=True, metavar="{run,status,plan,list}")
    suite_run = suite_sub.add_parser("run", help="run every unfinished run of a suite profile (resumable)")
    suite_status = suite_sub.add_parser("status", help="done / running / corrupt / failed / partial / pending per run")
    suite_plan = suite_sub.add_parser("plan", help="seeds each of the paper's comparisons needs, from the records so far")
    for p in (suite_run, suite_status, suite_plan):
        p.add_argument("suite", help="suite name (suites/<name>.toml) or path to a .toml file")
        p.add_argument("--profile", default=None, help="profile of the suite file (default: its default_profile)")
        p.add_argument("--results", default=None, help="results directory (default: results/<suite>/<profile>)")
        _add_method_flags(p)
    suite_run.add_argument("--executor", choices=("local", "ray"), default="local")
    suite_run.add_argument("--workers", type=_integer, default=None, help="local: parallel runs (default: cores)")
    suite_status.add_argument("--workers", type=_integer, default=None,
                              help="parallel runs the wall-clock estimate assumes (default: cores, as suite run)")
    suite_run.add_argument("--address", default=None, help="ray: cluster address ('auto' for a running cluster)")
    suite_run.add_argument("--retries", type=_integer, default=2, help="retries of a crashed run (each resumes)")
    suite_run.add_argument("--retry-failed", action="store_true", help="also rerun runs recorded as diverged")
    suite_run.add_argument("--quiet", action="store_true", help="no progress bar or per-run lines; only the summary")
    suite_run.add_argument("--report", action="store_true", help="write the report when the runs end (even if some failed)")
    suite_plan.add_argument("--spread", type=float, default=None, metavar="FRACTION",
                            help="assume every method's SD over seeds is this fraction of dense's mean "
                                 "(default: the spread measured in the records)")
    suite_plan.add_argument("--seed", type=_integer, default=0, help="seed of the power simulation")
    suite_sub.add_parser("list", help="the suite files and their profiles")

    report = sub.add_parser("report", help="tables and figures of a suite's results (reports/<suite>/<profile>) "
                                           "or of any directory of runs (--runs)")
    report.add_argument("suite", nargs="?", default=None,
                        help="suite name (suites/<name>.toml) or path to a .toml file (or give --runs)")
    report.add_argument("--runs", default=None, metavar="DIR",
                        help="report every run directory found under DIR instead of a suite's, grouped by algorithm, "
                             "task and method (default --out: reports/<DIR's name>)")
    report.add_argument("--profile", default=None)
    report.add_argument("--results", default=None, help="results directory (default: results/<suite>/<profile>)")
    report.add_argument("--out", default=None, help="report directory (default: reports/<suite>/<profile>)")
    report.add_argument("--reps", type=_integer, default=DEFAULT_REPS, help="bootstrap replications")
    report.add_argument("--seed", type=_integer, default=0, help="seed of every bootstrap")
    report.add_argument("--force", action="store_true",
                        help="replace an existing report even if it was built from more finished runs")
    report.add_argument("--allow-missing", action="store_true",
                        help="exit 0 although some of the profile's runs have not finished (they are listed)")
    _add_method_flags(report)

    runs = sub.add_parser("runs", help="list the run directories under DIR: method, task, seed, steps, score, state")
    runs.add_argument("dir", metavar="DIR", help="a directory of run directories (any depth), e.g. results/adhoc")
    runs.add_argument("--records", action="store_true",
                      help="print only the record files of every finished run, one path per line (config.json, "
                           "evaluations.csv, topology.csv, diagnostics.csv, result.json; never checkpoints or "
                           "models), e.g. for `xargs git add -f`")

    methods = sub.add_parser("methods", help="list the registered methods")
    _methods_module_flag(methods)
    sub.add_parser("schema", help="print the JSON schema of a run's settings (types, ranges, choices)")
    return parser


def _methods_module_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--methods-module", action="append", default=[], metavar="MODULE",
                        help="extra module (dotted name or .py path) defining methods; repeatable")


def _add_method_flags(parser: argparse.ArgumentParser) -> None:
    _methods_module_flag(parser)
    parser.add_argument("--add-method", action="append", default=[], metavar="NAME",
                        help="add a registered method to the profile's (its seeds and settings): suite run runs only "
                             "its runs, beside the finished ones; report and status show it with the others; "
                             "repeatable")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = f"rlx2 {args.command}" + (f" {args.suite_command}" if args.command == "suite" else "")
    handlers = {"run": _run, "evaluate": _evaluate, "flops": _flops, "methods": _methods, "schema": _schema,
                "suite": _suite, "report": _report_command, "runs": _runs, "export": _export}
    try:
        with _signals_raise():
            _load_methods_modules(args)
            return handlers[args.command](parser, args)
    except (ConfigError, SuiteError) as exc:  # bad input, named
        print(f"{command}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None
    except CommandFailed as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        if exc.code == EXIT_BAD_INPUT:
            raise SystemExit(EXIT_BAD_INPUT) from None
        return exc.code
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"{command}: interrupted" + (f" ({exc})" if str(exc) else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `rlx2 runs DIR | head`: the reader has gone, which is no error
        sys.stdout = open("/dev/null", "w")
        return 0
    except OSError as exc:  # a full disk, a directory that became unwritable, a name too long: say where
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{command}: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAULT
    except RuntimeError as exc:
        from rlx2.records import RunLocked

        if not isinstance(exc, RunLocked):
            raise
        print(f"{command}: {exc} (wait for it, or use another --out)", file=sys.stderr)
        return EXIT_FAULT


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP raise ``Interrupted`` where the command is (as Ctrl-C raises KeyboardInterrupt), so a
    report's staging directory, a run's logs and lock, a suite's workers are cleaned up on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _load_methods_modules(args: argparse.Namespace) -> None:
    """Import each ``--methods-module`` (a module's own error, named, is bad input)."""
    modules = getattr(args, "methods_module", [])
    if not modules:
        return
    from rlx2.methods import load_module

    for module in modules:
        try:
            load_module(module)
        except ValueError as exc:  # names the module and its error line
            raise CommandFailed(str(exc), EXIT_BAD_INPUT) from None


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from rlx2.train import RunAlreadyFinished, RunSettingsMismatch, prepare, run

    cfg = config_from_args(args)
    _refuse_unhonoured(cfg, _given(args))
    _path("out", args.out)
    prepared = prepare(cfg, args.out)  # every input checked before any file is written
    try:
        result = run(prepared, progress=not args.quiet, overwrite=args.overwrite)
    except (RunAlreadyFinished, RunSettingsMismatch) as exc:
        raise CommandFailed(str(exc)) from None
    print(json.dumps({k: result[k] for k in ("run_id", "final_score", "final_window", "steps_per_second")}))
    return 0


def _given(args: argparse.Namespace) -> set[str]:
    """The settings given for this run, by flag or ``--config`` file (the rest are defaults)."""
    given = {f.name for f in dataclasses.fields(RunConfig) if getattr(args, f.name, None) is not None}
    return given | (set(read_config_file(Path(args.config))) if args.config else set())


def _refuse_unhonoured(cfg: RunConfig, given: set[str]) -> None:
    """A sparsity given to a method that trains dense networks would be recorded but never used: refuse it."""
    from rlx2.methods import get_method

    if get_method(cfg.method).uses_sparsity:
        return
    for name in ("actor_sparsity", "critic_sparsity"):
        if name in given:
            raise ConfigError(name, getattr(cfg, name), f"the {cfg.method} method trains dense networks and cannot "
                                                        "honour a sparsity; leave it out")


def _evaluate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from rlx2.evaluation import evaluate_run

    if args.episodes is not None and not 1 <= args.episodes <= 10_000:
        raise ConfigError("episodes", args.episodes, "must be an integer in [1, 10 000]")
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        raise ConfigError("seed", args.seed, f"must be an integer in [0, {MAX_SEED:,}]")
    if args.video is not None:
        _path("video", args.video)
    if args.render and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        # GLFW would abort the process (a C assertion, no Python error) without one
        raise ConfigError("render", True, "needs a display (neither DISPLAY nor WAYLAND_DISPLAY is set); "
                                          "record the episodes with --video DIR instead")
    if args.policy is None:
        got = evaluate_run(args.run_dir, args.episodes, args.seed, args.video, args.render)
    else:
        from rlx2.deploy import PolicyFileError

        try:
            got = evaluate_run(args.run_dir, args.episodes, args.seed, args.video, args.render, policy=args.policy)
        except PolicyFileError as exc:
            raise CommandFailed(f"--policy={exc}", EXIT_BAD_INPUT) from None
    if args.json:
        print(json.dumps(got))
    else:
        print(f"{got['run_dir']}: mean return {got['mean_return']:.1f} +- {got['std_return']:.1f} over "
              f"{got['episodes']} episodes (env seed {got['seed']})" + (f"; policy {args.policy}" if args.policy else "")
              + (f"; videos in {args.video}" if args.video else ""))
    return 0


def _export(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Bad input (a path, a run directory, a missing package) is one line ``rlx2 export: ...`` and exit 2; a full
    disk is ``main``'s one line naming the file (nothing is left behind)."""
    from rlx2.export import ExportError, export_run

    try:
        got = export_run(args.run_dir, args.out)
    except ExportError as exc:
        raise CommandFailed(str(exc), EXIT_BAD_INPUT) from None
    if args.json:
        print(json.dumps(got))
    else:
        densities = ", ".join(f"{layer['density']:.3f}" for layer in got["layers"])
        print(f"{got['out']}: {got['format']}, {got['bytes']:,} bytes, actor of run {got['run_id']} "
              f"({100 * got['actor_sparsity']:.1f} % sparse; layer densities {densities})")
    return 0


def _methods(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from rlx2.methods.registry import method_descriptions  # names and descriptions only: no torch

    methods = method_descriptions()
    width = max(map(len, methods))
    for name, description in methods.items():
        print(f"{name:<{width}}  {description}")
    return 0


def _schema(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    print(json.dumps(RunConfig.json_schema(), indent=2, sort_keys=True))
    return 0


def _flops(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import torch

    from rlx2.agents import make_agent
    from rlx2.methods import resolve
    from rlx2.sparse.flops import flops_report

    cfg = config_from_args(args)
    cfg.validate()
    for name in ("obs_dim", "act_dim"):
        if not 1 <= getattr(args, name) <= 100_000:
            raise ConfigError(name, getattr(args, name), "must be a positive integer (at most 100 000)")
    cfg, method = resolve(cfg)
    agent = make_agent(cfg.algo, cfg=cfg, method=method, obs_dim=args.obs_dim, act_dim=args.act_dim,
                       generator=torch.Generator().manual_seed(cfg.seed))
    report = flops_report(cfg, args.obs_dim, args.act_dim, method.training_cost(cfg, agent))
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0
    print(f"{cfg.algo} / {cfg.method}: obs {args.obs_dim}, act {args.act_dim}, actor sparsity {cfg.actor_sparsity}, "
          f"critic sparsity {cfg.critic_sparsity}, {cfg.steps:,} steps ({cfg.warmup_steps:,} warm-up)")
    print(f"  model size          {report['size']:.3f}x  ({report['model_weights']:,.0f} of "
          f"{report['dense_model_weights']:,.0f} weights)")
    print(f"  inference FLOPs     {report['inference_flops_relative']:.3f}x  ({report['inference_flops']:,.0f} per action)")
    print(f"  training FLOPs      {report['training_flops_relative']:.3f}x  ({report['training_flops']:.3e} per run, "
          f"{report['training_flops_per_step']:.3e} per env step)")
    print(f"  topology updates    {report['topology_updates']}")
    return 0


# -- suites and reports ----------------------------------------------------------------------


def _suite(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.suite_command == "list":
        return _suite_list()
    for name in ("workers", "retries"):
        value = getattr(args, name, None)
        if value is not None and value < (0 if name == "retries" else 1):
            raise ConfigError(name, value, "must be >= 0" if name == "retries" else "must be a positive integer")
    suite, results = _load_suite(args)
    if args.suite_command == "status":
        return _suite_status(suite, results, args.workers)
    if args.suite_command == "plan":
        return _suite_plan(suite, results, args.spread, args.seed)
    return _suite_run(args, suite, results)


def _load_suite(args: argparse.Namespace):
    """The suite profile (with ``--add-method``'s methods) and its results directory; bad input raises."""
    from rlx2.suite import load_suite

    suite = load_suite(args.suite, args.profile, tuple(args.add_method))
    results = _path("results", args.results) if args.results is not None else (
        Path("results") / suite.name / suite.profile)
    if results.exists() and not results.is_dir():
        raise ConfigError("results", str(results), "is a file, not a results directory")
    return suite, results


def _path(name: str, text: str) -> Path:
    """A path argument; an empty one is bad input (it would silently mean the current directory)."""
    if not text.strip():
        raise ConfigError(name, text, "is empty: name a directory")
    return Path(text)


def _suite_list() -> int:
    from rlx2.suite import available_suites, suite_listing

    for path in available_suites():
        print(suite_listing(path))
    return 0


def _suite_status(suite, results: Path, workers: int | None = None) -> int:
    from rlx2.config import run_id
    from rlx2.executors import STATES, run_state, steps_logged
    from rlx2.records import RunDirectory
    from rlx2.results import config_problem, other_settings, read_evaluations
    from rlx2.run_costs import measured_hours, remaining

    states = []
    for cfg in suite.runs:
        run_dir = RunDirectory(results / run_id(cfg))
        mismatch = other_settings(cfg, run_dir)
        corrupt = config_problem(run_dir) or (read_evaluations(run_dir.evaluations_file)[1]
                                              if run_dir.finished else None)
        states.append((run_id(cfg), *(("mismatch", mismatch) if mismatch else ("corrupt", corrupt) if corrupt
                                      else run_state(run_dir))))
    width = max(len(name) for name, _, _ in states)
    for name, state, detail in states:
        print(f"{name:<{width}}  {state:<8} {detail}")
    counts = {s: sum(1 for _, state, _ in states if state == s) for s in ("mismatch", *STATES)}
    print(", ".join(f"{n} {s}" for s, n in counts.items() if n or s != "mismatch") + f" of {len(states)} ({results})")
    # what `suite run` would still run: failed runs only with --retry-failed, mismatched ones never
    unfinished = [(cfg, steps_logged(RunDirectory(results / name)) if state in ("running", "partial") else 0)
                  for cfg, (name, state, _) in zip(suite.runs, states) if state in ("running", "partial", "pending",
                                                                                     "corrupt")]
    hours = measured_hours(suite.runs, results)
    print(remaining(unfinished, hours).text(hours, workers))
    return 0


def _suite_plan(suite, results: Path, spread: float | None, seed: int) -> int:
    """Print what each of the profile's comparisons needs (``rlx2.comparisons``), from whatever records exist."""
    import pandas as pd

    from rlx2.report import PLAN_NOTE, markdown, plan_table
    from rlx2.results import collect, final_scores
    from rlx2.run_costs import measured_hours

    if spread is not None and not (math.isfinite(spread) and 0 < spread <= 100):
        raise ConfigError("spread", spread, "must be a fraction of dense's mean in (0, 100]")
    _check_settings(list(suite.runs), results)
    table = collect(list(suite.runs), results, suite.name, suite.profile).table
    finals = final_scores(table) if not table.empty else pd.DataFrame()
    plan = plan_table(finals, list(suite.runs), suite.primary, spread, seed, added=suite.added,
                      hours=measured_hours(suite.runs, results))
    print(f"suite {suite.name}, profile {suite.profile}" + (
        f"; primary comparison: {suite.primary[0]} beats {suite.primary[1]}" if suite.primary else ""))
    print()
    print(PLAN_NOTE if spread is None else PLAN_NOTE.replace(
        "spread as measured here (each method's SD over its seeds; a method with one seed takes the task's pooled SD)",
        f"spread with an SD of {spread:g} x dense's mean (--spread)"))
    print(markdown(plan) if not plan.empty else "No pair of the paper's methods in this profile.\n", end="")
    return 0


def _check_settings(runs: list, results: Path, paths: dict[str, Path] | None = None) -> None:
    """Refuse run directories holding runs with other settings than the profile's (what ``suite run`` refuses),
    in one line naming the first one's config.json."""
    from rlx2.config import run_id
    from rlx2.records import RunDirectory
    from rlx2.results import other_settings

    problems = [problem for cfg in runs
                if (problem := other_settings(cfg, RunDirectory((paths or {}).get(run_id(cfg), results / run_id(cfg)))))]
    if problems:
        more = f" ({len(problems) - 1} more run directories like it)" if len(problems) > 1 else ""
        raise CommandFailed(f"{problems[0]}{more}; not the profile's runs: use the --results directory of "
                            "those settings, or another one", EXIT_BAD_INPUT)


def _check_can_train(runs: list, results: Path) -> None:
    """Every run still to train can train here (its method's optional packages), checked before any run starts."""
    from rlx2.config import run_id
    from rlx2.methods import resolve
    from rlx2.records import RunDirectory

    for cfg in runs:
        if not RunDirectory(results / run_id(cfg)).finished:
            resolved, method = resolve(cfg)
            method.check_can_train(resolved)


def _suite_run(args: argparse.Namespace, suite, results: Path) -> int:
    from rlx2.executors import LocalExecutor, RayExecutor, execute
    from rlx2.records import writable_directory

    problem = writable_directory(results)
    if problem:
        raise ConfigError("results", str(results), problem)
    runs = list(suite.runs_of(suite.added) if suite.added else suite.runs)
    _check_settings(runs, results)
    _check_can_train(runs, results)
    if not args.quiet:
        added = f" ({', '.join(suite.added)} only, beside the profile's other runs)" if suite.added else ""
        print(f"suite {suite.name}, profile {suite.profile}: {len(runs)} runs{added} -> {results}", file=sys.stderr)
    if args.executor == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError("executor", "ray", "needs Ray (pip install 'rlx2[ray]')")
    executor = (RayExecutor(args.address, args.retries, args.quiet) if args.executor == "ray"
                else LocalExecutor(args.workers, args.retries, args.quiet))
    outcome = execute(executor, runs, results, (*suite.modules, *_module_paths(args)), retry_failed=args.retry_failed)
    print(outcome.summary())
    if args.report:
        _report(suite, results, None, DEFAULT_REPS, 0, force=False, allow_missing=True)  # failures already set the exit code
    return 0 if outcome.ok else 1


def _module_paths(args: argparse.Namespace) -> tuple[str, ...]:
    """``--methods-module`` values as the workers must load them (a .py path made absolute)."""
    return tuple(str(Path(m).resolve()) if m.endswith(".py") else m for m in args.methods_module)


def _report_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.reps < 1:
        raise ConfigError("reps", args.reps, "must be a positive integer")
    out = _path("out", args.out) if args.out is not None else None
    if args.runs is not None:
        if args.suite is not None or args.profile or args.results or args.add_method:
            raise ConfigError("runs", args.runs, "reports the runs under a directory: give it without a suite, "
                                                 "--profile, --results or --add-method")
        return _report_runs(_path("runs", args.runs), out, args)
    if args.suite is None:
        raise CommandFailed("give a suite (e.g. rlx2 report mujoco) or --runs DIR", EXIT_BAD_INPUT)
    suite, results = _load_suite(args)
    if not results.is_dir():
        raise ConfigError("results", str(results), "no such directory (run the suite first, or pass --results)")
    return _report(suite, results, out, args.reps, args.seed, force=args.force, allow_missing=args.allow_missing)


def _report_runs(root: Path, out: Path | None, args: argparse.Namespace) -> int:
    """``rlx2 report --runs DIR``: the same tables and figures from whatever run directories lie under DIR."""
    from types import SimpleNamespace

    from rlx2.results import runs_from_directory

    if not root.is_dir():
        raise ConfigError("runs", str(root), "no such directory")
    try:
        runs, paths, skipped = runs_from_directory(root)
    except ValueError as exc:
        raise CommandFailed(str(exc), EXIT_BAD_INPUT) from None
    for line in skipped:
        print(f"rlx2 report: {line}", file=sys.stderr)
    if not runs:
        raise ConfigError("runs", str(root), "holds no run directory (a folder with a config.json)")
    name = root.resolve().name or "runs"
    suite = SimpleNamespace(name="runs", profile=name, runs=tuple(runs), description=f"Every run found under `{root}`.",
                            primary=None, added=())
    code = _report(suite, root, out or Path("reports") / name, args.reps, args.seed, force=args.force,
                   allow_missing=args.allow_missing, paths=paths)
    return code or (EXIT_FAULT if skipped and not args.allow_missing else 0)


def _report(suite, results: Path, out: Path | None, reps: int, seed: int, *, force: bool, allow_missing: bool,
            paths: dict[str, Path] | None = None) -> int:
    """Write the report; 1 when it is refused, or when runs are missing and that is not allowed."""
    from rlx2.records import writable_directory
    from rlx2.report import ReportRefused, build_report, report_out_problem
    from rlx2.scores import ReportSettings

    out = out or Path("reports") / suite.name / suite.profile
    problem = report_out_problem(out) or writable_directory(out.parent)
    if problem:
        raise ConfigError("out", str(out), problem)

    def progress(phase: str) -> None:  # on a terminal: what it is doing, and since when
        if sys.stderr.isatty():
            print(f"rlx2 report: [{time.perf_counter() - _STARTED:5.1f} s] {phase}", file=sys.stderr, flush=True)

    progress(f"checking the settings of {len(suite.runs)} run directories")
    _check_settings(list(suite.runs), results, paths)
    try:
        summary = build_report(suite.name, suite.profile, list(suite.runs), results, out, ReportSettings(reps, seed),
                               suite.description, force=force, primary=suite.primary, added=suite.added, paths=paths,
                               progress=progress)
    except ReportRefused as exc:
        raise CommandFailed(str(exc)) from None
    for name in summary["missing"]:
        reason = summary["failed"].get(name, "")
        if reason.startswith("corrupt record: "):  # the problem names its file
            what = reason.removeprefix("corrupt record: ")
        elif reason.startswith("corrupt result record: "):
            what = f"{(paths or {}).get(name, results / name) / 'result.json'}: " + reason.split(": ", 1)[1]
        else:
            continue
        print(f"rlx2 report: {what}; the run is left out (listed in the report)", file=sys.stderr)
    print(f"report: {out}/index.md ({summary['finished']} of {summary['expected']} runs finished"
          + (f"; {len(summary['missing'])} missing, listed in the report)" if summary["missing"] else ")"))
    if summary["missing"] and not allow_missing:
        print(f"rlx2 report: {len(summary['missing'])} of the runs have not finished "
              "(--allow-missing accepts that)", file=sys.stderr)
        return EXIT_FAULT
    return 0


def _runs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``rlx2 runs DIR``: one line per run directory under DIR (what, how far, how well, in what state)."""
    from rlx2.executors import run_state, steps_logged
    from rlx2.records import RECORD_FILES, RunDirectory
    from rlx2.results import config_problem, find_run_dirs, read_evaluations

    root = _path("dir", args.dir)
    if not root.is_dir():
        raise ConfigError("dir", args.dir, "not a directory" if root.exists() else "no such directory")
    rows = []
    for path in find_run_dirs(root):
        run_dir = RunDirectory(path)
        problem = config_problem(run_dir)
        if problem:
            rows.append((str(path.relative_to(root)), "?", "?", "?", "?", "-", "-", "corrupt", problem))
            continue
        cfg = RunConfig.from_dict(run_dir.saved_config()["config"])
        state, detail = run_state(run_dir)
        curve_problem = read_evaluations(run_dir.evaluations_file)[1] if state == "done" else None
        if curve_problem:
            state, detail = "corrupt", curve_problem
        if args.records:
            if state == "done":
                print("\n".join(str(path / name) for name in RECORD_FILES if (path / name).is_file()))
            continue
        result = run_dir.result()
        done = steps_logged(run_dir) if result is None else result.steps
        score = "-" if result is None else f"{result.final_score:.1f}"
        rows.append((str(path.relative_to(root)) if path != root else ".", cfg.algo, cfg.env, cfg.method,
                     str(cfg.seed), f"{done:,}/{cfg.steps:,}", score, state,
                     "" if state == "done" else detail))
    if args.records:
        return 0
    if not rows:
        print(f"no run directories under {root}")
        return 0
    header = ("run", "algo", "task", "method", "seed", "steps", "score", "state", "")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    states = [row[7] for row in rows]
    print(", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states)) + f" of {len(rows)} ({root})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
