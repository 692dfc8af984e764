"""Operator actions on settlements and LP positions: retry, partial
dispense, notes and balance settlement. They sit apart from the pipeline and
call into it (``distribution.process_held``, ``payer.pay_legs``)."""

from __future__ import annotations

from decimal import Decimal

from . import crud, rates
from .calculations import (
    SATS_PER_BTC,
    scale_for_partial_dispense,
    split_two_stage_commission,
    to_minor_units,
)
from .distribution import hold, process_held
from .errors import Conflict, Invalid, NotFound
from .models import DcaClient, DcaPayment, DcaSettlement, utc_now
from .payer import completed, pay_legs, was_paid
from .planner import INVALID_SALE


async def retry_settlement(settlement_id: str) -> DcaSettlement:
    """Pay an errored settlement's legs that have not completed."""
    settlement = await crud.get_settlement(settlement_id)
    if settlement is None:
        raise NotFound("settlement not found")
    if settlement.status != "errored":
        raise Conflict(
            f"only an errored settlement can be retried, not a {settlement.status} one"
        )
    if settlement.error and settlement.error.startswith(INVALID_SALE):
        raise Conflict(
            "the sale's data is invalid: record what was dispensed "
            "(partial-dispense) to distribute it"
        )
    await crud.reset_failed_legs(settlement.id)
    await crud.update_settlement(hold(settlement))
    return await process_held(settlement) or settlement


async def apply_partial_dispense(
    settlement_id: str,
    *,
    dispensed_fraction: Decimal | None,
    dispensed_sats: int | None,
    notes: str,
    author_user_id: str,
) -> DcaSettlement:
    """Scale a settlement to what the ATM really dispensed and distribute that.
    Refused once any leg completed: a Lightning payment cannot be taken back."""
    settlement = await crud.get_settlement(settlement_id)
    if settlement is None:
        raise NotFound("settlement not found")
    _check_partial_allowed(settlement, await _settle_unknown_legs(settlement.id))
    if dispensed_sats is not None and dispensed_sats > settlement.gross_sats:
        raise Invalid(
            "dispensed_sats", f"is more than the sale's {settlement.gross_sats} sats"
        )
    scaled = scale_for_partial_dispense(
        settlement.gross_sats,
        settlement.net_sats,
        settlement.commission_sats,
        settlement.fiat_amount,
        settlement.currency,
        fraction=dispensed_fraction,
        dispensed_sats=dispensed_sats,
    )
    config = await crud.get_super_config()
    platform, operator = split_two_stage_commission(
        scaled.commission_sats, config.super_fee_pct
    )
    fraction = (
        dispensed_fraction
        if dispensed_fraction is not None
        else Decimal(scaled.gross_sats) / Decimal(max(settlement.gross_sats, 1))
    )
    memo = (
        f"partial dispense ({fraction} of the sale): gross {settlement.gross_sats} -> "
        f"{scaled.gross_sats}, net {settlement.net_sats} -> {scaled.net_sats}, "
        f"commission {settlement.commission_sats} -> {scaled.commission_sats}, "
        f"fiat {settlement.fiat_amount} -> {scaled.fiat_amount}, platform fee "
        f"{settlement.platform_fee_sats} -> {platform} at {config.super_fee_pct}"
        + (f". {notes.strip()}" if notes.strip() else "")
    )
    settlement.net_sats = scaled.net_sats
    settlement.commission_sats = scaled.commission_sats
    settlement.platform_fee_sats = platform
    settlement.operator_fee_sats = operator
    settlement.super_fee_pct = config.super_fee_pct
    settlement.fiat_amount_minor = (
        None
        if scaled.fiat_amount is None
        else to_minor_units(scaled.fiat_amount, settlement.currency)
    )
    settlement.dispensed_fraction = fraction
    settlement.distribution_round += 1
    settlement.error = None
    async with crud.transaction() as conn:
        await crud.void_unpaid_legs(settlement.id, conn)
        await crud.update_settlement(hold(settlement), conn, commit=False)
    await crud.append_settlement_note(settlement.id, note_entry(author_user_id, memo))
    return await process_held(settlement) or settlement


async def _settle_unknown_legs(settlement_id: str) -> list[DcaPayment]:
    """A settlement's legs, with any whose invoice LNbits paid (a crash before
    it was recorded) marked completed first."""
    legs = await crud.get_legs(settlement_id)
    for i, leg in enumerate(legs):
        if leg.status in ("pending", "failed") and await was_paid(leg):
            legs[i] = await crud.update_leg(completed(leg))
    return legs


def _check_partial_allowed(settlement: DcaSettlement, legs: list[DcaPayment]) -> None:
    if any(leg.status == "completed" for leg in legs):
        raise Conflict(
            "a leg of this settlement has been paid and a Lightning payment cannot "
            "be taken back: partial dispense is refused"
        )
    if settlement.status == "processing":
        raise Conflict("the settlement is being processed; try again shortly")
    if settlement.dispensed_fraction is not None:
        raise Conflict("a partial dispense was already applied to this settlement")


def note_entry(author_user_id: str, text: str) -> str:
    stamp = utc_now().strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"[{stamp}] {author_user_id}: {text}"


async def append_settlement_note(
    settlement_id: str, note: str, author_user_id: str
) -> DcaSettlement:
    if await crud.get_settlement(settlement_id) is None:
        raise NotFound("settlement not found")
    note = note.strip()
    if not note or len(note) > 2000:
        raise Invalid("note", "must be 1 to 2000 characters")
    await crud.append_settlement_note(settlement_id, note_entry(author_user_id, note))
    settlement = await crud.get_settlement(settlement_id)
    assert settlement is not None  # noqa: S101
    return settlement


async def settle_client_balance(
    client: DcaClient,
    *,
    funding_wallet_id: str,
    exchange_rate: Decimal | None,
    amount_fiat: Decimal | None,
    notes: str | None,
) -> DcaPayment:
    """Pay an LP its remaining balance (or part of it) in sats, from an
    operator wallet, as a `settlement` leg that charges the balance."""
    machine = await crud.get_machine(client.machine_id)
    if machine is None:
        raise NotFound("machine not found")
    if exchange_rate is None:  # LNbits' own rate for the machine's currency
        try:
            exchange_rate = await rates.lnbits_price(machine.currency)
        except rates.NoRate as exc:
            raise Invalid("exchange_rate", f"{exc}; give one") from exc
    if exchange_rate <= 0:
        raise Invalid("exchange_rate", "must be positive")
    async with crud.transaction() as conn:
        await crud.lock_machine(machine.id, conn)
        balance = (await crud.get_client_balances([client.id], conn))[client.id]
        amount = balance.remaining_balance if amount_fiat is None else amount_fiat
        if amount <= 0:
            raise Conflict("the LP has no remaining balance to settle")
        if amount > balance.remaining_balance:
            raise Invalid(
                "amount_fiat",
                f"is more than the remaining {balance.remaining_balance} "
                f"{balance.currency}",
            )
        sats = int(amount * SATS_PER_BTC / exchange_rate)
        if sats <= 0:
            raise Invalid("amount_fiat", "buys less than one sat at this rate")
        leg = DcaPayment(
            id=crud.new_id(),
            idempotency_key=f"settle:{client.id}:{crud.new_id()}",
            machine_id=machine.id,
            operator_user_id=machine.operator_user_id,
            client_id=client.id,
            leg_type="settlement",
            amount_sats=sats,
            fiat_amount_minor=to_minor_units(amount, machine.currency),
            currency=machine.currency,
            price=exchange_rate,
            source_wallet_id=funding_wallet_id,
            destination_wallet_id=client.wallet_id,
            memo=(
                f"Balance settlement {format(amount, ',')} {machine.currency}"
                + (f": {notes}" if notes else "")
            )[:600],
        )
        await crud.insert_legs([leg], conn)
    [paid] = await pay_legs([leg], machine, None)
    if paid.status != "completed":
        paid.status = "voided"  # nothing was paid: the balance is not charged
        await crud.update_leg(paid)
        raise Conflict(f"the payout failed: {paid.error}")
    return paid
