"""The LP's side (issue 14): invites to a machine, the LP's own preferences on
each position, and the numbers of its dashboard.

Who decides what on a position:
- the operator: status (active/inactive) and the name (``username``);
- the LP, once it has set its preferences (by accepting an invite, or with
  ``PUT /lp/positions/{id}``): the receiving wallet, flow or fixed mode, the
  fixed daily limit and autoforward. From then on the operator's
  ``PUT /clients/{id}`` refuses to change those (409 naming the fields).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_FLOOR, Decimal, localcontext
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lnbits.core.crud import get_account, get_account_by_username
from lnbits.utils import exchange_rates
from loguru import logger

from . import crud, crud_lp
from .calculations import (
    SATS_PER_BTC,
    from_minor_units,
    minor_units,
    quantize_fiat,
    to_minor_units,
)
from .errors import Conflict, Invalid, NotFound
from .models import (
    DcaClient,
    Invite,
    LpPositionPreferences,
    LpPreferences,
    Machine,
    UpdateClientData,
    UpdateLpPositionData,
    utc_now,
)
from .views_api_helpers import check_precision, check_wallet_of

INVITE_TTL = timedelta(days=7)
INVITE_CODE_BYTES = 18  # 24 url-safe characters
DEFAULT_MAX_DAILY_LIMIT = Decimal(2000)
LP_OWNED_FIELDS = ("wallet_id", "dca_mode", "fixed_mode_daily_limit")


# --- the operator's maximum fixed daily limit ------------------------------------


async def _schedule(machine: Machine) -> dict | None:
    """The fixed-schedule feature's schedule for ``machine`` (issue 11's table
    ``fixed_schedules``), or None while that feature is not there."""
    if not await crud_lp.table_exists("fixed_schedules"):
        return None
    try:
        return await crud_lp.fixed_schedule(machine.operator_user_id, machine.id)
    except Exception:  # its schema is not the one assumed here
        logger.exception("satmachineadmin: could not read fixed_schedules")
        return None


async def max_daily_limit_for(machine: Machine) -> Decimal:
    """The most an LP at ``machine`` may buy per day in fixed mode, in the
    machine's currency: the operator's fixed schedule's maximum when that
    feature (table ``fixed_schedules``) is there, else 2 000."""
    schedule = await _schedule(machine)
    if schedule is None or schedule.get("max_daily_limit") is None:
        return DEFAULT_MAX_DAILY_LIMIT
    try:
        maximum = Decimal(str(schedule["max_daily_limit"]))
    except ArithmeticError:
        return DEFAULT_MAX_DAILY_LIMIT
    return maximum if maximum.is_finite() and maximum > 0 else DEFAULT_MAX_DAILY_LIMIT


async def next_fixed_buy(
    client: DcaClient, machine: Machine, balance_left: Decimal, now: datetime
) -> dict | None:
    """The next fixed-mode buy of a position: the next slot of its machine's
    schedule and the fiat it buys, min(daily limit / slots, balance left)
    rounded down to the minor unit. None while no schedule is known."""
    schedule = await _schedule(machine)
    if schedule is None:
        return None
    try:
        times = sorted(json.loads(schedule["times"] or "[]"))
        tz = ZoneInfo(schedule["timezone"])
    except (ValueError, TypeError, KeyError, ZoneInfoNotFoundError):
        return None
    if not times:
        return None
    local_now = now.astimezone(tz)
    at = None
    for days in range(0, 3):
        day = local_now.date() + timedelta(days=days)
        for hhmm in times:
            hour, minute = (int(x) for x in hhmm.split(":"))
            slot = datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)
            if slot > local_now:
                at = slot
                break
        if at is not None:
            break
    if at is None:
        return None
    maximum = await max_daily_limit_for(machine)
    limit = (
        from_minor_units(client.fixed_mode_daily_limit_minor, machine.currency)
        if (client.fixed_mode_daily_limit_minor is not None)
        else maximum
    )
    per_slot = min(limit, maximum) / len(times)
    fiat = min(quantize_down(per_slot, machine.currency), balance_left)
    return {
        "at": at.astimezone(timezone.utc),
        "local_time": at.isoformat(),
        "fiat_amount": fiat,
        "currency": machine.currency,
    }


def quantize_down(amount: Decimal, currency: str) -> Decimal:
    exponent = Decimal(1).scaleb(-minor_units(currency))
    return amount.quantize(exponent, rounding=ROUND_FLOOR)


# --- invites ----------------------------------------------------------------------


def new_invite_code() -> str:
    return secrets.token_urlsafe(INVITE_CODE_BYTES)


async def create_invite(
    machine: Machine, operator_user_id: str, username: str | None
) -> Invite:
    user_id = None
    if username is not None:
        account = await get_account_by_username(username)
        if account is None:
            raise Invalid("username", "no LNbits user has this username")
        user_id = account.id
        if await crud.get_client_by_machine_user(machine.id, user_id) is not None:
            raise Conflict("username: the user already has a position at this machine")
    invite = Invite(
        id=crud.new_id(),
        code=new_invite_code(),
        machine_id=machine.id,
        operator_user_id=operator_user_id,
        username=username,
        user_id=user_id,
        expires_at=utc_now() + INVITE_TTL,
    )
    return await crud_lp.create_invite(invite)


async def invite_for(code: str, user_id: str) -> tuple[Invite, Machine]:
    """An invite the caller may see and accept: one bound to another user is
    simply not found. A used or expired one says so."""
    invite = await crud_lp.get_invite_by_code(code)
    if invite is None or (invite.user_id is not None and invite.user_id != user_id):
        raise NotFound("Invite not found.")
    if invite.accepted_at is not None:
        raise Conflict("the invite has already been used")
    if invite.expires_at <= utc_now():
        raise Conflict("the invite has expired")
    machine = await crud.get_machine(invite.machine_id)
    if machine is None:
        raise NotFound("Invite not found.")
    return invite, machine


async def operator_username(operator_user_id: str) -> str | None:
    account = await get_account(operator_user_id)
    return account.username if account else None


async def accept_invite(code: str, user_id: str, wallet_id: str) -> DcaClient:
    invite, machine = await invite_for(code, user_id)
    await check_wallet_of(wallet_id, user_id, "wallet_id")
    if await crud.get_client_by_machine_user(machine.id, user_id) is not None:
        raise Conflict("you already have a position at this machine")
    account = await get_account(user_id)
    client = DcaClient(
        id=crud.new_id(),
        machine_id=machine.id,
        operator_user_id=machine.operator_user_id,
        user_id=user_id,
        wallet_id=wallet_id,
        username=account.username if account else None,
    )
    preferences = LpPreferences(client_id=client.id, user_id=user_id)
    if not await crud_lp.accept_invite(invite, client, preferences):
        raise Conflict("the invite has already been used")
    return client


# --- the LP's preferences ------------------------------------------------------------


async def lp_client(client_id: str, user_id: str) -> DcaClient:
    """One of the caller's own positions; anyone else's is not found."""
    client = await crud.get_client(client_id)
    if client is None or client.user_id != user_id:
        raise NotFound("Position not found.")
    return client


async def position_preferences(
    client: DcaClient, preferences: LpPreferences | None = None
) -> LpPositionPreferences:
    machine = await crud.get_machine(client.machine_id)
    if machine is None:
        raise NotFound("Position not found.")
    if preferences is None:
        preferences = await crud_lp.get_preferences(client.id)
    limit = client.fixed_mode_daily_limit_minor
    return LpPositionPreferences(
        client_id=client.id,
        machine_id=client.machine_id,
        wallet_id=client.wallet_id,
        dca_mode=client.dca_mode,
        fixed_mode_daily_limit=(
            None if limit is None else from_minor_units(limit, machine.currency)
        ),
        max_fixed_mode_daily_limit=await max_daily_limit_for(machine),
        currency=machine.currency,
        status=client.status,
        lp_managed=preferences is not None,
        **(
            preferences.dict(
                include={
                    "autoforward_enabled",
                    "autoforward_address",
                    "autoforward_threshold_sats",
                    "autoforward_failures",
                    "autoforward_next_try_at",
                    "autoforward_last_error",
                }
            )
            if preferences
            else {}
        ),
        updated_at=client.updated_at,
    )


async def update_lp_position(
    client: DcaClient, data: UpdateLpPositionData
) -> LpPositionPreferences:
    machine = await crud.get_machine(client.machine_id)
    if machine is None:
        raise NotFound("Position not found.")
    current = await crud_lp.get_preferences(client.id)
    prefs = current or LpPreferences(client_id=client.id, user_id=client.user_id)
    fields = data.dict(exclude_unset=True)
    if data.wallet_id is not None:
        await check_wallet_of(data.wallet_id, client.user_id, "wallet_id")
        client.wallet_id = data.wallet_id
    if data.dca_mode is not None:
        client.dca_mode = data.dca_mode
    if "fixed_mode_daily_limit" in fields:
        client.fixed_mode_daily_limit_minor = await _daily_limit_minor(
            data.fixed_mode_daily_limit, machine
        )
    _apply_autoforward(prefs, data, fields)
    await crud_lp.save_position_and_preferences(client, prefs, new=current is None)
    return await position_preferences(client, prefs)


async def _daily_limit_minor(limit: Decimal | None, machine: Machine) -> int | None:
    if limit is None:
        return None
    check_precision(limit, machine.currency, "fixed_mode_daily_limit")
    maximum = await max_daily_limit_for(machine)
    if limit > maximum:
        raise Invalid(
            "fixed_mode_daily_limit",
            f"must be at most {maximum} {machine.currency}, the operator's maximum",
        )
    return to_minor_units(limit, machine.currency)


def _apply_autoforward(
    prefs: LpPreferences, data: UpdateLpPositionData, fields: dict[str, Any]
) -> None:
    if "autoforward_address" in fields:
        prefs.autoforward_address = data.autoforward_address
    if data.autoforward_threshold_sats is not None:
        prefs.autoforward_threshold_sats = data.autoforward_threshold_sats
    if data.autoforward_enabled is not None:
        prefs.autoforward_enabled = data.autoforward_enabled
    if prefs.autoforward_enabled:
        if not prefs.autoforward_address:
            raise Invalid("autoforward_address", "is needed to turn autoforward on")
        if prefs.autoforward_threshold_sats is None:
            raise Invalid(
                "autoforward_threshold_sats", "is needed to turn autoforward on"
            )
    # A change of settings is a fresh start for the retries.
    prefs.autoforward_failures = 0
    prefs.autoforward_next_try_at = None
    prefs.autoforward_last_error = None


async def refuse_lp_owned_changes(client: DcaClient, data: UpdateClientData) -> None:
    """The operator's ``PUT /clients/{id}`` on a position its LP manages may
    still change status and name, not what the LP set (409 naming them).
    Sending a field's current value is not a change."""
    if await crud_lp.get_preferences(client.id) is None:
        return
    machine = await crud.get_machine(client.machine_id)
    currency = machine.currency if machine else "XXX"
    limit = data.fixed_mode_daily_limit
    changed = [
        name
        for name, differs in (
            ("wallet_id", data.wallet_id not in (None, client.wallet_id)),
            ("dca_mode", data.dca_mode not in (None, client.dca_mode)),
            (
                "fixed_mode_daily_limit",
                limit is not None
                and to_minor_units(limit, currency)
                != client.fixed_mode_daily_limit_minor,
            ),
        )
        if differs
    ]
    if changed:
        raise Conflict(
            f"{', '.join(changed)}: set by the LP, who manages this position's "
            "preferences; the operator can change status and username only"
        )


# --- the dashboard -------------------------------------------------------------------

PRICE_TTL_SECONDS = 60
PRICE_TIMEOUT_SECONDS = 5
_prices: dict[str, tuple[float, Decimal | None]] = {}


async def btc_price(currency: str) -> Decimal | None:
    """LNbits' price of 1 BTC in ``currency`` (cached a minute); None when
    LNbits has no rate for it (never an error)."""
    cached = _prices.get(currency)
    if cached is not None and time.monotonic() - cached[0] < PRICE_TTL_SECONDS:
        return cached[1]
    price: Decimal | None = None
    try:
        value = await asyncio.wait_for(
            exchange_rates.btc_price(currency), PRICE_TIMEOUT_SECONDS
        )
        if value and value > 0:
            price = Decimal(str(value))
    except Exception as exc:  # no provider, no network, unknown currency
        logger.info(f"satmachineadmin: no BTC price in {currency}: {exc}")
    _prices[currency] = (time.monotonic(), price)
    return price


def average_price(fiat_minor: int, sats: int, currency: str) -> Decimal | None:
    """Fiat paid per BTC, to the currency's minor unit; None without sats."""
    if sats <= 0:
        return None
    with localcontext() as ctx:
        ctx.prec = 50
        per_btc = from_minor_units(fiat_minor, currency) * SATS_PER_BTC / sats
    return quantize_fiat(per_btc, currency)


def value_at(sats: int, price: Decimal | None, currency: str) -> Decimal | None:
    if price is None:
        return None
    with localcontext() as ctx:
        ctx.prec = 50
        return quantize_fiat(Decimal(sats) * price / SATS_PER_BTC, currency)


def _purchase(leg: Any) -> dict[str, Any] | None:
    if leg is None:
        return None
    return {
        "id": leg.id,
        "amount_sats": leg.amount_sats,
        "fiat_amount": leg.fiat_amount,
        "currency": leg.currency,
        "price": leg.price,
        "created_at": leg.created_at,
    }


async def dashboard(user_id: str, history: int = 10) -> dict[str, Any]:
    """The LP's positions with their numbers, and totals (sats across all;
    fiat per currency, since positions may be in different currencies)."""
    clients = await crud.list_clients_for_user(user_id)
    ids = [c.id for c in clients]
    machines = await crud.get_machines_by_ids([c.machine_id for c in clients])
    sums = await crud_lp.dashboard_aggregates(ids)
    last = await crud_lp.last_purchases(ids)
    prefs = await crud_lp.get_preferences_many(ids)
    forwards = await crud_lp.list_forwards(ids, history * max(len(ids), 1))
    waiting = {
        cid: await autoforward_waiting_sats(client)
        for client in clients
        if (cid := client.id) in prefs and prefs[cid].autoforward_enabled
    }
    prices = {
        cur: await btc_price(cur)
        for cur in sorted({m.currency for m in machines.values()})
    }
    positions = []
    for client in clients:
        machine = machines.get(client.machine_id)
        if machine is None or client.id not in sums:
            continue
        positions.append(
            await _position_numbers(
                client,
                machine,
                sums[client.id],
                last.get(client.id),
                prefs.get(client.id),
                [f for f in forwards if f["client_id"] == client.id][:history],
                prices.get(machine.currency),
                waiting.get(client.id),
            )
        )
    return {
        "totals": _totals(positions, prices),
        "positions": positions,
        "generated_at": utc_now(),
    }


async def _position_numbers(
    client: DcaClient,
    machine: Machine,
    sums: dict[str, int],
    last: Any,
    prefs: LpPreferences | None,
    forwards: list[dict[str, Any]],
    price: Decimal | None,
    waiting_sats: int | None,
) -> dict[str, Any]:
    cur = machine.currency
    deposited = from_minor_units(sums["deposited"], cur)
    charged = from_minor_units(sums["charged"], cur)
    spent = from_minor_units(sums["fiat"], cur)
    value = value_at(sums["sats"], price, cur)
    return {
        "client_id": client.id,
        "machine_id": machine.id,
        "machine_name": machine.name,
        "currency": cur,
        "status": client.status,
        "dca_mode": client.dca_mode,
        "wallet_id": client.wallet_id,
        "lp_managed": prefs is not None,
        "sats_stacked": sums["sats"],
        "total_deposited": deposited,
        "pending_deposits": from_minor_units(sums["pending"], cur),
        "balance_left": max(deposited - charged, Decimal(0)),
        "fiat_spent": spent,
        "purchases_count": sums["purchases"],
        "last_purchase": _purchase(last),
        "average_price": average_price(sums["fiat"], sums["sats"], cur),
        "current_price": price,
        "current_value": value,
        "gain": None if value is None else value - spent,
        "gain_pct": (
            None
            if value is None or spent == 0
            else ((value - spent) / spent * 100).quantize(Decimal("0.01"))
        ),
        "next_fixed_buy": (
            await next_fixed_buy(
                client, machine, max(deposited - charged, Decimal(0)), utc_now()
            )
            if client.dca_mode == "fixed" and client.status == "active"
            else None
        ),
        "autoforward": {
            "enabled": bool(prefs and prefs.autoforward_enabled),
            "address": prefs.autoforward_address if prefs else None,
            "threshold_sats": prefs.autoforward_threshold_sats if prefs else None,
            "forwarded_sats": sums["forwarded"],
            "waiting_sats": waiting_sats,
            "failures": prefs.autoforward_failures if prefs else 0,
            "next_try_at": prefs.autoforward_next_try_at if prefs else None,
            "last_error": prefs.autoforward_last_error if prefs else None,
            "history": [
                {k: v for k, v in f.items() if k != "client_id"} for f in forwards
            ],
        },
    }


async def autoforward_waiting_sats(client: DcaClient) -> int:
    """DCA sats in the position's wallet not forwarded yet (what the next
    forward takes once it reaches the threshold)."""
    ledger = await crud_lp.forward_ledger(client.id, client.wallet_id)
    return max(ledger["inbound"] - ledger["forwarded"], 0)


def _totals(
    positions: list[dict[str, Any]], prices: dict[str, Decimal | None]
) -> dict[str, Any]:
    by_currency: dict[str, dict[str, Any]] = {}
    for p in positions:
        t = by_currency.setdefault(
            p["currency"],
            {
                "currency": p["currency"],
                "sats_stacked": 0,
                "total_deposited": Decimal(0),
                "pending_deposits": Decimal(0),
                "balance_left": Decimal(0),
                "fiat_spent": Decimal(0),
                "purchases_count": 0,
            },
        )
        t["sats_stacked"] += p["sats_stacked"]
        for k in ("total_deposited", "pending_deposits", "balance_left", "fiat_spent"):
            t[k] += p[k]
        t["purchases_count"] += p["purchases_count"]
    rows = []
    for cur, t in sorted(by_currency.items()):
        spent_minor = to_minor_units(t["fiat_spent"], cur)
        value = value_at(t["sats_stacked"], prices.get(cur), cur)
        t["average_price"] = average_price(spent_minor, t["sats_stacked"], cur)
        t["current_value"] = value
        t["gain"] = None if value is None else value - t["fiat_spent"]
        rows.append(t)
    last = [p["last_purchase"] for p in positions if p["last_purchase"]]
    return {
        "sats_stacked": sum(p["sats_stacked"] for p in positions),
        "purchases_count": sum(p["purchases_count"] for p in positions),
        "forwarded_sats": sum(p["autoforward"]["forwarded_sats"] for p in positions),
        "last_purchase": max(last, key=lambda x: x["created_at"]) if last else None,
        "by_currency": rows,
    }


RANGES = {"7d": 7, "30d": 30, "90d": 90, "1y": 365, "all": None}


async def series(
    user_id: str, client_id: str | None, range_: str, now: datetime | None = None
) -> dict[str, Any]:
    """Cumulative sats (and fiat spent, for one position) per UTC day."""
    if client_id is not None:
        clients = [await lp_client(client_id, user_id)]
    else:
        clients = await crud.list_clients_for_user(user_id)
    machines = await crud.get_machines_by_ids([c.machine_id for c in clients])
    currencies = {m.currency for m in machines.values()}
    currency = currencies.pop() if len(currencies) == 1 else None
    days = RANGES[range_]
    now = now or utc_now()
    since = None
    if days is not None:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        since = start - timedelta(days=days - 1)
    points: list[dict[str, Any]] = []
    base = {"sats": 0, "fiat": 0}
    if clients:
        base, rows = await crud_lp.purchase_series([c.id for c in clients], since)
        sats, fiat = base["sats"], base["fiat"]
        for row in rows:
            sats += row["sats"]
            fiat += row["fiat"]
            points.append(
                {
                    "date": _date(row["day"]),
                    "sats": row["sats"],
                    "purchases": row["n"],
                    "cumulative_sats": sats,
                    "fiat": from_minor_units(row["fiat"], currency)
                    if currency
                    else None,
                    "cumulative_fiat": (
                        from_minor_units(fiat, currency) if currency else None
                    ),
                }
            )
    return {
        "client_id": client_id,
        "range": range_,
        "currency": currency,
        "since": since,
        "until": now.date().isoformat(),  # the range's last day (UTC)
        "start_sats": base["sats"],
        "start_fiat": from_minor_units(base["fiat"], currency) if currency else None,
        "points": points,
    }


EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _date(day: int) -> str:
    """An ISO date from days since the Unix epoch."""
    return date.fromordinal(EPOCH_ORDINAL + day).isoformat()
