"""Landing sales and paying their legs, exactly once.

A settlement's life: ``land_payment`` records it (UNIQUE payment_hash), then
``process_settlement`` claims it (one atomic conditional update), plans its
legs once (all recorded in one transaction before anything is paid), pays
each pending leg by an LNbits internal transfer, and closes it.

Never paying twice rests on three facts:
- a leg is planned once per (settlement, round, leg type, destination): the
  idempotency key is UNIQUE;
- a leg is paid through one invoice only: the first invoice attached to it
  wins (``attach_leg_invoices``), and it is attached before it is paid;
- LNbits pays an invoice once: a second payment of it is refused.
So after a crash anywhere, ``pay_legs`` first asks LNbits whether the leg's
invoice was paid, and pays only if it was not.

Sats that are not paid out stay in the machine wallet as ``skipped`` legs with
a reason, so the legs that are not voided always add up to the gross.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from lnbits.core.crud import get_standalone_payment, get_wallet
from lnbits.core.models import Payment
from lnbits.core.services import create_invoice, pay_invoice
from lnbits.exceptions import InvoiceError, PaymentError
from loguru import logger

from . import crud
from .bitspire import EXTRA_KEY, Sale, is_bitspire, is_sale, parse_sale, tag_for
from .calculations import (
    SATS_PER_BTC,
    allocate_dca,
    allocate_operator_split_legs,
    fiat_for_net,
    minor_units,
    price_per_sat,
    scale_for_partial_dispense,
    split_two_stage_commission,
    to_minor_units,
)
from .errors import Conflict, Invalid, NotFound
from .models import (
    DcaClient,
    DcaPayment,
    DcaSettlement,
    LegType,
    Machine,
    SettlementStatus,
    utc_now,
)

LEASE = timedelta(minutes=2)  # a worker's hold on a settlement it processes
CHUNK = 50  # legs whose invoices are attached, and outcomes written, together
INVOICE_EXPIRY_SECONDS = 30 * 24 * 3600  # a failed leg's retry reuses its invoice

# Reasons a leg's sats stay in the machine wallet.
NO_FEE_WALLET = "no platform fee wallet is set"
NO_SPLIT_RULES = "the operator has no commission split rules"
NO_PRICE = "the sale has no exchange rate or fiat amount"
NO_ELIGIBLE_LP = "no active flow-mode LP with a balance at this machine"
LP_BALANCE_EXHAUSTED = "LP balances cover less than the cash dispensed"
INVALID_SALE = "the sale's data is invalid"
NOT_DISPENSED = "not dispensed: held in the machine wallet for a refund"
SAME_WALLET = "the destination is the machine wallet itself"


class SimulatedCrash(BaseException):
    """Raised by tests at a checkpoint to stand for the process dying there."""


# Tests replace this to stop the pipeline at a named step, as a crash would.
checkpoint: Callable[[str], None] = lambda step: None  # noqa: E731


# --- landing -----------------------------------------------------------------


async def land_payment(payment: Payment) -> DcaSettlement | None:
    """Record a paid invoice as a settlement if it is a sale into an active
    machine's wallet. Idempotent: the same payment lands once."""
    if payment.amount <= 0 or not payment.success:
        return None
    machine = await crud.get_machine_by_wallet(payment.wallet_id)
    if machine is None or not machine.is_active:
        return None
    extra = payment.extra or {}
    fallback = machine.fallback_commission_pct is not None
    if not is_sale(
        amount_msat=payment.amount, memo=payment.memo, extra=extra, fallback=fallback
    ):
        return None
    if not is_bitspire(extra) and await _is_operator_top_up(payment, machine):
        return None
    sale = parse_sale(
        amount_msat=payment.amount,
        extra=extra,
        machine_npub=machine.npub,
        machine_currency=machine.currency,
        fallback_commission_pct=machine.fallback_commission_pct,
    )
    settlement, created = await crud.create_settlement_idempotent(
        await _settlement_for(sale, machine, payment)
    )
    if sale.error:
        # Every delivery makes sure of it: a crash right after landing must
        # not leave the gross unaccounted for.
        leg = _skipped(settlement, machine, "dca", settlement.gross_sats, INVALID_SALE)
        if await crud.insert_leg(leg):
            logger.warning(
                f"satmachineadmin: sale {payment.payment_hash} on machine "
                f"{machine.name} landed errored: {sale.error}"
            )
    elif created and sale.used_fallback_split:
        logger.warning(
            f"satmachineadmin: sale {payment.payment_hash} carries no bitSpire "
            "data; commission back-derived from the machine's fallback rate"
        )
    return settlement


async def _is_operator_top_up(payment: Payment, machine: Machine) -> bool:
    """A transfer from one of the operator's own LNbits wallets is a top-up."""
    outgoing = await get_standalone_payment(f"internal_{payment.payment_hash}")
    if outgoing is None or outgoing.amount >= 0:
        return False
    wallet = await get_wallet(outgoing.wallet_id)
    return wallet is not None and wallet.user == machine.operator_user_id


async def _settlement_for(
    sale: Sale, machine: Machine, payment: Payment
) -> DcaSettlement:
    config = await crud.get_super_config()
    platform, operator = split_two_stage_commission(
        sale.commission_sats, config.super_fee_pct
    )
    return DcaSettlement(
        id=crud.new_id(),
        machine_id=machine.id,
        operator_user_id=machine.operator_user_id,
        payment_hash=payment.payment_hash,
        txid=sale.txid,
        gross_sats=sale.gross_sats,
        net_sats=sale.net_sats,
        commission_sats=sale.commission_sats,
        platform_fee_sats=platform,
        operator_fee_sats=operator,
        super_fee_pct=config.super_fee_pct,
        fee_pct=sale.fee_pct,
        exchange_rate=sale.exchange_rate,
        fiat_amount_minor=(
            None
            if sale.fiat_amount is None
            else to_minor_units(sale.fiat_amount, sale.currency)
        ),
        currency=sale.currency,
        used_fallback_split=sale.used_fallback_split,
        bills=sale.bills,
        cassettes=sale.cassettes,
        status="errored" if sale.error else "pending",
        error=f"{INVALID_SALE}: {sale.error}" if sale.error else None,
        paid_at=payment.time,
    )


# --- processing --------------------------------------------------------------


async def process_settlement(settlement_id: str) -> DcaSettlement | None:
    """Pay what a settlement still owes, if this worker can claim it."""
    async with crud.connection() as conn:
        claimed = await crud.claim_settlement(settlement_id, LEASE, conn)
        settlement = await crud.get_settlement(settlement_id, conn)
        machine = None
        if claimed and settlement is not None:
            machine = await crud.get_machine(settlement.machine_id, conn)
    if settlement is None or machine is None:
        return settlement
    legs = await _planned_legs(settlement, machine)
    checkpoint("planned")
    pending = [leg for leg in legs if leg.status == "pending"]
    for start in range(0, len(pending), CHUNK):
        await pay_legs(pending[start : start + CHUNK], machine, settlement.id)
    checkpoint("before_finish")
    return await _finish(settlement.id)


async def _planned_legs(
    settlement: DcaSettlement, machine: Machine
) -> list[DcaPayment]:
    """This round's legs: planned and recorded once, all in one transaction,
    with the machine's LP balances locked while they are read and charged."""
    async with crud.transaction() as conn:
        await crud.lock_machine(machine.id, conn)
        legs = await crud.get_legs(settlement.id, settlement.distribution_round, conn)
        if not legs:
            legs = await _plan(settlement, machine, conn)
            await crud.insert_legs(legs, conn)
    return legs


async def _plan(
    settlement: DcaSettlement, machine: Machine, conn: crud.Connection
) -> list[DcaPayment]:
    legs: list[DcaPayment] = []
    undispensed = (
        settlement.gross_sats - settlement.net_sats - settlement.commission_sats
    )
    if undispensed > 0:
        legs.append(_skipped(settlement, machine, "refund", undispensed, NOT_DISPENSED))

    config = await crud.get_super_config(conn)
    if settlement.platform_fee_sats > 0:
        if config.super_fee_wallet_id:
            legs.append(
                _leg(
                    settlement,
                    machine,
                    "super_fee",
                    settlement.platform_fee_sats,
                    config.super_fee_wallet_id,
                    memo=f"Platform fee, ATM {machine.name} sale",
                )
            )
        else:
            legs.append(
                _skipped(
                    settlement,
                    machine,
                    "super_fee",
                    settlement.platform_fee_sats,
                    NO_FEE_WALLET,
                )
            )

    legs += await _operator_legs(settlement, machine, conn)
    legs += await _dca_legs(settlement, machine, conn)
    return legs


async def _operator_legs(
    settlement: DcaSettlement, machine: Machine, conn: crud.Connection
) -> list[DcaPayment]:
    total = settlement.operator_fee_sats
    if total == 0:
        return []
    rules = await crud.get_effective_commission_splits(
        machine.operator_user_id, machine.id, conn
    )
    if not rules:
        return [_skipped(settlement, machine, "operator_split", total, NO_SPLIT_RULES)]
    amounts = allocate_operator_split_legs(total, [rule.pct for rule in rules])
    return [
        _leg(
            settlement,
            machine,
            "operator_split",
            sats,
            rule.wallet_id,
            label=rule.label,
            memo=f"Commission {rule.label or 'split'}, ATM {machine.name} sale",
        )
        for rule, sats in zip(rules, amounts, strict=True)
        if sats > 0
    ]


async def _dca_legs(
    settlement: DcaSettlement, machine: Machine, conn: crud.Connection
) -> list[DcaPayment]:
    net = settlement.net_sats
    if net == 0:
        return []
    fiat = fiat_for_net(net, settlement.exchange_rate, settlement.fiat_amount)
    if fiat is None:
        return [_skipped(settlement, machine, "dca", net, NO_PRICE)]
    clients = {c.id: c for c in await crud.get_flow_clients(machine.id, conn)}
    balances = await crud.get_client_balances(list(clients), conn)
    remaining = {cid: b.remaining_balance for cid, b in balances.items()}
    allocation = allocate_dca(net, fiat, remaining, settlement.currency)
    price = price_per_sat(fiat, net)
    per_btc = (price * SATS_PER_BTC).quantize(Decimal("0.0001"), ROUND_HALF_EVEN)
    legs = [
        _leg(
            settlement,
            machine,
            "dca",
            share.sats,
            clients[share.key].wallet_id,
            client=clients[share.key],
            fiat=share.fiat,
            price=per_btc,
            memo=dca_memo(share.fiat, per_btc, settlement.currency),
        )
        for share in allocation.legs
    ]
    if allocation.leftover_sats:
        anyone = any(balance > 0 for balance in remaining.values())
        reason = LP_BALANCE_EXHAUSTED if anyone else NO_ELIGIBLE_LP
        legs.append(
            _skipped(settlement, machine, "dca", allocation.leftover_sats, reason)
        )
    return legs


def dca_memo(fiat: Decimal, per_btc: Decimal, currency: str) -> str:
    """``DCA 1,800.00 GTQ @ 772,114 GTQ/BTC``"""
    amount = format(fiat, f",.{minor_units(currency)}f")
    price = format(per_btc.quantize(Decimal(1), ROUND_HALF_EVEN), ",")
    return f"DCA {amount} {currency} @ {price} {currency}/BTC"


def _leg(
    settlement: DcaSettlement,
    machine: Machine,
    leg_type: LegType,
    sats: int,
    destination_wallet_id: str,
    *,
    client: DcaClient | None = None,
    fiat: Decimal | None = None,
    price: Decimal | None = None,
    label: str = "",
    memo: str = "",
) -> DcaPayment:
    if destination_wallet_id == machine.wallet_id:
        return _skipped(settlement, machine, leg_type, sats, SAME_WALLET)
    destination = client.id if client else destination_wallet_id
    return DcaPayment(
        id=crud.new_id(),
        idempotency_key=_key(settlement, leg_type, destination),
        settlement_id=settlement.id,
        distribution_round=settlement.distribution_round,
        machine_id=machine.id,
        operator_user_id=machine.operator_user_id,
        client_id=client.id if client else None,
        leg_type=leg_type,
        amount_sats=sats,
        fiat_amount_minor=(
            None if fiat is None else to_minor_units(fiat, settlement.currency)
        ),
        currency=settlement.currency if fiat is not None else None,
        price=price,
        source_wallet_id=machine.wallet_id,
        destination_wallet_id=destination_wallet_id,
        label=label,
        memo=memo,
    )


def _skipped(
    settlement: DcaSettlement,
    machine: Machine,
    leg_type: LegType,
    sats: int,
    reason: str,
) -> DcaPayment:
    return DcaPayment(
        id=crud.new_id(),
        idempotency_key=_key(settlement, leg_type, "machine"),
        settlement_id=settlement.id,
        distribution_round=settlement.distribution_round,
        machine_id=machine.id,
        operator_user_id=machine.operator_user_id,
        leg_type=leg_type,
        status="skipped",
        amount_sats=sats,
        source_wallet_id=machine.wallet_id,
        reason=reason,
        memo=f"Stays in the machine wallet: {reason}",
    )


def _key(settlement: DcaSettlement, leg_type: str, destination: str) -> str:
    return f"{settlement.id}:{settlement.distribution_round}:{leg_type}:{destination}"


# --- paying one leg ----------------------------------------------------------


def _transfer_extra(leg: DcaPayment, npub: str) -> dict:
    return {
        "tag": tag_for(npub),
        EXTRA_KEY: {
            "leg_id": leg.id,
            "leg_type": leg.leg_type,
            "settlement_id": leg.settlement_id,
        },
    }


async def pay_legs(
    legs: list[DcaPayment], machine: Machine, settlement_id: str | None
) -> list[DcaPayment]:
    """Pay pending legs, each unless LNbits says its invoice is already paid.

    Two writes of ours per chunk, not per leg: every new invoice is attached
    (in one transaction) before any is paid, and the outcomes are written
    together after. A crash in between leaves paid legs pending with their
    invoice attached, and the next run asks LNbits before paying them."""
    extra = {leg.id: _transfer_extra(leg, machine.npub) for leg in legs}
    outcomes: list[DcaPayment] = []
    new_invoices: dict[str, Payment] = {}
    for leg in legs:
        assert leg.destination_wallet_id, "a pending leg has a destination"  # noqa: S101
        if leg.payment_hash is not None:
            continue
        try:
            new_invoices[leg.id] = await create_invoice(
                wallet_id=leg.destination_wallet_id,
                amount=leg.amount_sats,
                memo=leg.memo,
                extra=extra[leg.id],
                internal=True,
                expiry=INVOICE_EXPIRY_SECONDS,
            )
        except (InvoiceError, ValueError) as exc:
            outcomes.append(_failed(leg, f"could not create the invoice: {exc}"))
        checkpoint("invoice_created")
    attached = await crud.attach_leg_invoices(
        [(leg_id, i.bolt11, i.payment_hash) for leg_id, i in new_invoices.items()]
    )

    for leg in legs:
        if leg.id in attached:
            invoice = new_invoices[leg.id]
            leg.payment_request, leg.payment_hash = invoice.bolt11, invoice.payment_hash
        elif leg.id in new_invoices:  # another worker's invoice won: pay that one
            reloaded = await crud.get_leg(leg.id)
            assert reloaded is not None  # noqa: S101
            leg = reloaded
        elif leg.payment_hash is None:
            continue  # its invoice could not be created: already failed
        elif await _was_paid(leg):  # paid before a crash, not yet recorded
            outcomes.append(_completed(leg))
            continue
        checkpoint("invoice_attached")
        outcomes.append(await _pay(leg, extra[leg.id]))
    await crud.record_leg_outcomes(outcomes, settlement_id, LEASE)
    return outcomes


async def _pay(leg: DcaPayment, extra: dict) -> DcaPayment:
    assert leg.payment_request is not None  # noqa: S101
    try:
        await pay_invoice(
            wallet_id=leg.source_wallet_id,
            payment_request=leg.payment_request,
            extra=extra,
            description=leg.memo,
        )
    except (PaymentError, InvoiceError, ValueError) as exc:
        if await _was_paid(leg):  # e.g. "already paid": it was, by us
            return _completed(leg)
        return _failed(leg, str(exc) or exc.__class__.__name__)
    checkpoint("paid")
    return _completed(leg)


async def _was_paid(leg: DcaPayment) -> bool:
    if leg.payment_hash is None:
        return False
    payment = await get_standalone_payment(
        leg.payment_hash, wallet_id=leg.source_wallet_id
    )
    return payment is not None and payment.amount < 0 and payment.success


def _completed(leg: DcaPayment) -> DcaPayment:
    leg.status = "completed"
    leg.error = None
    leg.attempts += 1
    leg.completed_at = utc_now()
    return leg


def _failed(leg: DcaPayment, error: str) -> DcaPayment:
    logger.warning(f"satmachineadmin: {leg.leg_type} leg {leg.id} failed: {error}")
    leg.status = "failed"
    leg.error = error[:500]
    leg.attempts += 1
    return leg


async def _finish(settlement_id: str) -> DcaSettlement | None:
    async with crud.transaction() as conn:
        settlement = await crud.get_settlement(settlement_id, conn)
        if settlement is None:
            return None
        legs = await crud.get_legs(settlement.id, settlement.distribution_round, conn)
        _close(settlement, legs)
        await crud.update_settlement(settlement, conn, commit=False)
    return settlement


def _close(settlement: DcaSettlement, legs: list[DcaPayment]) -> None:
    """A settlement's status once its legs have been tried."""
    if any(leg.status == "pending" for leg in legs):
        return  # cut off: resumed when the lease runs out
    failed = [leg for leg in legs if leg.status == "failed"]
    if failed:
        settlement.status = "errored"
        settlement.error = "; ".join(
            f"{leg.leg_type} leg of {leg.amount_sats} sats failed: {leg.error}"
            for leg in failed
        )[:2000]
    else:
        settlement.status = _done_status(settlement)
        settlement.error = None
        settlement.processed_at = utc_now()
    settlement.claimed_until = None


def _done_status(settlement: DcaSettlement) -> SettlementStatus:
    if settlement.dispensed_fraction is None:
        return "processed"
    if settlement.net_sats + settlement.commission_sats == 0:
        return "refunded"
    return "partial"


# --- operator actions --------------------------------------------------------


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
    settlement.status = "pending"
    await crud.update_settlement(settlement)
    return await process_settlement(settlement.id) or settlement


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
    settlement.status = "pending"
    settlement.error = None
    async with crud.transaction() as conn:
        await crud.void_unpaid_legs(settlement.id, conn)
        await crud.update_settlement(settlement, conn, commit=False)
    await crud.append_settlement_note(settlement.id, note_entry(author_user_id, memo))
    return await process_settlement(settlement.id) or settlement


async def _settle_unknown_legs(settlement_id: str) -> list[DcaPayment]:
    """A settlement's legs, with any whose invoice LNbits paid (a crash before
    it was recorded) marked completed first."""
    legs = await crud.get_legs(settlement_id)
    for i, leg in enumerate(legs):
        if leg.status in ("pending", "failed") and await _was_paid(leg):
            legs[i] = await crud.update_leg(_completed(leg))
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
    exchange_rate: Decimal,
    amount_fiat: Decimal | None,
    notes: str | None,
) -> DcaPayment:
    """Pay an LP its remaining balance (or part of it) in sats, from an
    operator wallet, as a `settlement` leg that charges the balance."""
    machine = await crud.get_machine(client.machine_id)
    if machine is None:
        raise NotFound("machine not found")
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
