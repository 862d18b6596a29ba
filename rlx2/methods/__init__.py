"""Training methods: base classes, the registry, and RLx2 itself (baselines live in ``baselines/``).

The base classes are imported on first use (``from rlx2.methods import Method`` works as ever):
they import torch, which listing methods or reading a suite file does not need.
"""

from rlx2.methods.registry import (available_methods, get_method, load_module, method_descriptions, register,
                                   resolve)

__all__ = ["DynamicSparseMethod", "Method", "RunContext", "SparseMethod", "available_methods", "get_method", "load_module",
           "method_descriptions", "register", "resolve"]
_BASE_CLASSES = ("DynamicSparseMethod", "Method", "RunContext", "SparseMethod")


def __getattr__(name: str):
    if name in _BASE_CLASSES:
        from rlx2.methods import base

        return getattr(base, name)
    raise AttributeError(f"module 'rlx2.methods' has no attribute {name!r}")
