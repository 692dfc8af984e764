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


async def _has_table(db: Connection, name: str) -> bool:
    if db.type == SQLITE:
        sql = (
            "SELECT name FROM satmachineadmin.sqlite_master "
            "WHERE type = 'table' AND name = :name"
        )
    else:
        sql = (
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'satmachineadmin' AND table_name = :name"
        )
    return await db.fetchone(sql, {"name": name}) is not None


async def _ensure_v2_base(db: Connection, through: int) -> None:
    """Over satmachineadmin v1 LNbits has recorded version 2 (1 for a v1 of
    its first two days), so it never runs this chain's m001/m002: v1's m001
    and m002 had those numbers. v1's tables (``dca_*``, ``lamassu_config``,
    ``lamassu_transactions``) share no name with this chain's, so "no
    ``machines`` table" means "over v1": run the base migrations up to
    ``through`` first. On this chain's own states (fresh, 1..8) ``machines``
    exists by then and nothing happens. m009 carries v1's data."""
    if await _has_table(db, "machines"):
        return
    await m001_v2_schema(db)
    if through >= 2:
        await m002_listing_indexes(db)


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
    await _ensure_v2_base(db, through=1)
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


async def m003_payout_recovery(db: Connection) -> None:
    """Payouts that survive process death: every invoice a leg ever had
    (``leg_invoices``), the repair of a transfer LNbits left half done
    (``payments.repaired_at``/``repair_note``), how many times a leg's invoice
    was replaced, which process holds a settlement's claim, and a per-machine
    checkpoint so start-up recovery scans only recent payments."""
    await _ensure_v2_base(db, through=2)
    now = db.timestamp_now
    await db.execute(
        "ALTER TABLE satmachineadmin.payments ADD COLUMN repaired_at TIMESTAMP"
    )
    await db.execute("ALTER TABLE satmachineadmin.payments ADD COLUMN repair_note TEXT")
    await db.execute(
        "ALTER TABLE satmachineadmin.payments "
        "ADD COLUMN invoice_replacements INTEGER NOT NULL DEFAULT 0"
    )
    await db.execute(
        "ALTER TABLE satmachineadmin.settlements ADD COLUMN claimed_by TEXT"
    )
    # An invoice a leg had and gave up because LNbits said it can never be
    # paid; the leg row keeps its current invoice (the one that pays).
    await db.execute(f"""
        CREATE TABLE satmachineadmin.leg_invoices (
            id TEXT PRIMARY KEY,
            leg_id TEXT NOT NULL,
            payment_hash TEXT NOT NULL,
            payment_request TEXT NOT NULL,
            status TEXT NOT NULL,
            reason TEXT,
            created_at TIMESTAMP NOT NULL DEFAULT {now}
        );
    """)
    await _index(db, "leg_invoices_leg", "leg_invoices", "leg_id, created_at")
    await _index(db, "payments_hash", "payments", "payment_hash")
    if db.type == SQLITE:
        sql = (
            "CREATE UNIQUE INDEX satmachineadmin.leg_invoices_hash "
            "ON leg_invoices (payment_hash)"
        )
    else:
        sql = (
            "CREATE UNIQUE INDEX leg_invoices_hash "
            "ON satmachineadmin.leg_invoices (payment_hash)"
        )
    await db.execute(sql)
    # Up to where (Unix seconds) recovery has scanned a machine wallet's
    # incoming payments; the next scan starts an overlap window before it.
    await db.execute(f"""
        CREATE TABLE satmachineadmin.recovery_checkpoints (
            machine_id TEXT PRIMARY KEY,
            scanned_until {db.big_int} NOT NULL,
            updated_at TIMESTAMP NOT NULL DEFAULT {now}
        );
    """)


async def m004_sale_sources(db: Connection) -> None:
    """Where a sale comes from (issue 10): a machine's ``source`` (bitspire,
    lamassu, manual), a settlement's ``source`` and ``source_txid``, the
    Lamassu connection settings and poll status per machine.

    Uniqueness: ``settlements.payment_hash`` stays NOT NULL UNIQUE and holds
    each sale's key: the Lightning payment hash for bitSpire, a synthetic
    ``lamassu:<machine_id>:<txid>`` / ``manual:<machine_id>:<reference>`` for
    the others. A UNIQUE index on (machine_id, source, source_txid) says the
    same in the source's own terms (SQLite cannot add a UNIQUE constraint by
    ALTER). bitSpire rows get their payment hash as ``source_txid``."""
    big = db.big_int
    now = db.timestamp_now
    await db.execute(
        "ALTER TABLE satmachineadmin.machines "
        "ADD COLUMN source TEXT NOT NULL DEFAULT 'bitspire'"
    )
    await db.execute(
        "ALTER TABLE satmachineadmin.settlements "
        "ADD COLUMN source TEXT NOT NULL DEFAULT 'bitspire'"
    )
    await db.execute(
        "ALTER TABLE satmachineadmin.settlements ADD COLUMN source_txid TEXT"
    )
    await db.execute(
        "UPDATE satmachineadmin.settlements SET source_txid = payment_hash "
        "WHERE source_txid IS NULL"
    )
    if db.type == SQLITE:
        await db.execute(
            "CREATE UNIQUE INDEX satmachineadmin.settlements_source_key "
            "ON settlements (machine_id, source, source_txid)"
        )
    else:
        await db.execute(
            "CREATE UNIQUE INDEX settlements_source_key "
            "ON satmachineadmin.settlements (machine_id, source, source_txid)"
        )
    await _index(db, "settlements_status_machine", "settlements", "status, machine_id")
    # Which of a batch of Lamassu rows are landed: by when they happened.
    await _index(db, "settlements_machine_paid", "settlements", "machine_id, paid_at")

    # One Lamassu device per machine. The password never leaves the server:
    # routes answer `password_set`.
    await db.execute(f"""
        CREATE TABLE satmachineadmin.lamassu_sources (
            machine_id TEXT PRIMARY KEY,
            operator_user_id TEXT NOT NULL,
            host TEXT NOT NULL,
            port INTEGER NOT NULL DEFAULT 5432,
            database_name TEXT NOT NULL,
            db_user TEXT NOT NULL,
            password TEXT NOT NULL DEFAULT '',
            sslmode TEXT NOT NULL DEFAULT 'prefer',
            device_id TEXT NOT NULL,
            poll_seconds INTEGER NOT NULL DEFAULT 60,
            cursor_created TIMESTAMP,
            last_poll_at TIMESTAMP,
            last_success_at TIMESTAMP,
            last_error TEXT,
            last_error_at TIMESTAMP,
            last_landed INTEGER NOT NULL DEFAULT 0,
            landed_total {big} NOT NULL DEFAULT 0,
            created_at TIMESTAMP NOT NULL DEFAULT {now},
            updated_at TIMESTAMP NOT NULL DEFAULT {now}
        );
    """)
    # A Lamassu device feeds one machine only: two would land its sales twice.
    if db.type == SQLITE:
        await db.execute(
            "CREATE UNIQUE INDEX satmachineadmin.lamassu_sources_device "
            "ON lamassu_sources (host, port, database_name, device_id)"
        )
    else:
        await db.execute(
            "CREATE UNIQUE INDEX lamassu_sources_device ON "
            "satmachineadmin.lamassu_sources (host, port, database_name, device_id)"
        )


async def m005_fixed_mode_and_notifications(db: Connection) -> None:
    """Fixed-mode schedules (an operator default, machine_id NULL, and
    per-machine overrides), the slot a fixed-mode buy belongs to, the record of
    each slot's run, and notifications: settings, open problems, the log."""
    big = db.big_int
    now = db.timestamp_now

    # id is "<operator>:<machine id or *>": one row per scope, by the primary key.
    # max_daily_limit is an exact decimal in major units (TEXT): the default
    # row applies to machines of any currency, so it has no minor unit.
    await db.execute(f"""
        CREATE TABLE satmachineadmin.fixed_schedules (
            id TEXT PRIMARY KEY,
            operator_user_id TEXT NOT NULL,
            machine_id TEXT,
            times TEXT NOT NULL DEFAULT '[]',
            timezone TEXT NOT NULL,
            max_daily_limit TEXT NOT NULL DEFAULT '2000',
            funding_wallet_id TEXT,
            times_since TIMESTAMP NOT NULL DEFAULT {now},
            created_at TIMESTAMP NOT NULL DEFAULT {now},
            updated_at TIMESTAMP NOT NULL DEFAULT {now}
        );
    """)
    await _index(db, "fixed_schedules_operator", "fixed_schedules", "operator_user_id")

    # The slot of a fixed-mode buy: "<local date>T<HH:MM>@<time zone>".
    await db.execute("ALTER TABLE satmachineadmin.payments ADD COLUMN slot TEXT")
    await _index(db, "payments_machine_slot", "payments", "machine_id, slot")

    # One row per (machine, local date, slot time): done, or incomplete (some
    # LPs skipped for a reason that may pass: no rate, wallet short).
    await db.execute(f"""
        CREATE TABLE satmachineadmin.fixed_slot_runs (
            id TEXT PRIMARY KEY,
            machine_id TEXT NOT NULL,
            operator_user_id TEXT NOT NULL,
            slot TEXT NOT NULL,
            local_date TEXT NOT NULL,
            slot_time TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'incomplete',
            reason TEXT,
            price TEXT,
            lps_bought INTEGER NOT NULL DEFAULT 0,
            lps_skipped INTEGER NOT NULL DEFAULT 0,
            fiat_minor {big} NOT NULL DEFAULT 0,
            sats {big} NOT NULL DEFAULT 0,
            runs INTEGER NOT NULL DEFAULT 0,
            created_at TIMESTAMP NOT NULL DEFAULT {now},
            updated_at TIMESTAMP NOT NULL DEFAULT {now}
        );
    """)
    await _index(
        db, "fixed_slot_runs_machine", "fixed_slot_runs", "machine_id, local_date"
    )
    await _index(db, "fixed_slot_runs_status", "fixed_slot_runs", "status, local_date")

    await db.execute(f"""
        CREATE TABLE satmachineadmin.notification_settings (
            operator_user_id TEXT PRIMARY KEY,
            webhook_url TEXT,
            webhook_secret TEXT,
            lnbits_channels BOOLEAN NOT NULL DEFAULT TRUE,
            stuck_after_minutes INTEGER NOT NULL DEFAULT 30,
            offline_after_minutes INTEGER NOT NULL DEFAULT 15,
            updated_at TIMESTAMP NOT NULL DEFAULT {now}
        );
    """)

    # An open problem per (operator, key): a row exists while it lasts.
    await db.execute(f"""
        CREATE TABLE satmachineadmin.problems (
            id TEXT PRIMARY KEY,
            operator_user_id TEXT NOT NULL,
            problem_key TEXT NOT NULL,
            title TEXT NOT NULL,
            body TEXT NOT NULL DEFAULT '',
            opened_at TIMESTAMP NOT NULL DEFAULT {now}
        );
    """)
    if db.type == SQLITE:
        await db.execute(
            "CREATE UNIQUE INDEX satmachineadmin.problems_key "
            "ON problems (operator_user_id, problem_key)"
        )
    else:
        await db.execute(
            "CREATE UNIQUE INDEX problems_key "
            "ON satmachineadmin.problems (operator_user_id, problem_key)"
        )

    await db.execute(f"""
        CREATE TABLE satmachineadmin.notification_log (
            id TEXT PRIMARY KEY,
            operator_user_id TEXT NOT NULL,
            problem_key TEXT NOT NULL,
            kind TEXT NOT NULL,
            title TEXT NOT NULL,
            body TEXT NOT NULL DEFAULT '',
            channels TEXT NOT NULL DEFAULT '',
            webhook_status TEXT,
            webhook_attempts INTEGER NOT NULL DEFAULT 0,
            created_at TIMESTAMP NOT NULL DEFAULT {now},
            updated_at TIMESTAMP NOT NULL DEFAULT {now}
        );
    """)
    await _index(
        db,
        "notification_log_page",
        "notification_log",
        "operator_user_id, created_at, id",
    )


async def m006_telemetry_and_health(db: Connection) -> None:
    """Machine telemetry (issue 12): every accepted signed Nostr event once
    (``telemetry.event_id`` unique), the merged latest state per machine
    (``machine_status``: a sparse beacon never clears a known field, an older
    one never overwrites a newer field) and each operator's telemetry settings
    (relays to subscribe to, offline threshold, low-cassette level)."""
    big = db.big_int
    now = db.timestamp_now
    for column in (
        "event_id TEXT",
        "event_created_at TIMESTAMP",
        "source TEXT",
    ):
        await db.execute(f"ALTER TABLE satmachineadmin.telemetry ADD COLUMN {column}")
    if db.type == SQLITE:
        await db.execute(
            "CREATE UNIQUE INDEX satmachineadmin.telemetry_event "
            "ON telemetry (event_id)"
        )
    else:
        await db.execute(
            "CREATE UNIQUE INDEX telemetry_event "
            "ON satmachineadmin.telemetry (event_id)"
        )

    await _index(db, "telemetry_received", "telemetry", "received_at")

    await db.execute(f"""
        CREATE TABLE satmachineadmin.machine_status (
            machine_id TEXT PRIMARY KEY,
            operator_user_id TEXT NOT NULL,
            last_seen_at TIMESTAMP NOT NULL,
            last_event_at TIMESTAMP NOT NULL,
            beacon_at TIMESTAMP,
            fields TEXT NOT NULL DEFAULT '{{}}',
            cash_level_minor {big},
            currency TEXT,
            firmware_version TEXT,
            fleet_at TIMESTAMP,
            fleet_snapshot TEXT,
            updated_at TIMESTAMP NOT NULL DEFAULT {now}
        );
    """)
    await _index(db, "machine_status_operator", "machine_status", "operator_user_id")

    await db.execute(f"""
        CREATE TABLE satmachineadmin.telemetry_settings (
            operator_user_id TEXT PRIMARY KEY,
            relays TEXT NOT NULL DEFAULT '[]',
            offline_after_seconds INTEGER NOT NULL DEFAULT 600,
            low_cassette_bills INTEGER NOT NULL DEFAULT 20,
            updated_at TIMESTAMP NOT NULL DEFAULT {now}
        );
    """)


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


async def m008_lamassu_in_the_field(db: Connection) -> None:
    """Lamassu in the field (issue 18).

    - SSH to the Lamassu server (``lamassu_sources.ssh_*``): host, port and
      user; the extension's own Ed25519 key pair (``ssh_private_key`` is
      stored sealed by ``secret_box``, ``ssh_public_key`` is what the operator
      puts in ``authorized_keys``); the pinned host key (``ssh_host_key``, the
      ``ssh-ed25519 AAAA...`` line, and its ``SHA256:...`` fingerprint). No
      host key pinned: the tunnel is never opened.
    - Never pay a machine's past: ``lamassu_sources.start_at``. Cash-outs
      created before it land only through an import the operator confirmed.
      A source that exists already polled from the epoch, so everything it
      had seen has landed; its ``start_at`` is its ``created_at``, which
      changes nothing for it (a row older than that was landed long ago, or
      can be imported).
    - ``machines.source_since``: when the machine's current source began
      (its creation for every machine today); a source changed later starts
      from the change.
    - ``lamassu_ignored``: cash-outs the operator settled outside this
      extension (one row per machine and Lamassu id, with author, time and
      reason). An ignored cash-out never lands.
    - Secrets at rest: the Lamassu ``password`` and the notification
      ``webhook_secret`` stored in plain text are sealed with
      ``secret_box.seal`` (a sealed value is left as it is)."""
    now = db.timestamp_now
    for column in (
        "ssh_host TEXT",
        "ssh_port INTEGER",
        "ssh_user TEXT",
        "ssh_private_key TEXT",
        "ssh_public_key TEXT",
        "ssh_host_key TEXT",
        "ssh_host_key_fingerprint TEXT",
        "start_at TIMESTAMP",
    ):
        await db.execute(
            f"ALTER TABLE satmachineadmin.lamassu_sources ADD COLUMN {column}"
        )
    await db.execute(
        "UPDATE satmachineadmin.lamassu_sources SET start_at = created_at "
        "WHERE start_at IS NULL"
    )

    await db.execute(
        "ALTER TABLE satmachineadmin.machines ADD COLUMN source_since TIMESTAMP"
    )
    await db.execute(
        "UPDATE satmachineadmin.machines SET source_since = created_at "
        "WHERE source_since IS NULL"
    )

    await db.execute(f"""
        CREATE TABLE satmachineadmin.lamassu_ignored (
            id TEXT PRIMARY KEY,
            machine_id TEXT NOT NULL,
            operator_user_id TEXT NOT NULL,
            txid TEXT NOT NULL,
            reason TEXT NOT NULL,
            author_user_id TEXT NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT {now}
        );
    """)
    if db.type == SQLITE:
        await db.execute(
            "CREATE UNIQUE INDEX satmachineadmin.lamassu_ignored_txid "
            "ON lamassu_ignored (machine_id, txid)"
        )
    else:
        await db.execute(
            "CREATE UNIQUE INDEX lamassu_ignored_txid "
            "ON satmachineadmin.lamassu_ignored (machine_id, txid)"
        )

    await seal_plain_secrets(db)


async def seal_plain_secrets(db: Connection) -> int:
    """Seal the Lamassu passwords and webhook secrets still stored in plain
    text (m008); a sealed value is left as it is. Returns how many."""
    from .secret_box import is_sealed, seal

    sealed = 0
    for table, key, column in (
        ("lamassu_sources", "machine_id", "password"),
        ("notification_settings", "operator_user_id", "webhook_secret"),
    ):
        rows: list[dict] = await db.fetchall(
            f"SELECT {key} AS k, {column} AS v FROM satmachineadmin.{table} "  # noqa: S608
            f"WHERE {column} IS NOT NULL AND {column} <> ''"
        )
        for row in rows:
            if is_sealed(row["v"]):
                continue
            await db.execute(
                f"UPDATE satmachineadmin.{table} SET {column} = :v "  # noqa: S608
                f"WHERE {key} = :k",
                {"v": seal(row["v"]), "k": row["k"]},
            )
            sealed += 1
    return sealed


async def m009_carry_v1(db: Connection) -> None:
    """satmachineadmin v1 carried forward (issue 19, ``upgrade_v1.py``): its
    Lamassu configuration becomes a Lamassu machine, its clients LP positions,
    its deposits deposits, its payments completed (or voided) legs and every
    cash-out it processed a processed settlement, in one transaction that
    carries everything or nothing. ``upgrade_reports`` keeps what was carried
    (``GET /upgrade/v1-report``); with no v1 tables it says so. A v1 row that
    cannot be read rolls the carry back, is named in the report and fails
    this migration, which the next start runs again."""
    from .upgrade_v1 import carry_in_migration

    await db.execute(f"""
        CREATE TABLE IF NOT EXISTS satmachineadmin.upgrade_reports (
            id TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            report TEXT NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now}
        );
    """)
    await carry_in_migration(db)
