"""The shop-session routes: /v1/shops, its events, its plan. They call only the door,
:class:`service.shops.Shops` (the work itself is there)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

from service.schemas import EventBatch, RequestError, ShopCreate, ShopUpdate

#: The longest a GET .../plan?after=V may wait for a newer plan.
MAX_WAIT_MS = 30_000
SHOP_ERRORS = {
    404: "no such shop (or no plan yet)", 409: "an event the shop's state refuses: names the event and the field",
    429: "too many event batches for this shop: retry after Retry-After seconds",
    503: "a quarantined shop (its log could not be read back: the reason), a failed first plan, or too many"
         " writes or long polls waiting: retry after Retry-After seconds",
}  # fmt: skip


def _refused(error: RequestError) -> JSONResponse:
    return JSONResponse({"detail": error.detail}, error.status, headers=error.headers)


def shop_routes(app: FastAPI, door: Callable[[], Any], read_body, guard: list) -> None:
    """POST/GET /v1/shops, GET/DELETE /v1/shops/{id}, POST .../events, GET .../plan (all behind
    ``guard``); ``door()`` is the service's :class:`~service.shops.Shops` (made at start-up)."""
    responses: dict[int | str, dict[str, Any]] = {code: {"description": text} for code, text in SHOP_ERRORS.items()}
    by_id = {"shop_id": "$response.body#/id"}
    created = {**responses, 201: {"description": "the shop, with its id", "links": {
        name: {"operationId": operation, "parameters": by_id} for name, operation in (
            ("events", "postShopEvents"), ("state", "getShop"), ("plan", "getShopPlan"), ("end", "deleteShop"))}}}  # fmt: skip

    @app.post("/v1/shops", status_code=201, dependencies=guard, responses=created, tags=["shop sessions"],
              operation_id="createShop",
              summary="open a shop session: equipment, decider, budget -> an id",
              openapi_extra=body_of(ShopCreate))  # fmt: skip
    async def create_shop(request: Request) -> Response:
        raw = await read_body(request)
        try:
            shop = await asyncio.wrap_future(door().submit_create(raw))
        except RequestError as error:
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
        return door().shop_list()

    @app.get("/v1/shops/{shop_id}", dependencies=guard, responses=responses, tags=["shop sessions"], operation_id="getShop",
             summary="a shop's state: equipment, active work orders, time, events applied")  # fmt: skip
    def shop_state(shop_id: str) -> Response:
        try:
            return JSONResponse({"id": shop_id, **door().state(shop_id)})
        except RequestError as error:
            return _refused(error)

    @app.patch("/v1/shops/{shop_id}", dependencies=guard, responses=responses, tags=["shop sessions"],
               operation_id="updateShop", openapi_extra=body_of(ShopUpdate),
               summary="change a live shop's decider (e.g. a registered model, policy@NAME) or budget")  # fmt: skip
    async def update_shop(shop_id: str, request: Request) -> Response:
        try:
            raw = await read_body(request)
            return JSONResponse(await asyncio.wrap_future(door().submit_update(shop_id, raw)))
        except RequestError as error:
            return _refused(error)

    @app.delete("/v1/shops/{shop_id}", status_code=204, dependencies=guard, responses=responses, operation_id="deleteShop",
                tags=["shop sessions"], summary="end a shop session (its log and plans are deleted)")  # fmt: skip
    async def delete_shop(shop_id: str) -> Response:
        try:
            await asyncio.wrap_future(door().submit_delete(shop_id))
        except RequestError as error:
            return _refused(error)
        return Response(status_code=204)

    @app.post("/v1/shops/{shop_id}/events", dependencies=guard, responses=responses, tags=["shop sessions"],
              operation_id="postShopEvents",
              summary="events that happened (all accepted or none); a repeated event_id is acknowledged once",
              openapi_extra=body_of(EventBatch))  # fmt: skip
    async def post_events(shop_id: str, request: Request) -> Response:
        try:
            door().allow(shop_id)  # before the body is read: a refused batch costs no bytes
            raw = await read_body(request)
            return JSONResponse(await asyncio.wrap_future(door().submit_events(shop_id, raw)))
        except RequestError as error:
            return _refused(error)

    @app.get("/v1/shops/{shop_id}/plan", dependencies=guard, responses=responses, tags=["shop sessions"],
             operation_id="getShopPlan",
             summary="the shop's current plan: version, when and by what it was made, what changed")  # fmt: skip
    async def shop_plan(
        shop_id: str,
        after: int | None = Query(None, ge=0, description="wait for a version newer than this"),  # noqa: B008
        wait_ms: int = Query(0, ge=0, le=MAX_WAIT_MS, description="how long to wait for it"),  # noqa: B008
    ) -> Response:
        try:
            if after is None:
                _version, body = door().plan(shop_id)
            else:
                _version, body = await door().wait_for_plan(shop_id, after, wait_ms)
        except RequestError as error:
            return _refused(error)
        return Response(body, media_type="application/json")


def body_of(model) -> dict:
    """The OpenAPI request body of a route that reads its own body (so that it is read off the loop)."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}  # fmt: skip
