"""Lazy package namespaces (PEP 562): a package lists its public names and where they live, and
each is imported on first access, then cached in the package's globals so later accesses are
plain attribute lookups. Importing a package therefore imports nothing else: importing
disttrain.launch needs no numpy, and importing disttrain.distributed starts no MPI."""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Iterable, Mapping


def attach(package: str, submodules: Iterable[str] = (),
           attributes: Mapping[str, str] | None = None
           ) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """(__getattr__, __dir__, __all__) for the package named `package`.

    Args:
        package: the package's `__name__`.
        submodules: names of its submodules to import on access (`dt.nn`).
        attributes: public name -> "module" (the attribute of the same name in that module)
            or "module:attr" (another name there, e.g. `"bool": "disttrain.tensor:bool_"`).

    Example:
        >>> __getattr__, __dir__, __all__ = attach(  # in a package's __init__.py
        ...     "disttrain.launch", attributes={"detect_mpi": "disttrain.launch.commands"})
    """
    submodules = tuple(submodules)
    attributes = dict(attributes or {})
    public = sorted({*submodules, *attributes})
    sys.modules[package].__class__ = _keeping(attributes)

    def __getattr__(name: str):
        if name in attributes:
            module, _, attr = attributes[name].partition(":")
            value = getattr(importlib.import_module(module), attr or name)
        elif name in submodules:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)  # NOTE: cached: __getattr__ runs once
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *public})

    return __getattr__, __dir__, public


def _keeping(attributes: Mapping[str, str]) -> type:
    """A module class whose public attributes a submodule of the same name cannot replace.

    NOTE: importing disttrain.tensor (the module) makes the import system set
    `disttrain.tensor = <module>` on the package, which would hide `dt.tensor` (the function,
    torch.tensor's twin). An eager __init__ rebound the name after its imports; a lazy one
    refuses the rebinding instead, so dt.tensor stays the function whatever was imported first.
    """

    class LazyModule(types.ModuleType):
        def __setattr__(self, name: str, value) -> None:
            if (name in attributes and isinstance(value, types.ModuleType)
                    and value.__name__ == f"{self.__name__}.{name}"):
                return
            super().__setattr__(name, value)

    LazyModule.__qualname__ = "LazyModule"
    return LazyModule
