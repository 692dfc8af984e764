"""Telemetry, machine health, the overview and the health check.

- ``POST /telemetry``: a signed Nostr event (kind 30078/30079) from a machine,
  no login: the signature and the author are the authentication.
- ``GET /machines/{id}/telemetry``: the merged latest state and the history.
- ``GET /health/machines``: health per machine (the console's machine view).
- ``GET /relays`` / ``PUT /relays``: the operator's relays and thresholds.
- ``GET /overview[?days=]``: the operator's overview (plus platform totals
  for the super user).
- ``GET /health``: for an uptime checker; instance-wide for the super user.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from lnbits.core.models import User
from lnbits.decorators import check_user_exists

from . import crud, crud_telemetry, health, overview, relays
from .models import SetRelaysData
from .telemetry import MAX_CONTENT_BYTES, TelemetryRefusedError, handle_event
from .views_api_helpers import (
    ERROR_RESPONSES,
    DcaRoute,
    Page,
    owned_machine,
    page_params,
    refuse_unstorable_input,
)

MAX_BODY_BYTES = 4 * MAX_CONTENT_BYTES

# No login: the event's signature by a registered machine authenticates it.
telemetry_public_router = APIRouter(route_class=DcaRoute, responses=ERROR_RESPONSES)

telemetry_router = APIRouter(
    route_class=DcaRoute,
    responses=ERROR_RESPONSES,
    dependencies=[Depends(refuse_unstorable_input)],
)


@telemetry_public_router.post(
    "/telemetry",
    responses={
        403: {"description": "The author is not a registered, active machine"},
        413: {"description": "The event or its content is too large"},
        429: {"description": "Too many events from this machine"},
    },
)
async def api_post_telemetry(request: Request) -> dict[str, Any]:
    """Accept one signed telemetry event (a NIP-01 event as JSON). A replay of
    a stored event answers ``duplicate: true`` and stores nothing new."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise HTTPException(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"event: larger than {MAX_BODY_BYTES} bytes",
        )
    try:
        event = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise HTTPException(
            HTTPStatus.UNPROCESSABLE_ENTITY, "event: is not valid JSON"
        ) from exc
    try:
        accepted = await handle_event(event, source="http")
    except TelemetryRefusedError as refused:
        raise HTTPException(refused.status, str(refused)) from refused
    return {
        "accepted": True,
        "duplicate": accepted.duplicate,
        "event_id": accepted.event_id,
        "machine_id": accepted.machine_id,
        "kind": accepted.kind,
    }


@telemetry_router.get("/machines/{machine_id}/telemetry")
async def api_machine_telemetry(
    machine_id: str,
    page: Page = Depends(page_params),
    user: User = Depends(check_user_exists),
) -> dict[str, Any]:
    """The machine's merged latest state (each field from the newest event
    that carried it) and its events, newest first."""
    machine = await owned_machine(machine_id, user)
    # The history first, then the state: an event is stored and merged in one
    # transaction, so the state read second includes every event listed (read
    # the other way round, an event stored between the two reads would be
    # listed while the state did not show it yet).
    history = await crud_telemetry.list_history(machine.id, page.limit, page.offset)
    status = await crud_telemetry.get_status(machine.id)
    latest = None
    if status is not None:
        fields = json.loads(status.fields or "{}")
        latest = {
            "last_seen_at": status.last_seen_at,
            "beacon_at": status.beacon_at,
            "fields": {key: entry["value"] for key, entry in fields.items()},
            "field_times": {key: entry["at"] for key, entry in fields.items()},
            "cash_level_minor": status.cash_level_minor,
            "currency": status.currency,
            "firmware_version": status.firmware_version,
            "fleet_at": status.fleet_at,
            "fleet_snapshot": (
                json.loads(status.fleet_snapshot) if status.fleet_snapshot else None
            ),
        }
    [machine_with] = await health.with_presence([machine], user.id)
    return {
        "machine_id": machine.id,
        "online": machine_with.online,
        "last_seen_at": machine_with.last_seen_at,
        "latest": latest,
        "history": history,
    }


@telemetry_router.get("/health/machines")
async def api_machines_health(
    user: User = Depends(check_user_exists),
) -> list[dict[str, Any]]:
    """Health of each of the operator's machines."""
    machines = await crud.list_machines(user.id, 1000)
    return await health.machine_health(machines, user.id)


def _relays_body(settings: Any) -> dict[str, Any]:
    return {
        "relays": settings.relays,
        "offline_after_minutes": settings.offline_after_seconds // 60,
        "low_cassette_bills": settings.low_cassette_bills,
        "status": relays.relay_status(settings.relays),
    }


@telemetry_router.get("/relays")
async def api_get_relays(user: User = Depends(check_user_exists)) -> dict[str, Any]:
    """The relays the operator's machines report to, the offline threshold
    and the low-cassette level, and each relay connection's state."""
    return _relays_body(await crud_telemetry.get_settings(user.id))


@telemetry_router.put("/relays")
async def api_set_relays(
    data: SetRelaysData, user: User = Depends(check_user_exists)
) -> dict[str, Any]:
    settings = await crud_telemetry.get_settings(user.id)
    settings.relays = list(dict.fromkeys(data.relays))
    if data.offline_after_minutes is not None:
        settings.offline_after_seconds = data.offline_after_minutes * 60
    if data.low_cassette_bills is not None:
        settings.low_cassette_bills = data.low_cassette_bills
    await crud_telemetry.save_settings(settings)
    await relays.sync()  # connect (or disconnect) now, not at the next resync
    return _relays_body(settings)


@telemetry_router.get("/overview")
async def api_overview(
    days: int = Query(30, ge=1, le=365, description="length of the sales series"),
    user: User = Depends(check_user_exists),
) -> dict[str, Any]:
    """Sales, commission, LP liabilities, sats held in machine wallets, what
    needs attention and a daily series per machine; the super user also gets
    ``platform``: counts and sums across every operator."""
    body = await overview.overview(user.id, days)
    body["platform"] = await overview.platform_totals(days) if user.super_user else None
    return body


@telemetry_router.get("/health")
async def api_health(user: User = Depends(check_user_exists)) -> dict[str, Any]:
    """Workers, queues, last recovery, stuck and awaiting-funds counts,
    machines online, relays: the operator's own, or the whole instance for
    the super user."""
    return await health.instance_health(None if user.super_user else user.id)
