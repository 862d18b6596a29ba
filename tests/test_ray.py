"""The Ray executor against a real local Ray instance: one task per run, dependencies respected."""

import json

import pytest

from rlx2.cli import main
from test_faults import assert_complete_and_unduplicated, make_suite

ray = pytest.importorskip("ray")


def test_ray_executor_runs_a_suite_with_a_dependency(tmp_path, capsys):
    # distillation depends on the dense run (its teacher): Ray must run the teacher first
    path = make_suite(tmp_path, methods=("dense", "distillation"), seeds=1, steps=1_500)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        code = main(["suite", "run", str(path), "--executor", "ray", "--results", str(tmp_path / "results"),
                     "--quiet"])
    finally:
        ray.shutdown()
    output = capsys.readouterr().out
    assert code == 0, output
    assert "2/2 runs finished" in output
    assert_complete_and_unduplicated(tmp_path / "results", 2)
    student = json.loads((tmp_path / "results/td3/Hopper-v5/distillation/seed-0/config.json").read_text())
    assert student["teacher"]["run_id"] == "td3/Hopper-v5/dense/seed-0"
