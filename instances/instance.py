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


def _shortest_alternatives(processing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each operation's shortest alternative (ties to the lowest machine): (machines, durations)."""
    masked = np.where(processing >= 0, processing, np.iinfo(np.int64).max)
    machines = masked.argmin(axis=2)
    durations = np.take_along_axis(processing, machines[:, :, None], axis=2)[:, :, 0]
    eligible = (processing >= 0).any(axis=2)
    return np.where(eligible, machines, NO_MACHINE), np.where(eligible, durations, 0)


def _check_processing(processing: Any, machines, durations, real, n_machines: int) -> np.ndarray | None:
    """The frozen ``(n_jobs, max_ops, n_machines)`` table, checked against the shortest
    alternatives in ``machines``/``durations``; None when every operation has one alternative."""
    table = _as_int_array(processing, "processing", 3)
    expected = (*machines.shape, n_machines)
    if table.shape != expected:
        raise InvalidInstanceError(
            f"processing must have shape (n_jobs, max_ops, n_machines) = {expected}, got {table.shape}"
        )
    bad = real[:, :, None] & (table < -1)
    if bad.any():
        job, op, machine = map(int, np.argwhere(bad)[0])
        raise InvalidInstanceError(
            f"job {job} operation {op}: duration {table[job, op, machine]} on machine {machine} is negative;"
            " durations must be >= 0 (-1 marks a machine that cannot run the operation)"
        )
    table = np.where(real[:, :, None], table, -1)
    counts = (table >= 0).sum(axis=2)
    if (real & (counts == 0)).any():
        job, op = map(int, np.argwhere(real & (counts == 0))[0])
        raise InvalidInstanceError(f"job {job} operation {op} has no alternative: give it at least one machine")
    shortest_machines, shortest_durations = _shortest_alternatives(table)
    if not (np.array_equal(shortest_machines, machines) and np.array_equal(shortest_durations, durations)):
        raise InvalidInstanceError(
            "machines/durations of a flexible instance must be each operation's shortest alternative;"
            " build it with JobShopInstance.from_alternatives or from_processing"
        )
    if (counts[real] <= 1).all():
        return None
    return _frozen(table)


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

    **Flexible shops**: an operation may have several alternatives ``(machine, duration)``.
    ``processing[j, k, m]`` is then the duration of operation ``k`` of job ``j`` on machine
    ``m``, or ``-1`` where ``m`` cannot run it (build one with :meth:`from_alternatives`);
    ``machines``/``durations`` hold each operation's shortest alternative (ties to the lowest
    machine), so every per-operation fact (work, bounds) has one meaning in both shops. A classic
    instance (one alternative each) has ``processing=None`` and costs nothing extra.
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
    processing: np.ndarray | None = None

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
        processing: Any | None = None,
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
        if processing is not None:
            processing = _check_processing(processing, machines, durations, real, n_machines)
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
        set_(self, "processing", processing)

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

    @classmethod
    def from_alternatives(
        cls,
        jobs: Sequence[Sequence[Sequence[tuple[int, int]]]],
        *,
        n_machines: int | None = None,
        name: str = "instance",
        **kwargs: Any,
    ) -> JobShopInstance:
        """A flexible instance from ``jobs[j][k] = [(machine, duration), ...]``: the alternatives
        of each operation, in processing order (one alternative each gives a classic instance)."""
        if len(jobs) == 0:
            raise InvalidInstanceError("an instance needs at least one job")
        width = max(len(job) for job in jobs)
        if width == 0:
            raise InvalidInstanceError("every job needs at least one operation")
        pairs = [(j, k, pair) for j, job in enumerate(jobs) for k, op in enumerate(job) for pair in op]
        for j, k, pair in pairs:
            if len(pair) != 2:
                raise InvalidInstanceError(f"job {j} operation {k}: expected (machine, duration) pairs, got {pair!r}")
        highest = max((int(pair[0]) for _, _, pair in pairs), default=0)
        size = int(n_machines) if n_machines is not None else highest + 1
        table = np.full((len(jobs), width, max(size, 1)), -1, dtype=np.int64)
        for j, job in enumerate(jobs):
            if len(job) == 0:
                raise InvalidInstanceError(f"job {j} has no operations; every job needs at least one")
            for k, op in enumerate(job):
                if len(op) == 0:
                    raise InvalidInstanceError(
                        f"job {j} operation {k} has no alternative: give it at least one machine"
                    )
                for machine, duration in op:
                    if not 0 <= machine < size:
                        raise InvalidInstanceError(
                            f"job {j} operation {k}: machine {machine} is out of range; machines are numbered 0..{size - 1}"
                        )
                    if duration < 0:
                        raise InvalidInstanceError(
                            f"job {j} operation {k}: duration {duration} on machine {machine} is negative;"
                            " durations must be >= 0"
                        )
                    if table[j, k, machine] >= 0:
                        raise InvalidInstanceError(
                            f"job {j} operation {k}: machine {machine} is listed twice; give each machine once"
                        )
                    table[j, k, machine] = duration
        n_ops = np.array([len(job) for job in jobs], dtype=np.int64)
        return cls.from_processing(table, n_ops=n_ops, name=name, **kwargs)

    @classmethod
    def from_processing(cls, processing: Any, *, n_ops: Any | None = None, **kwargs: Any) -> JobShopInstance:
        """From a ``(n_jobs, max_ops, n_machines)`` table of durations (-1: the machine cannot
        run the operation); rows past a job's ``n_ops`` are ignored."""
        table = _as_int_array(processing, "processing", 3)
        width = table.shape[1]
        ops = np.full(table.shape[0], width) if n_ops is None else _as_int_array(n_ops, "n_ops", 1)
        real = np.arange(width)[None, :] < ops[:, None] if ops.shape == (table.shape[0],) else None
        if real is not None:
            table = np.where(real[:, :, None], table, -1)
        machines, durations = _shortest_alternatives(np.maximum(table, -1))
        if real is not None:
            missing = real & ((table >= 0).sum(axis=2) == 0)
            if missing.any():
                job, op = map(int, np.argwhere(missing)[0])
                raise InvalidInstanceError(f"job {job} operation {op} has no alternative: give it at least one machine")
        kwargs.setdefault("n_machines", table.shape[2])
        return cls(machines, durations, n_ops=n_ops, processing=table, **kwargs)

    def select_jobs(self, rows: Sequence[int] | np.ndarray, **changes: Any) -> JobShopInstance:
        """The instance of jobs ``rows`` (in that order), with their dates, weights and
        alternatives; ``changes`` as in :meth:`replace` (a name, say)."""
        rows = np.asarray(rows, dtype=np.int64)
        fields = {key: None if getattr(self, key) is None else getattr(self, key)[rows]
                  for key in ("release_dates", "due_dates", "weights")}  # fmt: skip
        fields |= {"n_ops": self.n_ops[rows], "name": self.name, "metadata": dict(self.metadata)} | changes
        if self.processing is not None:
            return JobShopInstance.from_processing(self.processing[rows], n_machines=self.n_machines, **fields)
        return JobShopInstance(self.machines[rows], self.durations[rows], n_machines=self.n_machines, **fields)

    def replace(self, **changes: Any) -> JobShopInstance:
        """A copy with some fields changed (the instance itself is immutable)."""
        if self.processing is not None and not {"machines", "durations", "processing"} & set(changes):
            changes["processing"] = self.processing
        if changes.get("processing") is not None and not {"machines", "durations"} & set(changes):
            fields = {key: getattr(self, key) for key in ("n_ops", "name", "release_dates", "due_dates", "weights")}
            fields["metadata"] = dict(self.metadata)
            fields.update(changes)
            return JobShopInstance.from_processing(fields.pop("processing"), **fields)
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
    def is_flexible(self) -> bool:
        """True when some operation can run on more than one machine."""
        return self.processing is not None

    @property
    def flexibility(self) -> float:
        """Mean number of alternative machines per operation (1.0 for a classic instance)."""
        if self.processing is None:
            return 1.0
        return float((self.processing >= 0).sum() / max(self.n_operations, 1))

    @property
    def longest_duration(self) -> int:
        """The longest duration of any operation on any of its machines (0 for an empty shop)."""
        values = self.processing if self.processing is not None else self.durations
        return int(values.max(initial=0))

    def processing_table(self) -> np.ndarray:
        """``(n_jobs, max_ops, n_machines)`` durations, -1 where a machine cannot run the
        operation: the flexible table, or the classic instance written the same way."""
        if self.processing is not None:
            return self.processing
        table = np.full((self.n_jobs, self.max_ops, self.n_machines), -1, dtype=np.int64)
        jobs, ops = np.nonzero(self.machines >= 0)
        table[jobs, ops, self.machines[jobs, ops]] = self.durations[jobs, ops]
        return table

    def alternatives(self, job: int, op: int) -> list[tuple[int, int]]:
        """The ``(machine, duration)`` pairs that can run operation ``op`` of ``job``."""
        if self.processing is None:
            return [(int(self.machines[job, op]), int(self.durations[job, op]))]
        row = self.processing[job, op]
        return [(int(m), int(row[m])) for m in np.flatnonzero(row >= 0)]

    @property
    def is_classic(self) -> bool:
        """True when every job visits every machine exactly once (the JSPLIB/Taillard case)."""
        if self.processing is not None or not np.all(self.n_ops == self.n_machines):
            return False
        return bool(np.all(np.sort(self.machines, axis=1) == np.arange(self.n_machines)))

    def job_work(self) -> np.ndarray:
        """Total processing time of each job."""
        return self.durations.sum(axis=1)

    def machine_load(self) -> np.ndarray:
        """Total processing time asked of each machine (flexible: of the operations it alone can run)."""
        real = self.machines >= 0
        if self.processing is not None:
            real &= (self.processing >= 0).sum(axis=2) == 1
        return np.bincount(self.machines[real], self.durations[real], minlength=self.n_machines).astype(np.int64)

    def simple_lower_bound(self) -> int:
        """max(longest job incl. its release date, most loaded machine): a bound on the makespan
        (flexible: each operation at its shortest, and the shortest work spread over every machine)."""
        release = self.release_dates if self.release_dates is not None else 0
        bound = max((self.job_work() + release).max(), self.machine_load().max())
        if self.processing is not None:
            bound = max(bound, -(-int(self.durations.sum()) // self.n_machines))
        return int(bound)

    def operations(self, job: int) -> list[tuple[int, int]]:
        """The ``(machine, duration)`` pairs of one job in processing order (flexible: the shortest alternatives)."""
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
            and _optional_equal(self.processing, other.processing)
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
        flexible = f", {self.flexibility:.2f} machines per operation" if self.processing is not None else ""
        return (
            f"JobShopInstance({self.name!r}, {self.n_jobs} jobs x {self.n_machines} machines,"
            f" {self.n_operations} operations{flexible}{more})"
        )

    # ----------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form: ``jobs`` as lists of ``[machine, duration]`` (flexible: each operation
        a list of its ``[machine, duration]`` alternatives); dates when set."""
        if self.processing is None:
            jobs = [[list(pair) for pair in self.operations(j)] for j in range(self.n_jobs)]
        else:
            jobs = [
                [[list(pair) for pair in self.alternatives(j, k)] for k in range(int(self.n_ops[j]))]
                for j in range(self.n_jobs)
            ]
        data: dict[str, Any] = {"name": self.name, "n_jobs": self.n_jobs, "n_machines": self.n_machines, "jobs": jobs}
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
        flexible = any(isinstance(op, list) and op and isinstance(op[0], list) for job in jobs for op in job)
        if flexible:
            build, parsed = cls.from_alternatives, [[_alternatives_of(op, j, k) for k, op in enumerate(job)]
                                                    for j, job in enumerate(jobs)]  # fmt: skip
        else:
            build, parsed = cls.from_jobs, [[tuple(pair) for pair in job] for job in jobs]
        instance = build(
            parsed,
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


def _alternatives_of(op: Any, job: int, index: int) -> list[tuple[int, int]]:
    """One JSON operation as its alternatives: ``[machine, duration]`` or a list of those."""
    if isinstance(op, list) and op and not isinstance(op[0], list):
        op = [op]
    if not isinstance(op, list) or not all(isinstance(pair, list) and len(pair) == 2 for pair in op):
        raise InvalidInstanceError(
            f"job {job} operation {index}: expected [machine, duration] or a list of [machine, duration] alternatives"
        )
    return [tuple(pair) for pair in op]


def _optional_equal(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.array_equal(a, b))
