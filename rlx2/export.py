"""``rlx2 export``: a finished run's actor as a file that runs without torch or this package's training code.

The actor (``rlx2.load_agent``: the run's own config, final weights and masks) becomes a
list of ``rlx2.deploy.Layer``s, its active weights only: each ``MaskedLinear``'s mask
says which weights are active (a dense layer: all), a ReLU after a layer is its
activation, the last layer's is tanh. SAC's last layer keeps only its mean half (the
log-std half plays no part in the deterministic action). The environment's action bounds
come from the run's ``config.json``, so an exported policy maps observations straight to
environment actions, as the run's evaluations did (``rlx2.envs.ActionScaler``).

The file is written next to its destination and checked before it replaces it: read back
through ``rlx2.deploy.load_policy`` (the ``.onnx`` form through onnxruntime where it is
installed), it must give the agent's actions on a batch of observations. A failure at
any point leaves no file behind.

The ONNX graph is built with the ``onnx`` package from the same layers, not traced from
torch: a handful of nodes (``Gemm`` + activation per layer, then ``Mul``/``Add`` to the
bounds) under a stated opset, with the weights of layers sparser than 2/3 stored as ONNX
sparse initializers (values + int64 positions, 12 bytes a weight against 4 dense), which
onnxruntime turns dense when it loads the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from rlx2 import __version__
from rlx2.agents.networks import DeterministicActor, GaussianActor
from rlx2.config import ConfigError
from rlx2.deploy import (
    FORMAT,
    FORMAT_VERSION,
    ONNX_IR_VERSION,
    ONNX_OPSET,
    SUFFIXES,
    Layer,
    OnnxPolicy,
    Policy,
    PolicyFileError,
    read_npz,
    write_npz,
)
from rlx2.records import RunDirectory, git_commit, writable_directory, write_atomically
from rlx2.sparse.flops import forward_flops
from rlx2.sparse.layers import MaskedLinear

#: The exported file must reproduce the agent's actions on random observations within this (its own check;
#: the tests hold both forms to 1e-5 on states the policy visits).
SELF_CHECK_TOLERANCE = 1e-4
#: ONNX weights are stored sparse below this density (12 bytes per active weight against 4 per weight dense).
ONNX_SPARSE_BELOW = 1 / 3


class ExportError(ValueError):
    """Why a run cannot be exported to the requested file (one line, naming the field and value)."""


def actor_layers(actor: nn.Module) -> list[Layer]:
    """The active weights, biases and activations of a TD3 or SAC actor (module docstring)."""
    if not isinstance(actor, (DeterministicActor, GaussianActor)):
        raise ExportError(f"actor={type(actor).__name__}: only TD3's DeterministicActor and SAC's GaussianActor export")
    modules = list(actor.net)
    layers = []
    for i, module in enumerate(modules):
        if isinstance(module, MaskedLinear):
            following = modules[i + 1] if i + 1 < len(modules) else None
            activation = "relu" if isinstance(following, nn.ReLU) else "tanh" if following is None else None
            if activation is None:
                raise ExportError(f"actor layer {i}: followed by {type(following).__name__}, not ReLU")
            mask = None if module.mask is None else module.mask.numpy()
            bias = None if module.bias is None else module.bias.detach().numpy()
            layers.append(Layer.from_dense(module.weight.detach().numpy(), mask, bias, activation))
        elif not isinstance(module, nn.ReLU):
            raise ExportError(f"actor layer {i}: {type(module).__name__} is not a linear layer or ReLU")
    if isinstance(actor, GaussianActor):  # outputs are (mean, raw log-std); the deterministic action is tanh(mean)
        layers[-1] = layers[-1].rows(layers[-1].shape[0] // 2)
    return layers


def provenance(run_dir: Path, agent: Any, layers: list[Layer], saved: dict[str, Any]) -> dict[str, Any]:
    """Where an exported policy came from: run, commit, sparsities, final score, and what it computes."""
    result = RunDirectory(run_dir).result()
    cfg = agent.cfg
    active, total = forward_flops(agent.actor)
    flops = {} if result is None else result.flops
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "run_id": saved.get("run_id"), "algo": cfg.algo, "env": cfg.env, "method": cfg.method, "seed": cfg.seed,
        "steps": cfg.steps, "git_commit": saved.get("git_commit"),
        "exported_by": {"rlx2": __version__, "git_commit": git_commit()},
        "final_score": None if result is None else result.final_score,
        "actor_sparsity": 1.0 - active / total,
        "settings": {"actor_sparsity": cfg.actor_sparsity, "critic_sparsity": cfg.critic_sparsity,
                     "sparsity_distribution": cfg.sparsity_distribution, "hidden_sizes": list(cfg.hidden_sizes)},
        "final_densities": None if result is None else result.final_densities,
        "size": flops.get("size"), "inference_flops_relative": flops.get("inference_flops_relative"),
        "obs_dim": layers[0].shape[1], "act_dim": layers[-1].shape[0],
        "layers": [{"shape": list(layer.shape), "active": layer.nnz, "density": layer.density,
                    "activation": layer.activation} for layer in layers],
        "action": ("tanh(mean) of the Gaussian policy" if cfg.algo == "sac" else "the tanh output")
                  + ", mapped from [-1, 1] to [action_low, action_high]",
        "action_low": saved["env"]["action_low"], "action_high": saved["env"]["action_high"],
    }


def onnx_model(layers: list[Layer], low: np.ndarray, high: np.ndarray, metadata: dict[str, Any]):
    """The policy as an ONNX ``ModelProto``: observation ``[batch, obs_dim]`` -> action ``[batch, act_dim]``, float32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, dense, sparse = [], [], []
    hidden = "observation"
    for i, layer in enumerate(layers):
        weight, bias, linear = f"layer{i}.weight", f"layer{i}.bias", f"layer{i}.linear"
        if layer.density < ONNX_SPARSE_BELOW:
            rows = np.repeat(np.arange(layer.shape[0], dtype=np.int64), np.diff(layer.indptr))
            positions = rows * layer.shape[1] + layer.indices.astype(np.int64)  # row-major linear indices
            sparse.append(helper.make_sparse_tensor(numpy_helper.from_array(layer.data, weight),
                                                    numpy_helper.from_array(positions, f"{weight}.positions"),
                                                    list(layer.shape)))
        else:
            dense.append(numpy_helper.from_array(layer.dense(), weight))
        dense.append(numpy_helper.from_array(layer.bias, bias))
        nodes.append(helper.make_node("Gemm", [hidden, weight, bias], [linear], transB=1, name=f"layer{i}"))
        hidden = linear
        if layer.activation != "none":
            op = {"relu": "Relu", "tanh": "Tanh"}[layer.activation]
            nodes.append(helper.make_node(op, [linear], [f"layer{i}.{layer.activation}"], name=f"layer{i}.{op}"))
            hidden = f"layer{i}.{layer.activation}"
    half = (np.asarray(high, np.float64) - np.asarray(low, np.float64)) / 2.0
    dense.append(numpy_helper.from_array(half.astype(np.float32), "action.half_range"))
    dense.append(numpy_helper.from_array((np.asarray(low, np.float64) + half).astype(np.float32), "action.centre"))
    nodes.append(helper.make_node("Mul", [hidden, "action.half_range"], ["action.scaled"], name="scale"))
    nodes.append(helper.make_node("Add", ["action.scaled", "action.centre"], ["action"], name="shift"))
    graph = helper.make_graph(
        nodes, "rlx2_actor",
        [helper.make_tensor_value_info("observation", TensorProto.FLOAT, ["batch", layers[0].shape[1]])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", layers[-1].shape[0]])],
        initializer=dense, sparse_initializer=sparse)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], ir_version=ONNX_IR_VERSION,
                              producer_name="rlx2", producer_version=__version__,
                              doc_string=f"rlx2 actor of run {metadata.get('run_id')}: observation -> environment action")
    helper.set_model_props(model, {"format": FORMAT, "format_version": str(FORMAT_VERSION),
                                   "rlx2": json.dumps({**metadata, "onnx_opset": ONNX_OPSET}, sort_keys=True)})
    onnx.checker.check_model(model)
    return model


def _check_out(out: Path) -> None:
    """Refuse an output path before any work: its suffix picks the format, its folder must be writable."""
    if out.suffix not in SUFFIXES:
        raise ExportError(f"--out={out}: unknown format {out.suffix or '(no suffix)'!r}; "
                          f"the suffix picks it: {' or '.join(SUFFIXES)}")
    if out.is_dir():
        raise ExportError(f"--out={out}: is a directory")
    problem = writable_directory(out.parent)
    if problem:
        raise ExportError(f"--out={out}: {problem}")
    if out.suffix == ".onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise ExportError(f"--out={out}: writing .onnx needs the onnx package (pip install 'rlx2[deploy]')") from None


def _agent(run_dir: Path):
    """The run's agent and its saved config.json; ExportError when the directory cannot give them."""
    from rlx2.evaluation import load_agent

    try:
        agent = load_agent(run_dir)
    except ConfigError as exc:
        raise ExportError(str(exc)) from None
    saved = RunDirectory(run_dir).saved_config() or {}
    env = saved.get("env", {})
    if not all(isinstance(env.get(k), list) for k in ("action_low", "action_high")):
        raise ExportError(f"run_dir={run_dir}: its config.json records no action bounds (env.action_low/high)")
    return agent, saved


def _self_check(path: Path, suffix: str, agent: Any, low: np.ndarray, high: np.ndarray) -> float | None:
    """Max |exported - agent| action over 64 seeded random observations, read back from ``path``
    (None for .onnx without onnxruntime); ExportError above ``SELF_CHECK_TOLERANCE``."""
    try:
        policy = OnnxPolicy(path) if suffix == ".onnx" else Policy(*read_npz(path))
    except PolicyFileError as exc:
        if "needs onnxruntime" in exc.reason:
            return None
        raise ExportError(f"the written file does not read back: {exc.reason}") from None
    obs = np.random.default_rng(0).standard_normal((64, agent.obs_dim)).astype(np.float32)
    expected = low + (agent.deterministic_action(obs).astype(np.float64) + 1.0) * (high - low) / 2.0
    error = float(np.max(np.abs(policy(obs) - expected)))
    if not error <= SELF_CHECK_TOLERANCE:
        raise ExportError(f"the written {suffix} policy differs from the agent by {error:.3g} (> {SELF_CHECK_TOLERANCE})")
    return error


def export_run(run_dir: str | Path, out: str | Path) -> dict[str, Any]:
    """Export the actor of the finished run in ``run_dir`` to ``out`` (``.npz`` or ``.onnx``, by suffix).

    Returns a summary (path, format, bytes, layer densities, the self-check's max error). Raises
    ExportError for bad input (before anything is written) and OSError when writing fails.
    """
    run_dir, out = Path(run_dir), Path(out)
    _check_out(out)
    agent, saved = _agent(run_dir)
    layers = actor_layers(agent.actor)
    low, high = np.asarray(saved["env"]["action_low"], np.float64), np.asarray(saved["env"]["action_high"], np.float64)
    if low.shape != (layers[-1].shape[0],) or high.shape != low.shape:
        raise ExportError(f"run_dir={run_dir}: config.json's action bounds have {low.size} entries, "
                          f"the actor {layers[-1].shape[0]} outputs")
    metadata = provenance(run_dir, agent, layers, saved)
    if out.suffix == ".onnx":
        model = onnx_model(layers, low, high, metadata)
        write = lambda f: f.write(model.SerializeToString())  # noqa: E731
    else:
        write = lambda f: write_npz(f, layers, low, high, metadata)  # noqa: E731
    out.parent.mkdir(parents=True, exist_ok=True)  # checked writable before any work (``_check_out``)
    error = write_atomically(out, write, "wb", lambda tmp: _self_check(tmp, out.suffix, agent, low, high))
    return {"out": str(out), "format": out.suffix[1:], "bytes": out.stat().st_size, "run_id": metadata["run_id"],
            "actor_sparsity": metadata["actor_sparsity"], "layers": metadata["layers"], "self_check_max_error": error}
