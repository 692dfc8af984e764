"""Carry satmachineadmin v1 forward (issue 19).

v1 (``Atitlanio/satmachineadmin``) kept five tables in the schema
``satoshimachine`` (``satmachineadmin`` before its commit fdc2a17):
``lamassu_config``, ``dca_clients``, ``dca_deposits``, ``dca_payments`` and
``lamassu_transactions``. This module reads them and says what they become
here, in three parts kept apart:

- reading (``find_v1_schema``, ``read_v1``): ``SELECT *`` of each table through
  a ``fetch(sql)`` function, so the migration (SQLAlchemy) and the read-only
  report script (``scripts/upgrade_report.py``: sqlite3 or asyncpg) share it.
  Every value is checked as it is read: a row that cannot be read raises
  ``V1RowError`` naming its table, id and column;
- planning (``summarize``, ``plan``): pure, v1's rows in, this extension's
  rows and the report out. Money stays integer: v1 stored fiat in whole units
  of the currency (``amount``, ``amount_fiat``, ``fiat_amount``,
  ``fixed_mode_daily_limit``), which become minor units by multiplying by
  ``10 ** minor_units(currency)``; v1's ``exchange_rate`` REAL is never used
  for money;
- writing (``write``): every row through the caller's connection without a
  commit, so ``m009`` commits all of it or none.

What v1 becomes:
- its active Lamassu configuration: a Lamassu machine (its source wallet is the
  machine wallet; the super user, who ran v1, is its operator) with its
  connection settings (the database password sealed by ``secret_box``; SSH host,
  port and user; v1's SSH password and private key are not used here, this
  extension makes its own key pair) and its commission wallet as the machine's
  split rule (one leg, 100 %);
- its clients: LP positions at that machine; its deposits: deposits;
- its payments: legs of type ``dca``, ``completed`` when v1 confirmed them (they
  charge the LP's balance as v1's did) and ``voided`` otherwise (v1 never
  counted them; they are never paid);
- every cash-out it processed (a ``lamassu_transactions`` row, or a payment
  naming a Lamassu transaction): a settlement ``processed`` under the key a
  poll would give it, so it never lands again, and the source starts after the
  newest one.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import uuid4

from .calculations import from_minor_units, minor_units
from .models import (
    ClientStatus,
    CommissionSplit,
    DcaClient,
    DcaDeposit,
    DcaMode,
    DcaPayment,
    DcaSettlement,
    LamassuSource,
    Machine,
)

# Newest first: v1's last commit, then the name it had before fdc2a17.
V1_SCHEMAS = ("satoshimachine", "satmachineadmin")
V1_TABLES = (
    "lamassu_config",
    "dca_clients",
    "dca_deposits",
    "dca_payments",
    "lamassu_transactions",
)
REPORT_ID = "v1"
DEFAULT_CURRENCY = "GTQ"  # v1's own default (dca_deposits.currency)

Fetch = Callable[[str], Awaitable[list[dict[str, Any]]]]


class V1RowError(Exception):
    """A v1 row that cannot be read; nothing is carried."""

    def __init__(self, table: str, row_id: str | None, why: str) -> None:
        self.table, self.row_id, self.why = table, row_id, why
        where = f"{table} row {row_id}" if row_id else table
        super().__init__(f"satmachineadmin v1 {where}: {why}")

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "id": self.row_id, "why": self.why}


# --- values ------------------------------------------------------------------


def _id(row: dict[str, Any], table: str) -> str:
    value = row.get("id")
    if value is None or str(value).strip() == "":
        raise V1RowError(table, None, f"a row has no id: {sorted(row)}")
    return str(value)


def _int(
    row: dict[str, Any], column: str, table: str, *, nullable: bool = False
) -> int | None:
    value = row.get(column)
    if value is None:
        if nullable:
            return None
        raise V1RowError(table, _id(row, table), f"{column} is empty")
    if isinstance(value, bool):
        raise V1RowError(table, _id(row, table), f"{column} {value!r} is not a number")
    if isinstance(value, int):
        return value
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        number = Decimal("NaN")
    if not number.is_finite() or number != number.to_integral_value():
        raise V1RowError(
            table, _id(row, table), f"{column} {value!r} is not a whole number"
        )
    return int(number)


def _text(row: dict[str, Any], column: str) -> str | None:
    value = row.get(column)
    return None if value is None else str(value)


def _bool(row: dict[str, Any], column: str, table: str) -> bool:
    value = row.get(column)
    if value in (None, False, 0, "0", "f", "false", "False"):
        return False
    if value in (True, 1, "1", "t", "true", "True"):
        return True
    raise V1RowError(table, _id(row, table), f"{column} {value!r} is not true/false")


def _time(row: dict[str, Any], column: str, table: str) -> datetime | None:
    """v1's TIMESTAMP: epoch seconds on SQLite (as LNbits writes a datetime
    there), a naive UTC datetime on PostgreSQL, or text from older versions."""
    value = row.get(column)
    if value is None or value == "":
        return None
    try:
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
            moment = datetime.fromtimestamp(float(value), timezone.utc)
        else:
            text = str(value).strip()
            try:
                moment = datetime.fromtimestamp(float(text), timezone.utc)
            except ValueError:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise V1RowError(
            table, _id(row, table), f"{column} {value!r} is not a time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _real(row: dict[str, Any], column: str, table: str) -> Decimal | None:
    """A v1 REAL (a rate or a percentage, never money) as the exact decimal
    of the text it prints as."""
    value = row.get(column)
    if value is None:
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise V1RowError(
            table, _id(row, table), f"{column} {value!r} is not a number"
        ) from None
    if not number.is_finite():
        raise V1RowError(table, _id(row, table), f"{column} {value!r} is not finite")
    return number


# --- reading -----------------------------------------------------------------


@dataclass(frozen=True)
class V1Config:
    id: str
    host: str
    port: int
    database_name: str
    username: str
    password: str
    source_wallet_id: str | None
    commission_wallet_id: str | None
    is_active: bool
    use_ssh_tunnel: bool
    ssh_host: str | None
    ssh_port: int | None
    ssh_username: str | None
    has_ssh_password: bool
    has_ssh_private_key: bool
    last_poll_time: datetime | None
    last_successful_poll: datetime | None
    created_at: datetime | None


@dataclass(frozen=True)
class V1Client:
    id: str
    user_id: str
    wallet_id: str
    username: str | None
    dca_mode: str
    fixed_mode_daily_limit: int | None
    status: str
    created_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True)
class V1Deposit:
    id: str
    client_id: str
    amount: int
    currency: str
    status: str
    notes: str | None
    created_at: datetime | None
    confirmed_at: datetime | None


@dataclass(frozen=True)
class V1Payment:
    id: str
    client_id: str
    amount_sats: int
    amount_fiat: int
    exchange_rate: Decimal | None
    transaction_type: str
    lamassu_transaction_id: str | None
    payment_hash: str | None
    status: str
    created_at: datetime | None
    transaction_time: datetime | None


@dataclass(frozen=True)
class V1CashOut:
    id: str
    lamassu_transaction_id: str
    fiat_amount: int
    crypto_amount: int
    effective_commission: Decimal | None
    commission_amount_sats: int
    base_amount_sats: int
    fiat_code: str
    device_id: str | None
    transaction_time: datetime | None
    processed_at: datetime | None


@dataclass
class V1Data:
    schema: str
    configs: list[V1Config] = field(default_factory=list)
    clients: list[V1Client] = field(default_factory=list)
    deposits: list[V1Deposit] = field(default_factory=list)
    payments: list[V1Payment] = field(default_factory=list)
    cash_outs: list[V1CashOut] = field(default_factory=list)


def table_list_sql(dialect: str, schema: str) -> str:
    """The tables of ``schema`` (one of V1_SCHEMAS, never user input)."""
    assert schema in V1_SCHEMAS  # noqa: S101
    if dialect == "SQLITE":
        return f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table'"  # noqa: S608
    return (
        "SELECT table_name AS name FROM information_schema.tables "  # noqa: S608
        f"WHERE table_schema = '{schema}'"
    )


async def v1_tables(fetch: Fetch, dialect: str, schema: str) -> set[str]:
    if dialect == "SQLITE":  # a schema is an attached file, or nothing
        attached = await fetch("PRAGMA database_list")
        if schema not in {str(r["name"]) for r in attached}:
            return set()
    rows = await fetch(table_list_sql(dialect, schema))
    return {str(r["name"]) for r in rows} & set(V1_TABLES)


async def find_v1_schema(
    fetch: Fetch, dialect: str, schemas: Iterable[str] = V1_SCHEMAS
) -> tuple[str | None, dict[str, int]]:
    """The schema holding v1's tables, and the row count of every schema that
    has them. Both exist only when an install crossed fdc2a17 and v1's new
    schema was made by hand: the one with rows wins, the newest name first."""
    counts: dict[str, int] = {}
    for schema in schemas:
        tables = await v1_tables(fetch, dialect, schema)
        if "dca_clients" not in tables:
            continue
        total = 0
        for table in sorted(tables):
            rows = await fetch(f"SELECT COUNT(*) AS n FROM {schema}.{table}")  # noqa: S608
            total += int(rows[0]["n"])
        counts[schema] = total
    if not counts:
        return None, counts
    with_rows = [s for s in counts if counts[s] > 0]
    return (with_rows or list(counts))[0], counts


async def read_v1(fetch: Fetch, dialect: str, schema: str) -> V1Data:
    """Every v1 row as plain values; ``V1RowError`` on the first that cannot
    be read."""
    tables = await v1_tables(fetch, dialect, schema)
    data = V1Data(schema=schema)

    async def rows(table: str) -> list[dict[str, Any]]:
        if table not in tables:
            return []
        found = await fetch(f"SELECT * FROM {schema}.{table}")  # noqa: S608
        return sorted(found, key=lambda r: str(r.get("id")))

    t = "lamassu_config"
    for r in await rows(t):
        data.configs.append(
            V1Config(
                id=_id(r, t),
                host=_text(r, "host") or "",
                port=_int(r, "port", t, nullable=True) or 5432,
                database_name=_text(r, "database_name") or "",
                username=_text(r, "username") or "",
                password=_text(r, "password") or "",
                source_wallet_id=_text(r, "source_wallet_id") or None,
                commission_wallet_id=_text(r, "commission_wallet_id") or None,
                is_active=_bool(r, "is_active", t),
                use_ssh_tunnel=_bool(r, "use_ssh_tunnel", t),
                ssh_host=_text(r, "ssh_host") or None,
                ssh_port=_int(r, "ssh_port", t, nullable=True),
                ssh_username=_text(r, "ssh_username") or None,
                has_ssh_password=bool(r.get("ssh_password")),
                has_ssh_private_key=bool(r.get("ssh_private_key")),
                last_poll_time=_time(r, "last_poll_time", t),
                last_successful_poll=_time(r, "last_successful_poll", t),
                created_at=_time(r, "created_at", t),
            )
        )
    t = "dca_clients"
    for r in await rows(t):
        user_id, wallet_id = _text(r, "user_id"), _text(r, "wallet_id")
        if not user_id or not wallet_id:
            raise V1RowError(t, _id(r, t), "user_id or wallet_id is empty")
        data.clients.append(
            V1Client(
                id=_id(r, t),
                user_id=user_id,
                wallet_id=wallet_id,
                username=_text(r, "username"),
                dca_mode=_text(r, "dca_mode") or "flow",
                fixed_mode_daily_limit=_int(
                    r, "fixed_mode_daily_limit", t, nullable=True
                ),
                status=_text(r, "status") or "active",
                created_at=_time(r, "created_at", t),
                updated_at=_time(r, "updated_at", t),
            )
        )
    t = "dca_deposits"
    for r in await rows(t):
        data.deposits.append(
            V1Deposit(
                id=_id(r, t),
                client_id=_text(r, "client_id") or "",
                amount=_int(r, "amount", t) or 0,
                currency=(_text(r, "currency") or DEFAULT_CURRENCY).strip().upper(),
                status=_text(r, "status") or "pending",
                notes=_text(r, "notes"),
                created_at=_time(r, "created_at", t),
                confirmed_at=_time(r, "confirmed_at", t),
            )
        )
    t = "dca_payments"
    for r in await rows(t):
        data.payments.append(
            V1Payment(
                id=_id(r, t),
                client_id=_text(r, "client_id") or "",
                amount_sats=_int(r, "amount_sats", t) or 0,
                amount_fiat=_int(r, "amount_fiat", t) or 0,
                exchange_rate=_real(r, "exchange_rate", t),
                transaction_type=_text(r, "transaction_type") or "flow",
                lamassu_transaction_id=_text(r, "lamassu_transaction_id") or None,
                payment_hash=_text(r, "payment_hash") or None,
                status=_text(r, "status") or "pending",
                created_at=_time(r, "created_at", t),
                transaction_time=_time(r, "transaction_time", t),
            )
        )
    t = "lamassu_transactions"
    for r in await rows(t):
        txid = _text(r, "lamassu_transaction_id")
        if not txid:
            raise V1RowError(t, _id(r, t), "lamassu_transaction_id is empty")
        data.cash_outs.append(
            V1CashOut(
                id=_id(r, t),
                lamassu_transaction_id=txid,
                fiat_amount=_int(r, "fiat_amount", t) or 0,
                crypto_amount=_int(r, "crypto_amount", t) or 0,
                effective_commission=_real(r, "effective_commission", t),
                commission_amount_sats=_int(r, "commission_amount_sats", t) or 0,
                base_amount_sats=_int(r, "base_amount_sats", t) or 0,
                fiat_code=(_text(r, "fiat_code") or DEFAULT_CURRENCY).strip().upper(),
                device_id=_text(r, "device_id") or None,
                transaction_time=_time(r, "transaction_time", t),
                processed_at=_time(r, "processed_at", t),
            )
        )
    return data


# --- what v1 holds (the report before and after) -------------------------------


def v1_balances(data: V1Data) -> dict[str, int]:
    """v1's balance of each client, in whole units of the currency: its
    confirmed deposits less the ``amount_fiat`` of its confirmed payments
    (v1's ``crud.get_client_balance_summary``)."""
    balances = {c.id: 0 for c in data.clients}
    for d in data.deposits:
        if d.client_id in balances and d.status == "confirmed":
            balances[d.client_id] += d.amount
    for p in data.payments:
        if p.client_id in balances and p.status == "confirmed":
            balances[p.client_id] -= p.amount_fiat
    return balances


def processed_cash_out_ids(data: V1Data) -> list[str]:
    """Every cash-out v1 processed: a ``lamassu_transactions`` row, or a payment
    that names it (v1 took a cash-out as done when it had payments)."""
    ids = {c.lamassu_transaction_id for c in data.cash_outs}
    ids |= {p.lamassu_transaction_id for p in data.payments if p.lamassu_transaction_id}
    return sorted(ids)


def _by(rows: Iterable[Any], key: str) -> dict[str, int]:
    return dict(sorted(Counter(str(getattr(r, key)) for r in rows).items()))


def summarize(data: V1Data) -> dict[str, Any]:
    """Counts and sums per v1 table (amounts in v1's whole units, sats)."""

    def sums(rows: list[Any], *columns: str) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": len(rows)}
        for column in columns:
            out[column] = sum(int(getattr(r, column)) for r in rows)
        return out

    def by_status(rows: list[Any], *columns: str) -> dict[str, Any]:
        statuses = sorted({r.status for r in rows})
        return {s: sums([r for r in rows if r.status == s], *columns) for s in statuses}

    return {
        "schema": data.schema,
        "lamassu_config": {
            "rows": len(data.configs),
            "active": sum(1 for c in data.configs if c.is_active),
        },
        "dca_clients": {
            "rows": len(data.clients),
            "by_status": _by(data.clients, "status"),
        },
        "dca_deposits": {
            **sums(data.deposits, "amount"),
            "by_status": by_status(data.deposits, "amount"),
            "currencies": _by(data.deposits, "currency"),
        },
        "dca_payments": {
            **sums(data.payments, "amount_sats", "amount_fiat"),
            "by_status": by_status(data.payments, "amount_sats", "amount_fiat"),
            "by_type": _by(data.payments, "transaction_type"),
        },
        "lamassu_transactions": sums(
            data.cash_outs, "crypto_amount", "fiat_amount", "base_amount_sats"
        ),
        "processed_cash_outs": len(processed_cash_out_ids(data)),
        "balances": v1_balances(data),
    }


# --- the plan (pure) -------------------------------------------------------------


@dataclass
class Carry:
    machine: Machine | None = None
    source: LamassuSource | None = None
    splits: list[CommissionSplit] = field(default_factory=list)
    clients: list[DcaClient] = field(default_factory=list)
    deposits: list[DcaDeposit] = field(default_factory=list)
    settlements: list[DcaSettlement] = field(default_factory=list)
    legs: list[DcaPayment] = field(default_factory=list)
    left_out: list[dict[str, Any]] = field(default_factory=list)
    after_upgrade: list[str] = field(default_factory=list)
    # v1 client id -> position id here (two v1 clients of one user share one)
    position_of: dict[str, str] = field(default_factory=dict)

    def carried(self) -> dict[str, Any]:
        """Counts and sums of what was carried (fiat in minor units)."""
        currency = self.machine.currency if self.machine else DEFAULT_CURRENCY
        completed = [p for p in self.legs if p.status == "completed"]
        balances: dict[str, str] = {}
        for client in self.clients:
            deposits = sum(
                d.amount_minor
                for d in self.deposits
                if d.client_id == client.id and d.status == "confirmed"
            )
            charged = sum(
                p.fiat_amount_minor or 0 for p in completed if p.client_id == client.id
            )
            balances[client.id] = str(from_minor_units(deposits - charged, currency))
        return {
            "machine": None
            if self.machine is None
            else {
                "id": self.machine.id,
                "name": self.machine.name,
                "wallet_id": self.machine.wallet_id,
                "currency": currency,
                "device_id": self.source.device_id if self.source else None,
                "start_at": (
                    self.source.start_at.isoformat()
                    if self.source and self.source.start_at
                    else None
                ),
                "ssh_host": self.source.ssh_host if self.source else None,
            },
            "commission_split_wallets": [s.wallet_id for s in self.splits],
            "clients": {
                "rows": len(self.clients),
                "by_status": _by(self.clients, "status"),
            },
            "deposits": {
                "rows": len(self.deposits),
                "amount_minor": sum(d.amount_minor for d in self.deposits),
                "by_status": {
                    s: {
                        "rows": sum(1 for d in self.deposits if d.status == s),
                        "amount_minor": sum(
                            d.amount_minor for d in self.deposits if d.status == s
                        ),
                    }
                    for s in sorted({d.status for d in self.deposits})
                },
            },
            "legs": {
                "rows": len(self.legs),
                "by_status": {
                    s: {
                        "rows": sum(1 for p in self.legs if p.status == s),
                        "amount_sats": sum(
                            p.amount_sats for p in self.legs if p.status == s
                        ),
                        "fiat_amount_minor": sum(
                            p.fiat_amount_minor or 0 for p in self.legs if p.status == s
                        ),
                    }
                    for s in sorted({p.status for p in self.legs})
                },
            },
            "settlements": {
                "rows": len(self.settlements),
                "gross_sats": sum(s.gross_sats for s in self.settlements),
            },
            "currency": currency,
            "balances": balances,
        }


def _minor(amount: int, currency: str) -> int:
    """v1's whole units as minor units, exactly."""
    return amount * 10 ** minor_units(currency)


def _currency(data: V1Data) -> str:
    seen = Counter(d.currency for d in data.deposits)
    seen.update(c.fiat_code for c in data.cash_outs)
    return seen.most_common(1)[0][0] if seen else DEFAULT_CURRENCY


def _config(data: V1Data, carry: Carry) -> V1Config | None:
    if not data.configs:
        return None
    newest = sorted(
        data.configs,
        key=lambda c: (
            c.is_active,
            c.created_at or datetime.min.replace(tzinfo=timezone.utc),
        ),
    )
    chosen = newest[-1]
    for other in newest[:-1]:
        carry.left_out.append(
            {
                "table": "lamassu_config",
                "id": other.id,
                "why": "an older or inactive configuration: v1 used only its newest "
                f"active one ({chosen.id})",
            }
        )
    return chosen


def plan(
    data: V1Data,
    *,
    super_user: str,
    now: datetime,
    seal: Callable[[str | None], str | None] = lambda v: v,
    new_id: Callable[[], str] = lambda: uuid4().hex,
    fallback_wallet_id: str | None = None,
) -> Carry:
    """This extension's rows for v1's ``data``; ``V1RowError`` for a row that
    cannot be carried as it is (then nothing is). ``fallback_wallet_id`` (the
    super user's first wallet) is the machine wallet when v1 named no source
    wallet."""
    carry = Carry()
    config = _config(data, carry)
    if config is None and not (
        data.clients or data.deposits or data.payments or data.cash_outs
    ):
        return carry
    wallet_id = (config.source_wallet_id if config else None) or fallback_wallet_id
    if not wallet_id:
        raise V1RowError(
            "lamassu_config",
            config.id if config else None,
            "no source wallet (and the super user has no wallet): the carried "
            "machine needs a wallet",
        )
    if config is None:
        config = V1Config(
            id="",
            host="",
            port=5432,
            database_name="",
            username="",
            password="",
            source_wallet_id=None,
            commission_wallet_id=None,
            is_active=True,
            use_ssh_tunnel=False,
            ssh_host=None,
            ssh_port=None,
            ssh_username=None,
            has_ssh_password=False,
            has_ssh_private_key=False,
            last_poll_time=None,
            last_successful_poll=None,
            created_at=None,
        )
    if not config.source_wallet_id:
        carry.after_upgrade.append(
            f"v1 named no source wallet: the carried machine's wallet is {wallet_id}, "
            "the super user's first wallet; fund it (or make another machine) "
            "before it pays"
        )
    ctx = _Ctx(
        data=data,
        carry=carry,
        config=config,
        wallet_id=wallet_id,
        super_user=super_user,
        now=now,
        new_id=new_id,
        currency=_currency(data),
        machine_id=new_id(),
    )
    _plan_machine(ctx, seal)
    _plan_clients(ctx)
    _plan_deposits(ctx)
    settlement_of = _plan_settlements(ctx)
    _plan_legs(ctx, settlement_of)
    _plan_notes(ctx)
    return carry


@dataclass
class _Ctx:
    data: V1Data
    carry: Carry
    config: V1Config
    wallet_id: str
    super_user: str
    now: datetime
    new_id: Callable[[], str]
    currency: str
    machine_id: str


def _newest_processed(data: V1Data) -> datetime | None:
    times = [c.transaction_time for c in data.cash_outs]
    times += [
        p.transaction_time or p.created_at
        for p in data.payments
        if p.lamassu_transaction_id
    ]
    return max([t for t in times if t is not None], default=None)


def _device(ctx: _Ctx) -> str:
    """The device of v1's processed cash-outs (the commonest); the others are
    reported."""
    devices = Counter(c.device_id for c in ctx.data.cash_outs if c.device_id)
    device = devices.most_common(1)[0][0] if devices else ""
    for other, count in sorted(devices.items()):
        if other != device:
            ctx.carry.left_out.append(
                {
                    "table": "lamassu_transactions",
                    "id": f"device {other}",
                    "why": f"v1 pooled every device of the server; {count} of its "
                    f"processed cash-outs came from device {other}, which this "
                    f"machine does not poll (it polls {device}). They are recorded "
                    "as landed here; add a machine for that device if it still sells",
                }
            )
    if not device:
        ctx.carry.after_upgrade.append(
            "v1 never recorded a cash-out, so the Lamassu device of this machine is "
            "unknown: set its device id (PUT /machines/{id}/lamassu) before it polls"
        )
    return device


def _plan_machine(ctx: _Ctx, seal: Callable[[str | None], str | None]) -> None:
    config, carry, now = ctx.config, ctx.carry, ctx.now
    newest = _newest_processed(ctx.data)
    start_at = newest or now
    created = config.created_at or now
    if not config.id:  # v1 was never connected to a Lamassu server
        carry.machine = Machine(
            id=ctx.machine_id,
            operator_user_id=ctx.super_user,
            npub=f"manual:{ctx.machine_id}",
            wallet_id=ctx.wallet_id,
            name="satmachineadmin v1",
            currency=ctx.currency,
            source="manual",
            created_at=now,
            updated_at=now,
            source_since=start_at,
        )
        carry.after_upgrade.append(
            "v1 had no Lamassu configuration: its positions are at a manual "
            "machine; change its source to Lamassu once the server is known"
        )
        return
    carry.machine = Machine(
        id=ctx.machine_id,
        operator_user_id=ctx.super_user,
        npub=f"lamassu:{ctx.machine_id}",
        wallet_id=ctx.wallet_id,
        name=f"Lamassu {config.host}"[:100] if config.host else "Lamassu (v1)",
        currency=ctx.currency,
        source="lamassu",
        created_at=created,
        updated_at=now,
        source_since=start_at,
    )
    ssh = config.use_ssh_tunnel
    carry.source = LamassuSource(
        machine_id=ctx.machine_id,
        operator_user_id=ctx.super_user,
        host=config.host,
        port=config.port,
        database_name=config.database_name,
        db_user=config.username,
        password=seal(config.password) or "",
        device_id=_device(ctx),
        last_poll_at=config.last_poll_time,
        last_success_at=config.last_successful_poll,
        created_at=created,
        updated_at=now,
        ssh_host=config.ssh_host if ssh else None,
        ssh_port=(config.ssh_port or 22) if ssh else None,
        ssh_user=config.ssh_username if ssh else None,
        start_at=start_at,
        cursor_created=start_at,  # a poll reads from a day before it
    )
    if ssh:
        secret = "password" if config.has_ssh_password else "private key"
        carry.after_upgrade.append(
            f"SSH to {config.ssh_host}: this extension connects with its own key "
            f"pair, not v1's {secret} (kept sealed in v1's table). Open the "
            "machine's Lamassu settings and save them (the extension makes its key "
            "pair then), put the authorized_keys line it shows on the Lamassu "
            "server, test and pin the server's host key: the source does not poll "
            "before."
        )
    if newest is not None:
        carry.after_upgrade.append(
            f"the source starts at {start_at.isoformat()}, v1's newest processed "
            "cash-out: older cash-outs v1 did not process land only through an "
            "import you confirm"
        )
    else:
        carry.after_upgrade.append(
            "v1 recorded no processed cash-out: the source starts at the upgrade "
            f"({start_at.isoformat()}); import older cash-outs only on purpose"
        )
    if config.commission_wallet_id:
        carry.splits.append(
            CommissionSplit(
                id=ctx.new_id(),
                operator_user_id=ctx.super_user,
                machine_id=ctx.machine_id,
                position=0,
                wallet_id=config.commission_wallet_id,
                pct=Decimal(1),
                label="commission (v1)",
                created_at=now,
            )
        )
    else:
        carry.after_upgrade.append(
            "v1 had no commission wallet: this machine has no split rule, so its "
            "commission stays in the machine wallet until you set one"
        )


def _plan_clients(ctx: _Ctx) -> None:
    """One position per (machine, user): a second v1 client of the same user
    is merged into the first (its deposits and payments move with it)."""
    carry, now = ctx.carry, ctx.now
    by_user: dict[str, DcaClient] = {}
    for v in sorted(ctx.data.clients, key=lambda c: (c.created_at or now, c.id)):
        kept = by_user.get(v.user_id)
        if kept is not None:
            carry.position_of[v.id] = kept.id
            carry.left_out.append(
                {
                    "table": "dca_clients",
                    "id": v.id,
                    "why": f"a second v1 client of user {v.user_id}: merged into "
                    f"position {kept.id} (one position per user and machine); its "
                    "deposits and payments are carried there",
                }
            )
            continue
        mode: DcaMode = "fixed" if v.dca_mode == "fixed" else "flow"
        status: ClientStatus = "active" if v.status == "active" else "inactive"
        if mode != v.dca_mode or status != v.status:
            carry.left_out.append(
                {
                    "table": "dca_clients",
                    "id": v.id,
                    "why": f"mode {v.dca_mode!r} / status {v.status!r} unknown here: "
                    f"carried as {mode} / {status}",
                }
            )
        limit = v.fixed_mode_daily_limit
        if limit is not None and limit < 0:
            raise V1RowError("dca_clients", v.id, "fixed_mode_daily_limit is negative")
        client = DcaClient(
            id=v.id,
            machine_id=ctx.machine_id,
            operator_user_id=ctx.super_user,
            user_id=v.user_id,
            wallet_id=v.wallet_id,
            username=v.username,
            dca_mode=mode,
            fixed_mode_daily_limit_minor=(
                None if limit is None else _minor(limit, ctx.currency)
            ),
            status=status,
            created_at=v.created_at or now,
            updated_at=v.updated_at or v.created_at or now,
        )
        by_user[v.user_id] = client
        carry.position_of[v.id] = client.id
        carry.clients.append(client)


def _check_deposit(ctx: _Ctx, d: V1Deposit) -> bool:
    """True when ``d`` is carried; False when it is left out (reported)."""
    if d.client_id not in ctx.carry.position_of:
        ctx.carry.left_out.append(
            {
                "table": "dca_deposits",
                "id": d.id,
                "why": f"its client {d.client_id} is not in v1's dca_clients, so "
                "v1 counted it in no balance",
            }
        )
        return False
    if d.status not in ("pending", "confirmed", "rejected"):
        raise V1RowError("dca_deposits", d.id, f"status {d.status!r} is unknown")
    if d.currency != ctx.currency:
        raise V1RowError(
            "dca_deposits",
            d.id,
            f"currency {d.currency} differs from the machine's {ctx.currency}",
        )
    if d.amount < 0:
        raise V1RowError("dca_deposits", d.id, f"amount {d.amount} is negative")
    if d.amount == 0:
        ctx.carry.left_out.append(
            {
                "table": "dca_deposits",
                "id": d.id,
                "why": "amount 0: it changes no balance",
            }
        )
        return False
    return True


def _plan_deposits(ctx: _Ctx) -> None:
    for d in ctx.data.deposits:
        if not _check_deposit(ctx, d):
            continue
        created_at = d.created_at or ctx.now
        confirmed_at = d.confirmed_at
        if d.status == "confirmed" and confirmed_at is None:
            confirmed_at = created_at
        ctx.carry.deposits.append(
            DcaDeposit(
                id=d.id,
                client_id=ctx.carry.position_of[d.client_id],
                machine_id=ctx.machine_id,
                operator_user_id=ctx.super_user,
                amount_minor=_minor(d.amount, ctx.currency),
                currency=ctx.currency,
                status=d.status,  # type: ignore[arg-type]
                notes=d.notes,
                creator_user_id=ctx.super_user,
                created_at=created_at,
                updated_at=confirmed_at or created_at,
                confirmed_at=confirmed_at,
            )
        )


def _cash_out_figures(
    c: V1CashOut | None, legs: list[V1Payment]
) -> tuple[int, int, int, int, datetime | None, datetime | None, Decimal | None, str]:
    """(gross, net, commission, fiat, when, processed, fee_pct, note) of a
    cash-out v1 processed: its ``lamassu_transactions`` row, else its
    payments."""
    if c is not None:
        return (
            c.crypto_amount,
            c.base_amount_sats,
            c.commission_amount_sats,
            c.fiat_amount,
            c.transaction_time,
            c.processed_at,
            c.effective_commission,
            f"v1's lamassu_transactions row {c.id}",
        )
    sats = sum(p.amount_sats for p in legs)
    times = [p.transaction_time or p.created_at for p in legs]
    return (
        sats,
        sats,
        0,
        sum(p.amount_fiat for p in legs),
        min([t for t in times if t is not None], default=None),
        max([p.created_at for p in legs if p.created_at], default=None),
        None,
        "v1 kept no lamassu_transactions row: amounts are its payments' sums",
    )


def _plan_settlements(ctx: _Ctx) -> dict[str, str]:
    """Every cash-out v1 processed: landed and processed, never again."""
    settlement_of: dict[str, str] = {}
    now = ctx.now
    rows = {c.lamassu_transaction_id: c for c in ctx.data.cash_outs}
    legs: dict[str, list[V1Payment]] = {}
    for p in ctx.data.payments:
        if p.lamassu_transaction_id:
            legs.setdefault(p.lamassu_transaction_id, []).append(p)
    for txid in processed_cash_out_ids(ctx.data):
        gross, net, commission, fiat, when, done, fee_pct, note = _cash_out_figures(
            rows.get(txid), legs.get(txid, [])
        )
        sid = ctx.new_id()
        settlement_of[txid] = sid
        rate = None  # fiat per BTC, from v1's integers (never its REAL rate)
        if fiat > 0 and net > 0:
            rate = (Decimal(fiat) * 100_000_000 / net).quantize(Decimal("0.00001"))
        ctx.carry.settlements.append(
            DcaSettlement(
                id=sid,
                machine_id=ctx.machine_id,
                operator_user_id=ctx.super_user,
                payment_hash=f"lamassu:{ctx.machine_id}:{txid}",
                txid=txid,
                gross_sats=gross,
                net_sats=net,
                commission_sats=commission,
                platform_fee_sats=0,
                operator_fee_sats=commission,
                super_fee_pct=Decimal(0),
                fee_pct=fee_pct,
                exchange_rate=rate,
                fiat_amount_minor=_minor(fiat, ctx.currency),
                currency=ctx.currency,
                status="processed",
                notes=f"[{now.isoformat()}] carried from satmachineadmin v1, which "
                f"processed this cash-out ({note}); never paid again.",
                paid_at=when or done or now,
                created_at=done or when or now,
                updated_at=now,
                processed_at=done or when or now,
                source="lamassu",
                source_txid=txid,
            )
        )
    return settlement_of


def _plan_legs(ctx: _Ctx, settlement_of: dict[str, str]) -> None:
    carry = ctx.carry
    wallets = {c.id: c.wallet_id for c in carry.clients}
    for p in ctx.data.payments:
        position = carry.position_of.get(p.client_id)
        if position is None:
            carry.left_out.append(
                {
                    "table": "dca_payments",
                    "id": p.id,
                    "why": f"its client {p.client_id} is not in v1's dca_clients, so "
                    "v1 charged it to no balance",
                }
            )
            continue
        if p.amount_sats < 0 or p.amount_fiat < 0:
            raise V1RowError("dca_payments", p.id, "a negative amount")
        done = p.status == "confirmed"
        when = p.transaction_time or p.created_at or ctx.now
        carry.legs.append(
            DcaPayment(
                id=p.id,
                idempotency_key=f"v1:{p.id}",
                settlement_id=settlement_of.get(p.lamassu_transaction_id or ""),
                machine_id=ctx.machine_id,
                operator_user_id=ctx.super_user,
                client_id=position,
                leg_type="dca",
                status="completed" if done else "voided",
                amount_sats=p.amount_sats,
                fiat_amount_minor=_minor(p.amount_fiat, ctx.currency),
                currency=ctx.currency,
                source_wallet_id=ctx.wallet_id,
                destination_wallet_id=wallets[position],
                label=f"v1 {p.transaction_type}",
                memo=f"satmachineadmin v1 {p.transaction_type} payment",
                reason=None
                if done
                else f"v1 left this payment {p.status}: it never counted and is "
                "never paid",
                payment_hash=p.payment_hash,
                created_at=p.created_at or when,
                updated_at=ctx.now,
                completed_at=when if done else None,
            )
        )


def _plan_notes(ctx: _Ctx) -> None:
    carry = ctx.carry
    unsettled = [leg for leg in carry.legs if leg.status == "voided"]
    if unsettled:
        carry.after_upgrade.append(
            f"v1 left {len(unsettled)} payment(s) pending or failed "
            f"({sum(leg.amount_sats for leg in unsettled)} sats): they are voided "
            "legs, never paid and not charged to any balance, as v1 counted them; "
            "if v1 paid one anyway (its status never updated), settle it with the "
            "LP by hand"
        )
    if any(c.dca_mode == "fixed" for c in carry.clients):
        carry.after_upgrade.append(
            "v1 never bought for fixed-mode LPs on a schedule: set the machine's "
            "fixed-mode schedule (times of day), or its fixed-mode positions buy "
            "nothing"
        )
    if carry.settlements:
        carry.after_upgrade.append(
            "v1 credited the machine wallet by admin credit for each cash-out and "
            "paid its commission transfers without recording them: a "
            "reconciliation of this machine over v1's period shows those LNbits "
            "payments outside the ledger (the carried settlements and legs are "
            "v1's records, not transfers of this extension)"
        )
    carry.after_upgrade.append(
        "satmachineclient (v1's LP extension) reads v1's tables, which this "
        "extension no longer reads or writes: uninstall it; LPs use this "
        "extension's LP tab and API instead"
    )
    for client_id, balance in v1_balances(ctx.data).items():
        if balance < 0 and carry.position_of.get(client_id) == client_id:
            carry.left_out.append(
                {
                    "table": "dca_clients",
                    "id": client_id,
                    "why": f"v1 showed a negative balance ({balance}); a balance here "
                    "never goes below zero, so it shows 0",
                }
            )


def report(
    *,
    status: str,
    summary: dict[str, Any] | None,
    carry: Carry | None = None,
    error: V1RowError | None = None,
    other_schemas: dict[str, int] | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """What the super user reads after the upgrade (GET /upgrade/v1-report)."""
    return {
        "status": status,
        "at": (at or datetime.now(timezone.utc)).isoformat(),
        "v1": summary,
        "carried": carry.carried() if carry else None,
        "left_out": carry.left_out if carry else [],
        "after_upgrade": carry.after_upgrade if carry else [],
        "error": error.as_dict() if error else None,
        "v1_schemas": other_schemas or {},
    }


def dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, default=str)


# --- the migration (m009) --------------------------------------------------------


def _fetcher(db: Any) -> Fetch:
    from sqlalchemy.sql import text

    async def fetch(sql: str) -> list[dict[str, Any]]:
        result = await db.conn.execute(text(sql))
        return [dict(row) for row in result.mappings().all()]

    return fetch


async def _attach_v1_file(db: Any) -> str | None:
    """On SQLite v1's last schema is its own file in the data folder; attach
    it (read and sealed in the same transaction). None: nothing attached."""
    import os

    from lnbits.settings import settings
    from sqlalchemy.sql import text

    schema = V1_SCHEMAS[0]
    path = os.path.join(settings.lnbits_data_folder, f"ext_{schema}.sqlite3")
    if not os.path.isfile(path):
        return None
    listed = await db.conn.execute(text("PRAGMA database_list"))
    if schema in {row[1] for row in listed.fetchall()}:
        return None
    await db.conn.execute(text(f"ATTACH DATABASE :path AS {schema}"), {"path": path})
    await db.conn.commit()
    return schema


async def _first_wallet(user: str) -> str | None:
    from lnbits.core.crud import get_wallets

    wallets = await get_wallets(user)
    return wallets[0].id if wallets else None


async def _super_user() -> str:
    from lnbits.core.crud.settings import get_settings_field
    from lnbits.settings import settings

    stored = await get_settings_field("super_user")
    user = (stored.value if stored else None) or settings.super_user
    if not user:
        raise V1RowError(
            "lamassu_config",
            None,
            "this LNbits has no super user to be the carried machine's operator",
        )
    return str(user)


async def save_report(db: Any, value: dict[str, Any]) -> None:
    from . import crud

    await crud._execute(
        db,
        "DELETE FROM satmachineadmin.upgrade_reports WHERE id = :id",
        {"id": REPORT_ID},
        commit=False,
    )
    await crud._execute(
        db,
        "INSERT INTO satmachineadmin.upgrade_reports "
        "(id, status, report, created_at) VALUES (:id, :status, :report, :at)",
        {
            "id": REPORT_ID,
            "status": value["status"],
            "report": dumps(value),
            "at": datetime.now(timezone.utc),
        },
        commit=False,
    )


async def write(db: Any, carry: Carry, schema: str) -> None:
    """Every carried row, in the caller's transaction (no commit); v1's
    secrets sealed where v1 kept them in plain text."""
    from . import crud
    from .secret_box import seal

    if carry.machine is not None:
        await crud._insert(db, "machines", carry.machine, commit=False)
    if carry.source is not None:
        await crud._insert(db, "lamassu_sources", carry.source, commit=False)
    for rows, table in (
        (carry.splits, "commission_splits"),
        (carry.clients, "clients"),
        (carry.deposits, "deposits"),
        (carry.settlements, "settlements"),
        (carry.legs, "payments"),
    ):
        for row in rows:
            await crud._insert(db, table, row, commit=False)
    assert schema in V1_SCHEMAS  # noqa: S101
    columns = "id, password, ssh_password, ssh_private_key"
    secrets = await _fetcher(db)(
        f"SELECT {columns} FROM {schema}.lamassu_config"  # noqa: S608
    )
    for secret in secrets:
        await crud._execute(
            db,
            f"UPDATE {schema}.lamassu_config SET password = :p, "  # noqa: S608
            "ssh_password = :sp, ssh_private_key = :sk WHERE id = :id",
            {
                "p": seal(secret["password"]) or "",
                "sp": seal(secret["ssh_password"]),
                "sk": seal(secret["ssh_private_key"]),
                "id": secret["id"],
            },
            commit=False,
        )


async def carry_in_migration(db: Any) -> dict[str, Any]:
    """m009: find v1's tables, carry them in one transaction, save the report.
    A v1 row that cannot be carried rolls everything back, saves a report
    that names it, and raises (LNbits then does not record m009: the next
    start tries again)."""
    from lnbits.db import SQLITE
    from sqlalchemy.sql import text

    from .secret_box import seal

    dialect = "SQLITE" if db.type == SQLITE else "POSTGRES"
    fetch = _fetcher(db)
    attached = await _attach_v1_file(db) if db.type == SQLITE else None
    try:
        schema, counts = await find_v1_schema(fetch, dialect)
        if schema is None:
            value = report(status="no_v1", summary=None, other_schemas=counts)
            await save_report(db, value)
            await db.conn.commit()
            return value
        summary: dict[str, Any] | None = None
        try:
            data = await read_v1(fetch, dialect, schema)
            summary = summarize(data)
            super_user = await _super_user()
            carry = plan(
                data,
                super_user=super_user,
                now=datetime.now(timezone.utc),
                seal=seal,
                fallback_wallet_id=await _first_wallet(super_user),
            )
            await write(db, carry, schema)
            value = report(
                status="carried", summary=summary, carry=carry, other_schemas=counts
            )
            await save_report(db, value)
            await db.conn.commit()
            return value
        except Exception as exc:
            await db.conn.rollback()
            error = (
                exc
                if isinstance(exc, V1RowError)
                else V1RowError("(writing)", None, f"{exc.__class__.__name__}: {exc}")
            )
            value = report(
                status="failed", summary=summary, error=error, other_schemas=counts
            )
            await save_report(db, value)
            await db.conn.commit()
            if error is exc:
                raise
            raise error from exc
    finally:
        if attached:
            await db.conn.rollback()
            await db.conn.execute(text(f"DETACH DATABASE {attached}"))
            await db.conn.commit()


async def load_report() -> dict[str, Any] | None:
    """The report m009 saved, or None when it has not run."""
    from . import crud

    async with crud.connection() as c:
        rows = await crud._scalar_rows(
            c,
            "SELECT report FROM satmachineadmin.upgrade_reports WHERE id = :id",
            {"id": REPORT_ID},
        )
    return json.loads(rows[0]["report"]) if rows else None
