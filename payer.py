"""Paying legs, exactly once.

A leg is paid by an LNbits internal transfer: an invoice on the destination
wallet, paid from the source wallet. Never paying twice rests on three facts:
- a leg is planned once per (settlement, round, leg type, destination): its
  idempotency key is UNIQUE;
- a leg is paid through one invoice only: the first invoice attached to it
  wins (``crud.attach_leg_invoices``), and it is attached before it is paid;
- LNbits pays an invoice once: a second payment of it is refused.
So after a crash anywhere, ``pay_legs`` first asks LNbits whether the leg's
invoice was paid, and pays only if it was not.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from lnbits.core.crud import get_standalone_payment
from lnbits.core.models import Payment
from lnbits.core.services import create_invoice, pay_invoice
from lnbits.exceptions import InvoiceError, PaymentError
from loguru import logger

from . import crud
from .bitspire import EXTRA_KEY, tag_for
from .models import DcaPayment, Machine, utc_now

CHUNK = 50  # legs whose invoices are attached, and outcomes written, together
INVOICE_EXPIRY_SECONDS = 30 * 24 * 3600  # a failed leg's retry reuses its invoice


class SimulatedCrash(BaseException):
    """Raised by tests at a checkpoint to stand for the process dying there."""


# Tests replace this to stop the pipeline at a named step, as a crash would.
checkpoint: Callable[[str], None] = lambda step: None  # noqa: E731


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
    legs: list[DcaPayment],
    machine: Machine,
    settlement_id: str | None,
    lease: timedelta | None = None,
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
            outcomes.append(failed(leg, f"could not create the invoice: {exc}"))
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
        elif await was_paid(leg):  # paid before a crash, not yet recorded
            outcomes.append(completed(leg))
            continue
        checkpoint("invoice_attached")
        outcomes.append(await _pay(leg, extra[leg.id]))
    await crud.record_leg_outcomes(outcomes, settlement_id, lease)
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
        if await was_paid(leg):  # e.g. "already paid": it was, by us
            return completed(leg)
        return failed(leg, str(exc) or exc.__class__.__name__)
    checkpoint("paid")
    return completed(leg)


async def was_paid(leg: DcaPayment) -> bool:
    if leg.payment_hash is None:
        return False
    payment = await get_standalone_payment(
        leg.payment_hash, wallet_id=leg.source_wallet_id
    )
    return payment is not None and payment.amount < 0 and payment.success


def completed(leg: DcaPayment) -> DcaPayment:
    leg.status = "completed"
    leg.error = None
    leg.attempts += 1
    leg.completed_at = utc_now()
    return leg


def failed(leg: DcaPayment, error: str) -> DcaPayment:
    logger.warning(f"satmachineadmin: {leg.leg_type} leg {leg.id} failed: {error}")
    leg.status = "failed"
    leg.error = error[:500]
    leg.attempts += 1
    return leg
