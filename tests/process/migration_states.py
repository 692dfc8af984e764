"""Run this extension's migration chain from one starting state, in a fresh
process (LNbits picks SQLite or PostgreSQL at import), the way LNbits runs it:
``lnbits.core.helpers.run_migration`` from the version ``dbversions`` holds.

    python migration_states.py STATE [STATE ...]
    (env: LNBITS_DATA_FOLDER, LNBITS_DATABASE_URL)

STATE: ``fresh``; ``ours:K`` (this chain's m001..mK ran, a machine and an LP
position were written, then the whole chain runs from K); ``v1:SCHEMA:K``
(satmachineadmin v1's state from ``v1_fixture.py`` at its version K in SCHEMA).
Each state starts from no extension table (``reset``); prints one line
``STATE_RESULT {json}`` per state.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SUPER = "5" * 32

V1_SPEC = {
    "config": {
        "host": "127.0.0.1",
        "port": 5432,
        "database_name": "lamassu",
        "username": "reader",
        "password": "v1-plain-password",
        "source_wallet_id": "w" * 32,
        "commission_wallet_id": "c" * 32,
        "ssh_host": "atm.example",
        "ssh_username": "lamassu",
        "ssh_private_key": "-----BEGIN OPENSSH PRIVATE KEY-----v1",
    },
    "clients": [
        {"user_id": "a" * 32, "wallet_id": "b" * 32, "username": "lp_a"},
        {
            "user_id": "d" * 32,
            "wallet_id": "e" * 32,
            "dca_mode": "fixed",
            "fixed_mode_daily_limit": 300,
        },
    ],
    "deposits": [
        {"client": 0, "amount": 1000, "confirmed": True},
        {"client": 0, "amount": 200},
        {"client": 1, "amount": 500, "confirmed": True},
    ],
    "cash_outs": [
        {
            "id": "11111111-1111-4111-8111-111111111111",
            "fiat_amount": 100,
            "crypto_amount": 13_400,
            "commission_percentage": 0.03,
            "effective_commission": 0.03,
            "commission_amount_sats": 391,
            "base_amount_sats": 13_009,
            "exchange_rate": 130.09,
            "device_id": "dev-a",
            "transaction_time": "2025-07-01T10:00:00+00:00",
            "payments": [
                {"client": 0, "sats": 8_672, "fiat": 66, "exchange_rate": 130.09},
                {"client": 1, "sats": 4_336, "fiat": 33, "exchange_rate": 130.09},
            ],
        }
    ],
}


async def run_chain(module: types.ModuleType, start: int) -> None:
    import satmachineadmin
    from lnbits.core.db import db as core_db  # noqa: F401 - core first
    from lnbits.core.helpers import run_migration
    from lnbits.core.models import DbVersion

    async with satmachineadmin.db.connect() as conn:
        await run_migration(
            conn,
            module,
            "satmachineadmin",
            DbVersion(db="satmachineadmin", version=start),
        )


def chain_upto(k: int) -> types.ModuleType:
    from satmachineadmin import migrations

    part = types.ModuleType("chain_upto")
    for name, fn in vars(migrations).items():
        if name.startswith("m") and name[1:4].isdigit() and int(name[1:4]) <= k:
            setattr(part, name, fn)
    return part


async def rows(sql: str, db: object = None) -> list[dict]:
    import satmachineadmin
    from sqlalchemy.sql import text

    async with (db or satmachineadmin.db).connect() as conn:  # type: ignore[attr-defined]
        result = await conn.conn.execute(text(sql))
        return [dict(r) for r in result.mappings().all()]


async def reset() -> None:
    """Forget every extension table (this chain's and v1's) and the recorded
    version, so the next state starts from nothing; LNbits' core tables stay
    (importing LNbits and migrating its core is most of a state's cost)."""
    import satmachineadmin
    from lnbits.core.db import db as core_db
    from lnbits.db import SQLITE, Database
    from sqlalchemy.sql import text

    await satmachineadmin.db.engine.dispose()
    for schema in ("satmachineadmin", "satoshimachine"):
        database = Database(f"ext_{schema}")
        async with database.connect() as conn:
            if conn.type == SQLITE:
                found = await conn.conn.execute(
                    text(
                        f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table'"
                    )
                )
                for (table,) in found.fetchall():
                    await conn.conn.execute(text(f"DROP TABLE {schema}.{table}"))
            else:
                await conn.conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            await conn.conn.commit()
        await database.engine.dispose()
    async with core_db.connect() as conn:
        await conn.execute("DELETE FROM dbversions WHERE db = 'satmachineadmin'")


async def main(states: list[str]) -> None:
    from lnbits.core.helpers import migrate_databases
    from lnbits.settings import settings

    settings.super_user = SUPER
    settings.auth_secret_key = settings.auth_secret_key or "states-test-secret"
    await migrate_databases()  # LNbits' core tables
    for state in states:
        await reset()
        result = await run_state(state)
        print("STATE_RESULT " + json.dumps(result, default=str), flush=True)


async def run_state(state: str) -> dict:
    from lnbits.core.crud import get_db_version
    from satmachineadmin import migrations

    out: dict = {"state": state}
    if state == "fresh":
        await run_chain(migrations, 0)
    elif state.startswith("ours:"):
        k = int(state.split(":")[1])
        await run_chain(chain_upto(k), 0)
        import satmachineadmin

        async with satmachineadmin.db.connect() as conn:
            await conn.execute(
                "INSERT INTO satmachineadmin.machines (id, operator_user_id, npub, "
                "wallet_id, name, currency) VALUES ('m1', 'op', 'npub-x', 'w1', "
                "'kept', 'GTQ')"
            )
            await conn.execute(
                "INSERT INTO satmachineadmin.clients (id, machine_id, "
                "operator_user_id, user_id, wallet_id) VALUES ('c1', 'm1', 'op', "
                "'u1', 'w2')"
            )
        await run_chain(migrations, k)
        out["kept"] = await rows(
            "SELECT m.name AS name, c.id AS client FROM satmachineadmin.machines m "
            "JOIN satmachineadmin.clients c ON c.machine_id = m.id"
        )
    elif state.startswith(("v1:", "v1bad:")):
        kind, schema, k = state.split(":")
        sys.path.insert(0, str(HERE))
        import v1_fixture

        spec = dict(V1_SPEC, schema=schema, version=int(k), installed_extension=False)
        if kind == "v1bad":  # a deposit no balance can hold: nothing is carried
            spec["deposits"] = [*V1_SPEC["deposits"], {"client": 1, "amount": -5}]
        out["fixture"] = await v1_fixture.main(spec)
        try:
            await run_chain(migrations, int(k))
        except Exception as exc:
            out["raised"] = str(exc)
        out["positions"] = await rows(
            "SELECT id, user_id, dca_mode, fixed_mode_daily_limit_minor, status "
            "FROM satmachineadmin.clients ORDER BY user_id"
        )
        out["machines"] = await rows(
            "SELECT id, wallet_id, source, operator_user_id "
            "FROM satmachineadmin.machines"
        )
        from lnbits.db import Database

        out["v1_secrets"] = await rows(
            f"SELECT password, ssh_private_key FROM {schema}.lamassu_config",
            Database(f"ext_{schema}"),
        )
    else:
        raise SystemExit(f"unknown state {state}")
    version = await get_db_version("satmachineadmin")
    out["version"] = version.version if version else None
    tables = await rows(
        "SELECT id, status, report FROM satmachineadmin.upgrade_reports"
    )
    out["report"] = json.loads(tables[0]["report"]) if tables else None
    out["legs"] = await rows(
        "SELECT client_id, status, amount_sats, fiat_amount_minor "
        "FROM satmachineadmin.payments ORDER BY client_id"
    )
    return out


if __name__ == "__main__":
    link_root = Path(tempfile.mkdtemp(prefix="satmachineadmin-states-"))
    (link_root / "satmachineadmin").symlink_to(REPO, target_is_directory=True)
    sys.path.insert(0, str(link_root))
    os.chdir(link_root)
    asyncio.run(main(sys.argv[1:]))
