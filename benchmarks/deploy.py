"""What sparsity buys a deployed actor on this CPU: latency of one observation and artifact size.

For TD3 actors of the paper's tasks at the paper's actor sparsities (Hopper 98 %,
HalfCheetah 90 %, ER layer densities, magnitude masks) and their dense counterparts, at
hidden widths 256 (the paper's) to 4 096, it measures the latency of one observation
(median microseconds over many calls, each call timed alone) in every runtime an
exported actor can run in, and the size on disk of each artifact:

* ``torch eager``: the run's own actor (``MaskedLinear``, backend ``auto``), called as
  ``Agent.deterministic_action`` does for one observation (``act``: the compiled kernels'
  forward for a network with a CSR layer, else matrix-vector products, no autograd);
* ``numpy dense`` / ``scipy CSR``: ``rlx2.deploy.Policy`` with every layer dense or CSR;
* ``load_policy``: ``rlx2.deploy.load_policy`` on the ``.npz`` (its per-layer choice);
* ``onnxruntime``: the ``.onnx`` file, one intra-op thread.

Sizes: the actor's ``state_dict`` as torch saves it (dense weights plus masks, what
``model.pt`` holds per actor), the ``.npz`` and the ``.onnx``. Every runtime uses one thread
(BLAS, torch and onnxruntime), and every runtime's actions are checked against torch's
before timing. Runtimes are timed in interleaved rounds so that a machine whose load
drifts affects them alike; the table gives the median over all rounds. On a shared
machine compare ratios within one run, not absolute times across days.

    python benchmarks/deploy.py                         # the table (a few minutes on 2 cores)
    python benchmarks/deploy.py --widths 256 1024 --rounds 5 --json deploy.json
    python benchmarks/deploy.py --kernels               # one layer, dense vs CSR: the loader's rule

``tox -e deploy-bench`` runs the default.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy loads its BLAS
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from rlx2.agents.networks import DeterministicActor, initialise  # noqa: E402
from rlx2.deploy import OnnxPolicy, Policy, load_policy, write_npz  # noqa: E402
from rlx2.export import actor_layers, onnx_model  # noqa: E402
from rlx2.sparse.flops import forward_flops  # noqa: E402
from rlx2.sparse.layers import sparsify  # noqa: E402

#: ``task: (obs_dim, act_dim, the paper's TD3 actor sparsity)`` (gymnasium v5 observation sizes).
TASKS = {"Hopper-v5": (11, 3, 0.98), "HalfCheetah-v5": (17, 6, 0.90)}
RUNTIMES = ("torch eager", "numpy dense", "scipy CSR", "load_policy", "onnxruntime")
ROUND_SECONDS = 0.25  # each runtime's share of one round


def build_actor(obs_dim: int, act_dim: int, width: int, sparsity: float) -> DeterministicActor:
    """A TD3 actor as a run initialises it (seeded), with ER magnitude masks when ``sparsity`` > 0."""
    generator = torch.Generator().manual_seed(0)
    actor = DeterministicActor(obs_dim, act_dim, (width, width))
    initialise(actor, generator)
    if sparsity > 0:
        sparsify(actor, sparsity, generator, "er")
    return actor.eval()


def runtimes(actor: DeterministicActor, folder: Path) -> tuple[dict, dict]:
    """``(name -> callable(obs) -> environment action, artifact -> bytes)`` for one actor."""
    layers = actor_layers(actor)
    act_dim = layers[-1].shape[0]
    low, high = -np.ones(act_dim), np.ones(act_dim)
    meta = {"run_id": "benchmark"}
    npz, onnx_file = folder / "actor.npz", folder / "actor.onnx"
    with open(npz, "wb") as f:
        write_npz(f, layers, low, high, meta)
    onnx_file.write_bytes(onnx_model(layers, low, high, meta).SerializeToString())
    state = io.BytesIO()
    torch.save(actor.state_dict(), state)

    def torch_eager(obs):  # Agent.deterministic_action on one observation: the actor's act (MaskedMLP.infer)
        return low + (actor.act(np.asarray(obs, dtype=np.float32)).astype(np.float64) + 1.0) * (high - low) / 2.0

    calls = {"torch eager": torch_eager, "numpy dense": Policy(layers, low, high, compute="dense"),
             "scipy CSR": Policy(layers, low, high, compute="csr"), "load_policy": load_policy(npz),
             "onnxruntime": OnnxPolicy(onnx_file, threads=1)}
    sizes = {"model.pt actor": state.getbuffer().nbytes, ".npz": npz.stat().st_size, ".onnx": onnx_file.stat().st_size}
    return calls, sizes


def median_latency(calls: dict, observations: np.ndarray, rounds: int) -> dict[str, dict]:
    """Per runtime: the median microseconds of one call over all rounds, and each round's median."""
    timings: dict[str, list[float]] = {name: [] for name in calls}
    per_round: dict[str, list[float]] = {name: [] for name in calls}
    counts = {}
    for name, call in calls.items():  # warm up, and size each runtime's share of a round
        start = time.perf_counter()
        for i in range(20):
            call(observations[i])
        counts[name] = int(np.clip(ROUND_SECONDS / ((time.perf_counter() - start) / 20), 30, 5_000))
    order = list(calls)
    for r in range(rounds):
        for name in order[r % len(order):] + order[:r % len(order)]:  # rotate who goes first
            call, samples = calls[name], []
            for i in range(counts[name]):
                obs = observations[i % len(observations)]
                start = time.perf_counter_ns()
                call(obs)
                samples.append((time.perf_counter_ns() - start) / 1e3)
            timings[name] += samples
            per_round[name].append(statistics.median(samples))
    return {name: {"median_us": statistics.median(timings[name]), "round_medians_us": per_round[name],
                   "calls": len(timings[name])} for name in calls}


def measure(widths: list[int], rounds: int) -> list[dict]:
    """One row per task, width and actor; the dense and the sparse actor of a task and width are timed in the
    same interleaved rounds, so their ratio is not a comparison across moments of a drifting machine."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for width in widths:
            for task, (obs_dim, act_dim, paper_sparsity) in TASKS.items():
                calls, pair = {}, []
                observations = np.random.default_rng(1).standard_normal((256, obs_dim)).astype(np.float32)
                for sparsity in (0.0, paper_sparsity):
                    actor = build_actor(obs_dim, act_dim, width, sparsity)
                    folder = Path(tmp) / str(sparsity)
                    folder.mkdir(exist_ok=True)
                    own, sizes = runtimes(actor, folder)
                    if sparsity == 0:
                        del own["scipy CSR"]  # every weight through CSR indices: not a way anyone runs a dense actor
                    reference = own["torch eager"](observations[0])
                    for name, call in own.items():
                        error = np.abs(call(observations[0]) - reference).max()
                        assert error < 1e-4, f"{name} differs from torch by {error} ({task}, width {width})"
                    calls.update({(sparsity, name): call for name, call in own.items()})
                    active, total = forward_flops(actor)
                    pair.append({"task": task, "width": width, "sparsity": sparsity, "inference_flops": active / total,
                                 "loader_computes": own["load_policy"].computes, "sizes": sizes})
                latency = median_latency(calls, observations, rounds)
                for row in pair:
                    row["latency"] = {name: got for (sparsity, name), got in latency.items() if sparsity == row["sparsity"]}
                    rows.append(row)
                    print(format_row(row), flush=True)
    return rows


HEADER = ("| task | width | actor | inference FLOPs | " + " | ".join(f"{r} µs" for r in RUNTIMES)
          + " | load_policy layers | model.pt actor KiB | .npz KiB | .onnx KiB |")


def format_row(row: dict) -> str:
    lat, size = row["latency"], row["sizes"]
    actor = "dense" if row["sparsity"] == 0 else f"{100 * row['sparsity']:.0f} %"
    computes = "/".join("C" if c == "csr" else "D" for c in row["loader_computes"])
    return (f"| {row['task']} | {row['width']} | {actor} | {row['inference_flops']:.3f}x | "
            + " | ".join(f"{lat[r]['median_us']:.1f}" if r in lat else "-" for r in RUNTIMES)
            + f" | {computes} | {size['model.pt actor'] / 1024:.0f} | {size['.npz'] / 1024:.0f} | {size['.onnx'] / 1024:.0f} |")


def crossover(rows: list[dict]) -> list[str]:
    """Per task and width: the sparse actor's fastest runtime against the dense actor's fastest. Sparse inference
    pays where every round's median of the former is below every round's median of the latter (beyond the noise)."""
    lines = []
    for task in TASKS:
        first = None
        for width in sorted({r["width"] for r in rows}):
            pair = {r["sparsity"] > 0: r for r in rows if r["task"] == task and r["width"] == width}
            if len(pair) < 2:
                continue
            best = {sparse: min(r["latency"].items(), key=lambda item: item[1]["median_us"]) for sparse, r in pair.items()}
            (s_name, s), (d_name, d) = best[True], best[False]
            pays = max(s["round_medians_us"]) < min(d["round_medians_us"])
            lines.append(f"{task} width {width}: sparse {s['median_us']:.1f} µs ({s_name}) vs dense {d['median_us']:.1f} "
                         f"µs ({d_name}): {s['median_us'] / d['median_us']:.2f}x"
                         + ("" if pays else " (round medians overlap: no difference beyond the noise)"))
            if pays and first is None:
                first = width
        lines.append(f"{task}: sparse inference first pays at width {first}" if first else
                     f"{task}: sparse inference does not pay at any measured width")
    return lines


def kernels(sizes: list[int], densities: list[float], rounds: int) -> None:
    """One square layer and one observation: dense matvec against scipy's CSR product (``Policy``'s two kernels)."""
    from rlx2.deploy import Layer

    rng = np.random.default_rng(0)
    print("| layer | density | numpy dense µs | scipy CSR µs | CSR / dense |\n|---|---:|---:|---:|---:|")
    for n in sizes:
        for density in densities:
            weight = rng.standard_normal((n, n)).astype(np.float32)
            layer = Layer.from_dense(weight, rng.random((n, n)) < density, None, "none")
            one = np.ones(n)
            calls = {c: Policy([layer], -one, one, compute=c) for c in ("dense", "csr")}
            got = median_latency(calls, rng.standard_normal((64, n)).astype(np.float32), rounds)
            dense, csr = got["dense"]["median_us"], got["csr"]["median_us"]
            print(f"| {n}x{n} | {density:.2f} | {dense:.1f} | {csr:.1f} | {csr / dense:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per task and width")
    parser.add_argument("--json", type=Path, default=None, help="also write every measurement here")
    parser.add_argument("--kernels", action="store_true", help="one layer, dense vs CSR, by size and density")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.kernels:
        kernels([128, 256, 362, 512, 1024, 2048], [0.01, 0.02, 0.05, 0.1, 0.2, 0.3], args.rounds)
        return
    print(f"torch {torch.__version__}, numpy {np.__version__}, one thread per runtime; "
          f"load_policy layers: D dense, C CSR (input/hidden/output)")
    print(HEADER + "\n|" + "---|" * 3 + "---:|" * (len(RUNTIMES) + 5))
    rows = measure(args.widths, args.rounds)
    print()
    print("\n".join(crossover(rows)))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
