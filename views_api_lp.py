"""API for liquidity providers (their own positions, deposits and payouts,
at every operator of the instance) and the platform fee (read by anyone
logged in, written by the LNbits super user only)."""

from __future__ import annotations

from decimal import Decimal, localcontext
from http import HTTPStatus

from fastapi import APIRouter, Depends, HTTPException
from lnbits.core.models import User
from lnbits.decorators import check_user_exists

from . import crud
from .calculations import SATS_PER_BTC, from_minor_units, quantize_fiat
from .models import (
    DcaDeposit,
    LpPayment,
    LpPosition,
    SuperConfig,
    UpdateSuperConfigData,
)
from .views_api_helpers import (
    ERROR_RESPONSES,
    DcaRoute,
    Page,
    check_wallet_exists,
    page_params,
    refuse_unstorable_input,
)

lp_router = APIRouter(
    route_class=DcaRoute,
    responses=ERROR_RESPONSES,
    dependencies=[Depends(refuse_unstorable_input)],
)


# --- platform fee ------------------------------------------------------------


async def require_super_user(user: User = Depends(check_user_exists)) -> User:
    if not user.super_user:
        raise HTTPException(HTTPStatus.FORBIDDEN, "Only the super user may do this.")
    return user


@lp_router.get("/super-config")
async def api_get_super_config(
    user: User = Depends(check_user_exists),
) -> SuperConfig:
    """The platform fee every operator pays (a fraction of the commission)."""
    return await crud.get_super_config()


# Its own router: the super user check comes before the input checks.
platform_router = APIRouter(route_class=DcaRoute, responses=ERROR_RESPONSES)


@platform_router.put(
    "/super-config",
    dependencies=[Depends(require_super_user), Depends(refuse_unstorable_input)],
    responses={403: {"description": "Not the super user"}},
)
async def api_set_super_config(
    data: UpdateSuperConfigData, user: User = Depends(require_super_user)
) -> SuperConfig:
    if data.super_fee_wallet_id is not None:
        await check_wallet_exists(data.super_fee_wallet_id, "super_fee_wallet_id")
    return await crud.set_super_config(data.super_fee_pct, data.super_fee_wallet_id)


# --- the LP's own view ---------------------------------------------------------


def average_price(fiat_minor: int, sats: int, currency: str) -> Decimal | None:
    """Fiat paid per BTC, to the currency's minor unit; None without sats."""
    if sats <= 0:
        return None
    with localcontext() as ctx:
        ctx.prec = 50
        per_btc = from_minor_units(fiat_minor, currency) * SATS_PER_BTC / sats
    return quantize_fiat(per_btc, currency)


@lp_router.get("/lp/positions")
async def api_lp_positions(
    page: Page = Depends(page_params), user: User = Depends(check_user_exists)
) -> list[LpPosition]:
    """The caller's positions as an LP, at any operator's machine."""
    clients = await crud.list_clients_for_user_page(user.id, page.limit, page.offset)
    ids = [client.id for client in clients]
    machines = await crud.get_machines_by_ids([c.machine_id for c in clients])
    balances = await crud.get_client_balances(ids)
    paid = await crud.get_completed_payout_totals(ids)
    positions = []
    for client in clients:
        machine, balance = machines.get(client.machine_id), balances.get(client.id)
        if machine is None or balance is None:  # deleted while we read
            continue
        fiat_minor, sats = paid.get(client.id, (0, 0))
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
                currency=machine.currency,
                total_deposits=balance.total_deposits,
                total_charged=balance.total_charged,
                remaining_balance=balance.remaining_balance,
                sats_received=sats,
                average_price=average_price(fiat_minor, sats, machine.currency),
                created_at=client.created_at,
            )
        )
    return positions


@lp_router.get("/lp/payments")
async def api_lp_payments(
    page: Page = Depends(page_params), user: User = Depends(check_user_exists)
) -> list[LpPayment]:
    """Sats paid to the caller's positions (completed DCA and settlement legs)."""
    legs = await crud.list_payments_for_user(user.id, page.limit, page.offset)
    return [LpPayment.parse_obj(leg.dict()) for leg in legs]


@lp_router.get("/lp/deposits")
async def api_lp_deposits(
    page: Page = Depends(page_params), user: User = Depends(check_user_exists)
) -> list[DcaDeposit]:
    """Fiat the caller handed to operators, as they recorded it."""
    return await crud.list_deposits_for_user(user.id, page.limit, page.offset)
