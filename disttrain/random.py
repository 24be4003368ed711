"""The process-wide default random generator (torch.default_generator's role), and its state.

Everything random in disttrain takes an explicit `generator=` (a numpy Generator); this module
only supplies the default when none is passed, so `dt.manual_seed` works as in torch.
"""

from __future__ import annotations

import numpy


class _Default:
    generator = numpy.random.default_rng()


def manual_seed(seed: int) -> numpy.random.Generator:
    """Re-seeds the default generator (as torch.manual_seed) and returns it."""
    if not isinstance(seed, (int, numpy.integer)) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative int, got {seed!r}")
    _Default.generator = numpy.random.default_rng(int(seed))
    return _Default.generator


def default_generator() -> numpy.random.Generator:
    return _Default.generator


def resolve(generator: numpy.random.Generator | None) -> numpy.random.Generator:
    if generator is None:
        return _Default.generator
    if not isinstance(generator, numpy.random.Generator):
        raise TypeError(f"generator: expected a numpy.random.Generator, got "
                        f"{type(generator).__name__}")
    return generator


def get_rng_state() -> dict:
    """The default generator's state as a JSON-serialisable dict (for checkpoints)."""
    return _Default.generator.bit_generator.state


def set_rng_state(state: dict) -> None:
    _Default.generator.bit_generator.state = state
