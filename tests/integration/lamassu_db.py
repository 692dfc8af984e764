"""A throwaway Lamassu server database on the local PostgreSQL: the tables a
sale source reads (types as LAMASSU.md says), a read-only role that has only
SELECT, a writable role (for "not read-only"), and helpers to add rows."""

from __future__ import annotations

import os
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import asyncpg

SERVER = os.environ.get("LAMASSU_TEST_PG", "postgres://postgres@127.0.0.1:5432")
HOST, PORT = "127.0.0.1", 5432

SCHEMA = """
CREATE TYPE status_stage AS ENUM ('notSeen', 'published', 'authorized',
  'instant', 'confirmed', 'rejected', 'insufficientFunds');
CREATE TABLE devices (
  device_id text PRIMARY KEY, name text,
  cassette1 int, cassette2 int, cassette3 int, cassette4 int,
  last_online timestamptz);
CREATE TABLE cash_out_txs (
  id uuid PRIMARY KEY,
  device_id text NOT NULL REFERENCES devices (device_id),
  to_address text,
  crypto_atoms numeric(30) NOT NULL,
  crypto_code text NOT NULL,
  fiat numeric(14,5) NOT NULL,
  fiat_code text NOT NULL,
  status status_stage NOT NULL DEFAULT 'notSeen',
  dispense boolean NOT NULL DEFAULT false,
  dispense_confirmed boolean DEFAULT false,
  error text, error_code text,
  created timestamptz NOT NULL DEFAULT now(),
  confirmed_at timestamptz,
  commission_percentage numeric(14,5),
  discount smallint,
  raw_ticker_price numeric(14,5),
  fixed_fee numeric(14,5) NOT NULL DEFAULT 0,
  tx_version int NOT NULL DEFAULT 1,
  provisioned_1 int, provisioned_2 int, provisioned_3 int, provisioned_4 int,
  denomination_1 int, denomination_2 int, denomination_3 int, denomination_4 int);
CREATE TABLE cash_out_actions (
  id serial PRIMARY KEY, tx_id uuid NOT NULL, action text NOT NULL,
  dispensed_1 int, dispensed_2 int, dispensed_3 int, dispensed_4 int,
  rejected_1 int, rejected_2 int, rejected_3 int, rejected_4 int,
  created timestamptz NOT NULL DEFAULT now());
CREATE TABLE cash_in_txs (
  id uuid PRIMARY KEY, device_id text NOT NULL, to_address text,
  crypto_atoms numeric(30) NOT NULL, crypto_code text NOT NULL,
  fiat numeric(14,5) NOT NULL, fiat_code text NOT NULL,
  created timestamptz NOT NULL DEFAULT now(), send boolean, error text);
"""


@dataclass
class LamassuDb:
    name: str
    reader: str  # role with SELECT only
    reader_password: str
    writer: str  # role that may write: "not read-only"
    ids: dict[str, str] = field(default_factory=dict)

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(f"{SERVER}/{self.name}")

    async def execute(self, sql: str, *args) -> str:
        conn = await self.connect()
        try:
            return await conn.execute(sql, *args)
        finally:
            await conn.close()

    async def add_cash_out(
        self,
        *,
        device_id: str = "dev-a",
        crypto_atoms: int,
        fiat: Decimal | str,
        crypto_code: str = "LN",
        fiat_code: str = "GTQ",
        status: str = "confirmed",
        dispense: bool = True,
        dispense_confirmed: bool | None = True,
        error: str | None = None,
        commission: str | None = "0.03",
        discount: int | None = None,
        price: str | None = "772800",
        fixed_fee: str = "0",
        created: datetime | None = None,
        confirmed_at: datetime | None = None,
    ) -> str:
        tx_id = str(uuid.uuid4())
        await self.execute(
            """INSERT INTO cash_out_txs (id, device_id, crypto_atoms, crypto_code,
               fiat, fiat_code, status, dispense, dispense_confirmed, error,
               created, confirmed_at, commission_percentage, discount,
               raw_ticker_price, fixed_fee)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                       COALESCE($11, now()), $12, $13, $14, $15, $16)""",
            uuid.UUID(tx_id),
            device_id,
            Decimal(crypto_atoms),
            crypto_code,
            Decimal(fiat),
            fiat_code,
            status,
            dispense,
            dispense_confirmed,
            error,
            created,
            confirmed_at,
            None if commission is None else Decimal(commission),
            discount,
            None if price is None else Decimal(price),
            Decimal(fixed_fee),
        )
        return tx_id

    async def confirm_dispense(self, tx_id: str) -> None:
        """The machine counted the notes out: the row becomes a sale."""
        await self.execute(
            """UPDATE cash_out_txs SET dispense_confirmed = true,
               tx_version = tx_version + 1 WHERE id = $1""",
            uuid.UUID(tx_id),
        )


async def create_lamassu_db(with_tables: bool = True) -> LamassuDb:
    tag = uuid.uuid4().hex[:10]
    db = LamassuDb(
        name=f"lamassu_test_{tag}",
        reader=f"lamassu_ro_{tag}",
        reader_password="pw-" + secrets.token_hex(12),
        writer=f"lamassu_rw_{tag}",
    )
    admin = await asyncpg.connect(f"{SERVER}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{db.name}"')
        await admin.execute(
            f"CREATE ROLE {db.reader} LOGIN PASSWORD '{db.reader_password}'"
        )
        await admin.execute(f"CREATE ROLE {db.writer} LOGIN")
    finally:
        await admin.close()
    conn = await db.connect()
    try:
        if with_tables:
            await conn.execute(SCHEMA)
        await conn.execute(f"REVOKE ALL ON DATABASE {db.name} FROM PUBLIC")
        await conn.execute(f"GRANT CONNECT ON DATABASE {db.name} TO {db.reader}")
        await conn.execute(f"GRANT CONNECT ON DATABASE {db.name} TO {db.writer}")
        await conn.execute(f"GRANT USAGE ON SCHEMA public TO {db.reader}, {db.writer}")
        await conn.execute(
            f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {db.reader}"
        )
        await conn.execute(
            f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public "
            f"TO {db.writer}"
        )
        if with_tables:
            await conn.execute(
                """INSERT INTO devices (device_id, name) VALUES
                   ('dev-a', 'Antigua'), ('dev-b', 'Xela')"""
            )
    finally:
        await conn.close()
    return db


async def drop_lamassu_db(db: LamassuDb) -> None:
    admin = await asyncpg.connect(f"{SERVER}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')
        await admin.execute(f"DROP ROLE IF EXISTS {db.reader}")
        await admin.execute(f"DROP ROLE IF EXISTS {db.writer}")
    finally:
        await admin.close()


def ago(**kwargs) -> datetime:
    return datetime.now(timezone.utc) - timedelta(**kwargs)


async def load_rows(db: LamassuDb) -> dict[str, str]:
    """The rows LAMASSU.md lists. Returns name -> id; ``db.ids`` too.
    Sales of dev-a (GTQ): ln (the worked example), btc_zero_conf (discount,
    confirmed_at NULL), fixed_fee, no_price; ``late`` becomes one later."""
    add = db.add_cash_out
    ids = {
        # fiat 2 000 at bid 772 800, 3 %: 266 800 sats; net 258 799.
        "ln": await add(crypto_atoms=266_800, fiat="2000", created=ago(minutes=50)),
        # on-chain zero-conf, dispensed, confirmed_at never set; 5 % - 20 %.
        "btc_zero_conf": await add(
            crypto_atoms=67_300,
            fiat="500",
            crypto_code="BTC",
            status="instant",
            commission="0.05",
            discount=20,
            created=ago(minutes=40),
        ),
        # fixed fee 10 GTQ: (1 000 + 10) / 749 616 -> 134 700 sats.
        "fixed_fee": await add(
            crypto_atoms=134_700, fiat="1000", fixed_fee="10", created=ago(minutes=30)
        ),
        # no raw_ticker_price on an old row: net = floor(40 000 * 0.97).
        "no_price": await add(
            crypto_atoms=40_000,
            fiat="300",
            price=None,
            status="authorized",
            created=ago(minutes=25),
        ),
        # paid, dispensing: not confirmed yet (becomes a sale later).
        "late": await add(
            crypto_atoms=133_400,
            fiat="1000",
            status="authorized",
            dispense_confirmed=False,
            created=ago(minutes=20),
        ),
        # dispense started, never confirmed (NULL).
        "unconfirmed_null": await add(
            crypto_atoms=133_400, fiat="1000", dispense_confirmed=None
        ),
        "errored": await add(
            crypto_atoms=133_400,
            fiat="1000",
            error="Operator cancel",
            dispense=False,
            dispense_confirmed=False,
        ),
        "errored_dispensed": await add(
            crypto_atoms=133_400, fiat="1000", error="dispenseError"
        ),
        "rejected": await add(
            crypto_atoms=133_400, fiat="1000", status="rejected", dispense=False
        ),
        "insufficient": await add(
            crypto_atoms=133_400,
            fiat="1000",
            status="insufficientFunds",
            dispense=False,
            dispense_confirmed=False,
        ),
        "not_seen": await add(
            crypto_atoms=133_400, fiat="1000", status="notSeen", dispense=False
        ),
        "eth": await add(crypto_atoms=10**18, fiat="1000", crypto_code="ETH"),
        # the same server's second device
        "dev_b": await add(device_id="dev-b", crypto_atoms=266_800, fiat="2000"),
    }
    await db.execute(
        """INSERT INTO cash_in_txs (id, device_id, crypto_atoms, crypto_code, fiat,
           fiat_code, send) VALUES ($1, 'dev-a', 133400, 'BTC', 1000, 'GTQ', true)""",
        uuid.uuid4(),
    )
    db.ids.update(ids)
    return ids


SALES_OF_DEV_A = ("ln", "btc_zero_conf", "fixed_fee", "no_price")
