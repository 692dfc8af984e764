"""Background work: the invoice listener, the settlement workers, recovery.

The listener only puts the payment on a queue, so LNbits' shared invoice
queue is never held up. One worker lands payments (fast: a few queries),
another pays legs (slow: one LNbits transfer each), so a burst of sales is
landed at once even while earlier ones are still being paid out.

Recovery runs at start-up and every few minutes: it lands payments that
LNbits recorded while this extension was not listening (LNbits does not replay
them; start-up scans from a per-machine checkpoint, not the whole history),
and resumes settlements left pending or whose worker died (checked every
few seconds, so a settlement cut off by a crash resumes within a minute).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

from lnbits.core.models import Payment
from lnbits.task_manager import Task, task_manager
from loguru import logger

from . import (
    autoforward,
    crud,
    crud_payouts,
    distribution,
    fixed,
    landing,
    loops,
    notifications,
    payer,
    poller,
    ssh_tunnel,
)
from .bitspire import is_own_transfer
from .models import utc_now

RECENT_WINDOW_SECONDS = 24 * 3600  # periodic scans look this far back
CHECKPOINT_OVERLAP_SECONDS = RECENT_WINDOW_SECONDS  # start-up rescans this much
SWEEP_OVERLAP = timedelta(seconds=payer.SWEEP_OVERLAP_SECONDS)
PAGE = 5_000  # payments a query of recovery reads (hash, wallet and time only)
WALLETS_PER_PASS = 500  # machine wallets read in one pass of recovery

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

    ``since`` is a Unix time to scan from. None (start-up) scans each machine
    wallet from its checkpoint (how far an earlier scan got) less an overlap
    window, or from the machine's creation the first time: so a start costs
    the same at 100 000 past sales as at 10. The checkpoints move to when
    this scan began (a payment LNbits writes during the scan is seen next
    time, within the overlap).

    Only bitSpire machines sell into their wallet. Their wallets are read in
    one pass over LNbits' payments by time (up to WALLETS_PER_PASS wallets a
    pass), not one pass per machine: the window's payments of the whole
    LNbits are walked once, whatever the size of the fleet."""
    machines = [m for m in await crud.list_active_machines() if m.source == "bitspire"]
    checkpoints = await crud_payouts.get_checkpoints() if since is None else {}
    starts: dict[str, int] = {}  # wallet id -> Unix time its scan starts after
    for machine in machines:
        if since is not None:
            starts[machine.wallet_id] = since
        elif machine.id in checkpoints:
            starts[machine.wallet_id] = (
                checkpoints[machine.id] - CHECKPOINT_OVERLAP_SECONDS
            )
        else:
            starts[machine.wallet_id] = int(machine.created_at.timestamp()) - 1
        if machine.source_since is not None:  # bitSpire only since then
            since_source = int(_aware(machine.source_since).timestamp()) - 1
            starts[machine.wallet_id] = max(starts[machine.wallet_id], since_source)
    landed = 0
    wallets = list(starts)
    for i in range(0, len(wallets), WALLETS_PER_PASS):
        chunk = {w: starts[w] for w in wallets[i : i + WALLETS_PER_PASS]}
        began = int(time.time())
        landed += await _scan_wallets(chunk)
        await crud_payouts.set_checkpoints(
            [m.id for m in machines if m.wallet_id in chunk], began
        )
    if landed:
        logger.info(f"satmachineadmin: recovery landed {landed} missed sale(s)")
    return landed


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


async def _scan_wallets(starts: dict[str, int]) -> int:
    """Land the unknown sales among the wallets' successful incoming payments,
    each wallet's from its own start on."""
    landed, offset = 0, 0
    since = datetime.fromtimestamp(min(starts.values()), timezone.utc)
    while True:
        rows = await crud_payouts.get_incoming_since(list(starts), since, PAGE, offset)
        fresh = {h: c for c, w, h, t in rows if t > starts[w]}  # hash -> checking id
        known = await crud.get_known_payment_hashes(list(fresh))
        missed = {c for h, c in fresh.items() if h not in known}
        hashes = [h for h, c in fresh.items() if c in missed]
        for payment in await crud_payouts.get_transfers(hashes):
            if payment.checking_id in missed:  # not the payer's side
                settlement = await landing.land_payment(payment)
                landed += settlement is not None
        if len(rows) < PAGE:
            return landed
        offset += PAGE


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
        _runtime["last_recovery_at"] = time.time()  # for GET /health
    except Exception:
        logger.exception("satmachineadmin: recovery failed; next run retries")


async def _recovery_loop() -> None:
    """At start-up: land what was missed (from the checkpoints) and resume.
    Then every few seconds resume what is due (one indexed query: pending
    settlements, and processing ones whose worker's lease ran out), and every
    few minutes look for missed sales again."""
    last_sweep = utc_now() - timedelta(days=1)
    await recover(full=True)
    scan = loops.Every("recovery", ran_now=True)
    while True:
        await loops.pause("resume")
        if scan.due():
            await recover(full=False)
            continue
        try:
            await resume()
            swept_at = utc_now()
            await payer.sweep_half_done(last_sweep - SWEEP_OVERLAP)
            last_sweep = swept_at
        except Exception:
            logger.exception("satmachineadmin: resume failed; next run retries")


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
            lambda: poller.sources_loop(queue_for_processing),
            name="ext_satmachineadmin_sources",
        ),
        task_manager.create_permanent_task(
            fixed.scheduler_loop, name="ext_satmachineadmin_fixed"
        ),
        task_manager.create_permanent_task(
            notifications.watcher_loop, name="ext_satmachineadmin_watch"
        ),
        task_manager.create_permanent_task(
            autoforward.run_forever, name="ext_satmachineadmin_autoforward"
        ),
    ]


def stop_tasks(tasks: list[Task]) -> None:
    for task in tasks:
        if task in task_manager.tasks:  # LNbits may have cancelled it already
            task_manager.cancel_task(task)
    ssh_tunnel.close_all_now()  # no ssh outlives the extension


# --- runtime status (for GET /health) ----------------------------------------

_runtime: dict[str, float] = {}

_TASK_NAMES = (
    "ext_satmachineadmin_landing",
    "ext_satmachineadmin_processing",
    "ext_satmachineadmin_recovery",
)


def runtime_status() -> dict:
    """Whether the workers run, how much waits in their queues and when
    recovery last ran (Unix time; None before its first run)."""
    alive = dict.fromkeys(_TASK_NAMES, False)
    for task in task_manager.tasks:
        if task.name in alive:
            alive[task.name] = not task.task.done()
    last = _runtime.get("last_recovery_at")
    return {
        "workers_alive": all(alive.values()),
        "workers": alive,
        "landing_queue": _landing.qsize(),
        "processing_queue": _processing.qsize(),
        "last_recovery_at": last,
    }
