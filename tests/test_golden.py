"""Results unchanged: short real runs reproduce the committed golden records exactly.

Refactors must not change results. The golden runs (tests/fixtures/golden/make_golden.py:
TD3 and SAC x rlx2, pruning, distillation) are trained again and must give byte-identical
evaluations.csv and topology.csv and exactly equal model.pt tensors. A change meant to
change results regenerates the fixture in its own commit, saying so. The runs train in a
child process with every library's kernel path pinned (``make_golden.PINNED``), so the
check runs on any x86-64 machine, not only on one like the machine that made the records;
once on the compiled kernels and once on the PyTorch fallback (``RLX2_KERNELS=torch``).
"""

import json
import sys
from pathlib import Path

import pytest
import torch

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
sys.path.insert(0, str(GOLDEN))

from make_golden import KEPT, PINNED, RECORDED, golden_config, machine, records, train_pinned  # noqa: E402

from rlx2.config import run_id  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``trained(implementation)``: the directory of that implementation's golden runs, trained once, now."""
    recorded = json.loads((GOLDEN / "machine.json").read_text())
    assert recorded["pinned"] == PINNED, "the records were made with other kernel settings: regenerate them"
    if recorded["torch"] != machine()["torch"]:  # pyproject pins torch, so only a deliberate change gets here
        pytest.skip(f"golden records were made with torch {recorded['torch']}, this is {machine()['torch']}")
    done: dict[str, Path] = {}

    def train(implementation: str) -> Path:
        if implementation not in done:
            done[implementation] = tmp_path_factory.mktemp(f"golden-{implementation}")
            train_pinned(done[implementation], implementation)
        return done[implementation]

    return train


@pytest.mark.parametrize(("implementation", "algo", "method"),
                         [(implementation, *run) for implementation, runs in RECORDED.items() for run in runs])
def test_runs_reproduce_the_golden_records(trained, implementation, algo, method):
    if implementation == "numba":
        pytest.importorskip("numba")
    out = trained(implementation)
    run = run_id(golden_config(algo, method))
    records_dir = records(implementation, run)  # this CPU vendor's, where they differ (make_golden.py)
    for name in KEPT[:2]:
        got_bytes, want_bytes = (out / run / name).read_bytes(), (records_dir / name).read_bytes()
        assert got_bytes == want_bytes, f"{implementation}/{run}/{name} changed"
    got = torch.load(out / run / "model.pt", weights_only=True)
    want = torch.load(records_dir / "model.pt", weights_only=True)

    def flat(state, prefix=""):
        for key, value in state.items():
            if isinstance(value, dict):
                yield from flat(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    got, want = dict(flat(got)), dict(flat(want))
    assert sorted(got) == sorted(want)
    for key, tensor in want.items():
        assert torch.equal(got[key], tensor), f"{implementation}/{run}/model.pt: {key} changed"


def test_a_vendor_s_own_records_replace_the_common_ones_only_where_they_exist(tmp_path, monkeypatch):
    """``records`` picks ``by-vendor/<vendor_id>/<implementation>/<run>`` when that vendor has its own records of
    the run (make_golden.py's docstring), else the common ones."""
    import make_golden

    run = "sac/Hopper-v5/rlx2/seed-0"
    (tmp_path / "by-vendor" / "AuthenticAMD" / "torch" / run).mkdir(parents=True)
    monkeypatch.setattr(make_golden, "HERE", tmp_path)
    monkeypatch.setattr(make_golden, "vendor", lambda: "AuthenticAMD")
    assert make_golden.records("torch", run) == tmp_path / "by-vendor" / "AuthenticAMD" / "torch" / run
    assert make_golden.records("numba", run) == tmp_path / "numba" / run
    monkeypatch.setattr(make_golden, "vendor", lambda: "GenuineIntel")
    assert make_golden.records("torch", run) == tmp_path / "torch" / run


def test_regenerating_one_implementation_leaves_the_other_s_records(tmp_path, monkeypatch):
    """``make_golden.py numba`` rewrites only ``numba/`` (the PyTorch path's records, made on another CPU, stay);
    an unknown implementation is refused before anything is trained or removed."""
    import make_golden

    def fake_train(out: Path, implementation: str) -> None:
        for algo, method in RECORDED[implementation]:
            run_dir = out / run_id(golden_config(algo, method))
            run_dir.mkdir(parents=True)
            for name in KEPT:
                (run_dir / name).write_text(f"new {implementation}")

    kept = tmp_path / "torch" / "kept.txt"
    kept.parent.mkdir()
    kept.write_text("made elsewhere")
    monkeypatch.setattr(make_golden, "HERE", tmp_path)
    monkeypatch.setattr(make_golden, "train_pinned", fake_train)
    monkeypatch.setattr(sys, "argv", ["make_golden.py", "numba"])
    make_golden.main()
    run = run_id(golden_config("td3", "rlx2"))
    assert (tmp_path / "numba" / run / "model.pt").read_text() == "new numba"
    assert kept.read_text() == "made elsewhere" and not (tmp_path / "torch" / run).exists()
    monkeypatch.setattr(sys, "argv", ["make_golden.py", "cuda"])
    with pytest.raises(SystemExit, match="cuda"):
        make_golden.main()
    assert (tmp_path / "numba" / run).exists()
