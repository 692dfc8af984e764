"""Pipeline overhead: processing one settlement with N LPs (N + 3 legs: the
platform fee, two operator split legs, N DCA legs) against the same number of
bare LNbits internal transfers to the same wallets, in the same process.

Per trial:
- N fresh LP users (one wallet each), a fresh machine wallet credited with
  enough for both the pipeline and the bare transfers, a machine, N positions
  with one confirmed deposit each;
- a settlement landed straight through crud (as ``land_payment`` records it),
  so no worker picks it up: only ``distribution.process_settlement`` is timed
  (claim, plan, record the legs, pay each, close);
- the bare transfers are ``create_invoice`` on the destination + ``pay_invoice``
  from the same machine wallet, same amounts and memos, tagged so the
  extension's listener ignores them as it ignores its own transfers. They are
  split in two halves run before and after the pipeline, so the slow growth of
  the payments table during a trial weighs equally on both sides;
- then the LP users, their wallets and the machine wallet are hard-deleted and
  the machine deactivated: on SQLite every transfer's balance lookup scans all
  wallets of the instance, so trials must not pile them up.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.simulator import Sale

from . import env
from .env import Actor, Lnbits
from .setup import (
    CURRENCY,
    FEE_PCT,
    PLATFORM_FEE_PCT,
    RATE,
    add_lps,
    add_machine,
    landed_settlement,
    set_platform_fee,
    set_splits,
)

FULL_TRIALS = {1: 15, 10: 5, 100: 2, 1000: 1}  # short trials are the noisy ones
QUICK_TRIALS = {1: 2, 10: 2}
BARE_TAG = {"tag": "satmachine:bench-bare-transfer"}  # ignored by the listener
SPLIT_PCTS = ("0.6", "0.4")


class Context:
    def __init__(self, lnbits: Lnbits, operator: Actor) -> None:
        self.lnbits = lnbits
        self.operator = operator
        self.fee_wallet = lnbits.superuser.wallet.id
        self.split_wallets = [w.id for w in operator.wallets[:2]]


async def _machine_wallet(operator_id: str) -> str:
    from lnbits.core.crud.wallets import create_wallet

    wallet = await create_wallet(user_id=operator_id, wallet_name="bench machine")
    return wallet.id


async def _trial(ctx: Context, n: int, order: int, around: Any = None) -> dict:
    from lnbits.core.crud.wallets import force_delete_wallet
    from satmachineadmin import crud, distribution
    from satmachineadmin.calculations import split_two_stage_commission

    lps = await env.bare_users(n)
    machine_wallet = await _machine_wallet(ctx.operator.id)
    machine = await add_machine(ctx.operator.id, machine_wallet, f"ATM {n}/{order}")
    await add_lps(machine, lps, Decimal(5000))
    sale = Sale(Decimal(2000), RATE, FEE_PCT, CURRENCY, machine.npub)
    await env.credit(machine_wallet, 2 * sale.gross_sats + 10_000)

    # The bare twin of every leg: same destination, (about) the same amount.
    platform, operator_fee = split_two_stage_commission(
        sale.fee_sats, Decimal(PLATFORM_FEE_PCT)
    )
    bare = [(ctx.fee_wallet, platform, "Platform fee")]
    bare += [
        (w, int(operator_fee * Decimal(p)), "Commission split")
        for w, p in zip(ctx.split_wallets, SPLIT_PCTS, strict=True)
    ]
    share = sale.net_sats // n
    bare += [(lp.wallet.id, share, f"DCA {share} sats") for lp in lps]
    before, after = bare[0::2], bare[1::2]

    bare_cpu = 0.0

    async def run_bare(legs: list[tuple[str, int, str]]) -> float:
        nonlocal bare_cpu
        cpu, start = time.process_time(), time.perf_counter()
        for destination, sats, memo in legs:
            await env.transfer(machine_wallet, destination, sats, memo, BARE_TAG)
        bare_cpu += time.process_time() - cpu
        return time.perf_counter() - start

    bare_s = await run_bare(before)
    # Landed only now, right before it is processed: a recovery pass queueing
    # it for the worker in between would steal the timed run.
    settlement = await landed_settlement(machine, sale, os.urandom(32).hex())
    with around() if around else contextlib.nullcontext():
        cpu, start = time.process_time(), time.perf_counter()
        result = await distribution.process_settlement(settlement.id)
        pipeline_s = time.perf_counter() - start
        pipeline_cpu = time.process_time() - cpu
    bare_s += await run_bare(after)

    legs = await crud.get_legs(settlement.id)
    paid = [leg for leg in legs if leg.status == "completed"]
    assert result is not None and result.status == "processed", result
    assert len(paid) == n + 3 == len(bare), (len(paid), n, len(bare))

    await env.delete_users(lps)
    await force_delete_wallet(machine_wallet)
    machine.is_active = False
    await crud.update_machine(machine)
    return {
        "legs": n + 3,
        "pipeline_ms": round(pipeline_s * 1000, 1),
        "bare_ms": round(bare_s * 1000, 1),
        "ratio": round(pipeline_s / bare_s, 3),
        # CPU time of this process (all its threads: aiosqlite's too), less
        # sensitive to other processes on the machine; excludes PostgreSQL's.
        "cpu_ratio": round(pipeline_cpu / bare_cpu, 3),
    }


async def run(
    lnbits: Lnbits, *, quick: bool, profile_dir: Path | None = None
) -> dict[str, Any]:
    operator = await env.register_user(lnbits.http, "operator", extra_wallets=1)
    ctx = Context(lnbits, operator)
    await set_platform_fee(PLATFORM_FEE_PCT, ctx.fee_wallet)
    await set_splits(operator.id, list(zip(ctx.split_wallets, SPLIT_PCTS, strict=True)))

    sampler = env.MemorySampler().start()
    started = time.perf_counter()
    await _trial(ctx, 3, 0)  # warm-up: caches, compiled queries; not recorded
    results: dict[str, Any] = {}
    for n, trials in (QUICK_TRIALS if quick else FULL_TRIALS).items():
        runs = []
        for i in range(trials):
            runs.append(await _trial(ctx, n, i))
            env.log(f"overhead N={n} trial {i + 1}/{trials}: {runs[-1]}")
        results[str(n)] = {
            "legs": n + 3,
            "trials": runs,
            "pipeline_ms": statistics.median(r["pipeline_ms"] for r in runs),
            "bare_ms": statistics.median(r["bare_ms"] for r in runs),
            "ratio": round(statistics.median(r["ratio"] for r in runs), 3),
            "cpu_ratio": round(statistics.median(r["cpu_ratio"] for r in runs), 3),
            "pipeline_ms_per_leg": round(
                statistics.median(r["pipeline_ms"] for r in runs) / (n + 3), 2
            ),
            "bare_ms_per_leg": round(
                statistics.median(r["bare_ms"] for r in runs) / (n + 3), 2
            ),
        }
    out: dict[str, Any] = {
        "by_n": results,
        "seconds": round(time.perf_counter() - started, 1),
        "memory": sampler.stop(),
    }
    if profile_dir is not None:
        out["profile"] = await _profile(ctx, profile_dir, 100 if not quick else 10)
    return out


async def _profile(ctx: Context, profile_dir: Path, n: int) -> dict[str, Any]:
    """Two extra trials (not in the figures: instruments slow things down):
    one with a step timer on the pipeline's calls, one under pyinstrument."""
    import satmachineadmin.crud
    import satmachineadmin.distribution as distribution

    from .profiling import StepTimer, pyinstrument_to

    timer = StepTimer()

    @contextlib.contextmanager
    def timed() -> Any:
        timer.wrap(satmachineadmin.crud)
        timer.wrap(
            distribution,
            ["create_invoice", "pay_invoice", "get_standalone_payment", "pay_leg"],
        )
        timer.wrap(distribution, ["_planned_legs", "_finish"])
        try:
            yield
        finally:
            timer.restore()

    steps_trial = await _trial(ctx, n, 98, timed)
    path = profile_dir / "overhead-pyinstrument.txt"
    profiled_trial = await _trial(ctx, n, 99, lambda: pyinstrument_to(path))
    return {
        "n": n,
        "steps_trial": steps_trial,
        "steps_per_leg": timer.report(per=n + 3),
        "pyinstrument_trial": profiled_trial,
        "pyinstrument_file": str(path),
    }
