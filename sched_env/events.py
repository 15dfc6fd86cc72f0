"""Dynamic-shop scenarios: seeded event streams stored as plain arrays, savable as JSON.

A :class:`Scenario` holds everything that will happen, so one seed replays one factory day:

* ``jobs``: every job that will ever exist, as a :class:`JobShopInstance` whose release dates
  are the arrival times (0 for the jobs already there), with due dates and weights;
* ``realized_durations``: how long each operation will really take (planned x noise);
* ``downtimes``: rows ``(machine, start, end, kind)``: the machine is unavailable during
  ``[start, end)``; ``kind`` is :data:`BREAKDOWN` (unforeseen: revealed when it starts) or
  :data:`MAINTENANCE` (planned: known from the start);
* ``interruption``: what happens to an operation a downtime interrupts: ``"resume"`` (it
  continues after the repair, the work done is kept) or ``"restart"`` (its work is lost; it
  must start again from scratch once the machine is back).

:func:`generate_scenario` draws one from a ``numpy.random.Generator``: exponential
inter-arrival times set from a target utilisation, exponential times between failures and to
repair per machine, bounded uniform duration noise, due dates from a tightness factor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from instances import InvalidInstanceError, InvalidScenarioError, JobShopInstance, RandomInstanceGenerator
from instances.jsonfile import JsonFile
from sched_env.schedule import INTERRUPTIONS

BREAKDOWN = 0
MAINTENANCE = 1
#: Seed families of generated streams: a stream is drawn from SeedSequence((tag, ..., seed)); the
#: three never share a stream, for any seeds (benchmarks use ``test``; training and selection never do).
PURPOSES = {"train": 0, "validation": 1, "test": 2}
DOWNTIME_KINDS = {"breakdown": BREAKDOWN, "maintenance": MAINTENANCE}


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.array(array, dtype=np.int64, copy=True)
    array.setflags(write=False)
    return array


class RecordedStream:
    """Run lengths of a stream setting (a dataclass with ``warmup`` and ``recorded`` fields): the
    warm-up jobs, the recorded ones, then a tail that keeps the shop loaded while those finish."""

    warmup: int
    recorded: int

    @property
    def tail(self) -> int:
        """Jobs generated after the recorded ones."""
        return max(200, self.recorded // 5)

    @property
    def n_jobs(self) -> int:
        return self.warmup + self.recorded + self.tail

    @property
    def recorded_jobs(self) -> slice:
        return slice(self.warmup, self.warmup + self.recorded)

    def scaled(self, warmup: int, recorded: int):
        """The same shop with other run lengths (shorter streams for training)."""
        return dataclasses.replace(self, warmup=warmup, recorded=recorded)


def stream_rng(purpose: str, seed: int, *salt: int) -> np.random.Generator:
    """The generator of stream ``seed`` of a purpose family (train / validation / test)."""
    if purpose not in PURPOSES:
        raise InvalidScenarioError(f"purpose must be one of {', '.join(PURPOSES)}, got {purpose!r}")
    return np.random.default_rng(np.random.SeedSequence((PURPOSES[purpose], *salt, int(seed))))


#: A scenario whose metadata holds ``OPEN_STREAM: True`` is the known part of a longer stream (a
#: plan of a running shop's known work): more jobs may come after its last, so it never reads as
#: draining (``shop_draining`` stays 0).
OPEN_STREAM = "open_stream"


@dataclass(frozen=True, init=False, eq=False, repr=False)
class Scenario(JsonFile):
    """One dynamic shop's future: jobs with arrival and due dates, real durations, downtimes.

    ``realized_durations``: how long each operation really takes, ``(jobs, operations)``; for
    flexible jobs ``(jobs, operations, machines)``, on each machine that can run it (-1 elsewhere)."""

    json_error = InvalidScenarioError
    json_what = "scenario"

    jobs: JobShopInstance
    realized_durations: np.ndarray
    downtimes: np.ndarray
    interruption: str
    name: str
    metadata: Mapping[str, Any]

    def __init__(
        self,
        jobs: JobShopInstance,
        *,
        realized_durations: Any | None = None,
        downtimes: Any | None = None,
        interruption: str = "resume",
        name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(jobs, JobShopInstance):
            raise InvalidScenarioError(f"jobs must be a JobShopInstance, got {type(jobs).__name__}")
        n = jobs.n_jobs
        release = jobs.release_dates if jobs.release_dates is not None else np.zeros(n, dtype=np.int64)
        jobs = jobs.replace(
            release_dates=release,
            due_dates=jobs.due_dates if jobs.due_dates is not None else release + jobs.job_work(),
            weights=jobs.weights if jobs.weights is not None else np.ones(n, dtype=np.int64),
        )
        planned = jobs.processing_table() if jobs.is_flexible else jobs.durations
        realized = planned if realized_durations is None else np.asarray(realized_durations)
        if realized.shape != planned.shape or (realized.size and not np.issubdtype(realized.dtype, np.integer)):
            what = "jobs x operations x machines" if jobs.is_flexible else "jobs x operations"
            raise InvalidScenarioError(
                f"realized_durations must be an integer array of shape {planned.shape} ({what}),"
                f" got {realized.shape} {realized.dtype}"
            )
        real = planned >= 0 if jobs.is_flexible else jobs.machines >= 0
        if (realized[real] < 0).any():
            where = tuple(map(int, np.argwhere(real & (realized < 0))[0]))
            on = f" on machine {where[2]}" if len(where) == 3 else ""
            raise InvalidScenarioError(
                f"job {where[0]} operation {where[1]}{on}: realized duration {realized[where]} is negative"
            )
        downtimes = _check_downtimes(downtimes, jobs.n_machines)
        if interruption not in INTERRUPTIONS:
            raise InvalidScenarioError(f"interruption must be one of {INTERRUPTIONS}, got {interruption!r}")
        set_ = object.__setattr__
        set_(self, "jobs", jobs)
        set_(self, "realized_durations", _frozen(np.where(real, realized, -1 if jobs.is_flexible else 0)))
        set_(self, "downtimes", downtimes)
        set_(self, "interruption", interruption)
        set_(self, "name", name or jobs.name)
        set_(self, "metadata", MappingProxyType(dict(metadata or {})))

    # ----------------------------------------------------------------- facts
    @property
    def n_machines(self) -> int:
        return self.jobs.n_machines

    @property
    def is_flexible(self) -> bool:
        """Have its jobs operations with alternative machines?"""
        return self.jobs.is_flexible

    @property
    def arrivals(self) -> np.ndarray:
        """Arrival (release) time of every job."""
        return self.jobs.release_dates

    def realized_for(self, schedule) -> np.ndarray:
        """``(jobs, operations)`` real durations of the operations as ``schedule`` runs them (a
        flexible job's on the machine it used): the validator's ``durations``."""
        if not self.jobs.is_flexible:
            return self.realized_durations
        realized = np.zeros(self.jobs.durations.shape, dtype=np.int64)
        inside = (schedule.machine >= 0) & (schedule.machine < self.n_machines)
        j, k, m = schedule.job[inside], schedule.op[inside], schedule.machine[inside]
        realized[j, k] = self.realized_durations[j, k, m]
        return realized

    def downtimes_of(self, kind: int | None = None) -> np.ndarray:
        """Downtime rows, optionally only breakdowns or only maintenance windows."""
        return self.downtimes if kind is None else self.downtimes[self.downtimes[:, 3] == kind]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Scenario):
            return NotImplemented
        return (
            self.jobs == other.jobs
            and np.array_equal(self.realized_durations, other.realized_durations)
            and np.array_equal(self.downtimes, other.downtimes)
            and self.interruption == other.interruption
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        arriving = int((self.arrivals > 0).sum())
        breakdowns = len(self.downtimes_of(BREAKDOWN))
        return (
            f"Scenario({self.name!r}, {self.jobs.n_jobs} jobs ({arriving} arriving) on {self.n_machines} machines,"
            f" {breakdowns} breakdowns, {len(self.downtimes) - breakdowns} maintenance windows,"
            f" interruption={self.interruption!r})"
        )

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        jobs = self.jobs
        return {
            "name": self.name,
            "interruption": self.interruption,
            "jobs": jobs.to_dict(),
            "realized_durations": [self._realized_row(j) for j in range(jobs.n_jobs)],
            "downtimes": [
                {"machine": m, "start": s, "end": e, "kind": "breakdown" if k == BREAKDOWN else "maintenance"}
                for m, s, e, k in self.downtimes.tolist()
            ],
            "metadata": dict(self.metadata),
        }

    def _realized_row(self, j: int) -> list:
        """One job's real durations in JSON: a number per operation; flexible, [machine, real] pairs."""
        ops = range(int(self.jobs.n_ops[j]))
        if not self.jobs.is_flexible:
            return self.realized_durations[j, : len(ops)].tolist()
        return [[[m, int(self.realized_durations[j, k, m])] for m, _ in self.jobs.alternatives(j, k)] for k in ops]

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "scenario") -> Scenario:
        if not isinstance(data, Mapping) or "jobs" not in data:
            raise InvalidScenarioError(f"{source}: expected an object with 'jobs', 'realized_durations', 'downtimes'")
        try:
            jobs = JobShopInstance.from_dict(data["jobs"])
        except InvalidInstanceError as error:
            raise InvalidScenarioError(f"{source}: jobs: {error}") from None
        realized = None
        if data.get("realized_durations") is not None:
            rows = data["realized_durations"]
            if not isinstance(rows, list) or len(rows) != jobs.n_jobs:
                raise InvalidScenarioError(f"{source}: realized_durations needs one list per job ({jobs.n_jobs})")
            realized = _realized_from_rows(rows, jobs, source)
        downtimes = []
        for i, row in enumerate(data.get("downtimes") or []):
            if not isinstance(row, Mapping) or any(k not in row for k in ("machine", "start", "end")):
                raise InvalidScenarioError(f"{source}: downtime {i} needs machine, start, end (and kind); got {row!r}")
            kind = row.get("kind", "breakdown")
            if kind not in DOWNTIME_KINDS:
                raise InvalidScenarioError(
                    f"{source}: downtime {i}: kind must be 'breakdown' or 'maintenance', got {kind!r}"
                )
            values = [row["machine"], row["start"], row["end"]]
            if not all(type(v) is int for v in values):
                raise InvalidScenarioError(
                    f"{source}: downtime {i}: machine, start and end must be integers, got {row!r}"
                )
            downtimes.append([*values, DOWNTIME_KINDS[kind]])
        try:
            return cls(
                jobs,
                realized_durations=realized,
                downtimes=np.array(downtimes, dtype=np.int64).reshape(-1, 4),
                interruption=data.get("interruption", "resume"),
                name=data.get("name"),
                metadata=data.get("metadata"),
            )
        except InvalidScenarioError as error:
            raise InvalidScenarioError(f"{source}: {error}") from None


def _realized_from_rows(rows: list, jobs: JobShopInstance, source: str) -> np.ndarray:
    """The JSON rows of real durations as an array (see :meth:`Scenario._realized_row`)."""
    if not jobs.is_flexible:
        realized = np.zeros_like(jobs.durations)
        for j, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != jobs.n_ops[j] or not all(type(v) is int for v in row):
                raise InvalidScenarioError(
                    f"{source}: realized_durations[{j}] must be {jobs.n_ops[j]} integers, got {row!r}"
                )
            realized[j, : len(row)] = row
        return realized
    realized = np.full(jobs.processing.shape, -1, dtype=np.int64)
    for j, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != jobs.n_ops[j]:
            raise InvalidScenarioError(
                f"{source}: realized_durations[{j}] needs one entry per operation ({jobs.n_ops[j]})"
            )
        for k, pairs in enumerate(row):
            eligible = {m for m, _ in jobs.alternatives(j, k)}
            good = isinstance(pairs, list) and all(
                isinstance(p, list) and len(p) == 2 and all(type(v) is int for v in p) for p in pairs
            )
            if not good or {p[0] for p in pairs} != eligible:
                raise InvalidScenarioError(
                    f"{source}: realized_durations[{j}][{k}] must be [machine, duration] pairs for machines"
                    f" {sorted(eligible)}, got {pairs!r}"
                )
            for machine, duration in pairs:
                realized[j, k, machine] = duration
    return realized


def _check_downtimes(downtimes: Any, n_machines: int) -> np.ndarray:
    """Rows (machine, start, end, kind), sorted by machine then start; windows of one machine
    must not overlap; every fault is named with its row."""
    if downtimes is None:
        return _frozen(np.zeros((0, 4), dtype=np.int64))
    array = np.asarray(downtimes)
    if array.size == 0:
        return _frozen(np.zeros((0, 4), dtype=np.int64))
    if array.ndim != 2 or array.shape[1] not in (3, 4) or not np.issubdtype(array.dtype, np.integer):
        raise InvalidScenarioError(
            f"downtimes must be integer rows (machine, start, end[, kind]), got shape {array.shape}"
        )
    if array.shape[1] == 3:
        array = np.column_stack([array, np.full(len(array), BREAKDOWN)])
    for i, (machine, start, end, kind) in enumerate(array.tolist()):
        if not 0 <= machine < n_machines:
            raise InvalidScenarioError(f"downtime {i}: unknown machine {machine}; machines are 0..{n_machines - 1}")
        if start < 0:
            raise InvalidScenarioError(f"downtime {i}: start {start} is negative")
        if end <= start:
            raise InvalidScenarioError(
                f"downtime {i} on machine {machine}: repair at {end} is not after the failure at {start}"
            )
        if kind not in (BREAKDOWN, MAINTENANCE):
            raise InvalidScenarioError(f"downtime {i}: kind must be 0 (breakdown) or 1 (maintenance), got {kind}")
    array = array[np.lexsort((array[:, 1], array[:, 0]))]
    same = array[1:, 0] == array[:-1, 0]
    clash = same & (array[1:, 1] < array[:-1, 2])
    if clash.any():
        i = int(np.argmax(clash))
        raise InvalidScenarioError(
            f"machine {array[i, 0]}: downtimes [{array[i, 1]}, {array[i, 2]}) and [{array[i + 1, 1]}, {array[i + 1, 2]})"
            " overlap; merge them into one window"
        )
    return _frozen(array)


def alternating_windows(rng: np.random.Generator, mtbf: float, mttr: float, horizon: int) -> list[tuple[int, int]]:
    """Up-times ~ Exp(mtbf) and repairs ~ Exp(mttr) (at least 1) until ``horizon``."""
    windows, t = [], 0.0
    while True:
        t += rng.exponential(mtbf)
        start = int(round(t))
        if start >= horizon:
            return windows
        end = start + max(1, int(round(rng.exponential(mttr))))
        if windows and start < windows[-1][1]:
            start = windows[-1][1]
            end = max(end, start + 1)
        windows.append((start, end))
        t = float(end)


def generate_scenario(
    n_machines: int = 10,
    *,
    initial_jobs: int = 10,
    arriving_jobs: int = 40,
    utilisation: float = 0.85,
    low: int = 1,
    high: int = 99,
    pool: JobShopInstance | None = None,
    mtbf: float | None = None,
    mttr: float | None = None,
    maintenance: Sequence[tuple[int, int, int]] = (),
    noise: float = 0.0,
    tightness: float = 1.5,
    weights: Sequence[int] = (1, 2, 4),
    weight_probabilities: Sequence[float] = (0.5, 0.3, 0.2),
    interruption: str = "resume",
    seed: int | np.random.Generator | None = None,
    name: str | None = None,
    alternatives: tuple[int, int] | None = None,
    speed_spread: float = 0.0,
) -> Scenario:
    """Draw a scenario. Jobs come from ``pool`` (rows drawn with replacement) or are random
    routes over ``n_machines`` with durations uniform in [low, high]. Inter-arrival times are
    exponential with mean ``mean job work / (utilisation * n_machines)``, so arriving work
    keeps the machines busy ``utilisation`` of the time on average. With ``mtbf`` and ``mttr``
    each machine alternates Exp(mtbf) up-times and Exp(mttr) repairs. ``maintenance`` lists
    planned ``(machine, start, end)`` windows. Real durations are ``round(planned * f)`` with
    f uniform in [1 - noise, 1 + noise] (at least 1 for a positive plan). Due date =
    arrival + tightness x job work; weights drawn from ``weights``.

    Flexible shop (``alternatives=(low, high)``): each operation may also run on other machines,
    low..high of them in all (its routed machine among them); machine m works at a speed drawn
    once in [1 - speed_spread, 1 + speed_spread], so an alternative takes round(planned / speed)
    (the routed machine keeps the planned time), and noise applies to each alternative."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if not 0 < utilisation <= 1.5:
        raise InvalidScenarioError(f"utilisation must be in (0, 1.5], got {utilisation}")
    if not 0 <= noise < 1:
        raise InvalidScenarioError(f"noise must be in [0, 1), got {noise}")
    if (mtbf is None) != (mttr is None) or (mtbf is not None and (mtbf <= 0 or mttr <= 0)):
        raise InvalidScenarioError("give both mtbf and mttr (positive), or neither for a shop without breakdowns")
    if initial_jobs < 0 or arriving_jobs < 0 or initial_jobs + arriving_jobs == 0:
        raise InvalidScenarioError("a scenario needs at least one job (initial_jobs + arriving_jobs >= 1)")
    if tightness <= 0:
        raise InvalidScenarioError(f"tightness must be > 0, got {tightness}")
    n_jobs = initial_jobs + arriving_jobs
    if pool is not None:
        rows = rng.integers(0, pool.n_jobs, size=n_jobs)
        machines, durations, n_ops = pool.machines[rows], pool.durations[rows], pool.n_ops[rows]
        n_machines = pool.n_machines
    else:
        drawn = RandomInstanceGenerator(n_jobs, n_machines, low, high)(rng)
        machines, durations, n_ops = drawn.machines, drawn.durations, drawn.n_ops
    work = durations.sum(axis=1)
    mean_gap = float(work.mean()) / (utilisation * n_machines)
    arrivals = np.zeros(n_jobs, dtype=np.int64)
    arrivals[initial_jobs:] = np.round(np.cumsum(rng.exponential(mean_gap, size=arriving_jobs))).astype(np.int64)
    due = arrivals + np.ceil(tightness * work).astype(np.int64)
    job_weights = rng.choice(np.asarray(weights, dtype=np.int64), size=n_jobs, p=weight_probabilities)
    factors = rng.uniform(1 - noise, 1 + noise, size=durations.shape)
    realized = np.where(durations > 0, np.maximum(1, np.round(durations * factors)), 0).astype(np.int64)
    jobs = JobShopInstance(
        machines, durations, n_machines=n_machines, n_ops=n_ops, release_dates=arrivals, due_dates=due,
        weights=job_weights, name=name or f"scenario_{n_jobs}x{n_machines}",
    )  # fmt: skip
    windows = [(m, s, e, MAINTENANCE) for m, s, e in maintenance]
    if mtbf is not None:
        horizon = int(arrivals.max() + 3 * work.sum() / n_machines)
        for machine in range(n_machines):
            for start, end in alternating_windows(rng, mtbf, mttr, horizon):
                if not any(m == machine and s < end and start < e for m, s, e, _ in windows):
                    windows.append((machine, start, end, BREAKDOWN))
    if alternatives is not None:  # drawn last: a classic scenario's draws stay as they were
        jobs, realized = _with_alternatives(jobs, rng, alternatives, speed_spread, noise)
    return Scenario(
        jobs,
        realized_durations=realized,
        downtimes=np.array(windows, dtype=np.int64).reshape(-1, 4),
        interruption=interruption,
        name=name,
        metadata={
            "utilisation": utilisation, "mtbf": mtbf, "mttr": mttr, "noise": noise, "tightness": tightness,
            "initial_jobs": initial_jobs, "arriving_jobs": arriving_jobs,
        },
    )  # fmt: skip


def _with_alternatives(jobs: JobShopInstance, rng: np.random.Generator, alternatives: tuple[int, int],
                       speed_spread: float, noise: float) -> tuple[JobShopInstance, np.ndarray]:  # fmt: skip
    """The jobs with alternative machines (see :func:`generate_scenario`) and their real durations."""
    low, high = alternatives
    if not 1 <= low <= high <= jobs.n_machines:
        raise InvalidScenarioError(
            f"alternatives must be (low, high) with 1 <= low <= high <= {jobs.n_machines}, got {alternatives}"
        )
    if not 0 <= speed_spread < 1:
        raise InvalidScenarioError(f"speed_spread must be in [0, 1), got {speed_spread}")
    speeds = rng.uniform(1 - speed_spread, 1 + speed_spread, size=jobs.n_machines)
    table = np.full((jobs.n_jobs, jobs.max_ops, jobs.n_machines), -1, dtype=np.int64)
    for j in range(jobs.n_jobs):
        for k in range(int(jobs.n_ops[j])):
            own, planned = int(jobs.machines[j, k]), int(jobs.durations[j, k])
            others = rng.permutation([m for m in range(jobs.n_machines) if m != own])
            chosen = [own, *others[: int(rng.integers(low, high, endpoint=True)) - 1].tolist()]
            for m in chosen:
                table[j, k, m] = planned if m == own else max(1 if planned else 0, int(round(planned / speeds[m])))
    factors = rng.uniform(1 - noise, 1 + noise, size=table.shape)
    realized = np.where(table > 0, np.maximum(1, np.round(table * factors)), table).astype(np.int64)
    flexible = JobShopInstance.from_processing(
        table, n_ops=jobs.n_ops, release_dates=jobs.release_dates, due_dates=jobs.due_dates, weights=jobs.weights,
        name=jobs.name, metadata={"alternatives": list(alternatives), "speed_spread": speed_spread},
    )  # fmt: skip
    if not flexible.is_flexible:  # one machine each after all: the classic form
        realized = np.take_along_axis(realized, np.maximum(flexible.machines, 0)[:, :, None], axis=2)[:, :, 0]
    return flexible, realized


@dataclass(frozen=True)
class ScenarioGenerator:
    """A callable ``gen(rng) -> Scenario`` with fixed options (see :func:`generate_scenario`);
    it also says the largest sizes it produces, so an env can size its padded window."""

    n_machines: int = 5
    initial_jobs: int = 5
    arriving_jobs: int = 15
    utilisation: float = 0.85
    low: int = 1
    high: int = 99
    mtbf: float | None = None
    mttr: float | None = None
    noise: float = 0.0
    tightness: float = 1.5
    interruption: str = "resume"
    alternatives: tuple[int, int] | None = None  # a flexible shop: machines per operation (low, high)
    speed_spread: float = 0.0

    @property
    def flexible(self) -> bool:
        return self.alternatives is not None and self.alternatives[1] > 1

    @property
    def max_jobs(self) -> int:
        return self.initial_jobs + self.arriving_jobs

    @property
    def max_machines(self) -> int:
        return self.n_machines

    @property
    def max_ops(self) -> int:
        return self.n_machines

    def __call__(self, rng: np.random.Generator | int | None = None) -> Scenario:
        return generate_scenario(
            self.n_machines, initial_jobs=self.initial_jobs, arriving_jobs=self.arriving_jobs,
            utilisation=self.utilisation, low=self.low, high=self.high, mtbf=self.mtbf, mttr=self.mttr,
            noise=self.noise, tightness=self.tightness, interruption=self.interruption, seed=rng,
            alternatives=self.alternatives, speed_spread=self.speed_spread,
        )  # fmt: skip


@dataclass(frozen=True)
class ScenarioMixture:
    """A callable ``gen(rng) -> Scenario`` drawing, per scenario, the machine count, the target
    utilisation and whether machines break down, around a ``base`` :class:`ScenarioGenerator`
    (training on a spread of shops rather than one). ``base.mtbf``/``mttr`` are used by the
    share ``breakdown_probability`` of scenarios; the others run without breakdowns."""

    base: ScenarioGenerator
    machines: tuple[int, ...] = (10,)
    utilisation: tuple[float, float] = (0.85, 0.85)
    breakdown_probability: float = 0.0

    def __post_init__(self) -> None:
        if not self.machines or min(self.machines) < 1:
            raise InvalidScenarioError(f"machines must be positive counts, got {self.machines}")
        low, high = self.utilisation
        if not 0 < low <= high:
            raise InvalidScenarioError(f"utilisation must be [low, high] with 0 < low <= high, got {self.utilisation}")
        if not 0 <= self.breakdown_probability <= 1:
            raise InvalidScenarioError(f"breakdown_probability must be in [0, 1], got {self.breakdown_probability}")

    @property
    def flexible(self) -> bool:
        return self.base.flexible

    @property
    def max_jobs(self) -> int:
        return self.base.max_jobs

    @property
    def max_machines(self) -> int:
        return max(self.machines)

    @property
    def max_ops(self) -> int:
        return max(self.machines)

    def __call__(self, rng: np.random.Generator | int | None = None) -> Scenario:
        rng = np.random.default_rng(rng)
        machines = int(rng.choice(self.machines))
        utilisation = float(rng.uniform(*self.utilisation))
        broken = bool(rng.random() < self.breakdown_probability)
        options = {"n_machines": machines, "utilisation": utilisation}
        if not broken:
            options |= {"mtbf": None, "mttr": None}
        return dataclasses.replace(self.base, **options)(rng)
