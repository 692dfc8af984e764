"""Data access for sale sources (issue 10): Lamassu connection settings and
poll status, landing a batch of sales in one transaction, and what the
funding check needs (settlements awaiting funds, a machine's pending legs)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from lnbits.db import Connection, insert_query, model_to_dict
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from .crud import (
    S,
    _epoch,
    _execute,
    _fetchall,
    _fetchone,
    _insert,
    _names,
    _params,
    _scalar_rows,
    connection,
    transaction,
)
from .models import (
    DcaPayment,
    DcaSettlement,
    LamassuIgnored,
    LamassuSource,
    utc_now,
)
from .secret_box import seal

# --- Lamassu settings and status ---------------------------------------------


async def get_lamassu_source(machine_id: str) -> LamassuSource | None:
    async with connection() as c:
        return await _fetchone(
            c,
            f"SELECT * FROM {S}.lamassu_sources WHERE machine_id = :m",
            {"m": machine_id},
            LamassuSource,
        )


async def list_lamassu_sources(
    operator_user_id: str | None = None,
) -> list[LamassuSource]:
    where = "" if operator_user_id is None else "WHERE operator_user_id = :op"
    async with connection() as c:
        return await _fetchall(
            c,
            f"SELECT * FROM {S}.lamassu_sources {where}",
            {"op": operator_user_id},
            LamassuSource,
        )


def _iso(value: Any) -> str | None:
    """A raw row's timestamp (SQLite: epoch seconds; PostgreSQL: naive UTC)."""
    if value is None:
        return None
    return datetime.fromtimestamp(_epoch(value), timezone.utc).isoformat()


async def lamassu_poll_status(
    machine_ids: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """Per machine, its Lamassu poll status, in one query: never the
    password nor the connection settings."""
    if not machine_ids:
        return {}
    names, placeholders = _names("m", list(dict.fromkeys(machine_ids)))
    async with connection() as c:
        rows = await _scalar_rows(
            c,
            f"""SELECT machine_id, last_poll_at, last_success_at, last_error,
                last_error_at FROM {S}.lamassu_sources
                WHERE machine_id IN ({placeholders})""",
            names,
        )
    return {
        row["machine_id"]: {
            "last_poll_at": _iso(row["last_poll_at"]),
            "last_success_at": _iso(row["last_success_at"]),
            "last_error": row["last_error"],
            "last_error_at": _iso(row["last_error_at"]),
        }
        for row in rows
    }


_SETTINGS = (
    "host",
    "port",
    "database_name",
    "db_user",
    "password",
    "sslmode",
    "device_id",
    "poll_seconds",
    "ssh_host",
    "ssh_port",
    "ssh_user",
    "ssh_private_key",
    "ssh_public_key",
    "ssh_host_key",
    "ssh_host_key_fingerprint",
    "start_at",
    "cursor_created",
    "updated_at",
    "machine_id",
)


async def save_lamassu_source(source: LamassuSource) -> LamassuSource:
    """Insert or replace a machine's settings (status columns kept). The
    password and the SSH private key are stored sealed (a sealed value is
    kept as it is)."""
    source.password = seal(source.password) or ""
    source.ssh_private_key = seal(source.ssh_private_key)
    source.updated_at = utc_now()
    async with transaction() as c:
        exists = await _scalar_rows(
            c,
            f"SELECT 1 AS x FROM {S}.lamassu_sources WHERE machine_id = :m",
            {"m": source.machine_id},
        )
        if exists:
            await _execute(
                c,
                f"""UPDATE {S}.lamassu_sources SET host = :host, port = :port,
                    database_name = :database_name, db_user = :db_user,
                    password = :password, sslmode = :sslmode,
                    device_id = :device_id, poll_seconds = :poll_seconds,
                    ssh_host = :ssh_host, ssh_port = :ssh_port,
                    ssh_user = :ssh_user, ssh_private_key = :ssh_private_key,
                    ssh_public_key = :ssh_public_key,
                    ssh_host_key = :ssh_host_key,
                    ssh_host_key_fingerprint = :ssh_host_key_fingerprint,
                    start_at = :start_at, cursor_created = :cursor_created,
                    updated_at = :updated_at WHERE machine_id = :machine_id""",
                {k: getattr(source, k) for k in _SETTINGS},
                commit=False,
            )
        else:
            await _insert(c, "lamassu_sources", source, commit=False)
    saved = await get_lamassu_source(source.machine_id)
    assert saved is not None  # noqa: S101
    return saved


async def record_poll(
    machine_id: str,
    *,
    error: str | None,
    landed: int,
    cursor: datetime | None,
) -> None:
    """A poll's outcome: last poll, last success or last error, the cursor."""
    now = utc_now()
    async with connection() as c:
        if error is None:
            await _execute(
                c,
                f"""UPDATE {S}.lamassu_sources SET last_poll_at = :now,
                    last_success_at = :now, last_error = NULL, last_landed = :n,
                    landed_total = landed_total + :n,
                    cursor_created = COALESCE(:cursor, cursor_created)
                    WHERE machine_id = :m""",
                {"now": now, "n": landed, "cursor": cursor, "m": machine_id},
            )
        else:
            await _execute(
                c,
                f"""UPDATE {S}.lamassu_sources SET last_poll_at = :now,
                    last_error = :error, last_error_at = :now,
                    landed_total = landed_total + :n,
                    cursor_created = COALESCE(:cursor, cursor_created)
                    WHERE machine_id = :m""",
                {
                    "now": now,
                    "error": error[:500],
                    "n": landed,
                    "cursor": cursor,
                    "m": machine_id,
                },
            )


async def advance_cursor(machine_id: str, cursor: datetime | None) -> None:
    """Set where the next poll reads from (a day before ``cursor``); None:
    from the source's start."""
    async with connection() as c:
        await _execute(
            c,
            f"""UPDATE {S}.lamassu_sources SET cursor_created = :cursor
                WHERE machine_id = :m""",
            {"cursor": cursor, "m": machine_id},
        )


async def pin_host_key(
    machine_id: str, key: str | None, fingerprint: str | None
) -> None:
    async with connection() as c:
        await _execute(
            c,
            f"""UPDATE {S}.lamassu_sources SET ssh_host_key = :key,
                ssh_host_key_fingerprint = :fp, updated_at = :now
                WHERE machine_id = :m""",
            {"key": key, "fp": fingerprint, "now": utc_now(), "m": machine_id},
        )


async def restart_lamassu_source(machine_id: str, start_at: datetime) -> None:
    """The source starts again at ``start_at`` (its machine's source changed
    back to Lamassu): nothing older lands by itself."""
    async with connection() as c:
        await _execute(
            c,
            f"""UPDATE {S}.lamassu_sources SET start_at = :t, cursor_created = NULL,
                updated_at = :t WHERE machine_id = :m""",
            {"t": start_at, "m": machine_id},
        )


# --- cash-outs the operator ignored; which ones landed ---------------------------


async def ignored_txids(machine_id: str) -> set[str]:
    async with connection() as c:
        rows = await _scalar_rows(
            c,
            f"SELECT txid FROM {S}.lamassu_ignored WHERE machine_id = :m",
            {"m": machine_id},
        )
    return {row["txid"] for row in rows}


async def list_ignored(
    machine_id: str, txids: Sequence[str] | None = None
) -> list[LamassuIgnored]:
    found: list[LamassuIgnored] = []
    async with connection() as c:
        if txids is None:
            return await _fetchall(
                c,
                f"""SELECT * FROM {S}.lamassu_ignored WHERE machine_id = :m
                    ORDER BY created_at DESC""",
                {"m": machine_id},
                LamassuIgnored,
            )
        for i in range(0, len(txids), 500):
            names, placeholders = _names("t", list(txids[i : i + 500]))
            found += await _fetchall(
                c,
                f"""SELECT * FROM {S}.lamassu_ignored WHERE machine_id = :m
                    AND txid IN ({placeholders})""",
                {"m": machine_id, **names},
                LamassuIgnored,
            )
    return found


async def add_ignored(row: LamassuIgnored) -> bool:
    """False when the cash-out is ignored already."""
    try:
        async with transaction() as c:
            await _insert(c, "lamassu_ignored", row, commit=False)
    except IntegrityError:
        return False
    return True


async def remove_ignored(machine_id: str, txid: str) -> bool:
    async with connection() as c:
        result = await _execute(
            c,
            f"""DELETE FROM {S}.lamassu_ignored
                WHERE machine_id = :m AND txid = :t""",
            {"m": machine_id, "t": txid},
        )
    return result.rowcount == 1


async def landed_txids(machine_id: str, txids: Sequence[str]) -> dict[str, str]:
    """Of these Lamassu ids, the landed ones: id -> settlement id."""
    found: dict[str, str] = {}
    async with connection() as c:
        for i in range(0, len(txids), 500):
            names, placeholders = _names("t", list(txids[i : i + 500]))
            rows = await _scalar_rows(
                c,
                f"""SELECT source_txid, id FROM {S}.settlements
                    WHERE machine_id = :m AND source = 'lamassu'
                    AND source_txid IN ({placeholders})""",
                {"m": machine_id, **names},
            )
            found.update({row["source_txid"]: row["id"] for row in rows})
    return found


# --- landing a batch -----------------------------------------------------------


async def known_source_txids_since(
    machine_id: str, source: str, since: datetime
) -> set[str]:
    """The source ids of a machine's sales that happened at or after
    ``since``. A range on (machine_id, paid_at): linear whatever plan the
    database picks (a long IN list is not, on a table without statistics)."""
    async with connection() as c:
        rows = await _scalar_rows(
            c,
            f"""SELECT source_txid FROM {S}.settlements
                WHERE machine_id = :m AND paid_at >= :since AND source = :s""",
            {"m": machine_id, "since": since, "s": source},
        )
    return {row["source_txid"] for row in rows}


async def insert_settlements(
    settlements: Sequence[DcaSettlement], legs: Sequence[DcaPayment]
) -> bool:
    """All of them in one transaction, or none (False: one of them exists
    already, landed concurrently; the caller lands one by one)."""
    try:
        async with transaction() as c:
            await _insert_many(c, "settlements", settlements)
            await _insert_many(c, "payments", legs)
    except IntegrityError:
        return False
    return True


async def _insert_many(c: Connection, table: str, rows: Sequence[BaseModel]) -> None:
    """One INSERT executed for many rows (a driver-level executemany)."""
    if not rows:
        return
    sql = c.rewrite_query(insert_query(f"{S}.{table}", rows[0]))
    await c.conn.execute(text(sql), [_params(c, model_to_dict(row)) for row in rows])


# --- funding -------------------------------------------------------------------


async def pending_leg_sats(settlement_id: str, round_: int, wallet_id: str) -> int:
    """Sats a settlement's round still has to pay from ``wallet_id``."""
    async with connection() as c:
        rows = await _scalar_rows(
            c,
            f"""SELECT COALESCE(SUM(amount_sats), 0) AS total FROM {S}.payments
                WHERE settlement_id = :s AND distribution_round = :r
                AND source_wallet_id = :w AND status IN ('pending', 'failed')""",
            {"s": settlement_id, "r": round_, "w": wallet_id},
        )
    return int(rows[0]["total"])


async def list_awaiting_funds() -> list[DcaSettlement]:
    async with connection() as c:
        return await _fetchall(
            c,
            f"""SELECT * FROM {S}.settlements WHERE status = 'awaiting_funds'
                ORDER BY created_at, id""",
            None,
            DcaSettlement,
        )


async def count_awaiting_funds(operator_user_id: str) -> dict[str, int]:
    async with connection() as c:
        rows = await _scalar_rows(
            c,
            f"""SELECT machine_id, COUNT(*) AS n FROM {S}.settlements
                WHERE operator_user_id = :op AND status = 'awaiting_funds'
                GROUP BY machine_id""",
            {"op": operator_user_id},
        )
    return {row["machine_id"]: int(row["n"]) for row in rows}


async def set_awaiting_funds(settlement_id: str) -> bool:
    """From ``processing`` (the caller's claim) to ``awaiting_funds``."""
    async with connection() as c:
        result = await _execute(
            c,
            f"""UPDATE {S}.settlements SET status = 'awaiting_funds',
                claimed_until = NULL, updated_at = :now
                WHERE id = :id AND status = 'processing'""",
            {"id": settlement_id, "now": utc_now()},
        )
    return result.rowcount == 1


async def release_awaiting_funds(settlement_id: str) -> bool:
    """From ``awaiting_funds`` back to ``pending``, once."""
    async with connection() as c:
        result = await _execute(
            c,
            f"""UPDATE {S}.settlements SET status = 'pending', updated_at = :now
                WHERE id = :id AND status = 'awaiting_funds'""",
            {"id": settlement_id, "now": utc_now()},
        )
    return result.rowcount == 1


async def owed_by_machine(operator_user_id: str) -> dict[str, int]:
    """Per machine of an operator: sats its wallet still has to pay (legs
    pending or failed from the machine wallet, settlements not yet closed)."""
    async with connection() as c:
        rows = await _scalar_rows(
            c,
            f"""SELECT p.machine_id AS machine_id,
                COALESCE(SUM(p.amount_sats), 0) AS owed
                FROM {S}.payments p JOIN {S}.machines m ON m.id = p.machine_id
                WHERE p.operator_user_id = :op AND p.source_wallet_id = m.wallet_id
                AND p.status IN ('pending', 'failed')
                GROUP BY p.machine_id""",
            {"op": operator_user_id},
        )
    return {row["machine_id"]: int(row["owed"]) for row in rows}
