"""The shop-session routes: /v1/shops, its events, its plan (the work itself is in service.shops)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

from service.schemas import EventBatch, ShopCreate
from service.shops import ShopError

#: The longest a GET .../plan?after=V may wait for a newer plan.
MAX_WAIT_MS = 30_000
SHOP_ERRORS = {
    404: "no such shop (or no plan yet)", 409: "an event the shop's state refuses: names the event and the field",
    429: "too many event batches for this shop: retry after Retry-After seconds",
}  # fmt: skip


def _refused(error: ShopError) -> JSONResponse:
    return JSONResponse({"detail": error.detail}, error.status, headers=error.headers)


def shop_routes(app: FastAPI, state: dict, read_body, guard: list) -> None:
    """POST/GET /v1/shops, GET/DELETE /v1/shops/{id}, POST .../events, GET .../plan (all behind ``guard``)."""
    responses: dict[int | str, dict[str, Any]] = {code: {"description": text} for code, text in SHOP_ERRORS.items()}
    by_id = {"shop_id": "$response.body#/id"}
    created = {**responses, 201: {"description": "the shop, with its id", "links": {
        name: {"operationId": operation, "parameters": by_id} for name, operation in (
            ("events", "postShopEvents"), ("state", "getShop"), ("plan", "getShopPlan"), ("end", "deleteShop"))}}}  # fmt: skip

    async def journal(work, *args):
        """Run a write on the journal thread (one at a time, in arrival order)."""
        return await asyncio.wrap_future(state["shops"].journal.submit(work, *args))

    @app.post("/v1/shops", status_code=201, dependencies=guard, responses=created, tags=["shop sessions"],
              operation_id="createShop",
              summary="open a shop session: equipment, decider, budget -> an id",
              openapi_extra=body_of(ShopCreate))  # fmt: skip
    async def create_shop(request: Request) -> Response:
        raw = await read_body(request)
        try:
            shop = await journal(state["shops"].create, raw)
        except ShopError as error:
            return _refused(error)
        return JSONResponse(shop, 201, headers={"Location": f"/v1/shops/{shop['id']}"})

    @app.get(
        "/v1/shops",
        dependencies=guard,
        tags=["shop sessions"],
        summary="the open shop sessions",
        operation_id="listShops",
    )
    def list_shops() -> list[dict]:
        shops = list(state["shops"].shops.values())
        return [{"id": s.id, "name": s.session.config.name, "time": s.session.time, "events": s.session.applied,
                 "plan_version": s.plan_version} for s in shops]  # fmt: skip

    @app.get("/v1/shops/{shop_id}", dependencies=guard, responses=responses, tags=["shop sessions"], operation_id="getShop",
             summary="a shop's state: equipment, active work orders, time, events applied")  # fmt: skip
    def shop_state(shop_id: str) -> Response:
        try:
            shops = state["shops"]
            return JSONResponse({"id": shop_id, **shops.describe(shops.get(shop_id))})
        except ShopError as error:
            return _refused(error)

    @app.delete("/v1/shops/{shop_id}", status_code=204, dependencies=guard, responses=responses, operation_id="deleteShop",
                tags=["shop sessions"], summary="end a shop session (its log and plans are deleted)")  # fmt: skip
    async def delete_shop(shop_id: str) -> Response:
        try:
            await journal(state["shops"].delete, shop_id)
        except ShopError as error:
            return _refused(error)
        return Response(status_code=204)

    @app.post("/v1/shops/{shop_id}/events", dependencies=guard, responses=responses, tags=["shop sessions"],
              operation_id="postShopEvents",
              summary="events that happened (all accepted or none); a repeated event_id is acknowledged once",
              openapi_extra=body_of(EventBatch))  # fmt: skip
    async def post_events(shop_id: str, request: Request) -> Response:
        try:
            state["shops"].allow(shop_id)  # before the body is read: a refused batch costs no bytes
            raw = await read_body(request)
            return JSONResponse(await journal(state["shops"].ingest, shop_id, raw))
        except ShopError as error:
            return _refused(error)

    @app.get("/v1/shops/{shop_id}/plan", dependencies=guard, responses=responses, tags=["shop sessions"],
             operation_id="getShopPlan",
             summary="the shop's current plan: version, when and by what it was made, what changed")  # fmt: skip
    async def shop_plan(
        shop_id: str,
        after: int | None = Query(None, ge=0, description="wait for a version newer than this"),  # noqa: B008
        wait_ms: int = Query(0, ge=0, le=MAX_WAIT_MS, description="how long to wait for it"),  # noqa: B008
    ) -> Response:
        return await _wait_for_plan(state, shop_id, after, wait_ms)


async def _wait_for_plan(state: dict, shop_id: str, after: int | None, wait_ms: int) -> Response:
    """The current plan, or, with ``after``, the first newer one within ``wait_ms``."""
    shops, deadline = state["shops"], time.monotonic() + wait_ms / 1000
    while True:
        event = None
        if after is not None and shop_id in shops.shops:  # a waiter per known shop, kept before looking: no
            event = state["plan_waiters"].setdefault(shop_id, asyncio.Event())  # wake-up missed, no growth
        try:
            shops.get(shop_id)
            version, body = shops.plan(shop_id)
        except ShopError as error:
            if error.status != 404 or shop_id not in shops.shops or after is None:
                return _refused(error)
            version, body = 0, None
        left = deadline - time.monotonic()
        if event is None or version > after or left <= 0:
            if body is None:
                return _refused(ShopError(404, f"shop {shop_id!r} has no plan yet: retry shortly"))
            return Response(body, media_type="application/json")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), left)


def body_of(model) -> dict:
    """The OpenAPI request body of a route that reads its own body (so that it is read off the loop)."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}  # fmt: skip
