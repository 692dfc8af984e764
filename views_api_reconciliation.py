"""Operator API: the reconciliation of a machine (or all of the operator's
machines) over a period, as JSON and as CSV.

``since``/``until`` are ISO 8601 dates or date-times (UTC when no zone is
given); the period is [since, until), and a date alone as ``until`` means
the end of that day. The wallet block of each machine is taken as of
``until`` (its ``as_of``): LNbits' balance from the wallet's payments up to
then against the ledger as it stood then; without ``until``, as of now.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime, time, timedelta, timezone

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from lnbits.core.models import User
from lnbits.decorators import check_user_exists

from . import crud
from .errors import Invalid
from .models import Machine, MachineReconciliation, ReconciliationReport
from .reconciliation import reconcile
from .views_api_helpers import (
    ERROR_RESPONSES,
    DcaRoute,
    owned_machine,
    refuse_unstorable_input,
)
from .views_api_settlements import (
    CSV_RESPONSE,
    _csv_response,
    _iso,
    _number,
    _text,
)

MAX_MACHINES = 1000

reconciliation_router = APIRouter(
    route_class=DcaRoute,
    responses=ERROR_RESPONSES,
    dependencies=[Depends(refuse_unstorable_input)],
)


def parse_when(value: str | None, field: str, *, end: bool = False) -> datetime | None:
    """An ISO date or date-time; a bare date as an end means the next
    midnight (the whole day is in the period)."""
    if value is None or value.strip() == "":
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime.combine(day, time(0), tzinfo=timezone.utc)
            return start + timedelta(days=1) if end else start
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Invalid(
            field, "must be an ISO 8601 date (2026-12-01) or date-time"
        ) from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    if not datetime(1970, 1, 1, tzinfo=timezone.utc) <= when:
        raise Invalid(field, "must be after 1970")
    return when.astimezone(timezone.utc)


async def _report(
    user: User, machine_id: str | None, since: str | None, until: str | None
) -> ReconciliationReport:
    start = parse_when(since, "since")
    stop = parse_when(until, "until", end=True)
    if start is not None and stop is not None and stop <= start:
        raise Invalid("until", "must be after since")
    machines: list[Machine]
    if machine_id is not None:
        machines = [await owned_machine(machine_id, user)]
    else:
        machines = await crud.list_machines(user.id, MAX_MACHINES, 0)
        machines.sort(key=lambda m: (m.name, m.id))
    return await reconcile(machines, start, stop)


@reconciliation_router.get("/reconciliation")
async def api_reconciliation(
    machine_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
    user: User = Depends(check_user_exists),
) -> ReconciliationReport:
    """Sales, commission, LP payouts, autoforwards, refunds and held sats of a
    period, and each machine wallet's LNbits balance against the ledger as of
    ``until`` (or now; the field ``as_of``), with every difference explained."""
    return await _report(user, machine_id, since, until)


RECONCILIATION_COLUMNS = (
    "machine_id", "machine_name", "currency", "section", "item", "status",
    "count", "sats", "msat", "fiat", "detail",
)  # fmt: skip


def _machine_rows(r: MachineReconciliation) -> Iterator[list[str]]:
    def row(
        section: str,
        item: str,
        *,
        status: str = "",
        count: int | None = None,
        sats: int | None = None,
        msat: int | None = None,
        fiat: object = None,
        detail: str = "",
    ) -> list[str]:
        return [
            r.machine_id, _text(r.machine_name), r.currency, section, _text(item),
            status, _number(count), _number(sats), _number(msat),
            _number(fiat),  # type: ignore[arg-type]
            _text(detail),
        ]  # fmt: skip

    yield row(
        "sales",
        "total",
        count=r.sales_count,
        sats=r.sales_gross_sats,
        fiat=r.sales_fiat,
        detail=f"net {r.sales_net_sats} sats, commission "
        f"{r.sales_commission_sats} sats",
    )
    for s in r.sales_by_source:
        yield row("sales", f"source {s.source}", count=s.count, sats=s.gross_sats)
    for status, count in r.settlements_by_status.items():
        yield row("sales", "settlements", status=status, count=count)
    for name, total in (
        ("commission", ("platform_fee", r.platform_fee)),
        ("commission", ("operator_split", r.operator_split)),
        ("lp_payouts", ("flow", r.lp_flow)),
        ("lp_payouts", ("fixed", r.lp_fixed)),
        ("lp_payouts", ("settlement", r.lp_settlement)),
        ("autoforwards", ("completed", r.autoforward)),
        ("refunds", ("paid", r.refund_paid)),
    ):
        item, t = total
        yield row(name, item, count=t.count, sats=t.sats, fiat=t.fiat)
    yield row("autoforwards", "failed", count=r.autoforward_failed)
    yield row("refunds", "held", sats=r.refund_held_sats)
    for h in r.held:
        yield row(
            "held", h.leg_type, status=h.status, count=h.count, sats=h.sats,
            detail=h.reason,
        )  # fmt: skip
    for settlement_id in r.unbalanced_settlements:
        yield row(
            "ledger",
            "unbalanced_settlement",
            detail=f"settlement {settlement_id}: legs do not add up to the gross",
        )
    w = r.wallet
    yield row("wallet", "as_of", detail=_iso(w.as_of))
    yield row("wallet", "lnbits_balance", sats=w.lnbits_balance_sats,
              msat=w.lnbits_balance_msat)  # fmt: skip
    yield row("wallet", "sales_in", sats=w.sales_in_sats)
    yield row("wallet", "other_incoming", msat=w.other_incoming_msat)
    yield row("wallet", "legs_out", sats=w.legs_out_sats)
    yield row("wallet", "expected_balance", sats=w.expected_balance_sats,
              msat=w.expected_balance_msat)  # fmt: skip
    yield row(
        "wallet",
        "difference",
        status="balanced" if w.balanced else "DIFFERENT",
        msat=w.difference_msat,
    )
    for d in w.differences:
        yield row(
            "wallet_difference",
            d.kind,
            sats=d.sats,
            msat=d.balance_effect_msat,
            detail=" ".join(
                part
                for part in (
                    d.explanation,
                    f"leg {d.leg_id}" if d.leg_id else "",
                    f"settlement {d.settlement_id}" if d.settlement_id else "",
                    f"payment_hash {d.payment_hash}" if d.payment_hash else "",
                )
                if part
            ),
        )


async def _csv_body(report: ReconciliationReport) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(RECONCILIATION_COLUMNS)
    since, until = _iso(report.since), _iso(report.until)
    writer.writerow(
        ["", "", "", "period", "since", "", "", "", "", "", since or "(start)"]
    )
    writer.writerow(
        ["", "", "", "period", "until", "", "", "", "", "", until or "(now)"]
    )
    writer.writerow(
        ["", "", "", "period", "as_of", "", "", "", "", "", _iso(report.as_of)]
    )
    for machine in report.machines:
        for line in _machine_rows(machine):
            writer.writerow(line)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate(0)
    t = report.totals
    for item, sats in (
        ("sales_gross", t.sales_gross_sats),
        ("platform_fee", t.platform_fee_sats),
        ("operator_split", t.operator_split_sats),
        ("lp_flow", t.lp_flow_sats),
        ("lp_fixed", t.lp_fixed_sats),
        ("lp_settlement", t.lp_settlement_sats),
        ("autoforward", t.autoforward_sats),
        ("refund_paid", t.refund_paid_sats),
        ("refund_held", t.refund_held_sats),
        ("held", t.held_sats),
    ):
        writer.writerow(["", "", "", "totals", item, "", "", sats, "", "", ""])
    writer.writerow(["", "", "", "totals", "sales", "", t.sales_count, "", "", "", ""])
    writer.writerow(
        [
            "", "", "", "totals", "result", "ok" if t.ok else "DIFFERENT",
            t.differences, "", t.lnbits_balance_msat - t.expected_balance_msat,
            "", f"{t.unbalanced_settlements} unbalanced settlements",
        ]
    )  # fmt: skip
    yield buffer.getvalue()


@reconciliation_router.get(
    "/export/reconciliation.csv",
    response_class=StreamingResponse,
    responses=CSV_RESPONSE,
)
async def api_export_reconciliation(
    machine_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
    user: User = Depends(check_user_exists),
) -> StreamingResponse:
    """The reconciliation as CSV: one row per figure (section, item)."""
    report = await _report(user, machine_id, since, until)
    return _csv_response("reconciliation.csv", _csv_body(report))
