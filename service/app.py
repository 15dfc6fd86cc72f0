"""The scheduling microservice: every registered decider behind HTTP/JSON, with budgets.

    sched-env serve --port 8000             # or: uvicorn --factory service.app:create_app

Stateless: every request carries the whole shop, so replicas behind any load balancer scale it.
CPU work runs on a bounded worker pool off the event loop; beyond the queue a request gets 503
with Retry-After, and a request's budget is enforced (a plan, or 504: never a hung request).
Models load once at start-up through the ONNX path (no torch needed); a missing or corrupt
model stops start-up with one clear line. ``SCHED_ENV_TOKEN`` set: every /v1 route needs
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from service.schemas import (
    MAX_BODY_BYTES,
    ErrorResponse,
    PlanResponse,
    RescheduleRequest,
    ScheduleRequest,
    TooLargeError,
    plan_rows,
    schedule_problem,
    to_state,
)

LOG = logging.getLogger("sched_env.service")
#: Extra seconds past a request's budget before it is answered 504 (the decider's own tolerance).
BUDGET_GRACE_S = 0.25
#: Without a budget a request may take this long before 504.
DEFAULT_TIMEOUT_S = 60.0


@dataclass
class Settings:
    workers: int = 2  # decider threads per process
    queue: int = 16  # requests waiting for a thread beyond the running ones; more get 503
    token: str | None = None
    static_model: str | None = None  # a model file for `policy` on static work (default: the shipped one)


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
        self.overruns = Counter("sched_env_budget_overruns_total", "decider budget over-runs", ["method"],
                                registry=self.registry)  # fmt: skip
        self.rejected = Counter("sched_env_rejected_total", "requests refused: queue full (503) or timed out (504)",
                                ["reason"], registry=self.registry)  # fmt: skip


class Pool:
    """A bounded worker pool: ``workers`` threads, ``queue`` more waiting; beyond that, refuse."""

    def __init__(self, workers: int, queue: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decider")
        self.slots = threading.BoundedSemaphore(workers + queue)

    async def run(self, function, timeout: float):
        if not self.slots.acquire(blocking=False):
            raise HTTPException(503, "the scheduler is at capacity; retry shortly", headers={"Retry-After": "1"})
        future = self.executor.submit(function)
        future.add_done_callback(lambda _: self.slots.release())
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except asyncio.TimeoutError:
            raise HTTPException(
                504, f"no plan within {timeout:.2f} s; give a larger budget_ms or a faster method"
            ) from None


def settings_from_environment() -> Settings:
    """Settings from ``SCHED_ENV_TOKEN``, ``SCHED_ENV_MODEL``, ``SCHED_ENV_THREADS``, ``SCHED_ENV_QUEUE``
    (how ``sched-env serve`` passes them to every uvicorn worker process)."""
    env = os.environ
    return Settings(
        workers=int(env.get("SCHED_ENV_THREADS", 2)), queue=int(env.get("SCHED_ENV_QUEUE", 16)),
        token=env.get("SCHED_ENV_TOKEN") or None, static_model=env.get("SCHED_ENV_MODEL") or None,
    )  # fmt: skip


def load_models(settings: Settings) -> dict[str, Any]:
    """Load the shipped (or given) policies and warm the kernels; what /v1/model reports."""
    from agents.loading import load_policy
    from sched_env import warm_up

    warm_up()
    static = load_policy(settings.static_model, kind="static")
    dynamic = load_policy(kind="dynamic")
    return {"static": static, "dynamic": dynamic}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or settings_from_environment()
    metrics = Metrics()
    state: dict[str, Any] = {"ready": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state["models"] = load_models(settings)
        state["pool"] = Pool(settings.workers, settings.queue)
        state["ready"] = True
        yield
        state["pool"].executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="sched-env scheduling service", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
        description="Job-shop plans from work orders and shop states, by any registered decider within a budget.",
        responses={401: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 422: {"model": ErrorResponse},
                   500: {"model": ErrorResponse}, 503: {"model": ErrorResponse}, 504: {"model": ErrorResponse}},
    )  # fmt: skip
    _offline_docs(app)

    def authorised(request: Request) -> None:
        if settings.token and request.headers.get("authorization") != f"Bearer {settings.token}":
            raise HTTPException(401, "missing or wrong bearer token (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip

    @app.middleware("http")
    async def limits_and_metrics(request: Request, call_next):
        started = time.perf_counter()
        known = {route.path for route in app.routes}
        endpoint = request.url.path if request.url.path in known else "other"  # bounded label values
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            response = JSONResponse({"detail": f"request body of {length} bytes; the limit is {MAX_BODY_BYTES}"}, 413)
        else:
            response = await call_next(request)
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        problems = error.errors()
        for problem in problems:
            if isinstance((problem.get("ctx") or {}).get("error"), TooLargeError):
                return JSONResponse({"detail": str(problem["ctx"]["error"])}, 413)
        return JSONResponse({"detail": "; ".join(_describe(p) for p in problems[:5])}, 422)

    _info_routes(app, state, metrics, authorised)

    @app.post("/v1/schedule", response_model=PlanResponse, dependencies=[Depends(authorised)],
              summary="work orders -> a plan (makespan)")  # fmt: skip
    async def schedule(body: ScheduleRequest) -> PlanResponse:
        decider = _decider(body.method, "makespan", state, settings)
        return await _solve(schedule_problem(body), decider, body, body.work_orders, state, metrics)

    @app.post("/v1/reschedule", response_model=PlanResponse, dependencies=[Depends(authorised)],
              summary="a running shop's state -> a new plan for the remaining work")  # fmt: skip
    async def reschedule(body: RescheduleRequest) -> PlanResponse:
        decider = _decider(body.method, body.objective, state, settings)
        problem, active = to_state(body)
        return await _solve(problem, decider, body, active, state, metrics)

    return app


def _info_routes(app: FastAPI, state: dict, metrics: Metrics, authorised) -> None:
    """Health, readiness, the loaded models, the decider listing and the Prometheus metrics."""

    @app.get("/healthz", summary="alive")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", summary="kernels warm and models loaded")
    def readyz():
        if not state["ready"]:
            return JSONResponse({"status": "starting"}, 503)
        return {"status": "ready"}

    @app.get(
        "/v1/model", dependencies=[Depends(authorised)], summary="the loaded policies: name, training config, file hash"
    )
    def model() -> dict:
        return {kind: policy.describe() for kind, policy in state["models"].items()}

    @app.get("/v1/methods", dependencies=[Depends(authorised)], summary="every registered decider spec")
    def methods() -> list[dict]:
        from baselines import deciders

        return [{"name": n, "example": e, "summary": s, "origin": o} for n, e, s, o in deciders.describe()]

    @app.get("/metrics", summary="Prometheus metrics")
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


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


def _describe(problem: dict) -> str:
    where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body")
    return f"{where or 'body'}: {problem.get('msg', 'invalid')}"


def _decider(method: str, objective: str, state: dict, settings: Settings):
    """The decider a request names, planning with the policies loaded at start-up (a request
    cannot make the service read a file: the door refuses any spec that may name one)."""
    from baselines import deciders

    try:
        decider = deciders.make(method, objective=objective, allow_files=False)
    except (ValueError, deciders.DeciderError) as error:
        raise HTTPException(422, f"method: {error}") from None
    deciders.give_models(decider, state["models"])
    return decider


async def _solve(problem, decider, body, orders, state: dict, metrics: Metrics) -> PlanResponse:
    from baselines import deciders
    from instances import InvalidPlanError, JobShopInstance, SchedEnvError
    from sched_env.schedule import objectives

    budget = None if body.budget_ms is None else body.budget_ms / 1000
    timeout = DEFAULT_TIMEOUT_S if budget is None else budget * 1.05 + BUDGET_GRACE_S

    def work():
        return deciders.solve(problem, decider, budget_s=budget)

    try:
        result = await state["pool"].run(work, timeout)
    except HTTPException as error:
        if error.status_code in (503, 504):
            metrics.rejected.labels(str(error.status_code)).inc()
        raise
    except InvalidPlanError as error:  # the decider's fault, not the request's: log it with an id to quote
        request_id = uuid.uuid4().hex[:12]
        LOG.error("request %s: %s", request_id, error)
        raise HTTPException(500, f"internal error (request id {request_id}): {body.method} made an invalid plan") from None
    except SchedEnvError as error:
        raise HTTPException(422, f"method {body.method!r} cannot plan this: {error}") from None
    if result.schedule is None:
        raise HTTPException(504, f"{body.method} found no plan within its budget ({result.status})")
    if result.over_budget:
        metrics.overruns.labels(deciders.traits(decider).family).inc()  # the family: a bounded label
    values = objectives(problem if isinstance(problem, JobShopInstance) else problem.jobs, result.schedule)
    return PlanResponse(
        plan=plan_rows(result.schedule, orders, body.equipment), objectives={k: float(v) for k, v in values.items()},
        method=result.method, status=result.status, wall_time_ms=round(1000 * result.wall_time_s, 3),
        budget_ms=body.budget_ms, over_budget=result.over_budget,
    )  # fmt: skip
