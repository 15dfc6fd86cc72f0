"""The scheduling microservice: every registered decider behind HTTP/JSON, with budgets; stateless
routes and durable shop sessions.

    sched-env serve --port 8000             # or: uvicorn --factory service.app:create_app

Two kinds of routes. The stateless ones (``/v1/schedule``, ``/v1/reschedule``) carry the whole shop
in every request, so replicas behind any load balancer scale them. The shop sessions
(``/v1/shops``, :mod:`service.shop_routes`) keep a shop's state from its events, logged in SQLite
(:mod:`service.store`) and fed over HTTP or MQTT (:mod:`service.mqtt`); one process owns a
database's shops. The event loop only moves bytes: a request's token is checked before its body is read, the body
is read up to the byte limit (chunked or not) within a timeout, and everything else (parsing,
validation, the decider, the answer's JSON) runs on a bounded pool of decider threads. Beyond the
queue a request gets 503 with Retry-After. Each request has one deadline, from its arrival: its
``budget_ms`` (or 60 s); the decider gets what is left of it, and the answer comes by then, or as
a 504 at most ``BUDGET_GRACE_S`` later (the decider stops at the same deadline, so its thread is
free again). Models load once at start-up through the ONNX path (no torch needed); a missing or
corrupt model stops start-up with one clear line. ``SCHED_ENV_TOKEN`` set: every /v1 route,
/metrics included, needs ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.requests import ClientDisconnect

from baselines.budget import MIN_DECIDER_S, SERVICE_ANSWER
from instances import SchedEnvError
from service.schemas import (
    MAX_BODY_BYTES,
    MAX_BUDGET_MS,
    ErrorResponse,
    EventBatch,
    PlanResponse,
    RequestError,
    RescheduleRequest,
    ScheduleRequest,
    ShopCreate,
    ShopUpdate,
    build_decider,
    parse_request,
    plan_rows,
    schedule_problem,
    to_state,
)
from service.shop_routes import body_of, shop_routes
from service.shops import DEFAULT_MAX_BUDGET_MS, DEFAULT_SHOP_RATE, ShopSettings
from service.store import default_path

LOG = logging.getLogger("sched_env.service")
#: How long past a request's deadline it may take before it is answered 504.
BUDGET_GRACE_S = 0.25
#: A request without a budget has this long.
DEFAULT_TIMEOUT_S = 60.0
#: The longest a request may have (its budget is at most MAX_BUDGET_MS), until its own is known.
LONGEST_S = max(DEFAULT_TIMEOUT_S, MAX_BUDGET_MS / 1000)
#: How long a decider thread may hold the GIL while the event loop waits for it (Python's default is
#: 5 ms): the loop gives the GIL up on every socket read and must get it back behind the deciders.
SWITCH_INTERVAL_S = 0.0005
#: A body still arriving after this long is *slow*: one client address may have readers_per_client of them.
SLOW_BODY_S = 1.0
#: The longest error text an answer carries (a solver's message can be a whole model).
MAX_DETAIL = 300


class ConfigurationError(SchedEnvError, ValueError):
    """Settings the service cannot start with (e.g. an empty token)."""


@dataclass
class Settings:
    workers: int = 2  # decider threads per process
    queue: int = 16  # requests waiting for a thread beyond the running ones; more get 503
    token: str | None = None
    static_model: str | None = None  # a model file for `policy` on static work (default: the shipped one)
    body_timeout_s: float = 30.0  # a request body must arrive within this long (408)
    readers: int = 32  # bodies read at once (at most 8 MiB each); more get 503
    readers_per_client: int = 8  # slow bodies (over SLOW_BODY_S) from one client address (behind a proxy: readers)
    public_metrics: bool = False  # /metrics without the token even when one is set
    db: str | None = None  # the shop sessions' SQLite file (None: kept in memory only, for tests and embedding)
    mqtt: str | None = None  # HOST:PORT of an MQTT broker to bridge shop events and plans through
    mqtt_client_id: str | None = None  # the bridge's MQTT client id (default: derived from the database path)
    mqtt_topic_root: str = "sched-env"  # the topics' first level(s): <root>/shops/<id>/events, .../plan, .../errors
    shop_rate: float = DEFAULT_SHOP_RATE  # event batches per second per shop, HTTP and MQTT (429 beyond)
    max_shop_budget_ms: int = DEFAULT_MAX_BUDGET_MS  # the longest budget_ms a shop session may ask
    mqtt_username: str | None = None  # the bridge's broker login (its password: SCHED_ENV_MQTT_PASSWORD or a file)
    mqtt_password: str | None = field(default=None, repr=False)
    mqtt_ca: str | None = None  # TLS: the broker's CA file (TLS is on when any of the three is given)
    mqtt_cert: str | None = None  # TLS: the bridge's client certificate and key (PEM files)
    mqtt_key: str | None = None
    opcua: tuple[str, ...] = ()  # OPC UA mapping files (service.opcua): one bridge per file
    models_dir: str | None = None  # registered models: NAME.onnx there is `policy@NAME` (read when used)

    def shop_settings(self) -> ShopSettings:
        return ShopSettings(workers=self.workers, shop_rate=self.shop_rate, max_budget_ms=self.max_shop_budget_ms,
                            models_dir=self.models_dir)  # fmt: skip

    def __post_init__(self) -> None:
        if self.token is not None and not self.token.strip():
            raise ConfigurationError(
                "SCHED_ENV_TOKEN is set but empty: set a real token, or unset it to serve without one"
            )
        if self.workers < 1 or self.queue < 0 or min(self.readers, self.readers_per_client) < 1 or \
                not self.body_timeout_s > 0:  # fmt: skip
            raise ConfigurationError(f"need threads >= 1, queue >= 0, readers >= 1 and a positive body timeout: {self}")
        if not self.shop_rate > 0:
            raise ConfigurationError(f"the shop rate must be > 0 event batches per second, got {self.shop_rate}")
        if not 1 <= self.max_shop_budget_ms <= MAX_BUDGET_MS:
            raise ConfigurationError(f"the shop budget cap must be 1-{MAX_BUDGET_MS} ms, got {self.max_shop_budget_ms}")
        for path in self.opcua:
            from service.opcua import MappingError, read_mapping

            try:
                read_mapping(path)  # refused now, in one line, rather than a bridge that never works
            except MappingError as error:
                raise ConfigurationError(f"--opcua {error}") from None
        if (self.mqtt_cert is None) != (self.mqtt_key is None):
            raise ConfigurationError("give the MQTT client certificate and its key together (--mqtt-cert, --mqtt-key)")
        if self.mqtt is not None:
            from service.mqtt import broker_address, check_root

            try:
                broker_address(self.mqtt)  # refused now rather than a failed connection later
                check_root(self.mqtt_topic_root)
            except ValueError as error:
                raise ConfigurationError(str(error)) from None


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sched_env_requests_total", "HTTP requests", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "sched_env_request_seconds", "request latency", ["endpoint"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )  # fmt: skip
        self.overruns = Counter("sched_env_budget_overruns_total", "answers later than their budget, by decider family",
                                ["family"], registry=self.registry)  # fmt: skip
        self.rejected = Counter("sched_env_rejected_total", "requests refused: queue full (503) or timed out (504)",
                                ["reason"], registry=self.registry)  # fmt: skip
        self.replan_failures = Counter("sched_env_replan_failures_total", "shop replans that failed (the previous"
                                       " plan is served, marked stale)", registry=self.registry)  # fmt: skip


class Pool:
    """A bounded worker pool: ``workers`` threads, ``queue`` more waiting; beyond that, refuse."""

    def __init__(self, workers: int, queue: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decider")
        self.capacity = workers + queue
        self.lock = threading.Lock()
        self.taken = 0  # slots in use (read on the loop, so that a full pool refuses before a body is read)

    @property
    def full(self) -> bool:
        return self.taken >= self.capacity

    def _release(self, _future) -> None:
        with self.lock:
            self.taken -= 1

    async def run(self, job, latest: float) -> Any:
        """Run ``job(tell)`` on a thread; ``tell(deadline)`` (from the thread, once the budget is
        known) sets when it must be done. Past that deadline plus the grace: 504."""
        with self.lock:
            if self.taken >= self.capacity:
                raise at_capacity()
            self.taken += 1
        loop = asyncio.get_running_loop()
        deadline = loop.create_future()

        def tell(when: float) -> None:
            loop.call_soon_threadsafe(lambda: deadline.done() or deadline.set_result(when))

        future = self.executor.submit(job, tell)
        future.add_done_callback(self._release)
        answer = asyncio.wrap_future(future)
        await asyncio.wait(
            {answer, deadline}, timeout=latest - time.perf_counter(), return_when=asyncio.FIRST_COMPLETED
        )
        when = deadline.result() if deadline.done() else latest
        try:
            return await asyncio.wait_for(answer, max(when - time.perf_counter(), 0) + BUDGET_GRACE_S)
        except asyncio.TimeoutError:
            job.abandoned.set()  # the job stops at its next step (a decider stops at the same deadline anyway)
            raise _late() from None
        finally:
            deadline.cancel()


def at_capacity() -> HTTPException:
    return HTTPException(
        503, "the scheduler is at capacity; retry shortly", headers={"Retry-After": "1", "Connection": "close"}
    )


def settings_from_environment() -> Settings:
    """Settings from ``SCHED_ENV_TOKEN``, ``SCHED_ENV_MODEL``, ``SCHED_ENV_THREADS``, ``SCHED_ENV_QUEUE``,
    ``SCHED_ENV_BODY_TIMEOUT``, ``SCHED_ENV_PUBLIC_METRICS``, ``SCHED_ENV_DB`` (default: see
    :func:`service.store.default_path`), ``SCHED_ENV_MQTT``, ``SCHED_ENV_MQTT_CLIENT_ID`` and
    ``SCHED_ENV_SHOP_RATE``, ``SCHED_ENV_MAX_SHOP_BUDGET_MS``, ``SCHED_ENV_MQTT_USERNAME``,
    ``SCHED_ENV_MQTT_PASSWORD``, ``SCHED_ENV_MQTT_CA``, ``SCHED_ENV_MQTT_CERT``, ``SCHED_ENV_MQTT_KEY``
    (for ``uvicorn --factory service.app:create_app``; ``sched-env serve`` builds Settings itself)."""
    env = os.environ
    return Settings(
        workers=int(env.get("SCHED_ENV_THREADS", 2)), queue=int(env.get("SCHED_ENV_QUEUE", 16)),
        token=env.get("SCHED_ENV_TOKEN"), static_model=env.get("SCHED_ENV_MODEL") or None,
        body_timeout_s=float(env.get("SCHED_ENV_BODY_TIMEOUT", 30)),
        public_metrics=env.get("SCHED_ENV_PUBLIC_METRICS", "") == "1",
        db=str(default_path()), mqtt=env.get("SCHED_ENV_MQTT") or None,
        mqtt_client_id=env.get("SCHED_ENV_MQTT_CLIENT_ID") or None,
        mqtt_topic_root=env.get("SCHED_ENV_MQTT_TOPIC_ROOT") or "sched-env",
        shop_rate=float(env.get("SCHED_ENV_SHOP_RATE", DEFAULT_SHOP_RATE)),
        max_shop_budget_ms=int(env.get("SCHED_ENV_MAX_SHOP_BUDGET_MS", DEFAULT_MAX_BUDGET_MS)),
        mqtt_username=env.get("SCHED_ENV_MQTT_USERNAME") or None, mqtt_password=env.get("SCHED_ENV_MQTT_PASSWORD"),
        mqtt_ca=env.get("SCHED_ENV_MQTT_CA") or None, mqtt_cert=env.get("SCHED_ENV_MQTT_CERT") or None,
        mqtt_key=env.get("SCHED_ENV_MQTT_KEY") or None,
    )  # fmt: skip


def load_models(settings: Settings) -> dict[str, Any]:
    """Load the shipped (or given) policies and warm every kernel (the simulator's, the tabu
    search's compiling beside them); what /v1/model reports."""
    from agents.loading import load_policy
    from baselines import tabu  # noqa: F401  (registers the "tabu" kernel group)
    from sched_env.warmup import compile_beside, warm_up

    compile_beside("tabu")
    warm_up("static", "dynamic")
    static = load_policy(settings.static_model, kind="static")
    dynamic = load_policy(kind="dynamic")
    flexible, running_flexible = load_policy(kind="flexible"), load_policy(kind="dynamic-flexible")
    warm_up("tabu")
    return {"static": static, "dynamic": dynamic, "flexible": flexible, "dynamic-flexible": running_flexible}


#: Deciders run once on a tiny shop at start-up, with their budgets, so that no request's deadline
#: pays for an import (OR-Tools takes ~0.5 s) or a first call; ``random:300`` without a budget runs
#: one batch of 300, which compiles the parallel rollout kernel.
WARM_SPECS = (("mwkr", 1.0), ("random:2", 1.0), ("random:300", None), ("policy", 1.0), ("policy:2", 1.0),
              ("tabu:0.05", 1.0), ("cpsat:0.2", 1.0), ("hybrid:0.2", 1.0))  # fmt: skip


def warm_deciders(models: dict[str, Any]) -> None:
    """Plan a tiny static shop and a tiny running shop with each of :data:`WARM_SPECS`."""
    from baselines import deciders
    from instances import JobShopInstance
    from sched_env.snapshot import ShopState

    tiny = JobShopInstance([[0, 1], [1, 0]], [[2, 3], [2, 1]], n_machines=2, name="warm-up")
    dated = JobShopInstance.from_jobs([[(0, 2), (1, 3)], [(1, 2), (0, 1)]], n_machines=2, name="warm-up",
                                      release_dates=[0, 0], due_dates=[4, 6], weights=[1, 2])  # fmt: skip
    running = ShopState(1, dated, [0, 1], [], [[0, 0, 0, 0, 2]], [[1, 1, 3, 0]], "resume")
    flexible = JobShopInstance.from_alternatives([[[(0, 2), (1, 3)], [(1, 2)]], [[(0, 1), (1, 1)]]], n_machines=2,
                                                 name="warm-up")  # fmt: skip
    for spec, budget_s in WARM_SPECS:
        try:
            decider = deciders.make(spec, allow_files=False)
        except ImportError:  # an optional extra not installed (OR-Tools): its requests get 422 anyway
            continue
        deciders.give_models(decider, models)
        for problem in (tiny, running):
            deciders.solve(problem, decider, budget_s=budget_s)
        if spec.startswith(("policy", "hybrid")):  # the pair policy's kernels, on a tiny flexible shop
            deciders.solve(flexible, decider, budget_s=budget_s)


ERRORS = {
    400: "the body is not UTF-8 JSON", 401: "missing or wrong bearer token", 408: "the body came too slowly",
    413: "over a size limit (bytes, operations, equipment, windows, events)", 422: "invalid: names the field",
    500: "internal error, with a request id", 503: "at capacity: retry after Retry-After seconds",
    504: "no plan by the deadline",
}  # fmt: skip


@dataclass
class ServiceState:
    """What a running service holds, made at start-up (the routes read it, never a dict of it)."""

    ready: bool = False
    reading: int = 0  # request bodies being read now
    reading_by_client: dict[str, list[float]] = field(default_factory=dict)  # when each began, per client address
    models: dict[str, Any] = field(default_factory=dict)
    models_dir: str | None = None  # registered models (Settings.models_dir)
    pool: Pool | None = None
    shops: Any = None  # service.shops.Shops: the one door to the shop sessions
    mqtt: Any = None  # service.mqtt.MqttBridge, when --mqtt is given
    opcua: list = field(default_factory=list)  # service.opcua.OpcUaBridge, one per --opcua mapping


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or settings_from_environment()
    metrics = Metrics()
    state = ServiceState(models_dir=settings.models_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.models = load_models(settings)
        await asyncio.to_thread(warm_deciders, state.models)
        state.pool = Pool(settings.workers, settings.queue)
        state.shops = await asyncio.to_thread(_open_shops, state.models, settings)
        state.shops.subscribe(on_failure=lambda _shop, _failure: metrics.replan_failures.inc())
        gc.collect()
        gc.freeze()  # the models and kernels are never garbage: later collections skip them (shorter pauses)
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        if settings.mqtt is not None:
            from service.mqtt import MqttBridge

            state.mqtt = MqttBridge(settings, state.shops, client_id=settings.mqtt_client_id or
                                    _client_id(settings.db)).start()  # fmt: skip
        state.opcua = _opcua_bridges(settings, state.shops)
        state.ready = True
        yield
        for bridge in state.opcua:
            bridge.stop()
        if state.mqtt is not None:
            state.mqtt.stop()
        state.pool.executor.shutdown(wait=False, cancel_futures=True)
        state.shops.close()

    app = FastAPI(
        title="sched-env scheduling service", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
        description="Job-shop plans from work orders and shop states, by any registered decider within a budget.",
        responses={code: {"model": ErrorResponse, "description": text} for code, text in ERRORS.items()},
    )  # fmt: skip
    app.state.internal = state  # the service's state, for tests and debugging (never served)
    app.add_middleware(Edge, metrics=metrics, app_routes=lambda: app.routes)
    _error_bodies(app)
    _offline_docs(app)
    guard = [Depends(_bearer_check(settings.token))] if settings.token else []
    _info_routes(app, state, metrics, guard, [] if settings.public_metrics else guard)
    _plan_routes(app, state, metrics, settings, guard)
    shop_routes(app, lambda: state.shops, lambda request: _read_body(request, state, settings), guard)
    _document_bodies(app)
    return app


def _open_shops(models: dict[str, Any], settings: Settings):
    """Open the shop database and rebuild every shop from its log (one line says how long it took)."""
    from service.shops import Shops
    from service.store import EventStore

    started = time.perf_counter()
    shops = Shops(EventStore(settings.db), models, settings.shop_settings())
    replayed = shops.restore()
    LOG.info("shop sessions in %s: %d shops, %d events replayed in %.2f s%s", settings.db or "memory (not kept)",
             len(shops.shops), replayed, time.perf_counter() - started,
             f"; {len(shops.quarantined)} quarantined" if shops.quarantined else "")  # fmt: skip
    return shops


def _opcua_bridges(settings: Settings, shops) -> list:
    """One started OPC UA bridge per mapping file (a shop the mapping names that is not open is one warning)."""
    from service.opcua import OpcUaBridge, read_mapping

    bridges = []
    for path in settings.opcua:
        mapping = read_mapping(path)
        if mapping.shop not in {row["id"] for row in shops.shop_list()}:
            LOG.warning("--opcua %s: no open shop %s: its events are refused until the mapping names an open"
                        " shop (create one with POST /v1/shops, then restart with its id)", path, mapping.shop)  # fmt: skip
        bridges.append(OpcUaBridge(mapping, shops).start())
    return bridges


def _client_id(db: str | None) -> str:
    """A stable MQTT client id per database (the broker keeps the bridge's session across restarts)."""
    import hashlib

    return "sched-env-" + hashlib.sha256(str(Path(db).resolve() if db else "memory").encode()).hexdigest()[:12]


def _error_bodies(app: FastAPI) -> None:
    """Every error as ``{"detail": "<one line>"}`` (the documented ErrorResponse): a query parameter
    out of range names itself, and a 405 lists in ``Allow`` every method the path has."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from service.schemas import describe_errors

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": describe_errors(list(error.errors()))}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        headers = dict(error.headers or {})
        if error.status_code == 405:
            methods = set()
            for route in app.routes:
                if getattr(route, "methods", None) and route.path_regex.match(request.url.path):
                    methods |= route.methods
            headers["Allow"] = ", ".join(sorted(methods))
        return JSONResponse({"detail": str(error.detail)}, error.status_code, headers=headers)


def _bearer_check(token: str):
    """The dependency that refuses a request without ``Authorization: Bearer <token>`` (the
    scheme in any case, the token compared in constant time); it runs before the body is read."""
    bearer = HTTPBearer(auto_error=False, description="the server's SCHED_ENV_TOKEN")
    expected = token.encode()

    async def authorised(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        given = credentials.credentials.encode() if credentials is not None else b""
        if not hmac.compare_digest(given, expected):
            raise HTTPException(401, "missing or wrong bearer token (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip

    return authorised


class Edge:
    """ASGI middleware at the edge: records each request's arrival (its deadline counts from
    it), refuses a declared body over the limit at once, and counts requests with bounded labels."""

    def __init__(self, app, metrics: Metrics, app_routes) -> None:
        self.app, self.metrics, self.app_routes, self.paths = app, metrics, app_routes, None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        arrival = scope["sched_env.arrival"] = time.perf_counter()
        if self.paths is None:
            self.paths = [(route.path_regex, route.path) for route in self.app_routes() if hasattr(route, "path_regex")]
        # bounded label values: the route's template (/v1/shops/{shop_id}/events), unknown paths "other"
        endpoint = next((path for regex, path in self.paths if regex.match(scope["path"])), "other")
        status = [500]

        async def counted(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            response = JSONResponse({"detail": f"request body of {int(length)} bytes; the limit is {MAX_BODY_BYTES}"},
                                    413, headers={"Connection": "close"})  # fmt: skip
            await response(scope, receive, counted)
        else:
            await self.app(scope, receive, counted)
        self.metrics.requests.labels(endpoint, str(status[0])).inc()
        self.metrics.latency.labels(endpoint).observe(time.perf_counter() - arrival)


def _info_routes(app: FastAPI, state: ServiceState, metrics: Metrics, guard: list, metrics_guard: list) -> None:
    """Health, readiness, the loaded models, the decider listing and the Prometheus metrics."""

    @app.get("/healthz", summary="alive")
    async def healthz() -> dict:  # async: answered on the loop, no thread hand-off
        return {"status": "ok"}

    @app.get("/readyz", summary="kernels warm and models loaded")
    async def readyz():
        if not state.ready:
            return JSONResponse({"status": "starting"}, 503)
        return {"status": "ready"}

    @app.get("/v1/model", dependencies=guard, summary="the loaded policies: name, file, training config, file hash")
    def model() -> dict:
        return {kind: policy.describe() for kind, policy in state.models.items()}

    @app.get("/v1/methods", dependencies=guard, summary="every registered decider spec")
    def methods() -> list[dict]:
        from baselines import deciders

        return [{"name": n, "example": e, "summary": s, "origin": o} for n, e, s, o in deciders.describe()]

    @app.get("/metrics", dependencies=metrics_guard, summary="Prometheus metrics",
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})  # fmt: skip
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _plan_routes(app: FastAPI, state: ServiceState, metrics: Metrics, settings: Settings, guard: list) -> None:
    """/v1/schedule and /v1/reschedule: the body read on the loop (bounded), the rest on a thread."""

    async def answer(request: Request, model) -> Response:
        arrival = request.scope.get("sched_env.arrival", time.perf_counter())
        if state.pool.full:  # refused before its body is read: no bytes received in vain
            metrics.rejected.labels("503").inc()
            raise at_capacity()
        raw = await _read_body(request, state, settings)
        job = _Planning(raw, model, arrival, state, metrics)
        try:
            content = await state.pool.run(job, arrival + LONGEST_S)
        except HTTPException as error:
            if error.status_code in (503, 504):
                metrics.rejected.labels(str(error.status_code)).inc()
            raise
        return Response(content, media_type="application/json")

    @app.post("/v1/schedule", response_model=PlanResponse, dependencies=guard,
              summary="work orders -> a plan (makespan)", openapi_extra=body_of(ScheduleRequest))  # fmt: skip
    async def schedule(request: Request) -> Response:
        return await answer(request, ScheduleRequest)

    @app.post("/v1/reschedule", response_model=PlanResponse, dependencies=guard,
              summary="a running shop's state -> a new plan for the remaining work",
              openapi_extra=body_of(RescheduleRequest))  # fmt: skip
    async def reschedule(request: Request) -> Response:
        return await answer(request, RescheduleRequest)


async def _read_body(request: Request, state: ServiceState, settings: Settings) -> bytes:
    """The body's bytes, refused past MAX_BODY_BYTES as they arrive (chunked uploads included) or
    when they take longer than the body timeout; at most ``settings.readers`` bodies at once, and
    from one address at most ``settings.readers_per_client`` *slow* ones (arriving for over
    SLOW_BODY_S): one slow client cannot hold every reader, a fast one may send many at once."""
    client, now = (request.client.host if request.client else "unknown"), time.monotonic()
    if state.reading >= settings.readers:
        raise HTTPException(503, "too many uploads at once; retry shortly", headers={"Retry-After": "1"})
    started = state.reading_by_client.setdefault(client, [])
    if sum(now - t > SLOW_BODY_S for t in started) >= settings.readers_per_client:
        raise HTTPException(503, f"this client already has {settings.readers_per_client} bodies arriving for over"
                                 f" {SLOW_BODY_S:g} s, the most one address may; retry when one is done",
                            headers={"Retry-After": "1"})  # fmt: skip
    state.reading += 1
    started.append(now)
    chunks: list[bytes] = []

    async def collect() -> None:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise HTTPException(413, f"request body over {MAX_BODY_BYTES} bytes; the limit is {MAX_BODY_BYTES}",
                                    headers={"Connection": "close"})  # fmt: skip
            chunks.append(chunk)

    try:
        await asyncio.wait_for(collect(), settings.body_timeout_s)
    except asyncio.TimeoutError:
        raise HTTPException(408, f"the request body did not arrive within {settings.body_timeout_s:g} s",
                            headers={"Connection": "close"}) from None  # fmt: skip
    except ClientDisconnect:  # one log line, not a traceback per dropped upload (issue 27, finding 9)
        read = sum(len(chunk) for chunk in chunks)
        LOG.info("%s %s: the client went away before its body arrived (%d bytes read)", request.method,
                 request.url.path, read)  # fmt: skip
        raise HTTPException(
            400, "the client went away before its body arrived", headers={"Connection": "close"}
        ) from None
    finally:
        state.reading -= 1
        started.remove(now)
        if not started:  # an address with nothing in flight keeps no entry (no growth)
            state.reading_by_client.pop(client, None)
    return b"".join(chunks)


class _Planning:
    """One request's work on a decider thread: parse and validate the body, build the decider,
    plan with what is left of the deadline, and write the answer's JSON (all inside the timed window)."""

    def __init__(self, raw: bytes, model, arrival: float, state: ServiceState, metrics: Metrics) -> None:
        self.raw, self.model, self.arrival, self.state, self.metrics = raw, model, arrival, state, metrics
        self.abandoned = threading.Event()  # set when the request was answered 504: no work is worth doing

    def __call__(self, tell) -> bytes:
        if time.perf_counter() >= self.arrival + _declared_budget_s(self.raw) + BUDGET_GRACE_S:
            raise _late()  # it waited for a thread past its deadline: not even parsed
        body = self._parse()
        self.raw = b""  # the bytes are parsed: let them go
        budget_s = DEFAULT_TIMEOUT_S if body.budget_ms is None else body.budget_ms / 1000
        deadline = self.arrival + budget_s
        tell(deadline)
        if time.perf_counter() >= deadline + BUDGET_GRACE_S:  # it waited for a thread past its 504: plan nothing
            raise _late()
        objective = "makespan" if self.model is ScheduleRequest else body.objective
        try:
            decider = build_decider(body.method, objective, self.state.models, self.state.models_dir)
        except RequestError as error:
            raise HTTPException(error.status, str(error)) from None
        if self.model is ScheduleRequest:
            problem, orders = schedule_problem(body), body.work_orders
        else:
            problem, orders = to_state(body)
        n_operations = sum(len(o.operations) for o in orders)
        left = SERVICE_ANSWER.until(deadline, budget_s, n_operations, floor=MIN_DECIDER_S)
        if self.abandoned.is_set():
            raise _late()
        result = _run_decider(problem, decider, body.method, left)
        if self.abandoned.is_set():
            raise _late()
        return self._answer(body, problem, decider, result, orders)

    def _parse(self):
        try:
            return parse_request(self.raw, self.model)
        except RequestError as error:
            raise HTTPException(error.status, str(error)) from None

    def _answer(self, body, problem, decider, result, orders) -> bytes:
        from baselines import deciders
        from instances import JobShopInstance
        from sched_env.schedule import objectives

        if result.schedule is None:
            raise HTTPException(504, f"{body.method} found no plan within its budget ({result.status})")
        values = objectives(problem if isinstance(problem, JobShopInstance) else problem.jobs, result.schedule)
        rows = plan_rows(result.schedule, orders, body.equipment)  # written in pieces (the encoder holds the GIL)
        plan = "[" + ",".join(json.dumps(rows[i : i + 500])[1:-1] for i in range(0, len(rows), 500)) + "]"
        wall_ms = 1000 * (time.perf_counter() - self.arrival)  # what is left: a few small strings
        over = body.budget_ms is not None and wall_ms > body.budget_ms
        if over:
            self.metrics.overruns.labels(deciders.traits(decider).family).inc()  # the family: a bounded label
        rest = {"objectives": values, "method": result.method, "status": result.status,
                "wall_time_ms": round(wall_ms, 3), "budget_ms": body.budget_ms, "over_budget": over}  # fmt: skip
        return ('{"plan":' + plan + "," + json.dumps(rest)[1:]).encode()


_BUDGET_KEY = re.compile(rb'"budget_ms"\s*:\s*([0-9]{1,7})\b')


def _declared_budget_s(raw: bytes) -> float:
    """The budget a body declares, read without parsing it (a valid body names ``budget_ms`` at
    most once, at the top level: no other object allows the key, and a string cannot hold an
    unescaped quote); the longest any request may have when it is not found once."""
    found = _BUDGET_KEY.findall(raw)
    return int(found[0]) / 1000 if len(found) == 1 else LONGEST_S


def _late() -> HTTPException:
    return HTTPException(504, f"no plan by the request's deadline (+{BUDGET_GRACE_S:g} s); give a larger budget_ms"
                              " or a faster method, or retry when the service is less busy")  # fmt: skip


def _run_decider(problem, decider, method: str, budget_s: float):
    from baselines import deciders
    from instances import InvalidPlanError

    try:
        return deciders.solve(problem, decider, budget_s=budget_s)
    except InvalidPlanError as error:  # the decider's fault, not the request's: log it with an id to quote
        request_id = uuid.uuid4().hex[:12]
        LOG.error("request %s: %s", request_id, error)
        raise HTTPException(500, f"internal error (request id {request_id}): {method} made an invalid plan") from None
    except SchedEnvError as error:
        raise HTTPException(422, _short(f"method {method!r} cannot plan this: {error}")) from None


def _short(text: str) -> str:
    line = (text.strip().splitlines() or [""])[0]
    return line if len(line) <= MAX_DETAIL else line[:MAX_DETAIL] + " ..."


def _document_bodies(app: FastAPI) -> None:
    """Put the request models (and the models they use) into the OpenAPI components."""
    base = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            components = base().setdefault("components", {}).setdefault("schemas", {})  # base() caches the document
            for model in (ScheduleRequest, RescheduleRequest, ShopCreate, ShopUpdate, EventBatch):
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(body.pop("$defs", {}))
                components[model.__name__] = body
        return app.openapi_schema

    app.openapi = openapi


def _offline_docs(app: FastAPI) -> None:
    """``/docs`` from Swagger UI files installed with the package (swagger-ui-bundle): a factory
    network is often offline, and the FastAPI default loads Swagger UI from a CDN."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:  # no bundle installed: the OpenAPI document alone (/openapi.json) still serves
        return
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title=f"{app.title}: API", swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css", swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )  # fmt: skip
