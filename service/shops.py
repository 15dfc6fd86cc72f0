"""The service's shop sessions: events in (HTTP or MQTT), logged, applied, and a new plan out.

One *journal* thread takes every write (create, events, delete) in arrival order: it parses and
checks a batch, logs it in the :class:`~service.store.EventStore` (on disk), applies it and
acknowledges it, then asks for a replan. Replans run on their own decider threads, at most one
per shop: a batch that comes while its shop is being replanned is planned next, with everything
that came meanwhile (the newest state wins). Replans queue earliest deadline first. Each plan is due ``budget_ms`` after the first event
it answers was acknowledged: the decider gets what is left of that, so a burst never makes a
shop's plans later than its budget (their decider just gets less time). When more shops want a
replan than there are decider threads, each replan gets its share of its budget (see
:meth:`Replanners.share_s`), so that anytime deciders do not hold the threads while others wait.
"""

from __future__ import annotations

import datetime
import heapq
import itertools
import json
import logging
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from baselines.budget import MIN_DECIDER_S, SERVICE_ANSWER
from service.schemas import (
    MAX_EVENTS,
    EventBatch,
    RequestError,
    ShopCreate,
    parse_request,
    plan_rows,
    read_json,
)
from service.sessions import RefusedEventError, ShopSession, hold_frozen, stability
from service.store import EventStore, StoreError, digest

LOG = logging.getLogger("sched_env.service.shops")
#: Shops one service holds at most.
MAX_SHOPS = 1_000
#: Event batches per second per shop over HTTP (a bucket of twice as many absorbs bursts).
DEFAULT_SHOP_RATE = 50.0


class ShopError(Exception):
    """A shop request refused: the HTTP status, what is wrong, and headers (Retry-After)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


@dataclass
class TokenBucket:
    rate: float
    tokens: float
    stamp: float = field(default_factory=time.monotonic)

    def take(self) -> float:
        """0 if a request may go now, else the seconds until it may."""
        now = time.monotonic()
        self.tokens = min(2 * self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class Shop:
    """A session with what the service keeps beside it: its decider, its plans, its replans."""

    def __init__(self, shop_id: str, session: ShopSession, decider, rate: float) -> None:
        self.id, self.session, self.decider = shop_id, session, decider
        self.lock = threading.Lock()  # the journal writes the session, replans read it
        self.plan_body: bytes | None = None
        self.plan_version = 0
        self.plan_rows: list[dict] | None = None
        self.pending: deque[tuple[int, float]] = deque()  # (events applied, when acknowledged) not yet planned
        self.in_flight = False
        self.deleted = False
        self.bucket = TokenBucket(rate, 2 * rate)
        #: The last replan's failure (event, last_event_id, reason, at) until a replan succeeds: the plan
        #: served meanwhile is the previous one, marked stale.
        self.failure: dict[str, Any] | None = None


class Shops:
    """Every shop session of the service, rebuilt from the store on start."""

    def __init__(self, store: EventStore, models: dict[str, Any], workers: int = 2,
                 shop_rate: float = DEFAULT_SHOP_RATE) -> None:  # fmt: skip
        self.store, self.models, self.shop_rate = store, models, shop_rate
        self.shops: dict[str, Shop] = {}
        self.journal = ThreadPoolExecutor(1, thread_name_prefix="journal")
        self.planners = Replanners(workers, self._replan_once)
        self.listeners: list[Callable[[str, int, bytes | None], None]] = []  # (shop, version, plan; None: deleted)
        self.failure_listeners: list[Callable[[str, dict], None]] = []  # (shop, failure): a replan failed
        self.replan_failures = 0  # since start (the service's metric reads it)

    def close(self) -> None:
        self.journal.shutdown(wait=True, cancel_futures=False)  # every acknowledged write is already on disk
        self.planners.stop()
        self.store.close()

    # ------------------------------------------------------------------ start-up
    def restore(self) -> int:
        """Rebuild every shop from its log; replan those whose last plan is older than their log.
        Returns the number of events replayed."""
        from pydantic import TypeAdapter

        from service.schemas import ShopEvent

        adapter, replayed = TypeAdapter(ShopEvent), 0
        for shop_id, _created, config_text in self.store.shops():
            config = ShopCreate.model_validate_json(config_text)
            try:
                decider = self._decider(config)
            except ShopError as error:
                raise StoreError(f"shop {shop_id} plans with {config.method!r}, which cannot be built here"
                                 f" ({error.detail}): install the package that provides it") from None  # fmt: skip
            shop = Shop(shop_id, ShopSession(config), decider, self.shop_rate)
            events = [adapter.validate_json(body) for body in self.store.events(shop_id)]
            try:
                shop.session.apply(events, limits=False)  # checked when they came: a log accepted live replays
            except RefusedEventError as error:
                raise StoreError(f"shop {shop_id}'s log does not replay ({error}): the database was written by"
                                 " another version of sched-env, or changed by hand") from None  # fmt: skip
            replayed += len(events)
            stored = self.store.plan(shop_id)
            if stored is not None:
                shop.plan_version, text = stored
                shop.plan_body = text.encode()
                body = json.loads(text)
                shop.plan_rows, planned = body["plan"], body["events"]
            if stored is None or planned < shop.session.applied:
                shop.pending.append((shop.session.applied, time.perf_counter()))
            self.shops[shop_id] = shop
        for shop in self.shops.values():
            if shop.pending:
                self._want_plan(shop)
        return replayed

    # ------------------------------------------------------------------ writes (on the journal thread)
    def create(self, raw: bytes) -> dict[str, Any]:
        config = _parse(raw, ShopCreate)
        if len(self.shops) >= MAX_SHOPS:
            raise ShopError(413, f"this service holds {MAX_SHOPS} shops, the most it may: delete ended ones")
        decider = self._decider(config)
        shop_id = "shop-" + secrets.token_urlsafe(18)
        _written(self.store.create_shop, shop_id, time.time(), config.model_dump_json())
        shop = Shop(shop_id, ShopSession(config), decider, self.shop_rate)
        shop.pending.append((0, time.perf_counter()))
        self.shops[shop_id] = shop
        self._want_plan(shop)
        return {"id": shop_id, **self.describe(shop)}

    def ingest(self, shop_id: str, raw: bytes, one_event_allowed: bool = False) -> dict[str, Any]:
        """Check, log and apply a batch of events (``one_event_allowed``: or one event object, as
        MQTT messages may be); the acknowledgement says what was new."""
        shop = self.get(shop_id)
        data = _json(raw)
        if one_event_allowed and isinstance(data, dict) and "events" not in data and "type" in data:
            data = {"events": [data]}
        if isinstance(data, dict) and isinstance(data.get("events"), list) and len(data["events"]) > MAX_EVENTS:
            raise ShopError(413, f"{len(data['events']):,} events in one batch; the limit is {MAX_EVENTS:,}")
        batch = _events(data)
        # logged as sent (fields left out stay out: replay must see what the live state saw); the digest
        # is of every field, defaults included, so a repeat is recognised whatever it leaves out
        bodies = [event.model_dump_json(exclude_unset=True) for event in batch.events]
        logged = self.store.seen(shop_id, list({e.event_id for e in batch.events}))
        new, indices, rows, duplicates, in_batch = [], [], [], [], {}
        for index, (event, body) in enumerate(zip(batch.events, bodies)):
            before, mark = logged.get(event.event_id) or in_batch.get(event.event_id), digest(event.model_dump_json())
            if before is not None:
                if before != mark:
                    raise ShopError(409, f"events[{index}]: event_id {event.event_id!r} was used for a different"
                                         " event: give every event its own id")  # fmt: skip
                duplicates.append(event.event_id)
                continue
            in_batch[event.event_id] = mark
            new.append(event)
            indices.append(index)
            rows.append((event.event_id, mark, body))
        if new:
            try:
                draft = shop.session.prepare(new, indices)
            except RefusedEventError as error:
                raise ShopError(409, str(error)) from None
            first = shop.session.applied
            _written(self.store.append, shop_id, first, rows)
            acknowledged = time.perf_counter()
            with shop.lock:
                shop.session.commit(draft)
                shop.pending.append((shop.session.applied, acknowledged))
            self._want_plan(shop)
        return {"accepted": len(new), "duplicates": duplicates, "events": shop.session.applied,
                "time": shop.session.time, "plan_version": shop.plan_version}  # fmt: skip

    def delete(self, shop_id: str) -> None:
        shop = self.get(shop_id)
        _written(self.store.delete_shop, shop_id)
        with shop.lock:
            shop.deleted = True
        self.shops.pop(shop_id, None)
        self._tell(shop_id, shop.plan_version, None)

    # ------------------------------------------------------------------ reads (any thread)
    def get(self, shop_id: str) -> Shop:
        shop = self.shops.get(shop_id)
        if shop is None:
            raise ShopError(404, f"no shop {shop_id!r}: create one with POST /v1/shops (ids are case-sensitive)")
        return shop

    def describe(self, shop: Shop) -> dict[str, Any]:
        config = shop.session.config
        with shop.lock:
            state = shop.session.to_dict()
            version = shop.plan_version
        return {"name": config.name, "method": config.method, "objective": config.objective,
                "budget_ms": config.budget_ms, "interruption": config.interruption,
                "frozen_horizon": config.frozen_horizon, "assumed_repair": config.assumed_repair,
                "plan_version": version, **state}  # fmt: skip

    def plan(self, shop_id: str) -> tuple[int, bytes]:
        shop = self.get(shop_id)
        with shop.lock:
            if shop.plan_body is None and shop.failure is not None:
                failure = shop.failure
                raise ShopError(503, f"shop {shop_id!r} has no plan: replanning after event {failure['event']}"
                                     f" failed ({failure['reason']}); the next event batch replans")  # fmt: skip
            if shop.plan_body is None:
                raise ShopError(404, f"shop {shop_id!r} has no plan yet (the first is being made): retry, or"
                                     " wait for it with ?after=0&wait_ms=2000")  # fmt: skip
            body, failure = shop.plan_body, shop.failure
            if failure is not None:  # the previous plan stands, marked stale, with why the last replan failed
                body = json.dumps({**json.loads(body), "stale": True, "last_replan_failed": failure}).encode()
            return shop.plan_version, body

    def allow(self, shop_id: str) -> None:
        """Refuse an event batch over the shop's rate (429 with Retry-After); on the event loop."""
        shop = self.get(shop_id)
        wait = shop.bucket.take()
        if wait:
            raise ShopError(429, f"shop {shop_id!r} sends more than {self.shop_rate:g} event batches per second:"
                                 " batch events, or retry after Retry-After seconds",
                            {"Retry-After": str(max(1, math.ceil(wait)))})  # fmt: skip

    # ------------------------------------------------------------------ replans
    def _decider(self, config: ShopCreate):
        from baselines import deciders

        try:
            decider = deciders.make(config.method, objective=config.objective, allow_files=False)
        except (ValueError, deciders.DeciderError, ImportError) as error:
            raise ShopError(422, f"method: {str(error).splitlines()[0]}") from None
        deciders.give_models(decider, self.models)
        return decider

    def _want_plan(self, shop: Shop) -> None:
        with shop.lock:
            if shop.in_flight or shop.deleted or not shop.pending:
                return  # the replan in flight is followed by another, with the newest state
            shop.in_flight = True
            due = shop.pending[0][1] + shop.session.config.budget_ms / 1000
        self.planners.put(due, shop)

    def _replan_once(self, shop: Shop) -> None:
        """One plan of the shop's state now; then, if events came meanwhile, the shop is queued again."""
        try:
            self._plan_now(shop)
        finally:
            with shop.lock:
                shop.in_flight = False
            self._want_plan(shop)

    def _plan_now(self, shop: Shop) -> None:
        with shop.lock:
            if shop.deleted or not shop.pending:
                return
            applied, since = shop.session.applied, shop.pending[0][1]
            state, active = shop.session.shop_state()
            snapshot = _Snapshot(shop.session, state, active, applied, since, shop.plan_rows)
        try:
            made = self._make_plan(shop, snapshot)
        except Exception as error:  # a decider's failure must not end the shop: the next batch replans
            LOG.exception("shop %s: replanning after %d events failed", shop.id, applied)
            self._failed(shop, applied, error)
            made = None
        published = None
        if made is not None:  # its stability and JSON outside the lock (one replan per shop: the version is ours)
            version = shop.plan_version + 1
            body, rows = _finish_plan(made, shop.id, version, since)
        with shop.lock:
            while shop.pending and shop.pending[0][0] <= applied:
                shop.pending.popleft()
            if made is not None and not shop.deleted:
                try:
                    self.store.save_plan(shop.id, version, body.decode())  # kept before anyone sees it
                except StoreError as error:  # still served: the events are safe, a restart replans
                    LOG.error("shop %s: plan %d not kept: %s", shop.id, version, error)
                shop.plan_body, shop.plan_rows, shop.plan_version = body, rows, version
                shop.failure = None
                published = (version, body)
        if published is not None:
            self._tell(shop.id, *published)

    def _make_plan(self, shop: Shop, snapshot: _Snapshot) -> dict[str, Any]:
        from baselines import deciders
        from sched_env.schedule import objectives

        config = snapshot.session.config
        base = {"shop_time": snapshot.time, "events": snapshot.applied, "last_event_id": snapshot.last_event_id,
                "decider": config.method, "budget_ms": config.budget_ms}  # fmt: skip
        if snapshot.state is None:  # no work left: an empty plan
            return {**base, "method": config.method, "status": "empty", "decider_ms": 0.0, "objectives": {},
                    "frozen": 0, "rows": [], "previous": snapshot.previous}  # fmt: skip
        state = snapshot.state
        n_operations = int(state.jobs.n_ops.sum())
        started = time.perf_counter()
        budget = config.budget_ms / 1000
        left = SERVICE_ANSWER.until(snapshot.since + budget, budget, n_operations, floor=MIN_DECIDER_S)
        budget_s = min(left, self.planners.share_s(budget))
        result = deciders.solve(state, shop.decider, budget_s=max(budget_s, MIN_DECIDER_S))
        schedule, held = result.schedule, 0
        if config.frozen_horizon is not None and snapshot.previous:
            keys = [[(o.id, op.id) for op in o.operations] for o in snapshot.active]
            previous = {
                (r["work_order"], r["operation"]): r["start"] for r in snapshot.previous if r["status"] == "planned"
            }
            schedule, held = hold_frozen(state, schedule, previous, keys, config.frozen_horizon, config.method)
        rows = plan_rows(schedule, snapshot.active, snapshot.equipment)
        statuses = {(o.id, op.id): op.status for o in snapshot.active for op in o.operations}
        for row in rows:
            status = statuses[row["work_order"], row["operation"]]
            row["status"] = "planned" if status == "waiting" else status
        return {**base, "method": result.method, "status": result.status,
                "decider_ms": round(1000 * (time.perf_counter() - started), 3),
                "objectives": objectives(state.jobs, schedule), "frozen": held, "rows": rows,
                "previous": snapshot.previous}  # fmt: skip

    def _failed(self, shop: Shop, applied: int, error: Exception) -> None:
        """Record a failed replan where clients see it: the plan resource, the failure listeners, the count."""
        reason = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}"
        with shop.lock:
            shop.failure = failure = {
                "event": applied, "last_event_id": shop.session.last_event_id, "reason": reason,
                "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
            }  # fmt: skip
            self.replan_failures += 1
        for listener in self.failure_listeners:
            try:
                listener(shop.id, failure)
            except Exception:  # a listener's failure (a broker away) never stops replanning
                LOG.exception("shop %s: a failure listener failed", shop.id)

    def _tell(self, shop_id: str, version: int, body: bytes | None) -> None:
        for listener in self.listeners:
            try:
                listener(shop_id, version, body)
            except Exception:  # a listener's failure (a broker away) never stops replanning
                LOG.exception("shop %s: a plan listener failed", shop_id)


class Replanners:
    """Decider threads taking shops' replans earliest deadline first (a replan is due ``budget_ms``
    after the first event it answers was acknowledged)."""

    def __init__(self, workers: int, work: Callable) -> None:
        self.workers, self.work = workers, work
        self.queue: list[tuple[float, int, Shop]] = []
        self.waiting = 0  # replans queued or running
        self.order = itertools.count()
        self.ready = threading.Condition()
        self.stopped = False
        self.threads = [
            threading.Thread(target=self._serve, name=f"replanner-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self.threads:
            thread.start()

    def put(self, due: float, shop: Shop) -> None:
        with self.ready:
            heapq.heappush(self.queue, (due, next(self.order), shop))
            self.waiting += 1
            self.ready.notify()

    def share_s(self, budget_s: float) -> float:
        """A replan's fair share of the threads: its whole budget while no more replans wait than
        there are threads, else its part (an anytime decider such as hybrid:1 would otherwise hold
        a thread for its whole budget while the other shops' deadlines pass)."""
        return budget_s * self.workers / max(self.workers, self.waiting)

    def stop(self) -> None:
        with self.ready:
            self.stopped = True
            self.ready.notify_all()

    def _serve(self) -> None:
        while True:
            with self.ready:
                while not self.queue and not self.stopped:
                    self.ready.wait()
                if self.stopped:
                    return
                _due, _, shop = heapq.heappop(self.queue)
            try:
                self.work(shop)
            except Exception:  # never lose a thread
                LOG.exception("shop %s: a replan failed", shop.id)
            finally:
                with self.ready:
                    self.waiting -= 1


@dataclass
class _Snapshot:
    """What a replan reads of a session, taken under its lock."""

    session: ShopSession
    state: Any
    active: list
    applied: int
    since: float
    previous: list[dict] | None

    def __post_init__(self) -> None:
        self.time, self.last_event_id = self.session.time, self.session.last_event_id
        self.equipment = list(self.session.equipment.values())


def _finish_plan(made: dict[str, Any], shop_id: str, version: int, since: float) -> tuple[bytes, list[dict]]:
    """The plan's JSON (what GET /plan and MQTT carry) and its rows."""
    rows, previous = made.pop("rows"), made.pop("previous")
    response_ms = 1000 * (time.perf_counter() - since)
    made_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    head = {"shop": shop_id, "version": version, "made_at": made_at, **made,
            "response_time_ms": round(response_ms, 3), "over_budget": response_ms > made["budget_ms"],
            "stability": stability(previous, rows)}  # fmt: skip
    return json.dumps({**head, "plan": rows}).encode(), rows


def _written(write, *args) -> None:
    """A write to the log, or 503 (nothing was applied nor acknowledged) when the disk refuses it."""
    try:
        write(*args)
    except StoreError as error:
        LOG.error("the shop database refused a write: %s", error)
        raise ShopError(503, f"the shop database cannot be written now ({error}): nothing was applied; retry",
                        {"Retry-After": "5"}) from None  # fmt: skip


def _json(raw: bytes):
    try:
        return read_json(raw)
    except RequestError as error:
        raise ShopError(error.status, str(error)) from None


def _events(data) -> EventBatch:
    """A batch's events validated (in pieces: the event loop runs between them)."""
    from pydantic import ValidationError

    from service.schemas import ShopEvent, describe_errors, validate_in_pieces

    errors: list[dict] = []
    if isinstance(data, dict) and isinstance(data.get("events"), list):
        data["events"] = validate_in_pieces(data["events"], ShopEvent, ("events",), errors)
    if errors:
        raise ShopError(422, describe_errors(errors))
    try:
        return EventBatch.model_validate(data)
    except ValidationError as error:
        raise ShopError(422, describe_errors(error.errors(include_url=False))) from None


def _parse(raw: bytes, model):
    try:
        return parse_request(raw, model)
    except RequestError as error:
        raise ShopError(error.status, str(error)) from None
