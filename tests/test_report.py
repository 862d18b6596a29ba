"""Statistics and reports: hand-computed aggregates, repeatable intervals, the table layouts on
fixture results made by real tiny runs, a report with a missing run, and the figures."""

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rlx2.config import run_id
from rlx2.report import build_report, package_versions, versus_paper
from rlx2.scores import DenseReference, ReportSettings, interval_cell
from rlx2.stats import normalise
from rlx2.suite import load_suite
from test_faults import make_suite

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "report"))

def test_package_versions_are_one_line_that_says_where_runs_differ():
    recorded = [{"torch": "2.13.0", "numpy": "2.4.6"},
                {"torch": "2.13.0", "numpy": "2.4.7", "stable_baselines3": "2.9.2"}]
    assert package_versions(recorded) == "numpy 2.4.6 / 2.4.7, stable_baselines3 2.9.2 (some runs), torch 2.13.0"
    assert package_versions([]) == "unknown"


def test_an_interval_says_what_it_is_at_its_seed_count():
    # One seed: no interval at all; 2-4 seeds: a bootstrap interval is about the seeds' range, so it is called one.
    assert interval_cell(90.3, 90.3, 90.3, seeds=1) == "90.3 (1 seed)"
    assert interval_cell(90.3, 80.0, 99.5, seeds=2) == "90.3 (range 80.0 to 99.5)"
    assert interval_cell(90.3, 80.0, 99.5, seeds=4) == "90.3 (range 80.0 to 99.5)"
    assert interval_cell(90.3, 80.0, 99.5, seeds=5) == "90.3 [80.0, 99.5]"


def test_tasks_at_different_sparsities_share_the_columns_beside_the_paper():
    # Hopper (98/95 %) and HalfCheetah (90/85 %): one "Paper" column, the sparsity in its own column, no gaps.
    refs = {("td3", "Hopper-v5"): DenseReference(29.0, 300.0, 250.0, 350.0, 3),
            ("td3", "HalfCheetah-v5"): DenseReference(-270.0, 150.0, 100.0, 200.0, 3)}
    pct = pd.DataFrame([{"algo": "td3", "task": t, "method": "rlx2", "pct": 90.0, "low": 80.0, "high": 99.0,
                         "seeds": 3} for t in ("Hopper-v5", "HalfCheetah-v5")])
    table = versus_paper(pct, {}, refs, 300_000)
    assert list(table.columns) == ["Algo", "Task", "Method", "Ours (300,000 steps, gymnasium v5)",
                                   "Paper (3,000,000 steps, gym v3)", "Paper's sparsity (actor/critic)"]
    assert not table.isna().any().any()
    rlx2 = table[table.Method == "rlx2"].set_index("Task")
    assert rlx2.loc["Hopper-v5", "Paper's sparsity (actor/critic)"] == "98%/95%"
    assert rlx2.loc["HalfCheetah-v5", "Paper (3,000,000 steps, gym v3)"] == "99.8"
    # A profile that runs only some of the paper's methods says which are not in it and which have not finished
    planned = {("td3", "Hopper-v5"): {"dense", "rigl", "rlx2"}, ("td3", "HalfCheetah-v5"): {"dense", "rlx2"}}
    ours = versus_paper(pct, {}, refs, 300_000, planned).set_index(["Task", "Method"])["Ours (300,000 steps, gymnasium v5)"]
    assert ours["Hopper-v5", "rlx2"] == "90.0 (range 80.0 to 99.0)"
    assert ours["Hopper-v5", "rigl"] == "no finished run yet"
    assert ours["Hopper-v5", "tiny"] == ours["HalfCheetah-v5", "rigl"] == "not in this profile"


def test_normalisation():
    assert normalise([10.0, 30.0, 50.0], 10.0, 50.0).tolist() == [0.0, 0.5, 1.0]


FIXTURE = Path(__file__).parent / "fixtures" / "report"
SETTINGS = ReportSettings(reps=500, seed=0, random_episodes=2)  # what make_fixture.py used


def fixture_suite():
    return load_suite(str(FIXTURE / "suite.toml"))


def test_the_report_regenerates_from_committed_records_alone(tmp_path):
    suite = fixture_suite()
    results = tmp_path / "results"
    shutil.copytree(FIXTURE / "results", results)
    build_report(suite.name, suite.profile, list(suite.runs), results, tmp_path / "report", SETTINGS,
                 suite.description, primary=suite.primary)
    expected = sorted(p.name for p in (FIXTURE / "expected").iterdir())
    assert expected == sorted(p.name for p in (tmp_path / "report").iterdir() if p.name != "figures")
    for name in expected:  # byte-identical tables, index and summary
        assert (tmp_path / "report" / name).read_bytes() == (FIXTURE / "expected" / name).read_bytes(), name
    paper = pd.read_csv(tmp_path / "report" / "table_paper.csv")
    assert list(paper.columns) == ["Algo", "Task", "Actor sp.", "Critic sp.", "Size", "Train FLOPs", "Infer. FLOPs",
                                   "sb3", "static", "rigl", "rlx2"]
    # hand-made finals: dense 1000, 1100, 900, 1050, 950 (mean 1000); static 600 ... (mean 600); rigl mean 800
    assert paper.static[0].startswith("60.0 [") and paper.rigl[0].startswith("80.0 [")
    assert paper.sb3[0].startswith("100.0 (range ")  # three seeds of sb3: a range, not a 95 % interval
    assert paper.Size[0] == "0.040x" and paper["Actor sp."][0] == "98%" and len(paper) == 1  # one task: no average
    ordering = pd.read_csv(tmp_path / "report" / "table_ordering.csv").set_index("Paper's order")
    # rlx2 > rigl is the primary: five runs above five, p = 1/252, tested alone; the family (rlx2 > static,
    # rigl > static: four directional hypotheses) is Holm-corrected: 1/252 x 4 = 0.0159
    primary = ordering.loc["rlx2 (97.0) > rigl (90.6) (primary)"]
    assert primary.Verdict == "holds" and primary["Holm-adjusted"] == "tested alone (primary)"
    assert primary["p: paper's direction / reverse"] == "0.0040 / 1.0000"
    assert ordering.loc["rlx2 (97.0) > static (67.7)", "Holm-adjusted"] == "0.0159 / 1.0000"
    assert set(ordering.Verdict) == {"holds"}
    plan = pd.read_csv(tmp_path / "report" / "table_plan.csv")
    assert plan.Comparison[0] == "dense (100.0) > static (67.7) (separation check)"
    assert plan.Comparison[1] == "rlx2 (97.0) > rigl (90.6) (primary)"
    # 14 seeds needed, 5 a side: 9 more rlx2 and 9 more rigl runs at 1 h each (the median; seed 0 took 3 h)
    assert plan["Core-hours to get there"].tolist() == [0.0, 18.0, 0.0, 0.0]
    by_seed = pd.read_csv(tmp_path / "report" / "table_seeds.csv").set_index("Method")
    assert by_seed.loc["static", "Final score by seed"] == "0: 600.0, 1: 700.0, 2: 500.0, 3: 650.0, 4: 550.0"
    # SD of 600, 700, 500, 650, 550: sqrt((0 + 100^2 + 100^2 + 50^2 + 50^2) / 4) = 79.06; sb3 has 3 seeds
    assert by_seed.loc["static", "SD"] == 79.1 and by_seed.loc["sb3", "Seeds"] == 3
    assert by_seed["Hours per run (median)"].tolist() == [2.0, 1.5, 1.0, 1.0, 1.0]
    sb3 = pd.read_csv(tmp_path / "report" / "table_sb3.csv")
    assert sb3["Final scores by seed"].tolist() == ["1000.0, 1100.0, 900.0, 1050.0, 950.0", "950.0, 1050.0, 1000.0"]
    assert sb3.Verdict[0] == "too few seeds (n = 5 vs 3)"
    index = (tmp_path / "report" / "index.md").read_text()
    for name in ("learning_curves", "intervals_td3", "performance_profiles_td3", "probability_of_improvement_td3",
                 "score_vs_size", "score_vs_training_flops"):
        for ext in ("png", "pdf"):
            assert (tmp_path / "report" / "figures" / f"{name}.{ext}").stat().st_size > 1_000
        assert f"![{name}](figures/{name}.png)\n\n*" in index  # each figure has a caption under it


def test_when_dense_does_not_beat_the_random_policy_ratios_are_not_findings(tmp_path):
    from make_fixture import FINALS, write_records

    suite = fixture_suite()
    finals = {**FINALS, "dense": [20.0, 5.0, 12.0, 8.0, 15.0]}  # a random policy scores ~64 on Hopper
    write_records(tmp_path / "results", suite.runs, finals)
    build_report(suite.name, suite.profile, list(suite.runs), tmp_path / "results", tmp_path / "report", SETTINGS)
    index = (tmp_path / "report" / "index.md").read_text()
    assert "not reported: dense does not clearly beat the random policy" in index
    paper = pd.read_csv(tmp_path / "report" / "table_paper.csv")
    assert set(paper.loc[0, ["static", "rigl", "rlx2"]]) == {"n/a (see reference returns)"}
    assert not (tmp_path / "report" / "table_aggregate.csv").exists()  # no normalised scores either
    assert "## Aggregate metrics\n\nNot reported" in index
    assert (tmp_path / "report" / "table_ordering.csv").exists()  # raw-score comparisons still stand


def test_normalised_scores_never_invert_the_ordering_of_raw_scores():
    from rlx2.scores import DenseReference, normalised_scores

    rng = np.random.default_rng(0)
    for trial in range(200):
        random_return, dense_mean = rng.normal(0, 100), rng.normal(0, 300)
        spread = abs(rng.normal(0, 100))
        ref = DenseReference(random_return, dense_mean, dense_mean - spread, dense_mean + spread, 3)
        rows = [{"algo": "td3", "task": "T", "method": m, "seed": k, "score": float(rng.normal(0, 500))}
                for m in ("dense", "a", "b") for k in range(3)]
        finals = pd.DataFrame(rows)
        normalised, _ = normalised_scores(finals, {("td3", "T"): ref})
        if ref.problem is not None:
            assert normalised == {}  # not normalised at all
            continue
        scores = normalised["td3"].scores
        raw = finals.sort_values(["method", "seed"]).score.to_numpy()
        flat = np.concatenate([scores[m][:, 0] for m in sorted(scores)])
        assert np.array_equal(np.argsort(raw, kind="stable"), np.argsort(flat, kind="stable")), trial


def test_a_report_never_replaces_a_fuller_one_unless_forced(tmp_path):
    from rlx2.report import ReportRefused

    suite = fixture_suite()
    out = tmp_path / "report"
    build_report(suite.name, suite.profile, list(suite.runs), FIXTURE / "results", out, SETTINGS)
    (out / "stale.txt").write_text("left over from an older report format")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportRefused, match="23 finished runs; this one would have 0 of 23"):
        build_report(suite.name, suite.profile, list(suite.runs), tmp_path / "empty", out, SETTINGS)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # untouched
    summary = build_report(suite.name, suite.profile, list(suite.runs), tmp_path / "empty", out, SETTINGS, force=True)
    assert summary["finished"] == 0
    # nothing stale; the plan is there before any run finishes (what the profile can resolve)
    assert sorted(p.name for p in out.iterdir()) == ["index.md", "runs.csv", "summary.json", "table_plan.csv",
                                                     "table_plan.md"]
    assert "No run of this profile has finished yet" in (out / "index.md").read_text()
    assert not list(tmp_path.glob(".report*"))  # no staging directory left behind


def test_report_cli_errors_on_a_missing_results_directory_and_on_missing_runs(tmp_path, capsys):
    from rlx2.cli import main

    suite_file = str(FIXTURE / "suite.toml")
    with pytest.raises(SystemExit) as info:
        main(["report", suite_file, "--results", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")])
    assert info.value.code == 2 and "nowhere" in capsys.readouterr().err and not (tmp_path / "r").exists()
    results = tmp_path / "results"
    shutil.copytree(FIXTURE / "results", results)
    shutil.rmtree(results / "td3/Hopper-v5/rigl/seed-2")
    args = ["report", suite_file, "--results", str(results), "--out", str(tmp_path / "r"), "--reps", "100"]
    assert main(args) == 1 and "--allow-missing" in capsys.readouterr().err
    assert main([*args, "--allow-missing"]) == 0


def test_a_wrong_typed_result_is_a_corrupt_run_not_a_crash(tmp_path, capsys):
    from rlx2.cli import main

    suite = fixture_suite()
    results = tmp_path / "results"
    shutil.copytree(FIXTURE / "results", results)
    record = results / "td3/Hopper-v5/static/seed-0/result.json"
    record.write_text(record.read_text().replace('"final_score": 600.0', '"final_score": "600"'))
    summary = build_report(suite.name, suite.profile, list(suite.runs), results, tmp_path / "r", SETTINGS)
    assert summary["missing"] == ["td3/Hopper-v5/static/seed-0"]
    assert "corrupt result record: final_score='600': not a finite number" in (tmp_path / "r" / "index.md").read_text()
    assert main(["report", str(FIXTURE / "suite.toml"), "--results", str(results), "--out", str(tmp_path / "r"),
                 "--reps", "50", "--allow-missing"]) == 0
    assert capsys.readouterr().err.strip().splitlines() == [
        f"rlx2 report: {record}: final_score='600': not a finite number; the run is left out (listed in the report)"]
    assert main(["suite", "status", str(FIXTURE / "suite.toml"), "--results", str(results)]) == 0
    assert "td3/Hopper-v5/static/seed-0  corrupt" in capsys.readouterr().out


def test_a_run_resumed_on_later_code_lists_that_commit_too(tmp_path):
    import json

    suite = fixture_suite()
    results = tmp_path / "results"
    shutil.copytree(FIXTURE / "results", results)
    record = results / "td3/Hopper-v5/static/seed-0/result.json"
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "resumes": [{"step": 25_000, "git_commit": "later0commit"}]}))
    build_report(suite.name, suite.profile, list(suite.runs), results, tmp_path / "r", SETTINGS)
    commits = next(line for line in (tmp_path / "r" / "index.md").read_text().splitlines() if "code commit(s)" in line)
    assert "later0commit" in commits and len(commits.split(", ")) == 2  # the fixture's own commit, and the resume's
    record.write_text(json.dumps({**data, "resumes": "later0commit"}))
    summary = build_report(suite.name, suite.profile, list(suite.runs), results, tmp_path / "r2", SETTINGS)
    assert summary["missing"] == ["td3/Hopper-v5/static/seed-0"]


@pytest.fixture(scope="module")
def fixture_results(tmp_path_factory):
    """A tiny real suite (TD3 Hopper-v5, dense / static / rlx2, 2 seeds) run by the local executor."""
    from rlx2.executors import LocalExecutor

    root = tmp_path_factory.mktemp("suite")
    path = make_suite(root, methods=("dense", "static", "rlx2"), seeds=2, steps=1_200)
    suite = load_suite(str(path))
    outcome = LocalExecutor(workers=2, quiet=True).run(list(suite.runs), root / "results")
    assert outcome.ok
    return suite, root / "results"


def test_a_report_of_real_runs_is_byte_identical_and_names_missing_runs(fixture_results, tmp_path):
    suite, results = fixture_results
    settings = ReportSettings(reps=200, seed=0, random_episodes=2)
    build_report(suite.name, suite.profile, list(suite.runs), results, tmp_path / "a", settings)
    build_report(suite.name, suite.profile, list(suite.runs), results, tmp_path / "b", settings)
    names = sorted(p.name for p in (tmp_path / "a").iterdir() if p.is_file())
    assert "runs.csv" in names and "table_references.md" in names
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    runs = pd.read_csv(tmp_path / "a" / "runs.csv")
    assert set(runs.metric) == {"eval_return", "final_score"} and len(runs[runs.metric == "final_score"]) == 6
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    missing = next(c for c in suite.runs if c.method == "static" and c.seed == 1)
    (copy / run_id(missing) / "result.json").unlink()
    summary = build_report(suite.name, suite.profile, list(suite.runs), copy, tmp_path / "r", settings)
    assert summary["missing"] == [run_id(missing)] and summary["finished"] == 5
    index = (tmp_path / "r" / "index.md").read_text()
    assert "## Missing runs" in index and f"`{run_id(missing)}`" in index and "5 of 6 finished" in index
    assert "## Reference returns" in index and "| TD3 | Hopper-v5 |" in index
    assert "too few seeds (n = 2 vs 1)" in index  # dense 2 seeds against static 1: no verdict, said plainly


def test_the_final_score_averages_the_last_five_percent_of_the_evaluations_made(tmp_path):
    from rlx2.config import RunConfig
    from rlx2.methods import resolve
    from rlx2.recorder import Recorder
    from rlx2.records import RunDirectory, RunResult

    # 20 evaluations (10 000 steps, one every 500): the last 5 % is 1, so the floor of 3 applies
    cfg, method = resolve(RunConfig(steps=10_000, eval_every=500))
    assert cfg.final_window == 3
    curve = [10.0 * k for k in range(1, 21)]  # an untrained start, a trained end
    run_dir = RunDirectory(tmp_path / "run")
    run_dir.start({"config": cfg.to_dict()})
    recorder = Recorder(cfg, method, run_dir)
    recorder.evaluations = list(curve)
    result = recorder.finish(None, RunResult(steps=cfg.steps, iterations=0, wall_seconds=0.0, steps_per_second=None,
                                             final_densities={}, flops={}))
    assert result.final_score == (180.0 + 190.0 + 200.0) / 3 and result.final_window == 3
    # 600 evaluations (the paper's 3M steps, one every 5 000): the last 30
    assert resolve(RunConfig(steps=3_000_000))[0].final_window == 30


def test_a_dense_reference_needs_seeds_and_an_interval_clear_of_random_and_zero():
    from rlx2.scores import DenseReference

    assert DenseReference(20.0, 500.0, 400.0, 600.0, 3).problem is None
    assert "one dense run" in DenseReference(20.0, 500.0, 500.0, 500.0, 1).problem
    assert "does not clearly beat the random policy" in DenseReference(20.0, 60.0, 10.0, 110.0, 3).problem
    assert "reaches 0" in DenseReference(-300.0, 40.0, -20.0, 100.0, 3).problem  # above random, not above 0
    assert DenseReference(20.0, float("nan"), float("nan"), float("nan"), 0).problem == "no finished dense run"


def test_unequal_seed_counts_use_every_seed_of_the_committed_reference_records():
    # The audit's case: static 775.2 and 305.8 (seeds 0, 1) against set 549.2 (seed 0) is one win and one loss,
    # P(static > set) = 0.50; cutting both to one seed printed 1.00 [1.00, 1.00].
    from rlx2.report import ordering_table
    from rlx2.results import collect, final_scores

    suite = load_suite("mujoco", "reference")
    chosen = [c for c in suite.runs if (c.method, c.seed) in {("static", 0), ("static", 1), ("set", 0)}]
    results = Path(__file__).resolve().parents[1] / "results" / "mujoco" / "reference"
    finals = final_scores(collect(chosen, results, "mujoco", "reference").table)
    assert sorted(finals.score.round(1)) == [305.8, 549.2, 775.2]
    table = ordering_table(finals, list(suite.runs), suite.primary, ReportSettings(reps=200))
    row = table[table["Paper's order"] == "static (67.7) > set (66.5)"].iloc[0]
    assert row["P(first > second)"] == "0.50 (1 seed)" and row.Seeds == "2 vs 1"
    assert row.Verdict == "too few seeds (n = 2 vs 1)"


def report_process(out, *extra):
    return subprocess.Popen([sys.executable, "-m", "rlx2.cli", "report", str(FIXTURE / "suite.toml"), "--results",
                             str(FIXTURE / "results"), "--out", str(out), "--reps", "50", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_staging(parent, process):
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        staging = [p for p in parent.iterdir() if p.name.startswith(".report.") and p.is_dir()]
        if staging and (staging[0] / "runs.csv").exists():
            return staging[0]
        time.sleep(0.05)
    raise AssertionError("no staging directory appeared")


def test_an_interrupted_report_leaves_nothing_behind_and_a_killed_ones_leftovers_go_next_time(tmp_path):
    from rlx2.cli import main

    out = tmp_path / "report"
    (tmp_path / ".report.notes").write_text("a user's hidden file that looks like ours")
    terminated = report_process(out)
    wait_for_staging(tmp_path, terminated)
    terminated.send_signal(signal.SIGTERM)
    _, err = terminated.communicate(timeout=60)
    assert (terminated.returncode, err.strip().splitlines()) == (130, ["rlx2 report: interrupted (SIGTERM)"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".report.notes"]  # no staging, no report, notes kept
    killed = report_process(out)
    left = wait_for_staging(tmp_path, killed)
    killed.kill()
    killed.wait()
    assert left.exists()  # SIGKILL cannot be cleaned up after: the next report on this --out removes it
    assert main(["report", str(FIXTURE / "suite.toml"), "--results", str(FIXTURE / "results"), "--out", str(out),
                 "--reps", "50"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".report.notes", "report"]
    assert (tmp_path / ".report.notes").read_text() == "a user's hidden file that looks like ours"
    assert ".rlx2-report-staging" not in {p.name for p in out.iterdir()}


def test_an_older_report_moved_aside_by_an_interrupted_swap_is_put_back(tmp_path):
    from rlx2.report import remove_stale_staging

    suite = fixture_suite()
    out = tmp_path / "report"
    build_report(suite.name, suite.profile, list(suite.runs), FIXTURE / "results", out, SETTINGS)
    aside = tmp_path / ".report.k3x9"
    out.rename(aside)  # killed between moving the old report aside and moving the new one in
    remove_stale_staging(out)
    assert (out / "summary.json").exists() and not aside.exists()


def test_a_garbage_line_in_evaluations_leaves_that_run_out_named_and_the_report_goes_on(tmp_path, capsys):
    from rlx2.cli import main

    results = tmp_path / "results"
    shutil.copytree(FIXTURE / "results", results)
    evaluations = results / "td3/Hopper-v5/static/seed-0/evaluations.csv"
    lines = evaluations.read_text().splitlines()
    evaluations.write_text("\n".join([*lines[:4], "garbage,line", *lines[4:]]) + "\n")
    args = ["report", str(FIXTURE / "suite.toml"), "--results", str(results), "--out", str(tmp_path / "r"),
            "--reps", "50"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == (f"rlx2 report: {evaluations}: line 5: not a step and a return ('garbage', 'line'); the run is "
                      "left out (listed in the report)")
    assert "--allow-missing" in err[1] and len(err) == 2
    assert f"- `td3/Hopper-v5/static/seed-0`: corrupt record: {evaluations}: line 5" in (
        tmp_path / "r" / "index.md").read_text()
    assert main([*args, "--allow-missing", "--force"]) == 0
    assert main(["suite", "status", str(FIXTURE / "suite.toml"), "--results", str(results)]) == 0
    assert re.search(rf"td3/Hopper-v5/static/seed-0 +corrupt +{re.escape(str(evaluations))}: line 5",
                     capsys.readouterr().out)


def test_report_runs_builds_the_report_from_any_directory_of_runs_and_runs_lists_them(tmp_path, capsys):
    from rlx2.cli import main

    root = tmp_path / "experiments"
    for i, run in enumerate(sorted(p.parent for p in (FIXTURE / "results").glob("*/*/*/seed-*/result.json"))):
        shutil.copytree(run, root / f"batch-{i % 2}" / run.relative_to(FIXTURE / "results"))  # any layout
    unfinished = next(root.glob("batch-*/td3/Hopper-v5/rigl/seed-0"))
    (unfinished / "result.json").unlink()
    (unfinished / "diagnostics.csv").write_text("step,iterations\n500,0\n1000,0\n")
    assert main(["runs", str(root)]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split() == ["run", "algo", "task", "method", "seed", "steps", "score", "state"]
    assert len(listing) == 1 + 23 + 1 and listing[-1] == f"22 done, 1 pending of 23 ({root})"
    row = next(line for line in listing if line.startswith(str(unfinished.relative_to(root))))
    assert row.split()[1:] == ["td3", "Hopper-v5", "rigl", "0", "1,000/10,000", "-", "pending"]
    finished = next(root.glob("batch-*/td3/Hopper-v5/rlx2/seed-1"))
    for large in ("checkpoint.pt", "model.pt"):
        (finished / large).write_bytes(b"large")
    assert main(["runs", str(root), "--records"]) == 0  # what to commit: the finished runs' records, nothing else
    records = capsys.readouterr().out.split()
    assert len(records) == 22 * 3  # the fixture's runs keep config.json, evaluations.csv and result.json
    assert {Path(p).name for p in records} == {"config.json", "evaluations.csv", "result.json"}
    assert str(finished / "result.json") in records and not any(str(unfinished) in p for p in records)
    assert main(["report", "--runs", str(root), "--out", str(tmp_path / "r"), "--reps", "50"]) == 1  # one unfinished
    index = (tmp_path / "r" / "index.md").read_text()
    assert "Every run found under" in index and "22 of 23 finished" in index
    assert "- `td3/Hopper-v5/rigl/seed-0`" in index  # the unfinished one is listed, not averaged
    finals = pd.read_csv(tmp_path / "r" / "runs.csv").query("metric == 'final_score'")
    assert len(finals) == 22 and set(finals.method) == {"dense", "sb3", "static", "rigl", "rlx2"}
    assert (tmp_path / "r" / "figures" / "learning_curves.png").exists()


@pytest.mark.parametrize(("line", "problem"), [
    ("garbage,line", "line 3: not a step and a return ('garbage', 'line')"),
    ("2000,nan", "line 3: not a step and a return ('2000', 'nan')"),
    ("-5,10.0", "line 3: not a step and a return ('-5', '10.0')"),
    ("2000", "line 3: not a step and a return ('2000', None)"),
])
def test_an_evaluation_curve_is_read_as_untrusted(tmp_path, line, problem):
    from rlx2.results import read_evaluations

    path = tmp_path / "evaluations.csv"
    path.write_text(f"step,mean_return,std_return,episodes\n1000,5.0,0.0,2\n{line}\n")
    assert read_evaluations(path) == ([], f"{path}: {problem}")
    path.write_bytes(b"step,mean_return\n\xff\xfe\n")
    assert "not a CSV file" in read_evaluations(path)[1]
    path.write_text("a,b\n1,2\n")
    assert read_evaluations(path)[1] == f"{path}: no step and mean_return columns"
    path.write_text("step,mean_return,std_return,episodes\n1000,5.0,0.0,2\n2000,7.5,0.0,2\n")
    assert read_evaluations(path) == ([(1000, 5.0), (2000, 7.5)], None)
