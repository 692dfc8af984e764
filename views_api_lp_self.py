"""The LP's side of the API (issue 14): invites, the LP's own positions and
preferences, its dashboard, chart, history and CSV export. All under
``/satmachineadmin/api/v1/dca``.

Authentication
- Operator routes (``/invites``, ``/clients/{id}/preferences``): logged in
  (bearer token or cookie), as every operator route.
- LP reads (``GET /lp/...``): logged in, OR the LP's wallet key in the
  ``X-API-KEY`` header (invoice or admin key of any wallet of the LP; the key
  stands for the wallet's owner, so all of the owner's positions answer).
- LP writes (``PUT /lp/positions/{id}``, ``POST /lp/invites/{code}/accept``,
  ``GET /lp/invites/{code}``): logged in, or the admin key in ``X-API-KEY``
  (an invoice key is refused with 403, as LNbits refuses it for spending).
- An unknown key is 401. Another LP's position, or an invite bound to another
  user, is 404.

Response shapes (decimals are JSON strings or numbers as pydantic encodes
them; times ISO 8601 UTC)
- ``POST /invites`` {machine_id, username?} -> 201 InviteOut
  ``{id, code, url, machine_id, username, expires_at, created_at}``; the code is
  24 url-safe characters, one-time, valid 7 days; ``url`` is
  ``<base>/satmachineadmin/?invite=<code>``. Not the operator's machine: 404;
  unknown username: 422 ``username: ...``; user already has a position: 409.
- ``GET /invites`` -> [InviteOut] the operator's pending (unused, unexpired).
- ``DELETE /invites/{invite_id}`` -> 204 (404 if not the operator's).
- ``GET /clients/{client_id}/preferences`` (operator) -> LpPositionPreferences.
- ``GET /lp/invites/{code}`` -> InvitePreview ``{code, machine_id,
  machine_name, currency, operator_user_id, operator_username, username,
  expires_at}``; used: 409; expired: 410; bound to someone else or unknown: 404.
- ``POST /lp/invites/{code}/accept`` {wallet_id} -> 201 LpPositionPreferences
  (the new position, ``lp_managed: true``). Second accept: 409; expired: 410;
  a wallet not the caller's: 422 ``wallet_id: ...``.
- ``GET /lp/positions`` -> [LpPosition] ``{client_id, machine_id, machine_name,
  operator_user_id, wallet_id, username, dca_mode, status, currency,
  total_deposits, total_charged, remaining_balance, sats_received,
  average_price, created_at}``.
- ``GET /lp/positions/{client_id}`` -> LpPositionPreferences ``{client_id,
  machine_id, wallet_id, dca_mode, fixed_mode_daily_limit,
  max_fixed_mode_daily_limit, currency, status, lp_managed,
  autoforward_enabled, autoforward_address, autoforward_threshold_sats,
  autoforward_failures, autoforward_next_try_at, autoforward_last_error,
  updated_at}``.
- ``PUT /lp/positions/{client_id}`` {wallet_id?, dca_mode?,
  fixed_mode_daily_limit?, autoforward_enabled?, autoforward_address?,
  autoforward_threshold_sats?} -> LpPositionPreferences. 422 naming the field
  for: a wallet not the LP's, a limit above ``max_fixed_mode_daily_limit``, an
  address that is not ``name@domain`` / ``lnurl1...`` / ``lnurlp://...``, a
  threshold below 1000 sats, autoforward on without address or threshold.
- ``GET /lp/payments?client_id=&leg_type=&since=&until=&limit=&offset=`` ->
  [LpPayment] ``{id, machine_id, client_id, leg_type, status, amount_sats,
  fiat_amount, currency, price, destination_wallet_id, memo, payment_hash,
  created_at, completed_at}``; by default the completed purchases (``dca``,
  ``settlement``); ``leg_type=autoforward`` lists forwards (any status).
- ``GET /lp/deposits?limit=&offset=`` -> [DcaDeposit] (the LP's deposits,
  as operators recorded them).
- ``GET /lp/dashboard`` -> ``{generated_at, totals: {sats_stacked,
  purchases_count, forwarded_sats, last_purchase, by_currency: [{currency,
  sats_stacked, total_deposited, pending_deposits, balance_left, fiat_spent,
  purchases_count, average_price, current_value, gain}]}, positions:
  [{client_id, machine_id, machine_name, currency, status, dca_mode,
  wallet_id, lp_managed, sats_stacked, total_deposited, pending_deposits,
  balance_left, fiat_spent, purchases_count, last_purchase: {id, amount_sats,
  fiat_amount, currency, price, created_at} | null, average_price,
  current_price, current_value, gain, gain_pct, next_fixed_buy,
  autoforward: {enabled, address, threshold_sats, forwarded_sats, waiting_sats
  (DCA sats not forwarded yet; null when off), failures,
  next_try_at, last_error, history: [{id, status, amount_sats, fee_sats, memo,
  error, payment_hash, created_at, completed_at}]}}]}``. ``current_price`` is
  LNbits' rate (fiat per BTC); no rate: it, ``current_value`` and ``gain`` are
  null. ``fiat_spent`` is the fiat of completed purchases.
- ``GET /lp/payments/series?client_id=&range=7d|30d|90d|1y|all`` ->
  ``{client_id, range, currency, since, start_sats, start_fiat, points:
  [{date: "YYYY-MM-DD", sats, purchases, cumulative_sats, fiat,
  cumulative_fiat}]}``: one point per UTC day with purchases; the cumulative
  values include everything before ``since`` (``start_*``). Fiat only when
  the positions share one currency.
- ``GET /lp/export/payments.csv?client_id=&leg_type=&since=&until=`` ->
  text/csv (same filters and 422s as ``GET /lp/payments``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from http import HTTPStatus
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.security import APIKeyHeader
from lnbits.core.models import KeyType, User
from lnbits.decorators import KeyChecker, check_access_token, check_user_exists
from pydantic.types import UUID4

from . import crud, crud_lp, lp_self
from .calculations import from_minor_units
from .errors import Conflict, Invalid, NotFound
from .models import (
    AcceptInviteData,
    CreateInviteData,
    DcaDeposit,
    DcaPayment,
    Invite,
    InviteOut,
    InvitePreview,
    LpPayment,
    LpPosition,
    LpPositionPreferences,
    SeriesRange,
    UpdateLpPositionData,
    utc_now,
)
from .views_api_helpers import (
    ERROR_RESPONSES,
    DcaRoute,
    Page,
    owned_client,
    owned_machine,
    page_params,
    refuse_unstorable_input,
)
from .views_api_settlements import (
    CSV_RESPONSE,
    _csv_response,
    _csv_stream,
    _iso,
    _number,
    _text,
)

MIN_TIME, MAX_TIME = datetime(1970, 1, 2), datetime(2999, 12, 31)
LpLegType = Annotated[str | None, Query(regex="^(dca|settlement|autoforward)$")]

# --- who is calling ---------------------------------------------------------------

api_key_header = APIKeyHeader(
    name="X-API-KEY",
    auto_error=False,
    description="The LP's wallet invoice key (reads) or admin key (writes)",
)


@dataclass(frozen=True)
class LpCaller:
    user_id: str
    wallet_id: str | None = None  # set when a wallet key authenticated


async def _caller(
    request: Request,
    access_token: str | None,
    usr: UUID4 | None,
    api_key: str | None,
    key_type: KeyType,
) -> LpCaller:
    if api_key:
        try:
            info = await KeyChecker(api_key=api_key, expected_key_type=key_type)(
                request
            )
        except HTTPException as exc:
            if exc.status_code == HTTPStatus.NOT_FOUND:  # LNbits: "Wallet not found"
                raise HTTPException(
                    HTTPStatus.UNAUTHORIZED, "Invalid API key."
                ) from exc
            raise
        return LpCaller(user_id=info.wallet.user, wallet_id=info.wallet.id)
    user = await check_user_exists(request, access_token, usr)
    return LpCaller(user_id=user.id)


async def lp_reader(
    request: Request,
    access_token: Annotated[str | None, Depends(check_access_token)],
    usr: UUID4 | None = None,
    api_key: str | None = Depends(api_key_header),
) -> LpCaller:
    """Logged in, or any key (invoice or admin) of one of the LP's wallets."""
    return await _caller(request, access_token, usr, api_key, KeyType.invoice)


async def lp_writer(
    request: Request,
    access_token: Annotated[str | None, Depends(check_access_token)],
    usr: UUID4 | None = None,
    api_key: str | None = Depends(api_key_header),
) -> LpCaller:
    """Logged in, or the admin key of one of the LP's wallets."""
    return await _caller(request, access_token, usr, api_key, KeyType.admin)


async def _refuse_unstorable(request: Request) -> None:
    await refuse_unstorable_input(request, user=cast(User, None))


async def refuse_unstorable_read(
    request: Request, caller: LpCaller = Depends(lp_reader)
) -> None:
    await _refuse_unstorable(request)


async def refuse_unstorable_write(
    request: Request, caller: LpCaller = Depends(lp_writer)
) -> None:
    await _refuse_unstorable(request)


# --- operator: invites --------------------------------------------------------------

operator_invites_router = APIRouter(
    route_class=DcaRoute,
    responses=ERROR_RESPONSES,
    dependencies=[Depends(refuse_unstorable_input)],
)


def _invite_out(invite: Invite, request: Request) -> InviteOut:
    return InviteOut(
        id=invite.id,
        code=invite.code,
        url=f"{str(request.base_url).rstrip('/')}/satmachineadmin/?invite={invite.code}",
        machine_id=invite.machine_id,
        username=invite.username,
        expires_at=invite.expires_at,
        created_at=invite.created_at,
    )


@operator_invites_router.post("/invites", status_code=HTTPStatus.CREATED)
async def api_create_invite(
    data: CreateInviteData, request: Request, user: User = Depends(check_user_exists)
) -> InviteOut:
    """Invite an LP to one of the operator's machines: a one-time code to send,
    optionally bound to one LNbits username."""
    machine = await owned_machine(data.machine_id, user)
    invite = await lp_self.create_invite(machine, user.id, data.username)
    return _invite_out(invite, request)


@operator_invites_router.get("/invites")
async def api_list_invites(
    request: Request,
    page: Page = Depends(page_params),
    user: User = Depends(check_user_exists),
) -> list[InviteOut]:
    """The operator's invites not yet used nor expired."""
    invites = await crud_lp.list_pending_invites(
        user.id, utc_now(), page.limit, page.offset
    )
    return [_invite_out(i, request) for i in invites]


@operator_invites_router.delete(
    "/invites/{invite_id}", status_code=HTTPStatus.NO_CONTENT, response_model=None
)
async def api_delete_invite(
    invite_id: str, user: User = Depends(check_user_exists)
) -> None:
    invite = await crud_lp.get_invite(invite_id)
    if invite is None or invite.operator_user_id != user.id:
        raise NotFound("Invite not found.")
    await crud_lp.delete_invite(invite.id)


@operator_invites_router.get("/clients/{client_id}/preferences")
async def api_client_preferences(
    client_id: str, user: User = Depends(check_user_exists)
) -> LpPositionPreferences:
    """What the LP set on this position (``lp_managed``: the LP decides)."""
    client = await owned_client(client_id, user)
    return await lp_self.position_preferences(client)


# --- the LP ---------------------------------------------------------------------

lp_read_router = APIRouter(
    route_class=DcaRoute,
    responses={**ERROR_RESPONSES, 403: {"description": "Key not allowed"}},
    dependencies=[Depends(refuse_unstorable_read)],
)
lp_write_router = APIRouter(
    route_class=DcaRoute,
    responses={**ERROR_RESPONSES, 403: {"description": "Key not allowed"}},
    dependencies=[Depends(refuse_unstorable_write)],
)


def _gone_if_expired(exc: Conflict) -> HTTPException:
    if "expired" in str(exc):
        return HTTPException(HTTPStatus.GONE, str(exc))
    return HTTPException(HTTPStatus.CONFLICT, str(exc))


@lp_write_router.get(
    "/lp/invites/{code}", responses={410: {"description": "The invite expired"}}
)
async def api_preview_invite(
    code: str, caller: LpCaller = Depends(lp_writer)
) -> InvitePreview:
    """The machine and operator an invite is for, before accepting it."""
    try:
        invite, machine = await lp_self.invite_for(code, caller.user_id)
    except Conflict as exc:
        raise _gone_if_expired(exc) from exc
    return InvitePreview(
        code=invite.code,
        machine_id=machine.id,
        machine_name=machine.name,
        currency=machine.currency,
        operator_user_id=machine.operator_user_id,
        operator_username=await lp_self.operator_username(machine.operator_user_id),
        username=invite.username,
        expires_at=invite.expires_at,
    )


@lp_write_router.post(
    "/lp/invites/{code}/accept",
    status_code=HTTPStatus.CREATED,
    responses={410: {"description": "The invite expired"}},
)
async def api_accept_invite(
    code: str, data: AcceptInviteData, caller: LpCaller = Depends(lp_writer)
) -> LpPositionPreferences:
    """Accept an invite: a position at the machine, paid into ``wallet_id``
    (one of the caller's wallets); the LP manages its preferences."""
    try:
        client = await lp_self.accept_invite(code, caller.user_id, data.wallet_id)
    except Conflict as exc:
        raise _gone_if_expired(exc) from exc
    return await lp_self.position_preferences(client)


@lp_read_router.get("/lp/positions")
async def api_lp_positions(
    page: Page = Depends(page_params), caller: LpCaller = Depends(lp_reader)
) -> list[LpPosition]:
    """The caller's positions as an LP, at any operator's machine."""
    clients = await crud.list_clients_for_user_page(
        caller.user_id, page.limit, page.offset
    )
    ids = [client.id for client in clients]
    machines = await crud.get_machines_by_ids([c.machine_id for c in clients])
    sums = await crud_lp.dashboard_aggregates(ids)
    positions = []
    for client in clients:
        machine, row = machines.get(client.machine_id), sums.get(client.id)
        if machine is None or row is None:  # deleted while we read
            continue
        cur = machine.currency
        deposits = from_minor_units(row["deposited"], cur)
        charged = from_minor_units(row["charged"], cur)
        positions.append(
            LpPosition(
                client_id=client.id,
                machine_id=machine.id,
                machine_name=machine.name,
                operator_user_id=machine.operator_user_id,
                wallet_id=client.wallet_id,
                username=client.username,
                dca_mode=client.dca_mode,
                status=client.status,
                currency=cur,
                total_deposits=deposits,
                total_charged=charged,
                remaining_balance=max(deposits - charged, Decimal(0)),
                sats_received=row["sats"],
                average_price=lp_self.average_price(row["fiat"], row["sats"], cur),
                created_at=client.created_at,
            )
        )
    return positions


@lp_read_router.get("/lp/positions/{client_id}")
async def api_lp_position(
    client_id: str, caller: LpCaller = Depends(lp_reader)
) -> LpPositionPreferences:
    client = await lp_self.lp_client(client_id, caller.user_id)
    return await lp_self.position_preferences(client)


@lp_write_router.put("/lp/positions/{client_id}")
async def api_lp_update_position(
    client_id: str, data: UpdateLpPositionData, caller: LpCaller = Depends(lp_writer)
) -> LpPositionPreferences:
    """The LP sets its own preferences; from then on the operator cannot."""
    client = await lp_self.lp_client(client_id, caller.user_id)
    return await lp_self.update_lp_position(client, data)


@lp_read_router.get("/lp/payments")
async def api_lp_payments(
    client_id: str | None = None,
    leg_type: LpLegType = None,
    since: datetime | None = None,
    until: datetime | None = None,
    page: Page = Depends(page_params),
    caller: LpCaller = Depends(lp_reader),
) -> list[LpPayment]:
    """Sats paid to the caller's positions (completed purchases), or with
    ``leg_type=autoforward`` its forwards."""
    _check_range(since, until)
    ids = await _own_client_ids(caller, client_id)
    legs = await crud_lp.list_lp_payments(
        ids, leg_type, since, until, page.limit, page.offset
    )
    return [LpPayment.parse_obj(leg.dict()) for leg in legs]


def _check_range(since: datetime | None, until: datetime | None) -> None:
    """``since`` (inclusive) and ``until`` (exclusive) must be storable."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and not MIN_TIME <= value.replace(tzinfo=None) <= MAX_TIME:
            raise Invalid(name, "must be between 1970 and 2999")


async def _own_client_ids(caller: LpCaller, client_id: str | None) -> list[str]:
    """The caller's positions, or the one asked for if it is the caller's
    (another's: none, so a filter on it lists nothing)."""
    ids = await crud_lp.client_ids_of(caller.user_id)
    if client_id is None:
        return ids
    return [client_id] if client_id in ids else []


@lp_read_router.get("/lp/deposits")
async def api_lp_deposits(
    page: Page = Depends(page_params), caller: LpCaller = Depends(lp_reader)
) -> list[DcaDeposit]:
    """Fiat the caller handed to operators, as they recorded it."""
    return await crud.list_deposits_for_user(caller.user_id, page.limit, page.offset)


@lp_read_router.get("/lp/dashboard")
async def api_lp_dashboard(caller: LpCaller = Depends(lp_reader)) -> dict[str, Any]:
    """Every position's numbers and the totals (see the module docstring)."""
    return await lp_self.dashboard(caller.user_id)


@lp_read_router.get("/lp/payments/series")
async def api_lp_series(
    client_id: str | None = None,
    range_: SeriesRange = Query("30d", alias="range"),
    caller: LpCaller = Depends(lp_reader),
) -> dict[str, Any]:
    """Cumulative sats stacked, per UTC day, over 7d, 30d, 90d, 1y or all."""
    return await lp_self.series(caller.user_id, client_id, range_)


@lp_read_router.get(
    "/lp/export/payments.csv", response_class=StreamingResponse, responses=CSV_RESPONSE
)
async def api_lp_export_payments(
    client_id: str | None = None,
    leg_type: LpLegType = None,
    since: datetime | None = None,
    until: datetime | None = None,
    caller: LpCaller = Depends(lp_reader),
) -> Response:
    """The caller's payouts (or forwards) as CSV, newest first; ``since`` and
    ``until`` filter as in ``GET /lp/payments``."""
    _check_range(since, until)
    ids = await _own_client_ids(caller, client_id)

    async def fetch(limit: int, offset: int) -> list[DcaPayment]:
        return await crud_lp.list_lp_payments(
            ids, leg_type, since, until, limit, offset
        )

    return _csv_response(
        "lp-payments.csv", _csv_stream(LP_PAYMENT_COLUMNS, fetch, _lp_payment_row)
    )


# What an LP may see of a leg: no operator wallets or internal references.
LP_PAYMENT_COLUMNS = (
    "id", "created_at", "completed_at", "machine_id", "client_id", "leg_type",
    "status", "amount_sats", "fiat_amount", "currency", "price",
    "destination_wallet_id", "memo", "payment_hash",
)  # fmt: skip


def _lp_payment_row(p: DcaPayment) -> list[str]:
    return [
        p.id, _iso(p.created_at), _iso(p.completed_at), p.machine_id,
        p.client_id or "", p.leg_type, p.status, _number(p.amount_sats),
        _number(p.fiat_amount), p.currency or "", _number(p.price),
        p.destination_wallet_id or "", _text(p.memo), p.payment_hash or "",
    ]  # fmt: skip


lp_self_router = APIRouter(route_class=DcaRoute)
lp_self_router.include_router(operator_invites_router)
lp_self_router.include_router(lp_read_router)
lp_self_router.include_router(lp_write_router)
