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
  Never before the source's ``start_at`` (a machine's past lands only through
  ``import_period``, which the operator confirms after a preview), never an
  ignored cash-out.
- ``cash_outs``: every cash-out (and cash-in) the server holds for the
  device in a period, with what became of it (``outcome``).

The server is reached directly or through an SSH tunnel (``ssh_tunnel``).
The password and the SSH private key are stored sealed (``secret_box``), kept
server-side and never logged: errors are described in words by
``describe_error``, which also blanks the password out of any text a driver
hands back.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

from loguru import logger

from . import crud_sources, landing, notifications, ssh_tunnel
from .bitspire import Sale
from .models import DcaSettlement, LamassuSource, Machine, SaleSource
from .secret_box import SecretUnreadableError, open_secret

SOURCE: SaleSource = "lamassu"
SATS_PER_BTC = 100_000_000
SALE_COINS = ("BTC", "LN")
SALE_STATUSES = ("confirmed", "authorized", "instant")
LOOKBACK = timedelta(hours=24)  # rows made this long before the newest seen
PAGE = 5000
CONNECT_TIMEOUT_S = 10
QUERY_TIMEOUT_S = 60
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
END_OF_TIME = datetime(9999, 1, 1, tzinfo=timezone.utc)
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
    holds no secret. ``step`` names what failed (see ``TestOutcome``)."""

    def __init__(self, message: str, step: str = "database"):
        super().__init__(message)
        self.step = step


def password_of(source: LamassuSource) -> str:
    try:
        return open_secret(source.password) or ""
    except SecretUnreadableError:
        raise SourceUnreadableError(
            "the stored password cannot be opened with this LNbits' secret key: "
            "enter it again",
            step="secret",
        ) from None


def ssh_target(source: LamassuSource) -> ssh_tunnel.SshTarget:
    """What the source's tunnel needs; SshError when it cannot be opened."""
    if not (source.ssh_host and source.ssh_user and source.ssh_private_key):
        raise ssh_tunnel.SshError("tunnel", "the SSH settings are incomplete")
    if not source.ssh_host_key:
        raise ssh_tunnel.SshError(
            "host_key_unknown",
            f"the host key of {source.ssh_host} is not pinned yet: test the "
            "connection and pin the fingerprint it shows",
        )
    try:
        private_key = open_secret(source.ssh_private_key) or ""
    except SecretUnreadableError:
        raise ssh_tunnel.SshError(
            "key_refused",
            "the stored SSH key cannot be opened with this LNbits' secret key: "
            "make a new one",
        ) from None
    return ssh_tunnel.SshTarget(
        host=source.ssh_host,
        port=source.ssh_port or 22,
        user=source.ssh_user,
        private_key=private_key,
        host_key=source.ssh_host_key,
        db_host=source.host,
        db_port=source.port,
    )


async def _endpoint(source: LamassuSource) -> tuple[str, int]:
    """Where asyncpg connects: the database, or the local end of the tunnel."""
    if not source.ssh_host:
        return source.host, source.port
    try:
        port = await ssh_tunnel.local_port(source.machine_id, ssh_target(source))
    except ssh_tunnel.SshError as exc:
        raise SourceUnreadableError(str(exc), step=exc.step) from None
    return "127.0.0.1", port


# FIXED_FEE is `fixed_fee` (Lamassu 10.2+) or `0::numeric` (older servers).
SALES_SQL = """SELECT id::text AS id, device_id, crypto_atoms, crypto_code,
      fiat, fiat_code, status::text AS status, dispense, dispense_confirmed,
      error, created, commission_percentage, discount, raw_ticker_price,
      FIXED_FEE AS fixed_fee
    FROM cash_out_txs
    WHERE device_id = $1 AND (created, id) > ($2::timestamptz, $3::uuid)
      AND created < $5::timestamptz
      AND crypto_code IN ('BTC', 'LN') AND dispense
      AND dispense_confirmed IS TRUE AND error IS NULL
      AND status::text IN ('confirmed', 'authorized', 'instant')
    ORDER BY created, id LIMIT $4"""


async def _connect(source: LamassuSource) -> Any:
    import asyncpg  # shipped with LNbits

    password = password_of(source)
    host, port = await _endpoint(source)
    try:
        return await asyncpg.connect(
            host=host,
            port=port,
            user=source.db_user,
            password=password or None,
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


def _tunnel_words(exc: BaseException, source: LamassuSource) -> str | None:
    """Through a tunnel, a broken or refused connection is the database's
    end: the SSH server could not forward to it."""
    import asyncpg

    if isinstance(exc, (ConnectionError, asyncpg.InterfaceError, OSError)) and not (
        isinstance(exc, (asyncio.TimeoutError, TimeoutError))
    ):
        if not ssh_tunnel.alive(source.machine_id):
            return (
                f"the SSH connection to {source.ssh_host}:{source.ssh_port or 22} "
                "was lost"
            )
        return (
            f"the SSH tunnel is up but the database at {source.host}:{source.port} "
            "refused the connection (is PostgreSQL listening there, and does the "
            "authorized_keys line permit that port?)"
        )
    return None


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
        words = _tunnel_words(exc, source) if source.ssh_host else None
        text = (
            words
            or _error_words(exc, source)
            or (f"could not read the Lamassu database ({exc.__class__.__name__})")
        )
    return scrub(text, source)


def scrub(text: str, source: LamassuSource) -> str:
    secrets = [source.password]
    with contextlib.suppress(SecretUnreadableError):
        secrets.append(open_secret(source.password) or "")
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
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
    conn: Any,
    device_id: str,
    since: datetime,
    after_id: str = ZERO_UUID,
    until: datetime = END_OF_TIME,
) -> list[dict[str, Any]]:
    """One page of a device's successful cash-outs made after (since, id)
    and before ``until``, oldest first, read in a READ ONLY transaction."""
    async with conn.transaction(readonly=True):
        fixed = "fixed_fee" if await _has_fixed_fee(conn) else "0::numeric"
        rows = await conn.fetch(
            SALES_SQL.replace("FIXED_FEE", fixed),
            device_id,
            since,
            after_id,
            PAGE,
            until,
        )
    return [dict(row) for row in rows]


@dataclass
class TestOutcome:
    """What ``test_connection`` found: ``step`` names the step that failed
    (``ssh_missing``, ``connect``, ``host_key_unknown``, ``host_key_changed``,
    ``key_refused``, ``tunnel``, ``secret``, ``database``, ``not_read_only``,
    ``no_table``, ``device_unknown``); None when all passed."""

    error: str | None = None
    step: str | None = None
    host_key: str | None = None  # what the SSH server showed ("type base64")
    host_key_fingerprint: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


async def test_connection(source: LamassuSource) -> TestOutcome:
    """Every step of reaching the source, in order, in words. Over SSH, the
    server's host key is read first: not pinned yet, or not the pinned one,
    and the test is not ok (the tunnel is never opened to an unknown key)."""
    outcome = TestOutcome()
    if source.ssh_host:
        port = source.ssh_port or 22
        try:
            key, print_ = await ssh_tunnel.scan_host_key(source.ssh_host, port)
        except ssh_tunnel.SshError as exc:
            return TestOutcome(error=str(exc), step=exc.step)
        outcome.host_key, outcome.host_key_fingerprint = key, print_
        if not source.ssh_host_key:
            outcome.error = (
                f"the SSH server {source.ssh_host}:{port} shows the host key "
                f"{print_}: check it on the server (ssh-keygen -lf "
                "/etc/ssh/ssh_host_ed25519_key.pub) and pin it"
            )
            outcome.step = "host_key_unknown"
            return outcome
        if not ssh_tunnel.same_key(key, source.ssh_host_key):
            outcome.error = (
                f"the host key of {source.ssh_host}:{port} changed: the server now "
                f"shows {print_}, the pinned key is "
                f"{source.ssh_host_key_fingerprint}. Connections are refused until "
                "you pin the new key (only if you know why it changed)"
            )
            outcome.step = "host_key_changed"
            return outcome
    step, error = await check_database(source)
    outcome.step, outcome.error = step, error
    if error is not None and source.ssh_host:
        await ssh_tunnel.close(source.machine_id)  # opened again next time
    return outcome


async def check_connection(source: LamassuSource) -> str | None:
    """None when the source can be read as it must be, else why not."""
    return (await check_database(source))[1]


async def check_database(source: LamassuSource) -> tuple[str | None, str | None]:
    """(step, error) of reading the source as the poller does; (None, None)
    when it can be read."""
    try:
        conn = await _connect(source)
    except SourceUnreadableError as exc:
        return exc.step, str(exc)
    try:
        async with conn.transaction(readonly=True):
            if await conn.fetchval("SELECT to_regclass('cash_out_txs')") is None:
                return (
                    "no_table",
                    "no such table cash_out_txs: is this a Lamassu database?",
                )
            if not await conn.fetchval(
                "SELECT has_table_privilege('cash_out_txs', 'SELECT')"
            ):
                return "database", (
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
                return "not_read_only", (
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
                return "device_unknown", (
                    f"device {source.device_id} is unknown to this Lamassu server"
                )
            await read_sales(conn, source.device_id, datetime.now(timezone.utc))
    except Exception as exc:
        return "database", describe_error(exc, source)
    finally:
        await _close(conn)
    return None, None


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
    start = start_of(source)
    try:
        conn = await _connect(source)
        try:
            since = max(window_start(source.cursor_created), start)
            after = ZERO_UUID
            while True:
                rows = await read_sales(conn, source.device_id, since, after)
                settlements = await land_rows(machine, rows, start=start)
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
        if source.ssh_host:  # a broken tunnel is opened again next time
            await ssh_tunnel.close(machine.id)
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


def start_of(source: LamassuSource) -> datetime:
    """Cash-outs created before it never land by themselves."""
    start = source.start_at or source.created_at
    return start if start.tzinfo else start.replace(tzinfo=timezone.utc)


async def land_rows(
    machine: Machine, rows: list[dict[str, Any]], *, start: datetime | None
) -> list[DcaSettlement]:
    """Land the rows that are sales, not ignored and not yet landed; the newly
    landed. ``start``: rows made before it are left (None: an import the
    operator confirmed)."""
    ignored = await crud_sources.ignored_txids(machine.id) if rows else set()
    chosen = [
        row
        for row in rows
        if is_sale_row(row)
        and str(row["id"]) not in ignored
        and (start is None or aware(row["created"]) >= start)
    ]
    return await landing.land_sales(
        [
            (parse_row(row, machine.currency), str(row["id"]), row["created"])
            for row in chosen
        ],
        machine,
        source=SOURCE,
    )


def aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def lock_of(machine_id: str) -> asyncio.Lock:
    """Held while a machine's cash-outs land or are ignored."""
    return _locks.setdefault(machine_id, asyncio.Lock())


# --- a machine's past: import a period on purpose ------------------------------


@dataclass
class DayTotal:
    day: str  # YYYY-MM-DD (UTC)
    count: int = 0
    gross_sats: int = 0
    fiat: Decimal = Decimal(0)


@dataclass
class ImportPreview:
    count: int
    gross_sats: int
    fiat: Decimal
    days: list[DayTotal]
    already_landed: int
    ignored: int


async def _period_sales(
    source: LamassuSource, since: datetime, until: datetime
) -> list[dict[str, Any]]:
    conn = await _connect(source)
    try:
        rows: list[dict[str, Any]] = []
        cursor, after = since - timedelta(microseconds=1), ZERO_UUID
        while True:
            page = await read_sales(conn, source.device_id, cursor, after, until)
            rows += [r for r in page if aware(r["created"]) >= since]
            if len(page) < PAGE:
                return rows
            cursor, after = page[-1]["created"], page[-1]["id"]
    finally:
        await _close(conn)


async def import_period(
    machine: Machine,
    source: LamassuSource,
    *,
    since: datetime,
    until: datetime,
    confirm: bool,
) -> ImportPreview | PollOutcome:
    """The successful cash-outs of [since, until) not landed nor ignored:
    without ``confirm`` what they are (nothing lands), with it land them,
    once (landing is keyed on the Lamassu id). Raises SourceUnreadableError."""
    async with lock_of(machine.id):
        rows = [r for r in await _period_sales(source, since, until) if is_sale_row(r)]
        ignored = await crud_sources.ignored_txids(machine.id)
        landed = await crud_sources.landed_txids(
            machine.id, [str(r["id"]) for r in rows]
        )
        todo = [
            r
            for r in rows
            if str(r["id"]) not in ignored and str(r["id"]) not in landed
        ]
        if confirm:
            settlements = await land_rows(machine, todo, start=None)
            if settlements:
                logger.info(
                    f"satmachineadmin: imported {len(settlements)} Lamassu sale(s) "
                    f"of {machine.name} from {since.isoformat()} to {until.isoformat()}"
                )
            return PollOutcome(
                landed=len(settlements),
                to_pay=[s.id for s in settlements if s.status == "pending"],
            )
    days: dict[str, DayTotal] = {}
    for row in todo:
        day = aware(row["created"]).date().isoformat()
        total = days.setdefault(day, DayTotal(day=day))
        total.count += 1
        total.gross_sats += _atoms(row)
        total.fiat += _decimal(row.get("fiat")) or Decimal(0)
    return ImportPreview(
        count=len(todo),
        gross_sats=sum(_atoms(r) for r in todo),
        fiat=sum((_decimal(r.get("fiat")) or Decimal(0) for r in todo), Decimal(0)),
        days=sorted(days.values(), key=lambda d: d.day),
        already_landed=sum(1 for r in rows if str(r["id"]) in landed),
        ignored=sum(
            1 for r in rows if str(r["id"]) in ignored and str(r["id"]) not in landed
        ),
    )


def _atoms(row: Mapping[str, Any]) -> int:
    atoms = _decimal(row.get("crypto_atoms"))
    return int(atoms) if atoms is not None and atoms > 0 else 0


# --- what the poller saw --------------------------------------------------------

CASH_OUTS_SQL = """SELECT id::text AS id, crypto_atoms, crypto_code, fiat,
      fiat_code, status::text AS status, dispense, dispense_confirmed, error,
      created
    FROM cash_out_txs WHERE device_id = $1 AND created >= $2 AND created < $3
    ORDER BY created DESC, id DESC LIMIT $4"""
CASH_INS_SQL = """SELECT id::text AS id, crypto_atoms, crypto_code, fiat,
      fiat_code, created
    FROM cash_in_txs WHERE device_id = $1 AND created >= $2 AND created < $3
    ORDER BY created DESC, id DESC LIMIT $4"""


def not_a_sale_reason(row: Mapping[str, Any]) -> str | None:
    """Why a cash-out is not a sale, in words (None: it is one)."""
    if row.get("kind") == "cash_in":
        return "cash-in: the customer bought bitcoin with cash"
    if row.get("crypto_code") not in SALE_COINS:
        return f"another coin ({row.get('crypto_code')})"
    if row.get("error") is not None:
        return f"errored: {str(row.get('error'))[:200]}"
    if str(row.get("status")) not in SALE_STATUSES:
        return f"not paid (status {row.get('status')})"
    if row.get("dispense") is not True or row.get("dispense_confirmed") is not True:
        return "not dispensed (the notes were never confirmed counted out)"
    return None


async def read_cash_outs(
    source: LamassuSource, since: datetime, until: datetime, limit: int
) -> list[dict[str, Any]]:
    """The device's cash-outs and cash-ins of [since, until), newest first."""
    conn = await _connect(source)
    try:
        async with conn.transaction(readonly=True):
            outs = await conn.fetch(
                CASH_OUTS_SQL, source.device_id, since, until, limit
            )
            ins = []
            if await conn.fetchval("SELECT to_regclass('cash_in_txs')") is not None:
                ins = await conn.fetch(
                    CASH_INS_SQL, source.device_id, since, until, limit
                )
    finally:
        await _close(conn)
    rows = [dict(r) for r in outs] + [{**dict(r), "kind": "cash_in"} for r in ins]
    rows.sort(key=lambda r: (r["created"], r["id"]), reverse=True)
    return rows[:limit]


async def cash_out_created(source: LamassuSource, txid: str) -> datetime | None:
    """When the device's cash-out ``txid`` was made; None: the source has no
    such cash-out of the device."""
    conn = await _connect(source)
    try:
        async with conn.transaction(readonly=True):
            created = await conn.fetchval(
                """SELECT created FROM cash_out_txs
                   WHERE id = $1::uuid AND device_id = $2""",
                txid,
                source.device_id,
            )
            return None if created is None else aware(created)
    finally:
        await _close(conn)


def cursor_for_unignored(
    source: LamassuSource, created: datetime | None
) -> tuple[bool, datetime | None]:
    """(rewind, cursor): a poll reads back LOOKBACK before its cursor, so an
    un-ignored sale made since the start but before that window is read again
    only if the cursor goes back to it (``created`` None: not known, read
    again from the start). Landing is idempotent: rows read twice land once."""
    if source.cursor_created is None:
        return False, None  # the next poll reads from the start anyway
    if created is None:
        return True, None
    if created < start_of(source) or created >= window_start(source.cursor_created):
        return False, None
    return True, created


@dataclass
class CashOutSeen:
    id: str
    kind: str  # cash_out, cash_in
    created: datetime
    fiat: Decimal | None
    fiat_code: str | None
    crypto_atoms: int
    crypto_code: str | None
    outcome: str  # landed, not_a_sale, before_start, ignored, to_land
    reason: str | None = None
    settlement_id: str | None = None
    ignored_by: str | None = None
    ignored_at: datetime | None = None


async def cash_outs(
    machine: Machine,
    source: LamassuSource,
    *,
    since: datetime,
    until: datetime,
    limit: int,
) -> list[CashOutSeen]:
    """Every cash-out the source holds for the device in the period, with
    its outcome. Raises SourceUnreadableError."""
    rows = await read_cash_outs(source, since, until, limit)
    ids = [str(r["id"]) for r in rows if r.get("kind") != "cash_in"]
    landed = await crud_sources.landed_txids(machine.id, ids)
    ignored = {i.txid: i for i in await crud_sources.list_ignored(machine.id, ids)}
    start = start_of(source)
    seen = []
    for row in rows:
        txid = str(row["id"])
        item = CashOutSeen(
            id=txid,
            kind=row.get("kind", "cash_out"),
            created=aware(row["created"]),
            fiat=_decimal(row.get("fiat")),
            fiat_code=row.get("fiat_code"),
            crypto_atoms=_atoms(row),
            crypto_code=row.get("crypto_code"),
            outcome="to_land",
        )
        reason = not_a_sale_reason(row)
        if txid in landed and row.get("kind") != "cash_in":
            item.outcome, item.settlement_id = "landed", landed[txid]
        elif txid in ignored and row.get("kind") != "cash_in":
            mark = ignored[txid]
            item.outcome, item.reason = "ignored", mark.reason
            item.ignored_by, item.ignored_at = mark.author_user_id, mark.created_at
        elif reason is not None:
            item.outcome, item.reason = "not_a_sale", reason
        elif item.created < start:
            item.outcome = "before_start"
            item.reason = (
                "made before the source started: lands only if you import its period"
            )
        else:
            item.reason = "a sale: lands at the next poll"
        seen.append(item)
    return seen
