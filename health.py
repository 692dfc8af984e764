"""Machine health and the instance health check.

Per machine: when it last reported, online or not (a report within the
operator's ``offline_after_seconds``), its cassettes and other beacon fields,
its wallet balance, its last sale, its source status (Lamassu machines: the
poll's last success and last error) and its errors. A periodic check tells
the operator when a machine goes offline or a cassette runs low
(``notifications.problem_started``), and when that clears.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from lnbits.core.crud import get_wallet
from loguru import logger

from . import crud, crud_sources, crud_telemetry, loops, notifications, overview, relays
from .crud import S, _scalar_rows, connection
from .models import (
    Machine,
    MachineStatus,
    MachineWithPresence,
    TelemetrySettings,
    utc_now,
)

HISTORY_DAYS = 30  # telemetry events are kept this long
PRUNE_EVERY_CHECKS = 60  # about once an hour


def is_online(
    status: MachineStatus | None, settings: TelemetrySettings, now: datetime
) -> bool:
    if status is None:
        return False
    return status.last_seen_at >= now - timedelta(
        seconds=settings.offline_after_seconds
    )


def _fields(status: MachineStatus | None) -> dict[str, Any]:
    if status is None:
        return {}
    try:
        merged = json.loads(status.fields or "{}")
    except ValueError:
        return {}
    return {key: entry.get("value") for key, entry in merged.items()}


def low_cassettes(fields: dict[str, Any], threshold: int) -> list[dict[str, Any]]:
    cassettes = fields.get("cassettes")
    if not isinstance(cassettes, list):
        return []
    low = []
    for cassette in cassettes:
        if not isinstance(cassette, dict):
            continue
        count = cassette.get("count")
        if isinstance(count, int) and not isinstance(count, bool) and count < threshold:
            low.append(cassette)
    return low


async def with_presence(
    machines: list[Machine], operator_user_id: str
) -> list[MachineWithPresence]:
    """Machines with ``last_seen_at`` and ``online`` (two queries)."""
    statuses = await crud_telemetry.get_statuses([m.id for m in machines])
    settings = await crud_telemetry.get_settings(operator_user_id)
    now = utc_now()
    result = []
    for machine in machines:
        status = statuses.get(machine.id)
        result.append(
            MachineWithPresence(
                **machine.dict(),
                last_seen_at=status.last_seen_at if status else None,
                online=is_online(status, settings, now),
            )
        )
    return result


async def _source_status(machines: list[Machine]) -> dict[str, dict[str, Any]]:
    """Per Lamassu machine, the status of its poll (one query): ``{kind,
    configured, last_poll_at, last_success_at, last_error, last_error_at}``,
    never the password nor the connection settings. Other machines (bitSpire,
    manual) have none: their ``source_status`` is null."""
    ids = [m.id for m in machines if m.source == "lamassu"]
    polls = await crud_sources.lamassu_poll_status(ids)
    empty = dict.fromkeys(
        ("last_poll_at", "last_success_at", "last_error", "last_error_at")
    )
    return {
        mid: {
            "kind": "lamassu",
            "configured": mid in polls,
            **polls.get(mid, empty),
        }
        for mid in ids
    }


def _sources_summary(
    machines: list[Machine], statuses: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """For ``GET /health``: the Lamassu sources, and those whose last poll
    failed."""
    in_error = [
        {
            "machine_id": m.id,
            "name": m.name,
            "last_error": statuses[m.id]["last_error"],
            "last_error_at": statuses[m.id]["last_error_at"],
            "last_success_at": statuses[m.id]["last_success_at"],
        }
        for m in machines
        if m.id in statuses and statuses[m.id]["last_error"] is not None
    ]
    return {
        "lamassu": {
            "machines": len(statuses),
            "configured": sum(s["configured"] for s in statuses.values()),
            "in_error": len(in_error),
        },
        "in_error": in_error,
    }


async def _last_sales(machine_ids: list[str]) -> dict[str, dict[str, Any]]:
    if not machine_ids:
        return {}
    names = {f"m{i}": mid for i, mid in enumerate(machine_ids)}
    placeholders = ", ".join(f":{n}" for n in names)
    async with connection() as c:
        rows = await _scalar_rows(
            c,
            f"""SELECT machine_id, MAX(created_at) AS last_sale_at,
                SUM(CASE WHEN status = 'errored' THEN 1 ELSE 0 END) AS errored
                FROM {S}.settlements WHERE machine_id IN ({placeholders})
                GROUP BY machine_id""",
            names,
        )
    result = {}
    for row in rows:
        last = row["last_sale_at"]
        if isinstance(last, (int, float)):
            last = datetime.fromtimestamp(last, timezone.utc)
        result[row["machine_id"]] = {
            "last_sale_at": last.isoformat() if last else None,
            "errored_settlements": int(row["errored"] or 0),
        }
    return result


async def machine_health(
    machines: list[Machine], operator_user_id: str
) -> list[dict[str, Any]]:
    ids = [m.id for m in machines]
    statuses = await crud_telemetry.get_statuses(ids)
    settings = await crud_telemetry.get_settings(operator_user_id)
    sales = await _last_sales(ids)
    sources = await _source_status(machines)
    now = utc_now()
    result = []
    for machine in machines:
        status = statuses.get(machine.id)
        fields = _fields(status)
        wallet = await get_wallet(machine.wallet_id)
        errors = fields.get("errors")
        sale = sales.get(machine.id, {})
        result.append(
            {
                "machine_id": machine.id,
                "name": machine.name,
                "is_active": machine.is_active,
                "last_seen_at": status.last_seen_at.isoformat() if status else None,
                "online": is_online(status, settings, now),
                "offline_after_seconds": settings.offline_after_seconds,
                "cassettes": fields.get("cassettes"),
                "low_cassettes": low_cassettes(fields, settings.low_cassette_bills),
                "cash_level": (
                    str(machine.fiat(status.cash_level_minor, status.currency))
                    if status and status.cash_level_minor is not None
                    else None
                ),
                "firmware_version": status.firmware_version if status else None,
                "beacon": fields,
                "fleet_snapshot": (
                    json.loads(status.fleet_snapshot)
                    if status and status.fleet_snapshot
                    else None
                ),
                "wallet_balance_sats": (
                    wallet.balance_msat // 1000 if wallet is not None else None
                ),
                "last_sale_at": sale.get("last_sale_at"),
                "errored_settlements": sale.get("errored_settlements", 0),
                "source_status": sources.get(machine.id),
                "errors": errors if isinstance(errors, list) else [],
            }
        )
    return result


# --- the periodic check ------------------------------------------------------

_open: set[str] = set()


async def _problem(op: str, key: str, active: bool, title: str, body: str) -> None:
    if active and key not in _open:
        _open.add(key)
        await notifications.problem_started(op, key, title, body)
    elif not active and key in _open:
        _open.discard(key)
        await notifications.problem_cleared(op, key, body)


async def check_machines() -> None:
    """Raise or clear the offline and low-cassette problems of every machine
    that has reported at least once."""
    machines = await crud.list_active_machines()
    statuses = await crud_telemetry.get_statuses([m.id for m in machines])
    settings = await crud_telemetry.get_all_settings()
    now = utc_now()
    for machine in machines:
        status = statuses.get(machine.id)
        if status is None:
            continue
        op = machine.operator_user_id
        mine = settings.get(op) or TelemetrySettings(operator_user_id=op)
        online = is_online(status, mine, now)
        await _problem(
            op,
            f"machine-offline:{machine.id}",
            not online,
            f"Machine {machine.name} is offline",
            f"no report since {status.last_seen_at.isoformat()}"
            if not online
            else "reporting again",
        )
        low = low_cassettes(_fields(status), mine.low_cassette_bills)
        await _problem(
            op,
            f"machine-low-cassette:{machine.id}",
            bool(low),
            f"Machine {machine.name}: cassette running low",
            f"{len(low)} cassette(s) below {mine.low_cassette_bills} bills"
            if low
            else "cassettes refilled",
        )


async def check_loop() -> None:
    checks = 0
    while True:
        try:
            await check_machines()
            if checks % PRUNE_EVERY_CHECKS == 0:
                await crud_telemetry.prune_history(
                    utc_now() - timedelta(days=HISTORY_DAYS)
                )
        except Exception:
            logger.exception("satmachineadmin: machine health check failed")
        checks += 1
        await loops.pause("health")


# --- GET /health -----------------------------------------------------------


async def instance_health(scope: str | None) -> dict[str, Any]:
    """For an uptime checker: workers, queues, recovery, settlement counts,
    machines online, relays and sources (``sources``: the Lamassu sources
    and those whose last poll failed; they do not change ``ok``). ``scope``
    None: the whole instance."""
    from .tasks import runtime_status

    runtime = runtime_status()
    now = utc_now()
    async with connection() as conn:
        attention = await overview._attention(conn, scope, now)
    if scope is None:
        machines = await crud.list_active_machines()
        relay_list = relays.relay_status()
    else:
        machines = [m for m in await crud.list_machines(scope, 1000) if m.is_active]
        relay_list = relays.relay_status(
            (await crud_telemetry.get_settings(scope)).relays
        )
    statuses = await crud_telemetry.get_statuses([m.id for m in machines])
    all_settings = await crud_telemetry.get_all_settings()
    online = sum(
        is_online(
            statuses.get(m.id),
            all_settings.get(m.operator_user_id)
            or TelemetrySettings(operator_user_id=m.operator_user_id),
            now,
        )
        for m in machines
    )
    ok = runtime["workers_alive"] and attention["stuck"] == 0
    return {
        "ok": ok,
        "scope": "instance" if scope is None else "operator",
        "checked_at": now.isoformat(),
        "workers": runtime,
        "settlements": attention,
        "machines": {
            "active": len(machines),
            "online": online,
            "offline": len(machines) - online,
        },
        "relays": relay_list,
        "sources": _sources_summary(machines, await _source_status(machines)),
    }
