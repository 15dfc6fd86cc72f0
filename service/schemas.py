"""Request and response bodies in the shop floor's own words (ISA-95-like), converted to
sched-env's types at the edge only.

A *work order* is a sequence of *operations*, each on one piece of *equipment* for a planned
duration, or on any of several: ``alternatives`` lists eligible equipment each with its own
duration, and ``equipment_class`` (ISA-95's term) names a class whose members can run it for
``duration``; the plan says which equipment each operation uses. A work order has a release
time, an optional due date and a priority (the tardiness weight).
Equipment is up, or down until a time, and may have planned maintenance windows. Ids are the
caller's strings and come back unchanged in the plan. Times are integers in the caller's unit
(minutes, seconds: one unit throughout).

Types are strict (``"5"`` and ``true`` are not numbers) and every number has a range chosen so
that no objective can overflow 64 bits: a plan ends by ``MAX_TIME + MAX_TOTAL_DURATION`` (2e11),
so the total weighted tardiness is below ``MAX_OPERATIONS x 1000 x 2e11 = 4e18 < 2**63``.
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from instances import SchedEnvError

#: Limits per request: a count over its limit is a 413 that names it, a number out of range a 422.
MAX_BODY_BYTES = 8 * 2**20
MAX_OPERATIONS = 20_000
MAX_EQUIPMENT = 1_000
MAX_WINDOWS = 10_000  # maintenance windows, all equipment together
MAX_EVENTS = 10_000
MAX_DURATION = 10**9
MAX_TIME = 10**11  # any time: now, releases, due dates, starts, ends, windows
MAX_TOTAL_DURATION = 10**11  # the durations of one request's operations, summed
MAX_PRIORITY = 1_000
MAX_BUDGET_MS = 600_000
#: The due date an order without one gets inside the planner: later than any plan can end
#: (MAX_TIME + MAX_TOTAL_DURATION), so its tardiness is exactly 0; never shown to a caller.
NEVER_DUE = MAX_TIME + MAX_TOTAL_DURATION + 1

ID_PATTERN = r"^[^\x00-\x1f\x7f]*$"
Id = Field(min_length=1, max_length=200, pattern=ID_PATTERN,
           description="the caller's id: 1-200 characters, no control characters")  # fmt: skip
Time = Field(ge=0, le=MAX_TIME)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Window(Strict):
    start: int = Time
    end: int = Time

    @model_validator(mode="after")
    def _ordered(self):
        if self.end <= self.start:
            raise ValueError(f"a window must end after it starts (start {self.start}, end {self.end})")
        return self


class Equipment(Strict):
    id: str = Id
    classes: list[Annotated[str, Field(min_length=1, max_length=200, pattern=ID_PATTERN)]] = Field(
                               default_factory=list, max_length=100,
                               description="ISA-95 equipment classes it belongs to: an operation naming one may run"
                                           " on it")  # fmt: skip
    status: Literal["up", "down"] = "up"
    down_until: int | None = Field(default=None, ge=0, le=MAX_TIME, description="when a down machine is back")
    maintenance: list[Window] = Field(default_factory=list, description="planned windows: no work runs in them")

    @model_validator(mode="after")
    def _down_needs_until(self):
        if self.status == "down" and self.down_until is None:
            raise ValueError(f"equipment {self.id!r} is down: give down_until (when it is expected back)")
        return self


class Alternative(Strict):
    equipment: str = Id
    duration: int = Field(gt=0, le=MAX_DURATION, description="planned processing time on this equipment")


class Operation(Strict):
    """Runs on ``equipment`` for ``duration``; or on any member of ``equipment_class`` for
    ``duration``; or on any of ``alternatives``, each with its own duration (one of the three)."""

    id: str = Id
    equipment: str | None = Field(default=None, min_length=1, max_length=200, pattern=ID_PATTERN,
                                  description="the one piece of equipment that runs it")  # fmt: skip
    duration: int | None = Field(default=None, gt=0, le=MAX_DURATION,
                                 description="planned processing time (with equipment or equipment_class)")  # fmt: skip
    equipment_class: str | None = Field(default=None, min_length=1, max_length=200, pattern=ID_PATTERN,
                                        description="ISA-95 equipment class: any of its members runs it")  # fmt: skip
    alternatives: list[Alternative] | None = Field(default=None, max_length=MAX_EQUIPMENT,
                                                   description="the eligible equipment, each with its own duration")  # fmt: skip


def operation_shape_problem(op: Operation) -> str | None:
    """What is wrong with how an operation names its equipment, whatever the shop (None: nothing):
    one of equipment, equipment_class and alternatives; a duration with the first two only; each
    alternative listed once."""
    given = [name for name in ("equipment", "equipment_class", "alternatives") if getattr(op, name) is not None]
    if len(given) != 1:
        return (
            f"gives {' and '.join(given)}: give one of them"
            if given
            else "names no equipment: give equipment (with duration), equipment_class (with duration) or alternatives"
        )
    if op.alternatives is None:
        return None if op.duration is not None else f"gives {given[0]} without a duration"
    if op.duration is not None:
        return "gives duration and alternatives: each alternative has its own duration"
    if not op.alternatives:
        return "lists no eligible equipment in alternatives: list at least one"
    names = [a.equipment for a in op.alternatives]
    repeated = next((n for i, n in enumerate(names) if n in names[:i]), None)
    return None if repeated is None else f"lists equipment {repeated!r} twice in alternatives"


def operation_problem(op: Operation, known, members: dict[str, list[str]]) -> str | None:
    """:func:`operation_shape_problem`, then: every equipment it names is ``known`` and its class
    has members."""
    problem = operation_shape_problem(op)
    if problem is not None:
        return problem
    if op.alternatives is not None:
        unknown = next((a.equipment for a in op.alternatives if a.equipment not in known), None)
        return None if unknown is None else f"unknown equipment {unknown!r} in alternatives"
    if op.equipment is not None:
        return None if op.equipment in known else f"unknown equipment {op.equipment!r}"
    if not members.get(op.equipment_class):
        return f"no equipment belongs to class {op.equipment_class!r} (list it in an equipment's classes)"
    return None


def operation_options(op, members: dict[str, list[str]]) -> list[tuple[str, int]]:
    """The (equipment, duration) pairs that can run an operation (checked by :func:`operation_problem`)."""
    if op.alternatives is not None:
        return [(a.equipment, a.duration) for a in op.alternatives]
    if op.equipment_class is not None:
        return [(e, op.duration) for e in members[op.equipment_class]]
    return [(op.equipment, op.duration)]


def class_members(equipment) -> dict[str, list[str]]:
    """Equipment class -> its members' ids, in the equipment's order."""
    members: dict[str, list[str]] = {}
    for e in equipment:
        for name in e.classes:
            members.setdefault(name, []).append(e.id)
    return members


class WorkOrder(Strict):
    id: str = Id
    operations: list[Operation] = Field(min_length=1)
    release: int = Field(default=0, ge=0, le=MAX_TIME)
    due: int | None = Field(default=None, ge=0, le=MAX_TIME, description="absent: no due date (never late)")
    priority: int = Field(default=1, ge=1, le=MAX_PRIORITY, description="weight of its tardiness")

    @model_validator(mode="after")
    def _operations_name_equipment(self):
        for op in self.operations:
            problem = operation_shape_problem(op)
            if problem is not None:
                raise ValueError(f"work order {self.id!r} operation {op.id!r} {problem}")
        return self


def _unique(ids: list[str], what: str) -> None:
    seen: set[str] = set()
    for value in ids:
        if value in seen:
            raise ValueError(f"duplicated {what} id {value!r}")
        seen.add(value)


class Budgeted(Strict):
    method: str = Field(default="policy", min_length=1, max_length=200,
                        description="a decider spec (GET /v1/methods): policy, policy:64, mwkr, cpsat:1, hybrid:1, ...")  # fmt: skip
    budget_ms: int | None = Field(default=None, gt=0, le=MAX_BUDGET_MS,
                                  description="answer within this many ms of the request's arrival (default: 60 s)")  # fmt: skip


class OnTheirEquipment(Strict):
    """A body with ``equipment`` and ``work_orders``: checked that every operation runs on equipment it lists."""

    @model_validator(mode="after")
    def _consistent(self):
        check_orders(self.work_orders, self.equipment)
        return self


class ScheduleRequest(Budgeted, OnTheirEquipment):
    """Plan work orders from scratch (all equipment up from time 0): minimise the makespan."""

    work_orders: list[WorkOrder] = Field(min_length=1)
    equipment: list[Equipment] = Field(min_length=1)

    model_config = ConfigDict(
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
                },
                {  # alternative equipment: each eligible one with its duration, or an ISA-95 equipment class
                    "method": "hybrid:1",
                    "budget_ms": 2000,
                    "equipment": [{"id": "lathe-1", "classes": ["lathe"]}, {"id": "lathe-2", "classes": ["lathe"]},
                                  {"id": "mill"}],
                    "work_orders": [
                        {"id": "WO-1", "operations": [
                            {"id": "turn", "alternatives": [{"equipment": "lathe-1", "duration": 5},
                                                            {"equipment": "lathe-2", "duration": 7}]},
                            {"id": "face", "equipment": "mill", "duration": 3}]},
                        {"id": "WO-2", "due": 12, "priority": 2, "operations": [
                            {"id": "mill", "equipment": "mill", "duration": 4},
                            {"id": "turn", "equipment_class": "lathe", "duration": 2}]},
                    ],
                },
            ]
        },
    )  # fmt: skip


class OperationState(Operation):
    status: Literal["done", "running", "waiting"] = "waiting"
    equipment_used: str | None = Field(default=None, min_length=1, max_length=200, pattern=ID_PATTERN,
                                       description="done or running: the equipment it runs on (needed when it has"
                                                   " several)")  # fmt: skip
    start: int | None = Field(default=None, ge=0, le=MAX_TIME, description="done or running: when it started")
    end: int | None = Field(default=None, ge=0, le=MAX_TIME, description="done: when it ended; running: expected end")


class WorkOrderState(WorkOrder):
    operations: list[OperationState] = Field(min_length=1)


class Event(Strict):
    kind: Literal["breakdown", "repair", "arrival", "other"]
    time: int = Time
    equipment: str | None = Field(default=None, min_length=1, max_length=200, pattern=ID_PATTERN)
    work_order: str | None = Field(default=None, min_length=1, max_length=200, pattern=ID_PATTERN)


class RescheduleRequest(Budgeted):
    """Plan the rest of a running shop: done and running operations stay as they are."""

    time: int = Field(ge=0, le=MAX_TIME, description="now")
    work_orders: list[WorkOrderState] = Field(min_length=1)
    equipment: list[Equipment] = Field(min_length=1)
    events: list[Event] = Field(default_factory=list, description="what happened (recorded; the state says it all)")
    objective: Literal["total_weighted_tardiness", "makespan", "mean_flow_time"] = "total_weighted_tardiness"
    method: str = Field(default="hybrid:1", min_length=1, max_length=200)

    model_config = ConfigDict(
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
                },
                {  # a lathe is down: the waiting turning may move to the other lathe
                    "time": 4, "method": "hybrid:1", "budget_ms": 2000,
                    "equipment": [{"id": "lathe-1", "classes": ["lathe"], "status": "down", "down_until": 30},
                                  {"id": "lathe-2", "classes": ["lathe"]}, {"id": "mill"}],
                    "work_orders": [
                        {"id": "WO-1", "due": 15, "operations": [
                            {"id": "turn", "equipment_class": "lathe", "duration": 3, "status": "done", "start": 0,
                             "end": 3, "equipment_used": "lathe-1"},
                            {"id": "face", "equipment": "mill", "duration": 3, "status": "running", "start": 3,
                             "end": 6}]},
                        {"id": "WO-2", "due": 12, "priority": 2, "operations": [
                            {"id": "mill", "equipment": "mill", "duration": 4},
                            {"id": "turn", "alternatives": [{"equipment": "lathe-1", "duration": 2},
                                                            {"equipment": "lathe-2", "duration": 3}]}]},
                    ],
                },
            ]
        },
    )  # fmt: skip

    @model_validator(mode="after")
    def _consistent(self):
        check_orders(self.work_orders, self.equipment)
        check_shop_state(self)
        return self


def check_orders(orders, equipment) -> None:
    """Ids unique, every operation on known equipment (see :func:`operation_problem`), the summed
    durations (the longest alternative of each operation) within range."""
    _unique([e.id for e in equipment], "equipment")
    _unique([o.id for o in orders], "work order")
    known = {e.id for e in equipment}
    members = class_members(equipment)
    total = 0
    for order in orders:
        _unique([op.id for op in order.operations], f"operation (in work order {order.id!r})")
        for op in order.operations:
            problem = operation_problem(op, known, members)
            if problem is not None:
                raise ValueError(f"work order {order.id!r} operation {op.id!r} {problem}")
            total += max(d for _, d in operation_options(op, members))
    if total > MAX_TOTAL_DURATION:
        raise ValueError(f"the operations' durations sum to {total}; the limit is {MAX_TOTAL_DURATION:,}"
                         " (so that no objective can overflow): plan in a coarser time unit")  # fmt: skip


# ---------------------------------------------------------------------- shop states from the wire
def check_shop_state(request: RescheduleRequest) -> None:
    """A running shop that could have happened: per order done, then at most one running, then
    waiting operations, each started after its order's release and its predecessor's end; done
    work ended by now; no two done or running operations overlap on one piece of equipment;
    nothing runs on equipment that is down or through a known maintenance window. A ValueError
    names the work order and operation (the planner trusts a state: an impossible one would give
    plans that overlap)."""
    now = request.time
    busy: dict[str, list[tuple[int, int, str]]] = {}
    members = class_members(request.equipment)
    for order in request.work_orders:
        for op, interval in _check_order(order, now):
            busy.setdefault(used_equipment(order, op, members), []).append(
                (*interval, f"work order {order.id!r} operation {op.id!r}"))  # fmt: skip
    equipment = {e.id: e for e in request.equipment}
    events_refer_to_known(request, equipment)
    for name, intervals in busy.items():
        intervals.sort()
        for (_, end, first), (start, _, second) in zip(intervals, intervals[1:]):
            if start < end:
                raise ValueError(f"{second} overlaps {first} on equipment {name!r}: one operation at a time")
    for order in request.work_orders:
        for op in order.operations:
            if op.status == "running":
                _check_running_equipment(order, op, equipment[used_equipment(order, op, members)], now)


def used_equipment(order, op: OperationState, members: dict[str, list[str]]) -> str | None:
    """The equipment a done or running operation runs on (None when waiting): ``equipment_used``,
    which must be eligible, or its one eligible equipment. A ValueError names the operation."""
    where = f"work order {order.id!r} operation {op.id!r}"
    if op.status == "waiting":
        if op.equipment_used is not None:
            raise ValueError(f"{where} is waiting: it has no equipment_used yet (or give status running or done)")
        return None
    eligible = [e for e, _ in operation_options(op, members)]
    if op.equipment_used is None:
        if len(eligible) > 1:
            raise ValueError(f"{where} is {op.status} and can run on {', '.join(map(repr, eligible))}: give"
                             " equipment_used")  # fmt: skip
        return eligible[0]
    if op.equipment_used not in eligible:
        raise ValueError(f"{where} is {op.status} on {op.equipment_used!r}, which cannot run it (eligible:"
                         f" {', '.join(map(repr, eligible))})")  # fmt: skip
    return op.equipment_used


def _check_order(order: WorkOrderState, now: int):
    """Yield (operation, busy interval) for the done and running operations of one order, checked."""
    previous_end, previous_status = order.release, "done"
    for op in order.operations:
        where = f"work order {order.id!r} operation {op.id!r}"
        if op.status == "waiting":
            if op.start is not None or op.end is not None:
                raise ValueError(f"{where} is waiting: it has no start or end yet (or give status running or done)")
            previous_status = "waiting"
            continue
        if previous_status != "done":
            rule = "one running operation per work order" if previous_status == "running" else "operations run in order"
            raise ValueError(f"{where} is {op.status} after a {previous_status} operation: {rule}")
        if op.start is None or op.end is None:
            raise ValueError(f"{where} is {op.status}: give its start and end (expected end if running)")
        if op.end < op.start or (op.status == "done" and op.end > now) or op.start > now:
            raise ValueError(
                f"{where}: start {op.start}, end {op.end} do not fit a {op.status} operation at time {now}"
            )
        if op.start < previous_end:
            after = "its work order's release" if op is order.operations[0] else "the previous operation's end"
            raise ValueError(f"{where} starts at {op.start}, before {after} ({previous_end})")
        end = op.end if op.status == "done" else max(op.end, now)
        yield op, (op.start, end)
        previous_end, previous_status = end, op.status


def _check_running_equipment(order, op, equipment: Equipment, now: int) -> None:
    where = f"work order {order.id!r} operation {op.id!r}"
    if equipment.status == "down" and equipment.down_until is not None and equipment.down_until > now:
        raise ValueError(f"{where} is running on equipment {equipment.id!r}, which is down at time {now}")
    end = max(op.end, now)
    for window in equipment.maintenance:
        if window.start < end and op.start < window.end:
            raise ValueError(f"{where} runs from {op.start} to {end} on equipment {equipment.id!r}, through its"
                             f" maintenance window {window.start}-{window.end}")  # fmt: skip


def events_refer_to_known(request: RescheduleRequest, equipment: dict) -> None:
    """Every event names equipment and work orders of the request, and happened by now."""
    orders = {o.id for o in request.work_orders}
    for i, event in enumerate(request.events):
        if event.time > request.time:
            raise ValueError(f"events[{i}] at time {event.time} is after now ({request.time})")
        if event.equipment is not None and event.equipment not in equipment:
            raise ValueError(f"events[{i}]: unknown equipment {event.equipment!r}")
        if event.work_order is not None and event.work_order not in orders:
            raise ValueError(f"events[{i}]: unknown work order {event.work_order!r}")


class RequestError(SchedEnvError, ValueError):
    """A request the service refuses; ``status`` is its HTTP answer (and the MQTT errors topic's),
    ``headers`` what goes with it (Retry-After)."""

    status = 400

    def __init__(self, detail: str, status: int | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        if status is not None:
            self.status = status
        self.headers = headers or {}

    @property
    def detail(self) -> str:
        return str(self)


class TooLargeError(RequestError):
    """A request over a count limit (answered 413)."""

    status = 413


class BadBodyError(RequestError):
    """A body that is not UTF-8 JSON (answered 400)."""


class PlannedOperation(BaseModel):
    work_order: str
    operation: str
    equipment: str
    start: int
    end: int


class PlanResponse(BaseModel):
    plan: list[PlannedOperation]
    objectives: dict[str, int | float] = Field(description="makespan, total_weighted_tardiness, total_flow_time"
                                                           " (integers) and mean_flow_time")  # fmt: skip
    method: str
    status: str
    wall_time_ms: float = Field(description="from the request's arrival to its answer, parsing and planning included")
    budget_ms: int | None
    over_budget: bool = Field(description="wall_time_ms > budget_ms")


class ErrorResponse(BaseModel):
    detail: str


# ---------------------------------------------------------------------- shop sessions
Objective = Literal["total_weighted_tardiness", "makespan", "mean_flow_time"]


class ShopCreate(OnTheirEquipment):
    """A shop session: its equipment and how to plan it; events then keep its state (ISA-95: the
    equipment of a work centre, the work orders released to it)."""

    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=ID_PATTERN, description="a label")
    equipment: list[Equipment] = Field(min_length=1)
    work_orders: list[WorkOrder] = Field(default_factory=list, description="work orders released at the start")
    time: int = Field(default=0, ge=0, le=MAX_TIME, description="the shop's time at the start")
    objective: Objective = "total_weighted_tardiness"
    method: str = Field(default="hybrid:1", min_length=1, max_length=200,
                        description="the decider that replans after each batch of events (GET /v1/methods)")  # fmt: skip
    budget_ms: int = Field(default=1000, gt=0, le=MAX_BUDGET_MS,
                           description="a new plan within this many ms of the first event it answers")  # fmt: skip
    interruption: Literal["resume", "restart"] = Field(
        default="resume", description="an operation cut by equipment going down: resumes its work after, or restarts"
    )
    frozen_horizon: int | None = Field(default=None, ge=0, le=MAX_TIME,
                                       description="operations the last plan started before now + this keep their"
                                                   " order on their equipment (absent: every plan is free)")  # fmt: skip
    assumed_repair: int = Field(default=60, gt=0, le=MAX_DURATION,
                                description="equipment down without expected_until is planned as back this long"
                                            " after it went down (and never before now + 1)")  # fmt: skip

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "cell-3", "method": "hybrid:1", "budget_ms": 1000, "interruption": "resume",
                    "frozen_horizon": 10,
                    "equipment": [{"id": "lathe"}, {"id": "mill"}],
                    "work_orders": [
                        {"id": "WO-1", "due": 20, "operations": [{"id": "turn", "equipment": "lathe", "duration": 5},
                                                                 {"id": "face", "equipment": "mill", "duration": 3}]},
                    ],
                }
            ]
        },
    )  # fmt: skip


class ShopUpdate(Strict):
    """A live shop's new decider or budget (kept across restarts); its next plan uses them."""

    method: str | None = Field(default=None, min_length=1, max_length=200,
                               description="the decider that replans from now on, e.g. policy@NAME (a model"
                                           " registered on the server)")  # fmt: skip
    budget_ms: int | None = Field(default=None, gt=0, le=MAX_BUDGET_MS, description="the new replan budget")

    model_config = ConfigDict(json_schema_extra={"examples": [{"method": "policy@press-shop"}]})


class _ShopEvent(Strict):
    event_id: str = Field(min_length=1, max_length=200, pattern=ID_PATTERN,
                          description="the sender's id of this event: a repeat is acknowledged, never applied twice")  # fmt: skip
    time: int = Field(ge=0, le=MAX_TIME, description="shop time it happened (never before the shop's time)")


class WorkOrderReleased(_ShopEvent):
    type: Literal["work_order_released"]
    work_order: WorkOrder = Field(description="its release is at least the event's time")


class OperationStarted(_ShopEvent):
    type: Literal["operation_started"]
    work_order: str = Id
    operation: str = Id
    equipment: str | None = Field(default=None, min_length=1, max_length=200, pattern=ID_PATTERN,
                                  description="if given, checked: the operation's equipment")  # fmt: skip


class OperationFinished(OperationStarted):
    type: Literal["operation_finished"]


class EquipmentDown(_ShopEvent):
    type: Literal["equipment_down"]
    equipment: str = Id
    expected_until: int | None = Field(default=None, ge=0, le=MAX_TIME, description="when it is expected back")


class EquipmentUp(_ShopEvent):
    type: Literal["equipment_up"]
    equipment: str = Id


class WorkOrderCancelled(_ShopEvent):
    type: Literal["work_order_cancelled"]
    work_order: str = Id


class WorkOrderChanged(_ShopEvent):
    type: Literal["work_order_changed"]
    work_order: str = Id
    due: int | None = Field(default=None, ge=0, le=MAX_TIME, description="the new due date (null: none)")
    priority: int | None = Field(default=None, ge=1, le=MAX_PRIORITY, description="the new priority")


ShopEvent = Annotated[
    Union[WorkOrderReleased, OperationStarted, OperationFinished, EquipmentDown, EquipmentUp,  # noqa: UP007
          WorkOrderCancelled, WorkOrderChanged],
    Field(discriminator="type"),
]  # fmt: skip


class EventBatch(Strict):
    """Events in the order they happened; all are accepted or none."""

    events: list[ShopEvent] = Field(min_length=1)

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"events": [
                    {"event_id": "mes-1041", "type": "operation_started", "time": 2, "work_order": "WO-1",
                     "operation": "turn", "equipment": "lathe"},
                    {"event_id": "mes-1042", "type": "equipment_down", "time": 4, "equipment": "mill",
                     "expected_until": 9},
                    {"event_id": "mes-1043", "type": "work_order_released", "time": 4,
                     "work_order": {"id": "WO-2", "due": 30, "priority": 2,
                                    "operations": [{"id": "mill", "equipment": "mill", "duration": 4}]}},
                ]}
            ]
        },
    )  # fmt: skip


# ---------------------------------------------------------------------- parsing
class HugeNumber:
    """What an integer literal of more than 20 digits parses to: refused by the field it is in
    (Python's own limit would refuse 4 300 digits with an error that names no field)."""

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"<a {self.digits}-digit number>"


def _integer(text: str) -> int | HugeNumber:
    return int(text) if len(text) <= 20 else HugeNumber(len(text))


def _no_constant(name: str):
    raise BadBodyError(f"{name} is not a JSON number: send finite numbers only")


def read_json(raw: bytes) -> Any:
    """The body as JSON (NaN and Infinity refused), or a BadBodyError saying where it breaks."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadBodyError(f"the body is not UTF-8 text (byte {error.start}): send JSON in UTF-8") from None
    try:
        return json.loads(text, parse_int=_integer, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise BadBodyError(
            f"the body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except RecursionError:
        raise BadBodyError("the body's JSON nests too deeply") from None


def check_counts(data: Any) -> None:
    """Refuse a body over a count limit before validating it (validation costs ~5 us per item)."""
    if not isinstance(data, dict):
        return  # validation says what is wrong with it

    def count(items: Any, inner: str | None = None) -> int:
        if not isinstance(items, list):
            return 0
        if inner is None:
            return len(items)
        return sum(len(item[inner]) for item in items if isinstance(item, dict) and isinstance(item.get(inner), list))

    limits = (("work orders", count(data.get("work_orders")), MAX_OPERATIONS),
              ("operations", count(data.get("work_orders"), "operations"), MAX_OPERATIONS),
              ("equipment", count(data.get("equipment")), MAX_EQUIPMENT),
              ("maintenance windows", count(data.get("equipment"), "maintenance"), MAX_WINDOWS),
              ("events", count(data.get("events")), MAX_EVENTS))  # fmt: skip
    for what, n, limit in limits:
        if n > limit:
            raise TooLargeError(f"{n:,} {what} in one request; the limit is {limit:,}")


class InvalidRequestError(RequestError):
    """A body that breaks the schema or describes an impossible shop (answered 422); the message
    names the fields."""

    status = 422


#: Items validated per pydantic call: pydantic holds the GIL for a whole call, so a big body is
#: validated in small calls and the event loop (and /healthz) runs between them.
PIECE = 200


def parse_request(raw: bytes, model: type[Strict], *, one_event_allowed: bool = False) -> Strict:
    """A request body as ``model``: JSON, within the count limits, then validated (strict types,
    ranges, a consistent shop). ``one_event_allowed``: an event batch may be one event object (as
    an MQTT message may be). Raises BadBodyError (400), TooLargeError (413) or InvalidRequestError (422)."""
    from pydantic import ValidationError

    data = read_json(raw)
    if one_event_allowed and isinstance(data, dict) and "events" not in data and "type" in data:
        data = {"events": [data]}
    check_counts(data)
    original = _shallow_copy(data)  # what the caller sent, for naming ids in errors (validation replaces items)
    errors: list[dict] = []
    if isinstance(data, dict) and isinstance(data.get("work_orders"), list):
        orders, operations = (WorkOrderState, OperationState) if model is RescheduleRequest else (WorkOrder, Operation)
        for i, order in enumerate(data["work_orders"]):
            if (
                isinstance(order, dict)
                and isinstance(order.get("operations"), list)
                and len(order["operations"]) > PIECE
            ):
                order["operations"] = validate_in_pieces(
                    order["operations"], operations, ("work_orders", i, "operations"), errors
                )
        data["work_orders"] = validate_in_pieces(data["work_orders"], orders, ("work_orders",), errors)
    if model is EventBatch and isinstance(data, dict) and isinstance(data.get("events"), list):
        data["events"] = validate_in_pieces(data["events"], ShopEvent, ("events",), errors)
    if errors:
        raise InvalidRequestError(describe_errors(errors, original))
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InvalidRequestError(describe_errors(error.errors(include_url=False), original)) from None


def _shallow_copy(data: Any) -> Any:
    """``data`` with its work orders' (and their operations') lists copied: validating in pieces
    replaces those lists' items, the copies keep the caller's dicts."""
    if not isinstance(data, dict) or not isinstance(data.get("work_orders"), list):
        return data
    orders = [dict(o, operations=list(o["operations"])) if isinstance(o, dict) and isinstance(o.get("operations"), list)
              else o for o in data["work_orders"]]  # fmt: skip
    return {**data, "work_orders": orders}


def validate_in_pieces(items: list, model, where: tuple, errors: list[dict]) -> list:
    """``items`` validated as ``model`` one call per :data:`PIECE` items (validated instances pass
    through the enclosing model unchanged); errors collected with their location."""
    from pydantic import ValidationError

    adapter = _list_of(model)
    validated = []
    for first in range(0, len(items), PIECE):
        try:
            validated += adapter.validate_python(items[first : first + PIECE], strict=True)
        except ValidationError as error:
            for problem in error.errors(include_url=False):
                index, *rest = problem["loc"]
                errors.append({**problem, "loc": (*where, first + index, *rest)})
            if len(errors) >= 5:
                break
    return validated


@functools.cache
def _list_of(model):
    """pydantic's validator of a list of ``model`` (built once per model)."""
    from pydantic import TypeAdapter

    return TypeAdapter(list[model])


def describe_errors(errors: list[dict], data: Any = None) -> str:
    """Pydantic's errors in one line, each naming its field (the first five) and, in a work order
    of ``data`` (the body), the work order's and operation's ids."""
    parts = []
    for problem in errors[:5]:
        loc = problem.get("loc", ())
        where = ".".join(str(p) for p in loc if p != "body") or "body"
        if isinstance(problem.get("input"), HugeNumber):
            text = f"{where}: {problem['input'].digits}-digit number; numbers here are at most {MAX_TIME:,}"
        else:
            text = f"{where}: {problem.get('msg', 'invalid')}"
        parts.append(text + _ids_along(loc, data))
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def _ids_along(loc: tuple, data: Any) -> str:
    """`` (work order 'WO-1' operation 'turn')`` for an error inside a work order of ``data`` (its
    items may be dicts or validated models); empty when it is not in one."""
    names, node, key = {}, data, None
    for part in loc:
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(node, dict) and part in node:
            key, node = part, node[part]
            if key != "work_order":
                continue
        elif isinstance(part, str) and hasattr(node, part) and not isinstance(node, (dict, list)):
            key, node = part, getattr(node, part)
            continue
        else:
            continue  # a union's tag, or a place the body does not have
        found = node.get("id") if isinstance(node, dict) else getattr(node, "id", None)
        role = {"work_orders": "work order", "work_order": "work order", "operations": "operation"}.get(key)
        if role is not None and isinstance(found, str):
            names[role] = found
    text = " ".join(f"{role} {value!r}" for role, value in names.items())
    return f" ({text})" if text else ""


# ---------------------------------------------------------------------- edge conversions
def build_decider(method: str, objective: str, models: dict[str, Any], models_dir: str | None = None):
    """The decider a request or a shop names, planning with the policies loaded at start-up (a
    request cannot make the service read a file it names: any spec that may name one is refused,
    422); ``policy@NAME`` is a shipped model or one registered in the server's ``models_dir``."""
    from baselines import deciders

    try:
        parsed = deciders.MethodSpec.parse(method)
        if parsed.name == "policy" and parsed.qualifier is not None:
            return _registered_policy(parsed, objective, models, models_dir)
        decider = deciders.make(method, objective=objective, allow_files=False)
    except (ValueError, SchedEnvError, ImportError) as error:  # SchedEnvError: a model that cannot be loaded
        raise InvalidRequestError(f"method: {(str(error).strip().splitlines() or [''])[0][:300]}") from None
    deciders.give_models(decider, models)
    return decider


def _registered_policy(parsed, objective: str, models: dict[str, Any], models_dir: str | None):
    """``policy[:K]@NAME``: the shipped model NAME, or ``NAME.onnx`` in the server's models folder."""
    from pathlib import Path

    from agents.loading import MODEL_NAME, SHIPPED, ModelFolder, load_policy
    from baselines import deciders

    name = parsed.qualifier
    if not MODEL_NAME.match(name):
        parsed.refuse_args_after_qualifier()  # policy@NAME:16
        raise deciders.DeciderError(f"method {parsed.text!r}: '@{name}' may name a file, and this host reads none;"
                                    " '@NAME' names a model registered on the server (letters, digits, '_', '-')")  # fmt: skip
    if name in models:
        loaded = models[name]
    elif name in SHIPPED:
        loaded = load_policy(kind=name)
    elif models_dir is not None:
        loaded = ModelFolder(Path(models_dir)).load(name)
    else:
        raise deciders.DeciderError(f"{parsed.text!r}: this server has no models folder, so '@{name}' names nothing;"
                                    f" use a shipped model ({', '.join(SHIPPED)}) or start it with --models DIR")  # fmt: skip
    decider = deciders.make(parsed.text.partition("@")[0], objective=objective, allow_files=False)
    decider.pin(loaded, parsed.text)
    return decider


def to_instance(request: ScheduleRequest, *, full: bool = False):
    """The work orders as a :class:`JobShopInstance` (equipment in the request's order; a flexible
    one when an operation has several eligible equipment); ``full``: release and due dates always
    set (what a ShopState needs)."""
    index = {e.id: m for m, e in enumerate(request.equipment)}
    members = class_members(request.equipment)
    orders = request.work_orders
    jobs = [[[(index[e], d) for e, d in operation_options(op, members)] for op in order.operations] for order in orders]
    has_due = full or any(o.due is not None for o in orders)
    return _instance(
        jobs, n_machines=len(request.equipment), name="request",
        release_dates=[o.release for o in orders] if full or any(o.release for o in orders) else None,
        due_dates=[o.due if o.due is not None else NEVER_DUE for o in orders] if has_due else None,
        weights=[o.priority for o in orders],
    )  # fmt: skip


def _instance(jobs: list[list[list[tuple[int, int]]]], **fields):
    """Jobs of operations given as (machine, duration) options: a classic instance when every
    operation has one, else a flexible one."""
    from instances import JobShopInstance

    if all(len(options) == 1 for ops in jobs for options in ops):
        return JobShopInstance.from_jobs([[options[0] for options in ops] for ops in jobs], **fields)
    return JobShopInstance.from_alternatives(jobs, **fields)


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


def to_state(request: RescheduleRequest, interruption: str = "resume"):
    """The running shop as a :class:`ShopState`: active work orders, done and running work, downtimes
    (``request``: anything with a RescheduleRequest's fields, e.g. a shop session's view, whose
    operations carry their ``options`` and run on their ``equipment``)."""
    from sched_env.snapshot import ShopState

    index = {e.id: m for m, e in enumerate(request.equipment)}
    members = class_members(request.equipment) if isinstance(request, RescheduleRequest) else {}
    active = [o for o in request.work_orders if any(op.status != "done" for op in o.operations)]
    if not active:
        active = request.work_orders[:1]
    jobs, done, running = [], [], []
    for j, order in enumerate(active):
        jobs.append([])
        for k, op in enumerate(order.operations):
            options, used = _options_and_use(order, op, members)
            jobs[-1].append([(index[e], d) for e, d in options])
            if op.status == "done":
                done.append([j, k, index[used], op.start, op.end])
            elif op.status == "running":
                running.append([j, k, index[used], op.start, max(op.end, request.time)])
    due = [o.due if o.due is not None else NEVER_DUE for o in active]
    instance = _instance(jobs, n_machines=len(request.equipment), name="state", release_dates=[o.release for o in active],
                         due_dates=due, weights=[o.priority for o in active])  # fmt: skip
    windows = unavailable_windows(request)
    downtimes = np.array(windows, dtype=np.int64).reshape(-1, 4)
    return ShopState(request.time, instance, np.arange(len(active)), done, running, downtimes, interruption), active


def _options_and_use(order, op, members: dict[str, list[str]]) -> tuple[list[tuple[str, int]], str | None]:
    """An operation's (equipment, duration) options and the equipment it runs on (None: waiting),
    from the wire's OperationState or a session's operation (which holds both)."""
    if isinstance(op, OperationState):
        return operation_options(op, members), used_equipment(order, op, members)
    return op.options, op.equipment


def plan_rows(schedule, orders, equipment) -> list[dict]:
    """A schedule back in the caller's ids, in start order (plain dicts: PlannedOperation's fields)."""
    rows = sorted(zip(schedule.start.tolist(), schedule.job.tolist(), schedule.op.tolist(), schedule.machine.tolist(),
                      schedule.end.tolist()))  # fmt: skip
    return [{"work_order": orders[j].id, "operation": orders[j].operations[k].id, "equipment": equipment[m].id,
             "start": s, "end": e} for s, j, k, m, e in rows]  # fmt: skip
