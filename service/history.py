"""A shop session's recorded history, read back from the service's event log: what ``sched-env
fit-shop`` estimates a shop from and what ``sched-env replay`` re-runs.

:func:`read_history` walks one shop's events in order and keeps, per work order, its release,
due date, priority, the options of each operation, and when and where each operation really
started and finished; per piece of equipment, when it was down. :meth:`ShopHistory.scenario`
turns that into a :class:`~sched_env.events.Scenario` of what happened (the recorded arrivals,
the recorded breakdowns, the real durations), with the recorded :class:`Schedule` beside it.

Real durations: an operation that ran from ``start`` to ``end`` on equipment that was down for
``d`` time units in between really took ``end - start - d`` in a shop whose interruptions
resume, and ``end`` - the last repair in between in one whose interrupted work restarts. Only work
orders that finished every operation are replayed; cancelled and unfinished ones are counted
and left out (a due date or priority changed on the way is replayed at its last value).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from instances import InvalidScenarioError, JobShopInstance
from service.schemas import NEVER_DUE, ShopCreate, class_members, operation_options

#: The events a shop's log holds, by ``type``.
EVENT_TYPES = ("work_order_released", "operation_started", "operation_finished", "equipment_down", "equipment_up",
               "work_order_cancelled", "work_order_changed")  # fmt: skip


@dataclass
class RecordedOperation:
    id: str
    options: list[tuple[str, int]]  # (equipment, planned duration)
    equipment: str | None = None  # where it ran
    start: int | None = None
    end: int | None = None


@dataclass
class RecordedOrder:
    id: str
    release: int
    due: int | None
    priority: int
    operations: list[RecordedOperation]
    cancelled: bool = False

    @property
    def finished(self) -> bool:
        return not self.cancelled and all(op.end is not None for op in self.operations)

    @property
    def planned_work(self) -> float:
        return float(sum(np.mean([d for _, d in op.options]) for op in self.operations))


@dataclass
class ShopHistory:
    """One shop's recorded work orders and downtimes (see the module docstring)."""

    shop: str
    equipment: list[str]
    orders: list[RecordedOrder]
    downtimes: dict[str, list[tuple[int, int | None]]]  # equipment -> (down, back; None: still down)
    maintenance: list[tuple[int, int, int]]  # (machine, start, end) planned windows
    start_time: int
    end_time: int  # the last event's time
    counts: dict[str, int] = field(default_factory=dict)  # events by type
    interruption: str = "resume"  # the shop's: an operation a breakdown cuts resumes, or restarts from scratch

    @property
    def n_events(self) -> int:
        return sum(self.counts.values())

    def down_overlap(self, equipment: str, start: int, end: int) -> int:
        """Time ``equipment`` was down within [start, end)."""
        return sum(max(0, min(end, back if back is not None else end) - max(start, down))
                   for down, back in self.downtimes.get(equipment, []))  # fmt: skip

    def real_duration(self, op: RecordedOperation) -> int:
        """How long it really ran: without the downtime in between (resume), or from its last
        restart after a repair (restart)."""
        if self.interruption == "restart":
            backs = [
                back
                for _, back in self.downtimes.get(op.equipment, [])
                if back is not None and op.start < back <= op.end
            ]
            return int(op.end - max([op.start, *backs]))
        return int(op.end - op.start - self.down_overlap(op.equipment, op.start, op.end))

    def scenario(self) -> tuple:
        """(the :class:`Scenario` of what happened, the recorded :class:`Schedule` in its numbering,
        the work-order ids of its jobs), over the work orders that finished, in release order. In a
        restart shop an operation's row starts at its last (whole) run, as the simulator's do."""
        from sched_env.events import BREAKDOWN, MAINTENANCE, Scenario
        from sched_env.schedule import Schedule

        done = sorted((o for o in self.orders if o.finished), key=lambda o: o.release)  # stable: log order at a tie
        if not done:
            raise InvalidScenarioError(f"shop {self.shop!r}: no work order finished in its log; nothing to replay")
        index = {e: m for m, e in enumerate(self.equipment)}
        jobs = [[[(index[e], d) for e, d in op.options] for op in o.operations] for o in done]
        instance = JobShopInstance.from_alternatives(
            jobs, n_machines=len(self.equipment), name=f"history:{self.shop}",
            release_dates=[o.release for o in done], due_dates=[NEVER_DUE if o.due is None else o.due for o in done],
            weights=[o.priority for o in done],
        )  # fmt: skip
        real = np.full((instance.n_jobs, instance.max_ops, instance.n_machines), -1, dtype=np.int64)
        rows = []
        for j, order in enumerate(done):
            for k, op in enumerate(order.operations):
                m = index[op.equipment]
                took = max(1, self.real_duration(op))
                real[j, k, [index[e] for e, _ in op.options]] = took
                rows.append((j, k, m, op.end - took if self.interruption == "restart" else op.start, op.end))
        if not instance.is_flexible:
            real = real.max(axis=2)
        horizon = self.end_time + 1
        windows = [(index[e], down, horizon if back is None else back, BREAKDOWN)
                   for e, spans in self.downtimes.items() for down, back in spans]  # fmt: skip
        windows = [w for w in windows if w[2] > w[1]]
        windows += [(m, s, e, MAINTENANCE) for m, s, e in self.maintenance]
        windows.sort()
        scenario = Scenario(instance, realized_durations=real, downtimes=np.array(windows, dtype=np.int64).reshape(-1, 4),
                            interruption=self.interruption, name=f"history:{self.shop}",
                            metadata={"shop": self.shop, "events": self.n_events})  # fmt: skip
        job, op, machine, start, end = (np.array(c, dtype=np.int64) for c in zip(*rows))
        recorded = Schedule(job, op, machine, start, end, instance_name=instance.name)
        return scenario, recorded, [o.id for o in done]


def read_history(db: str | Path, shop: str) -> ShopHistory:
    """The recorded history of shop ``shop`` in the service database ``db`` (read-only)."""
    from pydantic import TypeAdapter, ValidationError

    from service.schemas import ShopEvent
    from service.store import read_shop_log

    config_text, bodies = read_shop_log(db, shop)
    config = ShopCreate.model_validate_json(config_text)
    members = class_members(config.equipment)
    history = ShopHistory(shop, [e.id for e in config.equipment], [], {e.id: [] for e in config.equipment}, [],
                          config.time, config.time, dict.fromkeys(EVENT_TYPES, 0), config.interruption)  # fmt: skip
    orders: dict[str, RecordedOrder] = {}
    for m, e in enumerate(config.equipment):
        history.maintenance += [(m, w.start, w.end) for w in e.maintenance]
        if e.status == "down":
            history.downtimes[e.id].append((config.time, None))
    for order in config.work_orders:
        orders[order.id] = _recorded(order, members)
    adapter = TypeAdapter(ShopEvent)
    for number, body in enumerate(bodies):
        try:
            event = adapter.validate_json(body)
        except ValidationError as error:
            raise InvalidScenarioError(f"shop {shop!r}: event {number} of its log cannot be read ({error})") from None
        _apply(history, orders, event, members)
    history.orders = list(orders.values())
    return history


def _recorded(order, members) -> RecordedOrder:
    ops = [RecordedOperation(op.id, operation_options(op, members)) for op in order.operations]
    return RecordedOrder(order.id, order.release, order.due, order.priority, ops)


def _apply(history: ShopHistory, orders: dict[str, RecordedOrder], event, members) -> None:
    """One event into the history (the service accepted it, so it is consistent with the ones before)."""
    history.counts[event.type] += 1
    history.end_time = max(history.end_time, event.time)
    if event.type == "work_order_released":
        orders[event.work_order.id] = _recorded(event.work_order, members)
    elif event.type in ("operation_started", "operation_finished"):
        op = next(o for o in orders[event.work_order].operations if o.id == event.operation)
        if event.type == "operation_started":
            op.start, op.equipment = event.time, event.equipment or op.options[0][0]
        else:
            op.end = event.time
            if op.start is None:  # finished without a start event: it started when it was told
                op.start, op.equipment = event.time, event.equipment or op.options[0][0]
    elif event.type == "equipment_down":
        history.downtimes[event.equipment].append((event.time, None))
    elif event.type == "equipment_up":
        spans = history.downtimes[event.equipment]
        if spans and spans[-1][1] is None:
            spans[-1] = (spans[-1][0], event.time)
    elif event.type == "work_order_cancelled":
        orders[event.work_order].cancelled = True
    elif event.type == "work_order_changed":
        order = orders[event.work_order]
        fields = event.model_fields_set
        if "due" in fields:
            order.due = event.due
        if "priority" in fields and event.priority is not None:
            order.priority = event.priority
