"""What runs cost: measured hours per run, the cost of the seeds a comparison needs, what a profile has left."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from rlx2.cli import main
from rlx2.comparisons import paper_pairs, plan_pairs
from rlx2.config import run_id
from rlx2.records import CHECKPOINT_FILE
from rlx2.report import cost_text
from rlx2.run_costs import hours_to_reach, makespan, measured_hours, remaining
from rlx2.suite import load_suite

FIXTURE = Path(__file__).parent / "fixtures" / "report"
KEY = ("td3", "Hopper-v5")


@pytest.fixture
def results(tmp_path):
    """The report fixture's records: dense 2 h a run, sb3 1.5 h, the sparse methods 1 h; seed 0 of each 3x that."""
    shutil.copytree(FIXTURE / "results", tmp_path / "results")
    return load_suite(str(FIXTURE / "suite.toml")), tmp_path / "results"


def test_a_methods_cost_is_the_median_of_its_finished_runs(results):
    suite, path = results
    hours = measured_hours(suite.runs, path)
    assert hours == {(*KEY, "dense"): 2.0, (*KEY, "rigl"): 1.0, (*KEY, "rlx2"): 1.0, (*KEY, "sb3"): 1.5,
                     (*KEY, "static"): 1.0}  # the slow seed 0 moves no median
    for cfg in suite.runs:  # without finished runs a method has no cost, rather than another method's
        if cfg.method == "rigl":
            (path / run_id(cfg) / "result.json").unlink()
    assert (*KEY, "rigl") not in measured_hours(suite.runs, path)
    static = [c for c in suite.runs if c.method == "static"]
    (path / run_id(static[1]) / "result.json").unlink()  # 3, 1, 1, 1 h left: still 1
    (path / run_id(static[2]) / "result.json").unlink()  # 3, 1, 1 h: 1
    (path / run_id(static[3]) / "result.json").unlink()  # 3, 1 h: 2
    assert measured_hours(static, path) == {(*KEY, "static"): 2.0}


def test_the_cost_of_reaching_a_seed_count_counts_only_missing_runs():
    hours = {(*KEY, "rlx2"): 0.5, (*KEY, "rigl"): 0.25}
    assert hours_to_reach(hours, *KEY, [("rlx2", 3), ("rigl", 10)], 9) == 6 * 0.5  # rigl already has more
    assert hours_to_reach(hours, *KEY, [("rlx2", 3), ("rigl", 4)], 9) == 6 * 0.5 + 5 * 0.25
    assert hours_to_reach(hours, *KEY, [("rlx2", 3), ("static", 9)], 9) == 3.0  # static needs none: no cost needed
    assert hours_to_reach(hours, *KEY, [("rlx2", 3), ("static", 2)], 9) is None  # static needs runs, none measured


def test_a_plan_prices_the_seeds_each_comparison_needs():
    declared = {"dense": 5, "rigl": 5, "rlx2": 5}
    (pair,) = paper_pairs("td3", "Walker2d-v5", list(declared), primary=("rlx2", "rigl"))
    scores = {"dense": np.array([900.0, 1100.0]), "rlx2": np.array([1000.0]), "rigl": np.array([300.0, 500.0])}
    (planned,) = plan_pairs([pair], scores, declared)
    assert planned.needed == 5  # tests/test_stats.py: 5 seeds a side, with 1 rlx2 and 2 rigl seeds now
    hours = {("td3", "Walker2d-v5", "rlx2"): 0.5, ("td3", "Walker2d-v5", "rigl"): 0.5}
    assert cost_text(planned, hours, "td3", "Walker2d-v5") == "3.5"  # 4 rlx2 and 3 rigl runs of 0.5 h
    del hours["td3", "Walker2d-v5", "rigl"]
    assert cost_text(planned, hours, "td3", "Walker2d-v5") == "unknown (no finished rigl run yet)"
    (unknown,) = plan_pairs([pair], {}, declared)
    assert cost_text(unknown, hours, "td3", "Walker2d-v5") == "-"  # no seeds needed to price


def test_what_is_left_counts_the_rest_of_each_unfinished_run(results):
    suite, _ = results
    runs = {(c.method, c.seed): c for c in suite.runs}
    hours = {(*KEY, "dense"): 2.0, (*KEY, "static"): 1.0}
    steps = runs["dense", 1].steps
    left = remaining([(runs["dense", 1], 0), (runs["static", 1], steps // 4), (runs["rigl", 1], 0)], hours)
    assert (left.hours, left.runs, left.unpriced) == (2.0 + 0.75, 3, 1)
    text = left.text(hours, workers=2)
    assert "about 2.8 core-hours for 3 unfinished runs (about 2.0 h of wall-clock with 2 workers)" in text
    assert "1 of them not counted" in text
    assert remaining([], hours).text(hours) == "nothing left to run"
    assert remaining([(runs["rigl", 1], 0)], hours).text(hours).startswith(
        "left: 1 unfinished run; no run time to price them with yet")


def test_wall_clock_is_the_schedule_of_whole_runs_over_the_workers():
    assert makespan([1.0, 1.0, 1.0], 2) == 2.0  # the third run waits for a worker: not 1.5
    assert makespan([0.5, 1.0, 1.0], 2) == 1.5  # a half-done run frees its worker first
    assert makespan([1.0, 1.0, 1.0], 16) == 1.0 and makespan([], 2) == 0.0
    assert makespan([2.0, 1.0, 1.0, 1.0], 1) == 5.0


def test_suite_status_says_what_the_rest_will_take(results, capsys):
    suite, path = results
    runs = {(c.method, c.seed): c for c in suite.runs}
    (path / run_id(runs["static", 1]) / "result.json").unlink()  # pending: a whole static run, 1 h
    partial = path / run_id(runs["dense", 2])
    (partial / "result.json").unlink()  # partial at half its steps: half a dense run, 1 h
    (partial / CHECKPOINT_FILE).write_bytes(b"")
    (partial / "diagnostics.csv").write_text(f"step,critic_loss\n{runs['dense', 2].steps // 2},0.1\n")
    assert main(["suite", "status", str(FIXTURE / "suite.toml"), "--results", str(path), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert f"{run_id(runs['dense', 2])}   partial" in out
    assert "left: about 2.0 core-hours for 2 unfinished runs (about 1.0 h of wall-clock with 2 workers)" in out
    assert main(["suite", "status", str(FIXTURE / "suite.toml"), "--results", str(path), "--workers", "1"]) == 0
    assert "(about 2.0 h of wall-clock with 1 worker)" in capsys.readouterr().out
