"""Which implementation sparse networks train on, and where and for which CPU numba compiles (``rlx2.sparse.kernels``, ``numba_setup``)."""

import os
import subprocess
import sys
import tempfile

import pytest

from rlx2.sparse import kernels, numba_setup


@pytest.fixture
def unloaded(monkeypatch):
    """``kernels.compiled()`` decides afresh in this test (and is restored after it)."""
    monkeypatch.delenv("RLX2_KERNELS", raising=False)
    monkeypatch.setattr(kernels, "_KERNELS", False)


def test_rlx2_kernels_torch_switches_the_compiled_kernels_off(unloaded, monkeypatch):
    monkeypatch.setenv("RLX2_KERNELS", "torch")
    assert kernels.compiled() is None and kernels.implementation() == "torch"


def test_without_numba_everything_runs_on_pytorch_quietly(unloaded, monkeypatch, recwarn):
    monkeypatch.setitem(sys.modules, "numba", None)  # what an interpreter without numba sees on import
    assert kernels.compiled() is None and kernels.implementation() == "torch"
    assert not [w for w in recwarn if "compiled kernels" in str(w.message)]


def test_kernels_that_cannot_load_warn_and_fall_back_to_pytorch(unloaded, monkeypatch):
    pytest.importorskip("numba")
    monkeypatch.setitem(sys.modules, "rlx2.sparse._numba", None)  # importing it now raises
    with pytest.warns(RuntimeWarning, match="the compiled kernels cannot load"):
        assert kernels.compiled() is None
    assert kernels.implementation() == "torch"


def test_cache_stays_numbas_choice_where_the_sources_are_writable_or_the_user_chose(tmp_path):
    assert numba_setup.cache_directory(tmp_path, {}) is None  # numba caches in tmp_path/**/__pycache__
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    assert numba_setup.cache_directory(not_a_directory, {"NUMBA_CACHE_DIR": "/somewhere"}) is None


def test_read_only_sources_cache_in_the_user_cache_else_in_a_temporary_directory(tmp_path):
    read_only = tmp_path / "file"  # nothing can be created under a file: as a read-only install
    read_only.write_text("")
    cache = tmp_path / "cache"
    assert numba_setup.cache_directory(read_only, {"XDG_CACHE_HOME": str(cache)}) == str(cache / "rlx2" / "numba")
    chosen = numba_setup.cache_directory(read_only, {"XDG_CACHE_HOME": str(read_only), "HOME": str(read_only)})
    assert chosen is not None and chosen.startswith(tempfile.gettempdir())


AVX512 = "+avx2,+avx512f,+avx512bw,+fma"


def test_avx512_cpus_compile_for_512_bit_vectors_unless_the_user_chose_a_target():
    assert numba_setup.vector_features(AVX512, {}) == AVX512 + ",-prefer-256-bit"
    assert numba_setup.vector_features("+avx2,+fma,-avx512f", {}) is None  # no AVX-512: numba's own choice
    assert numba_setup.vector_features(AVX512, {"NUMBA_CPU_NAME": "generic"}) is None  # the golden runs' pin
    assert numba_setup.vector_features(AVX512, {"NUMBA_CPU_FEATURES": "+avx2"}) is None


def test_numba_loads_with_the_chosen_target_whichever_rlx2_module_imports_it_first():
    """numba fixes its compile target when it loads: every import path of ours must decide it before."""
    probe = """
import os, sys
import llvmlite.binding as llvm
environ = {k: v for k, v in os.environ.items() if k != "NUMBA_CPU_FEATURES"}
import {module}
from numba.core import registry
from rlx2.sparse import numba_setup
expected = numba_setup.vector_features(llvm.get_host_cpu_features().flatten(), environ)
target = registry.cpu_target.target_context.codegen().magic_tuple()[2]  # what numba compiles and caches for
assert expected is None or target == expected, (target, expected)
assert "NUMBA_CPU_FEATURES" not in os.environ  # children choose their own target
"""
    environ = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CPU_FEATURES", "NUMBA_CPU_NAME")}
    for module in ("rlx2.train", "rlx2.replay_kernel", "rlx2.agents.gaussian_kernel", "rlx2.sparse._numba"):
        done = subprocess.run([sys.executable, "-c", probe.replace("{module}", module)], env=environ,
                              capture_output=True, text=True)
        assert done.returncode == 0, (module, done.stderr[-2000:])
