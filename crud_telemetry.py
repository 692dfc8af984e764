"""Data access for telemetry: the events (``telemetry``), the merged latest
state per machine (``machine_status``) and operators' telemetry settings."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from lnbits.db import Connection
from sqlalchemy.exc import IntegrityError

from .crud import (
    S,
    _execute,
    _fetchall,
    _fetchone,
    _insert,
    _names,
    _scalar_rows,
    connection,
    get_machine_by_npub,
    new_id,
    transaction,
)
from .models import (
    Machine,
    MachineStatus,
    TelemetrySettings,
    TelemetrySnapshot,
    utc_now,
)

__all__ = ["get_machine_by_npub"]


async def event_known(event_id: str) -> bool:
    async with connection() as c:
        rows = await _scalar_rows(
            c,
            f"SELECT 1 AS x FROM {S}.telemetry WHERE event_id = :e",
            {"e": event_id},
        )
    return bool(rows)


async def _get_status(conn: Connection, machine_id: str) -> MachineStatus | None:
    return await _fetchone(
        conn,
        f"SELECT * FROM {S}.machine_status WHERE machine_id = :m",
        {"m": machine_id},
        MachineStatus,
    )


def _merge_status(
    status: MachineStatus | None,
    machine: Machine,
    event: dict[str, Any],
    document: Any,
    created_at: datetime,
) -> MachineStatus:
    from .telemetry import BEACON_KIND, derived_columns, merge_fields

    now = utc_now()
    seen = min(created_at, now)
    if status is None:
        status = MachineStatus(
            machine_id=machine.id,
            operator_user_id=machine.operator_user_id,
            last_seen_at=seen,
            last_event_at=now,
        )
    status.operator_user_id = machine.operator_user_id
    status.last_seen_at = max(status.last_seen_at, seen)
    status.last_event_at = now
    status.updated_at = now
    if event["kind"] == BEACON_KIND:
        fields = merge_fields(
            json.loads(status.fields or "{}"), document, event["created_at"]
        )
        status.fields = json.dumps(fields)
        for key, value in derived_columns(fields).items():
            setattr(status, key, value)
        if status.beacon_at is None or created_at > status.beacon_at:
            status.beacon_at = created_at
    elif status.fleet_at is None or created_at >= status.fleet_at:
        status.fleet_at = created_at
        status.fleet_snapshot = event["content"]
    return status


async def store_event(
    *,
    machine: Machine,
    event: dict[str, Any],
    document: Any,
    created_at: datetime,
    source: str,
) -> bool:
    """Store the event and merge it into the machine's latest state, in one
    transaction. False when the event id is already stored."""
    from .telemetry import derived_columns, merge_fields

    row = TelemetrySnapshot(
        id=new_id(),
        machine_id=machine.id,
        kind=str(event["kind"]),
        payload=event["content"],
    )
    if isinstance(document, dict):
        columns = derived_columns(merge_fields({}, document, event["created_at"]))
        row.cash_level_minor = columns["cash_level_minor"]
        row.currency = columns["currency"]
        row.firmware_version = columns["firmware_version"]
    try:
        async with transaction() as c:
            await _insert(c, "telemetry", row, commit=False)
            await _execute(
                c,
                f"""UPDATE {S}.telemetry SET event_id = :e, event_created_at = :t,
                    source = :s WHERE id = :id""",
                {"e": event["id"], "t": created_at, "s": source, "id": row.id},
                commit=False,
            )
            current = await _get_status(c, machine.id)
            status = _merge_status(current, machine, event, document, created_at)
            if current is None:
                await _insert(c, "machine_status", status, commit=False)
            else:
                await _execute(
                    c,
                    f"""UPDATE {S}.machine_status SET operator_user_id = :op,
                        last_seen_at = :seen, last_event_at = :ev,
                        beacon_at = :beacon, fields = :fields,
                        cash_level_minor = :cash, currency = :cur,
                        firmware_version = :fw, fleet_at = :fleet_at,
                        fleet_snapshot = :fleet, updated_at = :now
                        WHERE machine_id = :m""",
                    {
                        "op": status.operator_user_id,
                        "seen": status.last_seen_at,
                        "ev": status.last_event_at,
                        "beacon": status.beacon_at,
                        "fields": status.fields,
                        "cash": status.cash_level_minor,
                        "cur": status.currency,
                        "fw": status.firmware_version,
                        "fleet_at": status.fleet_at,
                        "fleet": status.fleet_snapshot,
                        "now": status.updated_at,
                        "m": machine.id,
                    },
                    commit=False,
                )
    except IntegrityError:
        return False
    return True


async def get_status(machine_id: str) -> MachineStatus | None:
    async with connection() as c:
        return await _get_status(c, machine_id)


async def get_statuses(machine_ids: Sequence[str]) -> dict[str, MachineStatus]:
    if not machine_ids:
        return {}
    names, placeholders = _names("m", list(dict.fromkeys(machine_ids)))
    async with connection() as c:
        rows = await _fetchall(
            c,
            f"SELECT * FROM {S}.machine_status WHERE machine_id IN ({placeholders})",
            names,
            MachineStatus,
        )
    return {row.machine_id: row for row in rows}


async def list_history(
    machine_id: str, limit: int, offset: int
) -> list[dict[str, Any]]:
    async with connection() as c:
        return await _scalar_rows(
            c,
            f"""SELECT id, kind, event_id, event_created_at, received_at, source,
                cash_level_minor, currency, firmware_version, payload
                FROM {S}.telemetry WHERE machine_id = :m
                ORDER BY received_at DESC, id DESC LIMIT :limit OFFSET :offset""",
            {"m": machine_id, "limit": limit, "offset": offset},
        )


async def prune_history(older_than: datetime) -> int:
    """Forget telemetry events received before ``older_than`` (the merged
    latest state stays)."""
    async with connection() as c:
        result = await _execute(
            c,
            f"DELETE FROM {S}.telemetry WHERE received_at < :t",
            {"t": older_than},
        )
    return int(result.rowcount or 0)


# --- settings ----------------------------------------------------------------


async def get_settings(operator_user_id: str) -> TelemetrySettings:
    async with connection() as c:
        row = await _fetchone(
            c,
            f"SELECT * FROM {S}.telemetry_settings WHERE operator_user_id = :op",
            {"op": operator_user_id},
            TelemetrySettings,
        )
    return row or TelemetrySettings(operator_user_id=operator_user_id)


async def get_all_settings() -> dict[str, TelemetrySettings]:
    async with connection() as c:
        rows = await _fetchall(
            c, f"SELECT * FROM {S}.telemetry_settings", None, TelemetrySettings
        )
    return {row.operator_user_id: row for row in rows}


async def save_settings(settings: TelemetrySettings) -> TelemetrySettings:
    settings.updated_at = utc_now()
    async with transaction() as c:
        rows = await _scalar_rows(
            c,
            f"SELECT 1 AS x FROM {S}.telemetry_settings WHERE operator_user_id = :op",
            {"op": settings.operator_user_id},
        )
        if rows:
            await _execute(
                c,
                f"""UPDATE {S}.telemetry_settings SET relays = :r,
                    offline_after_seconds = :o, low_cassette_bills = :l,
                    updated_at = :u WHERE operator_user_id = :op""",
                {
                    "r": settings.relays,
                    "o": settings.offline_after_seconds,
                    "l": settings.low_cassette_bills,
                    "u": settings.updated_at,
                    "op": settings.operator_user_id,
                },
                commit=False,
            )
        else:
            await _insert(c, "telemetry_settings", settings, commit=False)
    return settings


async def set_offline_after(
    conn: Connection, operator_user_id: str, seconds: int
) -> None:
    """Set only the offline threshold, inside the caller's transaction (the
    one store behind both ``PUT /relays`` and ``PUT /notifications``)."""
    now = utc_now()
    result = await _execute(
        conn,
        f"""UPDATE {S}.telemetry_settings SET offline_after_seconds = :o,
            updated_at = :u WHERE operator_user_id = :op""",
        {"o": seconds, "u": now, "op": operator_user_id},
        commit=False,
    )
    if not result.rowcount:
        row = TelemetrySettings(
            operator_user_id=operator_user_id,
            offline_after_seconds=seconds,
            updated_at=now,
        )
        await _insert(conn, "telemetry_settings", row, commit=False)


async def list_relay_subscriptions() -> dict[str, set[str]]:
    """Every relay some operator lists, with the npubs of that operator's
    active machines (one query for the settings, one for the machines)."""
    settings = await get_all_settings()
    wanted = {op: s.relays for op, s in settings.items() if s.relays}
    if not wanted:
        return {}
    async with connection() as c:
        rows = await _scalar_rows(
            c,
            f"""SELECT m.operator_user_id AS op, m.npub AS npub
                FROM {S}.machines m JOIN {S}.telemetry_settings t
                ON t.operator_user_id = m.operator_user_id
                WHERE m.is_active = TRUE""",
        )
    subscriptions: dict[str, set[str]] = {}
    for row in rows:
        for relay in wanted.get(row["op"], []):
            subscriptions.setdefault(relay, set()).add(row["npub"])
    return subscriptions
