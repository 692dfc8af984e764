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

import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from .env import Lnbits

SIZES = (10, 100_000)
QUICK_SIZES = (10, 2_000)
TRIALS = 3


async def _seed(machine: Any, start: int, count: int) -> None:
    """``count`` past sales on the machine wallet: LNbits incoming payments
    (successful, dated two days ago and older) and their settlements."""
    from lnbits.core.db import db as core_db
    from lnbits.core.models import Payment, PaymentState
    from lnbits.db import insert_query, model_to_dict
    from satmachineadmin import crud
    from satmachineadmin.models import DcaSettlement
    from sqlalchemy import text

    old = datetime.now(timezone.utc) - timedelta(days=2)
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
    async with core_db.connect() as conn:
        query = conn.rewrite_query(insert_query("apipayments", payments[0]))
        for p in payments:
            await conn.conn.execute(text(query), conn.rewrite_values(model_to_dict(p)))
        await conn.conn.commit()
    async with crud.transaction() as conn:
        for s in settlements:
            await crud._insert(conn, "settlements", s, commit=False)


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
            trials = []
            for _ in range(TRIALS if mode == "checkpoint" else 1):
                trials.append(await _time_recovery(machine.id, mode == "checkpoint"))
            rows[f"{mode}_ms"] = round(min(trials) * 1000, 1)
        figures["sizes"][str(size)] = rows
    small, large = (figures["sizes"][str(s)] for s in sizes)
    figures["checkpoint_ratio_large_vs_small"] = round(
        large["checkpoint_ms"] / max(small["checkpoint_ms"], 0.1), 2
    )
    figures["ok"] = True
    return figures
