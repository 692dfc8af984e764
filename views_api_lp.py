"""API for liquidity providers (their own positions, deposits and payouts,
at every operator of the instance) and the platform fee (read by anyone
logged in, written by the LNbits super user only)."""

from __future__ import annotations

from http import HTTPStatus

from fastapi import APIRouter, Depends, HTTPException
from lnbits.core.models import User
from lnbits.decorators import check_user_exists

from . import crud
from .models import SuperConfig, UpdateSuperConfigData
from .views_api_helpers import (
    ERROR_RESPONSES,
    DcaRoute,
    check_wallet_exists,
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


# The LP's own view (positions, payments, deposits, invites, dashboard) is in
# views_api_lp_self.py: its routes also take the LP's wallet key.
