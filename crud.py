"""Data access. Every listing an operator makes is filtered on
``operator_user_id``; every LP listing on ``user_id``.

All SQL goes through ``_execute``/``_fetchall`` below rather than LNbits'
``Connection.execute``: those commit after each statement and strip ``<...>``
from string parameters, while here a caller can group statements into one
transaction (``async with transaction() as conn``) and notes keep their text.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, TypeVar
from uuid import uuid4

from lnbits.db import SQLITE, Connection, dict_to_model, insert_query, model_to_dict
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from . import db
from .calculations import from_minor_units
from .models import (
    ClientBalance,
    CommissionSplit,
    CommissionSplitLeg,
    DcaClient,
    DcaDeposit,
    DcaPayment,
    DcaSettlement,
    Machine,
    SuperConfig,
    utc_now,
)

T = TypeVar("T", bound=BaseModel)
S = "satmachineadmin"


def new_id() -> str:
    return uuid4().hex


# --- the SQL executor --------------------------------------------------------


def _param(conn: Connection, value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:  # lnbits' model_to_dict drops the UTC zone
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value.timestamp() if conn.type == SQLITE else value.replace(tzinfo=None)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


def _params(conn: Connection, values: dict[str, Any] | None) -> dict[str, Any]:
    return {k: _param(conn, v) for k, v in (values or {}).items()}


async def _execute(
    conn: Connection, sql: str, values: dict[str, Any] | None = None, *, commit=True
) -> Any:
    result = await conn.conn.execute(
        text(conn.rewrite_query(sql)), _params(conn, values)
    )
    if commit:
        await conn.conn.commit()
    return result


async def _fetchall(
    conn: Connection, sql: str, values: dict[str, Any] | None, model: type[T]
) -> list[T]:
    result = await conn.conn.execute(
        text(conn.rewrite_query(sql)), _params(conn, values)
    )
    rows = result.mappings().all()
    return [dict_to_model(dict(row), model) for row in rows]


async def _fetchone(
    conn: Connection, sql: str, values: dict[str, Any] | None, model: type[T]
) -> T | None:
    rows = await _fetchall(conn, sql, values, model)
    return rows[0] if rows else None


async def _scalar_rows(
    conn: Connection, sql: str, values: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    result = await conn.conn.execute(
        text(conn.rewrite_query(sql)), _params(conn, values)
    )
    return [dict(row) for row in result.mappings().all()]


def _names(prefix: str, values: Sequence[str]) -> tuple[dict[str, str], str]:
    """Named parameters for an ``IN (...)`` list: (values by name, placeholders)."""
    names = {f"{prefix}{i}": v for i, v in enumerate(values)}
    return names, ", ".join(f":{n}" for n in names)


async def _execute_many(
    conn: Connection, sql: str, rows: Sequence[dict[str, Any]]
) -> None:
    """One statement for many rows (executemany: one round trip on
    PostgreSQL, one prepared statement on SQLite), in the caller's
    transaction. The row count of such a statement is not reliable."""
    if rows:
        await conn.conn.execute(
            text(conn.rewrite_query(sql)), [_params(conn, row) for row in rows]
        )


async def _insert(
    conn: Connection, table: str, model: BaseModel, *, commit: bool = True
) -> None:
    values = model_to_dict(model)
    await _execute(conn, insert_query(f"{S}.{table}", model), values, commit=commit)


async def _update(
    conn: Connection,
    table: str,
    model: BaseModel,
    *,
    commit: bool = True,
    keep: frozenset[str] = frozenset(),
) -> None:
    """Write a row from its model, except the columns in ``keep``."""
    values = {k: v for k, v in model_to_dict(model).items() if k not in keep}
    sets = ", ".join(f'"{k}" = :{k}' for k in values if k != "id")
    await _execute(
        conn, f"UPDATE {S}.{table} SET {sets} WHERE id = :id", values, commit=commit
    )


@asynccontextmanager
async def connection(conn: Connection | None = None) -> AsyncIterator[Connection]:
    """The caller's connection, or a new one (held for the block)."""
    if conn is not None:
        yield conn
        return
    async with db.connect() as new_conn:
        yield new_conn


@asynccontextmanager
async def transaction() -> AsyncIterator[Connection]:
    """One atomic unit: commits at the end, rolls back on any exception.
    Use with ``commit=False`` on the helpers inside."""
    async with db.connect() as conn:
        try:
            yield conn
            await conn.conn.commit()
        except BaseException:
            await conn.conn.rollback()
            raise


# Listings are newest first, ties broken by id, both descending so that an
# index ending in (created_at, id) serves the order without a sort.
NEWEST_FIRST = "ORDER BY created_at DESC, id DESC"


def _newest_page(table: str, where: str) -> str:
    """A page of a table's rows, newest first. The page's ids are picked from
    the index alone and only then are its rows read (late row lookup), so a
    deep offset walks index entries, not rows."""
    return f"""SELECT * FROM {S}.{table} WHERE id IN (
        SELECT id FROM {S}.{table} WHERE {where}
        {NEWEST_FIRST} LIMIT :limit OFFSET :offset) {NEWEST_FIRST}"""


def _page(limit: int, offset: int) -> dict[str, int]:
    return {"limit": limit, "offset": offset}


# --- platform config -------------------------------------------------------


async def get_super_config(conn: Connection | None = None) -> SuperConfig:
    async with connection(conn) as c:
        row = await _fetchone(
            c,
            f"SELECT * FROM {S}.super_config WHERE id = 'singleton'",
            None,
            SuperConfig,
        )
    return row or SuperConfig()


async def set_super_config(
    super_fee_pct: Decimal, super_fee_wallet_id: str | None
) -> SuperConfig:
    config = SuperConfig(
        super_fee_pct=super_fee_pct, super_fee_wallet_id=super_fee_wallet_id
    )
    async with transaction() as c:
        await _execute(
            c, f"DELETE FROM {S}.super_config WHERE id = 'singleton'", commit=False
        )
        await _insert(c, "super_config", config, commit=False)
    return config


# --- machines --------------------------------------------------------------


async def create_machine(machine: Machine) -> Machine:
    async with connection() as c:
        await _insert(c, "machines", machine)
    return machine


async def get_machine(
    machine_id: str, conn: Connection | None = None
) -> Machine | None:
    async with connection(conn) as c:
        return await _fetchone(
            c, f"SELECT * FROM {S}.machines WHERE id = :id", {"id": machine_id}, Machine
        )


async def get_operator_machine(
    machine_id: str, operator_user_id: str
) -> Machine | None:
    machine = await get_machine(machine_id)
    if machine is None or machine.operator_user_id != operator_user_id:
        return None
    return machine


async def get_machine_by_wallet(
    wallet_id: str, conn: Connection | None = None
) -> Machine | None:
    async with connection(conn) as c:
        return await _fetchone(
            c,
            f"SELECT * FROM {S}.machines WHERE wallet_id = :w",
            {"w": wallet_id},
            Machine,
        )


async def get_machine_by_npub(npub: str) -> Machine | None:
    async with connection() as c:
        return await _fetchone(
            c, f"SELECT * FROM {S}.machines WHERE npub = :n", {"n": npub}, Machine
        )


async def list_machines(
    operator_user_id: str, limit: int = 100, offset: int = 0
) -> list[Machine]:
    async with connection() as c:
        return await _fetchall(
            c,
            f"""SELECT * FROM {S}.machines WHERE operator_user_id = :op
                ORDER BY created_at DESC, id DESC LIMIT :limit OFFSET :offset""",
            {"op": operator_user_id, **_page(limit, offset)},
            Machine,
        )


async def list_active_machines(conn: Connection | None = None) -> list[Machine]:
    async with connection(conn) as c:
        return await _fetchall(
            c, f"SELECT * FROM {S}.machines WHERE is_active = TRUE", None, Machine
        )


async def update_machine(machine: Machine) -> Machine:
    machine.updated_at = utc_now()
    async with connection() as c:
        await _update(c, "machines", machine)
    return machine


async def machine_has_settlements(machine_id: str) -> bool:
    async with connection() as c:
        rows = await _scalar_rows(
            c,
            f"SELECT 1 AS x FROM {S}.settlements WHERE machine_id = :m LIMIT 1",
            {"m": machine_id},
        )
    return bool(rows)


async def machine_has_payment_history(machine_id: str) -> bool:
    """Payment legs or confirmed deposits at a machine: records a delete
    would lose."""
    async with connection() as c:
        rows = await _scalar_rows(
            c,
            f"""SELECT 1 AS x FROM {S}.payments WHERE machine_id = :m
                UNION ALL
                SELECT 1 AS x FROM {S}.deposits
                WHERE machine_id = :m AND status = 'confirmed'""",
            {"m": machine_id},
        )
    return bool(rows)


async def get_machines_by_ids(machine_ids: Sequence[str]) -> dict[str, Machine]:
    if not machine_ids:
        return {}
    names, placeholders = _names("m", list(dict.fromkeys(machine_ids)))
    async with connection() as c:
        rows = await _fetchall(
            c,
            f"SELECT * FROM {S}.machines WHERE id IN ({placeholders})",
            names,
            Machine,
        )
    return {row.id: row for row in rows}


async def delete_machine(machine_id: str) -> None:
    """Delete a machine with no settlements, and everything that hangs off
    it: its LPs (with their preferences and invites), deposits, rules,
    schedules and sources."""
    async with transaction() as c:
        for sql in (
            f"""DELETE FROM {S}.lp_preferences WHERE client_id IN
                (SELECT id FROM {S}.clients WHERE machine_id = :m)""",
            f"DELETE FROM {S}.invites WHERE machine_id = :m",
            f"DELETE FROM {S}.fixed_slot_runs WHERE machine_id = :m",
            f"DELETE FROM {S}.fixed_schedules WHERE machine_id = :m",
            f"DELETE FROM {S}.recovery_checkpoints WHERE machine_id = :m",
            f"DELETE FROM {S}.deposits WHERE machine_id = :m",
            f"DELETE FROM {S}.payments WHERE machine_id = :m",
            f"DELETE FROM {S}.clients WHERE machine_id = :m",
            f"DELETE FROM {S}.commission_splits WHERE machine_id = :m",
            f"DELETE FROM {S}.telemetry WHERE machine_id = :m",
            f"DELETE FROM {S}.lamassu_sources WHERE machine_id = :m",
            f"DELETE FROM {S}.lamassu_ignored WHERE machine_id = :m",
            f"DELETE FROM {S}.machine_status WHERE machine_id = :m",
            f"DELETE FROM {S}.machines WHERE id = :m",
        ):
            await _execute(c, sql, {"m": machine_id}, commit=False)


# --- LP positions ----------------------------------------------------------


async def create_client(client: DcaClient) -> DcaClient:
    async with connection() as c:
        await _insert(c, "clients", client)
    return client


async def get_client(
    client_id: str, conn: Connection | None = None
) -> DcaClient | None:
    async with connection(conn) as c:
        return await _fetchone(
            c, f"SELECT * FROM {S}.clients WHERE id = :id", {"id": client_id}, DcaClient
        )


async def get_operator_client(
    client_id: str, operator_user_id: str
) -> DcaClient | None:
    client = await get_client(client_id)
    if client is None or client.operator_user_id != operator_user_id:
        return None
    return client


async def list_clients(
    operator_user_id: str,
    machine_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[DcaClient]:
    where = "operator_user_id = :op"
    if machine_id is not None:
        where += " AND machine_id = :m"
    async with connection() as c:
        return await _fetchall(
            c,
            _newest_page("clients", where),
            {"op": operator_user_id, "m": machine_id, **_page(limit, offset)},
            DcaClient,
        )


async def list_clients_for_user(user_id: str) -> list[DcaClient]:
    """An LP's positions across every operator of the instance."""
    async with connection() as c:
        return await _fetchall(
            c,
            f"SELECT * FROM {S}.clients WHERE user_id = :u ORDER BY created_at DESC",
            {"u": user_id},
            DcaClient,
        )


async def get_client_by_machine_user(machine_id: str, user_id: str) -> DcaClient | None:
    """An LP holds at most one position per machine."""
    async with connection() as c:
        return await _fetchone(
            c,
            f"SELECT * FROM {S}.clients WHERE machine_id = :m AND user_id = :u",
            {"m": machine_id, "u": user_id},
            DcaClient,
        )


async def list_clients_for_user_page(
    user_id: str, limit: int = 100, offset: int = 0
) -> list[DcaClient]:
    """One page of an LP's positions across every operator of the instance."""
    async with connection() as c:
        return await _fetchall(
            c,
            f"""SELECT * FROM {S}.clients WHERE user_id = :u
                ORDER BY created_at DESC, id DESC LIMIT :limit OFFSET :offset""",
            {"u": user_id, **_page(limit, offset)},
            DcaClient,
        )


async def get_completed_payout_totals(
    client_ids: Sequence[str],
) -> dict[str, tuple[int, int]]:
    """Per LP position: (fiat minor units, sats) of its completed DCA and
    settlement legs, what its average price is computed from."""
    if not client_ids:
        return {}
    names, placeholders = _names("c", client_ids)
    async with connection() as c:
        rows = await _scalar_rows(
            c,
            f"""SELECT client_id, COALESCE(SUM(fiat_amount_minor), 0) AS fiat_minor,
                  COALESCE(SUM(amount_sats), 0) AS sats
                FROM {S}.payments
                WHERE client_id IN ({placeholders})
                AND leg_type IN ('dca', 'settlement') AND status = 'completed'
                GROUP BY client_id""",
            names,
        )
    return {
        row["client_id"]: (int(row["fiat_minor"]), int(row["sats"])) for row in rows
    }


async def update_client(client: DcaClient) -> DcaClient:
    client.updated_at = utc_now()
    async with connection() as c:
        await _update(c, "clients", client)
    return client


async def client_has_history(client_id: str) -> bool:
    async with connection() as c:
        rows = await _scalar_rows(
            c,
            f"""SELECT 1 AS x FROM {S}.payments WHERE client_id = :c
                UNION ALL
                SELECT 1 AS x FROM {S}.deposits
                WHERE client_id = :c AND status = 'confirmed'""",
            {"c": client_id},
        )
    return bool(rows)


async def delete_client(client_id: str) -> None:
    """Delete an LP position with its deposits, preferences and the invite
    it was accepted through."""
    async with transaction() as c:
        for sql in (
            f"DELETE FROM {S}.deposits WHERE client_id = :c",
            f"DELETE FROM {S}.lp_preferences WHERE client_id = :c",
            f"DELETE FROM {S}.invites WHERE client_id = :c",
            f"DELETE FROM {S}.clients WHERE id = :c",
        ):
            await _execute(c, sql, {"c": client_id}, commit=False)


# Fiat an LP has been charged: its DCA and settlement legs that completed or
# are still owed (pending, or failed and awaiting a retry). Voided and skipped
# legs charge nothing.
_CHARGED = "('pending', 'completed', 'failed')"


async def get_client_balances(
    client_ids: Sequence[str], conn: Connection | None = None
) -> dict[str, ClientBalance]:
    """Balances of many LP positions in one aggregate query."""
    if not client_ids:
        return {}
    names, placeholders = _names("c", client_ids)
    sql = f"""
        SELECT c.id AS client_id, m.currency AS currency,
          COALESCE((SELECT SUM(d.amount_minor) FROM {S}.deposits d
                    WHERE d.client_id = c.id AND d.status = 'confirmed'), 0)
            AS deposits_minor,
          COALESCE((SELECT SUM(p.fiat_amount_minor) FROM {S}.payments p
                    WHERE p.client_id = c.id AND p.leg_type IN ('dca', 'settlement')
                    AND p.status IN {_CHARGED}), 0) AS charged_minor,
          COALESCE((SELECT SUM(p.amount_sats) FROM {S}.payments p
                    WHERE p.client_id = c.id AND p.leg_type IN ('dca', 'settlement')
                    AND p.status = 'completed'), 0) AS sats
        FROM {S}.clients c JOIN {S}.machines m ON m.id = c.machine_id
        WHERE c.id IN ({placeholders})
    """
    async with connection(conn) as c:
        rows = await _scalar_rows(c, sql, names)
    balances = {}
    for row in rows:
        currency = row["currency"]
        deposits = from_minor_units(int(row["deposits_minor"]), currency)
        charged = from_minor_units(int(row["charged_minor"]), currency)
        balances[row["client_id"]] = ClientBalance(
            client_id=row["client_id"],
            currency=currency,
            total_deposits=deposits,
            total_charged=charged,
            remaining_balance=max(deposits - charged, Decimal(0)),
            total_sats=int(row["sats"]),
        )
    return balances


async def get_flow_clients(
    machine_id: str, conn: Connection | None = None
) -> list[DcaClient]:
    """Active flow-mode positions at a machine, oldest first."""
    async with connection(conn) as c:
        return await _fetchall(
            c,
            f"""SELECT * FROM {S}.clients WHERE machine_id = :m
                AND status = 'active' AND dca_mode = 'flow'
                ORDER BY created_at, id""",
            {"m": machine_id},
            DcaClient,
        )


# --- deposits --------------------------------------------------------------


async def create_deposit(deposit: DcaDeposit) -> DcaDeposit:
    async with connection() as c:
        await _insert(c, "deposits", deposit)
    return deposit


async def get_deposit(deposit_id: str) -> DcaDeposit | None:
    async with connection() as c:
        return await _fetchone(
            c,
            f"SELECT * FROM {S}.deposits WHERE id = :id",
            {"id": deposit_id},
            DcaDeposit,
        )


async def list_deposits(
    operator_user_id: str,
    client_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[DcaDeposit]:
    where = "operator_user_id = :op"
    if client_id is not None:
        where += " AND client_id = :c"
    async with connection() as c:
        return await _fetchall(
            c,
            _newest_page("deposits", where),
            {"op": operator_user_id, "c": client_id, **_page(limit, offset)},
            DcaDeposit,
        )


async def list_deposits_for_user(
    user_id: str, limit: int = 100, offset: int = 0
) -> list[DcaDeposit]:
    async with connection() as c:
        return await _fetchall(
            c,
            f"""SELECT d.* FROM {S}.deposits d JOIN {S}.clients c ON c.id = d.client_id
                WHERE c.user_id = :u ORDER BY d.created_at DESC, d.id DESC
                LIMIT :limit OFFSET :offset""",
            {"u": user_id, **_page(limit, offset)},
            DcaDeposit,
        )


async def update_deposit_if_pending(deposit: DcaDeposit) -> bool:
    """Write a deposit only while it is still pending: confirmed ones are
    immutable. Returns False when it was no longer pending."""
    deposit.updated_at = utc_now()
    async with connection() as c:
        values = model_to_dict(deposit)
        sets = ", ".join(f'"{k}" = :{k}' for k in values if k != "id")
        result = await _execute(
            c,
            f"""UPDATE {S}.deposits SET {sets}
                WHERE id = :id AND status = 'pending'""",
            values,
        )
    return result.rowcount == 1


async def delete_deposit_if_pending(deposit_id: str) -> bool:
    async with connection() as c:
        result = await _execute(
            c,
            f"DELETE FROM {S}.deposits WHERE id = :id AND status = 'pending'",
            {"id": deposit_id},
        )
    return result.rowcount == 1


# --- settlements -----------------------------------------------------------


async def create_settlement_idempotent(
    settlement: DcaSettlement,
) -> tuple[DcaSettlement, bool]:
    """Land a settlement once per payment hash. Returns (row, created)."""
    async with connection() as c:
        try:
            await _insert(c, "settlements", settlement)
            return settlement, True
        except IntegrityError:
            await c.conn.rollback()
        existing = await _fetchone(
            c,
            f"SELECT * FROM {S}.settlements WHERE payment_hash = :h",
            {"h": settlement.payment_hash},
            DcaSettlement,
        )
    if existing is None:  # the conflict was not on payment_hash
        raise ValueError(f"could not land settlement {settlement.payment_hash}")
    return existing, False


async def get_settlement(
    settlement_id: str, conn: Connection | None = None
) -> DcaSettlement | None:
    async with connection(conn) as c:
        return await _fetchone(
            c,
            f"SELECT * FROM {S}.settlements WHERE id = :id",
            {"id": settlement_id},
            DcaSettlement,
        )


async def get_settlement_by_payment_hash(payment_hash: str) -> DcaSettlement | None:
    async with connection() as c:
        return await _fetchone(
            c,
            f"SELECT * FROM {S}.settlements WHERE payment_hash = :h",
            {"h": payment_hash},
            DcaSettlement,
        )


async def get_known_payment_hashes(hashes: Sequence[str]) -> set[str]:
    if not hashes:
        return set()
    names, placeholders = _names("h", hashes)
    async with connection() as c:
        rows = await _scalar_rows(
            c,
            f"""SELECT payment_hash FROM {S}.settlements
                WHERE payment_hash IN ({placeholders})""",
            names,
        )
    return {row["payment_hash"] for row in rows}


async def list_settlements(
    operator_user_id: str,
    status: str | None = None,
    machine_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[DcaSettlement]:
    where = "operator_user_id = :op"
    if status is not None:
        where += " AND status = :status"
    if machine_id is not None:
        where += " AND machine_id = :m"
    async with connection() as c:
        return await _fetchall(
            c,
            _newest_page("settlements", where),
            {
                "op": operator_user_id,
                "status": status,
                "m": machine_id,
                **_page(limit, offset),
            },
            DcaSettlement,
        )


async def update_settlement(
    settlement: DcaSettlement, conn: Connection | None = None, *, commit: bool = True
) -> DcaSettlement:
    settlement.updated_at = utc_now()
    async with connection(conn) as c:
        # Notes only grow, by append_settlement_note: never written from a copy.
        await _update(
            c, "settlements", settlement, commit=commit, keep=frozenset({"notes"})
        )
    return settlement


async def claim_settlement(
    settlement_id: str,
    lease: timedelta,
    conn: Connection | None = None,
    claimed_by: str | None = None,
) -> DcaSettlement | None:
    """Take a settlement for processing, atomically: from `pending`, or from a
    `processing` whose lease ran out (its worker died). Exactly one caller,
    in any number of processes sharing the database, gets the settlement (as
    claimed); the others get None. ``claimed_by`` names the claiming process
    (shown to the operator)."""
    now = utc_now()
    async with connection(conn) as c:
        result = await _execute(
            c,
            f"""UPDATE {S}.settlements
                SET status = 'processing', claimed_until = :until, updated_at = :now,
                claimed_by = :by
                WHERE id = :id AND (status = 'pending'
                  OR (status = 'processing' AND claimed_until < :now))
                RETURNING *""",
            {"id": settlement_id, "until": now + lease, "now": now, "by": claimed_by},
            commit=False,
        )
        rows = result.mappings().all()
        await c.conn.commit()
    return dict_to_model(dict(rows[0]), DcaSettlement) if rows else None


async def list_settlement_ids_to_resume() -> list[str]:
    """Pending settlements and processing ones whose lease ran out. Cheap
    enough to run every few seconds: the status index leaves out every
    finished settlement."""
    async with connection() as c:
        rows = await _scalar_rows(
            c,
            f"""SELECT id, status, claimed_until, created_at FROM {S}.settlements
                WHERE status IN ('pending', 'processing')""",
        )
    now = utc_now()
    due = [
        row
        for row in rows
        if row["status"] == "pending" or _before(row["claimed_until"], now)
    ]
    due.sort(key=lambda row: _epoch(row["created_at"]))
    return [row["id"] for row in due]


def _epoch(value: Any) -> float:
    """A raw timestamp (SQLite: epoch number; PostgreSQL: naive UTC) in seconds."""
    if value is None:
        return 0.0
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            parsed = datetime.fromisoformat(value)
            return _epoch(parsed)
    return float(value)


def _before(value: Any, now: datetime) -> bool:
    return value is None or _epoch(value) < now.timestamp()


async def list_stuck_settlements(
    operator_user_id: str, older_than: timedelta, limit: int = 100, offset: int = 0
) -> list[DcaSettlement]:
    async with connection() as c:
        return await _fetchall(
            c,
            f"""SELECT * FROM {S}.settlements WHERE operator_user_id = :op
                AND (status = 'errored' OR (status IN ('pending', 'processing')
                     AND updated_at < :cutoff))
                ORDER BY created_at DESC, id DESC LIMIT :limit OFFSET :offset""",
            {
                "op": operator_user_id,
                "cutoff": utc_now() - older_than,
                **_page(limit, offset),
            },
            DcaSettlement,
        )


# --- commission split rules ------------------------------------------------


def _scope(machine_id: str | None) -> str:
    return "machine_id = :m" if machine_id is not None else "machine_id IS NULL"


async def get_commission_splits(
    operator_user_id: str, machine_id: str | None, conn: Connection | None = None
) -> list[CommissionSplit]:
    """The rules of exactly this scope: the default (machine_id None) or one
    machine's override."""
    async with connection(conn) as c:
        return await _fetchall(
            c,
            f"""SELECT * FROM {S}.commission_splits
                WHERE operator_user_id = :op AND {_scope(machine_id)}
                ORDER BY position""",
            {"op": operator_user_id, "m": machine_id},
            CommissionSplit,
        )


async def get_effective_commission_splits(
    operator_user_id: str, machine_id: str, conn: Connection | None = None
) -> list[CommissionSplit]:
    """What the pipeline applies: the machine's override, else the default
    (both scopes read in one query)."""
    async with connection(conn) as c:
        rows = await _fetchall(
            c,
            f"""SELECT * FROM {S}.commission_splits WHERE operator_user_id = :op
                AND (machine_id = :m OR machine_id IS NULL) ORDER BY position""",
            {"op": operator_user_id, "m": machine_id},
            CommissionSplit,
        )
    override = [row for row in rows if row.machine_id == machine_id]
    return override or [row for row in rows if row.machine_id is None]


async def replace_commission_splits(
    operator_user_id: str, machine_id: str | None, legs: Sequence[CommissionSplitLeg]
) -> list[CommissionSplit]:
    """Replace one scope's rules atomically (no legs clears them)."""
    rows = [
        CommissionSplit(
            id=new_id(),
            operator_user_id=operator_user_id,
            machine_id=machine_id,
            position=i,
            wallet_id=leg.wallet_id,
            pct=leg.pct,
            label=leg.label,
        )
        for i, leg in enumerate(legs)
    ]
    async with transaction() as c:
        await _execute(
            c,
            f"""DELETE FROM {S}.commission_splits
                WHERE operator_user_id = :op AND {_scope(machine_id)}""",
            {"op": operator_user_id, "m": machine_id},
            commit=False,
        )
        for row in rows:
            await _insert(c, "commission_splits", row, commit=False)
    return rows


# --- payment legs ----------------------------------------------------------


async def insert_legs(legs: Sequence[DcaPayment], conn: Connection) -> None:
    """Add legs to the caller's transaction (see ``transaction``), which commits
    them all or none: one statement for all of them."""
    if legs:
        sql = insert_query(f"{S}.payments", legs[0])
        await _execute_many(conn, sql, [model_to_dict(leg) for leg in legs])


async def lock_machine(machine_id: str, conn: Connection) -> None:
    """Serialise work on one machine's LP balances for the rest of the caller's
    transaction. In one process ``db.connect`` already serialises; across
    processes PostgreSQL needs a row lock. SQLite serialises writers itself."""
    if conn.type != SQLITE:
        await _execute(
            conn,
            f"SELECT id FROM {S}.machines WHERE id = :m FOR UPDATE",
            {"m": machine_id},
            commit=False,
        )


async def insert_leg(leg: DcaPayment) -> bool:
    """Record one leg; False when its idempotency key already exists."""
    async with connection() as c:
        try:
            await _insert(c, "payments", leg)
            return True
        except IntegrityError:
            await c.conn.rollback()
            return False


async def get_leg(leg_id: str) -> DcaPayment | None:
    async with connection() as c:
        return await _fetchone(
            c, f"SELECT * FROM {S}.payments WHERE id = :id", {"id": leg_id}, DcaPayment
        )


async def get_legs(
    settlement_id: str,
    distribution_round: int | None = None,
    conn: Connection | None = None,
) -> list[DcaPayment]:
    where = "settlement_id = :s"
    if distribution_round is not None:
        where += " AND distribution_round = :r"
    async with connection(conn) as c:
        return await _fetchall(
            c,
            f"SELECT * FROM {S}.payments WHERE {where} ORDER BY created_at, id",
            {"s": settlement_id, "r": distribution_round},
            DcaPayment,
        )


async def update_leg(leg: DcaPayment) -> DcaPayment:
    leg.updated_at = utc_now()
    async with connection() as c:
        await _update(c, "payments", leg)
    return leg


async def attach_leg_invoices(invoices: Sequence[tuple[str, str, str]]) -> set[str]:
    """Attach each transfer's invoice to its leg, (leg id, bolt11, hash), in one
    transaction. Once only: the first invoice attached to a leg wins, so a leg
    is only ever paid through one invoice. Returns the ids attached now."""
    attached: set[str] = set()
    if not invoices:
        return attached
    values: dict[str, Any] = {"now": utc_now()}
    pr_cases, ph_cases, ids = [], [], []
    for i, (leg_id, payment_request, payment_hash) in enumerate(invoices):
        values.update(
            {f"i{i}": leg_id, f"pr{i}": payment_request, f"ph{i}": payment_hash}
        )
        pr_cases.append(f"WHEN :i{i} THEN :pr{i}")
        ph_cases.append(f"WHEN :i{i} THEN :ph{i}")
        ids.append(f":i{i}")
    # One statement for the chunk; RETURNING names the legs it attached.
    async with transaction() as c:
        rows = await _scalar_rows(
            c,
            f"""UPDATE {S}.payments
                SET payment_request = CASE id {" ".join(pr_cases)} END,
                payment_hash = CASE id {" ".join(ph_cases)} END, updated_at = :now
                WHERE id IN ({", ".join(ids)}) AND payment_hash IS NULL
                AND status = 'pending' RETURNING id""",
            values,
        )
    attached.update(row["id"] for row in rows)
    return attached


async def record_leg_outcomes(
    legs: Sequence[DcaPayment],
    settlement_id: str | None,
    lease: timedelta | None,
    then: Callable[[Connection], Awaitable[None]] | None = None,
) -> None:
    """Write legs' outcomes (status, error, attempts, completion) together, and
    extend the worker's claim on their settlement, in one transaction; or,
    with ``then``, run ``then`` in that same transaction instead of extending
    the claim (the last chunk: the settlement is closed with its legs)."""
    now = utc_now()
    async with transaction() as c:
        await _execute_many(
            c,
            f"""UPDATE {S}.payments SET status = :status, error = :error,
                attempts = :attempts, completed_at = :completed_at,
                updated_at = :now WHERE id = :id""",
            [
                {
                    "id": leg.id,
                    "status": leg.status,
                    "error": leg.error,
                    "attempts": leg.attempts,
                    "completed_at": leg.completed_at,
                    "now": now,
                }
                for leg in legs
            ],
        )
        if then is not None:
            await then(c)
        elif settlement_id is not None and lease is not None:
            await _execute(
                c,
                f"""UPDATE {S}.settlements SET claimed_until = :until
                    WHERE id = :id AND status = 'processing'""",
                {"id": settlement_id, "until": now + lease},
                commit=False,
            )


async def close_settlement(
    settlement: DcaSettlement, conn: Connection
) -> DcaSettlement | None:
    """Write a processed settlement's outcome (status, error, processing time,
    claim released) in the caller's transaction, if it is still being
    processed: a worker that lost its claim never overwrites another's.
    Returns the row as written (None if it was not ours to close)."""
    result = await _execute(
        conn,
        f"""UPDATE {S}.settlements SET status = :status, error = :error,
            processed_at = :processed_at, claimed_until = :until, updated_at = :now
            WHERE id = :id AND status = 'processing' RETURNING *""",
        {
            "id": settlement.id,
            "status": settlement.status,
            "error": settlement.error,
            "processed_at": settlement.processed_at,
            "until": settlement.claimed_until,
            "now": utc_now(),
        },
        commit=False,
    )
    rows = result.mappings().all()
    return dict_to_model(dict(rows[0]), DcaSettlement) if rows else None


async def void_unpaid_legs(settlement_id: str, conn: Connection) -> int:
    """Void a settlement's legs that paid nothing (in the caller's transaction)."""
    result = await _execute(
        conn,
        f"""UPDATE {S}.payments SET status = 'voided', updated_at = :now
            WHERE settlement_id = :s AND status IN ('pending', 'failed', 'skipped')""",
        {"s": settlement_id, "now": utc_now()},
        commit=False,
    )
    return int(result.rowcount)


async def reset_failed_legs(settlement_id: str) -> int:
    """Put a settlement's failed legs back in line for payment (a retry)."""
    async with connection() as c:
        result = await _execute(
            c,
            f"""UPDATE {S}.payments SET status = 'pending', updated_at = :now
                WHERE settlement_id = :s AND status = 'failed'""",
            {"s": settlement_id, "now": utc_now()},
        )
    return int(result.rowcount)


async def append_settlement_note(settlement_id: str, entry: str) -> None:
    """Append to the notes in one statement, so concurrent notes never lose
    each other. Earlier entries are never rewritten."""
    async with connection() as c:
        await _execute(
            c,
            f"""UPDATE {S}.settlements
                SET notes = COALESCE(notes || :sep, '') || :entry, updated_at = :now
                WHERE id = :id""",
            {"id": settlement_id, "entry": entry, "sep": "\n", "now": utc_now()},
        )


async def list_payments(
    operator_user_id: str,
    leg_type: str | None = None,
    status: str | None = None,
    settlement_id: str | None = None,
    client_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[DcaPayment]:
    where = "operator_user_id = :op"
    filters = {
        "leg_type": leg_type,
        "status": status,
        "settlement_id": settlement_id,
        "client_id": client_id,
    }
    for column, value in filters.items():
        if value is not None:
            where += f" AND {column} = :{column}"
    async with connection() as c:
        return await _fetchall(
            c,
            _newest_page("payments", where),
            {"op": operator_user_id, **filters, **_page(limit, offset)},
            DcaPayment,
        )


async def list_payments_for_user(
    user_id: str, limit: int = 100, offset: int = 0
) -> list[DcaPayment]:
    """An LP's payouts: DCA and settlement legs to any of its positions."""
    async with connection() as c:
        return await _fetchall(
            c,
            f"""SELECT p.* FROM {S}.payments p JOIN {S}.clients c ON c.id = p.client_id
                WHERE c.user_id = :u AND p.leg_type IN ('dca', 'settlement')
                AND p.status = 'completed'
                ORDER BY p.created_at DESC, p.id DESC LIMIT :limit OFFSET :offset""",
            {"u": user_id, **_page(limit, offset)},
            DcaPayment,
        )


async def list_unfinished_legs() -> list[DcaPayment]:
    """Legs that may have been cut off mid-payment (for start-up recovery)."""
    async with connection() as c:
        return await _fetchall(
            c,
            f"""SELECT * FROM {S}.payments
                WHERE status = 'pending' AND payment_hash IS NOT NULL""",
            None,
            DcaPayment,
        )
