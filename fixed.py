"""Fixed mode: LPs buy a fixed fiat amount at the times of day the operator
set, at LNbits' exchange rate, paid by the same payer as sales.

The slot maths at the top is pure (values in, values out, an explicit clock).
A slot is named by the local date and time of day, "2026-12-01T09:00", in the
schedule's time zone; each LP's buy in it is one `dca` leg whose UNIQUE
idempotency key is ``fixed:<client id>:<local date>:<HH:MM>``, so a restart, a
second worker or a manual run never buys twice: the database row is the lock.

Time zones (``zoneinfo``): a slot's instant is its local time with ``fold=0``.
A local time that does not exist (spring forward, 02:30 in New York) maps to
the instant just after the gap; one that happens twice (fall back, 01:30) runs
at its first occurrence. Either way the slot has one name, so it runs once.
A slot missed while LNbits was down runs when it is back, the same local day
only: the scheduler looks at today's slots, never yesterday's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

from lnbits.core.crud import get_standalone_payment, get_wallet
from lnbits.db import Connection
from loguru import logger

from . import crud, crud_fixed, loops, notifications, payer, rates
from .calculations import SATS_PER_BTC, from_minor_units, minor_units
from .errors import Conflict, Invalid
from .models import (
    DcaClient,
    DcaPayment,
    FixedSchedule,
    FixedSlotRun,
    Machine,
    SlotPreview,
    SlotRunResult,
    utc_now,
)

# The clock the scheduler reads; tests replace it (an injectable clock).
clock: Callable[[], datetime] = utc_now

SHORT = "wallet short"
PAYMENT_FAILED = "payment failed"
RETRYABLE = (SHORT, PAYMENT_FAILED)
NOTHING_LEFT = "no balance left to buy with"


def now() -> datetime:
    return clock()


# --- pure slot maths ---------------------------------------------------------


def slot_instant(local_date: date, hhmm: str, tz: ZoneInfo) -> datetime:
    """The UTC instant of a slot (see the module docstring for DST)."""
    local = datetime.combine(local_date, time(int(hhmm[:2]), int(hhmm[3:])))
    return local.replace(tzinfo=tz, fold=0).astimezone(timezone.utc)


def local_today(at: datetime, tz: ZoneInfo) -> date:
    return at.astimezone(tz).date()


def due_slots(
    times: Sequence[str],
    tz: ZoneInfo,
    at: datetime,
    since: datetime | None = None,
) -> list[tuple[str, str]]:
    """Today's (local date, HH:MM) slots whose instant has come, in time order.
    Slots before ``since`` (when the schedule's times were set) are not due:
    they were never missed."""
    today = local_today(at, tz)
    due = []
    for hhmm in times:
        instant = slot_instant(today, hhmm, tz)
        if instant <= at and (since is None or instant >= since):
            due.append((instant, today.isoformat(), hhmm))
    return [(d, t) for _, d, t in sorted(due)]


def next_slot(
    times: Sequence[str], tz: ZoneInfo, at: datetime
) -> tuple[str, str, datetime] | None:
    """The first slot after ``at``: (local date, HH:MM, instant)."""
    if not times:
        return None
    today = local_today(at, tz)
    for day in (today, today + timedelta(days=1)):
        upcoming = sorted(
            (slot_instant(day, t, tz), t)
            for t in times
            if slot_instant(day, t, tz) > at
        )
        if upcoming:
            instant, hhmm = upcoming[0]
            return day.isoformat(), hhmm, instant
    return None


def slot_ref(local_date: str, hhmm: str) -> str:
    return f"{local_date}T{hhmm}"


def per_slot_fiat_minor(
    daily_limit_minor: int, slots_per_day: int, remaining_minor: int
) -> int:
    """min(daily limit / slots per day, remaining), down to the minor unit."""
    if slots_per_day <= 0 or daily_limit_minor <= 0 or remaining_minor <= 0:
        return 0
    return min(daily_limit_minor // slots_per_day, remaining_minor)


def sats_for_fiat(fiat_minor: int, currency: str, price: Decimal) -> int:
    """floor(fiat / price * 1e8), exactly."""
    if fiat_minor <= 0:
        return 0
    fiat = Fraction(fiat_minor, 10 ** minor_units(currency))
    return int(fiat * SATS_PER_BTC / Fraction(price))


def max_limit_minor(max_daily_limit: Decimal, currency: str) -> int:
    """The schedule's maximum in the machine's minor unit (rounded down)."""
    exponent = Decimal(1).scaleb(-minor_units(currency))
    floored = max_daily_limit.quantize(exponent, rounding=ROUND_FLOOR)
    return int(floored.scaleb(minor_units(currency)))


def daily_limit_minor(client: DcaClient, max_minor: int) -> int:
    """The LP's own limit, never above the maximum; the maximum when unset."""
    own = client.fixed_mode_daily_limit_minor
    return max_minor if own is None else min(own, max_minor)


# --- running a slot ----------------------------------------------------------

_locks: dict[str, asyncio.Lock] = {}


def _lock(machine_id: str) -> asyncio.Lock:
    return _locks.setdefault(machine_id, asyncio.Lock())


def _funds_key(machine_id: str) -> str:
    return f"fixed-slot-funds:{machine_id}"


def _rate_key(machine_id: str) -> str:
    return f"fixed-slot-rate:{machine_id}"


async def run_slot(
    machine: Machine, schedule: FixedSchedule, local_date: str, hhmm: str
) -> SlotRunResult:
    """Run one slot for one machine: buy for every active fixed-mode LP that
    has not bought in it yet; never twice for an LP (the legs' keys)."""
    async with _lock(machine.id):
        return await _run_slot(machine, schedule, local_date, hhmm)


async def _pay(legs: list[DcaPayment], machine: Machine) -> None:
    for start in range(0, len(legs), payer.CHUNK):
        outcomes = await payer.pay_legs(
            legs[start : start + payer.CHUNK], machine, None
        )
        failed = [leg for leg in outcomes if leg.status == "failed"]
        for leg in failed:
            leg.reason = f"{PAYMENT_FAILED}: {leg.error}"[:500]
        await crud_fixed.skip_failed_legs(failed)


def _todo(clients: list[DcaClient], legs: list[DcaPayment]) -> list[DcaClient]:
    by_client = {leg.client_id: leg for leg in legs}
    return [
        c
        for c in clients
        if c.id not in by_client or by_client[c.id].status == "skipped"
    ]


async def _run_slot(
    machine: Machine, schedule: FixedSchedule, local_date: str, hhmm: str
) -> SlotRunResult:
    ref = slot_ref(local_date, hhmm)
    slot = f"{ref}@{schedule.timezone}"
    run = await crud_fixed.get_slot_run(machine.id, ref) or FixedSlotRun(
        id=crud_fixed.run_id(machine.id, ref),
        machine_id=machine.id,
        operator_user_id=machine.operator_user_id,
        slot=slot,
        local_date=local_date,
        slot_time=hhmm,
    )
    run.runs += 1
    run.reason = None

    # Legs recorded before a crash and not known to be paid: paid first (the
    # payer asks LNbits before paying one that has an invoice).
    legs = await crud_fixed.get_slot_legs(machine.id, ref)
    pending = [leg for leg in legs if leg.status == "pending"]
    if pending:
        await _pay(pending, machine)

    short: tuple[int, int] | None = None  # (LPs, sats) not covered this run
    clients = await crud_fixed.get_fixed_clients(machine.id)
    if _todo(clients, legs):
        try:
            price = await rates.lnbits_price(machine.currency)
        except rates.NoRate as exc:
            run.status, run.reason = "incomplete", str(exc)
            await crud_fixed.save_slot_run(run)
            await notifications.problem_started(
                machine.operator_user_id,
                _rate_key(machine.id),
                f"{machine.name}: fixed-mode slot skipped, no exchange rate",
                f"Slot {slot}: {exc}. It is tried again while the day lasts.",
            )
            return SlotRunResult(run=run, legs=legs)
        await notifications.problem_cleared(
            machine.operator_user_id,
            _rate_key(machine.id),
            f"LNbits has a {machine.currency} rate again.",
        )
        run.price = price
        to_pay, short = await _record_buys(machine, schedule, ref, slot, price)
        if to_pay:
            await _pay(to_pay, machine)

    legs = await crud_fixed.get_slot_legs(machine.id, ref)
    retry = [
        leg
        for leg in legs
        if leg.status == "skipped" and (leg.reason or "").startswith(RETRYABLE)
    ]
    completed = [leg for leg in legs if leg.status == "completed"]
    run.status = "incomplete" if retry else "done"
    run.lps_bought = len(completed)
    run.lps_skipped = sum(leg.status == "skipped" for leg in legs)
    run.fiat_minor = sum(leg.fiat_amount_minor or 0 for leg in completed)
    run.sats = sum(leg.amount_sats for leg in completed)
    if retry:
        run.reason = retry[0].reason
    await crud_fixed.save_slot_run(run)

    short_legs = [leg for leg in retry if (leg.reason or "").startswith(SHORT)]
    if short_legs:
        lps, sats = short or (len(short_legs), 0)
        wallet = schedule.funding_wallet_id or machine.wallet_id
        await notifications.problem_started(
            machine.operator_user_id,
            _funds_key(machine.id),
            f"{machine.name}: wallet cannot cover a fixed-mode slot",
            f"Slot {slot}: {lps} LP(s) skipped"
            + (f", short by {sats} sats" if sats else "")
            + f". Top up wallet {wallet}; the slot is tried again today.",
        )
    else:
        await notifications.problem_cleared(
            machine.operator_user_id,
            _funds_key(machine.id),
            f"Slot {slot}: every fixed-mode LP is covered.",
        )
    return SlotRunResult(run=run, legs=legs)


async def _record_buys(
    machine: Machine, schedule: FixedSchedule, ref: str, slot: str, price: Decimal
) -> tuple[list[DcaPayment], tuple[int, int]]:
    """Plan and record, in one transaction, each due LP's buy (or its skip,
    with the reason). Returns the legs to pay and (LPs, sats) not covered."""
    local_date, hhmm = ref.split("T")
    source = schedule.funding_wallet_id or machine.wallet_id
    wallet = await get_wallet(source)
    available = wallet.balance_msat // 1000 if wallet is not None else 0
    currency = machine.currency
    max_minor = max_limit_minor(schedule.max_daily_limit, currency)
    slots_per_day = len(schedule.times) or 1
    to_pay: list[DcaPayment] = []
    short_lps = short_sats = 0
    dead = {
        leg.id
        for leg in await crud_fixed.get_slot_legs(machine.id, ref)
        if leg.status == "skipped" and await _dead_invoice(leg)
    }
    async with crud.transaction() as conn:
        await crud.lock_machine(machine.id, conn)
        legs = await crud_fixed.get_slot_legs(machine.id, ref, conn)
        by_client = {leg.client_id: leg for leg in legs}
        todo = _todo(await crud_fixed.get_fixed_clients(machine.id, conn), legs)
        balances = await crud.get_client_balances([c.id for c in todo], conn)
        for client in todo:
            existing = by_client.get(client.id)
            if existing is not None and existing.id in dead:
                existing.payment_hash = existing.payment_request = None
            if existing is not None and existing.payment_hash is not None:
                # Its transfer failed once: the same invoice, the same amount.
                fiat_minor = existing.fiat_amount_minor or 0
                sats, leg_price = existing.amount_sats, existing.price
            else:
                fiat_minor = per_slot_fiat_minor(
                    daily_limit_minor(client, max_minor),
                    slots_per_day,
                    _minor(balances[client.id].remaining_balance, currency),
                )
                if fiat_minor <= 0:  # nothing left to buy: not in this slot
                    if existing is not None and existing.reason != NOTHING_LEFT:
                        existing.reason = NOTHING_LEFT  # not retried any more
                        await crud._update(conn, "payments", existing, commit=False)
                    continue
                sats, leg_price = sats_for_fiat(fiat_minor, currency, price), price
            reason = None
            if sats < 1:
                reason = "buys less than one sat at this rate"
            elif sats > available:
                reason = f"{SHORT}: needs {sats} sats, {available} left"
                short_lps, short_sats = short_lps + 1, short_sats + sats - available
            else:
                available -= sats
            fiat = from_minor_units(fiat_minor, currency)
            leg = existing or DcaPayment(
                id=crud.new_id(),
                idempotency_key=f"fixed:{client.id}:{local_date}:{hhmm}",
                machine_id=machine.id,
                operator_user_id=machine.operator_user_id,
                client_id=client.id,
                leg_type="dca",
                amount_sats=0,
                currency=currency,
                source_wallet_id=source,
                destination_wallet_id=client.wallet_id,
                label="fixed",
                slot=slot,
            )
            leg.fiat_amount_minor = fiat_minor
            leg.price = leg_price
            leg.memo = f"DCA {format(fiat, ',')} {currency} (fixed, {slot})"[:600]
            if existing is None or existing.payment_hash is None:
                leg.source_wallet_id = source
            if await _write_leg(leg, existing, sats, reason, conn):
                to_pay.append(leg)
    return to_pay, (short_lps, short_sats)


async def _dead_invoice(leg: DcaPayment) -> bool:
    """A leg's invoice that LNbits will never pay (failed, e.g. by its start-up
    check after a restart) and that was not paid: it may be replaced."""
    if leg.payment_hash is None or await payer.was_paid(leg):
        return False
    invoice = await get_standalone_payment(leg.payment_hash, incoming=True)
    return invoice is None or invoice.failed


def _minor(amount: Decimal, currency: str) -> int:
    return int(amount.scaleb(minor_units(currency)))


async def _write_leg(
    leg: DcaPayment,
    existing: DcaPayment | None,
    sats: int,
    reason: str | None,
    conn: Connection,
) -> bool:
    """Record a buy (True: to be paid) or a skip with its reason (False)."""
    if reason is not None:
        leg.status, leg.reason, leg.amount_sats = "skipped", reason, 0
        if existing is None:
            await crud._insert(conn, "payments", leg, commit=False)
        elif existing.payment_hash is None:
            await crud._update(conn, "payments", leg, commit=False)
        return False
    leg.amount_sats, leg.reason, leg.status = sats, None, "pending"
    if existing is None:
        await crud._insert(conn, "payments", leg, commit=False)
        return True
    return await crud_fixed.rerun_skipped_leg(leg, conn)


async def resume_pending(machine_id: str | None = None) -> int:
    """Pay fixed-mode legs left pending by a crash (exactly once: the payer
    asks LNbits about any leg that already has an invoice)."""
    machines = {leg.machine_id for leg in await crud_fixed.list_pending_fixed_legs()}
    if machine_id is not None:
        machines &= {machine_id}
    resumed = 0
    for mid in sorted(machines):
        machine = await crud.get_machine(mid)
        if machine is None:
            continue
        async with _lock(mid):
            legs = await crud_fixed.list_pending_fixed_legs(mid)
            if legs:
                await _pay(legs, machine)
                resumed += len(legs)
    return resumed


async def tick(at: datetime | None = None) -> int:
    """One pass of the scheduler: resume cut-off buys, then run every slot of
    today that is due and not done. Returns the number of slot runs."""
    at = at or now()
    await resume_pending()
    runs = 0
    for machine in await crud_fixed.list_scheduled_machines():
        schedule = await crud_fixed.get_effective_schedule(
            machine.operator_user_id, machine.id
        )
        if schedule is None or not schedule.times:
            continue
        tz = ZoneInfo(schedule.timezone)
        due = due_slots(schedule.times, tz, at, schedule.times_since)
        if not due:
            continue
        done = await crud_fixed.done_slot_times(machine.id, due[0][0])
        for local_date, hhmm in due:
            if hhmm in done:
                continue
            try:
                await run_slot(machine, schedule, local_date, hhmm)
                runs += 1
            except Exception:  # one machine's trouble must not stop the others
                logger.exception(
                    f"satmachineadmin: fixed slot {local_date} {hhmm} "
                    f"of machine {machine.id} failed"
                )
    return runs


async def scheduler_loop() -> None:
    while True:
        try:
            await tick()
        except Exception:
            logger.exception("satmachineadmin: fixed-mode tick failed")
        await loops.pause("fixed")


# --- operator actions --------------------------------------------------------


async def run_slot_now(machine: Machine, hhmm: str | None) -> SlotRunResult:
    """The operator's "run this slot now": today's named slot, or the latest
    one due today. The same slot as the scheduler's, so never twice."""
    schedule = await crud_fixed.get_effective_schedule(
        machine.operator_user_id, machine.id
    )
    if schedule is None or not schedule.times:
        raise Conflict("the machine has no fixed-mode schedule")
    tz = ZoneInfo(schedule.timezone)
    at = now()
    today = local_today(at, tz).isoformat()
    if hhmm is not None:
        if hhmm not in schedule.times:
            raise Invalid(
                "slot", f"is not one of the schedule's times {schedule.times}"
            )
        return await run_slot(machine, schedule, today, hhmm)
    due = due_slots(schedule.times, tz, at)
    if not due:
        raise Conflict("no slot is due yet today; name one with 'slot'")
    local_date, latest = due[-1]
    return await run_slot(machine, schedule, local_date, latest)


async def preview(machine: Machine) -> SlotPreview:
    """What the machine's next slot would buy at LNbits' current rate."""
    result = SlotPreview(machine_id=machine.id, currency=machine.currency)
    schedule = await crud_fixed.get_effective_schedule(
        machine.operator_user_id, machine.id
    )
    if schedule is None or not schedule.times:
        result.reason = "no fixed-mode schedule"
        return result
    tz = ZoneInfo(schedule.timezone)
    upcoming = next_slot(schedule.times, tz, now())
    if upcoming is not None:
        result.slot = slot_ref(upcoming[0], upcoming[1])
        result.at = upcoming[2]
    result.timezone = schedule.timezone
    clients = await crud_fixed.get_fixed_clients(machine.id)
    balances = await crud.get_client_balances([c.id for c in clients])
    max_minor = max_limit_minor(schedule.max_daily_limit, machine.currency)
    amounts = []
    for client in clients:
        remaining = balances[client.id].remaining_balance
        fiat_minor = per_slot_fiat_minor(
            daily_limit_minor(client, max_minor),
            len(schedule.times),
            _minor(remaining, machine.currency),
        )
        if fiat_minor > 0:
            amounts.append(fiat_minor)
    result.lp_count = len(amounts)
    result.fiat = from_minor_units(sum(amounts), machine.currency)
    result.source_wallet_id = schedule.funding_wallet_id or machine.wallet_id
    wallet = await get_wallet(result.source_wallet_id)
    result.wallet_sats = wallet.balance_msat // 1000 if wallet is not None else 0
    try:
        result.price = await rates.lnbits_price(machine.currency)
    except rates.NoRate as exc:
        result.reason = str(exc)
        return result
    result.estimated_sats = sum(
        sats_for_fiat(a, machine.currency, result.price) for a in amounts
    )
    result.short_by_sats = max(0, result.estimated_sats - result.wallet_sats)
    return result
