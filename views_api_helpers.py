"""What every API route shares: the route class that turns domain errors and
bad input into HTTP answers in one place, pagination, and ownership lookups.

HTTP mapping (DcaRoute):
- pydantic/FastAPI validation -> 422 with ``detail[].loc`` naming the field
  (LNbits itself answers 400 for these; this API promises 422);
- errors.Invalid -> 422 ``{"detail": "field: message"}``;
- errors.NotFound -> 404, errors.Conflict -> 409 with the reason;
- a UNIQUE constraint lost to a concurrent write -> 409.
A body that is not JSON at all is 422 too (FastAPI would say 400 for some).
Strings that no database can store (NUL, unpaired surrogates) are refused by
a router dependency, after authentication: 404 in a path id (no such id
exists), 422 elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from decimal import Decimal
from http import HTTPStatus
from typing import Any

from fastapi import Depends, HTTPException, Query, Request, Response
from fastapi.encoders import ENCODERS_BY_TYPE, jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from lnbits.core.crud import get_wallet
from lnbits.core.models import User
from lnbits.decorators import check_user_exists
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError

from . import crud
from .errors import Conflict, Invalid, NotFound
from .models import (
    DcaClient,
    DcaDeposit,
    DcaSettlement,
    Machine,
    check_currency_precision,
)

MAX_LIMIT = 1000
MAX_OFFSET = 1_000_000_000

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not logged in"},
    404: {"description": "Not found, or not yours"},
    409: {"description": "The resource's state refuses the request"},
    422: {"description": "Invalid input; the message names the field"},
}


# --- input the database cannot hold ------------------------------------------


def _unstorable(value: str) -> bool:
    if "\x00" in value:
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate ("\ud800")
        return True
    return False


def _bad_json_path(document: Any) -> list[Any] | None:
    """Where a parsed JSON body holds an unstorable string (iterative walk)."""
    stack: list[tuple[list[Any], Any]] = [([], document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if _unstorable(value):
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                if _unstorable(key):
                    return path
                stack.append(([*path, key], item))
        elif isinstance(value, list):
            stack.extend(([*path, i], item) for i, item in enumerate(value))
    return None


def _invalid_characters(loc: list[Any]) -> HTTPException:
    return HTTPException(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        [
            {
                "loc": loc,
                "msg": "must not contain NUL or unpaired surrogate characters",
                "type": "value_error.str.characters",
            }
        ],
    )


async def refuse_unstorable_input(
    request: Request, user: User = Depends(check_user_exists)
) -> None:
    """A router dependency (so it runs after authentication): refuse strings
    no database can store before any route reads or writes with them."""
    for value in request.path_params.values():
        if isinstance(value, str) and _unstorable(value):
            raise HTTPException(HTTPStatus.NOT_FOUND, "Not found.")
    for name, value in request.query_params.multi_items():
        if _unstorable(name) or _unstorable(value):
            raise _invalid_characters(["query", name])
    raw = await request.body()  # FastAPI read it already: this is its cache
    if not raw:
        return
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        return  # not JSON: FastAPI's own validation refuses it
    path = _bad_json_path(document)
    if path is not None:
        raise _invalid_characters(["body", *path])


async def _unparsable_body(request: Request) -> Response | None:
    """FastAPI answers 400 for a body that is not UTF-8 or nests too deep
    (and 422 for other bad JSON); this API says 422 for all of them."""
    raw = await request.body()  # cached: FastAPI reads the same bytes next
    if not raw:
        return None
    try:
        json.loads(raw)
    except (ValueError, RecursionError):
        return JSONResponse(
            status_code=HTTPStatus.UNPROCESSABLE_ENTITY,
            content={
                "detail": [
                    {
                        "loc": ["body"],
                        "msg": "is not valid JSON",
                        "type": "json_invalid",
                    }
                ]
            },
        )
    return None


# --- the route class ---------------------------------------------------------


class DcaRoute(APIRoute):
    """An APIRoute whose handler maps input and domain errors to HTTP."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        has_body = self.body_field is not None

        async def guarded(request: Request) -> Response:
            refused = await _unparsable_body(request) if has_body else None
            if refused is not None:
                return refused
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return JSONResponse(
                    status_code=HTTPStatus.UNPROCESSABLE_ENTITY,
                    content={"detail": jsonable_encoder(exc.errors())},
                )
            except NotFound as exc:
                raise HTTPException(
                    HTTPStatus.NOT_FOUND, str(exc) or "Not found."
                ) from exc
            except Conflict as exc:
                raise HTTPException(HTTPStatus.CONFLICT, str(exc)) from exc
            except Invalid as exc:
                raise HTTPException(
                    HTTPStatus.UNPROCESSABLE_ENTITY, f"{exc.field}: {exc.message}"
                ) from exc
            except IntegrityError as exc:
                raise HTTPException(
                    HTTPStatus.CONFLICT, "conflicts with an existing record"
                ) from exc

        return guarded


# --- pagination --------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


def page_params(
    limit: int = Query(100, ge=1, le=MAX_LIMIT, description="at most 1000"),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> Page:
    return Page(limit=limit, offset=offset)


# --- responses ---------------------------------------------------------------


def _encode(value: Any) -> Any:
    return ENCODERS_BY_TYPE[type(value)](value)


def json_rows(rows: Sequence[BaseModel]) -> Response:
    """A listing as JSON, encoded in one pass: the same bytes FastAPI would
    send, without re-validating every row model and walking it with
    ``jsonable_encoder`` (most of a listing's time). Routes that use it keep
    ``response_model`` for the schema."""
    body = json.dumps([row.dict() for row in rows], default=_encode)
    return Response(content=body, media_type="application/json")


# --- checks ------------------------------------------------------------------


def check_precision(amount: Decimal | None, currency: str, field: str) -> None:
    if amount is None:
        return
    try:
        check_currency_precision(amount, currency)
    except ValueError as exc:
        raise Invalid(field, str(exc)) from exc


async def check_wallet_of(wallet_id: str, user_id: str, field: str) -> None:
    """The wallet exists and belongs to ``user_id`` (a shared wallet's id does
    not count: it resolves to its source wallet)."""
    wallet = await get_wallet(wallet_id)
    if wallet is None or wallet.id != wallet_id or wallet.user != user_id:
        raise Invalid(field, "is not a wallet of that user")


async def check_wallet_exists(wallet_id: str, field: str) -> None:
    if await get_wallet(wallet_id) is None:
        raise Invalid(field, "no such wallet")


# --- ownership: another operator's resource is simply not found ----------------


async def owned_machine(machine_id: str, user: User) -> Machine:
    machine = await crud.get_operator_machine(machine_id, user.id)
    if machine is None:
        raise NotFound("Machine not found.")
    return machine


async def owned_client(client_id: str, user: User) -> DcaClient:
    client = await crud.get_operator_client(client_id, user.id)
    if client is None:
        raise NotFound("Client not found.")
    return client


async def owned_deposit(deposit_id: str, user: User) -> DcaDeposit:
    deposit = await crud.get_deposit(deposit_id)
    if deposit is None or deposit.operator_user_id != user.id:
        raise NotFound("Deposit not found.")
    return deposit


async def owned_settlement(settlement_id: str, user: User) -> DcaSettlement:
    settlement = await crud.get_settlement(settlement_id)
    if settlement is None or settlement.operator_user_id != user.id:
        raise NotFound("Settlement not found.")
    return settlement


async def machine_of(client: DcaClient) -> Machine:
    machine = await crud.get_machine(client.machine_id)
    if machine is None:  # a client row always has its machine (foreign key)
        raise NotFound("Machine not found.")
    return machine
