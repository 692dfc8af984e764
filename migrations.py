"""Schema of satmachineadmin. Append-only: never edit a shipped migration.

Money columns: sats are BIGINT; fiat is BIGINT in the minor unit of the row's
currency (``*_minor``, e.g. centavos for GTQ); rates and percentages are exact
decimal strings (TEXT), never floats. The database itself refuses what must
never happen twice (see the UNIQUE constraints).
"""

from lnbits.db import SQLITE, Connection


async def _index(db: Connection, name: str, table: str, columns: str) -> None:
    """SQLite puts the schema on the index name, PostgreSQL on the table."""
    if db.type == SQLITE:
        sql = f"CREATE INDEX satmachineadmin.{name} ON {table} ({columns})"
    else:
        sql = f"CREATE INDEX {name} ON satmachineadmin.{table} ({columns})"
    await db.execute(sql)


async def m001_v2_schema(db: Connection) -> None:
    """Machines, LP positions, deposits, settlements, split rules, payment legs,
    telemetry snapshots and the platform (super) config."""
    big = db.big_int
    now = db.timestamp_now
    ref = db.references_schema  # SQLite refuses a schema in REFERENCES

    await db.execute(f"""
        CREATE TABLE satmachineadmin.machines (
            id TEXT PRIMARY KEY,
            operator_user_id TEXT NOT NULL,
            npub TEXT NOT NULL UNIQUE,
            wallet_id TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            currency TEXT NOT NULL,
            fallback_commission_pct TEXT,
            is_active BOOLEAN NOT NULL DEFAULT TRUE,
            created_at TIMESTAMP NOT NULL DEFAULT {now},
            updated_at TIMESTAMP NOT NULL DEFAULT {now}
        );
    """)
    await _index(db, "machines_operator", "machines", "operator_user_id, created_at")

    await db.execute(f"""
        CREATE TABLE satmachineadmin.clients (
            id TEXT PRIMARY KEY,
            machine_id TEXT NOT NULL REFERENCES {ref}machines (id),
            operator_user_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            wallet_id TEXT NOT NULL,
            username TEXT,
            dca_mode TEXT NOT NULL DEFAULT 'flow',
            fixed_mode_daily_limit_minor {big},
            status TEXT NOT NULL DEFAULT 'active',
            created_at TIMESTAMP NOT NULL DEFAULT {now},
            updated_at TIMESTAMP NOT NULL DEFAULT {now},
            UNIQUE (machine_id, user_id)
        );
    """)
    await _index(db, "clients_operator", "clients", "operator_user_id, created_at")
    await _index(db, "clients_user", "clients", "user_id, created_at")

    await db.execute(f"""
        CREATE TABLE satmachineadmin.deposits (
            id TEXT PRIMARY KEY,
            client_id TEXT NOT NULL REFERENCES {ref}clients (id),
            machine_id TEXT NOT NULL,
            operator_user_id TEXT NOT NULL,
            amount_minor {big} NOT NULL CHECK (amount_minor > 0),
            currency TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            notes TEXT,
            creator_user_id TEXT NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT {now},
            updated_at TIMESTAMP NOT NULL DEFAULT {now},
            confirmed_at TIMESTAMP
        );
    """)
    await _index(db, "deposits_client", "deposits", "client_id, status")
    await _index(db, "deposits_operator", "deposits", "operator_user_id, created_at")

    await db.execute(f"""
        CREATE TABLE satmachineadmin.settlements (
            id TEXT PRIMARY KEY,
            machine_id TEXT NOT NULL REFERENCES {ref}machines (id),
            operator_user_id TEXT NOT NULL,
            payment_hash TEXT NOT NULL UNIQUE,
            bitspire_event_id TEXT,
            txid TEXT,
            gross_sats {big} NOT NULL,
            net_sats {big} NOT NULL,
            commission_sats {big} NOT NULL,
            platform_fee_sats {big} NOT NULL,
            operator_fee_sats {big} NOT NULL,
            super_fee_pct TEXT NOT NULL,
            fee_pct TEXT,
            exchange_rate TEXT,
            fiat_amount_minor {big},
            currency TEXT NOT NULL,
            used_fallback_split BOOLEAN NOT NULL DEFAULT FALSE,
            bills TEXT,
            cassettes TEXT,
            status TEXT NOT NULL DEFAULT 'pending',
            error TEXT,
            notes TEXT,
            distribution_round INTEGER NOT NULL DEFAULT 0,
            dispensed_fraction TEXT,
            claimed_until TIMESTAMP,
            paid_at TIMESTAMP,
            created_at TIMESTAMP NOT NULL DEFAULT {now},
            updated_at TIMESTAMP NOT NULL DEFAULT {now},
            processed_at TIMESTAMP
        );
    """)
    await _index(
        db, "settlements_operator", "settlements", "operator_user_id, created_at"
    )
    await _index(
        db,
        "settlements_operator_status",
        "settlements",
        "operator_user_id, status, created_at",
    )
    await _index(db, "settlements_machine", "settlements", "machine_id, created_at")
    await _index(db, "settlements_status", "settlements", "status, updated_at")

    await db.execute(f"""
        CREATE TABLE satmachineadmin.commission_splits (
            id TEXT PRIMARY KEY,
            operator_user_id TEXT NOT NULL,
            machine_id TEXT,
            position INTEGER NOT NULL,
            wallet_id TEXT NOT NULL,
            pct TEXT NOT NULL,
            label TEXT NOT NULL DEFAULT '',
            created_at TIMESTAMP NOT NULL DEFAULT {now}
        );
    """)
    await _index(
        db,
        "commission_splits_scope",
        "commission_splits",
        "operator_user_id, machine_id, position",
    )

    # One row per payment leg. `idempotency_key` is (settlement, round, leg
    # type, destination) for settlement legs, so no leg can exist twice.
    await db.execute(f"""
        CREATE TABLE satmachineadmin.payments (
            id TEXT PRIMARY KEY,
            idempotency_key TEXT NOT NULL UNIQUE,
            settlement_id TEXT REFERENCES {ref}settlements (id),
            distribution_round INTEGER NOT NULL DEFAULT 0,
            machine_id TEXT NOT NULL,
            operator_user_id TEXT NOT NULL,
            client_id TEXT,
            leg_type TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            amount_sats {big} NOT NULL CHECK (amount_sats >= 0),
            fiat_amount_minor {big},
            currency TEXT,
            price TEXT,
            source_wallet_id TEXT NOT NULL,
            destination_wallet_id TEXT,
            label TEXT NOT NULL DEFAULT '',
            memo TEXT NOT NULL DEFAULT '',
            reason TEXT,
            error TEXT,
            payment_request TEXT,
            payment_hash TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at TIMESTAMP NOT NULL DEFAULT {now},
            updated_at TIMESTAMP NOT NULL DEFAULT {now},
            completed_at TIMESTAMP
        );
    """)
    await _index(
        db, "payments_settlement", "payments", "settlement_id, distribution_round"
    )
    await _index(db, "payments_operator", "payments", "operator_user_id, created_at")
    await _index(
        db,
        "payments_operator_leg",
        "payments",
        "operator_user_id, leg_type, created_at",
    )
    await _index(db, "payments_client", "payments", "client_id, status")
    await _index(db, "payments_status", "payments", "status, updated_at")

    await db.execute(f"""
        CREATE TABLE satmachineadmin.telemetry (
            id TEXT PRIMARY KEY,
            machine_id TEXT NOT NULL REFERENCES {ref}machines (id),
            kind TEXT NOT NULL,
            received_at TIMESTAMP NOT NULL DEFAULT {now},
            cash_level_minor {big},
            currency TEXT,
            firmware_version TEXT,
            payload TEXT NOT NULL DEFAULT '{{}}'
        );
    """)
    await _index(db, "telemetry_machine", "telemetry", "machine_id, received_at")

    await db.execute(f"""
        CREATE TABLE satmachineadmin.super_config (
            id TEXT PRIMARY KEY,
            super_fee_pct TEXT NOT NULL DEFAULT '0',
            super_fee_wallet_id TEXT,
            updated_at TIMESTAMP NOT NULL DEFAULT {now}
        );
    """)


async def m002_listing_indexes(db: Connection) -> None:
    """Indexes that end in (created_at, id), the order of every listing, so a
    page is read from the index without a sort; and one for operators'
    payment listings filtered by status."""
    for name in (
        "settlements_operator",
        "settlements_operator_status",
        "settlements_machine",
        "payments_operator",
        "payments_operator_leg",
    ):
        await db.execute(f"DROP INDEX satmachineadmin.{name}")
    page = "created_at, id"
    await _index(
        db, "settlements_operator_page", "settlements", f"operator_user_id, {page}"
    )
    await _index(
        db,
        "settlements_operator_status_page",
        "settlements",
        f"operator_user_id, status, {page}",
    )
    await _index(db, "settlements_machine_page", "settlements", f"machine_id, {page}")
    await _index(db, "payments_operator_page", "payments", f"operator_user_id, {page}")
    await _index(
        db,
        "payments_operator_leg_page",
        "payments",
        f"operator_user_id, leg_type, {page}",
    )
    await _index(
        db,
        "payments_operator_status_page",
        "payments",
        f"operator_user_id, status, leg_type, {page}",
    )


async def m007_lp_self_service(db: Connection) -> None:
    """LP self-service (issue 14): invites to a machine, the LP's own
    preferences per position (a row means the LP has taken them over) with
    autoforward to a Lightning address and its retry state, the fee each
    forward paid, and indexes for the LP's dashboard and chart."""
    big = db.big_int
    now = db.timestamp_now

    await db.execute(f"""
        CREATE TABLE satmachineadmin.invites (
            id TEXT PRIMARY KEY,
            code TEXT NOT NULL,
            machine_id TEXT NOT NULL,
            operator_user_id TEXT NOT NULL,
            username TEXT,
            user_id TEXT,
            expires_at TIMESTAMP NOT NULL,
            accepted_at TIMESTAMP,
            accepted_by TEXT,
            client_id TEXT,
            created_at TIMESTAMP NOT NULL DEFAULT {now}
        );
    """)
    if db.type == SQLITE:
        await db.execute(
            "CREATE UNIQUE INDEX satmachineadmin.invites_code ON invites (code)"
        )
    else:
        await db.execute(
            "CREATE UNIQUE INDEX invites_code ON satmachineadmin.invites (code)"
        )
    await _index(db, "invites_operator", "invites", "operator_user_id, created_at")

    await db.execute(f"""
        CREATE TABLE satmachineadmin.lp_preferences (
            client_id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            autoforward_enabled BOOLEAN NOT NULL DEFAULT FALSE,
            autoforward_address TEXT,
            autoforward_threshold_sats {big},
            autoforward_failures INTEGER NOT NULL DEFAULT 0,
            autoforward_next_try_at TIMESTAMP,
            autoforward_last_error TEXT,
            created_at TIMESTAMP NOT NULL DEFAULT {now},
            updated_at TIMESTAMP NOT NULL DEFAULT {now}
        );
    """)
    await _index(
        db, "lp_preferences_forward", "lp_preferences", "autoforward_enabled, user_id"
    )

    # What a forward paid in routing fees (0 for an internal transfer).
    await db.execute(f"ALTER TABLE satmachineadmin.payments ADD COLUMN fee_sats {big}")
    # The LP's history, chart and totals: one position's legs by type and time,
    # covering the amounts, so its sums and pages are read from the index alone.
    await _index(
        db,
        "payments_client_leg_time",
        "payments",
        "client_id, leg_type, status, created_at, id, amount_sats, fiat_amount_minor",
    )
    await _index(db, "deposits_client_time", "deposits", "client_id, created_at, id")
