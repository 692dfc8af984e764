"""TEST FIXTURE: the database state satmachineadmin v1 leaves behind.

satmachineadmin v1 (Atitlanio/satmachineadmin, last commit af7a40d) cannot be
fetched in CI and its code is not ours to commit, so this script reproduces
what it writes, through LNbits' own ``Database`` exactly as v1 did:

- its migrations m001 and m002, the DDL copied verbatim from v1's
  ``migrations.py`` (schema ``satoshimachine``, or ``satmachineadmin`` as
  before v1's commit fdc2a17; ``--version 1`` runs m001 only, as an install
  of v1's first two days);
- rows with the statements of v1's ``crud.py`` (``create_lamassu_config``,
  ``update_poll_start_time``/``update_poll_success_time``, ``create_deposit``,
  ``update_deposit_status``, ``create_lamassu_transaction``,
  ``create_dca_payment``, ``update_dca_payment_status``,
  ``update_lamassu_transaction_distribution_stats``) and of satmachineclient's
  ``register_dca_client`` (v1's clients are written by its client extension),
  with the same parameters (``urlsafe_short_hash`` ids, ``datetime.now()``);
- LNbits' own records of an installed v1: ``dbversions.satmachineadmin`` and
  the ``installed_extensions`` row.

On SQLite the statements run through ``Connection.execute`` as v1's did. On
PostgreSQL LNbits 1.6.2 turns a datetime parameter into a float, which a
TIMESTAMP column refuses (v1's routes that write times fail there; UPGRADE.md),
so the rows a real v1-on-PostgreSQL database holds were written by an older
LNbits that passed datetimes as they are: this fixture does the same there.

Run by the tests in a subprocess with the LNbits environment of the instance
(``LNBITS_DATA_FOLDER`` / ``LNBITS_DATABASE_URL``) while LNbits is stopped:

    python v1_fixture.py SPEC.json   ->  prints {"clients": [...], ...}
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime, timezone
from typing import Any


def v1_m001(schema: str) -> list[str]:
    """v1's m001_initial_dca_schema, verbatim but for the schema name."""
    return [
        f"""
        CREATE TABLE {schema}.dca_clients (
            id TEXT PRIMARY KEY NOT NULL,
            user_id TEXT NOT NULL,
            wallet_id TEXT NOT NULL,
            username TEXT,
            dca_mode TEXT NOT NULL DEFAULT 'flow',
            fixed_mode_daily_limit INTEGER,
            status TEXT NOT NULL DEFAULT 'active',
            created_at TIMESTAMP NOT NULL DEFAULT {{now}},
            updated_at TIMESTAMP NOT NULL DEFAULT {{now}}
        );
        """,
        f"""
        CREATE TABLE {schema}.dca_deposits (
            id TEXT PRIMARY KEY NOT NULL,
            client_id TEXT NOT NULL,
            amount INTEGER NOT NULL,
            currency TEXT NOT NULL DEFAULT 'GTQ',
            status TEXT NOT NULL DEFAULT 'pending',
            notes TEXT,
            created_at TIMESTAMP NOT NULL DEFAULT {{now}},
            confirmed_at TIMESTAMP
        );
        """,
        f"""
        CREATE TABLE {schema}.dca_payments (
            id TEXT PRIMARY KEY NOT NULL,
            client_id TEXT NOT NULL,
            amount_sats INTEGER NOT NULL,
            amount_fiat INTEGER NOT NULL,
            exchange_rate REAL NOT NULL,
            transaction_type TEXT NOT NULL,
            lamassu_transaction_id TEXT,
            payment_hash TEXT,
            status TEXT NOT NULL DEFAULT 'pending',
            created_at TIMESTAMP NOT NULL DEFAULT {{now}}
        );
        """,
        f"""
        CREATE TABLE {schema}.lamassu_config (
            id TEXT PRIMARY KEY NOT NULL,
            host TEXT NOT NULL,
            port INTEGER NOT NULL DEFAULT 5432,
            database_name TEXT NOT NULL,
            username TEXT NOT NULL,
            password TEXT NOT NULL,
            source_wallet_id TEXT,
            commission_wallet_id TEXT,
            is_active BOOLEAN NOT NULL DEFAULT true,
            test_connection_last TIMESTAMP,
            test_connection_success BOOLEAN,
            last_poll_time TIMESTAMP,
            last_successful_poll TIMESTAMP,
            use_ssh_tunnel BOOLEAN NOT NULL DEFAULT false,
            ssh_host TEXT,
            ssh_port INTEGER NOT NULL DEFAULT 22,
            ssh_username TEXT,
            ssh_password TEXT,
            ssh_private_key TEXT,
            created_at TIMESTAMP NOT NULL DEFAULT {{now}},
            updated_at TIMESTAMP NOT NULL DEFAULT {{now}}
        );
        """,
        f"""
        CREATE TABLE {schema}.lamassu_transactions (
            id TEXT PRIMARY KEY NOT NULL,
            lamassu_transaction_id TEXT NOT NULL UNIQUE,
            fiat_amount INTEGER NOT NULL,
            crypto_amount INTEGER NOT NULL,
            commission_percentage REAL NOT NULL,
            discount REAL NOT NULL DEFAULT 0.0,
            effective_commission REAL NOT NULL,
            commission_amount_sats INTEGER NOT NULL,
            base_amount_sats INTEGER NOT NULL,
            exchange_rate REAL NOT NULL,
            crypto_code TEXT NOT NULL DEFAULT 'BTC',
            fiat_code TEXT NOT NULL DEFAULT 'GTQ',
            device_id TEXT,
            transaction_time TIMESTAMP NOT NULL,
            processed_at TIMESTAMP NOT NULL DEFAULT {{now}},
            clients_count INTEGER NOT NULL DEFAULT 0,
            distributions_total_sats INTEGER NOT NULL DEFAULT 0
        );
        """,
    ]


def v1_m002(schema: str) -> str:
    """v1's m002_add_transaction_time_to_dca_payments."""
    return f"""
        ALTER TABLE {schema}.dca_payments 
        ADD COLUMN transaction_time TIMESTAMP
        """  # noqa: W291 - v1's text


def when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


async def main(spec: dict[str, Any]) -> dict[str, Any]:  # noqa: C901
    from lnbits.core.crud import create_installed_extension, update_migration_version
    from lnbits.core.models.extensions import InstallableExtension
    from lnbits.db import SQLITE, Database
    from lnbits.helpers import urlsafe_short_hash
    from sqlalchemy.sql import text

    schema = spec["schema"]
    version = int(spec.get("version", 2))
    db = Database(f"ext_{schema}")
    out: dict[str, Any] = {"clients": [], "deposits": [], "payments": []}

    async with db.connect() as conn:

        async def run(sql: str, values: dict[str, Any] | None = None) -> None:
            sql = sql.replace("satoshimachine.", f"{schema}.")
            if conn.type == SQLITE or not values:
                await conn.execute(sql, values)  # v1: db.execute(sql, values)
            else:  # an older LNbits on PostgreSQL: datetimes as they are
                params = {
                    k: (v.astimezone(timezone.utc).replace(tzinfo=None))
                    if isinstance(v, datetime) and v.tzinfo
                    else v
                    for k, v in values.items()
                }
                await conn.conn.execute(text(sql), params)
                await conn.conn.commit()

        # v1's migrations, as LNbits ran them.
        for ddl in v1_m001(schema):
            await conn.execute(ddl.replace("{now}", db.timestamp_now))
        if version >= 2:
            await conn.execute(v1_m002(schema))

        # The config route (create_lamassu_config).
        c = spec["config"]
        config_id = urlsafe_short_hash()
        await run(
            "UPDATE satoshimachine.lamassu_config SET is_active = false, "
            "updated_at = :updated_at",
            {"updated_at": datetime.now()},
        )
        await run(
            """
        INSERT INTO satoshimachine.lamassu_config 
        (id, host, port, database_name, username, password, source_wallet_id, commission_wallet_id, is_active, created_at, updated_at,
         use_ssh_tunnel, ssh_host, ssh_port, ssh_username, ssh_password, ssh_private_key)
        VALUES (:id, :host, :port, :database_name, :username, :password, :source_wallet_id, :commission_wallet_id, :is_active, :created_at, :updated_at,
                :use_ssh_tunnel, :ssh_host, :ssh_port, :ssh_username, :ssh_password, :ssh_private_key)
        """,  # noqa: E501, W291
            {
                "id": config_id,
                "host": c["host"],
                "port": c["port"],
                "database_name": c["database_name"],
                "username": c["username"],
                "password": c["password"],
                "source_wallet_id": c["source_wallet_id"],
                "commission_wallet_id": c.get("commission_wallet_id"),
                "is_active": True,
                "created_at": datetime.now(),
                "updated_at": datetime.now(),
                "use_ssh_tunnel": bool(c.get("ssh_host")),
                "ssh_host": c.get("ssh_host"),
                "ssh_port": c.get("ssh_port", 22),
                "ssh_username": c.get("ssh_username"),
                "ssh_password": c.get("ssh_password"),
                "ssh_private_key": c.get("ssh_private_key"),
            },
        )
        out["config"] = config_id

        # satmachineclient's register_dca_client.
        for client in spec["clients"]:
            client_id = urlsafe_short_hash()
            await run(
                """
            INSERT INTO satoshimachine.dca_clients 
            (id, user_id, wallet_id, username, dca_mode, fixed_mode_daily_limit, status, created_at, updated_at)
            VALUES (:id, :user_id, :wallet_id, :username, :dca_mode, :fixed_mode_daily_limit, :status, :created_at, :updated_at)
            """,  # noqa: E501, W291
                {
                    "id": client_id,
                    "user_id": client["user_id"],
                    "wallet_id": client["wallet_id"],
                    "username": client.get("username"),
                    "dca_mode": client.get("dca_mode", "flow"),
                    "fixed_mode_daily_limit": client.get("fixed_mode_daily_limit"),
                    "status": "active",
                    "created_at": datetime.now(),
                    "updated_at": datetime.now(),
                },
            )
            out["clients"].append(client_id)

        # create_deposit, then update_deposit_status for the confirmed ones.
        for d in spec["deposits"]:
            deposit_id = urlsafe_short_hash()
            await run(
                """
        INSERT INTO satoshimachine.dca_deposits 
        (id, client_id, amount, currency, status, notes, created_at)
        VALUES (:id, :client_id, :amount, :currency, :status, :notes, :created_at)
        """,  # noqa: W291
                {
                    "id": deposit_id,
                    "client_id": out["clients"][d["client"]],
                    "amount": d["amount"],
                    "currency": d.get("currency", "GTQ"),
                    "status": "pending",
                    "notes": d.get("notes"),
                    "created_at": datetime.now(),
                },
            )
            if d.get("confirmed"):
                await run(
                    "UPDATE satoshimachine.dca_deposits SET status = :status, "
                    "confirmed_at = :confirmed_at WHERE id = :id",
                    {
                        "status": "confirmed",
                        "confirmed_at": datetime.now(),
                        "id": deposit_id,
                    },
                )
            out["deposits"].append(deposit_id)

        # The manual poll: for each cash-out it processed, v1 stored the
        # transaction, then a pending payment per client, then its status.
        await run(
            "UPDATE satoshimachine.lamassu_config SET last_poll_time = :poll_time, "
            "updated_at = :updated_at WHERE id = :id",
            {
                "id": config_id,
                "poll_time": datetime.now(timezone.utc),
                "updated_at": datetime.now(timezone.utc),
            },
        )
        for tx in spec["cash_outs"]:
            time = when(tx["transaction_time"])
            stored = urlsafe_short_hash()
            if tx.get("stored", True):
                await run(
                    """
        INSERT INTO satoshimachine.lamassu_transactions 
        (id, lamassu_transaction_id, fiat_amount, crypto_amount, commission_percentage, 
         discount, effective_commission, commission_amount_sats, base_amount_sats, 
         exchange_rate, crypto_code, fiat_code, device_id, transaction_time, processed_at,
         clients_count, distributions_total_sats)
        VALUES (:id, :lamassu_transaction_id, :fiat_amount, :crypto_amount, :commission_percentage,
                :discount, :effective_commission, :commission_amount_sats, :base_amount_sats,
                :exchange_rate, :crypto_code, :fiat_code, :device_id, :transaction_time, :processed_at,
                :clients_count, :distributions_total_sats)
        """,  # noqa: E501, W291
                    {
                        "id": stored,
                        "lamassu_transaction_id": tx["id"],
                        "fiat_amount": tx["fiat_amount"],
                        "crypto_amount": tx["crypto_amount"],
                        "commission_percentage": tx["commission_percentage"],
                        "discount": tx.get("discount", 0.0),
                        "effective_commission": tx["effective_commission"],
                        "commission_amount_sats": tx["commission_amount_sats"],
                        "base_amount_sats": tx["base_amount_sats"],
                        "exchange_rate": tx["exchange_rate"],
                        "crypto_code": tx.get("crypto_code", "LN"),
                        "fiat_code": tx.get("fiat_code", "GTQ"),
                        "device_id": tx.get("device_id"),
                        "transaction_time": time,
                        "processed_at": datetime.now(),
                        "clients_count": 0,
                        "distributions_total_sats": 0,
                    },
                )
            for p in tx["payments"]:
                payment_id = urlsafe_short_hash()
                columns = (
                    "id, client_id, amount_sats, amount_fiat, exchange_rate, "
                    "transaction_type, lamassu_transaction_id, payment_hash, status, "
                    "created_at"
                )
                values = {
                    "id": payment_id,
                    "client_id": out["clients"][p["client"]],
                    "amount_sats": p["sats"],
                    "amount_fiat": p["fiat"],
                    "exchange_rate": p["exchange_rate"],
                    "transaction_type": p.get("type", "flow"),
                    "lamassu_transaction_id": tx["id"],
                    "payment_hash": None,
                    "status": "pending",
                    "created_at": datetime.now(),
                }
                if version >= 2:
                    columns += ", transaction_time"
                    values["transaction_time"] = time
                names = ", ".join(f":{k}" for k in values)
                await run(
                    "INSERT INTO satoshimachine.dca_payments "
                    f"({columns}) "
                    f"VALUES ({names})",
                    values,
                )
                await run(
                    "UPDATE satoshimachine.dca_payments SET status = :status "
                    "WHERE id = :id",
                    {"status": p.get("status", "confirmed"), "id": payment_id},
                )
                out["payments"].append(payment_id)
            if tx.get("stored", True):
                await run(
                    "UPDATE satoshimachine.lamassu_transactions SET clients_count = "
                    ":clients_count, distributions_total_sats = "
                    ":distributions_total_sats WHERE id = :id",
                    {
                        "clients_count": len(tx["payments"]),
                        "distributions_total_sats": sum(
                            p["sats"] for p in tx["payments"]
                        ),
                        "id": stored,
                    },
                )
        await run(
            "UPDATE satoshimachine.lamassu_config SET last_successful_poll = "
            ":poll_time, updated_at = :updated_at WHERE id = :id",
            {
                "id": config_id,
                "poll_time": datetime.now(timezone.utc),
                "updated_at": datetime.now(timezone.utc),
            },
        )

    await db.engine.dispose()

    # What LNbits itself recorded for the installed v1.
    await update_migration_version(None, "satmachineadmin", version)
    if spec.get("installed_extension", True):
        await create_installed_extension(
            InstallableExtension(
                id="satmachineadmin", name="DCA Admin", version="0.0.1", active=True
            )
        )
    return out


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        result = asyncio.run(main(json.load(f)))
    print("V1_FIXTURE " + json.dumps(result))
