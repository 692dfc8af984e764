"""Fixed mode: one slot for N fixed-mode LPs (N DCA legs: rate, balances,
record, pay) against N bare LNbits internal transfers of the same amounts to
the same wallets from the same machine wallet, in the same process.

As in ``overhead``, the bare transfers are split in two halves run before and
after the slot, and every trial's users and wallets are hard-deleted after.
The slot is run by ``fixed.run_slot`` directly; the schedule's ``times_since``
is set a day ahead so the scheduler loop never takes it first. LNbits' price is
the bench's fixed one (``env.running_lnbits``).
"""

from __future__ import annotations

import statistics
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from . import env
from .env import Lnbits
from .setup import add_machine

FULL_TRIALS = {1000: 2}
QUICK_TRIALS = {100: 1}
DAILY_LIMIT = Decimal(10)  # GTQ: one slot a day buys it all
BARE_TAG = {"tag": "satmachine:bench-bare-transfer"}  # ignored by the listener


async def _add_fixed_lps(machine, lps) -> None:
    from satmachineadmin import crud
    from satmachineadmin.calculations import to_minor_units
    from satmachineadmin.models import DcaClient, DcaDeposit

    async with crud.transaction() as conn:
        for lp in lps:
            client = DcaClient(
                id=crud.new_id(),
                machine_id=machine.id,
                operator_user_id=machine.operator_user_id,
                user_id=lp.id,
                wallet_id=lp.wallet.id,
                dca_mode="fixed",
                fixed_mode_daily_limit_minor=to_minor_units(DAILY_LIMIT, "GTQ"),
            )
            await crud._insert(conn, "clients", client, commit=False)
            await crud._insert(
                conn,
                "deposits",
                DcaDeposit(
                    id=crud.new_id(),
                    client_id=client.id,
                    machine_id=machine.id,
                    operator_user_id=machine.operator_user_id,
                    amount_minor=to_minor_units(Decimal(100), "GTQ"),
                    currency="GTQ",
                    status="confirmed",
                    creator_user_id=machine.operator_user_id,
                ),
                commit=False,
            )


async def _trial(operator_id: str, n: int, order: int) -> dict:
    from lnbits.core.crud.wallets import create_wallet, force_delete_wallet
    from satmachineadmin import crud, crud_fixed, fixed, rates
    from satmachineadmin.models import FixedSchedule, utc_now

    lps = await env.bare_users(n)
    wallet = await create_wallet(user_id=operator_id, wallet_name="bench fixed")
    machine = await add_machine(operator_id, wallet.id, f"Fixed {n}/{order}")
    await _add_fixed_lps(machine, lps)
    schedule = await crud_fixed.put_schedule(
        FixedSchedule(
            id=crud_fixed.schedule_id(operator_id, machine.id),
            operator_user_id=operator_id,
            machine_id=machine.id,
            times=["09:00"],
            timezone="UTC",
            times_since=utc_now() + timedelta(days=1),
        )
    )
    price = await rates.lnbits_price("GTQ")
    sats = fixed.sats_for_fiat(int(DAILY_LIMIT * 100), "GTQ", price)
    await env.credit(wallet.id, 2 * n * sats + 10_000)

    bare = [(lp.wallet.id, sats, f"DCA {DAILY_LIMIT} GTQ (bare)") for lp in lps]
    before, after = bare[0::2], bare[1::2]
    bare_cpu = 0.0

    async def run_bare(legs: list[tuple[str, int, str]]) -> float:
        nonlocal bare_cpu
        cpu, start = time.process_time(), time.perf_counter()
        for destination, amount, memo in legs:
            await env.transfer(wallet.id, destination, amount, memo, BARE_TAG)
        bare_cpu += time.process_time() - cpu
        return time.perf_counter() - start

    bare_s = await run_bare(before)
    today = utc_now().date().isoformat()
    cpu, start = time.process_time(), time.perf_counter()
    result = await fixed.run_slot(machine, schedule, today, "09:00")
    slot_s = time.perf_counter() - start
    slot_cpu = time.process_time() - cpu
    bare_s += await run_bare(after)

    assert result.run.status == "done", result.run
    assert result.run.lps_bought == n, result.run
    assert result.run.sats == n * sats, result.run

    await env.delete_users(lps)
    await force_delete_wallet(wallet.id)
    machine.is_active = False
    await crud.update_machine(machine)
    return {
        "lps": n,
        "slot_ms": round(slot_s * 1000, 1),
        "bare_ms": round(bare_s * 1000, 1),
        "ratio": round(slot_s / bare_s, 3),
        "cpu_ratio": round(slot_cpu / bare_cpu, 3),
    }


async def run(
    lnbits: Lnbits, *, quick: bool, profile_dir: Path | None = None
) -> dict[str, Any]:
    operator = await env.register_user(lnbits.http, "fixedop")
    sampler = env.MemorySampler().start()
    started = time.perf_counter()
    await _trial(operator.id, 3, 0)  # warm-up, not recorded
    results: dict[str, Any] = {}
    for n, trials in (QUICK_TRIALS if quick else FULL_TRIALS).items():
        runs = []
        for i in range(trials):
            runs.append(await _trial(operator.id, n, i + 1))
            env.log(f"fixed N={n} trial {i + 1}/{trials}: {runs[-1]}")
        results[str(n)] = {
            "lps": n,
            "trials": runs,
            "slot_ms": statistics.median(r["slot_ms"] for r in runs),
            "bare_ms": statistics.median(r["bare_ms"] for r in runs),
            "ratio": round(statistics.median(r["ratio"] for r in runs), 3),
            "cpu_ratio": round(statistics.median(r["cpu_ratio"] for r in runs), 3),
        }
    return {
        "by_n": results,
        "seconds": round(time.perf_counter() - started, 1),
        "memory": sampler.stop(),
    }
