"""The service's shop sessions: events in (HTTP or MQTT), logged, applied, and a new plan out.

:class:`Shops` is the one door: HTTP routes, the MQTT bridge and tests create shops, send events,
delete, read states and plans, wait for plans and subscribe to plans and failures through its
methods only. One *journal* thread takes every write (create, events, delete): each shop's in
arrival order, the shops in turn (a flood to one shop delays another's write by one batch at
most). It parses and checks a batch, logs it in the :class:`~service.store.EventStore` (on disk),
applies it and acknowledges it, then asks for a replan. Replans run on their own decider threads, at most one
per shop: a batch that comes while its shop is being replanned is planned next, with everything
that came meanwhile (the newest state wins). Replans queue earliest deadline first. Each plan is due ``budget_ms`` after the first event
it answers was acknowledged: the decider gets what is left of that, so a burst never makes a
shop's plans later than its budget (their decider just gets less time). When more shops want a
replan than there are decider threads, each replan gets its share of its budget (see
:meth:`Replanners.share_s`), so that anytime deciders do not hold the threads while others wait;
a budget is capped per shop (``max_budget_ms``) and replans with long budgets never take the last
thread (a shop planning in milliseconds never waits behind another's CP-SAT minute).

A shop whose log cannot be read back (a corrupt row, a method this install lacks) is *quarantined*
at start: one log line names it and why, its routes answer 503 with that reason, and every other
shop is served.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from baselines.budget import MIN_DECIDER_S, SERVICE_ANSWER
from baselines.repair import hold_frozen
from instances import SchedEnvError
from service.schemas import (
    EventBatch,
    RequestError,
    ShopCreate,
    ShopUpdate,
    build_decider,
    parse_request,
    plan_rows,  # fmt: skip
)
from service.sessions import RefusedEventError, ShopSession, stability
from service.store import EventStore, StoreError, digest

LOG = logging.getLogger("sched_env.service.shops")
#: Shops one service holds at most.
MAX_SHOPS = 1_000
#: Seconds closing waits for the replans in flight (a longer one is dropped: the log replans it at start).
CLOSE_WAIT_S = 5.0
#: Event batches per second per shop, HTTP and MQTT alike (a bucket of twice as many absorbs bursts).
DEFAULT_SHOP_RATE = 50.0
#: The longest budget a shop session may ask by default (``sched-env serve --max-shop-budget-ms``).
DEFAULT_MAX_BUDGET_MS = 10_000
#: A replan with a budget over this is *long*: long replans never hold the last decider thread.
LONG_REPLAN_S = 1.0


class ShopError(RequestError):
    """A shop request refused: the HTTP status, what is wrong, and headers (Retry-After)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail, status, headers)


@dataclass(frozen=True)
class ShopSettings:
    """What a service's shops may do (``sched-env serve`` options)."""

    workers: int = 2  # decider threads for replans
    shop_rate: float = DEFAULT_SHOP_RATE  # event batches (HTTP requests, MQTT messages) per second per shop
    max_budget_ms: int = DEFAULT_MAX_BUDGET_MS  # the longest budget_ms a shop may ask
    queued_writes: int = 1_000  # writes waiting on the journal per shop; more get 503
    waiters_per_shop: int = 64  # open GET .../plan?after= long polls per shop; more get 503
    waiters: int = 1_024  # open long polls in all
    models_dir: str | None = None  # registered models (`policy@NAME`), read when a shop names one

    def __post_init__(self) -> None:
        if self.workers < 1 or not self.shop_rate > 0 or self.max_budget_ms < 1:
            raise ValueError(f"shop settings need workers >= 1, a rate > 0 and a budget cap >= 1 ms: {self}")
        if min(self.queued_writes, self.waiters_per_shop, self.waiters) < 1:
            raise ValueError(f"shop settings need every queue and waiter limit >= 1: {self}")


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
    """Every shop session of the service, rebuilt from the store on start: the one door to them."""

    def __init__(self, store: EventStore, models: dict[str, Any], settings: ShopSettings | None = None) -> None:
        self.store, self.models = store, models
        self.settings = settings = settings or ShopSettings()
        self.shops: dict[str, Shop] = {}
        self.quarantined: dict[str, str] = {}  # shop id -> why its log cannot be read back
        self._journal = Journal(settings.queued_writes)
        self.planners = Replanners(settings.workers, self._replan_once)
        self._plan_listeners: list[Callable[[str, int, bytes | None], None]] = []
        self._failure_listeners: list[Callable[[str, dict], None]] = []
        self._waiters = PlanWaiters(settings.waiters_per_shop, settings.waiters)
        self.replan_failures = 0  # since start (the service's metric reads it)

    def close(self) -> None:
        self._journal.close()  # every acknowledged write is already on disk; queued ones are done first
        self.planners.stop(wait_s=CLOSE_WAIT_S)  # a replan in flight ends (and is kept) or is dropped quietly
        self.store.close()

    def subscribe(self, on_plan: Callable[[str, int, bytes | None], None] | None = None,
                  on_failure: Callable[[str, dict], None] | None = None) -> None:  # fmt: skip
        """Call ``on_plan(shop, version, plan JSON)`` for every new plan (``None``: the shop was
        deleted) and ``on_failure(shop, failure)`` for every failed replan; on replanner threads."""
        if on_plan is not None:
            self._plan_listeners.append(on_plan)
        if on_failure is not None:
            self._failure_listeners.append(on_failure)

    # ------------------------------------------------------------------ start-up
    def restore(self) -> int:
        """Rebuild every shop from its log; replan those whose last plan is older than their log.
        A shop that cannot be rebuilt is quarantined (one log line), the others are served.
        Returns the number of events replayed."""
        from pydantic import TypeAdapter

        from service.schemas import ShopEvent

        replayed, adapter = 0, TypeAdapter(ShopEvent)  # one validator for every shop's events
        for shop_id, _created, config_text in self.store.shops():
            try:
                shop, events = self._rebuild(shop_id, config_text, adapter)
            except (SchedEnvError, ValueError, KeyError) as error:
                reason = (str(error).splitlines() or [type(error).__name__])[0][:300]
                self.quarantined[shop_id] = reason
                LOG.error("shop %s is quarantined (its routes answer 503): %s", shop_id, reason)
                continue
            replayed += events
            self.shops[shop_id] = shop
        for shop in self.shops.values():
            if shop.pending:
                self._want_plan(shop)
        return replayed

    def _rebuild(self, shop_id: str, config_text: str, adapter) -> tuple[Shop, int]:
        """One shop from its log and its last plan, and how many events it replayed."""
        from pydantic import ValidationError

        from service.schemas import describe_errors

        config = ShopCreate.model_validate_json(config_text)
        try:
            decider = build_decider(config.method, config.objective, self.models, self.settings.models_dir)
        except RequestError as error:
            raise StoreError(f"it plans with {config.method!r}, which cannot be built here ({error});"
                             " install the package that provides it") from None  # fmt: skip
        shop = Shop(shop_id, ShopSession(config), decider, self.settings.shop_rate)
        events = []
        for number, body in enumerate(self.store.events(shop_id)):
            try:
                events.append(adapter.validate_json(body))
            except ValidationError as error:
                raise StoreError(f"event {number} of its log cannot be read"
                                 f" ({describe_errors(error.errors(include_url=False))})") from None  # fmt: skip
        try:
            shop.session.apply(events, limits=False)  # checked when they came: a log accepted live replays
        except RefusedEventError as error:
            raise StoreError(f"its log does not replay ({error}): the database was changed by hand") from None
        stored = self.store.plan(shop_id)
        if stored is not None:
            shop.plan_version, text = stored
            shop.plan_body = text.encode()
            body = json.loads(text)
            shop.plan_rows, planned = body["plan"], body["events"]
        if stored is None or planned < shop.session.applied:
            shop.pending.append((shop.session.applied, time.perf_counter()))
        return shop, len(events)

    # ------------------------------------------------------------------ writes (queued on the journal)
    def submit_create(self, raw: bytes) -> Future:
        """Open a shop from a :class:`ShopCreate` body; the future's result describes it (with its id)."""
        return self._journal.submit("", self._create, raw)

    def submit_events(self, shop_id: str, raw: bytes, one_event_allowed: bool = False, wait_s: float = 0.0) -> Future:
        """Check, log and apply a batch of events (``one_event_allowed``: or one event object, as an
        MQTT message may be); the future's result is the acknowledgement. ``wait_s``: how long to
        wait for room when the shop's queue is full (else 503 at once)."""
        self._get(shop_id)  # an unknown shop is refused now, never queued
        return self._journal.submit(shop_id, self._ingest, shop_id, raw, one_event_allowed, wait_s=wait_s)

    def submit_update(self, shop_id: str, raw: bytes) -> Future:
        """Change a live shop's decider or budget (a :class:`ShopUpdate` body); it replans with them."""
        self._get(shop_id)
        return self._journal.submit(shop_id, self._update, shop_id, raw)

    def submit_delete(self, shop_id: str) -> Future:
        """End a shop session (its log and plans are deleted); a quarantined one too."""
        if shop_id not in self.quarantined:
            self._get(shop_id)
        return self._journal.submit(shop_id, self._delete, shop_id)

    def create(self, raw: bytes) -> dict[str, Any]:
        """:meth:`submit_create`, waited for (not from a journal or event-loop thread)."""
        return self.submit_create(raw).result()

    def ingest(self, shop_id: str, raw: bytes, one_event_allowed: bool = False) -> dict[str, Any]:
        """:meth:`submit_events`, waited for."""
        return self.submit_events(shop_id, raw, one_event_allowed).result()

    def delete(self, shop_id: str) -> None:
        """:meth:`submit_delete`, waited for."""
        self.submit_delete(shop_id).result()

    def _create(self, raw: bytes) -> dict[str, Any]:
        config = parse_request(raw, ShopCreate)
        if len(self.shops) >= MAX_SHOPS:
            raise ShopError(413, f"this service holds {MAX_SHOPS} shops, the most it may: delete ended ones")
        if config.budget_ms > self.settings.max_budget_ms:
            raise ShopError(422, f"budget_ms: {config.budget_ms} is over this server's cap of"
                                 f" {self.settings.max_budget_ms} ms a shop (sched-env serve --max-shop-budget-ms)")  # fmt: skip
        decider = build_decider(config.method, config.objective, self.models, self.settings.models_dir)
        shop_id = "shop-" + secrets.token_urlsafe(18)
        _written(self.store.create_shop, shop_id, time.time(), config.model_dump_json())
        shop = Shop(shop_id, ShopSession(config), decider, self.settings.shop_rate)
        shop.pending.append((0, time.perf_counter()))
        self.shops[shop_id] = shop
        self._want_plan(shop)
        return {"id": shop_id, **self._describe(shop)}

    def _ingest(self, shop_id: str, raw: bytes, one_event_allowed: bool) -> dict[str, Any]:
        shop = self._get(shop_id)
        batch = parse_request(raw, EventBatch, one_event_allowed=one_event_allowed)
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

    def _update(self, shop_id: str, raw: bytes) -> dict[str, Any]:
        shop = self._get(shop_id)
        change = parse_request(raw, ShopUpdate).model_dump(exclude_none=True)
        if not change:
            raise ShopError(422, "give method, budget_ms or both")
        config = shop.session.config.model_copy(update=change)
        if config.budget_ms > self.settings.max_budget_ms:
            raise ShopError(422, f"budget_ms: {config.budget_ms} is over this server's cap of"
                                 f" {self.settings.max_budget_ms} ms a shop (sched-env serve --max-shop-budget-ms)")  # fmt: skip
        decider = build_decider(config.method, config.objective, self.models, self.settings.models_dir)
        _written(self.store.update_shop, shop_id, config.model_dump_json())
        with shop.lock:
            shop.session.config, shop.decider = config, decider
            shop.pending.append((shop.session.applied, time.perf_counter()))
        self._want_plan(shop)
        return {"id": shop_id, **self._describe(shop)}

    def _delete(self, shop_id: str) -> None:
        if self.quarantined.pop(shop_id, None) is not None:
            _written(self.store.delete_shop, shop_id)
            return
        shop = self._get(shop_id)
        _written(self.store.delete_shop, shop_id)
        with shop.lock:
            shop.deleted = True
        self.shops.pop(shop_id, None)
        self._tell(shop_id, shop.plan_version, None)

    # ------------------------------------------------------------------ reads (any thread)
    def get(self, shop_id: str) -> Shop:
        """The shop's internals, for tests and debugging: routes and bridges use the methods above and below."""
        return self._get(shop_id)

    def _get(self, shop_id: str) -> Shop:
        shop = self.shops.get(shop_id)
        if shop is None:
            if shop_id in self.quarantined:
                raise ShopError(503, f"shop {shop_id!r} is quarantined: its log could not be read back at start"
                                     f" ({self.quarantined[shop_id]}); the other shops are served")  # fmt: skip
            raise ShopError(404, f"no shop {shop_id!r}: create one with POST /v1/shops (ids are case-sensitive)")
        return shop

    def shop_list(self) -> list[dict[str, Any]]:
        """Every open shop in a line: id, name, time, events applied, plan version; and every
        quarantined one with why (DELETE ends it)."""
        open_shops = [{"id": s.id, "name": s.session.config.name, "time": s.session.time,
                       "events": s.session.applied, "plan_version": s.plan_version}
                      for s in list(self.shops.values())]  # fmt: skip
        return open_shops + [{"id": shop_id, "quarantined": why} for shop_id, why in list(self.quarantined.items())]

    def state(self, shop_id: str) -> dict[str, Any]:
        """A shop's settings and state: equipment, active work orders, time, events applied."""
        return self._describe(self._get(shop_id))

    def _describe(self, shop: Shop) -> dict[str, Any]:
        config = shop.session.config
        with shop.lock:
            state = shop.session.to_dict()
            version = shop.plan_version
        return {"name": config.name, "method": config.method, "objective": config.objective,
                "budget_ms": config.budget_ms, "interruption": config.interruption,
                "frozen_horizon": config.frozen_horizon, "assumed_repair": config.assumed_repair,
                "plan_version": version, **state}  # fmt: skip

    def plan(self, shop_id: str) -> tuple[int, bytes]:
        """The shop's current plan (version, JSON); 404 before the first, 503 if it failed."""
        shop = self._get(shop_id)
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

    def current_plans(self) -> list[tuple[str, int, bytes]]:
        """Every shop's current plan (shop, version, JSON), as a bridge publishes them after a reconnect."""
        plans = []
        for shop in list(self.shops.values()):
            with shop.lock:
                if shop.plan_body is not None:
                    plans.append((shop.id, shop.plan_version, shop.plan_body))
        return plans

    async def wait_for_plan(self, shop_id: str, after: int, wait_ms: int) -> tuple[int, bytes]:
        """The first plan newer than version ``after`` within ``wait_ms`` (else the current one);
        on the event loop. Long polls are bounded per shop and in all (503 beyond)."""
        deadline = time.monotonic() + wait_ms / 1000
        while True:
            self._get(shop_id)  # unknown ids wait for nothing and leave nothing behind
            with self._waiters.waiting(shop_id) as woken:  # kept before looking: no wake-up missed
                try:
                    version, body = self.plan(shop_id)
                except ShopError as error:
                    if error.status != 404:
                        raise
                    version, body = 0, None
                left = deadline - time.monotonic()
                if version > after or left <= 0:
                    if body is None:
                        raise ShopError(404, f"shop {shop_id!r} has no plan yet: retry shortly")
                    return version, body
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(woken.wait(), left)

    def allow(self, shop_id: str) -> None:
        """Refuse an event batch over the shop's rate (429 with Retry-After); HTTP and MQTT alike."""
        shop = self._get(shop_id)
        wait = shop.bucket.take()
        if wait:
            raise ShopError(429, f"shop {shop_id!r} sends more than {self.settings.shop_rate:g} event batches per"
                                 " second: batch events, or retry after Retry-After seconds",
                            {"Retry-After": str(max(1, math.ceil(wait)))})  # fmt: skip

    # ------------------------------------------------------------------ replans
    def _want_plan(self, shop: Shop) -> None:
        with shop.lock:
            if shop.in_flight or shop.deleted or not shop.pending:
                return  # the replan in flight is followed by another, with the newest state
            shop.in_flight = True
            budget_s = self._budget_s(shop)
            due = shop.pending[0][1] + budget_s
        self.planners.put(due, shop, long=budget_s > LONG_REPLAN_S)

    def _budget_s(self, shop: Shop) -> float:
        """The shop's budget, within this server's cap (a shop created under a larger cap keeps its log)."""
        return min(shop.session.config.budget_ms, self.settings.max_budget_ms) / 1000

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
        if self.planners.stopped:  # closing: the plan is made again from the log at the next start
            return
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
        budget = self._budget_s(shop)
        left = SERVICE_ANSWER.until(snapshot.since + budget, budget, n_operations, floor=MIN_DECIDER_S)
        budget_s = min(left, self.planners.share_s(budget))
        result = deciders.solve(state, shop.decider, budget_s=max(budget_s, MIN_DECIDER_S))
        schedule, held = result.schedule, 0
        if config.frozen_horizon is not None and snapshot.previous:
            keys = [[(o.id, op.id) for op in o.operations] for o in snapshot.active]
            machine = {e.id: m for m, e in enumerate(snapshot.equipment)}
            previous = {
                (r["work_order"], r["operation"]): (r["start"], machine.get(r["equipment"]))
                for r in snapshot.previous
                if r["status"] == "planned"
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
        for listener in self._failure_listeners:
            try:
                listener(shop.id, failure)
            except Exception:  # a listener's failure (a broker away) never stops replanning
                LOG.exception("shop %s: a failure listener failed", shop.id)

    def _tell(self, shop_id: str, version: int, body: bytes | None) -> None:
        self._waiters.wake(shop_id)
        for listener in self._plan_listeners:
            try:
                listener(shop_id, version, body)
            except Exception:  # a listener's failure (a broker away) never stops replanning
                LOG.exception("shop %s: a plan listener failed", shop_id)


class Replanners:
    """Decider threads taking shops' replans earliest deadline first (a replan is due ``budget_ms``
    after the first event it answers was acknowledged). *Long* replans (budgets over
    :data:`LONG_REPLAN_S`) take at most ``workers - 1`` threads, so one is always there for the
    shops that plan in milliseconds."""

    def __init__(self, workers: int, work: Callable) -> None:
        self.workers, self.work = workers, work
        self.long_limit = max(1, workers - 1)
        self.queue: list[tuple[float, int, Shop, bool]] = []
        self.waiting = 0  # replans queued or running
        self.running_long = 0
        self.order = itertools.count()
        self.ready = threading.Condition()
        self.stopped = False
        self.threads = [
            threading.Thread(target=self._serve, name=f"replanner-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self.threads:
            thread.start()

    def put(self, due: float, shop: Shop, long: bool = False) -> None:
        with self.ready:
            heapq.heappush(self.queue, (due, next(self.order), shop, long))
            self.waiting += 1
            self.ready.notify()

    def share_s(self, budget_s: float) -> float:
        """A replan's fair share of the threads: its whole budget while no more replans wait than
        there are threads, else its part (an anytime decider such as hybrid:1 would otherwise hold
        a thread for its whole budget while the other shops' deadlines pass)."""
        return budget_s * self.workers / max(self.workers, self.waiting)

    def stop(self, wait_s: float = 0.0) -> None:
        """No new replans; wait up to ``wait_s`` for those running to end."""
        with self.ready:
            self.stopped = True
            self.ready.notify_all()
        deadline = time.monotonic() + wait_s
        for thread in self.threads:
            if thread is not threading.current_thread():
                thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _next(self) -> tuple[Shop, bool] | None:
        """The earliest-due replan this thread may take now (a long one only below the long limit)."""
        passed, taken = [], None
        while self.queue and taken is None:
            item = heapq.heappop(self.queue)
            if item[3] and self.running_long >= self.long_limit:
                passed.append(item)
            else:
                taken = item
        for item in passed:
            heapq.heappush(self.queue, item)
        return None if taken is None else (taken[2], taken[3])

    def _serve(self) -> None:
        while True:
            with self.ready:
                while not self.stopped and (picked := self._next()) is None:
                    self.ready.wait()
                if self.stopped:
                    return
                shop, long = picked
                self.running_long += long
            try:
                self.work(shop)
            except Exception:  # never lose a thread
                LOG.exception("shop %s: a replan failed", shop.id)
            finally:
                with self.ready:
                    self.waiting -= 1
                    self.running_long -= long
                    self.ready.notify_all()  # a long replan ended: one waiting may go


class Journal:
    """One writer thread: each key's writes (a shop's) in arrival order, the keys in turn, so that
    a flood to one shop delays another shop's write by one write at most. At most ``per_key``
    writes wait per key; more are refused (503) at once, never queued without bound."""

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self.queues: dict[str, deque[tuple[Callable, tuple, Future]]] = {}
        self.turns: deque[str] = deque()  # keys with writes waiting, in turn
        self.ready = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._serve, name="journal", daemon=True)
        self.thread.start()

    def submit(self, key: str, work: Callable, *args, wait_s: float = 0.0) -> Future:
        """Queue ``work(*args)`` behind ``key``'s writes; when ``per_key`` already wait, wait up
        to ``wait_s`` for room (the MQTT bridge: back-pressure on the broker, not a refusal), then 503."""
        future: Future = Future()
        deadline = time.monotonic() + wait_s
        with self.ready:
            while True:
                if self.closed:
                    raise ShopError(503, "the service is stopping: retry on its next start", {"Retry-After": "5"})
                queue = self.queues.get(key)
                if queue is None or len(queue) < self.per_key:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ShopError(503, f"{len(queue)} writes already wait for this shop: retry after Retry-After"
                                         " seconds", {"Retry-After": "1"})  # fmt: skip
                self.ready.wait(left)
            if queue is None:
                queue = self.queues[key] = deque()
                self.turns.append(key)
            queue.append((work, args, future))
            self.ready.notify_all()
        return future

    def close(self) -> None:
        """Take no more writes, finish the queued ones, stop."""
        with self.ready:
            self.closed = True
            self.ready.notify()
        self.thread.join()

    def _serve(self) -> None:
        while True:
            with self.ready:
                while not self.turns and not self.closed:
                    self.ready.wait()
                if not self.turns:
                    return
                key = self.turns.popleft()
                queue = self.queues[key]
                work, args, future = queue.popleft()
                if queue:
                    self.turns.append(key)
                else:
                    del self.queues[key]
                self.ready.notify_all()  # room for a writer that waits
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(work(*args))
                except BaseException as error:  # the caller gets it (a refusal, a disk error)
                    future.set_exception(error)


class PlanWaiters:
    """The long polls waiting for shops' next plans (GET .../plan?after=V), on the event loop:
    an event per shop with someone waiting, dropped when the last one leaves (no growth), at most
    ``per_shop`` waiting per shop and ``total`` in all (503 beyond)."""

    def __init__(self, per_shop: int, total: int) -> None:
        self.per_shop, self.total = per_shop, total
        self.events: dict[str, tuple[asyncio.Event, int]] = {}
        self.count = 0
        self.loop: asyncio.AbstractEventLoop | None = None

    @contextlib.contextmanager
    def waiting(self, shop_id: str):
        """An event set at the shop's next plan, held while the caller waits."""
        self.loop = asyncio.get_running_loop()
        event, here = self.events.get(shop_id) or (asyncio.Event(), 0)
        if here >= self.per_shop or self.count >= self.total:
            raise ShopError(503, f"{here} clients already wait for shop {shop_id!r}'s plans ({self.count} for all"
                                 " shops): retry, or subscribe over MQTT", {"Retry-After": "1"})  # fmt: skip
        self.events[shop_id] = (event, here + 1)
        self.count += 1
        try:
            yield event
        finally:
            self.count -= 1
            event, here = self.events[shop_id]
            if here == 1:
                del self.events[shop_id]
            else:
                self.events[shop_id] = (event, here - 1)

    def wake(self, shop_id: str) -> None:
        """A new plan of the shop (any thread): wake its waiters."""
        if self.loop is not None and shop_id in self.events:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
                self.loop.call_soon_threadsafe(self._wake, shop_id)

    def _wake(self, shop_id: str) -> None:
        held = self.events.get(shop_id)
        if held is not None:
            held[0].set()
            self.events[shop_id] = (asyncio.Event(), held[1])  # later waits wait for the plan after


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
