"""``rlx2 export`` and ``rlx2.deploy``: exported actors act as the run's agent did, load without torch,
and bad input is one line, exit 2, with nothing written."""

import json
import shutil
import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest

from conftest import tiny_config
from rlx2.cli import main
from rlx2.deploy import Layer, PolicyFileError, load_policy, read_npz
from rlx2.envs import ActionScaler
from rlx2.evaluation import load_agent
from rlx2.train import train

# TD3 and SAC, dense and sparse (the paper's Hopper sparsities), and a task whose bounds are not [-1, 1].
RUNS = {
    "td3-dense": dict(algo="td3", method="dense"),
    "td3-rlx2": dict(algo="td3", method="rlx2", actor_sparsity=0.98, critic_sparsity=0.95),
    "sac-dense": dict(algo="sac", method="dense"),
    "sac-rlx2": dict(algo="sac", method="rlx2", actor_sparsity=0.98, critic_sparsity=0.95),
    "td3-rlx2-pendulum": dict(algo="td3", method="rlx2", env="Pendulum-v1"),
}
TOLERANCE = 1e-5


def one_line(err: str, command: str) -> str:
    assert err.startswith(f"rlx2 {command}: ") and err.count("\n") == 1, err
    return err


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny real runs (200 updates, topology updates every 50 steps for rlx2): name -> run directory."""
    root = tmp_path_factory.mktemp("runs")
    found = {}
    for name, changes in RUNS.items():
        cfg = tiny_config(steps=400, warmup_steps=200, eval_every=200, eval_episodes=1, delta=50, nstep_delay=50,
                          buffer_check_every=200, buffer_min=200, log_every=200, **changes)
        train(cfg, root, progress=False)
        found[name] = root / cfg.algo / cfg.env / cfg.method / "seed-0"
    return found


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    """Every run exported in both formats through the command line: (name, suffix) -> file."""
    out = tmp_path_factory.mktemp("exported")
    files = {}
    for name, run in runs.items():
        for suffix in ("npz", "onnx"):
            files[name, suffix] = out / f"{name}.{suffix}"
            assert main(["export", str(run), "--out", str(files[name, suffix])]) == 0
    return files


def visited_states(agent, env_id: str, count: int = 200) -> np.ndarray:
    """States the agent's deterministic policy visits from the run's evaluation seed (episodes chained)."""
    env = gym.make(env_id)
    scale = ActionScaler(env.action_space)
    obs, _ = env.reset(seed=agent.cfg.seed + 100)
    states = []
    while len(states) < count:
        states.append(obs)
        obs, _, terminated, truncated, _ = env.step(scale(agent.deterministic_action(obs)))
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return np.asarray(states, np.float32)


@pytest.mark.parametrize("name", RUNS)
@pytest.mark.parametrize("form", ["npz", "npz-dense", "npz-csr", "onnx"])
def test_an_exported_policy_gives_the_runs_actions(runs, exported, name, form):
    agent = load_agent(runs[name])
    states = visited_states(agent, agent.cfg.env)
    env = gym.make(agent.cfg.env)
    expected = ActionScaler(env.action_space)(agent.deterministic_action(states))
    suffix, _, compute = form.partition("-")
    policy = load_policy(exported[name, suffix], compute=compute or "auto")
    batch = policy(states)
    single = np.stack([policy(s) for s in states[:20]])
    assert batch.shape == expected.shape and single.shape == (20, expected.shape[1])
    assert np.max(np.abs(batch - expected)) <= TOLERANCE
    assert np.max(np.abs(single - expected[:20])) <= TOLERANCE
    assert np.ptp(expected, axis=0).max() > 1e-3  # the states differ enough to tell policies apart
    if name.endswith("pendulum"):
        assert np.abs(expected).max() > 1.0  # torque bounds are +-2: the scaling is part of what is compared
    if compute:
        assert set(policy.computes) == {compute}


@pytest.mark.parametrize("suffix", ["npz", "onnx"])
def test_evaluate_with_an_exported_policy_reproduces_the_runs_evaluation(runs, exported, suffix, capfd):
    for name in ("td3-rlx2", "sac-dense"):
        with open(runs[name] / "evaluations.csv") as f:
            logged = float(f.read().strip().splitlines()[-1].split(",")[1])
        assert main(["evaluate", str(runs[name]), "--policy", str(exported[name, suffix]), "--json"]) == 0
        got = json.loads(capfd.readouterr().out)
        assert got["policy"] == str(exported[name, suffix]) and got["episodes"] == 1 and got["seed"] == 100
        assert got["mean_return"] == pytest.approx(logged, rel=1e-4)


def test_the_npz_holds_csr_weights_and_provenance(runs, exported):
    run = runs["sac-rlx2"]
    layers, low, high, meta = read_npz(exported["sac-rlx2", "npz"])
    config = json.loads((run / "config.json").read_text())
    result = json.loads((run / "result.json").read_text())
    assert meta["run_id"] == "sac/Hopper-v5/rlx2/seed-0" and meta["git_commit"] == config["git_commit"]
    assert meta["final_score"] == result["final_score"] and meta["final_densities"] == result["final_densities"]
    assert meta["actor_sparsity"] == pytest.approx(0.98, abs=0.002)
    assert [layer.activation for layer in layers] == ["relu", "relu", "tanh"]
    assert [layer.shape for layer in layers] == [(256, 11), (256, 256), (3, 256)]  # SAC: the mean half only
    state = load_agent(run).actor.state_dict()
    for i, layer in zip((0, 2, 4), layers):
        mask = state[f"net.{i}.mask"].numpy()[:layer.shape[0]]
        assert layer.nnz == mask.sum() and np.array_equal(layer.dense() != 0, mask & (layer.dense() != 0))
        assert np.array_equal(layer.dense(), state[f"net.{i}.weight"].numpy()[:layer.shape[0]])
    assert layers[1].density < 0.05 and layers[1].indices.dtype == np.uint16
    assert low.tolist() == config["env"]["action_low"] and high.tolist() == config["env"]["action_high"]
    onnx_meta = load_policy(exported["sac-rlx2", "onnx"]).metadata
    assert onnx_meta["onnx_opset"] == 17 and onnx_meta["run_id"] == meta["run_id"]


BLOCKER = """
import importlib.abc, sys
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Blocker())
"""


@pytest.mark.parametrize("blocked", [("torch",), ("torch", "scipy")])
def test_the_npz_loader_runs_where_torch_cannot_be_imported(runs, exported, tmp_path, blocked):
    agent = load_agent(runs["td3-rlx2"])
    states = visited_states(agent, "Hopper-v5", 50)
    np.save(tmp_path / "states.npy", states)
    np.save(tmp_path / "expected.npy", ActionScaler(gym.make("Hopper-v5").action_space)(agent.deterministic_action(states)))
    script = f"BLOCKED = {blocked!r}\n" + BLOCKER + textwrap.dedent(f"""
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("the blocker let torch in")
        import numpy as np
        from rlx2.deploy import load_policy
        policy = load_policy({str(exported["td3-rlx2", "npz"])!r}, compute="csr" if "scipy" not in BLOCKED else "auto")
        states, expected = np.load({str(tmp_path / "states.npy")!r}), np.load({str(tmp_path / "expected.npy")!r})
        error = max(np.abs(policy(states) - expected).max(), np.abs(policy(states[0]) - expected[0]).max())
        imported = sorted({{m.split(".")[0] for m in sys.modules}} & {{"torch", "scipy"}})
        print(json.dumps({{"error": float(error), "computes": policy.computes, "imported": imported}}))
    """)
    out = subprocess.run([sys.executable, "-c", "import json\n" + script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["error"] <= TOLERANCE
    if "scipy" in blocked:  # without scipy every layer computes dense
        assert got["computes"] == ["dense"] * 3 and got["imported"] == []
    else:
        assert got["computes"] == ["csr"] * 3 and got["imported"] == ["scipy"]


# -- bad input: one line, exit 2, nothing written ----------------------------------------------------------


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_export_creates_the_folder_of_its_output_and_replaces_an_older_file(runs, tmp_path, capfd):
    out = tmp_path / "deploy" / "hopper" / "actor.npz"
    for _ in range(2):
        assert main(["export", str(runs["td3-rlx2"]), "--out", str(out), "--json"]) == 0
        got = json.loads(capfd.readouterr().out)
        assert got["bytes"] == out.stat().st_size and got["self_check_max_error"] <= 1e-5
    assert listing(out.parent) == ["actor.npz"] and load_policy(out).metadata["run_id"] == "td3/Hopper-v5/rlx2/seed-0"


def test_export_refuses_an_unknown_suffix_or_a_directory(runs, tmp_path, capfd):
    for out in (tmp_path / "actor.pt", tmp_path / "actor", tmp_path):
        assert exit_status(["export", str(runs["td3-rlx2"]), "--out", str(out)]) == 2
        err = one_line(capfd.readouterr().err, "export")
        assert f"--out={out}" in err
    assert listing(tmp_path) == []


def test_export_refuses_a_directory_that_is_not_a_finished_run(runs, tmp_path, capfd):
    empty = tmp_path / "empty"
    empty.mkdir()
    no_model = tmp_path / "no-model"
    shutil.copytree(runs["td3-rlx2"], no_model, ignore=shutil.ignore_patterns("model.pt"))
    truncated = tmp_path / "truncated"
    shutil.copytree(runs["td3-rlx2"], truncated)
    data = (truncated / "model.pt").read_bytes()
    (truncated / "model.pt").write_bytes(data[:len(data) // 2])
    out = tmp_path / "out"
    out.mkdir()
    for run, what in ((empty, "config.json"), (no_model, "has no model.pt"), (truncated, "model.pt cannot be read")):
        assert exit_status(["export", str(run), "--out", str(out / "actor.npz")]) == 2
        err = one_line(capfd.readouterr().err, "export")
        assert f"run-dir='{run}'" in err and what in err
    assert listing(out) == []


def test_a_failed_export_leaves_nothing_behind_and_an_older_file_untouched(runs, tmp_path, capfd, monkeypatch):
    import rlx2.export

    old = tmp_path / "actor.npz"
    old.write_bytes(b"an older export")

    def full_disk(f, *args):
        f.write(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rlx2.export, "write_npz", full_disk)
    assert exit_status(["export", str(runs["td3-rlx2"]), "--out", str(old)]) == 1
    assert "No space left on device" in one_line(capfd.readouterr().err, "export")
    assert listing(tmp_path) == ["actor.npz"] and old.read_bytes() == b"an older export"

    monkeypatch.undo()
    monkeypatch.setattr(rlx2.export, "SELF_CHECK_TOLERANCE", -1.0)  # the written file "differs" from the agent
    for out in (old, tmp_path / "actor.onnx"):
        assert exit_status(["export", str(runs["td3-rlx2"]), "--out", str(out)]) == 2
        assert "differs from the agent" in one_line(capfd.readouterr().err, "export")
    assert listing(tmp_path) == ["actor.npz"] and old.read_bytes() == b"an older export"


def exit_status(argv) -> int:
    """``rlx2 ARGV``'s exit status: bad input ends the command with SystemExit(2), a fault returns 1."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def crafted(tmp_path, source, name, change):
    """A copy of the exported .npz ``source`` with ``change(arrays)`` applied."""
    with np.load(source) as f:
        arrays = {k: f[k] for k in f.files}
    change(arrays)
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def bad_policy_files(tmp_path, exported):
    """``(file, what the one line must say)`` for files that are not usable policies."""
    npz, onnx_file = exported["td3-rlx2", "npz"], exported["td3-rlx2", "onnx"]
    text = tmp_path / "notes.npz"
    text.write_text("not a zip archive\n")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.zeros(3))
    truncated_npz = tmp_path / "truncated.npz"
    truncated_npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    truncated_onnx = tmp_path / "truncated.onnx"
    truncated_onnx.write_bytes(onnx_file.read_bytes()[: onnx_file.stat().st_size // 2])
    foreign_onnx = tmp_path / "foreign.onnx"
    foreign_onnx.write_bytes(_plain_onnx_model())
    return [
        (text, "cannot be read as an .npz file"),
        (foreign, "not a policy written by rlx2 export"),
        (truncated_npz, "cannot be read as an .npz file"),
        (truncated_onnx, "cannot be read as an ONNX model"),
        (foreign_onnx, "not a policy written by rlx2 export"),
        (tmp_path / "missing.npz", "no such file"),
        (tmp_path / "actor.pt", "unknown suffix '.pt'"),
        (exported["td3-rlx2-pendulum", "npz"], "maps 3 observations to 1 actions"),
        (crafted(tmp_path, npz, "columns.npz", lambda a: a.update({"layer1.indices": a["layer1.indices"] + 300})),
         "layer1.indices: columns"),
        (crafted(tmp_path, npz, "chain.npz", lambda a: a.update({"layer2.shape": np.array([3, 17])})),
         "layer2.shape=[3, 17]: takes 17 inputs, layer1 gives 256"),
        (crafted(tmp_path, npz, "newer.npz", lambda a: a.update({"format_version": np.array(99)})),
         "format_version=99"),
        (crafted(tmp_path, npz, "nan.npz", lambda a: a["layer0.bias"].__setitem__(0, np.nan)),
         "layer0: non-finite"),
        (crafted(tmp_path, npz, "gap.npz", lambda a: a.pop("layer1.indptr")), "entry 'layer1.indptr' is missing"),
    ]


def _plain_onnx_model() -> bytes:
    """A valid ONNX model that ``rlx2 export`` did not write (no rlx2 metadata)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["observation"], ["action"])], "plain",
                              [helper.make_tensor_value_info("observation", TensorProto.FLOAT, ["batch", 11])],
                              [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", 11])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def test_evaluate_refuses_a_policy_file_it_cannot_use(runs, exported, tmp_path, capfd):
    for path, what in bad_policy_files(tmp_path, exported):
        before = listing(tmp_path)
        assert exit_status(["evaluate", str(runs["td3-rlx2"]), "--policy", str(path)]) == 2, path
        captured = capfd.readouterr()
        err = one_line(captured.err, "evaluate")
        assert err.startswith(f"rlx2 evaluate: --policy={path}: ") and what in err, err
        assert captured.out == "" and listing(tmp_path) == before
        if "maps 3" not in what:  # the library says the same (the task mismatch is the run's to find)
            with pytest.raises(PolicyFileError) as raised:
                load_policy(path)
            assert raised.value.path == str(path) and what in raised.value.reason


def test_a_policy_checks_its_observations():
    layer = Layer.from_dense(np.eye(2, dtype=np.float32), None, None, "tanh")
    from rlx2.deploy import Policy

    policy = Policy([layer], np.array([-2.0, 0.0]), np.array([2.0, 1.0]))
    assert policy(np.zeros(2)) == pytest.approx([0.0, 0.5])  # tanh(0) = 0 is the middle of each range
    assert policy(np.full((4, 2), 50.0)) == pytest.approx(np.tile([2.0, 1.0], (4, 1)))
    for bad in (np.zeros(3), np.zeros((2, 2, 2)), np.zeros((4, 3))):
        with pytest.raises(ValueError, match="expected \\(2,\\) or \\(batch, 2\\)"):
            policy(bad)


def test_auto_takes_csr_only_for_large_sparse_layers():
    from rlx2.deploy import choose_compute

    def layer(n, density):
        active = np.zeros((n, n), bool)
        active.reshape(-1)[: int(density * n * n)] = True
        return Layer.from_dense(np.ones((n, n), np.float32), active, None, "relu")

    # the paper's 256x256 hidden layer computes dense however sparse; CSR pays from ~362x362 at <= 5 %,
    # and from 1024x1024 at <= 20 % (benchmarks/deploy.py --kernels)
    assert [choose_compute(layer(256, d)) for d in (0.01, 0.3)] == ["dense", "dense"]
    assert [choose_compute(layer(512, d)) for d in (0.02, 0.05, 0.1)] == ["csr", "csr", "dense"]
    assert [choose_compute(layer(1024, d)) for d in (0.1, 0.2, 0.3)] == ["csr", "csr", "dense"]
    assert choose_compute(layer(1024, 0.1), "dense") == "dense" and choose_compute(layer(64, 1.0), "csr") == "csr"
    assert choose_compute(layer(1024, 0.01), csr_available=False) == "dense"
    with pytest.raises(ValueError, match="compute='fast'"):
        choose_compute(layer(8, 1.0), "fast")


def test_rlx2_deploy_stands_alone():
    """It can be copied beside an exported file: its imports are the standard library and numpy (scipy and
    onnxruntime only inside the functions that need them), nothing of rlx2."""
    import ast
    import importlib.util

    source = importlib.util.find_spec("rlx2.deploy").origin
    tree = ast.parse(open(source).read())
    top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    inner = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert top - sys.stdlib_module_names == {"numpy"}
    assert inner - sys.stdlib_module_names == {"numpy", "scipy", "onnxruntime"}
    assert not any(isinstance(n, ast.ImportFrom) and (n.module or "").startswith("rlx2") for n in ast.walk(tree))
