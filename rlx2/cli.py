"""The ``rlx2`` command line (argparse): ``run``, ``evaluate``, ``export``, ``flops``, ``methods``, ``schema``,
``suite run | status | list`` and ``report``.

``rlx2 run`` flags are generated from ``RunConfig``'s fields, so every hyperparameter of the
spec is overridable and the help text lives next to the default. Settings can also come
from a TOML file (``--config``; flags override it). Every value is checked by
``RunConfig``'s types before anything is written; bad input exits with status 2 and one
line ``field=value: reason``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path

from rlx2 import __version__
from rlx2.config import ConfigError, RunConfig

EXIT_BAD_INPUT = 2


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
    parser = argparse.ArgumentParser(prog="rlx2", description="Sparse deep RL from scratch: RLx2 and its baselines.")
    parser.add_argument("--version", action="version", version=f"rlx2 {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="one training run", formatter_class=_ShowDefaults)
    run.add_argument("--out", default="results/adhoc", help="results root; the run goes to <out>/<algo>/<env>/<method>/seed-<k>")
    run.add_argument("--methods-module", action="append", default=[], metavar="MODULE",
                     help="extra module (dotted name or .py path) defining methods; repeatable")
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
    evaluate.add_argument("--methods-module", action="append", default=[], metavar="MODULE")

    export = sub.add_parser("export", help="a finished run's actor as a file that runs without torch (.npz) or as ONNX",
                            formatter_class=_ShowDefaults)
    export.add_argument("run_dir", help="a finished run's directory (holding config.json and model.pt)")
    export.add_argument("--out", required=True, metavar="FILE",
                        help="where to write; the suffix picks the format: .npz (numpy, CSR weights) or .onnx")
    export.add_argument("--json", action="store_true", help="print one JSON line instead of a sentence")
    export.add_argument("--methods-module", action="append", default=[], metavar="MODULE")

    flops = sub.add_parser("flops", help="model size and FLOPs of a method, from shapes and masks alone",
                           formatter_class=_ShowDefaults)
    flops.add_argument("--obs-dim", type=_integer, required=True, help="observation size")
    flops.add_argument("--act-dim", type=_integer, required=True, help="action size")
    flops.add_argument("--json", action="store_true", help="print JSON instead of a table")
    flops.add_argument("--methods-module", action="append", default=[], metavar="MODULE")
    _add_config_flags(flops)

    suite = sub.add_parser("suite", help="run a suite of runs (suites/<name>.toml), see its status, list suites")
    suite_sub = suite.add_subparsers(dest="suite_command", required=True)
    suite_run = suite_sub.add_parser("run", help="run every unfinished run of a suite profile (resumable)")
    suite_status = suite_sub.add_parser("status", help="done / running / corrupt / failed / partial / pending per run")
    suite_plan = suite_sub.add_parser("plan", help="seeds each of the paper's comparisons needs, from the records so far")
    for p in (suite_run, suite_status, suite_plan):
        p.add_argument("suite", help="suite name (suites/<name>.toml) or path to a .toml file")
        p.add_argument("--profile", default=None, help="profile of the suite file (default: its default_profile)")
        p.add_argument("--results", default=None, help="results directory (default: results/<suite>/<profile>)")
    suite_run.add_argument("--executor", choices=("local", "ray"), default="local")
    suite_run.add_argument("--workers", type=_integer, default=None, help="local: parallel runs (default: cores)")
    suite_run.add_argument("--address", default=None, help="ray: cluster address ('auto' for a running cluster)")
    suite_run.add_argument("--retries", type=_integer, default=2, help="retries of a crashed run (each resumes)")
    suite_run.add_argument("--retry-failed", action="store_true", help="also rerun runs recorded as diverged")
    suite_run.add_argument("--quiet", action="store_true", help="no progress bar; only the summary")
    suite_run.add_argument("--report", action="store_true", help="write the report when the runs end (even if some failed)")
    suite_plan.add_argument("--spread", type=float, default=None, metavar="FRACTION",
                            help="assume every method's SD over seeds is this fraction of dense's mean "
                                 "(default: the spread measured in the records)")
    suite_plan.add_argument("--seed", type=_integer, default=0, help="seed of the power simulation")
    suite_sub.add_parser("list", help="the suite files and their profiles")

    report = sub.add_parser("report", help="tables and figures of a suite's results (reports/<suite>/<profile>)")
    report.add_argument("suite", help="suite name (suites/<name>.toml) or path to a .toml file")
    report.add_argument("--profile", default=None)
    report.add_argument("--results", default=None, help="results directory (default: results/<suite>/<profile>)")
    report.add_argument("--out", default=None, help="report directory (default: reports/<suite>/<profile>)")
    report.add_argument("--reps", type=_integer, default=2_000, help="bootstrap replications")
    report.add_argument("--seed", type=_integer, default=0, help="seed of every bootstrap")
    report.add_argument("--force", action="store_true",
                        help="replace an existing report even if it was built from more finished runs")
    report.add_argument("--allow-missing", action="store_true",
                        help="exit 0 although some of the profile's runs have not finished (they are listed)")

    methods = sub.add_parser("methods", help="list the registered methods")
    methods.add_argument("--methods-module", action="append", default=[], metavar="MODULE")
    sub.add_parser("schema", help="print the JSON schema of a run's settings (types, ranges, choices)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from rlx2.methods import load_module

    for module in getattr(args, "methods_module", []):
        try:
            load_module(module)
        except ValueError as exc:
            parser.error(str(exc))
    handlers = {"run": _run, "evaluate": _evaluate, "export": _export, "flops": _flops, "methods": _methods, "schema": _schema,
                "suite": _suite, "report": _report_command}
    try:
        return handlers[args.command](parser, args)
    except ConfigError as exc:
        parser.error(str(exc))


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from rlx2.train import RunAlreadyFinished, RunSettingsMismatch, prepare, train

    cfg = config_from_args(args)
    prepare(cfg, args.out)  # every input checked before any file is written
    try:
        result = train(cfg, args.out, progress=not args.quiet, overwrite=args.overwrite)
    except (RunAlreadyFinished, RunSettingsMismatch) as exc:
        print(f"rlx2 run: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk, a directory that became unwritable: say where, no traceback
        print(f"rlx2 run: {exc.filename or args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(json.dumps({k: result[k] for k in ("run_id", "final_score", "final_window", "steps_per_second")}))
    return 0


def _evaluate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from rlx2.evaluation import evaluate_run

    for name in ("episodes",):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(name, value, "must be a positive integer")
    if args.seed is not None and args.seed < 0:
        raise ConfigError("seed", args.seed, "must be >= 0")
    if args.policy is None:
        got = evaluate_run(args.run_dir, args.episodes, args.seed, args.video, args.render)
    else:
        from rlx2.deploy import PolicyFileError

        try:
            got = evaluate_run(args.run_dir, args.episodes, args.seed, args.video, args.render, policy=args.policy)
        except PolicyFileError as exc:
            print(f"rlx2 evaluate: --policy={exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(got))
    else:
        print(f"{got['run_dir']}: mean return {got['mean_return']:.1f} +- {got['std_return']:.1f} over "
              f"{got['episodes']} episodes (env seed {got['seed']})" + (f"; policy {args.policy}" if args.policy else "")
              + (f"; videos in {args.video}" if args.video else ""))
    return 0


def _export(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Bad input (a path, a run directory, a missing package) is one line ``rlx2 export: ...`` and exit 2."""
    from rlx2.export import ExportError, export_run

    try:
        got = export_run(args.run_dir, args.out)
    except ExportError as exc:
        print(f"rlx2 export: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # a full disk: say where, no traceback (nothing is left behind)
        print(f"rlx2 export: {exc.filename or args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(got))
    else:
        densities = ", ".join(f"{layer['density']:.3f}" for layer in got["layers"])
        print(f"{got['out']}: {got['format']}, {got['bytes']:,} bytes, actor of run {got['run_id']} "
              f"({100 * got['actor_sparsity']:.1f} % sparse; layer densities {densities})")
    return 0


def _methods(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from rlx2.methods import available_methods

    methods = available_methods()
    width = max(map(len, methods))
    for name, cls in methods.items():
        print(f"{name:<{width}}  {cls.description}")
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
    suite, results = _load_suite(parser, args)
    if args.suite_command == "status":
        return _suite_status(suite, results)
    if args.suite_command == "plan":
        return _suite_plan(suite, results, args.spread, args.seed)
    return _suite_run(parser, args, suite, results)


def _load_suite(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """The suite profile and its results directory; bad input ends the command (exit 2)."""
    from rlx2.suite import SuiteError, load_suite

    try:
        suite = load_suite(args.suite, args.profile)
    except SuiteError as exc:
        parser.error(str(exc))
    return suite, Path(args.results or Path("results") / suite.name / suite.profile)


def _suite_list() -> int:
    import tomllib

    from rlx2.suite import available_suites

    for path in available_suites():
        data = tomllib.loads(path.read_text())
        profiles = data.get("profiles", {})
        default = data.get("suite", {}).get("default_profile")
        def seeds(p):
            fewer = p.get("method_seeds", {})
            return f"{p.get('seeds')} seeds" + (
                " (" + ", ".join(f"{m}: {n}" for m, n in fewer.items()) + ")" if isinstance(fewer, dict) and fewer
                else "")

        print(f"{path.stem}: " + ", ".join(
            f"{name}{' (default)' if name == default else ''} [{p.get('steps'):,} steps x {seeds(p)}]"
            for name, p in profiles.items()))
    return 0


def _suite_status(suite, results: Path) -> int:
    from rlx2.config import run_id
    from rlx2.executors import STATES, run_state
    from rlx2.records import RunDirectory

    states = [(run_id(cfg), *run_state(RunDirectory(results / run_id(cfg)))) for cfg in suite.runs]
    width = max(len(name) for name, _, _ in states)
    for name, state, detail in states:
        print(f"{name:<{width}}  {state:<8} {detail}")
    counts = {s: sum(1 for _, state, _ in states if state == s) for s in STATES}
    print(", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(states)} ({results})")
    return 0


def _suite_plan(suite, results: Path, spread: float | None, seed: int) -> int:
    """Print what each of the profile's comparisons needs (``rlx2.comparisons``), from whatever records exist."""
    import pandas as pd

    from rlx2.report import PLAN_NOTE, markdown, plan_table
    from rlx2.results import collect, final_scores

    if spread is not None and not (math.isfinite(spread) and 0 < spread <= 100):
        raise ConfigError("spread", spread, "must be a fraction of dense's mean in (0, 100]")
    table = collect(list(suite.runs), results, suite.name, suite.profile).table
    finals = final_scores(table) if not table.empty else pd.DataFrame()
    plan = plan_table(finals, list(suite.runs), suite.primary, spread, seed)
    print(f"suite {suite.name}, profile {suite.profile}" + (
        f"; primary comparison: {suite.primary[0]} beats {suite.primary[1]}" if suite.primary else ""))
    print()
    print(PLAN_NOTE if spread is None else PLAN_NOTE.replace(
        "spread as measured here (each method's SD over its seeds; a method with one seed takes the task's pooled SD)",
        f"spread with an SD of {spread:g} x dense's mean (--spread)"))
    print(markdown(plan) if not plan.empty else "No pair of the paper's methods in this profile.\n", end="")
    return 0


def _suite_run(parser: argparse.ArgumentParser, args: argparse.Namespace, suite, results: Path) -> int:
    from rlx2.executors import LocalExecutor, RayExecutor, check_results_match, execute
    from rlx2.records import writable_directory

    problem = writable_directory(results)
    if problem:
        raise ConfigError("results", str(results), problem)
    try:
        check_results_match(list(suite.runs), results)
    except ValueError as exc:
        parser.error(str(exc))
    if not args.quiet:
        print(f"suite {suite.name}, profile {suite.profile}: {len(suite.runs)} runs -> {results}", file=sys.stderr)
    executor = (RayExecutor(args.address, args.retries, args.quiet) if args.executor == "ray"
                else LocalExecutor(args.workers, args.retries, args.quiet))
    outcome = execute(executor, list(suite.runs), results, suite.modules, retry_failed=args.retry_failed)
    print(outcome.summary())
    if args.report:
        _report(suite, results, None, 2_000, 0, force=False, allow_missing=True)  # failures already set the exit code
    return 0 if outcome.ok else 1


def _report_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.reps < 1:
        raise ConfigError("reps", args.reps, "must be a positive integer")
    suite, results = _load_suite(parser, args)
    if not results.is_dir():
        raise ConfigError("results", str(results), "no such directory (run the suite first, or pass --results)")
    return _report(suite, results, Path(args.out) if args.out else None, args.reps, args.seed,
                   force=args.force, allow_missing=args.allow_missing)


def _report(suite, results: Path, out: Path | None, reps: int, seed: int, *, force: bool, allow_missing: bool) -> int:
    """Write the report; 1 when it is refused, or when runs are missing and that is not allowed."""
    from rlx2.records import writable_directory
    from rlx2.report import ReportRefused, ReportSettings, build_report

    out = out or Path("reports") / suite.name / suite.profile
    problem = writable_directory(out.parent)
    if problem:
        raise ConfigError("out", str(out), problem)
    try:
        summary = build_report(suite.name, suite.profile, list(suite.runs), results, out, ReportSettings(reps, seed),
                               suite.description, force=force, primary=suite.primary)
    except ReportRefused as exc:
        print(f"rlx2 report: {exc}", file=sys.stderr)
        return 1
    print(f"report: {out}/index.md ({summary['finished']} of {summary['expected']} runs finished"
          + (f"; {len(summary['missing'])} missing, listed in the report)" if summary["missing"] else ")"))
    if summary["missing"] and not allow_missing:
        print(f"rlx2 report: {len(summary['missing'])} of the profile's runs have not finished "
              "(--allow-missing accepts that)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
