"""Real tiny MuJoCo runs: every method with TD3 and SAC writes a complete run directory,
and the same seed gives the same run."""

import csv
import json
import math

import numpy as np

import pytest
import torch

from conftest import tiny_config
from rlx2.train import train

METHODS = ["dense", "tiny", "static", "set", "rigl", "rlx2", "pruning"]
RUN_FILES = {"config.json", "evaluations.csv", "topology.csv", "diagnostics.csv", "model.pt", "result.json"}


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("algo", ["td3", "sac"])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_completes_a_real_run(tmp_path, algo, method):
    result = train(tiny_config(algo=algo, method=method), tmp_path, progress=False)
    run_dir = tmp_path / algo / "Hopper-v5" / method / "seed-0"
    assert {p.name for p in run_dir.iterdir() if not p.name.startswith(".")} == RUN_FILES
    assert result["status"] == "finished" and math.isfinite(result["final_score"])
    assert json.loads((run_dir / "result.json").read_text()) == result.to_record()

    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["method"] == method and config["versions"]["torch"]
    evaluations = rows(run_dir / "evaluations.csv")
    assert [int(r["step"]) for r in evaluations] == [500, 1000, 1500]
    assert result["final_score"] == pytest.approx(sum(float(r["mean_return"]) for r in evaluations) / 3)
    diagnostics = rows(run_dir / "diagnostics.csv")
    assert all(math.isfinite(float(r["critic_loss"])) for r in diagnostics[1:])

    # masked weights are zero in every saved network, targets included, and targets use online masks
    state = torch.load(run_dir / "model.pt", weights_only=True)
    masks = {(net, key): value for net, sd in state.items() if isinstance(sd, dict)
             for key, value in sd.items() if key.endswith(".mask")}
    sparse = method in ("static", "set", "rigl", "rlx2", "pruning")
    assert bool(masks) == sparse
    for (net, key), mask in masks.items():
        weight = state[net][key.replace(".mask", ".weight")]
        assert torch.all(weight[~mask] == 0)
        online = net.replace("_target", "")
        assert torch.equal(mask, state[online][key])

    topology = rows(run_dir / "topology.csv")
    updates = [r for r in topology if int(r["step"]) > 0]
    if method in ("set", "rigl", "rlx2"):
        # critic: t_end 1000 optimiser steps, delta 200 -> 200..800; TD3's actor has t_end 500
        assert {int(r["optimizer_step"]) for r in updates if r["network"] == "critic"} == {200, 400, 600, 800}
        actor_updates = {200, 400} if algo == "td3" else {200, 400, 600, 800}  # TD3's actor steps half as often
        assert {int(r["optimizer_step"]) for r in updates if r["network"] == "actor"} == actor_updates
        initial = {(r["network"], r["layer"]): r["active"] for r in topology if r["step"] == "0"}
        assert all(initial[(r["network"], r["layer"])] == r["active"] for r in updates)
        # the analytic count of topology updates matches what the run did
        counted = {net: len({r["optimizer_step"] for r in updates if r["network"] == net}) for net in ("actor", "critic")}
        assert result["flops"]["topology_updates"] == counted
    elif method == "pruning":
        # dense at first, pruned once at 80 % of each network's optimiser steps (runs shorter than 1 000 steps)
        assert {(r["network"], r["optimizer_step"]) for r in updates} == {("critic", "800"), ("actor", "400" if algo == "td3" else "800")}
        assert all(float(r["density"]) < 1.0 for r in updates)
        assert result["flops"]["size"] == pytest.approx(json.loads((run_dir / "config.json").read_text())["flops"]["size"])
    else:
        assert not updates
    if method == "rlx2":
        assert {r["n_step"] for r in diagnostics} == {"1", "3"}
        assert all(math.isfinite(float(r["policy_distance"])) for r in diagnostics)
    else:
        assert {r["n_step"] for r in diagnostics} == {"1"}


@pytest.mark.parametrize(("algo", "method"), [("td3", "rlx2"), ("sac", "set")])
def test_same_seed_same_run(tmp_path, algo, method):
    cfg = tiny_config(algo=algo, method=method, steps=1_000, eval_every=500)
    first = train(cfg, tmp_path / "a", progress=False)
    second = train(cfg, tmp_path / "b", progress=False)
    other = train(cfg.replace(seed=1), tmp_path / "c", progress=False)
    run = f"{algo}/Hopper-v5/{method}/seed-0"
    for name in ("evaluations.csv", "topology.csv"):
        assert (tmp_path / "a" / run / name).read_text() == (tmp_path / "b" / run / name).read_text()
    a = torch.load(tmp_path / "a" / run / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / run / "model.pt", weights_only=True)
    c = torch.load(tmp_path / "c" / f"{algo}/Hopper-v5/{method}/seed-1" / "model.pt", weights_only=True)
    for net in a:
        if isinstance(a[net], dict):
            for key in a[net]:
                assert torch.equal(a[net][key], b[net][key]), (net, key)
    assert first["final_score"] == second["final_score"]
    assert not torch.equal(a["actor"]["net.2.mask"], c["actor"]["net.2.mask"])
    assert other["final_score"] != first["final_score"]


def test_a_finished_run_is_not_silently_redone(tmp_path):
    from rlx2.train import RunAlreadyFinished

    cfg = tiny_config(method="dense", steps=600, warmup_steps=500, eval_every=300)
    train(cfg, tmp_path, progress=False)
    with pytest.raises(RunAlreadyFinished, match="overwrite"):
        train(cfg, tmp_path, progress=False)


def test_tensorboard_events_mirror_the_csv_logs(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny_config(method="rlx2", steps=1_000, tensorboard=True), tmp_path, progress=False)
    run_dir = tmp_path / "td3/Hopper-v5/rlx2/seed-0"
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    returns = [(e.step, e.value) for e in events.Scalars("eval/mean_return")]
    assert [s for s, _ in returns] == [int(r["step"]) for r in rows(run_dir / "evaluations.csv")]
    assert returns[-1][1] == pytest.approx(float(rows(run_dir / "evaluations.csv")[-1]["mean_return"]))
    assert "train/critic_loss" in events.Tags()["scalars"]


def test_any_continuous_gymnasium_task_works(tmp_path):
    # Pendulum-v1: classic control, torque bounds of +-2 (mapped from the agent's [-1, 1])
    result = train(tiny_config(env="Pendulum-v1", method="rlx2", steps=800, eval_every=400, eval_episodes=1),
                   tmp_path, progress=False)
    assert result["status"] == "finished" and math.isfinite(result["final_score"])
    config = json.loads((tmp_path / "td3/Pendulum-v1/rlx2/seed-0/config.json").read_text())
    assert config["env"]["action_high"] == [2.0] and config["env"]["obs_dim"] == 3


def test_evaluate_reproduces_the_runs_last_evaluation_and_loads_as_an_agent(tmp_path, capsys):
    import rlx2
    from rlx2.cli import main

    train(tiny_config(method="rlx2", steps=1_000, eval_every=500, eval_episodes=2), tmp_path, progress=False)
    run = tmp_path / "td3/Hopper-v5/rlx2/seed-0"
    with open(run / "evaluations.csv", newline="") as f:
        last = list(csv.DictReader(f))[-1]
    assert main(["evaluate", str(run), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["episodes"] == 2 and got["mean_return"] == float(last["mean_return"])  # exactly the logged value
    agent = rlx2.load_agent(run)
    assert agent.cfg.method == "rlx2" and agent.deterministic_action(np.zeros(11, np.float32)).shape == (3,)
    assert main(["evaluate", str(run), "--episodes", "1", "--seed", "7"]) == 0
    assert "over 1 episodes (env seed 7)" in capsys.readouterr().out


def test_evaluate_records_a_playable_video(tmp_path, capsys):
    pytest.importorskip("moviepy")
    from rlx2.cli import main

    train(tiny_config(method="dense", steps=600, warmup_steps=500, eval_every=300, eval_episodes=1), tmp_path,
          progress=False)
    run = tmp_path / "td3/Hopper-v5/dense/seed-0"
    try:
        code = main(["evaluate", str(run), "--episodes", "1", "--video", str(tmp_path / "videos")])
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no headless OpenGL (EGL) for MuJoCo rendering here: {exc}")
    assert code == 0
    videos = list((tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1_000
    assert videos[0].read_bytes()[4:8] == b"ftyp"  # an MP4 container


def test_stable_baselines3_runs_record_like_every_other_method(tmp_path):
    pytest.importorskip("stable_baselines3")
    result = train(tiny_config(method="sb3", steps=1_000, eval_every=500), tmp_path, progress=False)
    run_dir = tmp_path / "td3/Hopper-v5/sb3/seed-0"
    assert result["status"] == "finished" and result["evaluations"] == 2 and result["final_window"] == 2
    assert [row["step"] for row in rows(run_dir / "evaluations.csv")] == ["500", "1000"]
    meta = json.loads((run_dir / "config.json").read_text())
    assert meta["versions"]["stable_baselines3"] and meta["flops"]["size"] == 1.0  # a dense agent, in our accounting
    again = train(tiny_config(method="sb3", steps=1_000, eval_every=500), tmp_path / "again", progress=False)
    assert again["final_score"] == result["final_score"]  # seeded: the same run twice
