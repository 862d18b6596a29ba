"""Statistics and reports: hand-computed aggregates, repeatable intervals, the table layouts on
fixture results made by real tiny runs, a report with a missing run, and the figures."""

import shutil

import numpy as np
import pandas as pd
import pytest

from rlx2.config import run_id
from rlx2.report import ReportSettings, build_report
from rlx2.stats import AGGREGATES, aggregate_metrics, interval_estimates, normalise, probability_of_improvement
from rlx2.suite import load_suite
from test_faults import make_suite

X = np.array([[0.1, 0.5], [0.9, 0.3], [0.4, 0.8], [0.2, 0.6]])  # 4 runs x 2 tasks


def test_aggregates_by_hand():
    # IQM: the middle half of the 8 sorted values 0.3 0.4 0.5 0.6; median/mean of the task means 0.4 and 0.55
    assert AGGREGATES["IQM"](X) == pytest.approx(0.45)
    assert AGGREGATES["Median"](X) == pytest.approx(0.475)
    assert AGGREGATES["Mean"](X) == pytest.approx(0.475)
    assert AGGREGATES["Optimality gap"](X) == pytest.approx(1 - 0.475)


def test_normalisation():
    assert normalise([10.0, 30.0, 50.0], 10.0, 50.0).tolist() == [0.0, 0.5, 1.0]


def test_intervals_are_repeatable_and_leave_the_global_generator_alone():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = aggregate_metrics({"a": X, "b": X + 0.2}, reps=300, seed=7)
    b = aggregate_metrics({"a": X, "b": X + 0.2}, reps=300, seed=7)
    assert a == b
    assert np.array_equal(np.random.get_state()[1], before)
    point, low, high = a["a"]["IQM"]
    assert low <= point <= high and point == pytest.approx(0.45)
    assert interval_estimates({"x": X}, np.mean, 300, 1) != interval_estimates({"x": X}, np.mean, 300, 2)
    (pair, (p, lo, hi)), = probability_of_improvement({"a": X, "b": X + 0.2}, "b", 300, 0).items()
    assert pair == "b,a" and 0.5 < p <= 1 and lo <= p <= hi


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


def test_report_tables_have_the_paper_layout_and_are_byte_identical(fixture_results, tmp_path):
    suite, results = fixture_results
    settings = ReportSettings(reps=200, seed=0, random_episodes=2)
    build_report(suite.name, suite.profile, list(suite.runs), results, tmp_path / "a", settings)
    build_report(suite.name, suite.profile, list(suite.runs), results, tmp_path / "b", settings)
    for name in ("table_paper.md", "table_paper.tex", "table_paper.csv", "table_aggregate.md", "table_vs_paper.md",
                 "runs.csv", "index.md"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text(), name
    paper = pd.read_csv(tmp_path / "a" / "table_paper.csv")
    assert list(paper.columns) == ["Algo", "Task", "Actor sp.", "Critic sp.", "Size", "Train FLOPs", "Infer. FLOPs",
                                   "static", "rlx2"]
    assert paper.Task.tolist() == ["Hopper-v5", "Average"]
    # 64-wide networks at 90/85 %: 0.1336 of the dense weights with the reference's per-layer count n - int(S n)
    assert paper["Actor sp."][0] == "90%" and paper.Size[0] == "0.134x"
    tex = (tmp_path / "a" / "table_paper.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"90\%" in tex
    aggregate = pd.read_csv(tmp_path / "a" / "table_aggregate.csv")
    assert aggregate.Method.tolist() == ["dense", "static", "rlx2"]
    assert aggregate.IQM[0].startswith("1.00")  # dense normalised to itself
    versus = (tmp_path / "a" / "table_vs_paper.md").read_text()
    assert "| TD3 | rlx2 |" in versus and "99.7" in versus
    runs = pd.read_csv(tmp_path / "a" / "runs.csv")
    assert set(runs.metric) == {"eval_return", "final_score"} and len(runs[runs.metric == "final_score"]) == 6


def test_report_names_missing_runs_and_writes_figures(fixture_results, tmp_path):
    suite, results = fixture_results
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    missing = next(c for c in suite.runs if c.method == "static" and c.seed == 1)
    (copy / run_id(missing) / "result.json").unlink()
    summary = build_report(suite.name, suite.profile, list(suite.runs), copy, tmp_path / "r",
                           ReportSettings(reps=200, seed=0, random_episodes=2))
    assert summary["missing"] == [run_id(missing)] and summary["finished"] == 5
    index = (tmp_path / "r" / "index.md").read_text()
    assert "## Missing runs" in index and f"`{run_id(missing)}`" in index and "5 of 6 finished" in index
    assert "## Reference returns" in index and "| TD3 | Hopper-v5 |" in index
    figures = sorted(p.name for p in (tmp_path / "r" / "figures").iterdir())
    for name in ("learning_curves", "intervals_td3", "performance_profiles_td3", "probability_of_improvement_td3",
                 "score_vs_size", "score_vs_training_flops"):
        for ext in ("png", "pdf"):
            assert f"{name}.{ext}" in figures
            assert (tmp_path / "r" / "figures" / f"{name}.{ext}").stat().st_size > 1_000
        assert f"![{name}](figures/{name}.png)" in index
