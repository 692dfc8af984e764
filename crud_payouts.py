"""Data access for payout recovery (issue 9): replaced invoices, repaired
transfers, lease renewal and the start-up recovery checkpoints; plus the one
read of LNbits' own payments table that tells what became of a chunk of legs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from lnbits.core.db import db as core_db
from lnbits.core.models import Payment

from .bitspire import EXTRA_KEY
from .crud import (
    S,
    _epoch,
    _execute,
    _execute_many,
    _fetchall,
    _insert,
    _names,
    _scalar_rows,
    connection,
    new_id,
)
from .crud import transaction as transaction
from .models import DcaPayment, LegInvoice, utc_now


async def get_transfers(hashes: Sequence[str]) -> list[Payment]:
    """Every LNbits payment (incoming invoice and outgoing payment, any
    status) with one of these payment hashes: one query for a whole chunk."""
    if not hashes:
        return []
    names, placeholders = _names("h", hashes)
    return await core_db.fetchall(
        f"SELECT * FROM apipayments WHERE payment_hash IN ({placeholders})",
        names,
        Payment,
    )


async def get_wallet_payments(
    wallet_id: str, *, complete: bool = False, incoming: bool = False
) -> list[Payment]:
    """Every LNbits payment of a wallet, in one query: ``complete`` as LNbits
    means it (successful, and outgoing still pending), ``incoming`` only
    amounts > 0. LNbits' own ``get_payments`` returns at most 1 000 rows a
    call and pages by time alone, whose ties can move between pages."""
    where = ["wallet_id = :w"]
    if complete:
        where.append("(status = 'success' OR (amount < 0 AND status = 'pending'))")
    if incoming:
        where.append("amount > 0")
    return await core_db.fetchall(
        f"SELECT * FROM apipayments WHERE {' AND '.join(where)}",
        {"w": wallet_id},
        Payment,
    )


async def get_recently_failed_invoices(since: datetime) -> list[Payment]:
    """This extension's transfer invoices that LNbits marked failed since
    ``since`` (LNbits' index on ``updated_at``): one query, a few rows."""
    return await core_db.fetchall(
        f"""SELECT * FROM apipayments WHERE updated_at >=
            {core_db.timestamp_placeholder("since")} AND amount > 0
            AND status = 'failed' AND extra LIKE :ours""",
        {"since": since, "ours": f'%"{EXTRA_KEY}"%'},
        Payment,
    )


async def get_recent_forwards(since: datetime) -> list[DcaPayment]:
    """Autoforward legs completed (or repaired) since ``since``, read through
    the (status, updated_at) index."""
    async with connection() as c:
        return await _fetchall(
            c,
            f"""SELECT * FROM {S}.payments WHERE status = 'completed'
                AND updated_at >= :since AND leg_type = 'autoforward'""",
            {"since": since},
            DcaPayment,
        )


async def get_legs_by_hashes(hashes: Sequence[str]) -> list[DcaPayment]:
    if not hashes:
        return []
    names, placeholders = _names("h", hashes)
    async with connection() as c:
        return await _fetchall(
            c,
            f"SELECT * FROM {S}.payments WHERE payment_hash IN ({placeholders})",
            names,
            DcaPayment,
        )


async def get_incoming_since(
    wallet_ids: Sequence[str], since: datetime, limit: int, offset: int
) -> list[tuple[str, str, str, float]]:
    """The wallets' successful incoming payments made after ``since``, oldest
    first, as (checking id, wallet id, payment hash, Unix time): what recovery needs to
    tell a missed sale, without building a full payment per row.

    Read through LNbits' index on ``time`` alone (``wallet_id || ''`` keeps
    the planner off the wallet index, which would walk each wallet's whole
    history, and the same for the status and amount indexes): the cost
    follows the window, not the history, and one pass serves every wallet."""
    names, placeholders = _names("w", wallet_ids)
    rows: list[dict] = await core_db.fetchall(
        f"""SELECT checking_id, wallet_id, payment_hash, time FROM apipayments
            WHERE time > {core_db.timestamp_placeholder("since")}
            AND wallet_id || '' IN ({placeholders})
            AND amount + 0 > 0 AND status || '' = 'success'
            ORDER BY time, checking_id LIMIT :limit OFFSET :offset""",
        {"since": since, "limit": limit, "offset": offset, **names},
    )
    return [
        (row["checking_id"], row["wallet_id"], row["payment_hash"], _epoch(row["time"]))
        for row in rows
    ]


async def replace_leg_invoice(
    leg: DcaPayment, payment_request: str, payment_hash: str, reason: str
) -> bool:
    """Give a pending leg a fresh invoice in place of the one LNbits failed,
    keeping the old one in ``leg_invoices``; in one transaction, and only if
    the leg still has the old one (compare and swap: one replacement wins)."""
    assert leg.payment_hash and leg.payment_request  # noqa: S101
    now = utc_now()
    async with transaction() as c:
        result = await _execute(
            c,
            f"""UPDATE {S}.payments SET payment_request = :pr, payment_hash = :ph,
                invoice_replacements = invoice_replacements + 1, updated_at = :now
                WHERE id = :id AND payment_hash = :old AND status = 'pending'""",
            {
                "id": leg.id,
                "pr": payment_request,
                "ph": payment_hash,
                "old": leg.payment_hash,
                "now": now,
            },
            commit=False,
        )
        if result.rowcount != 1:
            return False
        await _insert(
            c,
            "leg_invoices",
            LegInvoice(
                id=new_id(),
                leg_id=leg.id,
                payment_hash=leg.payment_hash,
                payment_request=leg.payment_request,
                status="replaced",
                reason=reason[:500],
                created_at=now,
            ),
            commit=False,
        )
    return True


async def mark_leg_repaired(leg_id: str, note: str) -> bool:
    """Record, once, that a leg's half-done transfer was finished forward."""
    async with connection() as c:
        result = await _execute(
            c,
            f"""UPDATE {S}.payments SET repaired_at = :now, repair_note = :note,
                updated_at = :now WHERE id = :id AND repaired_at IS NULL""",
            {"id": leg_id, "note": note[:500], "now": utc_now()},
        )
    return result.rowcount == 1


async def get_replaced_invoices(leg_ids: Sequence[str]) -> list[LegInvoice]:
    if not leg_ids:
        return []
    names, placeholders = _names("l", leg_ids)
    async with connection() as c:
        return await _fetchall(
            c,
            f"""SELECT * FROM {S}.leg_invoices WHERE leg_id IN ({placeholders})
                ORDER BY created_at, id""",
            names,
            LegInvoice,
        )


async def renew_lease(settlement_id: str, lease: timedelta) -> None:
    async with connection() as c:
        await _execute(
            c,
            f"""UPDATE {S}.settlements SET claimed_until = :until
                WHERE id = :id AND status = 'processing'""",
            {"id": settlement_id, "until": utc_now() + lease},
        )


async def get_checkpoints() -> dict[str, int]:
    """Per machine, up to which Unix time recovery has scanned its wallet."""
    async with connection() as c:
        rows = await _scalar_rows(
            c, f"SELECT machine_id, scanned_until FROM {S}.recovery_checkpoints"
        )
    return {row["machine_id"]: int(row["scanned_until"]) for row in rows}


async def set_checkpoints(machine_ids: Sequence[str], scanned_until: int) -> None:
    """Recovery has scanned these machines' wallets up to ``scanned_until``
    (never moved back). Two statements for all of them, in one commit: a
    fleet of 500 costs no more than one machine."""
    now = utc_now()
    rows = [{"m": m, "t": scanned_until, "now": now} for m in machine_ids]
    async with transaction() as conn:
        await _execute_many(
            conn,
            f"""INSERT INTO {S}.recovery_checkpoints
                (machine_id, scanned_until, updated_at)
                SELECT :m, :t, :now WHERE NOT EXISTS (SELECT 1 FROM
                {S}.recovery_checkpoints WHERE machine_id = :m)""",
            rows,
        )
        await _execute_many(
            conn,
            f"""UPDATE {S}.recovery_checkpoints SET scanned_until = :t,
                updated_at = :now WHERE machine_id = :m AND scanned_until < :t""",
            rows,
        )
