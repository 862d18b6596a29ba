"""`rlx2 run` / `rlx2 methods`: bad input fails fast, naming the argument, before any file is written."""

import pytest

from rlx2.cli import main


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--method", "nope"], "method='nope'"),
        (["--env", "NoSuchTask-v0"], "env='NoSuchTask-v0'"),
        (["--env", "CartPole-v1"], "env='CartPole-v1'"),  # discrete actions
        (["--actor-sparsity", "1.0"], "actor-sparsity=1.0"),
        (["--critic-sparsity", "-0.1"], "critic-sparsity=-0.1"),
        (["--steps", "0"], "steps=0"),
        (["--steps", "-5"], "steps=-5"),
        (["--algo", "ppo"], "algo='ppo'"),
        (["--warmup-steps", "2000", "--steps", "1000"], "warmup-steps=2000"),
        (["--steps", "1.5"], "steps='1.5'"),
        (["--methods-module", "no_such_module_xyz"], "no_such_module_xyz"),
    ],
)
def test_bad_arguments_fail_fast_naming_the_argument(tmp_path, capsys, args, named):
    out = tmp_path / "results"
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--out", str(out), "--quiet", *args])
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err
    assert not out.exists()


def test_methods_lists_every_builtin_with_a_description(capsys):
    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = {line.split()[0] for line in lines}
    assert {"dense", "tiny", "static", "set", "rigl", "rlx2"} <= names
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines)


def test_integers_accept_scientific_notation():
    from rlx2.cli import build_parser

    args = build_parser().parse_args(["run", "--steps", "3e6", "--warmup-steps", "25_000"])
    assert (args.steps, args.warmup_steps) == (3_000_000, 25_000)


@pytest.mark.parametrize("command", [["run"], ["flops"], ["suite", "run"], ["report"], ["runs"], ["evaluate"]])
def test_every_help_page_renders(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "--" in capsys.readouterr().out
