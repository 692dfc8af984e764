"""Routes for fixed mode (schedules, slot runs, the next-slot preview) and the
operator's notifications (settings, the log, open problems)."""

from __future__ import annotations

import secrets
from decimal import Decimal
from http import HTTPStatus

from fastapi import APIRouter, Depends, Query
from lnbits.core.models import User
from lnbits.decorators import check_user_exists
from lnbits.helpers import check_callback_url

from . import crud, crud_fixed, crud_notifications, crud_telemetry, fixed
from .calculations import to_minor_units
from .errors import Invalid
from .models import (
    DcaClient,
    FixedSchedule,
    FixedSlotRun,
    Machine,
    NotificationLogEntry,
    NotificationSettings,
    NotificationSettingsOut,
    OpenProblem,
    RunSlotData,
    SetFixedScheduleData,
    SetNotificationSettingsData,
    SlotPreview,
    SlotRunResult,
)
from .views_api_helpers import (
    ERROR_RESPONSES,
    DcaRoute,
    Page,
    check_precision,
    check_wallet_of,
    owned_machine,
    page_params,
    refuse_unstorable_input,
)

fixed_router = APIRouter(
    route_class=DcaRoute,
    responses=ERROR_RESPONSES,
    dependencies=[Depends(refuse_unstorable_input)],
)


# --- schedules ---------------------------------------------------------------


async def check_limit_within_max(
    machine: Machine, limit: Decimal | None, field: str = "fixed_mode_daily_limit"
) -> None:
    """An LP's daily limit is never above its machine's schedule maximum."""
    if limit is None:
        return
    schedule = await crud_fixed.get_effective_schedule(
        machine.operator_user_id, machine.id
    )
    maximum = schedule.max_daily_limit if schedule else Decimal(2000)
    if limit > maximum:
        raise Invalid(field, f"is above the maximum daily limit {maximum}")


async def _machines_over(
    user: User, machine_id: str | None, maximum: Decimal
) -> list[DcaClient]:
    """Fixed-mode LPs whose limit would be above a new maximum."""
    clients = await crud.list_clients(user.id, machine_id, limit=1000)
    over = []
    machines: dict[str, Machine] = {}
    for client in clients:
        if client.fixed_mode_daily_limit_minor is None:
            continue
        if client.machine_id not in machines:
            machines[client.machine_id] = await owned_machine(client.machine_id, user)
        machine = machines[client.machine_id]
        if machine_id is None and await crud_fixed.get_schedule(user.id, machine.id):
            continue  # the machine has its own schedule
        if client.fixed_mode_daily_limit_minor > to_minor_units(
            maximum, machine.currency
        ):
            over.append(client)
    return over


@fixed_router.get("/fixed-schedule")
async def api_get_fixed_schedule(
    machine_id: str | None = None,
    effective: bool = Query(
        False, description="with machine_id: the override if set, else the default"
    ),
    user: User = Depends(check_user_exists),
) -> FixedSchedule | None:
    """The operator's default schedule, or one machine's override (null when
    none is set; with effective=true, what the scheduler applies)."""
    if machine_id is None:
        return await crud_fixed.get_schedule(user.id, None)
    machine = await owned_machine(machine_id, user)
    if effective:
        return await crud_fixed.get_effective_schedule(user.id, machine.id)
    return await crud_fixed.get_schedule(user.id, machine.id)


@fixed_router.put("/fixed-schedule")
async def api_set_fixed_schedule(
    data: SetFixedScheduleData, user: User = Depends(check_user_exists)
) -> FixedSchedule:
    """Set the default schedule (no machine_id) or a machine's override."""
    machine = None
    if data.machine_id is not None:
        machine = await owned_machine(data.machine_id, user)
        check_precision(data.max_daily_limit, machine.currency, "max_daily_limit")
    if data.funding_wallet_id is not None:
        await check_wallet_of(data.funding_wallet_id, user.id, "funding_wallet_id")
    over = await _machines_over(user, data.machine_id, data.max_daily_limit)
    if over:
        raise Invalid(
            "max_daily_limit",
            f"is below the daily limit of {len(over)} fixed-mode LP(s); "
            "lower theirs first",
        )
    existing = await crud_fixed.get_schedule(user.id, data.machine_id)
    schedule = FixedSchedule(
        id=crud_fixed.schedule_id(user.id, data.machine_id),
        operator_user_id=user.id,
        machine_id=machine.id if machine else None,
        times=data.times,
        timezone=data.timezone,
        max_daily_limit=data.max_daily_limit,
        funding_wallet_id=data.funding_wallet_id,
        times_since=fixed.now(),
    )
    if existing is not None:
        schedule.created_at = existing.created_at
        if existing.times == data.times and existing.timezone == data.timezone:
            schedule.times_since = existing.times_since
    return await crud_fixed.put_schedule(schedule)


@fixed_router.delete(
    "/fixed-schedule", status_code=HTTPStatus.NO_CONTENT, response_model=None
)
async def api_delete_fixed_schedule(
    machine_id: str | None = None, user: User = Depends(check_user_exists)
) -> None:
    """Remove the default schedule, or a machine's override (it then follows
    the default)."""
    if machine_id is not None:
        await owned_machine(machine_id, user)
    await crud_fixed.delete_schedule(user.id, machine_id)


# --- slots -------------------------------------------------------------------


@fixed_router.post("/machines/{machine_id}/fixed-slots/run")
async def api_run_fixed_slot(
    machine_id: str,
    data: RunSlotData | None = None,
    user: User = Depends(check_user_exists),
) -> SlotRunResult:
    """Run today's current slot (the latest due) or a named one ("09:00") now.
    The same slot as the scheduler's: an LP never buys twice in it."""
    machine = await owned_machine(machine_id, user)
    return await fixed.run_slot_now(machine, data.slot if data else None)


@fixed_router.get("/machines/{machine_id}/fixed-slots/preview")
async def api_preview_fixed_slot(
    machine_id: str, user: User = Depends(check_user_exists)
) -> SlotPreview:
    """The next slot: how many LPs buy, the fiat, the estimated sats at
    LNbits' rate, what the paying wallet holds and how much it is short."""
    return await fixed.preview(await owned_machine(machine_id, user))


@fixed_router.get("/machines/{machine_id}/fixed-slots")
async def api_list_fixed_slots(
    machine_id: str,
    page: Page = Depends(page_params),
    user: User = Depends(check_user_exists),
) -> list[FixedSlotRun]:
    """The machine's slot runs, newest first, with what they bought or why not."""
    machine = await owned_machine(machine_id, user)
    return await crud_fixed.list_slot_runs(machine.id, page.limit, page.offset)


# --- notifications -----------------------------------------------------------


async def _public(settings: NotificationSettings, secret: str | None = None):
    telemetry = await crud_telemetry.get_settings(settings.operator_user_id)
    return NotificationSettingsOut(
        webhook_url=settings.webhook_url,
        has_webhook_secret=settings.webhook_secret is not None,
        webhook_secret=secret,
        lnbits_channels=settings.lnbits_channels,
        stuck_after_minutes=settings.stuck_after_minutes,
        # the one offline threshold, shared with GET/PUT /relays
        offline_after_minutes=telemetry.offline_after_seconds // 60,
    )


@fixed_router.get("/notifications")
async def api_get_notifications(
    user: User = Depends(check_user_exists),
) -> NotificationSettingsOut:
    """The webhook and thresholds; the webhook secret is never shown again."""
    return await _public(await crud_notifications.get_settings(user.id))


@fixed_router.put("/notifications")
async def api_set_notifications(
    data: SetNotificationSettingsData, user: User = Depends(check_user_exists)
) -> NotificationSettingsOut:
    """Set the webhook and thresholds. A secret is made when a webhook is set
    without one, or on rotate_secret: this answer is the only one showing it."""
    url = (data.webhook_url or "").strip() or None
    if url is not None:
        try:
            check_callback_url(url)
        except ValueError as exc:
            raise Invalid("webhook_url", "is not an allowed http(s) URL") from exc
    settings = await crud_notifications.get_settings(user.id)
    secret = None
    if url is not None and (settings.webhook_secret is None or data.rotate_secret):
        secret = secrets.token_hex(32)
        settings.webhook_secret = secret
    elif data.rotate_secret:
        raise Invalid("rotate_secret", "needs a webhook_url")
    settings.webhook_url = url
    settings.lnbits_channels = data.lnbits_channels
    settings.stuck_after_minutes = data.stuck_after_minutes
    offline = data.offline_after_minutes
    await crud_notifications.put_settings(
        settings, None if offline is None else offline * 60
    )
    return await _public(settings, secret)


@fixed_router.get("/notifications/log")
async def api_notification_log(
    page: Page = Depends(page_params), user: User = Depends(check_user_exists)
) -> list[NotificationLogEntry]:
    """Every notification sent to the operator, newest first, with its time."""
    return await crud_notifications.list_log(user.id, page.limit, page.offset)


@fixed_router.get("/notifications/problems")
async def api_open_problems(
    user: User = Depends(check_user_exists),
) -> list[OpenProblem]:
    """The operator's problems still open."""
    return await crud_notifications.list_open_problems(operator_user_id=user.id)
