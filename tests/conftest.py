import pytest
import torch

from rlx2.config import RunConfig

# One intra-op thread, as every run uses: with a second busy process on a 2-core machine, torch's
# default two threads spin-wait on each other and small updates become ~80x slower.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded_global_rng():
    """Tests that draw data from torch's global generator draw the same data whatever ran before them
    (the package itself never uses it)."""
    torch.manual_seed(0)


def tiny_config(**changes) -> RunConfig:
    """A real but small Hopper-v5 run that still exercises every mechanism.

    1 000 training iterations: topology updates every 200 optimiser steps, n-step targets
    from iteration 200, dynamic-buffer checks every 500 steps with a small minimum.
    """
    base = dict(env="Hopper-v5", steps=1_500, warmup_steps=500, batch_size=64, delta=200, nstep_delay=200,
                buffer_check_every=500, buffer_min=600, eval_every=500, eval_episodes=2, log_every=500)
    base.update(changes)
    return RunConfig(**base)


@pytest.fixture
def tiny():
    return tiny_config


@pytest.fixture(params=["numba", "torch"])
def implementation(request, monkeypatch):
    """Run a test once on the compiled kernels and once on the PyTorch path (``rlx2.sparse.kernels``)."""
    from rlx2.sparse import kernels

    monkeypatch.delenv("RLX2_KERNELS", raising=False)
    monkeypatch.setattr(kernels, "_KERNELS", None if request.param == "torch" else False)
    if request.param == "numba" and kernels.compiled() is None:
        pytest.skip("numba is not importable here")
    assert kernels.implementation() == request.param
    return request.param


@pytest.fixture
def torch_path(monkeypatch):
    """The PyTorch path only (the compiled kernels switched off)."""
    from rlx2.sparse import kernels

    monkeypatch.setattr(kernels, "_KERNELS", None)
