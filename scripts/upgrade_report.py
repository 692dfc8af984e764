"""Before upgrading over satmachineadmin v1: what the upgrade would carry.

    make upgrade-report DATA=/path/to/lnbits/data          (SQLite)
    make upgrade-report DATABASE_URL=postgres://user@host/lnbits

Reads v1's tables (schema ``satoshimachine``, or ``satmachineadmin`` before
v1's commit fdc2a17) read-only: on SQLite the files of the data folder are
opened with ``mode=ro``; on PostgreSQL every query runs in a READ ONLY
transaction. Prints the version LNbits recorded for ``satmachineadmin``, the
counts and sums per v1 table, what would become of them (the machine, the
positions with their balances, the legs, the processed cash-outs), what would
be left out and why, and any row that cannot be read (then the upgrade would
carry nothing until it is fixed). ``--json`` prints the same as JSON: the
shape of ``GET /upgrade/v1-report`` after the upgrade.

It uses the extension's own ``upgrade_v1.py`` (the code the migration runs),
loaded without LNbits: standard library, pydantic and asyncpg (for
PostgreSQL), all in LNbits' virtualenv.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import types
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def load_upgrade_module() -> Any:
    """``satmachineadmin.upgrade_v1`` without running the package's
    ``__init__`` (which imports LNbits)."""
    if "satmachineadmin" not in sys.modules:
        package = types.ModuleType("satmachineadmin")
        package.__path__ = [str(REPO)]
        sys.modules["satmachineadmin"] = package
    import importlib

    return importlib.import_module("satmachineadmin.upgrade_v1")


Fetch = Callable[[str], Awaitable[list[dict[str, Any]]]]


def sqlite_reader(folder: Path) -> tuple[Fetch, Callable[[], None], str]:
    conn = sqlite3.connect("file::memory:", uri=True)
    conn.row_factory = sqlite3.Row
    for schema, name in (
        ("satoshimachine", "ext_satoshimachine.sqlite3"),
        ("satmachineadmin", "ext_satmachineadmin.sqlite3"),
        ("core", "database.sqlite3"),
    ):
        path = folder / name
        if path.is_file():
            conn.execute(f"ATTACH DATABASE ? AS {schema}", (f"file:{path}?mode=ro",))

    async def fetch(sql: str) -> list[dict[str, Any]]:
        return [dict(row) for row in conn.execute(sql).fetchall()]

    return fetch, conn.close, "SQLITE"


async def recorded_version(fetch: Fetch, dialect: str) -> int | None:
    table = "core.dbversions" if dialect == "SQLITE" else "dbversions"
    try:
        rows = await fetch(
            f"SELECT version FROM {table} WHERE db = 'satmachineadmin'"  # noqa: S608
        )
    except Exception:
        return None
    return int(rows[0]["version"]) if rows else None


async def build(fetch: Fetch, dialect: str) -> dict[str, Any]:
    up = load_upgrade_module()
    schema, counts = await up.find_v1_schema(fetch, dialect)
    if schema is None:
        value = up.report(status="no_v1", summary=None, other_schemas=counts)
    else:
        try:
            data = await up.read_v1(fetch, dialect, schema)
        except up.V1RowError as exc:
            value = up.report(
                status="unreadable", summary=None, error=exc, other_schemas=counts
            )
        else:
            summary = up.summarize(data)
            try:
                carry = up.plan(
                    data,
                    super_user="(the LNbits super user)",
                    now=datetime.now(timezone.utc),
                    fallback_wallet_id="(the super user's first wallet)",
                )
            except up.V1RowError as exc:
                value = up.report(
                    status="unreadable",
                    summary=summary,
                    error=exc,
                    other_schemas=counts,
                )
            else:
                value = up.report(
                    status="would_carry",
                    summary=summary,
                    carry=carry,
                    other_schemas=counts,
                )
    # Last: on PostgreSQL a failed look-up ends the read-only transaction.
    value["recorded_version"] = await recorded_version(fetch, dialect)
    value["upgrade_already_ran"] = await previous_upgrade(fetch)
    return value


async def previous_upgrade(fetch: Fetch) -> str | None:
    """The status m009 saved, when this extension has already run over this
    data (then v1's tables are a record; nothing is carried twice)."""
    try:
        rows = await fetch(
            "SELECT status FROM satmachineadmin.upgrade_reports WHERE id = 'v1'"
        )
    except Exception:
        return None
    return str(rows[0]["status"]) if rows else None


async def from_postgres(url: str) -> dict[str, Any]:
    import asyncpg  # an LNbits dependency

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgres://"))
    try:
        async with conn.transaction(readonly=True):

            async def fetch(sql: str) -> list[dict[str, Any]]:
                return [dict(r) for r in await conn.fetch(sql)]

            return await build(fetch, "POSTGRES")
    finally:
        await conn.close()


async def from_sqlite(folder: Path) -> dict[str, Any]:
    fetch, close, dialect = sqlite_reader(folder)
    try:
        return await build(fetch, dialect)
    finally:
        close()


def text(value: dict[str, Any]) -> str:
    lines = [
        f"satmachineadmin recorded version: {value.get('recorded_version')}",
        f"status: {value['status']}",
    ]
    if value.get("upgrade_already_ran"):
        lines.append(
            "this extension has already run its upgrade here "
            f"(status {value['upgrade_already_ran']}): see GET /upgrade/v1-report"
        )
    v1 = value.get("v1")
    if v1:
        lines.append(f"v1 schema: {v1['schema']}")
        for table in (
            "lamassu_config",
            "dca_clients",
            "dca_deposits",
            "dca_payments",
            "lamassu_transactions",
        ):
            lines.append(f"  {table}: {json.dumps(v1[table], sort_keys=True)}")
        lines.append(f"  processed cash-outs: {v1['processed_cash_outs']}")
        lines.append(f"  balances (whole units): {json.dumps(v1['balances'])}")
    carried = value.get("carried")
    if carried:
        lines.append("would carry:")
        for key in ("machine", "clients", "deposits", "legs", "settlements"):
            lines.append(f"  {key}: {json.dumps(carried[key], sort_keys=True)}")
        lines.append(f"  balances: {json.dumps(carried['balances'])}")
    for item in value.get("left_out") or []:
        lines.append(f"left out: {item['table']} {item['id']}: {item['why']}")
    if value.get("error"):
        e = value["error"]
        lines.append(f"CANNOT READ: {e['table']} row {e['id']}: {e['why']}")
    for step in value.get("after_upgrade") or []:
        lines.append(f"after the upgrade: {step}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", help="LNbits data folder (SQLite)")
    where.add_argument("--database-url", help="postgres://... (LNBITS_DATABASE_URL)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    if args.data:
        folder = Path(args.data)
        if not folder.is_dir():
            parser.error(f"{folder} is not a folder")
        value = asyncio.run(from_sqlite(folder))
    else:
        if not args.database_url.startswith(("postgres://", "postgresql")):
            parser.error("--database-url must be postgres://...")
        value = asyncio.run(from_postgres(args.database_url))
    print(json.dumps(value, indent=2, sort_keys=True) if args.json else text(value))
    return 1 if value["status"] == "unreadable" else 0


if __name__ == "__main__":
    sys.exit(main())
