"""Data access for fixed mode: schedules, the legs of a slot, slot runs."""

from __future__ import annotations

from collections.abc import Sequence

from lnbits.db import Connection

from .crud import (
    S,
    _execute,
    _fetchall,
    _fetchone,
    _insert,
    _scalar_rows,
    _update,
    connection,
    transaction,
)
from .models import DcaClient, DcaPayment, FixedSchedule, FixedSlotRun, Machine, utc_now


def schedule_id(operator_user_id: str, machine_id: str | None) -> str:
    return f"{operator_user_id}:{machine_id or '*'}"


async def get_schedule(
    operator_user_id: str, machine_id: str | None, conn: Connection | None = None
) -> FixedSchedule | None:
    """The schedule of exactly this scope (default or one machine's)."""
    async with connection(conn) as c:
        return await _fetchone(
            c,
            f"SELECT * FROM {S}.fixed_schedules WHERE id = :id",
            {"id": schedule_id(operator_user_id, machine_id)},
            FixedSchedule,
        )


async def get_effective_schedule(
    operator_user_id: str, machine_id: str, conn: Connection | None = None
) -> FixedSchedule | None:
    """The machine's override, else the operator's default."""
    own = await get_schedule(operator_user_id, machine_id, conn)
    return own or await get_schedule(operator_user_id, None, conn)


async def put_schedule(schedule: FixedSchedule) -> FixedSchedule:
    schedule.updated_at = utc_now()
    async with transaction() as c:
        await _execute(
            c,
            f"DELETE FROM {S}.fixed_schedules WHERE id = :id",
            {"id": schedule.id},
            commit=False,
        )
        await _insert(c, "fixed_schedules", schedule, commit=False)
    return schedule


async def delete_schedule(operator_user_id: str, machine_id: str | None) -> bool:
    async with connection() as c:
        result = await _execute(
            c,
            f"DELETE FROM {S}.fixed_schedules WHERE id = :id",
            {"id": schedule_id(operator_user_id, machine_id)},
        )
    return result.rowcount == 1


async def list_scheduled_machines() -> list[Machine]:
    """Active machines with an active fixed-mode LP and a schedule (their own
    or their operator's default)."""
    async with connection() as c:
        return await _fetchall(
            c,
            f"""SELECT * FROM {S}.machines m WHERE m.is_active = TRUE
                AND EXISTS (SELECT 1 FROM {S}.clients c WHERE c.machine_id = m.id
                    AND c.dca_mode = 'fixed' AND c.status = 'active')
                AND EXISTS (SELECT 1 FROM {S}.fixed_schedules s
                    WHERE s.operator_user_id = m.operator_user_id
                    AND (s.machine_id = m.id OR s.machine_id IS NULL))
                ORDER BY m.created_at, m.id""",
            None,
            Machine,
        )


async def get_fixed_clients(
    machine_id: str, conn: Connection | None = None
) -> list[DcaClient]:
    """Active fixed-mode positions at a machine, oldest first: the order in
    which a short wallet covers them."""
    async with connection(conn) as c:
        return await _fetchall(
            c,
            f"""SELECT * FROM {S}.clients WHERE machine_id = :m
                AND status = 'active' AND dca_mode = 'fixed'
                ORDER BY created_at, id""",
            {"m": machine_id},
            DcaClient,
        )


async def get_slot_legs(
    machine_id: str, slot_ref: str, conn: Connection | None = None
) -> list[DcaPayment]:
    """The legs of one slot ("<local date>T<HH:MM>"), whatever time zone the
    schedule had when they were recorded."""
    async with connection(conn) as c:
        return await _fetchall(
            c,
            f"""SELECT * FROM {S}.payments WHERE machine_id = :m
                AND slot LIKE :prefix ORDER BY created_at, id""",
            {"m": machine_id, "prefix": f"{slot_ref}@%"},
            DcaPayment,
        )


async def rerun_skipped_leg(leg: DcaPayment, conn: Connection) -> bool:
    """Turn a skipped leg back into a pending buy, once (in the caller's
    transaction): only one caller moves it out of 'skipped'."""
    leg.updated_at = utc_now()
    result = await _execute(
        conn,
        f"""UPDATE {S}.payments SET status = 'pending', amount_sats = :sats,
            fiat_amount_minor = :fiat, price = :price, reason = NULL, error = NULL,
            source_wallet_id = :src, memo = :memo, updated_at = :now,
            payment_hash = :ph, payment_request = :pr
            WHERE id = :id AND status = 'skipped'""",
        {
            "ph": leg.payment_hash,
            "pr": leg.payment_request,
            "id": leg.id,
            "sats": leg.amount_sats,
            "fiat": leg.fiat_amount_minor,
            "price": leg.price,
            "src": leg.source_wallet_id,
            "memo": leg.memo,
            "now": leg.updated_at,
        },
        commit=False,
    )
    return result.rowcount == 1


async def skip_failed_legs(legs: Sequence[DcaPayment]) -> None:
    """A fixed buy whose transfer failed charges nothing: it is skipped with
    the error, and the slot's next run tries it again (same invoice)."""
    if not legs:
        return
    async with transaction() as c:
        for leg in legs:
            await _execute(
                c,
                f"""UPDATE {S}.payments SET status = 'skipped', reason = :reason,
                    updated_at = :now WHERE id = :id AND status = 'failed'""",
                {"id": leg.id, "reason": leg.reason, "now": utc_now()},
                commit=False,
            )


async def list_pending_fixed_legs(machine_id: str | None = None) -> list[DcaPayment]:
    """Fixed-mode buys recorded but not known to be paid (a crash between
    recording and paying): resumed by the scheduler."""
    where = "" if machine_id is None else "AND machine_id = :m"
    async with connection() as c:
        return await _fetchall(
            c,
            f"""SELECT * FROM {S}.payments WHERE status = 'pending'
                AND slot IS NOT NULL AND settlement_id IS NULL {where}
                ORDER BY machine_id, created_at, id""",
            {"m": machine_id},
            DcaPayment,
        )


def run_id(machine_id: str, slot_ref: str) -> str:
    return f"{machine_id}:{slot_ref}"


async def get_slot_run(machine_id: str, slot_ref: str) -> FixedSlotRun | None:
    async with connection() as c:
        return await _fetchone(
            c,
            f"SELECT * FROM {S}.fixed_slot_runs WHERE id = :id",
            {"id": run_id(machine_id, slot_ref)},
            FixedSlotRun,
        )


async def save_slot_run(run: FixedSlotRun) -> FixedSlotRun:
    run.updated_at = utc_now()
    async with connection() as c:
        result = await _scalar_rows(
            c,
            f"SELECT id FROM {S}.fixed_slot_runs WHERE id = :id",
            {"id": run.id},
        )
        if result:
            await _update(c, "fixed_slot_runs", run)
        else:
            await _insert(c, "fixed_slot_runs", run)
    return run


async def done_slot_times(machine_id: str, local_date: str) -> set[str]:
    async with connection() as c:
        rows = await _scalar_rows(
            c,
            f"""SELECT slot_time FROM {S}.fixed_slot_runs
                WHERE machine_id = :m AND local_date = :d AND status = 'done'""",
            {"m": machine_id, "d": local_date},
        )
    return {row["slot_time"] for row in rows}


async def list_slot_runs(
    machine_id: str, limit: int = 50, offset: int = 0
) -> list[FixedSlotRun]:
    async with connection() as c:
        return await _fetchall(
            c,
            f"""SELECT * FROM {S}.fixed_slot_runs WHERE machine_id = :m
                ORDER BY local_date DESC, slot_time DESC
                LIMIT :limit OFFSET :offset""",
            {"m": machine_id, "limit": limit, "offset": offset},
            FixedSlotRun,
        )
