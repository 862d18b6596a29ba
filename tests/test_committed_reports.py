"""The evidence profiles' committed reports are what their committed records give.

`reports/mujoco/reference/` and `reports/mujoco/headline/` are rebuilt from the run records
committed under `results/mujoco/<profile>/` (`rlx2 report mujoco --profile P --allow-missing`).
Only the records git tracks are used, as on a fresh clone: runs still training in a working
tree (a checkpoint, a partial evaluations.csv) must not count. Every table, index.md,
runs.csv and summary.json must come out byte for byte as committed, so a commit that adds a
run's records without regenerating the report (or a code change that alters a report without
regenerating it) fails here. Figures must exist under the same names; their bytes depend on
the installed matplotlib and FreeType as well, which a fresh install may not share.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

from rlx2.cli import main

ROOT = Path(__file__).resolve().parent.parent


def tracked(under: str) -> list[str]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z", under], cwd=ROOT, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return []
    return [p for p in listed.stdout.decode().split("\0") if p]


@pytest.mark.parametrize("profile", ["reference", "headline"])
def test_a_committed_report_regenerates_byte_identically_from_the_committed_records(profile, tmp_path):
    records, report = tracked(f"results/mujoco/{profile}"), tracked(f"reports/mujoco/{profile}")
    if not report:
        pytest.skip("not a git checkout: the committed records cannot be told from a working tree's")
    for path in records:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / path, tmp_path / path)
    out = tmp_path / "report"
    try:
        main(["report", "mujoco", "--profile", profile, "--results", str(tmp_path / "results" / "mujoco" / profile),
              "--out", str(out), "--allow-missing"])
    except SystemExit as exc:
        assert not exc.code, f"rlx2 report exited {exc.code}"
    prefix = f"reports/mujoco/{profile}/"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == \
        sorted(p.removeprefix(prefix) for p in report), "the report's files differ from the committed ones"
    for path in report:
        if path.startswith(f"{prefix}figures/"):
            continue
        assert (out / path.removeprefix(prefix)).read_bytes() == (ROOT / path).read_bytes(), \
            f"{path} differs: regenerate it (rlx2 report mujoco --profile {profile} --allow-missing) and commit"
