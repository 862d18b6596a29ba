"""The ``rlx2`` command line (argparse). Subcommands: ``run``, ``methods``.

``rlx2 run`` flags are generated from ``RunConfig``'s fields, so every hyperparameter of
the spec is overridable and the help text lives next to the default.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence

from rlx2.config import ConfigError, RunConfig
from rlx2.methods import available_methods, load_module


def _integer(text: str) -> int:
    """An integer, also written as ``3e6`` or ``100_000``."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}")
    return int(value)


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type)
        help_text = f.metadata["help"].replace("%", "%%")  # argparse formats help with %
        if kind.startswith("tuple"):
            parser.add_argument(flag, type=_integer, nargs="+", default=f.default, help=help_text)
        elif kind.startswith("bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_text)
        else:
            convert = {"int": _integer, "float": float, "str": str}[kind.split(" ")[0]]
            if f.default is None and "default" not in help_text:
                help_text += " (default: the method's or algorithm's)"
            parser.add_argument(flag, type=convert, default=f.default, help=help_text)


class _ShowDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Append "(default: X)" to every flag's help except where the default is None (said in the help)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help if action.default is None else super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlx2", description="Sparse deep RL from scratch: RLx2 and its baselines.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="one training run", formatter_class=_ShowDefaults)
    run.add_argument("--out", default="results/adhoc", help="results root; the run goes to <out>/<algo>/<env>/<method>/seed-<k>")
    run.add_argument("--methods-module", action="append", default=[], metavar="MODULE",
                     help="extra module (dotted name or .py path) defining methods; repeatable")
    run.add_argument("--overwrite", action="store_true", help="redo a run that already finished")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_flags(run)

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
    suite_status = suite_sub.add_parser("status", help="done / running / failed / partial / pending per run")
    for p in (suite_run, suite_status):
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
    return parser


def _load_modules(parser: argparse.ArgumentParser, modules: Sequence[str]) -> None:
    for module in modules:
        try:
            load_module(module)
        except ValueError as exc:
            parser.error(str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _load_modules(parser, getattr(args, "methods_module", []))

    if args.command in ("suite", "report"):
        return _suite(parser, args)

    if args.command == "methods":
        methods = available_methods()
        width = max(map(len, methods))
        for name, cls in methods.items():
            print(f"{name:<{width}}  {cls.description}")
        return 0

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)}
    values["hidden_sizes"] = tuple(values["hidden_sizes"])
    cfg = RunConfig(**values)
    if args.command == "flops":
        return _flops(parser, cfg, args)

    from rlx2.train import RunAlreadyFinished, RunSettingsMismatch, prepare, train

    try:
        prepare(cfg, args.out)  # every input checked before any file is written
    except (ConfigError, ValueError) as exc:
        parser.error(str(exc))
    try:
        result = train(cfg, args.out, progress=not args.quiet, overwrite=args.overwrite)
    except (RunAlreadyFinished, RunSettingsMismatch) as exc:
        print(f"rlx2 run: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({k: result[k] for k in ("run_id", "final_score", "final_window", "steps_per_second")}))
    return 0


def _suite(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import tomllib
    from pathlib import Path

    from rlx2.config import run_id
    from rlx2.executors import LocalExecutor, Outcome, RayExecutor, check_results_match, run_state
    from rlx2.records import RunDirectory
    from rlx2.suite import SuiteError, available_suites, load_suite

    if getattr(args, "suite_command", None) == "list":
        for path in available_suites():
            data = tomllib.loads(path.read_text())
            profiles = data.get("profiles", {})
            default = data.get("suite", {}).get("default_profile")
            print(f"{path.stem}: " + ", ".join(
                f"{name}{' (default)' if name == default else ''} [{p.get('steps'):,} steps x {p.get('seeds')} seeds]"
                for name, p in profiles.items()))
        return 0
    for name in ("workers", "retries", "reps"):
        value = getattr(args, name, None)
        if value is not None and value < (0 if name == "retries" else 1):
            parser.error(f"{name}={value!r}: must be {'>= 0' if name == 'retries' else 'a positive integer'}")
    try:
        suite = load_suite(args.suite, args.profile)
    except SuiteError as exc:
        parser.error(str(exc))
    results = Path(args.results or Path("results") / suite.name / suite.profile)
    runs = list(suite.runs)
    if args.command == "report":
        if not results.is_dir():
            parser.error(f"results={str(results)!r}: no such directory (run the suite first, or pass --results)")
        return _report(suite, results, Path(args.out) if args.out else None, args.reps, args.seed,
                       force=args.force, allow_missing=args.allow_missing)
    if getattr(args, "suite_command", None) == "status":
        states = [(run_id(cfg), *run_state(RunDirectory(results / run_id(cfg)))) for cfg in runs]
        width = max(len(name) for name, _, _ in states)
        for name, state, detail in states:
            print(f"{name:<{width}}  {state:<8} {detail}")
        counts = {s: sum(1 for _, state, _ in states if state == s)
                  for s in ("done", "running", "corrupt", "failed", "partial", "pending")}
        print(", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(states)} ({results})")
        return 0
    try:
        check_results_match(runs, results)
    except ValueError as exc:
        parser.error(str(exc))
    skipped_failed = {}
    if not args.retry_failed:
        for cfg in runs:
            failure = RunDirectory(results / run_id(cfg)).failure()
            if failure and failure.get("kind") == "diverged":
                skipped_failed[run_id(cfg)] = f"diverged earlier: {failure.get('reason')} (--retry-failed reruns it)"
        runs = [cfg for cfg in runs if run_id(cfg) not in skipped_failed]
    if not args.quiet:
        print(f"suite {suite.name}, profile {suite.profile}: {len(suite.runs)} runs -> {results}", file=sys.stderr)
    executor = (RayExecutor(args.address, args.retries, args.quiet) if args.executor == "ray"
                else LocalExecutor(args.workers, args.retries, args.quiet))
    outcome: Outcome = executor.run(runs, results, suite.modules)
    outcome.total = len(suite.runs)
    outcome.failed.update(skipped_failed)
    print(outcome.summary())
    if args.report:
        _report(suite, results, None, 2_000, 0, force=False, allow_missing=True)  # failures already set the exit code
    return 0 if outcome.ok else 1


def _report(suite, results, out, reps: int, seed: int, *, force: bool, allow_missing: bool) -> int:
    """Write the report; 1 when it is refused, or when runs are missing and that is not allowed."""
    from pathlib import Path

    from rlx2.report import ReportRefused, ReportSettings, build_report

    out = out or Path("reports") / suite.name / suite.profile
    try:
        summary = build_report(suite.name, suite.profile, list(suite.runs), results, out, ReportSettings(reps, seed),
                               suite.description, force=force)
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


def _flops(parser: argparse.ArgumentParser, cfg: RunConfig, args: argparse.Namespace) -> int:
    import torch

    from rlx2.agents import make_agent
    from rlx2.methods import get_method
    from rlx2.sparse.flops import flops_report

    try:
        cfg.validate()
        if args.obs_dim <= 0 or args.act_dim <= 0:
            raise ConfigError("obs_dim" if args.obs_dim <= 0 else "act_dim", min(args.obs_dim, args.act_dim),
                              "must be a positive integer")
        method = get_method(cfg.method)()
    except (ConfigError, ValueError) as exc:
        parser.error(str(exc))
    cfg = method.resolve(cfg)
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


if __name__ == "__main__":
    sys.exit(main())
