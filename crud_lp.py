"""Data access for the LP's side (issue 14): invites, the LP's preferences,
the dashboard's aggregates and the autoforward ledger. Every LP query is
filtered on the LP's ``user_id``; every operator query on
``operator_user_id``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from lnbits.db import SQLITE, Connection
from sqlalchemy.exc import IntegrityError

from .crud import (
    S,
    _execute,
    _fetchall,
    _fetchone,
    _insert,
    _names,
    _scalar_rows,
    _update,
    connection,
    transaction,
)
from .models import DcaClient, DcaPayment, Invite, LpPreferences, utc_now

# Legs that bring sats into an LP's wallet (DCA buys, fixed-mode buys, and an
# operator paying out an LP's balance).
INBOUND_LEGS = ("dca", "settlement")
_INBOUND = "('dca', 'settlement')"


# --- invites -------------------------------------------------------------------


async def create_invite(invite: Invite) -> Invite:
    async with connection() as c:
        await _insert(c, "invites", invite)
    return invite


async def get_invite(invite_id: str) -> Invite | None:
    async with connection() as c:
        return await _fetchone(
            c, f"SELECT * FROM {S}.invites WHERE id = :id", {"id": invite_id}, Invite
        )


async def get_invite_by_code(code: str) -> Invite | None:
    async with connection() as c:
        return await _fetchone(
            c, f"SELECT * FROM {S}.invites WHERE code = :c", {"c": code}, Invite
        )


async def list_pending_invites(
    operator_user_id: str, now: datetime, limit: int, offset: int
) -> list[Invite]:
    async with connection() as c:
        return await _fetchall(
            c,
            f"""SELECT * FROM {S}.invites WHERE operator_user_id = :op
                AND accepted_at IS NULL AND expires_at > :now
                ORDER BY created_at DESC, id DESC LIMIT :limit OFFSET :offset""",
            {"op": operator_user_id, "now": now, "limit": limit, "offset": offset},
            Invite,
        )


async def delete_invite(invite_id: str) -> None:
    async with connection() as c:
        await _execute(c, f"DELETE FROM {S}.invites WHERE id = :id", {"id": invite_id})


async def accept_invite(
    invite: Invite, client: DcaClient, preferences: LpPreferences
) -> bool:
    """Use the invite and create the LP's position, in one transaction. False
    when the invite was used (or withdrawn) meanwhile: nothing is written."""
    async with transaction() as c:
        result = await _execute(
            c,
            f"""UPDATE {S}.invites SET accepted_at = :now, accepted_by = :u,
                client_id = :cid WHERE id = :id AND accepted_at IS NULL""",
            {"now": utc_now(), "u": client.user_id, "cid": client.id, "id": invite.id},
            commit=False,
        )
        if result.rowcount != 1:
            return False
        await _insert(c, "clients", client, commit=False)
        await _insert(c, "lp_preferences", preferences, commit=False)
    return True


# --- preferences -----------------------------------------------------------------


async def get_preferences(
    client_id: str, conn: Connection | None = None
) -> LpPreferences | None:
    async with connection(conn) as c:
        return await _fetchone(
            c,
            f"SELECT * FROM {S}.lp_preferences WHERE client_id = :c",
            {"c": client_id},
            LpPreferences,
        )


async def get_preferences_many(client_ids: Sequence[str]) -> dict[str, LpPreferences]:
    if not client_ids:
        return {}
    names, placeholders = _names("c", client_ids)
    async with connection() as c:
        rows = await _fetchall(
            c,
            f"SELECT * FROM {S}.lp_preferences WHERE client_id IN ({placeholders})",
            names,
            LpPreferences,
        )
    return {row.client_id: row for row in rows}


async def save_position_and_preferences(
    client: DcaClient, preferences: LpPreferences, *, new: bool
) -> None:
    """The LP's change: its position's fields and its preferences together."""
    client.updated_at = preferences.updated_at = utc_now()
    async with transaction() as c:
        await _update(c, "clients", client, commit=False)
        if new:
            await _insert(c, "lp_preferences", preferences, commit=False)
        else:
            await _update_preferences(c, preferences)


async def _update_preferences(c: Connection, preferences: LpPreferences) -> None:
    await _execute(
        c,
        f"""UPDATE {S}.lp_preferences SET autoforward_enabled = :enabled,
            autoforward_address = :address, autoforward_threshold_sats = :threshold,
            autoforward_failures = :failures, autoforward_next_try_at = :next_try,
            autoforward_last_error = :error, updated_at = :now
            WHERE client_id = :client_id""",
        {
            "enabled": preferences.autoforward_enabled,
            "address": preferences.autoforward_address,
            "threshold": preferences.autoforward_threshold_sats,
            "failures": preferences.autoforward_failures,
            "next_try": preferences.autoforward_next_try_at,
            "error": preferences.autoforward_last_error,
            "now": utc_now(),
            "client_id": preferences.client_id,
        },
        commit=False,
    )


async def record_autoforward_state(preferences: LpPreferences) -> None:
    """Write only the retry state (failures, next try, last error): the LP's
    own settings are never overwritten from a copy by the worker."""
    async with connection() as c:
        await _execute(
            c,
            f"""UPDATE {S}.lp_preferences SET autoforward_failures = :failures,
                autoforward_next_try_at = :next_try, autoforward_last_error = :error
                WHERE client_id = :client_id""",
            {
                "failures": preferences.autoforward_failures,
                "next_try": preferences.autoforward_next_try_at,
                "error": preferences.autoforward_last_error,
                "client_id": preferences.client_id,
            },
        )


async def list_autoforward_candidates(now: datetime) -> list[LpPreferences]:
    """Positions with autoforward on and not waiting out a backoff."""
    async with connection() as c:
        return await _fetchall(
            c,
            f"""SELECT * FROM {S}.lp_preferences WHERE autoforward_enabled = TRUE
                AND autoforward_address IS NOT NULL
                AND (autoforward_next_try_at IS NULL OR autoforward_next_try_at <= :now)
                ORDER BY client_id""",
            {"now": now},
            LpPreferences,
        )


# --- autoforward ledger ------------------------------------------------------------


async def forward_ledger(client_id: str, wallet_id: str) -> dict[str, int]:
    """Sats that this position's inbound legs brought into ``wallet_id``, and
    what its forwards from that wallet took out (amounts plus fees; a pending
    forward counts until LNbits says it failed)."""
    async with connection() as c:
        rows = await _scalar_rows(
            c,
            f"""SELECT
                  COALESCE((SELECT SUM(amount_sats) FROM {S}.payments
                    WHERE client_id = :c AND leg_type IN {_INBOUND}
                    AND status = 'completed' AND destination_wallet_id = :w), 0)
                    AS inbound,
                  COALESCE((SELECT SUM(amount_sats + COALESCE(fee_sats, 0))
                    FROM {S}.payments WHERE client_id = :c
                    AND leg_type = 'autoforward' AND status IN ('pending', 'completed')
                    AND source_wallet_id = :w), 0) AS forwarded,
                  (SELECT COUNT(*) FROM {S}.payments WHERE client_id = :c
                    AND leg_type = 'autoforward') AS forwards""",
            {"c": client_id, "w": wallet_id},
        )
    row = rows[0]
    return {k: int(row[k]) for k in ("inbound", "forwarded", "forwards")}


async def pending_forwards(client_id: str) -> list[DcaPayment]:
    async with connection() as c:
        return await _fetchall(
            c,
            f"""SELECT * FROM {S}.payments WHERE client_id = :c
                AND leg_type = 'autoforward' AND status = 'pending'
                ORDER BY created_at, id""",
            {"c": client_id},
            DcaPayment,
        )


async def insert_forward(leg: DcaPayment, fee_reserve_sats: int) -> bool:
    """Record a forward with its invoice before it is paid. False if a leg
    with its key exists (another worker took this forward). While pending, it
    holds back its amount plus the fee reserve."""
    async with transaction() as c:
        try:
            await _insert(c, "payments", leg, commit=False)
        except IntegrityError:
            await c.conn.rollback()
            return False
        await _execute(
            c,
            f"UPDATE {S}.payments SET fee_sats = :fee WHERE id = :id",
            {"fee": fee_reserve_sats, "id": leg.id},
            commit=False,
        )
    return True


async def finish_forward(leg: DcaPayment, fee_sats: int | None) -> None:
    """A forward's outcome: completed (with the fee it really paid) or failed
    (it took nothing: its fee reserve is released)."""
    async with connection() as c:
        await _execute(
            c,
            f"""UPDATE {S}.payments SET status = :status, error = :error,
                attempts = :attempts, completed_at = :completed_at,
                fee_sats = :fee, updated_at = :now WHERE id = :id""",
            {
                "status": leg.status,
                "error": leg.error,
                "attempts": leg.attempts,
                "completed_at": leg.completed_at,
                "fee": fee_sats if leg.status == "completed" else 0,
                "now": utc_now(),
                "id": leg.id,
            },
        )


async def list_forwards(client_ids: Sequence[str], limit: int) -> list[dict[str, Any]]:
    """The latest forwards of some positions (for the dashboard)."""
    if not client_ids:
        return []
    names, placeholders = _names("c", client_ids)
    async with connection() as c:
        return await _scalar_rows(
            c,
            f"""SELECT id, client_id, status, amount_sats, fee_sats, memo, error,
                payment_hash, created_at, completed_at FROM {S}.payments
                WHERE client_id IN ({placeholders}) AND leg_type = 'autoforward'
                ORDER BY created_at DESC, id DESC LIMIT :limit""",
            {**names, "limit": limit},
        )


# --- the LP dashboard ------------------------------------------------------------


_INBOUND_CASE = "leg_type IN ('dca', 'settlement')"


async def dashboard_aggregates(client_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per position: confirmed and pending deposits, fiat charged (purchases
    completed or still owed), sats and fiat of completed purchases, their
    count, and sats forwarded. Two grouped scans, read from the indexes."""
    if not client_ids:
        return {}
    names, placeholders = _names("c", client_ids)
    done = f"{_INBOUND_CASE} AND status = 'completed'"
    payments_sql = f"""
        SELECT client_id,
          SUM(CASE WHEN {_INBOUND_CASE} THEN fiat_amount_minor ELSE 0 END) AS charged,
          SUM(CASE WHEN {done} THEN amount_sats ELSE 0 END) AS sats,
          SUM(CASE WHEN {done} THEN fiat_amount_minor ELSE 0 END) AS fiat,
          SUM(CASE WHEN {done} THEN 1 ELSE 0 END) AS purchases,
          SUM(CASE WHEN leg_type = 'autoforward' AND status = 'completed'
              THEN amount_sats ELSE 0 END) AS forwarded
        FROM {S}.payments
        WHERE client_id IN ({placeholders})
        AND leg_type IN ('dca', 'settlement', 'autoforward')
        AND status IN ('pending', 'completed', 'failed')
        GROUP BY client_id"""
    deposits_sql = f"""
        SELECT client_id, status, SUM(amount_minor) AS amount FROM {S}.deposits
        WHERE client_id IN ({placeholders}) AND status IN ('confirmed', 'pending')
        GROUP BY client_id, status"""
    async with connection() as c:
        paid = await _scalar_rows(c, payments_sql, names)
        deposits = await _scalar_rows(c, deposits_sql, names)
    keys = ("deposited", "pending", "charged", "sats", "fiat", "purchases", "forwarded")
    result = {cid: dict.fromkeys(keys, 0) for cid in client_ids}
    for row in paid:
        for k in keys[2:]:
            result[row["client_id"]][k] = int(row[k] or 0)
    for row in deposits:
        key = "deposited" if row["status"] == "confirmed" else "pending"
        result[row["client_id"]][key] = int(row["amount"] or 0)
    return result


async def last_purchases(client_ids: Sequence[str]) -> dict[str, DcaPayment]:
    """Each position's latest completed purchase: one index probe per
    position and purchase type (no sort)."""
    result: dict[str, DcaPayment] = {}
    async with connection() as c:
        for client_id in client_ids:
            for leg_type in INBOUND_LEGS:
                row = await _fetchone(
                    c,
                    f"""SELECT * FROM {S}.payments WHERE client_id = :c
                        AND leg_type = :lt AND status = 'completed'
                        ORDER BY created_at DESC, id DESC LIMIT 1""",
                    {"c": client_id, "lt": leg_type},
                    DcaPayment,
                )
                best = result.get(client_id)
                if row is not None and (
                    best is None
                    or (row.created_at, row.id) > (best.created_at, best.id)
                ):
                    result[client_id] = row
    return result


def _day(conn: Connection) -> str:
    """Days since the Unix epoch (UTC) of a row's created_at."""
    if conn.type == SQLITE:
        return "CAST(created_at AS INTEGER) / 86400"
    return "CAST(FLOOR(EXTRACT(EPOCH FROM created_at) / 86400) AS BIGINT)"


async def purchase_series(
    client_ids: Sequence[str], since: datetime | None
) -> tuple[dict[str, int], list[dict[str, int]]]:
    """Completed purchases of some positions summed per UTC day (from
    ``since``), and the totals before ``since`` the cumulative line starts at."""
    names, placeholders = _names("c", client_ids)
    where = f"""client_id IN ({placeholders}) AND leg_type IN {_INBOUND}
        AND status = 'completed'"""
    async with connection() as c:
        base = {"sats": 0, "fiat": 0}
        if since is not None:
            rows = await _scalar_rows(
                c,
                f"""SELECT COALESCE(SUM(amount_sats), 0) AS sats,
                    COALESCE(SUM(fiat_amount_minor), 0) AS fiat
                    FROM {S}.payments WHERE {where} AND created_at < :since""",
                {**names, "since": since},
            )
            base = {k: int(rows[0][k]) for k in ("sats", "fiat")}
        day = _day(c)
        days = await _scalar_rows(
            c,
            f"""SELECT {day} AS day, SUM(amount_sats) AS sats,
                COALESCE(SUM(fiat_amount_minor), 0) AS fiat, COUNT(*) AS n
                FROM {S}.payments WHERE {where}
                {"AND created_at >= :since" if since is not None else ""}
                GROUP BY {day} ORDER BY {day}""",
            {**names, "since": since},
        )
    return base, [{k: int(v) for k, v in row.items()} for row in days]


async def list_lp_payments(
    client_ids: Sequence[str],
    leg_type: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> list[DcaPayment]:
    """Payouts (completed purchases) of some positions, newest first; with
    ``leg_type='autoforward'`` their forwards in any status. The page's ids
    come from the index alone, then its rows are read (late row lookup)."""
    if not client_ids:
        return []
    names, placeholders = _names("c", client_ids)
    where = f"client_id IN ({placeholders})"
    if leg_type == "autoforward":
        where += " AND leg_type = 'autoforward'"
    elif leg_type is not None:
        where += " AND leg_type = :lt AND status = 'completed'"
    else:
        where += f" AND {_INBOUND_CASE} AND status = 'completed'"
    if since is not None:
        where += " AND created_at >= :since"
    if until is not None:
        where += " AND created_at < :until"
    order = "ORDER BY created_at DESC, id DESC"
    async with connection() as c:
        return await _fetchall(
            c,
            f"""SELECT * FROM {S}.payments WHERE id IN (
                SELECT id FROM {S}.payments WHERE {where}
                {order} LIMIT :limit OFFSET :offset) {order}""",
            {
                **names,
                "lt": leg_type,
                "since": since,
                "until": until,
                "limit": limit,
                "offset": offset,
            },
            DcaPayment,
        )


async def client_ids_of(user_id: str) -> list[str]:
    """The ids of an LP's positions (at any operator)."""
    async with connection() as c:
        rows = await _scalar_rows(
            c, f"SELECT id FROM {S}.clients WHERE user_id = :u", {"u": user_id}
        )
    return [row["id"] for row in rows]


async def fixed_schedule(operator_user_id: str, machine_id: str) -> dict | None:
    """The fixed-mode schedule that applies to a machine, from the
    fixed-schedule feature's table (issue 11: a machine's override, else the
    operator's default): ``times`` (JSON list of "HH:MM"), ``timezone`` and
    ``max_daily_limit`` (decimal text in major units)."""
    async with connection() as c:
        rows = await _scalar_rows(
            c,
            f"""SELECT times, timezone, max_daily_limit FROM {S}.fixed_schedules
                WHERE operator_user_id = :op
                AND (machine_id = :m OR machine_id IS NULL)
                ORDER BY CASE WHEN machine_id IS NULL THEN 1 ELSE 0 END LIMIT 1""",
            {"op": operator_user_id, "m": machine_id},
        )
    return rows[0] if rows else None


async def table_exists(name: str) -> bool:
    """Whether a table of this extension exists (another feature's, maybe)."""
    async with connection() as c:
        if c.type == SQLITE:
            rows = await _scalar_rows(
                c,
                f"""SELECT name FROM {S}.sqlite_master
                    WHERE type = 'table' AND name = :n""",
                {"n": name},
            )
        else:
            rows = await _scalar_rows(
                c,
                """SELECT table_name FROM information_schema.tables
                   WHERE table_schema = :s AND table_name = :n""",
                {"s": S, "n": name},
            )
    return bool(rows)
