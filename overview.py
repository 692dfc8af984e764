"""The operator's overview: a handful of aggregate queries, no per-row loops.

- sales today / last 7 days / last ``days`` days (count, gross sats, fiat per
  currency), with the commission (platform and operator) of those sales;
  "sales" are the settlements landed in the window, except refunded ones;
- LP liabilities: the LPs' remaining balances (confirmed deposits minus what
  their DCA and settlement legs charged), summed per currency;
- sats held in the machine wallets, by reason (the ``skipped`` legs);
- the needs-attention count (errored, or pending/processing for longer than
  ``STUCK_AFTER``), and the settlements awaiting funds;
- a daily series of sales per machine for the chart.
``scope`` None means the whole instance (the super user's platform totals).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from lnbits.db import SQLITE, Connection

from .calculations import from_minor_units
from .crud import S, _scalar_rows, connection
from .models import utc_now

STUCK_AFTER = timedelta(minutes=5)
DAY = 86400


def _where(scope: str | None, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return f"{prefix}operator_user_id = :op" if scope is not None else "1 = 1"


def _day_expr(conn: Connection, column: str) -> str:
    """The UTC day number (days since 1970-01-01) of a timestamp column."""
    if conn.type == SQLITE:  # timestamps are stored as Unix seconds
        return f"CAST({column} / {DAY} AS INTEGER)"
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {column}) / {DAY}) AS INTEGER)"


def _start_of_day(now: datetime) -> datetime:
    return now.astimezone(timezone.utc).replace(
        hour=0, minute=0, second=0, microsecond=0
    )


def _fiat(minor: Any, currency: str | None) -> str | None:
    if minor is None or currency is None:
        return None
    return str(from_minor_units(int(minor), currency))


async def _sales(
    conn: Connection, scope: str | None, days: int, now: datetime
) -> dict[str, Any]:
    today = _start_of_day(now)
    bounds = {
        "today": today,
        "7d": today - timedelta(days=6),
        "period": today - timedelta(days=days - 1),
    }
    since = min(bounds.values())
    sums = []
    for key in bounds:
        inside = f"created_at >= :{key}"
        sums.append(f"SUM(CASE WHEN {inside} THEN 1 ELSE 0 END) AS n_{key}")
        for col in (
            "gross_sats",
            "fiat_amount_minor",
            "platform_fee_sats",
            "operator_fee_sats",
            "commission_sats",
        ):
            sums.append(f"SUM(CASE WHEN {inside} THEN {col} ELSE 0 END) AS {col}_{key}")
    rows = await _scalar_rows(
        conn,
        f"""SELECT currency, {", ".join(sums)} FROM {S}.settlements
            WHERE {_where(scope)} AND created_at >= :since
            AND status <> 'refunded' GROUP BY currency ORDER BY currency""",
        {"op": scope, "since": since, **bounds},
    )
    result: dict[str, Any] = {}
    for key in bounds:
        window: dict[str, Any] = {
            "since": bounds[key].isoformat(),
            "count": 0,
            "gross_sats": 0,
            "commission_sats": 0,
            "platform_fee_sats": 0,
            "operator_fee_sats": 0,
            "fiat": {},
        }
        for row in rows:
            window["count"] += int(row[f"n_{key}"] or 0)
            for col in (
                "gross_sats",
                "commission_sats",
                "platform_fee_sats",
                "operator_fee_sats",
            ):
                window[col] += int(row[f"{col}_{key}"] or 0)
            if int(row[f"n_{key}"] or 0):
                window["fiat"][row["currency"]] = _fiat(
                    row[f"fiat_amount_minor_{key}"] or 0, row["currency"]
                )
        result[key] = window
    return result


async def _liabilities(conn: Connection, scope: str | None) -> dict[str, str]:
    rows = await _scalar_rows(
        conn,
        f"""SELECT currency, SUM(CASE WHEN dep > chg THEN dep - chg ELSE 0 END)
              AS remaining_minor, COUNT(*) AS positions
            FROM (
              SELECT m.currency AS currency,
                COALESCE((SELECT SUM(d.amount_minor) FROM {S}.deposits d
                  WHERE d.client_id = c.id AND d.status = 'confirmed'), 0) AS dep,
                COALESCE((SELECT SUM(p.fiat_amount_minor) FROM {S}.payments p
                  WHERE p.client_id = c.id AND p.leg_type IN ('dca', 'settlement')
                  AND p.status IN ('pending', 'completed', 'failed')), 0) AS chg
              FROM {S}.clients c JOIN {S}.machines m ON m.id = c.machine_id
              WHERE {_where(scope, "c")}
            ) balances GROUP BY currency ORDER BY currency""",
        {"op": scope},
    )
    return {
        row["currency"]: str(
            from_minor_units(int(row["remaining_minor"] or 0), row["currency"])
        )
        for row in rows
    }


async def _held(conn: Connection, scope: str | None) -> dict[str, Any]:
    rows = await _scalar_rows(
        conn,
        f"""SELECT reason, COUNT(*) AS legs, SUM(amount_sats) AS sats
            FROM {S}.payments WHERE {_where(scope)} AND status = 'skipped'
            GROUP BY reason ORDER BY reason""",
        {"op": scope},
    )
    by_reason = [
        {
            "reason": row["reason"] or "",
            "legs": int(row["legs"]),
            "sats": int(row["sats"] or 0),
        }
        for row in rows
    ]
    return {"sats": sum(r["sats"] for r in by_reason), "by_reason": by_reason}


async def _attention(conn: Connection, scope: str | None, now: datetime) -> dict:
    rows = await _scalar_rows(
        conn,
        f"""SELECT
              SUM(CASE WHEN status = 'errored' THEN 1 ELSE 0 END) AS errored,
              SUM(CASE WHEN status IN ('pending', 'processing')
                  AND updated_at < :cutoff THEN 1 ELSE 0 END) AS stuck,
              SUM(CASE WHEN status = 'awaiting_funds' THEN 1 ELSE 0 END)
                AS awaiting_funds,
              SUM(CASE WHEN status IN ('pending', 'processing') THEN 1 ELSE 0 END)
                AS in_progress
            FROM {S}.settlements WHERE {_where(scope)}
            AND status IN ('errored', 'pending', 'processing', 'awaiting_funds')""",
        {"op": scope, "cutoff": now - STUCK_AFTER},
    )
    row = rows[0] if rows else {}
    counts = {
        k: int(row.get(k) or 0)
        for k in ("errored", "stuck", "awaiting_funds", "in_progress")
    }
    counts["needs_attention"] = counts["errored"] + counts["stuck"]
    return counts


async def _series(
    conn: Connection, scope: str | None, days: int, now: datetime
) -> dict[str, Any]:
    first = _start_of_day(now) - timedelta(days=days - 1)
    first_day = int(first.timestamp()) // DAY
    day = _day_expr(conn, "s.created_at")
    rows = await _scalar_rows(
        conn,
        f"""SELECT s.machine_id AS machine_id, m.name AS name, {day} AS day,
              COUNT(*) AS n, SUM(s.gross_sats) AS gross
            FROM {S}.settlements s JOIN {S}.machines m ON m.id = s.machine_id
            WHERE {_where(scope, "s")} AND s.created_at >= :first
            AND s.status <> 'refunded'
            GROUP BY s.machine_id, m.name, {day}""",
        {"op": scope, "first": first},
    )
    labels = [(first + timedelta(days=i)).date().isoformat() for i in range(days)]
    machines: dict[str, dict[str, Any]] = {}
    for row in rows:
        index = int(row["day"]) - first_day
        if not 0 <= index < days:
            continue
        entry = machines.setdefault(
            row["machine_id"],
            {
                "machine_id": row["machine_id"],
                "name": row["name"],
                "count": [0] * days,
                "gross_sats": [0] * days,
            },
        )
        entry["count"][index] += int(row["n"])
        entry["gross_sats"][index] += int(row["gross"] or 0)
    return {"days": labels, "machines": sorted(machines.values(), key=_by_name)}


def _by_name(entry: dict[str, Any]) -> str:
    return str(entry["name"])


async def overview(scope: str | None, days: int = 30) -> dict[str, Any]:
    """The overview of one operator (``scope``), or of the whole instance."""
    now = utc_now()
    async with connection() as conn:
        sales = await _sales(conn, scope, days, now)
        liabilities = await _liabilities(conn, scope)
        held = await _held(conn, scope)
        attention = await _attention(conn, scope, now)
        series = await _series(conn, scope, days, now)
    return {
        "generated_at": now.isoformat(),
        "days": days,
        "sales": sales,
        "lp_liabilities": liabilities,
        "held_in_machine_wallets": held,
        "attention": attention,
        "series": series,
    }


async def platform_totals(days: int = 30) -> dict[str, Any]:
    """Counts and sums across every operator: no operator's details (no
    machine names, no per-machine series)."""
    now = utc_now()
    async with connection() as conn:
        sales = await _sales(conn, None, days, now)
        liabilities = await _liabilities(conn, None)
        held = await _held(conn, None)
        attention = await _attention(conn, None, now)
        rows = await _scalar_rows(
            conn,
            f"""SELECT COUNT(DISTINCT operator_user_id) AS operators,
                COUNT(*) AS machines FROM {S}.machines""",
        )
    return {
        "operators": int(rows[0]["operators"] or 0),
        "machines": int(rows[0]["machines"] or 0),
        "sales": sales,
        "lp_liabilities": liabilities,
        "held_in_machine_wallets": {"sats": held["sats"]},
        "attention": attention,
    }


def as_decimal(value: str | None) -> Decimal:
    return Decimal(value or "0")
