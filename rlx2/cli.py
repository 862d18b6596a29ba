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
        help_text = f.metadata["help"]
        if kind.startswith("tuple"):
            parser.add_argument(flag, type=_integer, nargs="+", default=f.default, help=f"{help_text} (default: 256 256)")
        elif kind.startswith("bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_text)
        else:
            convert = {"int": _integer, "float": float, "str": str}[kind.split(" ")[0]]
            shown = "method/algo default" if f.default is None else f.default
            parser.add_argument(flag, type=convert, default=f.default, help=f"{help_text} (default: {shown})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlx2", description="Sparse deep RL from scratch: RLx2 and its baselines.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="one training run", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    run.add_argument("--out", default="results/adhoc", help="results root; the run goes to <out>/<algo>/<env>/<method>/seed-<k>")
    run.add_argument("--methods-module", action="append", default=[], metavar="MODULE",
                     help="extra module (dotted name or .py path) defining methods; repeatable")
    run.add_argument("--overwrite", action="store_true", help="redo a run that already finished")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_flags(run)

    flops = sub.add_parser("flops", help="model size and FLOPs of a method, from shapes and masks alone",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    flops.add_argument("--obs-dim", type=_integer, required=True, help="observation size")
    flops.add_argument("--act-dim", type=_integer, required=True, help="action size")
    flops.add_argument("--json", action="store_true", help="print JSON instead of a table")
    flops.add_argument("--methods-module", action="append", default=[], metavar="MODULE")
    _add_config_flags(flops)

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
    _load_modules(parser, args.methods_module)

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

    from rlx2.train import RunAlreadyFinished, prepare, train

    try:
        prepare(cfg, args.out)  # every input checked before any file is written
    except (ConfigError, ValueError) as exc:
        parser.error(str(exc))
    try:
        result = train(cfg, args.out, progress=not args.quiet, overwrite=args.overwrite)
    except RunAlreadyFinished as exc:
        print(f"rlx2 run: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({k: result[k] for k in ("run_id", "final_score", "final_window", "steps_per_second")}))
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
