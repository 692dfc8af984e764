"""Paying legs, exactly once.

A leg is paid by an LNbits internal transfer: an invoice on the destination
wallet, paid from the source wallet. Never paying twice rests on three facts:
- a leg is planned once per (settlement, round, leg type, destination): its
  idempotency key is UNIQUE;
- a leg is paid through one invoice only: the first invoice attached to it
  wins (``crud.attach_leg_invoices``), and it is attached before it is paid;
- LNbits pays an invoice once: a second payment of it is refused.
So after a crash anywhere, ``pay_legs`` first asks LNbits what became of
the leg's invoice (one query per chunk, ``crud_payouts.get_transfers``):

- the destination's invoice is paid: the leg is completed;
- the source's internal payment succeeded but the destination's invoice is
  not paid (LNbits writes an internal transfer in two commits and the process
  died between them): the transfer is finished forward, as LNbits' own
  ``_pay_internal_invoice`` would have, and the leg records the repair;
- no payment from the source and LNbits failed the invoice (expired, or
  unknown to the funding source after a restart): it can never be paid, so
  the leg gets a fresh invoice (the old one is kept in ``leg_invoices``);
- otherwise the invoice is still payable and is paid.

A leg counts as completed only once the destination received it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

from lnbits.core.crud import update_payment
from lnbits.core.models import Payment, PaymentState
from lnbits.core.services import create_invoice, pay_invoice
from lnbits.core.services.payments import update_pending_payment
from lnbits.db import Connection
from lnbits.exceptions import InvoiceError, PaymentError
from loguru import logger

from . import crud, crud_payouts
from .bitspire import EXTRA_KEY, tag_for
from .models import DcaPayment, Machine, utc_now

CHUNK = 50  # legs whose invoices are attached, and outcomes written, together
INVOICE_EXPIRY_SECONDS = 30 * 24 * 3600  # a failed leg's retry reuses its invoice


PROCESS_STARTED = utc_now()


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
    then: Callable[[Connection], Awaitable[None]] | None = None,
) -> list[DcaPayment]:
    """Pay pending legs, each unless LNbits says it was already paid.

    Two writes of ours per chunk, not per leg: every new invoice is attached
    (in one transaction) before any is paid, and the outcomes are written
    together after. A crash in between leaves paid legs pending with their
    invoice attached, and the next run asks LNbits (one query for the chunk)
    before paying them. ``legs`` may have no settlement (``settlement_id``
    None) and any source wallet (a funding wallet). ``then`` runs in the
    transaction that records the outcomes (see ``crud.record_leg_outcomes``)."""
    extra = {leg.id: _transfer_extra(leg, machine.npub) for leg in legs}
    outcomes: list[DcaPayment] = []
    done: set[str] = set()  # legs with an outcome already
    keep = _Lease(settlement_id, lease)
    dead = await _settle_resumed(legs, outcomes, done)
    new_invoices = await _create_invoices(legs, done, dead, extra, outcomes, keep)
    attached = await crud.attach_leg_invoices(
        [
            (leg_id, i.bolt11, i.payment_hash)
            for leg_id, i in new_invoices.items()
            if leg_id not in dead
        ]
    )
    for leg in legs:
        if leg.id in dead and leg.id in new_invoices:
            invoice = new_invoices[leg.id]
            if await crud_payouts.replace_leg_invoice(
                leg, invoice.bolt11, invoice.payment_hash, dead[leg.id]
            ):
                attached.add(leg.id)
    for leg in legs:
        if leg.id in done:
            continue
        payable = await _payable(leg, attached, new_invoices)
        if payable is None:
            continue
        await keep.renew_if_due()
        checkpoint("invoice_attached")
        outcomes.append(await _pay(payable, extra[leg.id]))
    await crud.record_leg_outcomes(outcomes, settlement_id, lease, then)
    return outcomes


class _Lease:
    """Keeps a worker's claim on its settlement while it pays a chunk: renewed
    once a third of the lease has gone by (one small update), so a slow
    machine never lets the claim lapse under a live worker."""

    def __init__(self, settlement_id: str | None, lease: timedelta | None) -> None:
        self.settlement_id, self.lease = settlement_id, lease
        self.renewed = time.monotonic()

    async def renew_if_due(self) -> None:
        if self.settlement_id is None or self.lease is None:
            return
        if time.monotonic() - self.renewed < self.lease.total_seconds() / 3:
            return
        await crud_payouts.renew_lease(self.settlement_id, self.lease)
        self.renewed = time.monotonic()


async def _settle_resumed(
    legs: list[DcaPayment], outcomes: list[DcaPayment], done: set[str]
) -> dict[str, str]:
    """Legs that already have an invoice (a resumed run, a retry): ask LNbits,
    in one query, what became of it. Completes the received and the repaired
    ones; returns the legs whose invoice can never be paid, with why."""
    dead: dict[str, str] = {}
    resumed = [leg for leg in legs if leg.payment_hash is not None]
    if not resumed:
        return dead
    states = await _inspect(resumed)
    if await _check_pending_invoices(states):  # LNbits changed some: read again
        states = await _inspect(resumed)
    for leg, state in states:
        if state.half_done:
            await _repair(leg, state)
        if state.received or state.half_done:
            outcomes.append(completed(leg))
            done.add(leg.id)
        elif state.dead is not None:
            dead[leg.id] = state.dead
    return dead


async def _check_pending_invoices(
    states: list[tuple[DcaPayment, TransferState]],
) -> bool:
    """Ask the funding source, through LNbits' own check, about each resumed
    leg's invoice that is still pending and nobody paid. LNbits' start-up
    check fails the invoices its funding source does not know, writing from
    a list it read first: paying such an invoice while that check runs could
    be overwritten as failed. Asking first settles it either way. Only
    invoices made before this process started: no payment of those can be in
    flight (a payment runs in the process that makes it), so the answer
    cannot race one."""
    changed = False
    for _, state in states:
        invoice = state.incoming
        if invoice is None or not invoice.pending or state.outgoing is not None:
            continue
        made = invoice.created_at
        if made.tzinfo is None:
            made = made.replace(tzinfo=timezone.utc)
        if made >= PROCESS_STARTED:
            continue  # this process's own: a worker here may be paying it now
        checked = await update_pending_payment(invoice)
        changed = changed or not checked.pending
    return changed


async def _create_invoices(
    legs: list[DcaPayment],
    done: set[str],
    dead: dict[str, str],
    extra: dict[str, dict],
    outcomes: list[DcaPayment],
    keep: _Lease,
) -> dict[str, Payment]:
    """An invoice on the destination wallet for each leg that has none, or
    whose invoice is dead."""
    new_invoices: dict[str, Payment] = {}
    for leg in legs:
        assert leg.destination_wallet_id, "a pending leg has a destination"  # noqa: S101
        if leg.id in done or (leg.payment_hash is not None and leg.id not in dead):
            continue
        await keep.renew_if_due()
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
            done.add(leg.id)
        checkpoint("invoice_created")
    return new_invoices


async def _payable(
    leg: DcaPayment, attached: set[str], new_invoices: dict[str, Payment]
) -> DcaPayment | None:
    """The leg with the invoice to pay, or None when there is nothing to pay."""
    if leg.id in attached:
        invoice = new_invoices[leg.id]
        leg.payment_request, leg.payment_hash = invoice.bolt11, invoice.payment_hash
        return leg
    if leg.id in new_invoices:  # another worker's invoice won: pay that one
        reloaded = await crud.get_leg(leg.id)
        assert reloaded is not None  # noqa: S101
        return reloaded if reloaded.status == "pending" else None
    if leg.payment_hash is None:
        return None  # its invoice could not be created: already failed
    return leg


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
        [(_, state)] = await _inspect([leg])
        if state.half_done:
            await _repair(leg, state)
        if state.received or state.half_done:  # e.g. "already paid": it was, by us
            return completed(leg)
        return failed(leg, str(exc) or exc.__class__.__name__)
    # pay_invoice returns once both of LNbits' writes are done: the payer's
    # payment and the payee's invoice marked paid. The destination received it.
    checkpoint("paid")
    return completed(leg)


class TransferState:
    """What LNbits' payments table says about one leg's current invoice."""

    def __init__(self, leg: DcaPayment, payments: list[Payment]) -> None:
        msat = leg.amount_sats * 1000
        self.incoming: Payment | None = None
        self.outgoing: Payment | None = None
        for p in payments:
            if p.payment_hash != leg.payment_hash:
                continue
            if p.amount > 0 and _is_destination(p, leg):
                self.incoming = p
            elif p.amount < 0 and p.wallet_id == leg.source_wallet_id:
                if self.outgoing is None or p.success:
                    self.outgoing = p
        ours = self.incoming is not None and (
            _is_forward(leg) or _is_our_invoice(self.incoming, leg)
        )
        self.paid_out = (
            self.outgoing is not None
            and self.outgoing.success
            and self.outgoing.amount == -msat
        )
        self.received = ours and self.incoming is not None and self.incoming.success
        # The payer's internal payment succeeded, the payee's invoice (ours,
        # for this leg, of this amount) was never marked paid.
        self.half_done = (
            ours
            and self.paid_out
            and not self.received
            and self.incoming is not None
            and self.incoming.amount == msat
            and self.outgoing is not None
            and self.outgoing.checking_id == f"internal_{leg.payment_hash}"
        )
        self.dead: str | None = None
        in_flight = self.outgoing is not None and not self.outgoing.failed
        if not in_flight and not self.received:
            if self.incoming is None:
                self.dead = "LNbits has no such invoice on the destination wallet"
            elif self.incoming.failed:
                self.dead = "LNbits marked the invoice failed"
            elif self.incoming.pending and self.incoming.is_expired:
                self.dead = "the invoice expired"


def _is_forward(leg: DcaPayment) -> bool:
    """A leg that pays an invoice someone else made (an autoforward to an
    LNURL address), rather than one this extension made on its destination."""
    return leg.destination_wallet_id is None and leg.payment_request is not None


def _is_destination(payment: Payment, leg: DcaPayment) -> bool:
    """Whether ``payment`` is the leg's invoice on its destination wallet. A
    forward's destination is whichever wallet of this LNbits made the very
    invoice the leg recorded (LNbits stores a bolt11 in lower case)."""
    if _is_forward(leg):
        assert leg.payment_request is not None  # noqa: S101
        return payment.bolt11.lower() == leg.payment_request.lower()
    return payment.wallet_id == leg.destination_wallet_id


def _is_our_invoice(payment: Payment, leg: DcaPayment) -> bool:
    ours = (payment.extra or {}).get(EXTRA_KEY)
    return isinstance(ours, dict) and ours.get("leg_id") == leg.id


async def _inspect(legs: list[DcaPayment]) -> list[tuple[DcaPayment, TransferState]]:
    payments = await crud_payouts.get_transfers(
        [leg.payment_hash for leg in legs if leg.payment_hash]
    )
    return [(leg, TransferState(leg, payments)) for leg in legs]


async def _repair(leg: DcaPayment, state: TransferState) -> None:
    """Finish forward a transfer LNbits left half done: mark the payee's
    invoice paid, the second write of LNbits' ``_pay_internal_invoice``.
    The leg records the repair first (a crash right after is repaired again,
    which changes nothing: the invoice is then paid, once)."""
    assert state.incoming is not None and state.outgoing is not None  # noqa: S101
    was = state.incoming.status
    note = (
        f"repaired {utc_now():%Y-%m-%dT%H:%M:%SZ}: LNbits had debited the source "
        f"({state.outgoing.checking_id}) but left the destination's invoice {was}; "
        "it was marked paid, finishing the transfer"
    )
    if await crud_payouts.mark_leg_repaired(leg.id, note):
        logger.warning(f"satmachineadmin: leg {leg.id}: {note}")
        if leg.settlement_id is not None:
            await crud.append_settlement_note(
                leg.settlement_id,
                f"[{utc_now():%Y-%m-%dT%H:%M:%SZ}] satmachineadmin: "
                f"{leg.leg_type} leg of {leg.amount_sats} sats {note}",
            )
    leg.repaired_at, leg.repair_note = leg.repaired_at or utc_now(), note
    invoice = state.incoming
    invoice.status = PaymentState.SUCCESS
    await update_payment(invoice)


# LNbits' check of pending payments (at start-up, then every 30 minutes)
# asks the funding source about every pending invoice, and the funding source
# does not know invoices made for internal transfers: it writes each one
# failed, from a copy it read before it began. If this extension paid such an
# invoice meanwhile, the payee's credit is overwritten as failed while the
# payer stays debited: a half-done transfer after the leg was recorded. So the
# recovery loop sweeps, every few seconds, this extension's invoices that
# LNbits marked failed recently (one indexed query) and finishes forward any
# whose payment succeeded.
SWEEP_OVERLAP_SECONDS = 120


async def sweep_half_done(since: datetime) -> int:
    """Repair the transfers of this extension's legs that LNbits left (or
    made) half done since ``since``; returns how many were repaired."""
    failed = await crud_payouts.get_recently_failed_invoices(since)
    hashes = sorted({p.payment_hash for p in failed})
    legs = await crud_payouts.get_legs_by_hashes(hashes)
    # A forward's invoice was made by its payee, without our mark: the
    # forwards completed in the window are checked instead (a few rows).
    legs += await crud_payouts.get_recent_forwards(since)
    hashes = sorted({leg.payment_hash for leg in legs if leg.payment_hash})
    if not hashes:
        return 0
    payments = await crud_payouts.get_transfers(hashes)
    repaired = 0
    for leg in legs:
        state = TransferState(leg, payments)
        if state.half_done:
            await _repair(leg, state)
            repaired += 1
    return repaired


async def was_paid(leg: DcaPayment) -> bool:
    """Whether the leg's invoice was paid (by the source, for the
    destination). A transfer LNbits left half done is finished first."""
    if leg.payment_hash is None:
        return False
    [(_, state)] = await _inspect([leg])
    if state.half_done:
        await _repair(leg, state)
        return True
    return state.received


async def finish_forward(leg: DcaPayment) -> bool:
    """After a forward's payment succeeded: if its invoice was made on this
    LNbits and LNbits left the transfer half done (the LP's wallet debited,
    the payee's invoice not paid), finish it forward. True if it repaired.
    A forward to another node has no invoice here: nothing to check."""
    if leg.payment_hash is None or not _is_forward(leg):
        return False
    [(_, state)] = await _inspect([leg])
    if state.half_done:
        await _repair(leg, state)
    return state.half_done


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
