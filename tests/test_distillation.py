"""Policy distillation: a real InvertedPendulum-v5 teacher, a sparse student that recovers its
return, teacher reuse, and costs that count the teacher."""

import csv
import json

import pytest
import torch

from rlx2.baselines.distillation import Distillation, prune_into_student
from rlx2.train import RunSettingsMismatch, finished_run
from rlx2.agents.networks import DeterministicActor
from rlx2.config import RunConfig
from rlx2.sparse.layers import masked_layers
from rlx2.train import train

TASK = dict(env="InvertedPendulum-v5", steps=10_000, warmup_steps=1_000, eval_every=1_000, eval_episodes=5,
            hidden_sizes=(64, 64), actor_sparsity=0.9)


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    result = train(RunConfig(method="distillation", **TASK), out, progress=False)
    return out, result


def last_evaluation(path):
    with open(path) as f:
        return float(list(csv.DictReader(f))[-1]["mean_return"])


def test_student_recovers_the_teachers_return(distilled):
    out, result = distilled
    teacher_dir = out / "td3/InvertedPendulum-v5/dense/seed-0"
    assert (teacher_dir / "result.json").is_file()  # the teacher is an ordinary dense run
    teacher_return = last_evaluation(teacher_dir / "evaluations.csv")
    with open(out / "td3/InvertedPendulum-v5/distillation/seed-0/evaluations.csv") as f:
        rows = list(csv.DictReader(f))
    first_student = int(rows[0]["step"])
    assert first_student > TASK["steps"]  # the student's evaluations continue the teacher's step axis
    assert teacher_return > 30  # the teacher learnt something (an untrained policy scores about 7)
    assert result["final_score"] >= 0.8 * teacher_return
    assert result["teacher_final_score"] == json.loads((teacher_dir / "result.json").read_text())["final_score"]


def test_student_is_sparse_and_costs_count_the_teacher(distilled):
    out, result = distilled
    state = torch.load(out / "td3/InvertedPendulum-v5/distillation/seed-0/model.pt", weights_only=True)
    weights = sum(v.numel() for k, v in state["student_actor"].items() if k.endswith(".weight"))
    active = sum(int(v.sum()) for k, v in state["student_actor"].items() if k.endswith(".mask"))
    assert abs(active / weights - 0.1) < 0.01
    flops = result["flops"]
    assert flops["size"] == pytest.approx(active / weights) == pytest.approx(flops["inference_flops_relative"])
    assert flops["training_flops_relative"] > 1.0  # the whole dense teacher run plus the student


def test_a_second_student_reuses_the_teacher(distilled):
    out, _ = distilled
    teacher_result = out / "td3/InvertedPendulum-v5/dense/seed-0/result.json"
    before = teacher_result.stat().st_mtime_ns
    cfg = RunConfig(method="distillation", **{**TASK, "actor_sparsity": 0.8})
    method = Distillation()
    (teacher_cfg,) = method.depends_on(method.resolve(cfg))
    teacher_dir = finished_run(teacher_cfg, out, progress=False)  # what the lifecycle gives the student
    assert teacher_result.stat().st_mtime_ns == before
    assert teacher_dir.path == teacher_result.parent
    (other,) = method.depends_on(method.resolve(cfg.replace(lr=1e-3)))
    with pytest.raises(RunSettingsMismatch, match="lr"):
        finished_run(other, out, progress=False)


def test_student_keeps_the_teachers_largest_weights():
    teacher = DeterministicActor(5, 2, (16, 16))
    student = prune_into_student(teacher, 0.8, "er")
    for (_, t), (_, s) in zip(masked_layers(teacher), masked_layers(student)):
        kept = s.mask.sum()
        assert torch.equal(s.weight[s.mask], t.weight[s.mask])
        if kept < s.mask.numel():
            assert t.weight.abs()[~s.mask].max() <= t.weight.abs()[s.mask].min()


def test_sac_distillation_completes_a_tiny_run(tmp_path):
    from conftest import tiny_config

    result = train(tiny_config(algo="sac", method="distillation"), tmp_path, progress=False)
    run_dir = tmp_path / "sac/Hopper-v5/distillation/seed-0"
    assert {p.name for p in run_dir.iterdir() if not p.name.startswith(".")} == {"config.json", "evaluations.csv", "topology.csv",
                                                   "diagnostics.csv", "model.pt", "result.json"}
    assert result["status"] == "finished" and result["steps"] == 1_500 + 300
    assert (tmp_path / "sac/Hopper-v5/dense/seed-0/result.json").is_file()
