"""Suites: validation of suite files, the budget scaling rule, and expansion into runs."""

import pytest

from rlx2.cli import main
from rlx2.config import PAPER_STEPS, RunConfig
from rlx2.suite import SuiteError, load_suite

GOOD = """
[suite]
algos = ["td3"]
tasks = ["Hopper-v5"]
methods = ["dense", "rlx2"]
[sparsity.td3]
"Hopper-v5" = [0.9, 0.85]
[profiles.tiny]
steps = 2000
seeds = 2
"""


def write(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_good_suite_expands_to_one_run_per_cell(tmp_path):
    suite = load_suite(str(write(tmp_path, GOOD)))
    assert suite.profile == "tiny" and len(suite.runs) == 4
    assert {(c.method, c.seed) for c in suite.runs} == {("dense", 0), ("dense", 1), ("rlx2", 0), ("rlx2", 1)}
    assert all(c.actor_sparsity == 0.9 and c.critic_sparsity == 0.85 and c.steps == 2000 for c in suite.runs)


def test_a_profile_declares_per_method_seeds_and_a_primary_comparison(tmp_path):
    text = GOOD.replace('methods = ["dense", "rlx2"]', 'methods = ["dense", "rigl", "rlx2"]').replace(
        "seeds = 2", 'seeds = 3\nmethod_seeds = { dense = 1 }\nprimary = ["rlx2", "rigl"]')
    suite = load_suite(str(write(tmp_path, text)))
    assert sorted((c.method, c.seed) for c in suite.runs) == [
        ("dense", 0), ("rigl", 0), ("rigl", 1), ("rigl", 2), ("rlx2", 0), ("rlx2", 1), ("rlx2", 2)]
    assert suite.seeds == {"dense": 1, "rigl": 3, "rlx2": 3} and suite.declared_fewer() == {"dense": 1}
    assert suite.primary == ("rlx2", "rigl")
    assert load_suite(str(write(tmp_path, GOOD))).primary is None


@pytest.mark.parametrize(("line", "message"), [
    ("method_seeds = { tiny = 1 }", "profiles.tiny.method_seeds.tiny = 1: not a method of the profile"),
    ("method_seeds = { dense = 0 }", "profiles.tiny.method_seeds.dense = 0: must be an integer in [1, 1,000]"),
    ("method_seeds = { dense = 1.5 }", "profiles.tiny.method_seeds.dense = 1.5: must be an integer"),
    ("method_seeds = 3", "profiles.tiny.method_seeds = 3: must be a table of method = seed count"),
    ('primary = ["rlx2", "rlx2"]', "profiles.tiny.primary = ['rlx2', 'rlx2']: must be [X, Y], two different methods"),
    ('primary = ["rlx2", "tiny"]', "profiles.tiny.primary = ['rlx2', 'tiny']: must be [X, Y]"),
    ('primary = "rlx2"', "profiles.tiny.primary = 'rlx2': must be [X, Y]"),
])
def test_bad_per_method_seeds_or_primary_name_the_key(tmp_path, line, message):
    with pytest.raises(SuiteError) as info:
        load_suite(str(write(tmp_path, GOOD.replace("seeds = 2", f"seeds = 2\n{line}"))))
    assert message in str(info.value)


BUDGET = ("warmup_steps", "eval_every", "delta", "nstep_delay", "buffer_check_every", "checkpoint_every",
          "log_every", "final_window", "buffer_min", "buffer_max", "t_end")


def budget(cfg):
    return {name: getattr(cfg, name) for name in BUDGET}


def test_scaling_rule_gives_the_paper_values_at_the_paper_budget_and_floors_below():
    paper = RunConfig(algo="td3", steps=PAPER_STEPS).resolve_budget()
    assert budget(paper) == {"warmup_steps": 25_000, "eval_every": 5_000, "delta": 10_000, "nstep_delay": 300_000,
                             "buffer_check_every": 10_000, "checkpoint_every": 50_000, "log_every": 1_000,
                             "final_window": 30, "buffer_min": 100_000, "buffer_max": 1_000_000, "t_end": 2_975_000}
    small = RunConfig(algo="sac", steps=30_000).resolve_budget()  # r = 1/100
    assert budget(small) == {"warmup_steps": 1_000, "eval_every": 500, "delta": 100, "nstep_delay": 3_000,
                             "buffer_check_every": 500, "checkpoint_every": 1_000, "log_every": 100,
                             "final_window": 3, "buffer_min": 2_000, "buffer_max": 3_000_000, "t_end": 29_000}


def test_final_window_is_the_last_five_percent_of_the_evaluations_actually_made():
    # eval_every given: 300k / 5k = 60 evaluations -> the last 3, not 30 (the paper's count at 600).
    assert RunConfig(steps=300_000, eval_every=5_000).resolve_budget().final_window == 3
    assert RunConfig(steps=300_000, eval_every=1_000).resolve_budget().final_window == 15
    assert RunConfig(steps=10_000, eval_every=1_000).resolve_budget().final_window == 3  # at least 3
    assert RunConfig(steps=1_000, eval_every=500).resolve_budget().final_window == 2  # never more than there are


def test_given_settings_are_never_scaled_and_the_rest_are_named():
    cfg = RunConfig(steps=60_000, warmup_steps=5_000, final_window=4)
    resolved = cfg.resolve_budget()
    assert (resolved.warmup_steps, resolved.final_window, resolved.t_end) == (5_000, 4, 55_000)
    assert "warmup_steps" not in cfg.unset_budget_fields() and "delta" in cfg.unset_budget_fields()


def test_settings_in_the_file_win_over_scaled_ones(tmp_path):
    text = GOOD.replace("seeds = 2\n", "seeds = 2\nsettings = { delta = 77 }\n") + "[settings]\nwarmup_steps = 300\n"
    cfg = load_suite(str(write(tmp_path, text))).runs[0].resolve_budget()
    assert (cfg.warmup_steps, cfg.delta, cfg.eval_every) == (300, 77, 500)


def test_the_shipped_suites_load_in_every_profile():
    for name, profiles in {"mujoco": ("smoke", "standard", "paper"), "smoke": ("smoke", "both-algos")}.items():
        for profile in profiles:
            assert load_suite(name, profile).runs
    paper = load_suite("mujoco", "paper")
    assert len(paper.runs) == 2 * 4 * 8 * 8
    assert {(c.env, c.actor_sparsity, c.critic_sparsity) for c in paper.runs if c.algo == "sac"} >= {("Ant-v5", 0.9, 0.75)}


@pytest.mark.parametrize(
    ("change", "key", "value"),
    [
        (lambda t: t.replace('algos = ["td3"]', 'algos = ["td3"'), "(syntax)", None),
        (lambda t: t + "[extras]\nx = 1\n", "extras", None),
        (lambda t: t.replace("[suite]\n", "[suite]\ncolour = 'red'\n"), "suite.colour", "red"),
        (lambda t: t.replace('methods = ["dense", "rlx2"]', 'methods = ["dense", "nope"]'), "suite.methods", "nope"),
        (lambda t: t.replace('methods = ["dense", "rlx2"]', 'methods = ["dense", "dense"]'), "suite.methods", None),
        (lambda t: t.replace('tasks = ["Hopper-v5"]', 'tasks = ["Hopper-v99"]'), "suite.tasks", "Hopper-v99"),
        (lambda t: t.replace('algos = ["td3"]', 'algos = ["ppo"]'), "suite.algos", "ppo"),
        (lambda t: t.replace("[0.9, 0.85]", "[1.0, 0.85]"), "sparsity.td3.Hopper-v5", None),
        (lambda t: t.replace("[0.9, 0.85]", "[0.9, -0.1]"), "sparsity.td3.Hopper-v5", None),
        (lambda t: t.replace("steps = 2000", "steps = 0"), "profiles.tiny.steps", 0),
        (lambda t: t.replace("seeds = 2", "seeds = -1"), "profiles.tiny.seeds", -1),
        (lambda t: t + "[settings]\nbatch_sise = 3\n", "settings.batch_sise", 3),
        (lambda t: t + "[settings]\nbatch_size = 0\n", "settings.batch_size", 0),
        (lambda t: t + "[settings]\nseed = 3\n", "settings.seed", 3),
    ],
)
def test_malformed_suites_are_rejected_naming_file_key_and_value(tmp_path, change, key, value):
    path = write(tmp_path, change(GOOD))
    with pytest.raises(SuiteError) as info:
        load_suite(str(path))
    message = str(info.value)
    assert str(path) in message and key in message
    if value is not None:
        assert repr(value) in message


def test_suite_cli_rejects_before_writing_anything(tmp_path, capsys):
    path = write(tmp_path, GOOD.replace("steps = 2000", "steps = -5"))
    results = tmp_path / "results"
    with pytest.raises(SystemExit) as info:
        main(["suite", "run", str(path), "--results", str(results), "--quiet"])
    assert info.value.code == 2
    assert "profiles.tiny.steps = -5" in capsys.readouterr().err
    assert not results.exists()
    with pytest.raises(SystemExit):
        main(["suite", "run", "no-such-suite", "--results", str(results)])
    assert "no such suite file" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "named"), [(["--workers", "0"], "workers=0"), (["--retries", "-1"], "retries=-1")])
def test_bad_executor_arguments_fail_fast(tmp_path, capsys, args, named):
    results = tmp_path / "results"
    with pytest.raises(SystemExit) as info:
        main(["suite", "run", str(write(tmp_path, GOOD)), "--results", str(results), "--quiet", *args])
    assert info.value.code == 2 and named in capsys.readouterr().err and not results.exists()
    with pytest.raises(SystemExit):
        main(["report", str(write(tmp_path, GOOD)), "--results", str(results), "--reps", "0"])
    assert "reps=0" in capsys.readouterr().err


def test_unknown_profile(tmp_path, capsys):
    with pytest.raises(SuiteError, match="no such profile"):
        load_suite(str(write(tmp_path, GOOD)), "huge")


def test_suite_plan_prints_the_seeds_each_comparison_needs_before_any_run(tmp_path, capsys):
    text = GOOD.replace('tasks = ["Hopper-v5"]', 'tasks = ["Walker2d-v5"]').replace('"Hopper-v5" = [0.9, 0.85]',
                                                                                   '"Walker2d-v5" = [0.97, 0.95]')
    text = text.replace('methods = ["dense", "rlx2"]', 'methods = ["dense", "rigl", "rlx2"]').replace(
        "seeds = 2", 'seeds = 5\nprimary = ["rlx2", "rigl"]')
    path = str(write(tmp_path, text))
    assert main(["suite", "plan", path, "--results", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    assert "primary comparison: rlx2 beats rigl" in out
    assert "| TD3 | Walker2d-v5 | rlx2 (98.1) > rigl (35.7) (primary) | 62.4 | - | 0 vs 0 | 0.05 | unknown: " in out
    assert main(["suite", "plan", path, "--results", str(tmp_path / "none"), "--spread", "0.3"]) == 0
    assert "| 62.4 | 30.0 / 30.0 | 0 vs 0 | 0.05 | 5 | yes (5 seeds declared) |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["suite", "plan", path, "--spread", "nan"])
    assert info.value.code == 2 and "spread=nan" in capsys.readouterr().err


def hide_package(monkeypatch, name):
    """Make ``importlib.util.find_spec`` (and an import) say ``name`` is not installed."""
    import importlib.util
    import sys

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a, **k: None if n == name else real(n, *a, **k))
    monkeypatch.setitem(sys.modules, name, None)  # `import name` now raises ImportError


def test_a_missing_optional_package_stops_only_runs_still_to_train(tmp_path, capsys, monkeypatch):
    """sb3 runs need stable-baselines3 to train, not to be planned or reported once finished."""
    from rlx2.config import ConfigError
    from rlx2.methods import resolve
    from rlx2.train import prepare

    pytest.importorskip("stable_baselines3")
    path = str(write(tmp_path, GOOD.replace('methods = ["dense", "rlx2"]', 'methods = ["sb3"]').replace(
        "seeds = 2", "seeds = 1")))
    results = tmp_path / "results"
    with monkeypatch.context() as patch:
        hide_package(patch, "stable_baselines3")
        cfg = load_suite(path).runs[0]
        assert resolve(cfg)[1].name == "sb3"  # resolving (to compare or report a run) needs no package
        with pytest.raises(ConfigError, match="stable-baselines3"):
            prepare(cfg, tmp_path / "adhoc")
        assert not (tmp_path / "adhoc").exists()
        with pytest.raises(SystemExit) as info:
            main(["suite", "run", path, "--results", str(results), "--quiet", "--workers", "1"])
        assert info.value.code == 2 and "method='sb3'" in capsys.readouterr().err
        assert not results.exists() or not list(results.rglob("config.json"))  # refused before any run started
    assert main(["suite", "run", path, "--results", str(results), "--quiet", "--workers", "1"]) == 0
    capsys.readouterr()
    with monkeypatch.context() as patch:  # finished: running, planning and reporting it need no stable-baselines3
        hide_package(patch, "stable_baselines3")
        assert main(["suite", "run", path, "--results", str(results), "--quiet", "--workers", "1"]) == 0
        assert "1 already done" in capsys.readouterr().out
        assert main(["suite", "plan", path, "--results", str(results)]) == 0
        assert main(["report", path, "--results", str(results), "--out", str(tmp_path / "report")]) == 0
        assert (tmp_path / "report" / "index.md").is_file()
