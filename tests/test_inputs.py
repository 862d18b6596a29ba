"""Bad input, from a flag, a run's config file or a suite file, ends before anything is written.

Each case exits with status 2 and one line naming the setting (``field=value: reason``),
leaves the output directory untouched (not even created) and no lock behind. The cases are
the ones a new user tried (issue "inputs and outputs a researcher can trust") and their
neighbours.
"""

import errno
import json
import subprocess
import sys

import pytest

from conftest import tiny_config
from rlx2.cli import main

CLI = [
    (["--lr", "nan"], "lr=nan"),
    (["--lr", "inf"], "lr=inf"),
    (["--lr", "0"], "lr=0.0"),
    (["--lr", "abc"], "lr='abc'"),
    (["--exploration-noise", "nan"], "exploration-noise=nan"),
    (["--target-noise", "inf"], "target-noise=inf"),
    (["--target-noise-clip", "-1"], "target-noise-clip=-1.0"),
    (["--buffer-threshold", "nan"], "buffer-threshold=nan"),
    (["--steps", "1e30"], "steps=1000000000000000019884624838656"),
    (["--steps", "1.5"], "steps='1.5'"),
    (["--steps", "0"], "steps=0"),
    (["--t-end", "1e12"], "t-end=1000000000000"),
    (["--hidden-sizes", "1e9"], "hidden-sizes=(1000000000,)"),
    (["--hidden-sizes", "0"], "hidden-sizes=(0,)"),
    (["--seed", "1e30"], "seed=1000000000000000019884624838656"),
    (["--seed", "-1"], "seed=-1"),
    (["--batch-size", "64.5"], "batch-size='64.5'"),
    (["--gamma", "0"], "gamma=0.0"),
    (["--tau", "2"], "tau=2.0"),
    (["--zeta", "1.5"], "zeta=1.5"),
    (["--n-step", "0"], "n-step=0"),
    (["--policy-delay", "0"], "policy-delay=0"),
    (["--eval-episodes", "0"], "eval-episodes=0"),
    (["--torch-threads", "0"], "torch-threads=0"),
    (["--mask-init", "largest"], "mask-init='largest'"),
    (["--regrow", "maybe"], "regrow='maybe'"),
    (["--sparse-backend", "gpu"], "sparse-backend='gpu'"),
    (["--steps", "10000", "--final-window", "100"], "final-window=100"),
    (["--steps", "10000", "--nstep-delay", "20000"], "nstep-delay=20000"),
    (["--buffer-min", "5000", "--buffer-max", "1000"], "buffer-min=5000"),
    (["--steps", "1000", "--warmup-steps", "1000"], "warmup-steps=1000"),
    (["--buffer-max", "90000000", "--steps", "90000000", "--env", "Humanoid-v5"], "buffer-max=90000000"),
]


@pytest.mark.parametrize(("args", "named"), CLI, ids=[" ".join(a) for a, _ in CLI])
def test_bad_flags_exit_2_naming_the_setting_and_write_nothing(tmp_path, capsys, args, named):
    out = tmp_path / "results"
    with pytest.raises(SystemExit) as info:
        main(["run", "--out", str(out), "--quiet", *args])
    assert info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert named in error and ": " in error.split(named, 1)[1]
    assert not out.exists()


SUITE = """
[suite]
algos = ["td3"]
tasks = ["Hopper-v5"]
methods = ["dense"]
[sparsity.td3]
"Hopper-v5" = [0.9, 0.85]
[profiles.p]
steps = 2000
seeds = 1
"""

TOML = [
    ("seeds = 1", "seeds = 100000000", "profiles.p.seeds = 100000000"),
    ("steps = 2000", "steps = 1000000000000000000", "profiles.p.steps = 1000000000000000000"),
    ("seeds = 1", "seeds = 1\nsettings = { lr = \"abc\" }", "profiles.p.settings.lr = 'abc'"),
    ("seeds = 1", "seeds = 1\nsettings = { hidden_sizes = 5 }", "profiles.p.settings.hidden_sizes = 5"),
    ("seeds = 1", "seeds = 1\nsettings = { batch_size = 64.5 }", "profiles.p.settings.batch_size = 64.5"),
    ("seeds = 1", "seeds = 1\nsettings = { lr = nan }", "profiles.p.settings.lr = nan"),
    ("seeds = 1", "seeds = 1\nsettings = { tensorboard = \"yes\" }", "profiles.p.settings.tensorboard = 'yes'"),
    ("seeds = 1", "seeds = 1\nsettings = { eval_every = true }", "profiles.p.settings.eval_every = True"),
    ("seeds = 1", "seeds = 1\nsettings = { eval_every = 500.0 }", "profiles.p.settings.eval_every = 500.0"),
    ("seeds = 1", "seeds = 1\nsettings = { exploration_noise = inf }",
     "profiles.p.settings.exploration_noise = inf"),
    ("seeds = 1", "seeds = 1\nsettings = { hidden_sizes = [64, 1000000000] }",
     "profiles.p.settings.hidden_sizes = (64, 1000000000)"),
    ("seeds = 1", "seeds = 1\nsettings = { steps = 5 }", "profiles.p.settings.steps = 5: is set by the suite grid"),
    ("seeds = 1", "seeds = 1\nsettings = { final_window = 50 }", "final-window=50"),
]


@pytest.mark.parametrize(("old", "new", "named"), TOML, ids=[n for _, _, n in TOML])
def test_bad_suite_files_exit_2_naming_file_key_and_value(tmp_path, capsys, old, new, named):
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE.replace(old, new))
    results = tmp_path / "results"
    with pytest.raises(SystemExit) as info:
        main(["suite", "run", str(suite), "--results", str(results), "--quiet"])
    assert info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(suite) in error and named in error
    assert not results.exists()


def test_a_suite_larger_than_the_bounds_is_refused_before_expanding(tmp_path, capsys):
    suite = tmp_path / "s.toml"
    text = SUITE.replace('methods = ["dense"]', 'methods = ["dense", "static", "rlx2", "rigl", "set", "tiny"]')
    tasks = ", ".join(f'"Task{i}-v0"' for i in range(17))  # not even made: the size is checked first
    suite.write_text(text.replace("seeds = 1", "seeds = 1000").replace('tasks = ["Hopper-v5"]', f"tasks = [{tasks}]"))
    with pytest.raises(SystemExit):
        main(["suite", "run", str(suite), "--results", str(tmp_path / "r"), "--quiet"])
    assert "runs = 102000: algos x tasks x methods x seeds must be at most 100,000" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_registered_task_that_cannot_be_made_is_a_message(tmp_path, capsys):
    pytest.importorskip("gymnasium")
    try:
        import Box2D  # noqa: F401
        pytest.skip("Box2D is installed: BipedalWalker can be made")
    except ImportError:
        pass
    with pytest.raises(SystemExit) as info:
        main(["run", "--env", "BipedalWalker-v3", "--out", str(tmp_path / "out"), "--quiet"])
    assert info.value.code == 2 and "env='BipedalWalker-v3': cannot be made" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "named"), [
    ("lr = nan\n", "lr=nan"),
    ("steps = 1e3\n", "steps=1000.0"),
    ("colour = 'red'\n", "colour='red': unknown setting"),
    ("algo = [\n", "is not valid TOML"),
])
def test_a_bad_run_config_file_exits_2(tmp_path, capsys, text, named):
    config = tmp_path / "run.toml"
    config.write_text(text)
    with pytest.raises(SystemExit) as info:
        main(["run", "--config", str(config), "--out", str(tmp_path / "out"), "--quiet"])
    assert info.value.code == 2 and named in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_run_config_file_is_the_same_settings_as_flags_and_flags_win(tmp_path):
    from rlx2.cli import build_parser, config_from_args

    config = tmp_path / "run.toml"
    config.write_text('algo = "sac"\nsteps = 5_000\nhidden_sizes = [32, 32]\nlr = 1e-3\nmask_init = "random"\n')
    args = build_parser().parse_args(["run", "--config", str(config), "--lr", "2e-3"])
    cfg = config_from_args(args)
    assert (cfg.algo, cfg.steps, cfg.hidden_sizes, cfg.lr, cfg.mask_init) == ("sac", 5_000, (32, 32), 2e-3, "random")


@pytest.mark.parametrize(("where", "problem"), [("file", "is a file, not a directory"),
                                                ("proc", "cannot write in /proc")])
def test_an_unwritable_out_is_a_message_not_a_traceback(tmp_path, capsys, where, problem):
    out = tmp_path / "a-file" if where == "file" else "/proc/rlx2-not-here"
    if where == "file":
        out.write_text("in the way")
    with pytest.raises(SystemExit) as info:
        main(["run", "--out", str(out), "--steps", "2000", "--quiet"])
    assert info.value.code == 2 and problem in capsys.readouterr().err


@pytest.mark.parametrize("body", ['raise RuntimeError("broken on import")\n', "def f(:\n    pass\n"])
def test_a_methods_module_that_fails_to_import_is_named_with_its_error_line(tmp_path, capsys, body):
    module = tmp_path / "mine.py"
    module.write_text(body)
    with pytest.raises(SystemExit) as info:
        main(["run", "--methods-module", str(module), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "mine.py" in err and "line 1" in err
    assert ("RuntimeError: broken on import" in err) or ("SyntaxError" in err)
    assert not (tmp_path / "out").exists()


def test_a_full_disk_names_the_path_and_leaves_no_temporary_file(tmp_path, monkeypatch, capsys):
    import torch

    def full_disk(obj, f):
        f.write(b"partial checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    code = main(["run", "--out", str(tmp_path), "--steps", "1200", "--warmup-steps", "500", "--batch-size", "32",
                 "--checkpoint-every", "1000", "--eval-every", "600", "--eval-episodes", "1", "--hidden-sizes", "32",
                 "--quiet"])
    err = capsys.readouterr().err
    run = tmp_path / "td3/Hopper-v5/rlx2/seed-0"
    assert code == 1 and "No space left on device" in err and str(run / "checkpoint.pt") in err
    assert not list(run.glob("*.tmp")) and not (run / "result.json").exists()


def test_version_and_schema(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("rlx2 ")
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["properties"]["lr"]["exclusiveMinimum"] == 0 and "description" in schema["properties"]["lr"]
    assert schema["properties"]["mask_init"]["enum"] == ["magnitude", "random"]


def test_a_resumed_run_says_from_which_step(tmp_path):
    import signal
    import time

    args = ["--steps", "2000", "--warmup-steps", "500", "--batch-size", "32", "--hidden-sizes", "32",
            "--checkpoint-every", "600", "--eval-every", "1000", "--eval-episodes", "1", "--quiet", "--out",
            str(tmp_path)]
    process = subprocess.Popen([sys.executable, "-m", "rlx2.cli", "run", *args])
    checkpoint = tmp_path / "td3/Hopper-v5/rlx2/seed-0/checkpoint.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.exists()
    done = subprocess.run([sys.executable, "-m", "rlx2.cli", "run", *args], capture_output=True, text=True)
    assert done.returncode == 0 and "resuming from step" in done.stderr


def test_tiny_config_is_valid():
    tiny_config().validate()


@pytest.mark.parametrize("content", [None, "{not json", json.dumps({"config": {"lr": "abc"}})],
                         ids=["no config.json", "not JSON", "bad setting"])
def test_evaluate_on_a_directory_that_is_not_a_run_exits_2_naming_it(tmp_path, capsys, content):
    if content is not None:
        (tmp_path / "config.json").write_text(content)
    with pytest.raises(SystemExit) as info:
        main(["evaluate", str(tmp_path)])
    assert info.value.code == 2
    assert f"run-dir='{tmp_path}': not a run directory with a readable config.json" in capsys.readouterr().err
