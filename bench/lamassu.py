"""The Lamassu source at scale: the first poll of a machine whose Lamassu
history holds 100 000 cash-outs (landing only: the settlement workers are
stopped, so nothing is paid), then a steady poll that finds nothing new.

The Lamassu database is a throwaway one on the local PostgreSQL (the schema of
tests/integration/lamassu_db.py), read through a role that has only SELECT.
Its rows are spread over a year, 90 % successful dispensed cash-outs of the
machine's device (LN and BTC), the rest errored, rejected, undispensed, another
coin or another device. Run alone: ``python -m bench --only lamassu``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from . import env
from .env import Lnbits

FULL_ROWS, QUICK_ROWS = 100_000, 5_000
STEADY_POLLS = 10
DEVICE = "bench-device"

ROWS_SQL = """
INSERT INTO cash_out_txs (id, device_id, crypto_atoms, crypto_code, fiat,
  fiat_code, status, dispense, dispense_confirmed, error, created,
  commission_percentage, discount, raw_ticker_price, fixed_fee)
SELECT gen_random_uuid(),
  CASE WHEN i % 50 = 7 THEN 'other-device' ELSE $1 END,
  266800, CASE WHEN i % 50 = 3 THEN 'ETH' WHEN i % 2 = 0 THEN 'LN' ELSE 'BTC' END,
  2000, 'GTQ',
  (CASE WHEN i % 50 = 5 THEN 'rejected' ELSE 'confirmed' END)::status_stage,
  i % 50 <> 9, i % 50 <> 11,
  CASE WHEN i % 50 = 13 THEN 'dispenseError' END,
  now() - make_interval(secs => ($2 - i) * (365.0 * 86400 / $2)),
  0.03, NULL, 772800, 0
FROM generate_series(1, $2) AS i
"""


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def _build(rows: int) -> Any:
    sys.path.insert(0, str(env.REPO / "tests" / "integration"))
    from lamassu_db import create_lamassu_db, drop_lamassu_db

    db = await create_lamassu_db()
    try:
        await db.execute(
            "INSERT INTO devices (device_id) VALUES ($1), ('other-device')", DEVICE
        )
        await db.execute(ROWS_SQL, DEVICE, rows)
        conn = await db.connect()
        try:
            sales = await conn.fetchval(
                """SELECT count(*) FROM cash_out_txs WHERE device_id = $1
                   AND crypto_code IN ('BTC', 'LN') AND dispense
                   AND dispense_confirmed AND error IS NULL
                   AND status = 'confirmed'""",
                DEVICE,
            )
            recent = await conn.fetchval(
                """SELECT count(*) FROM cash_out_txs WHERE device_id = $1
                   AND created > now() - interval '24 hours'""",
                DEVICE,
            )
            await conn.execute("ANALYZE")
        finally:
            await conn.close()
    except BaseException:
        await drop_lamassu_db(db)
        raise
    return db, int(sales), int(recent)


async def run(lnbits: Lnbits, *, quick: bool, profile_dir: Any = None) -> dict:
    import satmachineadmin
    from satmachineadmin import crud, crud_sources, lamassu
    from satmachineadmin.models import LamassuSource, Machine

    from .setup import CURRENCY

    size = QUICK_ROWS if quick else FULL_ROWS
    _progress(f"lamassu: building a Lamassu history of {size} cash-outs")
    db, sales, recent = await _build(size)
    try:
        # Landing only: no worker pays, no loop polls behind the benchmark.
        satmachineadmin.satmachineadmin_stop()
        operator = lnbits.superuser
        machine = await crud.create_machine(
            Machine(
                id=crud.new_id(),
                operator_user_id=operator.id,
                npub=f"lamassu:{crud.new_id()}",
                wallet_id=operator.wallet.id,
                name="Lamassu bench",
                currency=CURRENCY,
                source="lamassu",
            )
        )
        await crud_sources.save_lamassu_source(
            LamassuSource(
                machine_id=machine.id,
                operator_user_id=operator.id,
                host="127.0.0.1",
                port=5432,
                database_name=db.name,
                db_user=db.reader,
                password=db.reader_password,
                sslmode="disable",
                device_id=DEVICE,
            )
        )
        sampler = env.MemorySampler().start()
        source = await crud_sources.get_lamassu_source(machine.id)
        assert source is not None
        started = time.perf_counter()
        first = await lamassu.poll(machine, source)
        first_s = time.perf_counter() - started
        assert first.error is None, first.error
        assert len(first.landed) == sales, (len(first.landed), sales)
        _progress(f"lamassu: first poll landed {sales} sales in {first_s:.1f} s")

        steady: list[float] = []
        for _ in range(STEADY_POLLS):
            source = await crud_sources.get_lamassu_source(machine.id)
            assert source is not None
            started = time.perf_counter()
            outcome = await lamassu.poll(machine, source)
            steady.append(time.perf_counter() - started)
            assert outcome.error is None and not outcome.landed
        memory = sampler.stop()
        count = len(
            await crud.list_settlements(operator.id, machine_id=machine.id, limit=1000)
        )
    finally:
        from lamassu_db import drop_lamassu_db

        await drop_lamassu_db(db)
        if not satmachineadmin.scheduled_tasks:
            satmachineadmin.satmachineadmin_start()
    return {
        "history_rows": size,
        "sales_in_history": sales,
        "rows_in_steady_window": recent,
        "first_poll_s": round(first_s, 2),
        "first_poll_sales_per_s": round(sales / first_s, 1),
        "steady_poll_ms": env.summary_ms(steady),
        "listing_check_rows": count,
        **memory,
    }
