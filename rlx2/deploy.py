"""A trained actor outside this package: the policy files ``rlx2 export`` writes, read without torch.

``rlx2 export`` (``rlx2.export``) turns a run's actor into a list of ``Layer``s and writes
them in one of two forms; ``load_policy`` reads either back as a callable from
observation(s) to environment action(s) (the tanh output mapped to the task's bounds;
SAC: its mean action, the one it is evaluated with):

* ``.npz``: every layer's active weights in CSR form (``data``, ``indices``, ``indptr``)
  with its shape, bias and activation, the action bounds and the run's provenance. It
  is read with numpy alone (``np.load(allow_pickle=False)``: no code runs from the
  file). Each layer computes as a dense numpy matmul or, where that is measured to be
  slower, as a CSR product with scipy.sparse (imported only then: numpy has no CSR
  product, and its gather-and-sum forms were up to 10x slower than scipy's compiled one,
  as fast only for a 256x256 layer at 1 % density). Without scipy every layer computes dense.
* ``.onnx``: the same network as an ONNX graph (opset ``ONNX_OPSET``), run with
  onnxruntime (``rlx2[deploy]``), which computes dense.

Importing this module imports numpy only, never torch (tested in a process where
``import torch`` fails), so a deployed policy needs neither torch nor this package's
training code. Every problem with a file raises ``PolicyFileError`` naming the file and
what is wrong with it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

#: Written into every exported file; a file without it was not made by ``rlx2 export``.
FORMAT = "rlx2-policy"
#: Bumped when the layout changes incompatibly; a reader refuses files newer than it.
FORMAT_VERSION = 1
#: The ONNX operator set the exported graphs use (Gemm, Relu, Tanh, Mul, Add: all stable since opset 13).
ONNX_OPSET = 17
#: The ONNX IR version that goes with ``ONNX_OPSET`` (older runtimes refuse newer IR versions).
ONNX_IR_VERSION = 8
ACTIVATIONS = ("relu", "tanh", "none")
SUFFIXES = (".npz", ".onnx")
#: ``compute="auto"``: ``(weights, density)``: a layer with at least that many weights (dense
#: count) takes the CSR product at or below that density; every other layer the dense matmul.
#: From ``python benchmarks/deploy.py --kernels`` (square layers, one observation, one thread,
#: 2-core CPU): CSR took 0.45-0.84x of dense at 362x362-512x512 and densities 0.01-0.05 but
#: 1.07x at 512x512 and 0.1; 0.37x at 1024x1024 and 0.1, 0.82-0.88x at 0.2, 1.27x at 0.3; at
#: 256x256 (the paper's hidden layer) it is 0.9x at best, within the noise of a shared machine.
CSR_RULE = ((2**20, 0.2), (2**17, 0.05))
COMPUTES = ("auto", "dense", "csr")


class PolicyFileError(ValueError):
    """A policy file that cannot be used: missing, truncated, not made by ``rlx2 export``, inconsistent."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


@dataclass
class Layer:
    """One linear layer ``y = act(W x + b)``, ``W`` of ``shape`` (out, in) held in CSR form."""

    shape: tuple[int, int]
    data: np.ndarray  # float32 active weights, row by row
    indices: np.ndarray  # their column indices
    indptr: np.ndarray  # row pointers, out + 1 entries
    bias: np.ndarray  # float32, out entries
    activation: str

    @classmethod
    def from_dense(cls, weight: np.ndarray, active: np.ndarray | None, bias: np.ndarray | None,
                   activation: str) -> Layer:
        """The layer of a dense ``weight`` whose ``active`` entries (a boolean mask; None: all) are its weights."""
        weight = np.asarray(weight, dtype=np.float32)
        out_f, in_f = weight.shape
        active = np.ones(weight.shape, dtype=bool) if active is None else np.asarray(active, dtype=bool)
        rows, cols = np.nonzero(active)  # row-major: sorted by row, then column
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=out_f))]).astype(np.int32)
        bias = np.zeros(out_f, np.float32) if bias is None else np.asarray(bias, dtype=np.float32)
        return cls((out_f, in_f), weight[rows, cols], cols.astype(_index_dtype(in_f)), indptr, bias, activation)

    @property
    def nnz(self) -> int:
        return int(self.data.size)

    @property
    def density(self) -> float:
        return self.nnz / (self.shape[0] * self.shape[1])

    def dense(self) -> np.ndarray:
        """``W`` as a dense float32 array (inactive entries zero)."""
        weight = np.zeros(self.shape, dtype=np.float32)
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        weight[rows, self.indices.astype(np.int64)] = self.data
        return weight

    def rows(self, count: int) -> Layer:
        """The layer's first ``count`` outputs (SAC's mean half of its last layer)."""
        end = int(self.indptr[count])
        return Layer((count, self.shape[1]), self.data[:end], self.indices[:end], self.indptr[:count + 1],
                     self.bias[:count], self.activation)


def _index_dtype(in_features: int) -> type:
    """The smallest column-index type: uint16 (2 bytes a weight) whenever a layer has at most 65 536 inputs."""
    return np.uint16 if in_features <= 2**16 else np.int32


# -- the .npz format ----------------------------------------------------------------------------


def write_npz(f: IO[bytes], layers: Sequence[Layer], action_low: np.ndarray, action_high: np.ndarray,
              metadata: dict[str, Any]) -> None:
    """Write the ``.npz`` form into the open binary file ``f`` (compressed: indices compress well)."""
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT), "format_version": np.array(FORMAT_VERSION),
        "metadata": np.array(json.dumps(metadata, sort_keys=True)),
        "layers": np.array(len(layers)), "activations": np.array([layer.activation for layer in layers]),
        "action_low": np.asarray(action_low, np.float64), "action_high": np.asarray(action_high, np.float64),
    }
    for i, layer in enumerate(layers):
        arrays.update({f"layer{i}.shape": np.array(layer.shape, np.int64), f"layer{i}.data": layer.data,
                       f"layer{i}.indices": layer.indices, f"layer{i}.indptr": layer.indptr,
                       f"layer{i}.bias": layer.bias})
    np.savez_compressed(f, **arrays)


def read_npz(path: str | Path) -> tuple[list[Layer], np.ndarray, np.ndarray, dict[str, Any]]:
    """``(layers, action_low, action_high, metadata)`` of an ``.npz`` policy; PolicyFileError if it is not one."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in f.files}
    except FileNotFoundError:
        raise PolicyFileError(path, "no such file") from None
    except IsADirectoryError:
        raise PolicyFileError(path, "is a directory") from None
    except Exception as exc:  # noqa: BLE001 - zipfile, zlib and numpy each raise their own kinds
        raise PolicyFileError(path, f"cannot be read as an .npz file (truncated, or not written by rlx2 export): "
                                    f"{type(exc).__name__}: {exc}") from None
    _check_format(path, arrays.get("format"), arrays.get("format_version"))
    try:
        metadata = json.loads(str(arrays["metadata"]))
        count = int(arrays["layers"])
        activations = [str(a) for a in arrays["activations"]]
        layers = [Layer(tuple(int(n) for n in arrays[f"layer{i}.shape"]), arrays[f"layer{i}.data"],
                        arrays[f"layer{i}.indices"], arrays[f"layer{i}.indptr"], arrays[f"layer{i}.bias"],
                        activations[i]) for i in range(count)]
        low, high = arrays["action_low"], arrays["action_high"]
    except KeyError as exc:
        raise PolicyFileError(path, f"entry {exc.args[0]!r} is missing") from None
    except (ValueError, TypeError, IndexError) as exc:
        raise PolicyFileError(path, f"malformed entries ({exc})") from None
    _check_layers(path, layers, low, high)
    return layers, low, high, metadata


def _check_format(path: str | Path, marker: Any, version: Any) -> None:
    if marker is None or str(marker) != FORMAT:
        raise PolicyFileError(path, f"not a policy written by rlx2 export (format={None if marker is None else str(marker)!r}, "
                                    f"expected {FORMAT!r})")
    try:
        version = int(version)
    except (TypeError, ValueError):
        raise PolicyFileError(path, f"format_version={version!r}: not an integer") from None
    if not 1 <= version <= FORMAT_VERSION:
        raise PolicyFileError(path, f"format_version={version}: this rlx2 reads versions 1 to {FORMAT_VERSION}")


def _check_layers(path: str | Path, layers: Sequence[Layer], low: np.ndarray, high: np.ndarray) -> None:
    """Every array has the shape, type and range its layer needs, and the layers chain."""
    if not layers:
        raise PolicyFileError(path, "layers=0: a policy needs at least one layer")
    for i, layer in enumerate(layers):
        name = f"layer{i}"
        if len(layer.shape) != 2 or min(layer.shape) < 1:
            raise PolicyFileError(path, f"{name}.shape={list(layer.shape)}: not two positive sizes")
        out_f, in_f = layer.shape
        if i > 0 and in_f != layers[i - 1].shape[0]:
            raise PolicyFileError(path, f"{name}.shape={list(layer.shape)}: takes {in_f} inputs, "
                                        f"layer{i - 1} gives {layers[i - 1].shape[0]}")
        if layer.activation not in ACTIVATIONS:
            raise PolicyFileError(path, f"activations[{i}]={layer.activation!r}: not one of {', '.join(ACTIVATIONS)}")
        for field, kind in (("data", "f"), ("bias", "f"), ("indices", "iu"), ("indptr", "iu")):
            array = getattr(layer, field)
            if array.ndim != 1 or array.dtype.kind not in kind:
                raise PolicyFileError(path, f"{name}.{field}: a 1-D {'float' if kind == 'f' else 'integer'} array "
                                            f"expected, found {array.dtype} of shape {array.shape}")
        ptr = layer.indptr
        if ptr.size != out_f + 1 or ptr[0] != 0 or np.any(np.diff(ptr.astype(np.int64)) < 0) \
                or ptr[-1] != layer.data.size or layer.indices.size != layer.data.size:
            raise PolicyFileError(path, f"{name}.indptr: not CSR row pointers for {out_f} rows and "
                                        f"{layer.data.size} weights")
        if layer.indices.size and not 0 <= int(layer.indices.min()) <= int(layer.indices.max()) < in_f:
            raise PolicyFileError(path, f"{name}.indices: columns {int(layer.indices.min())}..{int(layer.indices.max())}"
                                        f" outside 0..{in_f - 1}")
        if layer.bias.size != out_f:
            raise PolicyFileError(path, f"{name}.bias: {layer.bias.size} entries for {out_f} outputs")
        if not (np.all(np.isfinite(layer.data)) and np.all(np.isfinite(layer.bias))):
            raise PolicyFileError(path, f"{name}: non-finite weights or biases")
    act_dim = layers[-1].shape[0]
    for field, bound in (("action_low", low), ("action_high", high)):
        if bound.shape != (act_dim,) or not np.all(np.isfinite(bound)):
            raise PolicyFileError(path, f"{field}: {act_dim} finite bounds expected, found shape {bound.shape}")
    if np.any(low > high):
        raise PolicyFileError(path, "action_low exceeds action_high")


# -- running a policy ---------------------------------------------------------------------------


def _scipy_sparse():
    """``scipy.sparse``, or None where it is not installed (every layer then computes dense)."""
    try:
        import scipy.sparse
    except ImportError:
        return None
    return scipy.sparse


def choose_compute(layer: Layer, compute: str = "auto", csr_available: bool = True) -> str:
    """``"dense"`` or ``"csr"``: how ``layer`` computes under ``compute`` (``auto``: by ``CSR_RULE``)."""
    if compute not in COMPUTES:
        raise ValueError(f"compute={compute!r}: must be one of {', '.join(COMPUTES)}")
    if not csr_available or compute == "dense":
        return "dense"
    if compute == "csr":
        return "csr"
    weights = layer.shape[0] * layer.shape[1]
    return "csr" if any(weights >= size and layer.density <= most for size, most in CSR_RULE) else "dense"


class _Scaled:
    """What both policy kinds share: observation checks and the metadata."""

    obs_dim: int
    act_dim: int
    metadata: dict[str, Any]

    def _observations(self, obs: Any) -> tuple[np.ndarray, bool]:
        x = np.asarray(obs, dtype=np.float32)
        if x.ndim not in (1, 2) or x.shape[-1] != self.obs_dim:
            raise ValueError(f"observation of shape {x.shape}: expected ({self.obs_dim},) or (batch, {self.obs_dim})")
        return x, x.ndim == 1


class Policy(_Scaled):
    """An ``.npz`` policy: ``policy(obs)`` gives the environment action of one observation ``(obs_dim,)``
    or of a batch ``(batch, obs_dim)`` as float64, ``(act_dim,)`` or ``(batch, act_dim)``.

    ``compute``: ``auto`` (per layer, ``choose_compute``), ``dense`` or ``csr`` (every layer);
    ``self.computes`` says what each layer does. Layers compute feature-major (``W h``), so one
    observation is a matrix-vector product and a batch one matrix product per layer.
    """

    def __init__(self, layers: Sequence[Layer], action_low: np.ndarray, action_high: np.ndarray,
                 metadata: dict[str, Any] | None = None, compute: str = "auto") -> None:
        sparse = _scipy_sparse()
        self.computes = [choose_compute(layer, compute, sparse is not None) for layer in layers]
        if compute == "csr" and sparse is None:
            raise ValueError("compute='csr' needs scipy")
        self._weights = [layer.dense() if how == "dense"
                         else sparse.csr_array((layer.data, layer.indices.astype(np.int32), layer.indptr.astype(np.int32)),
                                               shape=layer.shape)
                         for layer, how in zip(layers, self.computes)]
        self._biases = [layer.bias.astype(np.float32) for layer in layers]
        self._columns = [layer.bias.astype(np.float32)[:, None] for layer in layers]
        self._activations = [layer.activation for layer in layers]
        self.layers = list(layers)
        self.obs_dim, self.act_dim = layers[0].shape[1], layers[-1].shape[0]
        self.low = np.asarray(action_low, np.float64)
        self.half_range = (np.asarray(action_high, np.float64) - self.low) / 2.0
        self.metadata = dict(metadata or {})

    def __call__(self, obs: Any) -> np.ndarray:
        x, single = self._observations(obs)
        h = x if single else x.T
        biases = self._biases if single else self._columns
        for weight, bias, activation in zip(self._weights, biases, self._activations):
            h = weight @ h
            h += bias
            if activation == "relu":
                np.maximum(h, 0.0, out=h)
            elif activation == "tanh":
                np.tanh(h, out=h)
        action = h if single else h.T
        return self.low + (action.astype(np.float64) + 1.0) * self.half_range

    def __repr__(self) -> str:
        shapes = " -> ".join(str(s) for s in [self.obs_dim, *(layer.shape[0] for layer in self.layers)])
        return f"Policy({shapes}, computes={self.computes})"


class OnnxPolicy(_Scaled):
    """An ``.onnx`` policy run by onnxruntime; called like ``Policy`` (float64 actions)."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise PolicyFileError(path, "running an .onnx policy needs onnxruntime (pip install 'rlx2[deploy]')") from None
        if not Path(path).is_file():
            raise PolicyFileError(path, "no such file")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # one observation: threads only add hand-off cost
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: a bad file is reported below, once
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception kinds
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PolicyFileError(path, f"cannot be read as an ONNX model (truncated, or not written by rlx2 export): "
                                        f"{first}") from None
        props = self.session.get_modelmeta().custom_metadata_map
        _check_format(path, props.get("format"), props.get("format_version"))
        try:
            self.metadata = json.loads(props["rlx2"])
        except (KeyError, ValueError):
            raise PolicyFileError(path, "its metadata entry 'rlx2' is missing or not JSON") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if [i.name for i in inputs] != ["observation"] or [o.name for o in outputs] != ["action"]:
            raise PolicyFileError(path, "expected one input 'observation' and one output 'action'")
        shapes = [inputs[0].shape, outputs[0].shape]
        if not all(len(shape) == 2 and isinstance(shape[1], int) for shape in shapes):
            raise PolicyFileError(path, f"observation and action must be [batch, size], found {shapes}")
        self.obs_dim, self.act_dim = shapes[0][1], shapes[1][1]

    def __call__(self, obs: Any) -> np.ndarray:
        x, single = self._observations(obs)
        (action,) = self.session.run(None, {"observation": x[None] if single else x})
        return (action[0] if single else action).astype(np.float64)


def load_policy(path: str | Path, compute: str = "auto", threads: int = 1) -> Policy | OnnxPolicy:
    """The policy of a file written by ``rlx2 export``, by its suffix: ``.npz`` (numpy, optionally scipy)
    or ``.onnx`` (onnxruntime with ``threads`` intra-op threads). Raises PolicyFileError naming the problem."""
    path = Path(path)
    if path.suffix == ".npz":
        layers, low, high, metadata = read_npz(path)
        return Policy(layers, low, high, metadata, compute)
    if path.suffix == ".onnx":
        return OnnxPolicy(path, threads)
    raise PolicyFileError(path, f"unknown suffix {path.suffix or '(none)'!r}: a policy file is .npz or .onnx")
