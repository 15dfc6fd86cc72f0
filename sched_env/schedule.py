"""The one schedule type, its JSON form, and the one validator every decider is tested through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from instances import InfeasibleScheduleError, InvalidScheduleFileError, JobShopInstance
from instances.jsonfile import JsonFile

_COLUMNS = ("job", "op", "machine", "start", "end")


def _column(values: Any, name: str, length: int | None) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise InvalidScheduleFileError(f"schedule column {name!r} must be a 1-D array of integers")
    if length is not None and array.shape[0] != length:
        raise InvalidScheduleFileError(f"schedule column {name!r} has {array.shape[0]} rows, expected {length}")
    array = array.astype(np.int64, copy=True)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, init=False, eq=False)
class Schedule(JsonFile):
    """Start and end time of scheduled operations, one row per operation.

    Row ``i`` says operation ``op[i]`` of job ``job[i]`` runs on ``machine[i]`` during
    ``[start[i], end[i])``. Rows are in no particular order; :meth:`sorted` orders them by start.
    A schedule is only a claim: :func:`validate_schedule` checks it against its instance.
    """

    json_error = InvalidScheduleFileError
    json_what = "schedule"

    job: np.ndarray
    op: np.ndarray
    machine: np.ndarray
    start: np.ndarray
    end: np.ndarray
    instance_name: str | None

    def __init__(self, job, op, machine, start, end, *, instance_name: str | None = None) -> None:
        job = _column(job, "job", None)
        for name, values in zip(_COLUMNS, (job, op, machine, start, end)):
            object.__setattr__(self, name, _column(values, name, job.shape[0]))
        object.__setattr__(self, "instance_name", instance_name)

    @classmethod
    def from_matrices(
        cls, instance: JobShopInstance, start: np.ndarray, end: np.ndarray, *, machines: np.ndarray | None = None
    ) -> Schedule:
        """From ``(n_jobs, max_ops)`` start/end arrays (entries < 0 mean 'not scheduled'), and the
        machine each operation runs on (default: the instance's; needed for a flexible one)."""
        start = np.asarray(start)[: instance.n_jobs, : instance.max_ops]
        end = np.asarray(end)[: instance.n_jobs, : instance.max_ops]
        if machines is None:
            if instance.is_flexible:
                raise ValueError("a flexible instance's schedule needs the machine of each operation (machines=)")
            machines = instance.machines
        machines = np.asarray(machines)[: instance.n_jobs, : instance.max_ops]
        jobs, ops = np.nonzero(start >= 0)
        return cls(jobs, ops, machines[jobs, ops], start[jobs, ops], end[jobs, ops], instance_name=instance.name)

    @classmethod
    def from_start_times(cls, instance: JobShopInstance, start: np.ndarray) -> Schedule:
        """From a ``(n_jobs, max_ops)`` start matrix, ends from the instance's durations."""
        start = np.asarray(start, dtype=np.int64)
        end = np.where(start >= 0, start + instance.durations, -1)
        return cls.from_matrices(instance, start, end)

    def __len__(self) -> int:
        return int(self.job.shape[0])

    @property
    def makespan(self) -> int:
        """Completion time of the last operation (0 for an empty schedule)."""
        return int(self.end.max()) if len(self) else 0

    def sorted(self) -> Schedule:
        """Rows ordered by (start, end, job, op): the order in which to replay it."""
        order = np.lexsort((self.op, self.job, self.end, self.start))
        return Schedule(*(getattr(self, c)[order] for c in _COLUMNS), instance_name=self.instance_name)

    def start_matrix(self, instance: JobShopInstance) -> np.ndarray:
        """``(n_jobs, max_ops)`` start times, -1 where an operation is not scheduled."""
        return self._matrix(instance, self.start)

    def end_matrix(self, instance: JobShopInstance) -> np.ndarray:
        """``(n_jobs, max_ops)`` end times, -1 where an operation is not scheduled."""
        return self._matrix(instance, self.end)

    def _matrix(self, instance: JobShopInstance, values: np.ndarray) -> np.ndarray:
        matrix = np.full((instance.n_jobs, instance.max_ops), -1, dtype=np.int64)
        inside = (self.job >= 0) & (self.job < instance.n_jobs) & (self.op >= 0) & (self.op < instance.max_ops)
        matrix[self.job[inside], self.op[inside]] = values[inside]
        return matrix

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schedule):
            return NotImplemented
        a, b = self.sorted(), other.sorted()
        return len(a) == len(b) and all(np.array_equal(getattr(a, c), getattr(b, c)) for c in _COLUMNS)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        name = f"{self.instance_name!r}, " if self.instance_name else ""
        return f"Schedule({name}{len(self)} operations, makespan {self.makespan})"

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        rows = self.sorted()
        return {
            "instance": self.instance_name,
            "makespan": self.makespan,
            "operations": [
                dict(zip(_COLUMNS, values)) for values in zip(*(getattr(rows, c).tolist() for c in _COLUMNS))
            ],
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "schedule") -> Schedule:
        if not isinstance(data, dict) or not isinstance(data.get("operations"), list):
            raise InvalidScheduleFileError(
                f"{source}: expected an object with an 'operations' list of {{job, op, machine, start, end}} objects"
            )
        columns: dict[str, list[int]] = {c: [] for c in _COLUMNS}
        for i, row in enumerate(data["operations"]):
            if not isinstance(row, dict) or any(c not in row for c in _COLUMNS):
                raise InvalidScheduleFileError(
                    f"{source}: operation {i} must be an object with keys {', '.join(_COLUMNS)}; got {row!r}"
                )
            for c in _COLUMNS:
                value = row[c]
                if isinstance(value, bool) or not isinstance(value, int):
                    raise InvalidScheduleFileError(f"{source}: operation {i}: {c} must be an integer, got {value!r}")
                columns[c].append(value)
        return cls(*(np.array(columns[c], dtype=np.int64) for c in _COLUMNS), instance_name=data.get("instance"))


# ---------------------------------------------------------------------- validation
@dataclass(frozen=True)
class Violation:
    """One broken constraint: ``kind`` is one of :data:`VIOLATION_KINDS`."""

    kind: str
    message: str
    job: int | None = None
    op: int | None = None

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


VIOLATION_KINDS = (
    "extra",  # a row for an operation the instance does not have
    "duplicate",  # the same operation scheduled twice
    "missing",  # an operation of the instance with no row
    "machine",  # a row on a machine that cannot run the operation (classic: not the instance's machine)
    "duration",  # end - start differs from the operation's duration
    "negative_start",
    "release",  # a job's first operation starts before its release date
    "precedence",  # an operation starts before the previous one of its job ends
    "overlap",  # two operations on one machine at the same time
    "downtime",  # an operation on a machine while it is down (breakdown or maintenance)
    "changed",  # a plan of a shop state moves an operation that is done or running (sched_env.snapshot)
)
INTERRUPTIONS = ("resume", "restart")


def find_violations(
    instance: JobShopInstance,
    schedule: Schedule,
    *,
    durations: np.ndarray | None = None,
    downtimes: np.ndarray | None = None,
    interruption: str = "resume",
) -> list[Violation]:
    """Every constraint the schedule breaks (empty list if it is feasible).

    ``durations`` overrides the instance's durations (a dynamic shop's realised times); on a
    flexible instance an operation may run on any of its eligible machines, for that
    alternative's duration.
    ``downtimes`` are rows ``(machine, start, end[, kind])``: the machine is down during
    ``[start, end)``. No operation may start while its machine is down. With
    ``interruption="resume"`` an operation may span a downtime, and its processing time is its
    length minus the downtime inside it; with ``"restart"`` it must not overlap any downtime
    (the recorded run is the one that completed).
    """
    if interruption not in INTERRUPTIONS:
        raise ValueError(f"interruption must be one of {INTERRUPTIONS}, got {interruption!r}")
    durations = None if durations is None else np.asarray(durations)
    if _plainly_feasible(instance, schedule, durations, downtimes, interruption):
        return []
    return _all_violations(instance, schedule, durations, downtimes, interruption)


def _all_violations(instance, schedule, durations, downtimes, interruption) -> list[Violation]:
    """The row-by-row pass of :func:`find_violations`: every broken constraint, named."""
    windows = _windows_by_machine(downtimes)
    found: list[Violation] = []
    rows: dict[tuple[int, int], int] = {}
    for i, (j, k) in enumerate(zip(schedule.job.tolist(), schedule.op.tolist())):
        if not (0 <= j < instance.n_jobs and 0 <= k < instance.n_ops[j]):
            found.append(Violation("extra", f"row {i}: job {j} has no operation {k}", j, k))
        elif (j, k) in rows:
            found.append(
                Violation("duplicate", f"job {j} operation {k} is scheduled twice (rows {rows[j, k]} and {i})", j, k)
            )
        else:
            rows[j, k] = i
    for j in range(instance.n_jobs):
        for k in range(int(instance.n_ops[j])):
            if (j, k) not in rows:
                found.append(Violation("missing", f"job {j} operation {k} is not scheduled", j, k))
    s, e, m = schedule.start, schedule.end, schedule.machine
    release = instance.release_dates
    for (j, k), i in rows.items():
        start, end, machine = int(s[i]), int(e[i]), int(m[i])

        def add(kind: str, message: str, j: int = j, k: int = k) -> None:
            found.append(Violation(kind, f"job {j} operation {k} {message}", j, k))

        expected = _expected_duration(instance, durations, j, k, machine)
        if expected is None:
            eligible = [m for m, _ in instance.alternatives(j, k)]
            says = f"the instance says {eligible[0]}" if len(eligible) == 1 else f"it can run on machines {eligible}"
            add("machine", f"is on machine {machine}, {says}")
        down = windows.get(machine, [])
        inside = sum(max(0, min(end, b) - max(start, a)) for a, b in down) if interruption == "resume" else 0
        if expected is not None and end - start - inside != expected:
            add("duration", f"lasts {end - start - inside} ({start}..{end}), its duration is {expected}")
        if start < 0:
            add("negative_start", f"starts at {start} < 0")
        if k == 0 and release is not None and start < release[j]:
            add("release", f"starts at {start}, before the job's release date {release[j]}")
        if k > 0 and (j, k - 1) in rows and start < e[rows[j, k - 1]]:
            add("precedence", f"starts at {start} before operation {k - 1} ends at {e[rows[j, k - 1]]}")
        for a, b in down:
            if a <= start < b:
                add("downtime", f"starts at {start} while machine {machine} is down [{a}, {b})")
            elif interruption == "restart" and start < b and a < end:
                add(
                    "downtime",
                    f"[{start}, {end}) overlaps downtime [{a}, {b}) of machine {machine} (interruption=restart)",
                )
    found += _overlaps(schedule, rows)
    return found


def _expected_duration(instance: JobShopInstance, durations, j: int, k: int, machine: int) -> int | None:
    """How long operation ``k`` of job ``j`` lasts on ``machine``; None if it cannot run there."""
    if instance.is_flexible:
        if not 0 <= machine < instance.n_machines or instance.processing[j, k, machine] < 0:
            return None
        return int(durations[j, k] if durations is not None else instance.processing[j, k, machine])
    if machine != instance.machines[j, k]:
        return None
    return int((durations if durations is not None else instance.durations)[j, k])


def _plainly_feasible(instance, schedule, durations, downtimes, interruption) -> bool:
    """The same checks as :func:`find_violations`, vectorised: True when none is broken (the
    common case, in O(n log n)); False sends the caller to the row-by-row pass that names them."""
    j, k, m, s, e = schedule.job, schedule.op, schedule.machine, schedule.start, schedule.end
    n_ops = instance.n_ops
    if len(j) != instance.n_operations:
        return False
    if len(j) == 0:
        return True
    if j.min() < 0 or j.max() >= instance.n_jobs or k.min() < 0 or (k >= n_ops[j]).any():
        return False
    order = np.lexsort((k, j))  # by job, then operation: complete and unique iff (j, k) runs 0..n_ops-1
    j, k, m, s, e = j[order], k[order], m[order], s[order], e[order]
    first = np.concatenate([[0], np.cumsum(n_ops)[:-1]])
    if not np.array_equal(k, np.arange(len(k)) - np.repeat(first, n_ops)):
        return False
    if instance.is_flexible:
        if m.min() < 0 or m.max() >= instance.n_machines or (instance.processing[j, k, m] < 0).any():
            return False
        expected = instance.processing[j, k, m] if durations is None else durations[j, k]
    else:
        if (m != instance.machines[j, k]).any():
            return False
        expected = (instance.durations if durations is None else durations)[j, k]
    if s.min() < 0:
        return False
    release = instance.release_dates
    if release is not None and (s[k == 0] < release[j[k == 0]]).any():
        return False
    follows = k[1:] > 0
    if (s[1:][follows] < e[:-1][follows]).any():
        return False
    inside = np.zeros(len(s), dtype=np.int64)
    for machine, spans in _windows_by_machine(downtimes).items():
        on = m == machine
        a, b = np.array(spans, dtype=np.int64).T
        at = np.argsort(a)
        a, b = a[at], b[at]
        if (a[1:] < b[:-1]).any():
            return False  # overlapping windows: the full pass counts them as given
        w = np.searchsorted(a, s[on], side="right") - 1  # the last window starting at or before the start
        if ((w >= 0) & (s[on] < b[np.maximum(w, 0)])).any():
            return False  # starts while the machine is down
        if interruption == "restart":
            nxt = np.searchsorted(a, s[on], side="right")  # the next window must begin at or after the end
            if ((nxt < len(a)) & (a[np.minimum(nxt, len(a) - 1)] < e[on])).any():
                return False
        else:
            down_before = np.concatenate([[0], np.cumsum(b - a)])  # downtime in [0, t): over whole windows

            def downtime_until(t, a=a, b=b, down_before=down_before):
                i = np.searchsorted(a, t, side="right")
                partial = np.clip(t - a[np.maximum(i - 1, 0)], 0, (b - a)[np.maximum(i - 1, 0)]) * (i > 0)
                return down_before[np.maximum(i - 1, 0)] * (i > 0) + partial

            inside[on] = downtime_until(e[on]) - downtime_until(s[on])
    if (e - s - inside != expected).any():
        return False
    by_machine = np.lexsort((s, m))
    m, s, e = m[by_machine], s[by_machine], e[by_machine]
    shift = (m.astype(np.int64) + 1) * (int(e.max(initial=0)) + 1)
    latest = np.maximum.accumulate(e + shift) - shift  # latest end so far on the same machine
    return not (len(s) > 1 and ((m[1:] == m[:-1]) & (s[1:] < latest[:-1])).any())  # any doubt: the full pass


def _windows_by_machine(downtimes: np.ndarray | None) -> dict[int, list[tuple[int, int]]]:
    windows: dict[int, list[tuple[int, int]]] = {}
    if downtimes is not None and len(downtimes):
        for row in np.asarray(downtimes).tolist():
            windows.setdefault(int(row[0]), []).append((int(row[1]), int(row[2])))
    return windows


def _overlaps(schedule: Schedule, rows: dict[tuple[int, int], int]) -> list[Violation]:
    """Per machine, sweep rows by start; [s, e) intervals overlap iff s1 < e2 and s2 < e1."""
    found = []
    index = np.array(sorted(rows.values()), dtype=np.int64)
    if index.size == 0:
        return found
    s, e, m = schedule.start[index], schedule.end[index], schedule.machine[index]
    order = np.lexsort((e, s, m))
    latest = -1  # position (in index) of the row with the latest end so far on this machine
    for position in order:
        if latest >= 0 and m[latest] == m[position] and s[position] < e[latest] and s[latest] < e[position]:
            a, b = index[latest], index[position]
            ja, ka, jb, kb = schedule.job[a], schedule.op[a], schedule.job[b], schedule.op[b]
            found.append(
                Violation(
                    "overlap",
                    f"machine {m[position]}: job {ja} operation {ka} [{s[latest]}, {e[latest]}) overlaps"
                    f" job {jb} operation {kb} [{s[position]}, {e[position]})",
                    int(jb),
                    int(kb),
                )
            )
        if latest < 0 or m[latest] != m[position] or e[position] > e[latest]:
            latest = position
    return found


def validate_schedule(
    instance: JobShopInstance,
    schedule: Schedule,
    *,
    durations: np.ndarray | None = None,
    downtimes: np.ndarray | None = None,
    interruption: str = "resume",
) -> Schedule:
    """Return ``schedule`` if it is feasible for ``instance``; otherwise raise
    :class:`InfeasibleScheduleError` whose message and ``violations`` list every broken constraint.
    The keyword arguments add a dynamic shop's constraints (see :func:`find_violations`)."""
    violations = find_violations(
        instance, schedule, durations=durations, downtimes=downtimes, interruption=interruption
    )
    if violations:
        shown = "\n  ".join(str(v) for v in violations[:50])
        more = f"\n  ... and {len(violations) - 50} more" if len(violations) > 50 else ""
        raise InfeasibleScheduleError(
            f"schedule for {instance.name!r} breaks {len(violations)} constraint(s):\n  {shown}{more}", violations
        )
    return schedule


# ---------------------------------------------------------------------- objectives
#: The objectives of a schedule, by the one name each has everywhere (envs, deciders, results, CLI).
OBJECTIVE_NAMES = ("makespan", "total_weighted_tardiness", "total_flow_time", "mean_flow_time")


def objectives(instance: JobShopInstance, schedule: Schedule) -> dict[str, float]:
    """Every objective of a (complete) schedule: ``makespan``, ``total_weighted_tardiness``
    (0 without due dates), ``total_flow_time`` (sum of completion - release) and ``mean_flow_time``."""
    completion = np.zeros(instance.n_jobs, dtype=np.int64)
    np.maximum.at(completion, schedule.job, schedule.end)
    release = (
        instance.release_dates if instance.release_dates is not None else np.zeros(instance.n_jobs, dtype=np.int64)
    )
    weights = instance.weights if instance.weights is not None else np.ones(instance.n_jobs, dtype=np.int64)
    tardiness = (
        0 if instance.due_dates is None else int((weights * np.maximum(0, completion - instance.due_dates)).sum())
    )
    flow = int((completion - release).sum())
    return {
        "makespan": int(completion.max()) if len(completion) else 0,
        "total_weighted_tardiness": tardiness,
        "total_flow_time": flow,
        "mean_flow_time": flow / max(instance.n_jobs, 1),
    }


def objective_value(instance: JobShopInstance, schedule: Schedule, objective: str) -> float:
    """One objective of a complete schedule, by name (see :data:`OBJECTIVE_NAMES`)."""
    if objective not in OBJECTIVE_NAMES:
        raise ValueError(f"unknown objective {objective!r}; choose one of: {', '.join(OBJECTIVE_NAMES)}")
    return objectives(instance, schedule)[objective]


# ---------------------------------------------------------------------- decider results
#: ``start-plan``: a search found nothing better in its time and returned the plan it started
#: from (its hint, or a dispatching rule's plan); ``unknown``: no plan at all.
STATUSES = ("optimal", "feasible", "start-plan", "infeasible", "unknown")
#: How far a budgeted decider may overrun: 5 % of the budget plus 50 ms (process scheduling,
#: reading the solution back, validation).
BUDGET_TOLERANCE = (0.05, 0.05)


def budget_limit(budget_s: float) -> float:
    """The latest a decider given ``budget_s`` seconds may answer (see :data:`BUDGET_TOLERANCE`)."""
    relative, absolute = BUDGET_TOLERANCE
    return budget_s * (1 + relative) + absolute


@dataclass(frozen=True)
class SolveResult:
    """What every decider returns: rule, CP-SAT, learned policy.

    ``objective`` is the makespan (static shop) or the objective named in ``params``
    (rescheduling); ``lower_bound`` a bound the decider proved (None if it proves none);
    ``status`` one of :data:`STATUSES`; ``wall_time_s`` the time the decider took (measured by
    ``baselines.deciders`` around the whole call); ``budget_s`` the budget it was given;
    ``method`` and ``params`` say exactly what ran, ``seed`` with what seed.
    """

    schedule: Schedule | None
    objective: int | None
    status: str
    method: str
    wall_time_s: float
    instance_name: str | None = None
    lower_bound: int | None = None
    seed: int | None = None
    params: dict[str, Any] | None = None
    budget_s: float | None = None

    @property
    def over_budget(self) -> bool:
        """True when the decider overran its budget by more than the tolerance (5 % + 50 ms)."""
        return self.budget_s is not None and self.wall_time_s > budget_limit(self.budget_s)

    def gap_to(self, reference: int | None) -> float | None:
        """Relative gap (objective / reference - 1), e.g. to the best-known makespan."""
        if reference is None or self.objective is None or reference <= 0:
            return None
        return self.objective / reference - 1.0

    def to_dict(self, *, with_schedule: bool = True) -> dict[str, Any]:
        data = {
            "instance": self.instance_name,
            "method": self.method,
            "params": dict(self.params or {}),
            "seed": self.seed,
            "status": self.status,
            "objective": self.objective,
            "lower_bound": self.lower_bound,
            "wall_time_s": round(self.wall_time_s, 6),
            "budget_s": self.budget_s,
        }
        if with_schedule:
            data["schedule"] = None if self.schedule is None else self.schedule.to_dict()
        return data
