"""Autoforward: an LP's DCA sats sent on to its Lightning address or LNURL-pay.

A loop (``run_forever``, every ~30 s) looks at the positions whose LP turned
autoforward on. For each, the sats its purchases (``dca`` and ``settlement``
legs) brought into its current wallet, less what its forwards from that wallet
took (amount plus fee; a pending forward holds its amount plus LNbits' fee
reserve), are what may be forwarded: never other funds of the wallet. Once
they reach the LP's threshold:

1. the LNURL-pay endpoint is asked for an invoice (``lnbits.core.services.
   lnurl.handle`` for its limits, then ``get_pr_from_lnurl``) for what is
   available less LNbits' fee reserve, and no more than the wallet holds;
2. the forward is recorded as an ``autoforward`` payment leg keyed
   ``autoforward:<client_id>:<n>`` WITH its invoice, before anything is paid
   (the key is UNIQUE: two workers cannot both record forward n);
3. the invoice is paid from the LP's wallet with ``pay_invoice`` (an address
   served by this LNbits is paid internally by LNbits itself).

Never twice: a pending forward is settled first, on every run and after a
crash: LNbits is asked whether its invoice was paid (as ``payer.was_paid``);
paid -> completed; still in flight -> wait; otherwise it is paid again with
the same invoice (LNbits refuses to pay an invoice twice), and if that fails
it is marked failed and the next forward is a new leg (n + 1) with a new
invoice. A failed forward takes nothing: the sats stay in the LP's wallet.
A forward to an address on this LNbits counts as completed only once the
payee has it: a transfer a crash left half done is finished forward first
(``payer.finish_forward``), and the recovery loop's sweep checks the
forwards completed in its window again (``payer.sweep_half_done``).

On failure the position waits (backoff 1, 2, 4 ... minutes, at most 6 h);
after ``ALERT_AFTER_FAILURES`` failures in a row the operator is told
(``notifications.problem_started``, key ``autoforward-failing:<client_id>``)
and the LP gets an LNbits notification; the first success clears it.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timedelta

from bolt11 import decode as bolt11_decode
from lnbits.core.crud import get_account, get_standalone_payment, get_wallet
from lnbits.core.models import Payment
from lnbits.core.services import pay_invoice
from lnbits.core.services.payments import fee_reserve_total
from lnbits.exceptions import InvoiceError, PaymentError
from loguru import logger

from . import crud, crud_lp, loops, notifications, payer
from .models import DcaClient, DcaPayment, LpPreferences, Machine, utc_now

ALERT_AFTER_FAILURES = 3
BACKOFF_BASE = timedelta(
    seconds=float(os.environ.get("SATMACHINEADMIN_AUTOFORWARD_BACKOFF", "60"))
)
BACKOFF_MAX = timedelta(hours=6)
COMMENT = "satmachineadmin autoforward"


class ForwardFailed(Exception):  # noqa: N818 - reads as what happened
    """This attempt cannot forward (the sats stay in the LP's wallet)."""


# --- the loop -------------------------------------------------------------------


_pass_lock = asyncio.Lock()  # one pass at a time in this process


async def run_once(now: datetime | None = None) -> int:
    """One pass over the positions due; returns the forwards completed."""
    async with _pass_lock:
        return await _run_once(now)


async def _run_once(now: datetime | None) -> int:
    done = 0
    for prefs in await crud_lp.list_autoforward_candidates(now or utc_now()):
        try:
            leg = await forward_position(prefs)
        except Exception:  # one position must not stop the others
            logger.exception(f"satmachineadmin: autoforward {prefs.client_id} failed")
            continue
        done += leg is not None and leg.status == "completed"
    return done


async def run_forever() -> None:
    while True:
        await loops.pause("autoforward")
        try:
            await run_once()
        except Exception:
            logger.exception("satmachineadmin: autoforward pass failed")


# --- one position ------------------------------------------------------------------


async def forward_position(prefs: LpPreferences) -> DcaPayment | None:
    """Settle this position's pending forwards, then forward what its DCA
    brought in if it reached the threshold. Returns the leg of this run's
    forward (completed, failed or still in flight), or None."""
    client = await crud.get_client(prefs.client_id)
    if client is None or not prefs.autoforward_address:
        return None
    machine = await crud.get_machine(client.machine_id)
    if machine is None:
        return None
    for leg in await crud_lp.pending_forwards(client.id):
        leg = await settle(leg)
        if leg.status == "pending":
            return leg  # in flight: nothing new until LNbits knows
        await _after(prefs, client, machine, leg)
        if leg.status == "failed":
            return leg  # wait out the backoff
    try:
        new = await _new_forward(prefs, client, machine)
    except ForwardFailed as exc:
        await _failed(prefs, client, machine, str(exc))
        return None
    if new is None:
        return None
    new = await settle(new)
    await _after(prefs, client, machine, new)
    return new


def amount_within(spendable_sats: int) -> int:
    """The most that can be sent from ``spendable_sats`` keeping LNbits' fee
    reserve (for a payment leaving this LNbits) on top of it."""
    low, high = 0, max(spendable_sats, 0)
    while low < high:  # the reserve grows with the amount: largest that fits
        mid = (low + high + 1) // 2
        if mid * 1000 + fee_reserve_total(mid * 1000) <= spendable_sats * 1000:
            low = mid
        else:
            high = mid - 1
    return low


def _reserve_sats(amount_sats: int) -> int:
    return -(-fee_reserve_total(amount_sats * 1000) // 1000)


async def _new_forward(
    prefs: LpPreferences, client: DcaClient, machine: Machine
) -> DcaPayment | None:
    ledger = await crud_lp.forward_ledger(client.id, client.wallet_id)
    available = ledger["inbound"] - ledger["forwarded"]
    threshold = prefs.autoforward_threshold_sats or 0
    if available <= 0 or available < threshold:
        return None
    wallet = await get_wallet(client.wallet_id)
    if wallet is None:
        raise ForwardFailed("the position's wallet no longer exists")
    # DCA sats the LP already spent from the wallet are not there to forward.
    spendable = min(available, wallet.balance_msat // 1000)
    amount = amount_within(spendable)
    if spendable < threshold or amount <= 0:
        return None
    address = prefs.autoforward_address
    assert address  # noqa: S101 - checked by the caller
    amount, bolt11 = await _invoice(address, amount)
    leg = DcaPayment(
        id=crud.new_id(),
        idempotency_key=f"autoforward:{client.id}:{ledger['forwards'] + 1}",
        machine_id=machine.id,
        operator_user_id=machine.operator_user_id,
        client_id=client.id,
        leg_type="autoforward",
        amount_sats=amount,
        source_wallet_id=client.wallet_id,
        label="autoforward",
        memo=f"autoforward to {address}"[:200],
        payment_request=bolt11,
        payment_hash=bolt11_decode(bolt11).payment_hash,
    )
    if not await crud_lp.insert_forward(leg, _reserve_sats(amount)):
        return None  # another worker recorded forward n: it pays it
    return leg


async def _invoice(address: str, amount_sats: int) -> tuple[int, str]:
    """An invoice from the LNURL-pay endpoint for ``amount_sats`` (lowered to
    the endpoint's maximum). Raises ForwardFailed."""
    from lnbits.core.services.lnurl import get_pr_from_lnurl, handle
    from lnurl import LnurlPayResponse

    try:
        pay = await handle(address, timeout=10)
        if not isinstance(pay, LnurlPayResponse):
            raise ForwardFailed("the address is not an LNURL-pay endpoint")
        amount_sats = min(amount_sats, int(pay.maxSendable) // 1000)
        if amount_sats * 1000 < int(pay.minSendable):
            raise ForwardFailed(
                f"{amount_sats} sats is below the address's minimum of "
                f"{-(-int(pay.minSendable) // 1000)} sats"
            )
        bolt11 = await get_pr_from_lnurl(address, amount_sats * 1000, COMMENT)
        invoice = bolt11_decode(bolt11)
    except ForwardFailed:
        raise
    except Exception as exc:  # network, LNURL errors, a bad invoice
        raise ForwardFailed(f"could not get an invoice: {exc}") from exc
    if invoice.amount_msat != amount_sats * 1000:
        raise ForwardFailed("the address returned an invoice for another amount")
    return amount_sats, bolt11


# --- paying a recorded forward, once ------------------------------------------


async def _outgoing(leg: DcaPayment) -> Payment | None:
    """LNbits' own record of paying this leg's invoice from the LP's wallet."""
    if leg.payment_hash is None:
        return None
    payment = await get_standalone_payment(
        leg.payment_hash, wallet_id=leg.source_wallet_id
    )
    return payment if payment is not None and payment.amount < 0 else None


async def settle(leg: DcaPayment) -> DcaPayment:
    """Bring a pending forward to completed or failed, paying its invoice
    only if LNbits has no successful or in-flight payment of it."""
    payment = await _outgoing(leg)
    if payment is None or payment.failed:
        payment = await _pay(leg)
    if payment is not None and payment.success:
        # Completed only once the payee has it: a forward to an address on
        # this LNbits that a crash left half done is finished first.
        await payer.finish_forward(leg)
        return await _record(leg, "completed", None, payment)
    if payment is not None and payment.pending:
        return leg
    return await _record(leg, "failed", leg.error or "the payment failed", payment)


async def _pay(leg: DcaPayment) -> Payment | None:
    assert leg.payment_request is not None  # noqa: S101
    try:
        return await pay_invoice(
            wallet_id=leg.source_wallet_id,
            payment_request=leg.payment_request,
            extra={"tag": "satmachineadmin", "satmachineadmin": {"leg_id": leg.id}},
            description=leg.memo,
        )
    except (PaymentError, InvoiceError, ValueError) as exc:
        leg.error = (str(exc) or exc.__class__.__name__)[:500]
        return await _outgoing(leg)  # e.g. "already paid": by us


async def _record(
    leg: DcaPayment, status: str, error: str | None, payment: Payment | None
) -> DcaPayment:
    leg.status = "completed" if status == "completed" else "failed"
    leg.error = error
    leg.attempts += 1
    if leg.status == "completed":
        leg.completed_at = utc_now()
    fee = -(-abs(payment.fee) // 1000) if payment is not None else 0
    await crud_lp.finish_forward(leg, fee)
    return leg


# --- outcome: retry state and who is told ------------------------------------


async def _after(
    prefs: LpPreferences, client: DcaClient, machine: Machine, leg: DcaPayment
) -> None:
    if leg.status == "completed":
        await _succeeded(prefs, client, machine)
    elif leg.status == "failed":
        await _failed(prefs, client, machine, leg.error or "the payment failed")


async def _succeeded(prefs: LpPreferences, client: DcaClient, machine: Machine) -> None:
    was_failing = prefs.autoforward_failures >= ALERT_AFTER_FAILURES
    prefs.autoforward_failures = 0
    prefs.autoforward_next_try_at = None
    prefs.autoforward_last_error = None
    await crud_lp.record_autoforward_state(prefs)
    if was_failing:
        await notifications.problem_cleared(
            machine.operator_user_id,
            f"autoforward-failing:{client.id}",
            f"Autoforward of LP position {client.id} works again.",
        )


def backoff(failures: int) -> timedelta:
    return min(BACKOFF_BASE * (2 ** max(failures - 1, 0)), BACKOFF_MAX)


async def _failed(
    prefs: LpPreferences, client: DcaClient, machine: Machine, error: str
) -> None:
    prefs.autoforward_failures += 1
    prefs.autoforward_next_try_at = utc_now() + backoff(prefs.autoforward_failures)
    prefs.autoforward_last_error = error[:500]
    await crud_lp.record_autoforward_state(prefs)
    logger.warning(
        f"satmachineadmin: autoforward of {client.id} failed "
        f"({prefs.autoforward_failures}x): {error}"
    )
    if prefs.autoforward_failures == ALERT_AFTER_FAILURES:
        title = f"Autoforward failing for LP {client.username or client.user_id}"
        body = (
            f"Forwarding the sats of position {client.id} at {machine.name} to "
            f"{prefs.autoforward_address} failed {ALERT_AFTER_FAILURES} times: "
            f"{error}. The sats stay in the LP's wallet; retries continue."
        )
        await notifications.problem_started(
            machine.operator_user_id, f"autoforward-failing:{client.id}", title, body
        )
        await notify_lp(client.user_id, f"{title}. {body}")


async def notify_lp(user_id: str, message: str) -> None:
    """An LNbits notification to the LP, through the channels it set up."""
    try:
        from lnbits.core.models.notifications import NotificationType
        from lnbits.core.services.notifications import enqueue_user_notification

        account = await get_account(user_id)
        if account is None:
            return
        enqueue_user_notification(
            NotificationType.text_message,
            {"message": message},
            account.extra.notifications,
        )
    except Exception:  # telling must never stop forwarding
        logger.exception("satmachineadmin: could not notify the LP")
