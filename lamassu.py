"""The Lamassu source: successful, dispensed cash-outs read from a Lamassu
server's PostgreSQL database, each turned into a ``Sale`` (see LAMASSU.md).

Three parts, kept apart:
- ``is_sale_row`` / ``parse_row``: pure, values in, values out (how Lamassu
  priced the sale and the split of its gross into principal and commission);
- ``read_sales`` / ``check_connection``: asyncpg, every query in a READ ONLY
  transaction on a session that defaults to read-only too;
- ``poll``: read the rows of a window of recent ``created`` (never
  ``confirmed_at``: a zero-conf on-chain sale may never get one, and a row
  becomes a sale when ``dispense_confirmed`` is written, after it was made),
  land each new one through ``landing.land_sales`` and record the status.

The password is kept server-side and never logged: errors are described in
words by ``describe_error``, which also blanks the password out of any text
a driver hands back.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

from loguru import logger

from . import crud_sources, landing, notifications
from .bitspire import Sale
from .models import DcaSettlement, LamassuSource, Machine, SaleSource
from .secret_box import open_secret

SOURCE: SaleSource = "lamassu"
SATS_PER_BTC = 100_000_000
SALE_COINS = ("BTC", "LN")
SALE_STATUSES = ("confirmed", "authorized", "instant")
LOOKBACK = timedelta(hours=24)  # rows made this long before the newest seen
PAGE = 5000
CONNECT_TIMEOUT_S = 10
QUERY_TIMEOUT_S = 60
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ZERO_UUID = "00000000-0000-0000-0000-000000000000"


# --- pure: which rows are sales, and what they are worth ---------------------


def is_sale_row(row: Mapping[str, Any]) -> bool:
    """LAMASSU.md's rule for a successful, dispensed cash-out."""
    return (
        row.get("crypto_code") in SALE_COINS
        and row.get("dispense") is True
        and row.get("dispense_confirmed") is True
        and row.get("error") is None
        and str(row.get("status")) in SALE_STATUSES
    )


def effective_commission(
    commission_percentage: Decimal, discount: int | None
) -> Decimal:
    """``e = c * (100 - discount) / 100`` (no discount = 0)."""
    return commission_percentage * (100 - (discount or 0)) / 100


def principal_and_commission(
    *,
    crypto_atoms: int,
    fiat: Decimal,
    raw_ticker_price: Decimal | None,
    commission_percentage: Decimal | None,
    discount: int | None,
) -> tuple[int, int]:
    """(net_sats, commission_sats) of a Lamassu cash-out.

    With the bid: ``net = floor(fiat * 1e8 / raw_ticker_price)``. Without:
    ``net = floor(crypto_atoms * (1 - e))``. The commission is the rest (it
    holds the percentage and any fixed fee)."""
    if raw_ticker_price is not None:
        net = math.floor(fiat * SATS_PER_BTC / raw_ticker_price)
    else:
        e = effective_commission(commission_percentage or Decimal(0), discount)
        net = math.floor(crypto_atoms * (1 - e))
    return net, crypto_atoms - net


def customer_rate(raw_ticker_price: Decimal, e: Decimal) -> Decimal:
    """The rate the customer got (fiat per BTC, 5 decimals), as lamassu-machine."""
    return (raw_ticker_price * (1 - e)).quantize(Decimal("0.00001"))


def priced_crypto_atoms(fiat: Decimal, fixed_fee: Decimal, rate: Decimal) -> int:
    """What Lamassu charges: ``(fiat + fixed_fee) / rate * 1e8``, truncated to
    whole 100-sat steps."""
    atoms = math.floor((fiat + fixed_fee) / rate * SATS_PER_BTC)
    return atoms - atoms % 100


def row_problems(row: Mapping[str, Any], machine_currency: str) -> list[str]:
    """Why a row's numbers cannot be trusted (empty: they can)."""
    problems: list[str] = []
    atoms = _decimal(row.get("crypto_atoms"))
    if atoms is None or atoms <= 0 or atoms != atoms.to_integral_value():
        problems.append(
            f"crypto_atoms {row.get('crypto_atoms')} is not a positive amount"
        )
    fiat = _decimal(row.get("fiat"))
    if fiat is None or fiat <= 0:
        problems.append(f"fiat {row.get('fiat')} is not a positive amount")
    currency = str(row.get("fiat_code") or "").upper()
    if currency != machine_currency:
        problems.append(f"currency {currency} is not the machine's {machine_currency}")
    price = _decimal(row.get("raw_ticker_price"))
    if price is not None and price <= 0:
        problems.append(f"raw_ticker_price {price} is not a positive price")
    pct = _decimal(row.get("commission_percentage"))
    if pct is not None and not 0 <= pct < 1:
        problems.append(f"commission_percentage {pct} is not a fraction below 1")
    discount = row.get("discount")
    if discount is not None and not (
        isinstance(discount, int) and 0 <= discount <= 100
    ):
        problems.append(f"discount {discount} is not a percent from 0 to 100")
    if price is None and pct is None:
        problems.append("no raw_ticker_price and no commission_percentage")
    return problems


def parse_row(row: Mapping[str, Any], machine_currency: str) -> Sale:
    """A successful cash-out row as a ``Sale``. A row whose numbers cannot be
    trusted comes back with ``error`` set: it lands errored and pays nothing."""
    problems = row_problems(row, machine_currency)
    atoms = _decimal(row.get("crypto_atoms"))
    gross = int(atoms) if atoms is not None and atoms > 0 else 0
    held = Sale(
        gross_sats=gross,
        net_sats=gross,
        commission_sats=0,
        currency=machine_currency,
        txid=str(row.get("id")),
    )
    if problems:
        return replace(held, error="; ".join(problems))
    fiat = _decimal(row.get("fiat"))
    price = _decimal(row.get("raw_ticker_price"))
    pct = _decimal(row.get("commission_percentage"))
    discount = row.get("discount")
    assert fiat is not None  # noqa: S101 - row_problems checked it
    net, commission = principal_and_commission(
        crypto_atoms=gross,
        fiat=fiat,
        raw_ticker_price=price,
        commission_percentage=pct,
        discount=discount,
    )
    if net <= 0:
        return replace(held, error=f"principal {net} sats is not positive")
    if net > gross:
        return replace(
            held, error=f"principal {net} sats is more than the {gross} sats paid"
        )
    e = effective_commission(pct, discount) if pct is not None else None
    return replace(
        held,
        net_sats=net,
        commission_sats=commission,
        fee_pct=None if e is None else e.normalize(),
        exchange_rate=price if price is not None else _rate_of(fiat, net),
        fiat_amount=fiat,
    )


def _rate_of(fiat: Decimal, net_sats: int) -> Decimal:
    return (fiat * SATS_PER_BTC / net_sats).quantize(
        Decimal("0.00001"), rounding=ROUND_DOWN
    )


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


# --- reading the Lamassu database (asyncpg, read-only) -----------------------


class SourceUnreadableError(Exception):
    """The Lamassu database could not be read; the message is in words and
    holds no secret."""


# FIXED_FEE is `fixed_fee` (Lamassu 10.2+) or `0::numeric` (older servers).
SALES_SQL = """SELECT id::text AS id, device_id, crypto_atoms, crypto_code,
      fiat, fiat_code, status::text AS status, dispense, dispense_confirmed,
      error, created, commission_percentage, discount, raw_ticker_price,
      FIXED_FEE AS fixed_fee
    FROM cash_out_txs
    WHERE device_id = $1 AND (created, id) > ($2::timestamptz, $3::uuid)
      AND crypto_code IN ('BTC', 'LN') AND dispense
      AND dispense_confirmed IS TRUE AND error IS NULL
      AND status::text IN ('confirmed', 'authorized', 'instant')
    ORDER BY created, id LIMIT $4"""


async def _connect(source: LamassuSource) -> Any:
    import asyncpg  # shipped with LNbits

    try:
        return await asyncpg.connect(
            host=source.host,
            port=source.port,
            user=source.db_user,
            password=open_secret(source.password) or None,
            database=source.database_name,
            ssl=None if source.sslmode == "disable" else source.sslmode,
            timeout=CONNECT_TIMEOUT_S,
            command_timeout=QUERY_TIMEOUT_S,
            statement_cache_size=0,
            server_settings={
                "application_name": "satmachineadmin",
                "default_transaction_read_only": "on",
            },
        )
    except Exception as exc:
        raise SourceUnreadableError(describe_error(exc, source)) from None


def _error_words(exc: BaseException, source: LamassuSource) -> str | None:
    import asyncpg

    where = f"{source.host}:{source.port}"
    user, database = source.db_user, source.database_name
    known: list[tuple[type[BaseException] | tuple[type[BaseException], ...], str]] = [
        (asyncpg.InvalidPasswordError, f"bad password for database user {user}"),
        (
            asyncpg.InvalidAuthorizationSpecificationError,
            f"the server refuses database user {user}",
        ),
        (asyncpg.InvalidCatalogNameError, f"no database {database} on {where}"),
        (
            asyncpg.UndefinedTableError,
            "no such table cash_out_txs: is this a Lamassu database?",
        ),
        (
            asyncpg.InsufficientPrivilegeError,
            f"database user {user} may not read the Lamassu tables",
        ),
        (
            asyncpg.CannotConnectNowError,
            f"the Lamassu database at {where} is starting up or shutting down",
        ),
        (ConnectionRefusedError, f"connection refused: nothing listens on {where}"),
        ((asyncio.TimeoutError, TimeoutError), f"no answer from {where} in time"),
        (
            (asyncpg.InterfaceError, ConnectionError),
            "the connection to the Lamassu database broke",
        ),
    ]
    for kind, words in known:
        if isinstance(exc, kind):
            return words
    if isinstance(exc, OSError):
        return f"cannot reach {where}: {exc.strerror or exc.__class__.__name__}"
    if isinstance(exc, asyncpg.PostgresError):
        return f"the Lamassu database refused the query ({exc.sqlstate})"
    return None


def describe_error(exc: BaseException, source: LamassuSource) -> str:
    """What went wrong, in words, with no secret in it."""
    if isinstance(exc, SourceUnreadableError):
        text = str(exc)
    else:
        text = _error_words(exc, source) or (
            f"could not read the Lamassu database ({exc.__class__.__name__})"
        )
    return scrub(text, source)


def scrub(text: str, source: LamassuSource) -> str:
    if source.password:
        text = text.replace(source.password, "***")
    return text


async def _has_fixed_fee(conn: Any) -> bool:
    """Lamassu 10.2 added ``fixed_fee``; older servers have no such column."""
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM pg_attribute
               WHERE attrelid = to_regclass('cash_out_txs')
               AND attname = 'fixed_fee' AND NOT attisdropped)"""
        )
    )


async def read_sales(
    conn: Any, device_id: str, since: datetime, after_id: str = ZERO_UUID
) -> list[dict[str, Any]]:
    """One page of a device's successful cash-outs made after (since, id),
    oldest first, read in a READ ONLY transaction."""
    async with conn.transaction(readonly=True):
        fixed = "fixed_fee" if await _has_fixed_fee(conn) else "0::numeric"
        rows = await conn.fetch(
            SALES_SQL.replace("FIXED_FEE", fixed), device_id, since, after_id, PAGE
        )
    return [dict(row) for row in rows]


async def check_connection(source: LamassuSource) -> str | None:
    """None when the source can be read as it must be, else why not."""
    try:
        conn = await _connect(source)
    except SourceUnreadableError as exc:
        return str(exc)
    try:
        async with conn.transaction(readonly=True):
            if await conn.fetchval("SELECT to_regclass('cash_out_txs')") is None:
                return "no such table cash_out_txs: is this a Lamassu database?"
            if not await conn.fetchval(
                "SELECT has_table_privilege('cash_out_txs', 'SELECT')"
            ):
                return (
                    f"database user {source.db_user} may not read cash_out_txs: "
                    "grant it SELECT"
                )
            writable = await conn.fetchval(
                """SELECT bool_or(has_table_privilege(t, p))
                   FROM unnest(ARRAY['cash_out_txs', 'devices']) AS t,
                        unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p
                   WHERE to_regclass(t) IS NOT NULL"""
            )
            if writable:
                return (
                    f"not read-only: database user {source.db_user} can change "
                    "the Lamassu tables; give it SELECT only"
                )
            if await conn.fetchval("SELECT to_regclass('devices')") is not None:
                known = await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM devices WHERE device_id = $1)",
                    source.device_id,
                )
            else:
                known = False
            if not known:
                return f"device {source.device_id} is unknown to this Lamassu server"
            await read_sales(conn, source.device_id, datetime.now(timezone.utc))
    except Exception as exc:
        return describe_error(exc, source)
    finally:
        await _close(conn)
    return None


async def _close(conn: Any) -> None:
    try:
        await asyncio.wait_for(conn.close(), timeout=5)
    except Exception:
        conn.terminate()


# --- polling -------------------------------------------------------------------

_locks: dict[str, asyncio.Lock] = {}


@dataclass
class PollOutcome:
    landed: int  # sales this poll landed
    to_pay: list[str]  # the ids of those that wait to be paid
    error: str | None = None


def window_start(cursor: datetime | None) -> datetime:
    """Where a poll starts reading: a day before the newest row seen, so a
    row made earlier that became a sale since is read again."""
    if cursor is None:
        return EPOCH
    if cursor.tzinfo is None:
        cursor = cursor.replace(tzinfo=timezone.utc)
    return max(EPOCH, cursor - LOOKBACK)


async def poll(machine: Machine, source: LamassuSource) -> PollOutcome:
    """Land every new sale of the machine's Lamassu device. Never raises for
    an unreadable source: the outcome says why, the status records it, and the
    next poll reads the same window again (nothing is lost)."""
    lock = _locks.setdefault(machine.id, asyncio.Lock())
    async with lock:
        return await _poll(machine, source)


async def _poll(machine: Machine, source: LamassuSource) -> PollOutcome:
    landed = 0
    to_pay: list[str] = []
    newest: datetime | None = None
    error: str | None = None
    try:
        conn = await _connect(source)
        try:
            since, after = window_start(source.cursor_created), ZERO_UUID
            while True:
                rows = await read_sales(conn, source.device_id, since, after)
                settlements = await land_rows(machine, rows)
                landed += len(settlements)
                to_pay += [s.id for s in settlements if s.status == "pending"]
                if rows:
                    newest = max(newest or EPOCH, rows[-1]["created"])
                    await crud_sources.advance_cursor(machine.id, newest)
                if len(rows) < PAGE:
                    break
                since, after = rows[-1]["created"], rows[-1]["id"]
        finally:
            await _close(conn)
    except Exception as exc:  # an unreadable source must never stop the loop
        error = describe_error(exc, source)
    await crud_sources.record_poll(
        machine.id, error=error, landed=landed, cursor=newest
    )
    key = f"lamassu-unreadable:{machine.id}"
    if error is not None:
        logger.warning(f"satmachineadmin: Lamassu source of {machine.name}: {error}")
        await notifications.problem_started(
            machine.operator_user_id,
            key,
            f"Lamassu sales of {machine.name} cannot be read",
            error,
        )
    elif source.last_error is not None:
        await notifications.problem_cleared(
            machine.operator_user_id, key, "the Lamassu database reads again"
        )
    return PollOutcome(landed=landed, to_pay=to_pay, error=error)


async def land_rows(
    machine: Machine, rows: list[dict[str, Any]]
) -> list[DcaSettlement]:
    """Land the rows that are sales and not yet landed; the newly landed."""
    sales = [parse_row(row, machine.currency) for row in rows if is_sale_row(row)]
    return await landing.land_sales(
        [
            (sale, str(row["id"]), row["created"])
            for sale, row in zip(
                sales, (r for r in rows if is_sale_row(r)), strict=True
            )
        ],
        machine,
        source=SOURCE,
    )
