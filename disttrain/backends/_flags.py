"""A module class whose listed attributes are bool flags, checked on assignment as torch's
backend flags are (`dt.backends.cudnn.benchmark = "yes"` raises instead of being kept)."""

from __future__ import annotations

import contextlib
import sys
import types


def bool_flags(module_name: str, names: tuple[str, ...]) -> None:
    """Makes assigning a non-bool to module `module_name`'s attributes `names` a TypeError."""

    class FlagModule(types.ModuleType):
        def __setattr__(self, name: str, value) -> None:
            if name in names and not isinstance(value, bool):
                raise TypeError(f"{module_name}.{name} expects a bool, got "
                                f"{value.__class__.__name__} ({value!r})")
            super().__setattr__(name, value)

    sys.modules[module_name].__class__ = FlagModule


@contextlib.contextmanager
def set_flags(module, **values):
    """Sets the given flags of `module` for the duration of a with block (None: unchanged)."""
    values = {k: v for k, v in values.items() if v is not None}
    before = {k: getattr(module, k) for k in values}
    for k, v in values.items():
        setattr(module, k, v)
    try:
        yield
    finally:
        for k, v in before.items():
            setattr(module, k, v)
