"""Name -> method class. Methods register themselves with ``@register``.

The built-in methods are found, not listed: ``load_builtin_methods`` imports every module
of ``rlx2.methods`` and of ``rlx2.baselines`` (the top-level ``baselines/`` folder). A user's own module
(importable name or path to a ``.py`` file) is loaded with ``load_module``.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
import traceback
from pathlib import Path

from rlx2.config import ConfigError
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rlx2.config import RunConfig
    from rlx2.methods.base import Method

_REGISTRY: dict[str, type[Method]] = {}
_BUILTIN_PACKAGES = ("rlx2.methods", "rlx2.baselines")
_loaded = False


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name or not cls.description:
        raise ValueError(f"method class {cls.__qualname__} needs a `name` and a one-line `description`")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and (existing.__module__, existing.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"method name {cls.name!r} is already registered by {existing.__module__}.{existing.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def load_builtin_methods() -> None:
    """Import every module of the built-in method packages (once)."""
    global _loaded
    if _loaded:
        return
    for package_name in _BUILTIN_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package_name}.{info.name}")
    _loaded = True


def load_module(spec: str) -> None:
    """Import a user's module of methods: a dotted module name or a path to a ``.py`` file.

    Any failure (missing, a syntax error, an exception while importing) is a ValueError
    naming the module and the error's last line, not a traceback.
    """
    path = Path(spec)
    try:
        if spec.endswith(".py"):
            if not path.is_file():
                raise ValueError(f"methods module {spec!r}: no such file")
            name = f"rlx2_user_methods_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            try:
                module_spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
        else:
            importlib.import_module(spec)
    except ValueError as exc:
        if str(exc).startswith("methods module"):
            raise
        raise ValueError(f"methods module {spec!r}: {_last_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - a user's module may raise anything on import
        raise ValueError(f"methods module {spec!r}: {_last_line(exc)}") from None


def _last_line(exc: BaseException) -> str:
    """The error as one line, with where in the user's module it happened (``... (my.py, line 3: ...)``)."""
    message = f"{type(exc).__name__}: {exc.msg if isinstance(exc, SyntaxError) else exc}"
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"{message} ({Path(exc.filename or '?').name}, line {exc.lineno})"
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "importlib" not in f.filename and Path(f.filename).resolve() != Path(__file__).resolve()]
    if frames:
        return f"{message} ({Path(frames[-1].filename).name}, line {frames[-1].lineno}: {frames[-1].line})"
    return message


def available_methods() -> dict[str, type[Method]]:
    """Every registered method by name, sorted."""
    load_builtin_methods()
    return dict(sorted(_REGISTRY.items()))


def resolve(cfg: RunConfig) -> tuple[RunConfig, Method]:
    """The run's resolved config (budget, method and algorithm defaults filled in) and its method object."""
    method = get_method(cfg.method)()
    return method.resolve(cfg), method


def get_method(name: str) -> type[Method]:
    methods = available_methods()
    if name not in methods:
        raise ConfigError("method", name, f"unknown method; available: {', '.join(methods)}")
    return methods[name]
