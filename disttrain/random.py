"""`dt.Generator` (torch.Generator's API on a numpy Generator), the process-wide default
generator (torch.default_generator's role) and its state.

Everything random in disttrain takes an explicit `generator=` (a numpy Generator, which a
`dt.Generator` is); this module only supplies the default when none is passed, so
`dt.manual_seed` works as in torch. Imports numpy and disttrain.backend only.
"""

from __future__ import annotations

import json
import os

import numpy

from disttrain.backend import parse_device

# NOTE: torch.Generator().initial_seed(): a fresh generator is deterministic, as in torch.
DEFAULT_SEED = 67280421310721
_SEED_MIN, _SEED_END = -(2**63), 2**64


def _check_seed(owner: str, seed) -> int:
    """The seed as torch reads it: an int in [-2**63, 2**64), negatives wrapped mod 2**64."""
    if isinstance(seed, bool) or not isinstance(seed, (int, numpy.integer)):
        raise TypeError(f"{owner}: seed must be an int, got {type(seed).__name__} {seed!r}")
    if not _SEED_MIN <= int(seed) < _SEED_END:
        raise ValueError(f"{owner}: seed must be in [-2**63, 2**64), got {seed}")
    return int(seed) % _SEED_END


class Generator(numpy.random.Generator):
    """torch.Generator's API on a numpy Generator (PCG64), so one object serves both.

    It can be passed wherever disttrain takes `generator=` (`dt.randn`, `dt.randperm`,
    `random_split`, `RandomSampler`, `DataLoader`, `nn.init.*`, layers, dropout) and it keeps
    every numpy Generator method (`integers`, `permutation`, `normal`, ...). The streams are
    numpy's, so the numbers differ from torch's for the same seed.

    Args:
        device: "cpu" or "cuda[:N]". Draws happen on the host either way (samples are made
            with numpy and then moved to the tensor's device); "cuda" needs CuPy.

    Example:
        >>> g = Generator().manual_seed(42)
        >>> g.initial_seed(), g.permutation(4).shape
        (42, (4,))
    """

    def __init__(self, device: str = "cpu") -> None:
        super().__init__(numpy.random.PCG64(DEFAULT_SEED))
        self.device = parse_device(device)
        self._initial_seed = DEFAULT_SEED

    def manual_seed(self, seed: int) -> Generator:
        """Re-seeds in place and returns self (`Generator().manual_seed(0)`, as in torch).

        Args:
            seed: an int in [-2**63, 2**64); negative seeds wrap modulo 2**64, as in torch.
        """
        seed = _check_seed("Generator.manual_seed", seed)
        # NOTE: a numpy Generator's bit_generator cannot be replaced, but its state can:
        # the state of a fresh PCG64(seed) is exactly a re-seed.
        self.bit_generator.state = numpy.random.PCG64(seed).state
        self._initial_seed = seed
        return self

    def seed(self) -> int:
        """Re-seeds from OS entropy (non-deterministic) and returns the new seed."""
        seed = int.from_bytes(os.urandom(8), "little") >> 1
        self.manual_seed(seed)
        return seed

    def initial_seed(self) -> int:
        """The seed of the last `manual_seed`/`seed` (DEFAULT_SEED for a fresh Generator)."""
        return self._initial_seed

    def get_state(self):
        """The state as a uint8 Tensor (torch's ByteTensor role), for `set_state` or `dt.save`.

        The bytes are the JSON of numpy's PCG64 state plus the initial seed, not torch's
        Mersenne-Twister layout, so a state moves between disttrain generators only.
        """
        from disttrain.tensor import Tensor  # NOTE: lazy: tensor sits above random

        state = {"bit_generator": self.bit_generator.state, "initial_seed": self._initial_seed}
        return Tensor(numpy.frombuffer(json.dumps(state).encode(), numpy.uint8).copy())

    def set_state(self, new_state) -> Generator:
        """Restores a `get_state()` (a uint8 Tensor or numpy array) and returns self."""
        array = getattr(new_state, "array", new_state)
        if not isinstance(array, numpy.ndarray) or array.dtype != numpy.uint8 or array.ndim != 1:
            raise TypeError(f"Generator.set_state: expected the 1-d uint8 Tensor that "
                            f"get_state() returns, got {_describe(new_state)}")
        try:
            state = json.loads(array.tobytes())
            self.bit_generator.state = state["bit_generator"]
            self._initial_seed = int(state["initial_seed"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"Generator.set_state: not a disttrain Generator state "
                             f"({type(e).__name__}: {e}); pass what get_state() returned") from None
        return self

    def __reduce__(self):
        # NOTE: numpy's own __reduce__ would rebuild a plain numpy Generator (copy.deepcopy of
        # a module holding one would silently lose the torch methods).
        return _rebuild, (self.device, self._initial_seed, self.bit_generator.state)

    def __repr__(self) -> str:
        return f"Generator(device={self.device!r}, initial_seed={self._initial_seed})"


def _rebuild(device: str, initial_seed: int, state: dict) -> Generator:
    generator = Generator(device)
    generator.bit_generator.state = state
    generator._initial_seed = initial_seed
    return generator


def _describe(value) -> str:
    array = getattr(value, "array", value)
    if isinstance(array, numpy.ndarray):
        return f"{type(value).__name__} of dtype {array.dtype} and shape {array.shape}"
    return type(value).__name__


class _Default:
    # NOTE: DEFAULT_SEED, as torch's default generator: an unseeded script draws the same
    # numbers on every run and on every rank (DDP scripts build identical data that way)
    generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Re-seeds the default generator in place (as torch.manual_seed) and returns it.

    Args:
        seed: an int in [-2**63, 2**64); negative seeds wrap modulo 2**64, as in torch.

    Example:
        >>> manual_seed(0).initial_seed()
        0
    """
    return _Default.generator.manual_seed(_check_seed("manual_seed", seed))


def seed() -> int:
    """Re-seeds the default generator from OS entropy and returns the seed (torch.seed)."""
    return _Default.generator.seed()


def initial_seed() -> int:
    """The default generator's seed (torch.initial_seed)."""
    return _Default.generator.initial_seed()


def default_generator() -> Generator:
    return _Default.generator


def resolve(generator: numpy.random.Generator | None) -> numpy.random.Generator:
    if generator is None:
        return _Default.generator
    if not isinstance(generator, numpy.random.Generator):
        raise TypeError(f"generator: expected a dt.Generator or a numpy.random.Generator, got "
                        f"{type(generator).__name__}")
    return generator


def get_rng_state() -> dict:
    """The default generator's state as a JSON-serialisable dict (for checkpoints)."""
    return _Default.generator.bit_generator.state


def set_rng_state(state: dict) -> None:
    _Default.generator.bit_generator.state = state
