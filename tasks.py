"""Background work: the invoice listener, the settlement workers, recovery.

The listener only puts the payment on a queue, so LNbits' shared invoice
queue is never held up. One worker lands payments (fast: a few queries),
another pays legs (slow: one LNbits transfer each), so a burst of sales is
landed at once even while earlier ones are still being paid out.

Recovery runs at start-up and every few minutes: it lands payments that
LNbits recorded while this extension was not listening (LNbits does not replay
them), and resumes settlements left pending or whose worker died.
"""

from __future__ import annotations

import asyncio
import time

from lnbits.core.crud import get_payments
from lnbits.core.models import Payment
from lnbits.task_manager import Task, task_manager
from loguru import logger

from . import autoforward, crud, distribution, landing
from .bitspire import is_own_transfer

RECOVERY_INTERVAL_SECONDS = 180
RECENT_WINDOW_SECONDS = 24 * 3600  # periodic scans look this far back
PAGE = 500

_landing: asyncio.Queue[Payment] = asyncio.Queue()
_processing: asyncio.Queue[str] = asyncio.Queue()
_queued: set[str] = set()  # ids waiting in _processing, each at most once


def queue_for_processing(settlement_id: str) -> None:
    if settlement_id not in _queued:
        _queued.add(settlement_id)
        _processing.put_nowait(settlement_id)


async def on_invoice_paid(payment: Payment) -> None:
    """LNbits calls this for every successful incoming payment."""
    if payment.amount > 0 and not is_own_transfer(payment.extra or {}):
        _landing.put_nowait(payment)


async def land_and_queue(payment: Payment) -> None:
    settlement = await landing.land_payment(payment)
    if settlement is not None and settlement.status == "pending":
        queue_for_processing(settlement.id)


async def _landing_worker() -> None:
    while True:
        payment = await _landing.get()
        try:
            await land_and_queue(payment)
        except Exception:  # one bad payment must not stop the others
            logger.exception(f"satmachineadmin: landing {payment.payment_hash} failed")


async def _processing_worker() -> None:
    while True:
        settlement_id = await _processing.get()
        _queued.discard(settlement_id)
        try:
            await distribution.process_settlement(settlement_id)
        except Exception:  # left processing: resumed when its lease runs out
            logger.exception(f"satmachineadmin: processing {settlement_id} failed")


async def reconcile(since: int | None = None) -> int:
    """Land sales in machine wallets that never reached the listener.
    ``since`` is a Unix time; None scans each wallet's whole history."""
    landed = 0
    for machine in await crud.list_active_machines():
        start = since if since is not None else int(machine.created_at.timestamp())
        offset = 0
        while True:
            payments = await get_payments(
                wallet_id=machine.wallet_id,
                incoming=True,
                complete=True,
                since=start,
                limit=PAGE,
                offset=offset,
            )
            known = await crud.get_known_payment_hashes(
                machine.id, [p.payment_hash for p in payments]
            )
            for payment in payments:
                if payment.payment_hash not in known:
                    settlement = await landing.land_payment(payment)
                    landed += settlement is not None
            if len(payments) < PAGE:
                break
            offset += PAGE
    if landed:
        logger.info(f"satmachineadmin: recovery landed {landed} missed sale(s)")
    return landed


async def resume() -> int:
    """Queue every settlement that is pending or whose worker's lease ran out."""
    ids = await crud.list_settlement_ids_to_resume()
    for settlement_id in ids:
        queue_for_processing(settlement_id)
    return len(ids)


async def recover(full: bool) -> None:
    try:
        await reconcile(None if full else int(time.time()) - RECENT_WINDOW_SECONDS)
        await resume()
    except Exception:
        logger.exception("satmachineadmin: recovery failed; next run retries")


async def _recovery_loop() -> None:
    await recover(full=True)
    while True:
        await asyncio.sleep(RECOVERY_INTERVAL_SECONDS)
        await recover(full=False)


def start_tasks() -> list[Task]:
    return [
        task_manager.register_invoice_listener(on_invoice_paid, "ext_satmachineadmin"),
        task_manager.create_permanent_task(
            _landing_worker, name="ext_satmachineadmin_landing"
        ),
        task_manager.create_permanent_task(
            _processing_worker, name="ext_satmachineadmin_processing"
        ),
        task_manager.create_permanent_task(
            _recovery_loop, name="ext_satmachineadmin_recovery"
        ),
        task_manager.create_permanent_task(
            autoforward.run_forever, name="ext_satmachineadmin_autoforward"
        ),
    ]


def stop_tasks(tasks: list[Task]) -> None:
    for task in tasks:
        if task in task_manager.tasks:  # LNbits may have cancelled it already
            task_manager.cancel_task(task)
