"""Where numba keeps its compile cache and which CPU features it compiles for, decided before it loads.

numba reads its cache directory when it loads and fixes its compile target when the first
function is decorated, so every module of ours that imports numba (``rlx2.sparse._numba``,
``rlx2.replay_kernel``, ``rlx2.agents.gaussian_kernel``) calls ``prepare_numba`` first.

The cache: next to the sources (``__pycache__``), or in a read-only install a user or
temporary directory (``cache_directory``). The target: on a CPU with AVX-512, its 512-bit
vectors (``vector_features``): LLVM's tuning for these CPUs keeps vectorised loops at 256
bits, half of what the batch loops could do per instruction. Products and element-wise
steps give the same bits either way; the two reductions (weight and bias gradients) round
as the wider vectors sum, as they would on another CPU.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def cache_directory(package: Path, environ: dict[str, str]) -> str | None:
    """Where numba should cache the compiled kernels, if not where it would by itself; None: its own choice.

    numba keeps its cache next to the sources (``__pycache__``), else under the user's cache
    directory, and refuses to compile a function it cannot cache (at import) when neither is
    writable: a read-only install without a writable home. Then: ``$XDG_CACHE_HOME`` or
    ``~/.cache`` (``rlx2/numba``) if writable, else a directory in the system's temporary one.
    ``NUMBA_CACHE_DIR`` set by the user always wins.
    """
    if "NUMBA_CACHE_DIR" in environ or _writable(package / "__pycache__"):
        return None
    home = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME") or "/nonexistent") / ".cache")
    for candidate in (Path(home) / "rlx2" / "numba", Path(tempfile.gettempdir()) / f"rlx2-numba-{os.getuid()}"):
        if _writable(candidate):
            return str(candidate)
    return None


def _writable(directory: Path) -> bool:
    """Whether files can be created in ``directory`` (made if missing), tried as numba tries it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError:
        return False
    return True


def vector_features(host_features: str, environ: dict[str, str]) -> str | None:
    """The CPU features numba should compile for, if not its own choice; None: its own choice.

    ``host_features`` is LLVM's list for this CPU (``+avx512f,+avx2,...``). With AVX-512 it
    gains ``-prefer-256-bit``, which lifts the tuning that keeps vectorised loops at 256 bits
    (measured on the kernels alone: 1.3-1.6x; on a whole TD3 update at 90/85 % about 1.15x,
    at 98/95 % none: README, "Speed"). ``NUMBA_CPU_NAME`` or ``NUMBA_CPU_FEATURES`` set by
    the user (the golden runs pin the first) always wins.
    """
    if "NUMBA_CPU_NAME" in environ or "NUMBA_CPU_FEATURES" in environ:
        return None
    if "+avx512f" not in host_features.split(","):
        return None
    return f"{host_features},-prefer-256-bit"


def prepare_numba() -> None:
    """Set numba's cache directory (``cache_directory``) and CPU features (``vector_features``) as it loads.

    A no-op once numba is imported: it reads its cache directory when it loads and fixes
    its compile target when the first function is decorated. The features go to numba's
    configuration, not to the environment, so child processes choose for themselves (the
    golden runs' children pin a generic CPU).
    """
    if "numba" in sys.modules:
        return
    directory = cache_directory(Path(__file__).resolve().parent.parent, dict(os.environ))
    if directory is not None:
        os.environ["NUMBA_CACHE_DIR"] = directory
    try:
        import llvmlite.binding as llvm

        features = vector_features(llvm.get_host_cpu_features().flatten(), dict(os.environ))
        from numba.core import config
    except Exception:  # noqa: BLE001 - no numba, or a CPU LLVM cannot describe: numba's own choice
        return
    if features is not None:
        config.CPU_FEATURES = features
