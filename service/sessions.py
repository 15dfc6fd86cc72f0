"""A shop session: the state of one running shop, kept by its events, and the plans made of it.

Events are applied in batches, all or none: a batch is applied to a draft that copies what it
touches, and a refused event (:class:`RefusedEventError`: it names the event and the field) drops the
draft, so a refused batch changes nothing. The same code applies events when they arrive and
when a session is rebuilt from its log, so a rebuilt state is the state that was there.

What an event does to the state:

- ``work_order_released``: a new work order, its operations waiting (released at the event's time
  at the earliest).
- ``operation_started``: the next operation of its work order runs on its equipment, which must be
  up and free; it is expected to end ``duration`` later (with ``resume``, later by the downtime
  met on the way). An operation with several eligible equipment (alternatives, an equipment
  class) starts on the one the event names, which must be eligible (any eligible, free, up one).
- ``operation_finished``: a running operation is done at the event's time; the last one completes
  its work order.
- ``equipment_down``: the equipment is down, planned as back at ``expected_until`` (or after the
  shop's ``assumed_repair``); an operation running on it resumes after (``resume``) or is waiting
  again and must start anew (``restart``). A second ``equipment_down`` updates the expected time.
- ``equipment_up``: back up; a paused operation goes on.
- ``work_order_cancelled``: the work order leaves the shop (an operation running is stopped).
- ``work_order_changed``: a new due date (``null``: none) and/or priority.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from instances import SchedEnvError
from service.schemas import ShopCreate

#: Moved operations listed in a plan's changes (the counts cover all of them).
MAX_LISTED_CHANGES = 200


class RefusedEventError(SchedEnvError, ValueError):
    """An event the session's state does not allow; ``field`` is where it goes wrong."""

    def __init__(self, index: int, event, field_name: str, reason: str) -> None:
        self.index, self.event_id, self.field = index, event.event_id, field_name
        super().__init__(f"events[{index}] ({event.type} {event.event_id!r}): {field_name}: {reason}")


@dataclass
class SessionOperation:  # a session's own state types (the wire's are service.schemas.OperationState etc.)
    id: str
    options: list[tuple[str, int]]  # (equipment, duration) that can run it
    named: dict[str, Any]  # how the caller named its equipment (equipment, equipment_class or alternatives)
    equipment: str | None = None  # the equipment it runs on: set when it starts (from the start if it has one)
    status: str = "waiting"  # waiting, running, done
    start: int | None = None
    end: int | None = None  # done: when it ended

    @property
    def duration(self) -> int:
        """Its duration on its equipment (not yet chosen: its longest option)."""
        if self.equipment is None:
            return max(d for _, d in self.options)
        return next(d for e, d in self.options if e == self.equipment)

    def eligible(self) -> list[str]:
        return [e for e, _ in self.options]


@dataclass
class SessionWorkOrder:
    id: str
    operations: list[SessionOperation]
    release: int
    due: int | None
    priority: int

    def copy(self) -> SessionWorkOrder:
        return replace(self, operations=[replace(op) for op in self.operations])

    def next_operation(self) -> int:
        """Index of the first operation not done (len(operations) when complete)."""
        for k, op in enumerate(self.operations):
            if op.status != "done":
                return k
        return len(self.operations)


@dataclass
class SessionEquipment:
    id: str
    maintenance: list[tuple[int, int]]
    down_since: int | None = None
    expected_until: int | None = None
    busy: tuple[str, int] | None = None  # (work order, operation index) running on it
    outages: list[tuple[int, int]] = field(default_factory=list)  # since the running operation started

    def copy(self) -> SessionEquipment:
        return replace(self, outages=list(self.outages))


class ShopSession:
    """One shop's state in the caller's ids: equipment, active work orders, the shop time, and how
    many events made it."""

    def __init__(self, config: ShopCreate) -> None:
        from service.schemas import class_members

        self.config = config
        self.time = config.time
        self.equipment = {e.id: _equipment(e, config.time) for e in config.equipment}
        self.members = class_members(config.equipment)  # equipment class -> its members
        self.orders: dict[str, SessionWorkOrder] = {}
        self.finished: dict[str, str] = {}  # work order -> completed / cancelled
        self.applied = 0  # events applied
        self.last_event_id: str | None = None
        for order in config.work_orders:
            self.orders[order.id] = _work_order(order, config.time, self.members)

    # ------------------------------------------------------------------ events
    def apply(self, events: list, *, limits: bool = True) -> None:
        """Apply a batch in order, all or none (:class:`RefusedEventError` changes nothing).
        ``limits=False`` (replaying a log): the size limits were checked when the events came."""
        self.commit(self.prepare(events, limits=limits))

    def prepare(self, events: list, indices: list[int] | None = None, *, limits: bool = True) -> _Draft:
        """The batch applied to a draft (the state is unchanged until :meth:`commit`); a refused
        event raises :class:`RefusedEventError` naming ``events[indices[i]]``."""
        draft = _Draft(self, limits)
        for i, event in enumerate(events):
            index = i if indices is None else indices[i]
            if event.time < draft.time:
                raise RefusedEventError(index, event, "time", f"{event.time} is before the shop's time {draft.time}:"
                                                         " send events in the order they happened")  # fmt: skip
            draft.time = event.time
            _HANDLERS[event.type](draft, index, event)
        draft.count, draft.last_event_id = len(events), events[-1].event_id if events else self.last_event_id
        return draft

    def commit(self, draft: _Draft) -> None:
        draft.commit()
        self.applied += draft.count
        self.last_event_id = draft.last_event_id

    def open_work(self) -> tuple[int, int]:
        """The operations of the shop's work orders and their durations, summed (what the limits bound)."""
        return (sum(len(o.operations) for o in self.orders.values()),
                sum(op.duration for o in self.orders.values() for op in o.operations))  # fmt: skip

    # ------------------------------------------------------------------ views
    def back_at(self, equipment: SessionEquipment, now: int) -> int | None:
        """When down equipment is planned as back up (None: it is up)."""
        if equipment.down_since is None:
            return None
        expected = equipment.expected_until
        if expected is None:
            expected = equipment.down_since + self.config.assumed_repair
        return max(expected, now + 1)

    def expected_end(self, op: SessionOperation, equipment: SessionEquipment, now: int) -> int:
        """When a running operation is expected to end: its duration after its start, pushed out
        (``resume``) by the downtime met since it started and the downtime known ahead."""
        if self.config.interruption == "restart":
            return max(op.start + op.duration, now)
        windows = list(equipment.outages) + [w for w in equipment.maintenance if w[1] > op.start]
        if equipment.down_since is not None:
            windows.append((equipment.down_since, self.back_at(equipment, now)))
        rows = np.array([(0, a, b, 0) for a, b in windows], dtype=np.int64).reshape(-1, 4)
        from sched_env.snapshot import planned_end

        return max(planned_end(op.start, op.duration, rows), now)

    def end_of(self, op: SessionOperation, now: int) -> int | None:
        """An operation's end: real when done, expected when running, None when waiting."""
        return self.expected_end(op, self.equipment[op.equipment], now) if op.status == "running" else op.end

    def to_dict(self) -> dict[str, Any]:
        """The state as the API shows it (GET /v1/shops/{id}); equal states give equal dicts."""
        now = self.time
        equipment = []
        for e in self.equipment.values():
            row: dict[str, Any] = {"id": e.id, "status": "down" if e.down_since is not None else "up"}
            if e.down_since is not None:
                row |= {
                    "down_since": e.down_since,
                    "expected_until": e.expected_until,
                    "planned_back": self.back_at(e, now),
                }
            if e.busy is not None:
                row["running"] = {"work_order": e.busy[0], "operation": self.orders[e.busy[0]].operations[e.busy[1]].id}
            if e.maintenance:
                row["maintenance"] = [{"start": a, "end": b} for a, b in e.maintenance]
            equipment.append(row)
        orders = []
        for o in self.orders.values():
            ops = []
            for op in o.operations:
                row = {"id": op.id, **op.named, "status": op.status}
                if op.status != "waiting":
                    row["start"], row["end"] = op.start, self.end_of(op, now)
                    if len(op.options) > 1:
                        row["equipment_used"] = op.equipment
                ops.append(row)
            orders.append({"id": o.id, "release": o.release, "due": o.due, "priority": o.priority, "operations": ops})
        counts = {"completed": 0, "cancelled": 0}
        for status in self.finished.values():
            counts[status] += 1
        return {"time": now, "events": self.applied, "last_event_id": self.last_event_id, "equipment": equipment,
                "work_orders": orders, "work_orders_completed": counts["completed"],
                "work_orders_cancelled": counts["cancelled"]}  # fmt: skip

    def shop_state(self):
        """The active work as a :class:`ShopState` (with the work orders in its job order), or
        (None, []) when no work is left."""
        from service.schemas import to_state

        if not self.orders:
            return None, []
        now = self.time
        view = _PlanningView(now, [], [])
        for e in self.equipment.values():
            back = self.back_at(e, now)
            view.equipment.append(_EquipmentView(e.id, "up" if back is None else "down", back,
                                                 [_WindowView(a, b) for a, b in e.maintenance]))  # fmt: skip
        for o in self.orders.values():
            view.work_orders.append(
                replace(o, operations=[replace(op, end=self.end_of(op, now)) for op in o.operations])
            )
        state, active = to_state(view, interruption=self.config.interruption)
        return state, active


@dataclass
class _PlanningView:  # what service.schemas.to_state reads of a running shop
    time: int
    work_orders: list
    equipment: list


@dataclass
class _EquipmentView:
    id: str
    status: str
    down_until: int | None
    maintenance: list


@dataclass
class _WindowView:
    start: int
    end: int


def _equipment(e, now: int) -> SessionEquipment:
    state = SessionEquipment(e.id, [(w.start, w.end) for w in e.maintenance])
    if e.status == "down":
        state.down_since, state.expected_until = now, e.down_until
    return state


def _work_order(order, now: int, members: dict[str, list[str]]) -> SessionWorkOrder:
    from service.schemas import operation_options

    ops = []
    for op in order.operations:
        options = operation_options(op, members)
        named = op.model_dump(include={"equipment", "equipment_class", "duration", "alternatives"}, exclude_none=True)
        ops.append(SessionOperation(op.id, options, named, equipment=options[0][0] if len(options) == 1 else None))
    return SessionWorkOrder(order.id, ops, max(order.release, now), order.due, order.priority)


class _Draft:
    """A batch's changes over a session: work orders and equipment copied when first touched."""

    def __init__(self, shop: ShopSession, limits: bool = True) -> None:
        self.shop, self.time, self.limits = shop, shop.time, limits
        self.orders: dict[str, SessionWorkOrder | None] = {}  # None: left the shop in this batch
        self.equipment: dict[str, SessionEquipment] = {}
        self.finished: dict[str, str] = {}
        # operations of the shop's work orders and their summed durations: counted once per batch, then kept
        self.open_operations: int | None = None
        self.open_duration = 0
        self.count, self.last_event_id = 0, shop.last_event_id

    def order(self, index: int, event, key: str | None = None) -> SessionWorkOrder:
        """The work order ``key`` (default: the event's), copied for the batch; refused if not in the shop."""
        key = event.work_order if key is None else key
        if key in self.orders and self.orders[key] is not None:
            return self.orders[key]
        found = None if key in self.orders else self.shop.orders.get(key)
        if found is None:
            status = self.finished.get(key) or self.shop.finished.get(key)
            reason = f"work order {key!r} is {status}" if status else f"unknown work order {key!r}"
            raise RefusedEventError(index, event, "work_order", reason)
        self.orders[key] = copy = found.copy()
        return copy

    def known_order(self, key: str) -> bool:
        if key in self.orders:
            return True
        return key in self.shop.orders or key in self.shop.finished or key in self.finished

    def unit(self, index: int, event, key: str) -> SessionEquipment:
        if key not in self.equipment:
            found = self.shop.equipment.get(key)
            if found is None:
                raise RefusedEventError(index, event, "equipment", f"unknown equipment {key!r}")
            self.equipment[key] = found.copy()
        return self.equipment[key]

    def finish(self, key: str, status: str) -> None:
        """Work order ``key`` leaves the shop (its operations no longer count as open)."""
        leaving = self.orders.get(key)
        if self.open_operations is not None and leaving is not None:
            self.open_operations -= len(leaving.operations)
            self.open_duration -= sum(op.duration for op in leaving.operations)
        self.orders[key] = None
        self.finished[key] = status

    def commit(self) -> None:
        shop = self.shop
        for key, order in self.orders.items():
            if order is None:
                shop.orders.pop(key, None)
            else:
                shop.orders[key] = order
        shop.equipment.update(self.equipment)
        shop.finished.update(self.finished)
        shop.time = self.time


# ---------------------------------------------------------------------- one handler per event type
def _released(draft: _Draft, index: int, event) -> None:
    order = event.work_order
    if draft.known_order(order.id):
        status = draft.finished.get(order.id) or draft.shop.finished.get(order.id) or "in the shop"
        raise RefusedEventError(
            index, event, "work_order.id", f"work order {order.id!r} is already {status}: ids are unique"
        )
    from service.schemas import operation_problem

    seen = set()
    for k, op in enumerate(order.operations):
        problem = operation_problem(op, draft.shop.equipment, draft.shop.members)
        if problem is not None:
            field_name = "equipment" if op.equipment is not None else ("equipment_class" if op.alternatives is None
                                                                       else "alternatives")  # fmt: skip
            raise RefusedEventError(index, event, f"work_order.operations[{k}].{field_name}",
                                    f"work order {order.id!r} operation {op.id!r} {problem}")  # fmt: skip
        if op.id in seen:
            raise RefusedEventError(
                index, event, f"work_order.operations[{k}].id", f"duplicated operation id {op.id!r}"
            )
        seen.add(op.id)
    if draft.limits:
        _within_limits(draft, index, event)
    draft.orders[order.id] = _work_order(order, event.time, draft.shop.members)


def _within_limits(draft: _Draft, index: int, event) -> None:
    """A released work order keeps the shop's open work within the limits of ``/v1/schedule``:
    operations, and their durations summed (so that no objective overflows or is misread)."""
    from service.schemas import MAX_OPERATIONS, MAX_TOTAL_DURATION, operation_options

    operations = event.work_order.operations
    if draft.open_operations is None:
        draft.open_operations, draft.open_duration = draft.shop.open_work()
    draft.open_operations += len(operations)
    draft.open_duration += sum(max(d for _, d in operation_options(op, draft.shop.members)) for op in operations)
    if draft.open_duration > MAX_TOTAL_DURATION:
        raise RefusedEventError(index, event, "work_order.operations", f"the durations of the shop's work orders would"
                                f" sum to {draft.open_duration:,}; the limit is {MAX_TOTAL_DURATION:,}: plan in a"
                                " coarser time unit, or finish or cancel work orders first")  # fmt: skip
    if draft.open_operations > MAX_OPERATIONS:
        raise RefusedEventError(index, event, "work_order", f"the shop would hold more than {MAX_OPERATIONS:,} operations"
                                                       " not yet done: finish or cancel work orders first")  # fmt: skip


def _operation(draft: _Draft, index: int, event) -> tuple[SessionWorkOrder, int, SessionOperation]:
    order = draft.order(index, event)
    for k, op in enumerate(order.operations):
        if op.id == event.operation:
            return order, k, op
    raise RefusedEventError(index, event, "operation", f"work order {order.id!r} has no operation {event.operation!r}")


def _started(draft: _Draft, index: int, event) -> None:
    order, k, op = _operation(draft, index, event)
    where = f"operation {op.id!r} of work order {order.id!r}"
    if op.status != "waiting":
        raise RefusedEventError(index, event, "operation", f"{where} is already {op.status}")
    if k != order.next_operation():
        before = order.operations[k - 1]
        raise RefusedEventError(index, event, "operation", f"{where} follows {before.id!r}, which is {before.status}:"
                                                      " operations run in order")  # fmt: skip
    if event.time < order.release:
        raise RefusedEventError(index, event, "time", f"work order {order.id!r} is released at {order.release}")
    unit = draft.unit(index, event, _starts_on(index, event, order, op))
    if unit.down_since is not None:
        raise RefusedEventError(index, event, "equipment", f"equipment {unit.id!r} is down since {unit.down_since}:"
                                                      " send equipment_up first")  # fmt: skip
    if unit.busy is not None:
        other = draft.shop.orders.get(unit.busy[0]) or draft.orders.get(unit.busy[0])
        busy_op = other.operations[unit.busy[1]].id if other is not None else "?"
        raise RefusedEventError(index, event, "equipment", f"equipment {unit.id!r} is running operation {busy_op!r} of"
                                                      f" work order {unit.busy[0]!r}: finish it first")  # fmt: skip
    op.status, op.start, op.equipment = "running", event.time, unit.id
    unit.busy, unit.outages = (order.id, k), []


def _starts_on(index: int, event, order: SessionWorkOrder, op: SessionOperation) -> str:
    """The equipment an operation starts on: the event's, which must be eligible; with none named,
    its only eligible equipment."""
    eligible = op.eligible()
    where = f"operation {op.id!r} of work order {order.id!r}"
    if event.equipment is None:
        if len(eligible) > 1:
            raise RefusedEventError(index, event, "equipment", f"{where} can run on {', '.join(map(repr, eligible))}:"
                                                          " name the one it started on")  # fmt: skip
        return eligible[0]
    if event.equipment not in eligible and len(eligible) == 1:
        raise RefusedEventError(index, event, "equipment", f"{where} runs on {eligible[0]!r}, not {event.equipment!r}")
    if event.equipment not in eligible:
        raise RefusedEventError(index, event, "equipment", f"equipment {event.equipment!r} cannot run {where}"
                                                      f" (eligible: {', '.join(map(repr, eligible))})")  # fmt: skip
    return event.equipment


def _finished(draft: _Draft, index: int, event) -> None:
    order, k, op = _operation(draft, index, event)
    where = f"operation {op.id!r} of work order {order.id!r}"
    if op.status != "running":
        reason = "has not started (send operation_started first)" if op.status == "waiting" else "is already done"
        raise RefusedEventError(index, event, "operation", f"{where} {reason}")
    if event.equipment is not None and event.equipment != op.equipment:
        raise RefusedEventError(index, event, "equipment", f"{where} runs on {op.equipment!r}, not {event.equipment!r}")
    unit = draft.unit(index, event, op.equipment)
    if unit.down_since is not None:
        raise RefusedEventError(index, event, "equipment", f"equipment {unit.id!r} is down since {unit.down_since}:"
                                                      " send equipment_up first")  # fmt: skip
    op.status, op.end = "done", event.time
    unit.busy, unit.outages = None, []
    if k == len(order.operations) - 1:
        draft.finish(order.id, "completed")


def _down(draft: _Draft, index: int, event) -> None:
    unit = draft.unit(index, event, event.equipment)
    if event.expected_until is not None and event.expected_until <= event.time:
        raise RefusedEventError(index, event, "expected_until", f"{event.expected_until} is not after the event's time"
                                                           f" {event.time}: give a later time, or leave it out")  # fmt: skip
    if unit.down_since is not None:  # already down: a new estimate
        unit.expected_until = event.expected_until
        return
    unit.down_since, unit.expected_until = event.time, event.expected_until
    if unit.busy is not None and draft.shop.config.interruption == "restart":
        order = draft.order(index, event, unit.busy[0])
        op = order.operations[unit.busy[1]]
        op.status, op.start = "waiting", None  # its work is lost: it starts anew (on any eligible equipment)
        if len(op.options) > 1:
            op.equipment = None
        unit.busy = None


def _up(draft: _Draft, index: int, event) -> None:
    unit = draft.unit(index, event, event.equipment)
    if unit.down_since is None:
        raise RefusedEventError(index, event, "equipment", f"equipment {unit.id!r} is not down")
    if unit.busy is not None:
        unit.outages.append((unit.down_since, event.time))
    unit.down_since = unit.expected_until = None


def _cancelled(draft: _Draft, index: int, event) -> None:
    order = draft.order(index, event)
    for op in order.operations:
        if op.status == "running":
            draft.unit(index, event, op.equipment).busy = None
    draft.finish(order.id, "cancelled")


def _changed(draft: _Draft, index: int, event) -> None:
    given = event.model_fields_set & {"due", "priority"}
    if not given:
        raise RefusedEventError(index, event, "due", "give a new due date (null: none) or a new priority")
    order = draft.order(index, event)
    if "due" in given:
        order.due = event.due
    if "priority" in given:
        if event.priority is None:
            raise RefusedEventError(index, event, "priority", "a priority is a number from 1")
        order.priority = event.priority


_HANDLERS = {
    "work_order_released": _released, "operation_started": _started, "operation_finished": _finished,
    "equipment_down": _down, "equipment_up": _up, "work_order_cancelled": _cancelled, "work_order_changed": _changed,
}  # fmt: skip


# ---------------------------------------------------------------------- plans: frozen horizon and stability
def stability(previous: list[dict] | None, current: list[dict]) -> dict[str, Any]:
    """What changed for the operations planned (not yet started) in both plans: how many moved to
    other equipment or to another position in their equipment's sequence, how far starts moved,
    and the moved ones."""
    if previous is None:
        return {"compared": 0, "moved": 0, "position_changes": 0, "equipment_changes": 0, "start_shift_max": 0,
                "start_shift_mean": 0.0, "added": sum(r["status"] == "planned" for r in current),
                "changes": []}  # fmt: skip
    old = {(r["work_order"], r["operation"]): r for r in previous if r["status"] == "planned"}
    new = {(r["work_order"], r["operation"]): r for r in current if r["status"] == "planned"}
    common = [key for key in new if key in old]
    ranks_old, ranks_new = _ranks(old, common), _ranks(new, common)
    changes, shifts, position_changes, equipment_changes = [], [], 0, 0
    for key in common:
        shift = new[key]["start"] - old[key]["start"]
        shifts.append(abs(shift))
        other_equipment = new[key]["equipment"] != old[key]["equipment"]
        equipment_changes += other_equipment
        moved_position = other_equipment or ranks_old[key] != ranks_new[key]
        position_changes += moved_position
        if shift or moved_position:
            change = {"work_order": key[0], "operation": key[1], "equipment": new[key]["equipment"],
                      "start_from": old[key]["start"], "start_to": new[key]["start"],
                      "position_from": ranks_old[key], "position_to": ranks_new[key]}  # fmt: skip
            if other_equipment:
                change["equipment_from"] = old[key]["equipment"]
            changes.append(change)
    return {"compared": len(common), "moved": len(changes), "position_changes": position_changes,
            "equipment_changes": equipment_changes, "start_shift_max": max(shifts, default=0),
            "start_shift_mean": round(sum(shifts) / len(shifts), 3) if shifts else 0.0,
            "added": len(new) - len(common), "changes": changes[:MAX_LISTED_CHANGES]}  # fmt: skip


def _ranks(rows: dict, common: list) -> dict:
    """Per operation in ``common``: its position among ``common`` on its equipment, by start."""
    by_unit: dict[str, list] = {}
    for key in common:
        by_unit.setdefault(rows[key]["equipment"], []).append((rows[key]["start"], key))
    ranks = {}
    for items in by_unit.values():
        for rank, (_, key) in enumerate(sorted(items)):
            ranks[key] = rank
    return ranks
