"""What the console says: a suite's ETA after a resume (on a fake clock), one line per run that resumes, finishes or
fails, no third-party deprecation noise, and commands that start without importing what they do not use."""

import io
import json
import subprocess
import sys

import pytest

from rlx2.config import RunConfig, run_id
from rlx2.executors import SuiteProgress
from rlx2.records import RunDirectory


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def log_steps(run_dir: RunDirectory, last: int) -> None:
    """A run's diagnostics logged up to ``last`` (what a running or resumable run leaves)."""
    run_dir.path.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{step},0\n" for step in range(100, last + 1, 100))
    (run_dir.path / "diagnostics.csv").write_text("step,iterations\n" + rows)


def test_the_eta_after_a_resume_counts_only_the_steps_run_since_this_start(tmp_path, monkeypatch):
    import tqdm.std

    clock = FakeClock()
    monkeypatch.setattr(tqdm.std, "time", clock)
    cfg = RunConfig(steps=10_000)
    run_dir = RunDirectory(tmp_path / run_id(cfg))
    log_steps(run_dir, 8_900)  # a run killed at step 8 900, with a checkpoint to resume from
    (run_dir.path / "checkpoint.pt").write_bytes(b"")
    out = io.StringIO()
    progress = SuiteProgress([cfg], tmp_path, file=out)
    assert progress.bar.n == progress.bar.initial == 8_900  # done before this start: not this session's speed
    progress.started(cfg, run_dir)
    assert "resuming td3/Hopper-v5/rlx2/seed-0 from its checkpoint (8,900 of 10,000 steps logged)" in out.getvalue()
    clock.now += 10.0  # ten seconds later the run has logged 100 more steps: 10 steps/s
    log_steps(run_dir, 9_000)
    progress.refresh([(cfg, run_dir)])
    meter = progress.bar.format_dict
    assert meter["n"] == 9_000 and meter["rate"] == pytest.approx(10.0)
    assert (meter["total"] - meter["n"]) / meter["rate"] == pytest.approx(100.0)  # ETA 100 s, not a fraction of one
    assert "00:10<01:40" in progress.bar.format_meter(**meter)
    progress.close()


def test_one_line_when_a_run_finishes_or_fails_and_none_when_quiet(tmp_path):
    cfg = RunConfig(steps=1_000)
    run_dir = RunDirectory(tmp_path / run_id(cfg))
    run_dir.path.mkdir(parents=True)
    (run_dir.path / "result.json").write_text(json.dumps({
        "status": "finished", "final_score": 123.45, "steps": 1_000, "flops": {"size": 1.0,
                                                                              "inference_flops_relative": 1.0}}))
    out = io.StringIO()
    progress = SuiteProgress([cfg, cfg.replace(seed=1)], tmp_path, file=out)
    progress.ended(cfg, run_dir)
    progress.ended(cfg.replace(seed=1), RunDirectory(tmp_path / "x"), "non-finite evaluation return at step 500")
    progress.close()
    assert "finished td3/Hopper-v5/rlx2/seed-0: score 123.5\n" in out.getvalue()
    assert "FAILED td3/Hopper-v5/rlx2/seed-1: non-finite evaluation return at step 500\n" in out.getvalue()
    quiet = io.StringIO()
    silent = SuiteProgress([cfg], tmp_path, quiet=True, file=quiet)
    silent.ended(cfg, run_dir)
    silent.close()
    assert quiet.getvalue() == ""


def run_python(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["methods"], ["schema"]])
def test_quick_commands_import_neither_torch_nor_gymnasium_nor_pandas(tmp_path, argv):
    code = (f"import sys\nfrom rlx2.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'gymnasium', 'pandas', 'scipy', 'matplotlib') if m in sys.modules),"
            " file=sys.stderr)")
    done = run_python(code, tmp_path)
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr
    assert "rlx2" in done.stdout or "{" in done.stdout


def test_checking_the_reference_profiles_runs_imports_no_torch(tmp_path):
    code = ("import sys\nfrom rlx2.suite import load_suite\nfrom rlx2.methods import resolve\n"
            "for profile in ('reference', 'headline'):\n    [resolve(c) for c in load_suite('mujoco', profile).runs]\n"
            "print('torch' in sys.modules)")
    done = run_python(code, tmp_path)
    assert done.stdout.strip() == "False", done.stderr


def test_mujoco_deprecation_noise_is_filtered_at_the_source(tmp_path):
    done = run_python("from rlx2.envs import make_env\nmake_env('HalfCheetah-v5').reset(seed=0)\n"
                      "import mujoco\nmujoco.get_mju_user_warning()('a real warning')", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "settotalmass" not in done.stderr + done.stdout
    assert "MuJoCo warning: a real warning" in done.stderr  # anything else still shows
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


def test_what_the_readme_commands_write_is_git_ignored():
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or subprocess.run(["git", "rev-parse"], cwd=root, capture_output=True).returncode:
        pytest.skip("not a git checkout")
    written = ["results/mujoco/standard/td3/Hopper-v5/rlx2/seed-0/result.json", "reports/mujoco/standard/index.md",
               "reports/smoke/smoke/index.md", "reports/adhoc/index.md", "MUJOCO_LOG.TXT", ".tox/x", "rlx2.egg-info/x"]
    kept = ["reports/mujoco/reference/index.md", "reports/mujoco/standard-example/index.md", "reports/README.md",
            "results/README.md"]
    check = subprocess.run(["git", "check-ignore", "--no-index", *written, *kept], cwd=root, capture_output=True,
                           text=True)
    assert sorted(check.stdout.split()) == sorted(written)
