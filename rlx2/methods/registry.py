"""Name -> method class. Methods register themselves with ``@register``.

The built-in methods are found, not listed: ``load_builtin_methods`` imports every module
of ``rlx2.methods`` and of ``rlx2.baselines`` (the top-level ``baselines/`` folder). A user's own module
(importable name or path to a ``.py`` file) is loaded with ``load_module``.

Importing a method module imports torch (seconds), which naming and describing methods does
not need: ``builtin_index`` reads the ``name`` and ``description`` of every ``@register`` class
of the built-in modules from their source (``ast``), so ``rlx2 methods`` and checking a suite's
method names import nothing heavy, and ``get_method`` imports only the module defining the
method asked for. ``tests/test_methods.py`` checks the index against the imported registry.
"""

from __future__ import annotations

import ast
import functools
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
    owner = (existing.__module__, existing.__qualname__) if existing is not None else builtin_index().get(cls.name)
    if owner is not None and owner[:2] != (cls.__module__, cls.__qualname__):
        raise ValueError(f"method name {cls.name!r} is already registered by {owner[0]}.{owner[1]}")
    _REGISTRY[cls.name] = cls
    return cls


@functools.cache
def builtin_index() -> dict[str, tuple[str, str, str]]:
    """``{name: (module, class, description)}`` of the built-in methods, read from their source without importing
    them: every class decorated with ``register`` whose ``name`` and ``description`` are string literals."""
    index = {}
    for package_name in _BUILTIN_PACKAGES:
        package = importlib.util.find_spec(package_name)
        for info in pkgutil.iter_modules(package.submodule_search_locations):
            path = Path(info.module_finder.path) / f"{info.name}.py"
            if info.ispkg or not path.is_file():
                continue
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.ClassDef) and any(_is_register(d) for d in node.decorator_list):
                    attributes = {target.id: value.value for item in node.body if isinstance(item, ast.Assign)
                                  for target in item.targets if isinstance(target, ast.Name)
                                  for value in [item.value] if isinstance(value, ast.Constant)}
                    if isinstance(attributes.get("name"), str) and isinstance(attributes.get("description"), str):
                        index[attributes["name"]] = (f"{package_name}.{info.name}", node.name, attributes["description"])
    return index


def _is_register(decorator: ast.expr) -> bool:
    return (isinstance(decorator, ast.Name) and decorator.id == "register") or (
        isinstance(decorator, ast.Attribute) and decorator.attr == "register")


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
    """Every registered method by name, sorted (imports every built-in method module)."""
    load_builtin_methods()
    return dict(sorted(_REGISTRY.items()))


def method_descriptions() -> dict[str, str]:
    """Every method's name and description, sorted, without importing the built-in method modules."""
    described = {name: description for name, (_, _, description) in builtin_index().items()}
    described.update({name: cls.description for name, cls in _REGISTRY.items()})
    return dict(sorted(described.items()))


def resolve(cfg: RunConfig) -> tuple[RunConfig, Method]:
    """The run's resolved config (budget, method and algorithm defaults filled in) and its method object."""
    method = get_method(cfg.method)()
    return method.resolve(cfg), method


def get_method(name: str) -> type[Method]:
    """The class registered as ``name``; a built-in one is imported on first use (only its own module)."""
    if name not in _REGISTRY and name in builtin_index():
        importlib.import_module(builtin_index()[name][0])
    if name not in _REGISTRY:
        load_builtin_methods()
    if name not in _REGISTRY:
        raise ConfigError("method", name, f"unknown method; available: {', '.join(method_descriptions())}")
    return _REGISTRY[name]
