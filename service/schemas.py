"""Request and response bodies in the shop floor's own words (ISA-95-like), converted to
sched-env's types at the edge only.

A *work order* is a sequence of *operations*, each on one piece of *equipment* for a planned
duration; it has a release time, an optional due date and a priority (the tardiness weight).
Equipment is up, or down until a time, and may have planned maintenance windows. Ids are the
caller's strings and come back unchanged in the plan. Times are integers in the caller's unit
(minutes, seconds: one unit throughout).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Limits per request (a 413 names the one exceeded).
MAX_OPERATIONS = 20_000
MAX_DURATION = 10**9
MAX_TIME = 10**12
MAX_BODY_BYTES = 8 * 2**20

Id = Field(min_length=1, max_length=200)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Window(Strict):
    start: int = Field(ge=0, le=MAX_TIME)
    end: int = Field(ge=0, le=MAX_TIME)

    @model_validator(mode="after")
    def _ordered(self):
        if self.end <= self.start:
            raise ValueError(f"a window must end after it starts (start {self.start}, end {self.end})")
        return self


class Equipment(Strict):
    id: str = Id
    status: Literal["up", "down"] = "up"
    down_until: int | None = Field(default=None, ge=0, le=MAX_TIME, description="when a down machine is back")
    maintenance: list[Window] = Field(default_factory=list, description="planned windows: no work runs in them")

    @model_validator(mode="after")
    def _down_needs_until(self):
        if self.status == "down" and self.down_until is None:
            raise ValueError(f"equipment {self.id!r} is down: give down_until (when it is expected back)")
        return self


class Operation(Strict):
    id: str = Id
    equipment: str = Id
    duration: int = Field(gt=0, le=MAX_DURATION, description="planned processing time")


class WorkOrder(Strict):
    id: str = Id
    operations: list[Operation] = Field(min_length=1)
    release: int = Field(default=0, ge=0, le=MAX_TIME)
    due: int | None = Field(default=None, ge=0, le=MAX_TIME)
    priority: int = Field(default=1, ge=1, le=1000, description="weight of its tardiness")


def _unique(ids: list[str], what: str) -> None:
    seen: set[str] = set()
    for value in ids:
        if value in seen:
            raise ValueError(f"duplicated {what} id {value!r}")
        seen.add(value)


class Budgeted(Strict):
    method: str = Field(default="policy", min_length=1, max_length=200,
                        description="a decider spec (GET /v1/methods): policy, policy:64, mwkr, cpsat:1, hybrid:1, ...")  # fmt: skip
    budget_ms: int | None = Field(default=None, gt=0, le=600_000, description="answer within this many ms")


class ScheduleRequest(Budgeted):
    """Plan work orders from scratch (all equipment up from time 0): minimise the makespan."""

    work_orders: list[WorkOrder] = Field(min_length=1)
    equipment: list[Equipment] = Field(min_length=1)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "method": "policy",
                    "budget_ms": 1000,
                    "equipment": [{"id": "lathe"}, {"id": "mill"}],
                    "work_orders": [
                        {"id": "WO-1", "operations": [{"id": "turn", "equipment": "lathe", "duration": 5},
                                                      {"id": "face", "equipment": "mill", "duration": 3}]},
                        {"id": "WO-2", "due": 12, "priority": 2,
                         "operations": [{"id": "mill", "equipment": "mill", "duration": 4},
                                        {"id": "turn", "equipment": "lathe", "duration": 2}]},
                    ],
                }
            ]
        },
    )  # fmt: skip

    @model_validator(mode="after")
    def _consistent(self):
        check_orders(self.work_orders, self.equipment)
        return self


class OperationState(Operation):
    status: Literal["done", "running", "waiting"] = "waiting"
    start: int | None = Field(default=None, ge=0, le=MAX_TIME, description="done or running: when it started")
    end: int | None = Field(default=None, ge=0, le=MAX_TIME, description="done: when it ended; running: expected end")


class WorkOrderState(WorkOrder):
    operations: list[OperationState] = Field(min_length=1)


class Event(Strict):
    kind: Literal["breakdown", "repair", "arrival", "other"]
    time: int = Field(ge=0, le=MAX_TIME)
    equipment: str | None = None
    work_order: str | None = None


class RescheduleRequest(Budgeted):
    """Plan the rest of a running shop: done and running operations stay as they are."""

    time: int = Field(ge=0, le=MAX_TIME, description="now")
    work_orders: list[WorkOrderState] = Field(min_length=1)
    equipment: list[Equipment] = Field(min_length=1)
    events: list[Event] = Field(default_factory=list, description="what happened (recorded; the state says it all)")
    objective: Literal["total_weighted_tardiness", "makespan", "mean_flow_time"] = "total_weighted_tardiness"
    method: str = Field(default="hybrid:1", min_length=1, max_length=200)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "time": 4, "method": "hybrid:1", "budget_ms": 2000,
                    "equipment": [{"id": "lathe", "status": "down", "down_until": 9}, {"id": "mill"}],
                    "events": [{"kind": "breakdown", "time": 4, "equipment": "lathe"}],
                    "work_orders": [
                        {"id": "WO-1", "due": 15, "operations": [
                            {"id": "turn", "equipment": "lathe", "duration": 3, "status": "done", "start": 0, "end": 3},
                            {"id": "face", "equipment": "mill", "duration": 3, "status": "running", "start": 3, "end": 6}]},
                        {"id": "WO-2", "due": 12, "priority": 2, "operations": [
                            {"id": "mill", "equipment": "mill", "duration": 4},
                            {"id": "turn", "equipment": "lathe", "duration": 2}]},
                    ],
                }
            ]
        },
    )  # fmt: skip

    @model_validator(mode="after")
    def _consistent(self):
        check_orders(self.work_orders, self.equipment)
        down = {
            e.id for e in self.equipment if e.status == "down" and e.down_until is not None and e.down_until > self.time
        }
        for order in self.work_orders:
            seen_waiting = False
            for op in order.operations:
                if op.status == "waiting":
                    seen_waiting = True
                    continue
                where = f"work order {order.id!r} operation {op.id!r}"
                if seen_waiting:
                    raise ValueError(f"{where} is {op.status} after a waiting operation: operations run in order")
                if op.start is None or op.end is None:
                    raise ValueError(f"{where} is {op.status}: give its start and end (expected end if running)")
                if op.end < op.start or (op.status == "done" and op.end > self.time) or op.start > self.time:
                    raise ValueError(
                        f"{where}: start {op.start}, end {op.end} do not fit a {op.status} operation at time {self.time}"
                    )
                if op.status == "running" and op.equipment in down:
                    raise ValueError(
                        f"{where} is running on equipment {op.equipment!r}, which is down at time {self.time}"
                    )
        return self  # fmt: skip


def check_orders(orders, equipment) -> None:
    """Ids unique, every operation on known equipment, within the size limit."""
    _unique([e.id for e in equipment], "equipment")
    _unique([o.id for o in orders], "work order")
    known = {e.id for e in equipment}
    total = 0
    for order in orders:
        _unique([op.id for op in order.operations], f"operation (in work order {order.id!r})")
        for op in order.operations:
            if op.equipment not in known:
                raise ValueError(f"work order {order.id!r} operation {op.id!r}: unknown equipment {op.equipment!r}")
        total += len(order.operations)
    if total > MAX_OPERATIONS:
        raise TooLargeError(f"{total} operations in one request; the limit is {MAX_OPERATIONS}")


class TooLargeError(ValueError):
    """A request over a size limit (answered 413)."""


class PlannedOperation(BaseModel):
    work_order: str
    operation: str
    equipment: str
    start: int
    end: int


class PlanResponse(BaseModel):
    plan: list[PlannedOperation]
    objectives: dict[str, float]
    method: str
    status: str
    wall_time_ms: float
    budget_ms: int | None
    over_budget: bool


class ErrorResponse(BaseModel):
    detail: str


# ---------------------------------------------------------------------- edge conversions
#: The due date of a work order without one (never late).
NO_DUE_DATE = 10**12


def to_instance(request: ScheduleRequest, *, full: bool = False):
    """The work orders as a :class:`JobShopInstance` (equipment in the request's order);
    ``full``: release and due dates always set (what a ShopState needs)."""
    from instances import JobShopInstance

    index = {e.id: m for m, e in enumerate(request.equipment)}
    orders = request.work_orders
    jobs = [[(index[op.equipment], op.duration) for op in order.operations] for order in orders]
    has_due = full or any(o.due is not None for o in orders)
    return JobShopInstance.from_jobs(
        jobs, n_machines=len(request.equipment), name="request",
        release_dates=[o.release for o in orders] if full or any(o.release for o in orders) else None,
        due_dates=[o.due if o.due is not None else NO_DUE_DATE for o in orders] if has_due else None,
        weights=[o.priority for o in orders],
    )  # fmt: skip


def unavailable_windows(request) -> list[tuple[int, int, int, int]]:
    """(machine, start, end, kind) of every known downtime: down-until and maintenance."""
    from sched_env.events import BREAKDOWN, MAINTENANCE

    now = getattr(request, "time", 0)
    rows = []
    for m, e in enumerate(request.equipment):
        if e.status == "down" and e.down_until is not None and e.down_until > now:
            rows.append((m, now, e.down_until, BREAKDOWN))
        rows += [(m, w.start, w.end, MAINTENANCE) for w in e.maintenance if w.end > now]
    return rows


def schedule_problem(request: ScheduleRequest):
    """What a schedule request asks to plan: the work orders as a :class:`JobShopInstance`, or,
    when equipment is down or has maintenance, a :class:`ShopState` at time 0 with those windows
    blocked (the static shop has no downtimes)."""
    windows = unavailable_windows(request)
    if not windows:
        return to_instance(request)
    from sched_env.snapshot import ShopState

    instance = to_instance(request, full=True)
    downtimes = np.array(windows, dtype=np.int64).reshape(-1, 4)
    return ShopState(0, instance, np.arange(instance.n_jobs), [], [], downtimes)


def to_state(request: RescheduleRequest):
    """The running shop as a :class:`ShopState`: active work orders, done and running work, downtimes."""
    from instances import JobShopInstance
    from sched_env.snapshot import ShopState

    index = {e.id: m for m, e in enumerate(request.equipment)}
    active = [o for o in request.work_orders if any(op.status != "done" for op in o.operations)]
    if not active:
        active = request.work_orders[:1]
    jobs = [[(index[op.equipment], op.duration) for op in order.operations] for order in active]
    due = [o.due if o.due is not None else NO_DUE_DATE for o in active]
    instance = JobShopInstance.from_jobs(
        jobs, n_machines=len(request.equipment), name="state", release_dates=[o.release for o in active],
        due_dates=due, weights=[o.priority for o in active],
    )  # fmt: skip
    done, running = [], []
    for j, order in enumerate(active):
        for k, op in enumerate(order.operations):
            row = [j, k, index[op.equipment], op.start, op.end]
            if op.status == "done":
                done.append(row)
            elif op.status == "running":
                running.append([j, k, index[op.equipment], op.start, max(op.end, request.time)])
    windows = unavailable_windows(request)
    downtimes = np.array(windows, dtype=np.int64).reshape(-1, 4)
    return ShopState(request.time, instance, np.arange(len(active)), done, running, downtimes, "resume"), active


def plan_rows(schedule, orders, equipment) -> list[PlannedOperation]:
    """A schedule back in the caller's ids, in start order."""
    rows = []
    for j, k, m, s, e in sorted(zip(schedule.job.tolist(), schedule.op.tolist(), schedule.machine.tolist(),
                                    schedule.start.tolist(), schedule.end.tolist()), key=lambda r: (r[3], r[0], r[1])):  # fmt: skip
        order = orders[j]
        rows.append(PlannedOperation(work_order=order.id, operation=order.operations[k].id,
                                     equipment=equipment[m].id, start=s, end=e))  # fmt: skip
    return rows
