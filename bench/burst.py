"""A burst of sales: ``bench.simulator.run`` pays COUNT sales into one machine
one after another, as fast as it can over the ASGI client, with the
extension's listener and workers running as in production (nothing stopped).

Instants, all observed in-process with ``time.perf_counter`` (no polling):
- paid: LNbits settled the invoice and queued its notification (a wrapper on
  ``task_manager.internal_invoice_queue.put_nowait``: the moment every
  listener could learn of it);
- landed: ``crud.create_settlement_idempotent`` committed the settlement row;
- processed: ``distribution.process_settlement`` returned it processed.

Meanwhile LNbits' own payments: a plain payment between two wallets of two
other users every PLAIN_INTERVAL seconds, timed (create + pay), and delivered
to a probe invoice listener registered like any other extension's; both are
compared with the same series on a quiet instance before the burst. The depth
of the shared internal invoice queue and of each listener's queue is sampled
every few milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from bench.simulator import Sale
from bench.simulator import run as simulate

from . import env
from .env import Lnbits
from .setup import (
    CURRENCY,
    FEE_PCT,
    PLATFORM_FEE_PCT,
    RATE,
    add_lps,
    add_machine,
    set_platform_fee,
    set_splits,
)

FULL_SALES, QUICK_SALES = 1000, 20
QUIET_PLAIN = {False: 50, True: 20}
PLAIN_INTERVAL = 0.05
SAMPLE_INTERVAL = 0.005
# How long to wait, after the last sale, for the worker to pay every leg.
DRAIN_WAIT = {False: 60.0, True: 30.0}
SALE_FIAT = Decimal(200)  # GTQ: ~25 900 sats net at 772 114 GTQ/BTC
LPS = 1  # paid legs per sale: platform fee + 2 operator splits + 1 DCA = 4


class Observer:
    """Wraps the three instants above; ``restore`` undoes every wrapper."""

    def __init__(self) -> None:
        self.paid: dict[str, float] = {}
        self.landed: dict[str, float] = {}
        self.processed: dict[str, float] = {}
        self.probe: dict[str, float] = {}
        self._undo: list[Callable[[], None]] = []

    def install(self) -> None:
        from lnbits.task_manager import task_manager
        from satmachineadmin import crud, distribution

        queue = task_manager.internal_invoice_queue
        put_nowait = queue.put_nowait

        def stamped_put(payment: Any) -> None:
            self.paid.setdefault(payment.payment_hash, time.perf_counter())
            put_nowait(payment)

        queue.put_nowait = stamped_put  # type: ignore[method-assign]
        self._undo.append(lambda: delattr(queue, "put_nowait"))

        create = crud.create_settlement_idempotent

        async def stamped_create(settlement: Any) -> Any:
            row, created = await create(settlement)
            if created:
                self.landed[row.payment_hash] = time.perf_counter()
            return row, created

        crud.create_settlement_idempotent = stamped_create  # type: ignore[assignment]
        self._undo.append(lambda: setattr(crud, "create_settlement_idempotent", create))

        process = distribution.process_settlement

        async def stamped_process(settlement_id: str) -> Any:
            result = await process(settlement_id)
            if result is not None and result.status == "processed":
                self.processed.setdefault(result.payment_hash, time.perf_counter())
            return result

        distribution.process_settlement = stamped_process  # type: ignore[assignment]
        self._undo.append(lambda: setattr(distribution, "process_settlement", process))

    def restore(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()


class QueueSampler:
    """Max and p99 depth of LNbits' shared internal invoice queue and of every
    invoice listener's own queue."""

    def __init__(self) -> None:
        self.samples: dict[str, list[int]] = {}
        self._task: asyncio.Task | None = None

    def _queues(self) -> dict[str, Any]:
        from lnbits.task_manager import task_manager
        from satmachineadmin import tasks

        queues = {"lnbits_internal_invoice_queue": task_manager.internal_invoice_queue}
        for task in task_manager.tasks:
            if task.invoice_queue is not None:
                queues[task.name] = task.invoice_queue
        queues["satmachineadmin_landing_queue"] = tasks._landing
        queues["satmachineadmin_processing_queue"] = tasks._processing
        return queues

    async def _run(self) -> None:
        queues = self._queues()
        while True:
            for name, queue in queues.items():
                self.samples.setdefault(name, []).append(queue.qsize())
            await asyncio.sleep(SAMPLE_INTERVAL)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> dict[str, dict[str, int]]:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return {
            name: {"max": max(s), "p99": int(env.percentile(s, 99))}
            for name, s in self.samples.items()
            if s
        }


async def _plain_payments(
    source: str, destination: str, observer: Observer, stop: asyncio.Event | int
) -> list[tuple[str, float]]:
    """Plain payments, one every PLAIN_INTERVAL, until ``stop`` is set (or a
    count is reached). Returns (payment hash, create+pay seconds)."""
    done: list[tuple[str, float]] = []
    while (len(done) < stop) if isinstance(stop, int) else not stop.is_set():
        start = time.perf_counter()
        payment_hash = await env.transfer(source, destination, 21, "plain payment")
        done.append((payment_hash, time.perf_counter() - start))
        await asyncio.sleep(PLAIN_INTERVAL)
    return done


def _plain_figures(done: list[tuple[str, float]], observer: Observer) -> dict:
    delivered = [
        observer.probe[h] - observer.paid[h]
        for h, _ in done
        if h in observer.probe and h in observer.paid
    ]
    return {
        "payments": len(done),
        "create_and_pay_ms": env.summary_ms([s for _, s in done]),
        "paid_to_probe_listener_ms": env.summary_ms(delivered),
        "not_delivered": len(done) - len(delivered),
    }


async def run(lnbits: Lnbits, *, quick: bool, profile_dir: Any = None) -> dict:
    from lnbits.task_manager import task_manager
    from satmachineadmin import crud

    count = QUICK_SALES if quick else FULL_SALES
    operator = await env.register_user(lnbits.http, "operator", extra_wallets=2)
    machine_wallet = operator.wallets[0]
    machine = await add_machine(operator.id, machine_wallet.id, "Burst ATM")
    await set_platform_fee(PLATFORM_FEE_PCT, lnbits.superuser.wallet.id)
    await set_splits(
        operator.id, [(operator.wallets[1].id, "0.6"), (operator.wallets[2].id, "0.4")]
    )
    lps = await env.bare_users(LPS)
    await add_lps(machine, lps, SALE_FIAT * count)  # enough for every sale
    customer, plain_from, plain_to = await env.bare_users(3)
    sale = Sale(SALE_FIAT, RATE, FEE_PCT, CURRENCY, machine.npub)
    await env.credit(customer.wallet.id, sale.gross_sats * count + 10_000)
    await env.credit(plain_from.wallet.id, 1_000_000)

    observer = Observer()
    observer.install()
    probe_wallet = plain_to.wallet.id

    async def probe(payment: Any) -> None:  # any other extension's listener
        if payment.wallet_id == probe_wallet:
            observer.probe[payment.payment_hash] = time.perf_counter()

    probe_task = task_manager.register_invoice_listener(probe, "bench_probe")
    try:
        await asyncio.sleep(0.2)
        quiet = await _plain_payments(
            plain_from.wallet.id, probe_wallet, observer, QUIET_PLAIN[quick]
        )
        env.log(f"burst: quiet baseline {_plain_figures(quiet, observer)}")

        sampler = env.MemorySampler().start()
        queues = QueueSampler()
        queues.start()
        stop = asyncio.Event()
        plain_task = asyncio.create_task(
            _plain_payments(plain_from.wallet.id, probe_wallet, observer, stop)
        )
        started = time.perf_counter()
        sold = await simulate(
            lnbits.http,
            machine_inkey=machine_wallet.inkey,
            customer_adminkey=customer.wallet.adminkey,
            sale=sale,
            count=count,
        )
        burst_s = time.perf_counter() - started
        stop.set()
        during = await plain_task
        env.log(f"burst: {count} sales in {burst_s:.1f} s")

        hashes = [h for h, _ in sold]
        deadline = time.perf_counter() + DRAIN_WAIT[quick]
        while time.perf_counter() < deadline:
            if all(h in observer.processed for h in hashes):
                break
            await asyncio.sleep(0.05)
        drain_s = time.perf_counter() - started
        queue_depths = await queues.stop()
        memory = sampler.stop()
    finally:
        observer.restore()
        task_manager.cancel_task(probe_task)

    returned = dict(sold)
    landed = [
        observer.landed[h] - observer.paid[h] for h in hashes if h in observer.landed
    ]
    processed = [
        observer.processed[h] - observer.paid[h]
        for h in hashes
        if h in observer.processed
    ]
    settlements = await crud.list_settlements(operator.id, limit=count + 10)
    statuses: dict[str, int] = {}
    for s in settlements:
        statuses[s.status] = statuses.get(s.status, 0) + 1
    return {
        "sales": count,
        "paid_legs_per_sale": 3 + LPS,
        "sale_gross_sats": sale.gross_sats,
        "burst_seconds": round(burst_s, 2),
        "sales_per_second": round(count / burst_s, 1),
        "paid_to_landed_ms": env.summary_ms(landed),
        "landed": len(landed),
        "landed_before_pay_call_returned": sum(
            1
            for h in hashes
            if h in observer.landed and observer.landed[h] < returned[h]
        ),
        "paid_to_processed_ms": env.summary_ms(processed),
        "processed": len(processed),
        "all_processed_after_s": round(drain_s, 1) if len(processed) == count else None,
        "waited_s": round(drain_s, 1),
        "processing_sales_per_second": round(len(processed) / drain_s, 2),
        "settlement_statuses": statuses,
        "plain_payments_quiet": _plain_figures(quiet, observer),
        "plain_payments_during_burst": _plain_figures(during, observer),
        "queue_depth": queue_depths,
        "memory": memory,
    }
