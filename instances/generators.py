"""Seeded random instance generators for training distributions.

A generator is a callable ``generator(rng) -> JobShopInstance`` over a ``numpy.random.Generator``:
the environment passes its own seeded ``np_random``, so the same seed gives the same stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from instances.errors import InvalidInstanceError
from instances.instance import JobShopInstance

SeedLike = int | np.random.Generator | None


def _rng(seed: SeedLike) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


@dataclass(frozen=True)
class RandomInstanceGenerator:
    """``n_jobs x n_machines`` instances: each job visits every machine once in a random order,
    durations uniform in ``[low, high]`` (Taillard's distribution with the defaults)."""

    n_jobs: int
    n_machines: int
    low: int = 1
    high: int = 99

    def __post_init__(self) -> None:
        if self.n_jobs < 1 or self.n_machines < 1:
            raise InvalidInstanceError(f"n_jobs and n_machines must be >= 1, got {self.n_jobs} and {self.n_machines}")
        if not 0 <= self.low <= self.high:
            raise InvalidInstanceError(f"need 0 <= low <= high for durations, got low={self.low}, high={self.high}")

    @property
    def max_jobs(self) -> int:
        return self.n_jobs

    @property
    def max_machines(self) -> int:
        return self.n_machines

    def __call__(self, rng: SeedLike = None, name: str | None = None) -> JobShopInstance:
        rng = _rng(rng)
        durations = rng.integers(self.low, self.high, size=(self.n_jobs, self.n_machines), endpoint=True)
        machines = rng.permuted(np.tile(np.arange(self.n_machines), (self.n_jobs, 1)), axis=1)
        return JobShopInstance(
            machines,
            durations,
            n_machines=self.n_machines,
            name=name or f"random_{self.n_jobs}x{self.n_machines}",
            metadata={"generator": "uniform", "low": self.low, "high": self.high},
        )


@dataclass(frozen=True)
class MixedSizeGenerator:
    """Draws a size from ``sizes`` (optionally weighted), then an instance of that size."""

    sizes: Sequence[tuple[int, int]]
    low: int = 1
    high: int = 99
    probabilities: Sequence[float] | None = None

    def __post_init__(self) -> None:
        if not self.sizes:
            raise InvalidInstanceError("MixedSizeGenerator needs at least one (n_jobs, n_machines) size")
        object.__setattr__(
            self, "_generators", [RandomInstanceGenerator(n, m, self.low, self.high) for n, m in self.sizes]
        )
        if self.probabilities is not None:
            p = np.asarray(self.probabilities, dtype=float)
            if p.shape != (len(self.sizes),) or (p < 0).any() or not np.isclose(p.sum(), 1.0):
                raise InvalidInstanceError("probabilities must be one non-negative weight per size, summing to 1")

    @property
    def max_jobs(self) -> int:
        return max(n for n, _ in self.sizes)

    @property
    def max_machines(self) -> int:
        return max(m for _, m in self.sizes)

    def __call__(self, rng: SeedLike = None, name: str | None = None) -> JobShopInstance:
        rng = _rng(rng)
        index = int(rng.choice(len(self.sizes), p=self.probabilities))
        return self._generators[index](rng, name=name)


def random_instance(
    n_jobs: int, n_machines: int, *, low: int = 1, high: int = 99, seed: SeedLike = None, name: str | None = None
) -> JobShopInstance:
    """One random instance; the same ``seed`` always gives the same instance."""
    return RandomInstanceGenerator(n_jobs, n_machines, low, high)(_rng(seed), name=name)
