"""Training methods: base classes, the registry, and RLx2 itself (baselines live in ``baselines/``)."""

from rlx2.methods.base import DynamicSparseMethod, Method, SparseMethod
from rlx2.methods.registry import available_methods, get_method, load_module, register, resolve

__all__ = ["DynamicSparseMethod", "Method", "SparseMethod", "available_methods", "get_method", "load_module",
           "register", "resolve"]
