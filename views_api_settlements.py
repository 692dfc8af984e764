"""Operator API: settlements (sales), their payment legs, the operator's
actions on them (retry, partial dispense, notes) and CSV exports."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Response
from fastapi.responses import StreamingResponse
from lnbits.core.models import User
from lnbits.decorators import check_user_exists

from . import actions, crud, crud_payouts, loops
from .distribution import BOOT_ID
from .models import (
    AppendNoteData,
    DcaPayment,
    DcaSettlement,
    LegStatus,
    LegType,
    PartialDispenseData,
    SettlementStatus,
    SettlementWithLegs,
)
from .payout_status import wait_reason
from .views_api_helpers import (
    ERROR_RESPONSES,
    DcaRoute,
    Page,
    json_rows,
    owned_settlement,
    page_params,
    refuse_unstorable_input,
)

STUCK_AFTER = timedelta(minutes=5)
EXPORT_MAX_ROWS = 100_000
EXPORT_CHUNK = 1000

settlements_router = APIRouter(
    route_class=DcaRoute,
    responses=ERROR_RESPONSES,
    dependencies=[Depends(refuse_unstorable_input)],
)


# --- settlements -------------------------------------------------------------


@settlements_router.get("/settlements", response_model=list[DcaSettlement])
async def api_list_settlements(
    status: SettlementStatus | None = None,
    machine_id: str | None = None,
    page: Page = Depends(page_params),
    user: User = Depends(check_user_exists),
) -> Response:
    return json_rows(
        await crud.list_settlements(
            user.id, status, machine_id, page.limit, page.offset
        )
    )


@settlements_router.get("/settlements/stuck", response_model=list[DcaSettlement])
async def api_stuck_settlements(
    page: Page = Depends(page_params), user: User = Depends(check_user_exists)
) -> Response:
    """Errored settlements, and pending or processing ones untouched for more
    than 5 minutes."""
    return json_rows(
        await crud.list_stuck_settlements(user.id, STUCK_AFTER, page.limit, page.offset)
    )


@settlements_router.get("/settlements/{settlement_id}")
async def api_get_settlement(
    settlement_id: str, user: User = Depends(check_user_exists)
) -> SettlementWithLegs:
    settlement = await owned_settlement(settlement_id, user)
    legs = await crud.get_legs(settlement.id)
    return SettlementWithLegs(
        settlement=settlement,
        legs=legs,
        wait_reason=wait_reason(
            settlement, legs, BOOT_ID, max(1, round(loops.interval("resume")))
        ),
        replaced_invoices=await crud_payouts.get_replaced_invoices(
            [leg.id for leg in legs if leg.invoice_replacements]
        ),
    )


@settlements_router.post("/settlements/{settlement_id}/retry")
async def api_retry_settlement(
    settlement_id: str, user: User = Depends(check_user_exists)
) -> DcaSettlement:
    """Pay an errored settlement's legs that have not completed."""
    settlement = await owned_settlement(settlement_id, user)
    return await actions.retry_settlement(settlement.id)


@settlements_router.post("/settlements/{settlement_id}/partial-dispense")
async def api_partial_dispense(
    settlement_id: str,
    data: PartialDispenseData,
    user: User = Depends(check_user_exists),
) -> DcaSettlement:
    """Scale a settlement to what the ATM really dispensed (refused once any
    leg has been paid)."""
    settlement = await owned_settlement(settlement_id, user)
    return await actions.apply_partial_dispense(
        settlement.id,
        dispensed_fraction=data.dispensed_fraction,
        dispensed_sats=data.dispensed_sats,
        notes=data.notes,
        author_user_id=user.id,
    )


@settlements_router.post("/settlements/{settlement_id}/notes")
async def api_append_settlement_note(
    settlement_id: str, data: AppendNoteData, user: User = Depends(check_user_exists)
) -> DcaSettlement:
    """Append a timestamped note signed with the caller's user id."""
    settlement = await owned_settlement(settlement_id, user)
    return await actions.append_settlement_note(settlement.id, data.note, user.id)


# --- payment legs ------------------------------------------------------------


@settlements_router.get("/payments", response_model=list[DcaPayment])
async def api_list_payments(
    leg_type: LegType | None = None,
    status: LegStatus | None = None,
    settlement_id: str | None = None,
    client_id: str | None = None,
    page: Page = Depends(page_params),
    user: User = Depends(check_user_exists),
) -> Response:
    return json_rows(
        await crud.list_payments(
            user.id, leg_type, status, settlement_id, client_id, page.limit, page.offset
        )
    )


# --- CSV exports -------------------------------------------------------------

Row = TypeVar("Row")
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "CSV with a header row"}
}


def _iso(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _number(value: Decimal | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _text(value: str | None) -> str:
    """Free text, kept from being read as a formula by a spreadsheet."""
    if not value:
        return ""
    return "'" + value if value[0] in "=+-@\t\r" else value


async def _csv_stream(
    header: Sequence[str],
    fetch: Callable[[int, int], Awaitable[Sequence[Row]]],
    to_row: Callable[[Row], Sequence[str]],
) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        data = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate(0)
        return data

    writer.writerow(header)
    yield flush()
    offset = 0
    while offset < EXPORT_MAX_ROWS:
        rows = await fetch(min(EXPORT_CHUNK, EXPORT_MAX_ROWS - offset), offset)
        for row in rows:
            writer.writerow(to_row(row))
        yield flush()
        if len(rows) < EXPORT_CHUNK:
            break
        offset += len(rows)


def _csv_response(name: str, body: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


SETTLEMENT_COLUMNS = (
    "id", "created_at", "processed_at", "machine_id", "payment_hash", "txid",
    "status", "gross_sats", "net_sats", "commission_sats", "platform_fee_sats",
    "operator_fee_sats", "super_fee_pct", "fee_pct", "exchange_rate", "fiat_amount",
    "currency", "used_fallback_split", "dispensed_fraction", "distribution_round",
    "error", "notes",
)  # fmt: skip


def _settlement_row(s: DcaSettlement) -> list[str]:
    return [
        s.id, _iso(s.created_at), _iso(s.processed_at), s.machine_id,
        s.payment_hash, _text(s.txid), s.status, _number(s.gross_sats),
        _number(s.net_sats), _number(s.commission_sats),
        _number(s.platform_fee_sats), _number(s.operator_fee_sats),
        _number(s.super_fee_pct), _number(s.fee_pct), _number(s.exchange_rate),
        _number(s.fiat_amount), s.currency, str(s.used_fallback_split).lower(),
        _number(s.dispensed_fraction), _number(s.distribution_round),
        _text(s.error), _text(s.notes),
    ]  # fmt: skip


PAYMENT_COLUMNS = (
    "id", "created_at", "completed_at", "settlement_id", "machine_id", "client_id",
    "leg_type", "status", "amount_sats", "fiat_amount", "currency", "price",
    "source_wallet_id", "destination_wallet_id", "label", "memo", "reason", "error",
    "payment_hash", "distribution_round",
)  # fmt: skip


def _payment_row(p: DcaPayment) -> list[str]:
    return [
        p.id, _iso(p.created_at), _iso(p.completed_at), p.settlement_id or "",
        p.machine_id, p.client_id or "", p.leg_type, p.status,
        _number(p.amount_sats), _number(p.fiat_amount), p.currency or "",
        _number(p.price), p.source_wallet_id, p.destination_wallet_id or "",
        _text(p.label), _text(p.memo), _text(p.reason), _text(p.error),
        p.payment_hash or "", _number(p.distribution_round),
    ]  # fmt: skip


@settlements_router.get(
    "/export/settlements.csv", response_class=StreamingResponse, responses=CSV_RESPONSE
)
async def api_export_settlements(
    status: SettlementStatus | None = None,
    machine_id: str | None = None,
    user: User = Depends(check_user_exists),
) -> StreamingResponse:
    """The operator's settlements (newest first, at most 100 000 rows)."""

    async def fetch(limit: int, offset: int) -> list[DcaSettlement]:
        return await crud.list_settlements(user.id, status, machine_id, limit, offset)

    return _csv_response(
        "settlements.csv", _csv_stream(SETTLEMENT_COLUMNS, fetch, _settlement_row)
    )


@settlements_router.get(
    "/export/payments.csv", response_class=StreamingResponse, responses=CSV_RESPONSE
)
async def api_export_payments(
    leg_type: LegType | None = None,
    status: LegStatus | None = None,
    settlement_id: str | None = None,
    client_id: str | None = None,
    user: User = Depends(check_user_exists),
) -> StreamingResponse:
    """The operator's payment legs (newest first, at most 100 000 rows)."""

    async def fetch(limit: int, offset: int) -> list[DcaPayment]:
        return await crud.list_payments(
            user.id, leg_type, status, settlement_id, client_id, limit, offset
        )

    return _csv_response(
        "payments.csv", _csv_stream(PAYMENT_COLUMNS, fetch, _payment_row)
    )
