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

    from rlx2.train import RunAlreadyFinished, prepare, train

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)}
    values["hidden_sizes"] = tuple(values["hidden_sizes"])
    cfg = RunConfig(**values)
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


if __name__ == "__main__":
    sys.exit(main())
