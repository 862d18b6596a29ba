"""Faults: killed runners and runs, divergence, concurrent runners, corrupt files, exact resume.

Every test here uses real worker processes and real MuJoCo runs, kept small (64-wide
networks, 2 000 steps).
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from rlx2.records import RunDirectory
from rlx2.train import train

SUITE = """
[suite]
algos = ["td3"]
tasks = ["Hopper-v5"]
methods = {methods}
modules = {modules}
[sparsity.td3]
"Hopper-v5" = [0.9, 0.85]
[settings]
batch_size = 32
eval_episodes = 1
hidden_sizes = [64, 64]
checkpoint_every = 300
[profiles.tiny]
steps = {steps}
seeds = {seeds}
"""

DIVERGING = '''
import torch
from rlx2.methods import Method, register
from rlx2.sparse.controller import MaskController


class Poisoned(MaskController):
    def step(self):
        took = super().step()
        if self.optimizer_steps == 50:
            with torch.no_grad():
                for p in self.network.parameters():
                    p.fill_(float("nan"))
        return took


@register
class Diverging(Method):
    name = "diverging"
    description = "a dense agent whose weights turn NaN after 50 optimiser steps (tests)"

    def make_controller(self, role, network, optimizer, cfg, update_every, generator):
        return Poisoned(network, optimizer)
'''


def make_suite(tmp_path, methods=("dense", "rlx2"), seeds=2, steps=2_000, modules=()):
    path = tmp_path / "suite.toml"
    path.write_text(SUITE.format(methods=json.dumps(list(methods)), modules=json.dumps(list(modules)),
                                 steps=steps, seeds=seeds))
    return path


def runner(path, results, *extra):
    return subprocess.Popen([sys.executable, "-m", "rlx2.cli", "suite", "run", str(path), "--results", str(results),
                             "--quiet", "--workers", "2", *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def run_dirs(results):
    return sorted(p.parent for p in Path(results).glob("*/*/*/seed-*/config.json"))


def assert_complete_and_unduplicated(results, expected):
    dirs = run_dirs(results)
    assert len(dirs) == expected
    for run_dir in dirs:
        result = json.loads((run_dir / "result.json").read_text())
        assert result["status"] == "finished"
        assert not (run_dir / "checkpoint.pt").exists()
        with open(run_dir / "evaluations.csv") as f:
            steps = [int(row["step"]) for row in csv.DictReader(f)]
        assert steps == sorted(set(steps)) and steps[-1] == result["steps"]
        assert len(steps) == result["evaluations"]


def wait_for(condition, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise TimeoutError("condition not reached")


def workers_alive(results):
    """Worker processes of runs under ``results`` (other suites on the machine are left alone)."""
    alive = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes() if proc.name.isdigit() else b""
            if b"rlx2.worker" in cmdline and str(results).encode() in cmdline:
                alive.append(int(proc.name))
        except OSError:
            pass
    return alive


def test_killed_runner_rerun_skips_finished_and_resumes_the_rest(tmp_path):
    path, results = make_suite(tmp_path), tmp_path / "results"
    first = runner(path, results)
    # wait until some run has finished and another holds a checkpoint, then kill -9 the runner
    wait_for(lambda: any((d / "result.json").exists() for d in run_dirs(results))
             and any((d / "checkpoint.pt").exists() for d in run_dirs(results)))
    first.send_signal(signal.SIGKILL)
    first.wait()
    wait_for(lambda: not workers_alive(results), timeout=20)  # its workers die with it
    finished_before = {d: (d / "result.json").read_text() for d in run_dirs(results) if (d / "result.json").exists()}
    second = runner(path, results)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output
    assert f"{len(finished_before)} already done" in output
    for run_dir, text in finished_before.items():
        assert (run_dir / "result.json").read_text() == text  # finished runs untouched
    assert_complete_and_unduplicated(results, 4)


def test_a_killed_run_is_retried_and_resumes(tmp_path):
    path, results = make_suite(tmp_path, methods=("rlx2",), seeds=1, steps=2_500), tmp_path / "results"
    process = runner(path, results)
    run_dir = results / "td3/Hopper-v5/rlx2/seed-0"
    wait_for(lambda: (run_dir / "checkpoint.pt").exists() and workers_alive(results))
    for pid in workers_alive(results):
        os.kill(pid, signal.SIGKILL)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    assert_complete_and_unduplicated(results, 1)
    assert "1/1 runs finished" in output


def test_a_diverging_run_is_recorded_and_the_suite_goes_on(tmp_path):
    module = tmp_path / "diverging.py"
    module.write_text(DIVERGING)
    path = make_suite(tmp_path, methods=("dense", "diverging"), seeds=1, modules=("diverging.py",))
    process = runner(path, tmp_path / "results")
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 1
    assert "FAILED td3/Hopper-v5/diverging/seed-0: non-finite" in output
    failure = RunDirectory(tmp_path / "results/td3/Hopper-v5/diverging/seed-0").failure()
    assert failure["kind"] == "diverged"
    assert (tmp_path / "results/td3/Hopper-v5/dense/seed-0/result.json").exists()
    # a rerun does not retry the diverged run unless asked
    again = runner(path, tmp_path / "results")
    output, _ = again.communicate(timeout=120)
    assert again.returncode == 1 and "diverged earlier" in output


def test_two_runners_on_one_results_directory_never_run_a_run_twice(tmp_path):
    path, results = make_suite(tmp_path, seeds=2), tmp_path / "results"
    a, b = runner(path, results), runner(path, results)
    out_a, _ = a.communicate(timeout=300)
    out_b, _ = b.communicate(timeout=300)
    assert a.returncode == 0 and b.returncode == 0, out_a + out_b
    assert_complete_and_unduplicated(results, 4)
    for run_dir in run_dirs(results):  # one attempt per run: one fresh start in its log of topology rows
        with open(run_dir / "topology.csv") as f:
            initial = [row for row in csv.DictReader(f) if row["step"] == "0"]
        assert len(initial) == len({(r["network"], r["layer"]) for r in initial})


def test_corrupt_checkpoint_and_result_are_detected_and_the_run_redone(tmp_path):
    cfg = tiny_config(method="static", steps=900, warmup_steps=500, eval_every=300, checkpoint_every=200)
    train(cfg, tmp_path, progress=False)
    run_dir = RunDirectory(tmp_path / "td3/Hopper-v5/static/seed-0")
    (run_dir.path / "result.json").write_text('{"status": "fini')  # truncated record
    (run_dir.path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert not run_dir.finished
    assert run_dir.load_checkpoint() is None and not (run_dir.path / "checkpoint.pt").exists()
    (run_dir.path / "checkpoint.pt").write_bytes(b"\x80\x02garbage")
    result = train(cfg, tmp_path, progress=False)
    assert result["status"] == "finished" and run_dir.finished


@pytest.mark.parametrize(("algo", "method"), [("td3", "rlx2"), ("sac", "rlx2")])
def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path, algo, method):
    cfg = tiny_config(algo=algo, method=method, steps=2_000, hidden_sizes=(64, 64), checkpoint_every=400)
    train(cfg, tmp_path / "a", progress=False)
    args = ["--algo", algo, "--method", method, "--env", "Hopper-v5", "--steps", "2000", "--warmup-steps", "500",
            "--batch-size", "64", "--delta", "200", "--nstep-delay", "200", "--buffer-check-every", "500",
            "--buffer-min", "600", "--eval-every", "500", "--eval-episodes", "2", "--log-every", "500",
            "--hidden-sizes", "64", "64", "--checkpoint-every", "400", "--quiet", "--out", str(tmp_path / "b")]
    process = subprocess.Popen([sys.executable, "-m", "rlx2.cli", "run", *args])
    run = f"{algo}/Hopper-v5/{method}/seed-0"
    checkpoint = tmp_path / "b" / run / "checkpoint.pt"
    wait_for(lambda: checkpoint.exists() or process.poll() is not None)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.exists()
    resumed = train(cfg, tmp_path / "b", progress=False)
    for name in ("evaluations.csv", "topology.csv"):
        assert (tmp_path / "a" / run / name).read_text() == (tmp_path / "b" / run / name).read_text()
    # the result says where the run resumed and on which code (a later commit may have resumed it)
    from rlx2.records import git_commit
    assert json.loads((tmp_path / "a" / run / "result.json").read_text())["resumes"] == []
    assert [r["git_commit"] for r in resumed.resumes] == [git_commit()] and 400 <= resumed.resumes[0]["step"] < 2_000
    a = torch.load(tmp_path / "a" / run / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / run / "model.pt", weights_only=True)
    for net in a:
        if isinstance(a[net], dict):
            for key in a[net]:
                assert torch.equal(a[net][key], b[net][key]), (net, key)


def test_resuming_with_other_settings_is_refused(tmp_path):
    from rlx2.train import RunSettingsMismatch

    cfg = tiny_config(method="static", steps=1_200, checkpoint_every=200)
    run = tmp_path / "td3/Hopper-v5/static/seed-0"
    process = subprocess.Popen([sys.executable, "-m", "rlx2.cli", "run", "--method", "static", "--env", "Hopper-v5",
                                "--steps", "1200", "--warmup-steps", "500", "--batch-size", "64", "--delta", "200",
                                "--nstep-delay", "200", "--buffer-check-every", "500", "--buffer-min", "600",
                                "--eval-every", "500", "--eval-episodes", "2", "--log-every", "500",
                                "--checkpoint-every", "200", "--quiet", "--out", str(tmp_path)])
    wait_for(lambda: (run / "checkpoint.pt").exists() or process.poll() is not None)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (run / "checkpoint.pt").exists()
    with pytest.raises(RunSettingsMismatch, match="lr"):
        train(cfg.replace(lr=1e-3), tmp_path, progress=False)
    assert train(cfg, tmp_path, progress=False)["status"] == "finished"  # the same settings resume
