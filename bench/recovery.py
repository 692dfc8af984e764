"""Start-up recovery cost at 10 and 100 000 past settlements, side by side.

Start-up recovery (``tasks.reconcile(None)`` then ``tasks.resume()``) lands
sales the listener missed and resumes cut-off settlements. It scans each
machine wallet's incoming payments from a per-machine checkpoint less an
overlap window (24 h), not the whole history. Here one machine wallet gets
N past sales (N = 10, then 100 000; each an LNbits incoming payment dated
more than a day ago and its settlement, written in bulk straight into the
tables, since paying 100 000 real sales would take hours), and a start-up
recovery is timed:

- ``checkpoint``: the normal start, with the checkpoint an earlier start left;
- ``full_scan``: the first start of an upgraded install (no checkpoint yet),
  which scans the whole history once (what every start did before).

Run alone: ``.venv/bin/python -m bench --only recovery [--backend sqlite]``.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from .env import Lnbits

SIZES = (10, 100_000)
QUICK_SIZES = (10, 2_000)
TRIALS = 3
FLEET = (200, 20_000)  # machines, and their sales in the last day
FLEET_QUICK = (20, 2_000)
# The full scan at 100 000 takes minutes (130 s on SQLite on a loaded 2-core
# machine); BENCH_RECOVERY_FULL_SCAN=1 measures it too.
FULL_SCAN_UP_TO = 10**9 if os.environ.get("BENCH_RECOVERY_FULL_SCAN") else 10_000


async def _seed(
    machine: Any, start: int, count: int, newest: datetime | None = None
) -> None:
    """``count`` past sales on the machine wallet: LNbits incoming payments
    (successful, one a second back from ``newest``, two days ago by
    default) and their settlements."""
    from lnbits.core.db import db as core_db
    from lnbits.core.models import Payment, PaymentState
    from lnbits.db import insert_query, model_to_dict
    from satmachineadmin import crud
    from satmachineadmin.models import DcaSettlement
    from sqlalchemy import text

    old = newest or datetime.now(timezone.utc) - timedelta(days=2)
    payments, settlements = [], []
    for i in range(start, start + count):
        h = uuid.uuid4().hex + uuid.uuid4().hex
        when = old - timedelta(seconds=i)
        p = Payment(
            checking_id=h,
            payment_hash=h,
            wallet_id=machine.wallet_id,
            amount=1_000_000,
            fee=0,
            bolt11=f"lnbcrt{i}",
            status=PaymentState.SUCCESS,
            memo="bitSpire cash-out",
            time=when,
            created_at=when,
            updated_at=when,
            extra={"source": "bitspire"},
        )
        payments.append(p)
        settlements.append(
            DcaSettlement(
                id=crud.new_id(),
                machine_id=machine.id,
                operator_user_id=machine.operator_user_id,
                payment_hash=h,
                gross_sats=1000,
                net_sats=970,
                commission_sats=30,
                platform_fee_sats=0,
                operator_fee_sats=30,
                super_fee_pct=0,
                currency="GTQ",
                status="processed",
                created_at=when,
                updated_at=when,
                processed_at=when,
            )
        )
    batch = 5000  # executemany: one round trip per batch, not per row
    async with core_db.connect() as conn:
        query = conn.rewrite_query(insert_query("apipayments", payments[0]))
        for i in range(0, len(payments), batch):
            await conn.conn.execute(
                text(query),
                [crud._params(conn, model_to_dict(p)) for p in payments[i : i + batch]],
            )
        await conn.conn.commit()
    async with crud.transaction() as conn:
        query = conn.rewrite_query(
            insert_query("satmachineadmin.settlements", settlements[0])
        )
        for i in range(0, len(settlements), batch):
            await conn.conn.execute(
                text(query),
                [
                    crud._params(conn, model_to_dict(s))
                    for s in settlements[i : i + batch]
                ],
            )


async def _time_recovery(machine_id: str, checkpoint: bool) -> float:
    from satmachineadmin import crud, tasks

    if not checkpoint:
        async with crud.connection() as c:
            await crud._execute(
                c,
                "DELETE FROM satmachineadmin.recovery_checkpoints "
                "WHERE machine_id = :m",
                {"m": machine_id},
            )
    began = time.perf_counter()
    await tasks.reconcile(None)
    await tasks.resume()
    return time.perf_counter() - began


async def run(lnbits: Lnbits, *, quick: bool, profile_dir: Any = None) -> dict:
    from .setup import add_machine

    operator = lnbits.superuser
    wallet = operator.wallets[0]
    from satmachineadmin import crud

    machine = await add_machine(operator.id, wallet.id, name="ATM recovery")
    machine.created_at = datetime(2020, 1, 1, tzinfo=timezone.utc)  # the history
    await crud.update_machine(machine)  # is older than this bench's machine
    sizes = QUICK_SIZES if quick else SIZES
    figures: dict[str, Any] = {"sizes": {}}
    seeded = 0
    for size in sizes:
        seed_began = time.perf_counter()
        await _seed(machine, seeded, size - seeded)
        seeded = size
        seed_s = time.perf_counter() - seed_began
        await _time_recovery(machine.id, checkpoint=True)  # leaves a checkpoint
        rows: dict[str, Any] = {"seed_s": round(seed_s, 1)}
        for mode in ("checkpoint", "full_scan"):
            if mode == "full_scan" and size > FULL_SCAN_UP_TO:
                rows["full_scan_ms"] = None  # minutes: BENCH_RECOVERY_FULL_SCAN=1
                continue
            trials = []
            for _ in range(TRIALS if mode == "checkpoint" else 1):
                trials.append(await _time_recovery(machine.id, mode == "checkpoint"))
            rows[f"{mode}_ms"] = round(min(trials) * 1000, 1)
        figures["sizes"][str(size)] = rows
    small, large = (figures["sizes"][str(s)] for s in sizes)
    figures["checkpoint_ratio_large_vs_small"] = round(
        large["checkpoint_ms"] / max(small["checkpoint_ms"], 0.1), 2
    )
    figures["fleet"] = await _fleet(operator.id, quick)
    figures["ok"] = True
    return figures


async def _fleet(operator_id: str, quick: bool) -> dict[str, Any]:
    """Many machines, a day of sales: recovery's one pass over the window for
    every machine wallet and one commit for their checkpoints, against a pass
    and a commit per machine (what it did before: each pass walks the
    window's payments of the whole LNbits)."""
    from lnbits.core.crud import create_wallet
    from satmachineadmin import crud_payouts, tasks

    from .setup import add_machine

    machines_n, sales = FLEET_QUICK if quick else FLEET
    machines = []
    for i in range(machines_n):
        wallet = await create_wallet(user_id=operator_id, wallet_name=f"fleet {i}")
        machines.append(await add_machine(operator_id, wallet.id, name=f"fleet {i}"))
    newest = datetime.now(timezone.utc) - timedelta(minutes=1)
    for i, machine in enumerate(machines):  # interleaved in time, as in life
        await _seed(machine, 0, sales // machines_n, newest - timedelta(0, i))
    day_ago = int(time.time()) - 24 * 3600
    starts = {m.wallet_id: day_ago for m in machines}
    began = time.perf_counter()
    assert await tasks._scan_wallets(starts) == 0  # every sale is known
    await crud_payouts.set_checkpoints([m.id for m in machines], day_ago)
    one_pass = time.perf_counter() - began
    began = time.perf_counter()
    for machine in machines:
        assert await tasks._scan_wallets({machine.wallet_id: day_ago}) == 0
        await crud_payouts.set_checkpoints([machine.id], day_ago)
    per_machine = time.perf_counter() - began
    return {
        "machines": machines_n,
        "payments_in_window": sales,
        "one_pass_ms": round(one_pass * 1000, 1),
        "pass_per_machine_ms": round(per_machine * 1000, 1),
    }
