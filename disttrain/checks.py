"""Validation of user arguments shared by every layer (stdlib only; imports nothing of disttrain,
so the core, distributed/ and launch-time pure modules can all use it)."""

from __future__ import annotations

import operator


def check_int(where: str, name: str, value, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """`value` as a Python int, after checking it is an integer in [minimum, maximum].

    Anything with `__index__` counts as an integer (numpy integers too); bool does not, since
    `True` standing for 1 is almost always a mistaken argument.

    Args:
        where: the function or class being called, the start of the message (e.g. "gpipe").
        name: the argument's name.
        value: the argument.
        minimum: the smallest allowed value (None: no lower bound).
        maximum: the largest allowed value (None: no upper bound).

    Raises:
        TypeError: `value` is a bool or not an integer (the message gives its type and value).
        ValueError: `value` is out of range (the message gives the range and the value).

    Example:
        >>> check_int("gpipe", "num_stages", 4, minimum=1)
        4
        >>> check_int("gpipe", "num_stages", 0, minimum=1)
        Traceback (most recent call last):
        ...
        ValueError: gpipe: num_stages must be >= 1, got 0
    """
    if isinstance(value, bool):
        raise TypeError(f"{where}: {name} must be an int, got bool {value}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{where}: {name} must be an int, got "
                        f"{type(value).__name__} {value!r}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{where}: {name} must be {_describe_range(minimum, maximum)}, "
                         f"got {value}")
    return value


def _describe_range(minimum: int | None, maximum: int | None) -> str:
    if maximum is None:
        return f">= {minimum}"
    if minimum is None:
        return f"<= {maximum}"
    return f"in [{minimum}, {maximum}]"
