"""The immutable job-shop instance that every layer of sched-env consumes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from instances.errors import InvalidInstanceError

#: Padding value of ``JobShopInstance.machines`` beyond a job's last operation.
NO_MACHINE = -1


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.array(array, dtype=np.int64, copy=True)
    array.setflags(write=False)
    return array


def _as_int_array(values: Any, what: str, ndim: int) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype == object or array.ndim != ndim:
        raise InvalidInstanceError(
            f"{what} must be a {ndim}-D array of integers, got shape {array.shape} ({array.dtype})"
        )
    if (
        array.size
        and not np.issubdtype(array.dtype, np.integer)
        and (
            np.issubdtype(array.dtype, np.bool_)
            or not np.all(np.isfinite(array))
            or not np.all(array == np.round(array))
        )
    ):
        raise InvalidInstanceError(f"{what} must hold whole numbers, got dtype {array.dtype}")
    return array.astype(np.int64)


@dataclass(frozen=True, init=False, eq=False, repr=False)
class JobShopInstance:
    """A job-shop problem: jobs made of ordered operations, each on one machine for a duration.

    Operation ``k`` of job ``j`` runs on machine ``machines[j, k]`` for ``durations[j, k]``
    time units, after operation ``k - 1`` of the same job has finished. Jobs may have different
    numbers of operations (``n_ops``; rows are padded with machine ``-1`` and duration ``0``)
    and may visit a machine more than once. Zero durations are legal. Optional per-job
    ``release_dates`` (earliest start), ``due_dates`` and ``weights`` serve the dynamic shop.
    All arrays are read-only int64; construction validates everything and raises
    :class:`InvalidInstanceError` naming the job and operation at fault.
    """

    machines: np.ndarray
    durations: np.ndarray
    n_machines: int
    n_ops: np.ndarray
    name: str = "instance"
    release_dates: np.ndarray | None = None
    due_dates: np.ndarray | None = None
    weights: np.ndarray | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __init__(
        self,
        machines: Any,
        durations: Any,
        *,
        n_machines: int | None = None,
        n_ops: Any | None = None,
        name: str = "instance",
        release_dates: Any | None = None,
        due_dates: Any | None = None,
        weights: Any | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        machines = _as_int_array(machines, "machines", 2)
        durations = _as_int_array(durations, "durations", 2)
        if machines.shape != durations.shape:
            raise InvalidInstanceError(
                f"machines has shape {machines.shape} but durations has shape {durations.shape};"
                " both must be (n_jobs, max_ops)"
            )
        n_jobs, width = machines.shape
        if n_jobs == 0:
            raise InvalidInstanceError("an instance needs at least one job")
        if n_ops is None:
            n_ops = np.full(n_jobs, width, dtype=np.int64)
        n_ops = _as_int_array(n_ops, "n_ops", 1)
        if n_ops.shape != (n_jobs,):
            raise InvalidInstanceError(f"n_ops must have one entry per job ({n_jobs}), got {n_ops.shape}")
        for job in range(n_jobs):
            if not 1 <= n_ops[job] <= width:
                raise InvalidInstanceError(f"job {job} has n_ops={n_ops[job]}; it must be between 1 and {width}")
        real = np.arange(width)[None, :] < n_ops[:, None]
        if n_machines is None:
            n_machines = int(machines[real].max()) + 1
        if int(n_machines) < 1:
            raise InvalidInstanceError(f"n_machines must be at least 1, got {n_machines}")
        n_machines = int(n_machines)
        bad = real & ((machines < 0) | (machines >= n_machines))
        if bad.any():
            job, op = map(int, np.argwhere(bad)[0])
            raise InvalidInstanceError(
                f"job {job} operation {op}: machine {machines[job, op]} is out of range;"
                f" machines are numbered 0..{n_machines - 1}"
            )
        bad = real & (durations < 0)
        if bad.any():
            job, op = map(int, np.argwhere(bad)[0])
            raise InvalidInstanceError(
                f"job {job} operation {op}: duration {durations[job, op]} is negative; durations must be >= 0"
            )
        machines = np.where(real, machines, NO_MACHINE)
        durations = np.where(real, durations, 0)
        release_dates = self._per_job(release_dates, "release_dates", n_jobs, minimum=0)
        due_dates = self._per_job(due_dates, "due_dates", n_jobs, minimum=None)
        weights = self._per_job(weights, "weights", n_jobs, minimum=0)
        if not isinstance(name, str) or not name:
            raise InvalidInstanceError(f"name must be a non-empty string, got {name!r}")
        set_ = object.__setattr__
        set_(self, "machines", _frozen(machines))
        set_(self, "durations", _frozen(durations))
        set_(self, "n_machines", n_machines)
        set_(self, "n_ops", _frozen(n_ops))
        set_(self, "name", name)
        set_(self, "release_dates", release_dates)
        set_(self, "due_dates", due_dates)
        set_(self, "weights", weights)
        set_(self, "metadata", MappingProxyType(dict(metadata or {})))

    @staticmethod
    def _per_job(values: Any, what: str, n_jobs: int, minimum: int | None) -> np.ndarray | None:
        if values is None:
            return None
        array = _as_int_array(values, what, 1)
        if array.shape != (n_jobs,):
            raise InvalidInstanceError(f"{what} must have one entry per job ({n_jobs}), got {array.shape}")
        if minimum is not None and (array < minimum).any():
            job = int(np.argmax(array < minimum))
            raise InvalidInstanceError(f"job {job}: {what} {array[job]} is below {minimum}")
        return _frozen(array)

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_jobs(
        cls,
        jobs: Sequence[Sequence[tuple[int, int]]],
        *,
        n_machines: int | None = None,
        name: str = "instance",
        **kwargs: Any,
    ) -> JobShopInstance:
        """Build from ``jobs[j] = [(machine, duration), ...]`` in processing order."""
        if len(jobs) == 0:
            raise InvalidInstanceError("an instance needs at least one job")
        width = max(len(job) for job in jobs)
        if width == 0:
            raise InvalidInstanceError("every job needs at least one operation")
        machines = np.full((len(jobs), width), NO_MACHINE, dtype=np.int64)
        durations = np.zeros((len(jobs), width), dtype=np.int64)
        for j, job in enumerate(jobs):
            if len(job) == 0:
                raise InvalidInstanceError(f"job {j} has no operations; every job needs at least one")
            for k, pair in enumerate(job):
                if len(pair) != 2:
                    raise InvalidInstanceError(
                        f"job {j} operation {k}: expected a (machine, duration) pair, got {pair!r}"
                    )
                machines[j, k], durations[j, k] = pair
        n_ops = np.array([len(job) for job in jobs], dtype=np.int64)
        return cls(machines, durations, n_machines=n_machines, n_ops=n_ops, name=name, **kwargs)

    def replace(self, **changes: Any) -> JobShopInstance:
        """A copy with some fields changed (the instance itself is immutable)."""
        fields = {
            "machines": self.machines,
            "durations": self.durations,
            "n_machines": self.n_machines,
            "n_ops": self.n_ops,
            "name": self.name,
            "release_dates": self.release_dates,
            "due_dates": self.due_dates,
            "weights": self.weights,
            "metadata": dict(self.metadata),
        }
        fields.update(changes)
        machines, durations = fields.pop("machines"), fields.pop("durations")
        return JobShopInstance(machines, durations, **fields)

    # ----------------------------------------------------------------- derived facts
    @property
    def n_jobs(self) -> int:
        return int(self.machines.shape[0])

    @property
    def max_ops(self) -> int:
        """Width of the padded operation arrays: the largest number of operations of a job."""
        return int(self.machines.shape[1])

    @property
    def n_operations(self) -> int:
        return int(self.n_ops.sum())

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_jobs, n_machines)``, the usual way benchmark sizes are quoted (15x15, ...)."""
        return self.n_jobs, self.n_machines

    @property
    def is_classic(self) -> bool:
        """True when every job visits every machine exactly once (the JSPLIB/Taillard case)."""
        if not np.all(self.n_ops == self.n_machines):
            return False
        return bool(np.all(np.sort(self.machines, axis=1) == np.arange(self.n_machines)))

    def job_work(self) -> np.ndarray:
        """Total processing time of each job."""
        return self.durations.sum(axis=1)

    def machine_load(self) -> np.ndarray:
        """Total processing time asked of each machine."""
        real = self.machines >= 0
        return np.bincount(self.machines[real], self.durations[real], minlength=self.n_machines).astype(np.int64)

    def simple_lower_bound(self) -> int:
        """max(longest job incl. its release date, most loaded machine): a bound on the makespan."""
        release = self.release_dates if self.release_dates is not None else 0
        return int(max((self.job_work() + release).max(), self.machine_load().max()))

    def operations(self, job: int) -> list[tuple[int, int]]:
        """The ``(machine, duration)`` pairs of one job in processing order."""
        n = int(self.n_ops[job])
        return list(zip(self.machines[job, :n].tolist(), self.durations[job, :n].tolist()))

    # ----------------------------------------------------------------- identity
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JobShopInstance):
            return NotImplemented
        return (
            self.name == other.name
            and self.n_machines == other.n_machines
            and np.array_equal(self.machines, other.machines)
            and np.array_equal(self.durations, other.durations)
            and np.array_equal(self.n_ops, other.n_ops)
            and _optional_equal(self.release_dates, other.release_dates)
            and _optional_equal(self.due_dates, other.due_dates)
            and _optional_equal(self.weights, other.weights)
        )

    def same_data(self, other: JobShopInstance) -> bool:
        """Equal operations, machines and dates, whatever the names and metadata."""
        return self.replace(name="x", metadata={}) == other.replace(name="x", metadata={})

    def __hash__(self) -> int:
        return hash((self.name, self.n_machines, self.machines.tobytes(), self.durations.tobytes()))

    def __repr__(self) -> str:
        extra = []
        if self.release_dates is not None:
            extra.append("release dates")
        if self.due_dates is not None:
            extra.append("due dates")
        more = f", with {' and '.join(extra)}" if extra else ""
        return (
            f"JobShopInstance({self.name!r}, {self.n_jobs} jobs x {self.n_machines} machines,"
            f" {self.n_operations} operations{more})"
        )

    # ----------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form: ``jobs`` as lists of ``[machine, duration]``; dates when set."""
        data: dict[str, Any] = {
            "name": self.name,
            "n_jobs": self.n_jobs,
            "n_machines": self.n_machines,
            "jobs": [[list(pair) for pair in self.operations(j)] for j in range(self.n_jobs)],
        }
        for key in ("release_dates", "due_dates", "weights"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value.tolist()
        if self.metadata:
            data["metadata"] = dict(self.metadata)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobShopInstance:
        """Inverse of :meth:`to_dict`; raises :class:`InvalidInstanceError` on bad input."""
        if not isinstance(data, Mapping) or "jobs" not in data:
            raise InvalidInstanceError("an instance object needs a 'jobs' list of [machine, duration] pairs")
        jobs = data["jobs"]
        if not isinstance(jobs, list) or not all(isinstance(job, list) for job in jobs):
            raise InvalidInstanceError("'jobs' must be a list of lists of [machine, duration] pairs")
        instance = cls.from_jobs(
            [[tuple(pair) for pair in job] for job in jobs],
            n_machines=data.get("n_machines"),
            name=data.get("name", "instance"),
            release_dates=data.get("release_dates"),
            due_dates=data.get("due_dates"),
            weights=data.get("weights"),
            metadata=data.get("metadata"),
        )
        if "n_jobs" in data and data["n_jobs"] != instance.n_jobs:
            raise InvalidInstanceError(f"n_jobs says {data['n_jobs']} but 'jobs' has {instance.n_jobs} entries")
        return instance


def _optional_equal(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.array_equal(a, b))
