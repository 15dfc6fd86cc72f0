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


def _check_size(n_jobs: int, n_machines: int) -> None:
    if n_jobs < 1 or n_machines < 1:
        raise InvalidInstanceError(f"n_jobs and n_machines must be >= 1, got {n_jobs} and {n_machines}")


def _check_range(values: tuple[int, int], what: str, lowest: int, highest: int | None = None) -> None:
    low, high = values
    if not lowest <= low <= high or (highest is not None and high > highest):
        top = f" and high <= {highest}" if highest is not None else ""
        raise InvalidInstanceError(f"{what} must be (low, high) with {lowest} <= low <= high{top}, got {values}")


def _flexible_instance(ops: list[int], alternatives: list[list[tuple[int, int]]], n_machines: int, name: str,
                       metadata: dict) -> JobShopInstance:  # fmt: skip
    """Group the operations' alternatives into jobs of ``ops[j]`` operations."""
    jobs, position = [], 0
    for count in ops:
        jobs.append(alternatives[position : position + count])
        position += count
    return JobShopInstance.from_alternatives(jobs, n_machines=n_machines, name=name, metadata=metadata)


@dataclass(frozen=True)
class _ShopSizeGenerator:
    """What the flexible generators share: the shop size, checked, and the env's size limits."""

    flexible = True  # (not a field) envs size their rows for alternative machines
    n_jobs: int
    n_machines: int

    def __post_init__(self) -> None:
        _check_size(self.n_jobs, self.n_machines)

    @property
    def max_jobs(self) -> int:
        return self.n_jobs

    @property
    def max_machines(self) -> int:
        return self.n_machines


@dataclass(frozen=True)
class SD1Generator(_ShopSizeGenerator):
    """Song et al.'s SD1 flexible distribution (the learned-FJSP papers' training and test data):
    each job has 0.8-1.2 x ``n_machines`` operations, each operation runs on 1 to all machines
    (a uniform count, machines drawn without repetition), a mean time uniform in 1-20 and on each
    of its machines a time within +-20 % of that mean (clipped to 1-20)."""

    @property
    def ops_range(self) -> tuple[int, int]:
        return max(1, int(0.8 * self.n_machines)), max(1, int(1.2 * self.n_machines))

    @property
    def max_ops(self) -> int:
        return self.ops_range[1]

    def __call__(self, rng: SeedLike = None, name: str | None = None) -> JobShopInstance:
        rng = _rng(rng)
        low, high = self.ops_range
        ops = rng.integers(low, high, size=self.n_jobs, endpoint=True).tolist()
        alternatives = []
        for _ in range(sum(ops)):
            count = int(rng.integers(1, self.n_machines, endpoint=True))
            machines = np.sort(rng.choice(self.n_machines, size=count, replace=False))
            mean = int(rng.integers(1, 20, endpoint=True))
            lo, hi = max(1, round(mean * 0.8)), min(20, round(mean * 1.2))
            times = rng.integers(lo, hi, size=count, endpoint=True)
            alternatives.append(list(zip(machines.tolist(), times.tolist())))
        return _flexible_instance(ops, alternatives, self.n_machines, name or f"sd1_{self.n_jobs}x{self.n_machines}",
                                  {"generator": "sd1"})  # fmt: skip


@dataclass(frozen=True)
class BrandimarteGenerator(_ShopSizeGenerator):
    """Brandimarte-style flexible instances with a flexibility knob: ``ops_per_job`` and
    ``alternatives`` (machines per operation) uniform in their (low, high) ranges, a base time
    per operation uniform in ``durations``, and machine-dependent times: machine ``m`` runs work at
    a speed drawn once per instance in ``[1 - speed_spread, 1 + speed_spread]``, and each
    alternative's time is base / speed, rounded, at least 1."""

    ops_per_job: tuple[int, int] = (5, 10)
    alternatives: tuple[int, int] = (1, 3)
    durations: tuple[int, int] = (1, 20)
    speed_spread: float = 0.3
    #: ``"random"``: each operation's machines drawn from all; ``"flow"``: the machines form
    #: consecutive stages and a job's operations pass them in order (a flexible flow-like route).
    routing: str = "random"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.routing not in ("random", "flow"):
            raise InvalidInstanceError(f"routing must be 'random' or 'flow', got {self.routing!r}")
        _check_range(self.ops_per_job, "ops_per_job", 1)
        _check_range(self.alternatives, "alternatives", 1, self.n_machines)
        _check_range(self.durations, "durations", 1)
        if not 0 <= self.speed_spread < 1:
            raise InvalidInstanceError(f"speed_spread must be in [0, 1), got {self.speed_spread}")

    @property
    def max_ops(self) -> int:
        return self.ops_per_job[1]

    def __call__(self, rng: SeedLike = None, name: str | None = None) -> JobShopInstance:
        rng = _rng(rng)
        speeds = rng.uniform(1 - self.speed_spread, 1 + self.speed_spread, size=self.n_machines)
        ops = rng.integers(*self.ops_per_job, size=self.n_jobs, endpoint=True).tolist()
        alternatives = []
        stages = np.array_split(np.arange(self.n_machines), min(self.n_machines, self.ops_per_job[1]))
        for n_ops in ops:
            for k in range(n_ops):
                pool = stages[k * len(stages) // n_ops] if self.routing == "flow" else np.arange(self.n_machines)
                count = min(int(rng.integers(*self.alternatives, endpoint=True)), len(pool))
                machines = np.sort(rng.choice(pool, size=count, replace=False))
                base = int(rng.integers(*self.durations, endpoint=True))
                times = np.maximum(1, np.round(base / speeds[machines])).astype(np.int64)
                alternatives.append(list(zip(machines.tolist(), times.tolist())))
        metadata = {"generator": "brandimarte", "alternatives": list(self.alternatives)}
        if self.routing != "random":
            metadata["routing"] = self.routing
        return _flexible_instance(ops, alternatives, self.n_machines, name or f"fjsp_{self.n_jobs}x{self.n_machines}",
                                  metadata)  # fmt: skip


#: The kinds of :func:`shop_generator` specs and what each draws.
SHOP_KINDS = {
    "sd1": "Song et al.'s SD1 flexible shops",
    "brandimarte": "Brandimarte-style flexible shops (5-10 operations, 1-3 machines each, machine speeds)",
    "flow": "flexible flow-like routes (machines in stages passed in order, 1-3 machines a stage)",
    "few": "few operations per job (1-3), each on 1 to half of the machines",
    "reentrant": "re-entrant jobs (1-2x as many operations as machines, 1-2 machines each)",
    "classic": "classic job shops (every job visits every machine once, durations 1-99)",
}


def shop_generator(spec: str):
    """A generator from ``KIND:JOBSxMACHINES`` (kinds: :data:`SHOP_KINDS`), e.g. ``sd1:20x10``."""
    kind, _, size = str(spec).partition(":")
    if kind not in SHOP_KINDS:
        raise InvalidInstanceError(f"shop {spec!r}: the kind must be one of {', '.join(SHOP_KINDS)} (e.g. sd1:20x10)")
    try:
        n, m = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise InvalidInstanceError(f"shop {spec!r}: write KIND:JOBSxMACHINES, e.g. {kind}:20x10") from None
    if kind == "sd1":
        return SD1Generator(n, m)
    if kind == "classic":
        return RandomInstanceGenerator(n, m)
    options = {
        "brandimarte": {},
        "flow": {"routing": "flow", "ops_per_job": (max(1, m // 3), m)},
        "few": {"ops_per_job": (1, 3), "alternatives": (1, max(1, m // 2))},
        "reentrant": {"ops_per_job": (m, 2 * m), "alternatives": (1, min(2, m))},
    }[kind]
    return BrandimarteGenerator(n, m, **options)


@dataclass(frozen=True)
class ShopMixGenerator:
    """Draws one of ``specs`` (:func:`shop_generator` strings) uniformly, then a shop of it: the
    training mix of a policy meant for every shop."""

    specs: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.specs:
            raise InvalidInstanceError("ShopMixGenerator needs at least one KIND:JOBSxMACHINES spec")
        object.__setattr__(self, "_generators", [shop_generator(spec) for spec in self.specs])

    flexible = True

    @property
    def max_jobs(self) -> int:
        return max(g.max_jobs for g in self._generators)

    @property
    def max_machines(self) -> int:
        return max(g.max_machines for g in self._generators)

    @property
    def max_ops(self) -> int:
        return max(getattr(g, "max_ops", g.max_machines) for g in self._generators)

    def __call__(self, rng: SeedLike = None, name: str | None = None) -> JobShopInstance:
        rng = _rng(rng)
        return self._generators[int(rng.integers(len(self._generators)))](rng, name=name)
