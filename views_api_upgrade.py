"""What the upgrade over satmachineadmin v1 carried (issue 19): the LNbits
super user only, who ran v1 and is the carried machine's operator."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from lnbits.core.models import User

from . import upgrade_v1
from .errors import NotFound
from .views_api_helpers import ERROR_RESPONSES, DcaRoute
from .views_api_lp import require_super_user

upgrade_router = APIRouter(route_class=DcaRoute, responses=ERROR_RESPONSES)


@upgrade_router.get(
    "/upgrade/v1-report",
    responses={403: {"description": "Not the super user"}},
)
async def api_v1_report(user: User = Depends(require_super_user)) -> dict[str, Any]:
    """v1's counts and sums per table, what was carried (counts, sums, the
    machine, each position's balance), what was left out and why, and what
    the operator must do next. ``status``: ``carried``, ``failed`` (nothing
    carried; ``error`` names the row) or ``no_v1``."""
    value = await upgrade_v1.load_report()
    if value is None:
        raise NotFound("no upgrade report: the upgrade migration has not run")
    return value
