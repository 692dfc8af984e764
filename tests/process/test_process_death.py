"""Payouts survive real process death: LNbits runs as a subprocess, sales are
paid in rounds, and the whole process group is SIGKILLed at a seeded random
moment during the payouts of each round, then started again on the same data.

Afterwards, over HTTP and from LNbits' own balances: every paid sale landed
exactly once, every settlement is processed, every payee wallet holds exactly
its completed legs, the machine wallet holds the gross less the completed
legs and made exactly one LNbits payment per completed leg.

The seed is ``SATMACHINE_SOAK_SEED`` (default 9) so a failure can be replayed;
the long variant is ``make soak`` (``tests/process/soak.py``).
"""

from __future__ import annotations

import os
import random
import time

from lnbits_process import LnbitsProcess
from shop import Shop

SEED = int(os.environ.get("SATMACHINE_SOAK_SEED", "9"))


def run_with_kills(
    node: LnbitsProcess,
    *,
    seed: int,
    rounds: int,
    per_round: int,
    lps: int = 12,
    settle_each_round: bool = False,
) -> dict:
    """Sell ``rounds`` x ``per_round`` sales, SIGKILL 0 to 2.5 s after each
    round (while its legs are being paid), start again; then wait for every
    settlement and check the invariants. ``settle_each_round`` waits for
    every settlement after each restart (one resume time per kill), else
    only after the last one (rounds pile up: kills also hit resumed work).
    Returns the figures."""
    rng = random.Random(seed)
    shop = Shop.open(node, lps=lps, seed=seed)
    resume_times: list[float] = []
    for i in range(rounds):
        for _ in range(per_round):
            shop.sell(rng)
        time.sleep(rng.uniform(0, 2.5))
        node.kill()
        killed_at = time.monotonic()
        node.start()
        if settle_each_round or i == rounds - 1:
            # How long until what the kill cut off is finished again.
            shop.wait_until_final()
            resume_times.append(time.monotonic() - killed_at)
    summary = shop.check()
    summary.update(
        kills=node.kills,
        seed=seed,
        resume_max_s=round(max(resume_times), 1),
        resume_times_s=[round(t, 1) for t in resume_times],
    )
    return summary


def test_payouts_survive_sigkill_during_payouts(node: LnbitsProcess) -> None:
    summary = run_with_kills(node, seed=SEED, rounds=3, per_round=4)
    print(f"\n{node.db_name}: {summary}")
    assert summary["kills"] == 3
    assert summary["resume_max_s"] < 60 + 30, summary  # restart + resume


def _edit_stopped_database(node: LnbitsProcess, core: list[str], ext: list[str]):
    """SQL on the stopped node's data: LNbits' own tables and the extension's
    (``satmachineadmin.`` prefixed on PostgreSQL, its own file on SQLite)."""
    assert not node.alive()
    if node.postgres:
        import asyncio

        import asyncpg

        async def run() -> None:
            conn = await asyncpg.connect(f"{node.postgres.rstrip('/')}/{node.database}")
            try:
                for sql in core + [q.replace("EXT.", "satmachineadmin.") for q in ext]:
                    await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(run())
        return
    import sqlite3

    data = node.root / "data"
    for path, statements in (
        (data / "database.sqlite3", core),
        (data / "ext_satmachineadmin.sqlite3", [q.replace("EXT.", "") for q in ext]),
    ):
        with sqlite3.connect(path) as conn:
            for sql in statements:
                assert conn.execute(sql).rowcount >= 1, sql


def test_a_kill_between_the_two_writes_of_a_transfer_is_repaired(
    node: LnbitsProcess,
) -> None:
    """A SIGKILL between LNbits' two commits of an internal transfer leaves the
    payer's payment successful, the payee's invoice pending and the leg not
    recorded. Leave exactly that on disk (a finished leg put back in that
    state while the process is down), start again, and check that the
    extension finishes the transfer forward exactly once, records and shows
    the repair, and counts the leg completed only then."""
    shop = Shop.open(node, lps=2, seed=SEED)
    shop.sell(random.Random(SEED))
    shop.wait_until_final()
    full = shop.check()
    [settlement] = shop.settlements()
    leg = next(
        leg for leg in shop.legs() if leg["leg_type"] == "dca" and leg["amount_sats"]
    )
    payee = shop.payees[leg["destination_wallet_id"]]
    node.kill()
    past = "'2000-01-01 00:00:00'" if node.postgres else "0"
    h = leg["payment_hash"]
    _edit_stopped_database(
        node,
        [
            f"UPDATE apipayments SET status = 'pending' WHERE payment_hash = '{h}' "
            "AND amount > 0"
        ],
        [
            f"UPDATE EXT.payments SET status = 'pending', completed_at = NULL "
            f"WHERE id = '{leg['id']}'",
            f"UPDATE EXT.settlements SET status = 'processing', processed_at = NULL, "
            f"claimed_until = {past} WHERE id = '{settlement['id']}'",
        ],
    )
    node.start()
    shop.wait_until_final(timeout=60)
    assert node.balance(payee) == leg["amount_sats"]
    summary = shop.check()
    assert summary["repaired"] == 1, summary
    assert summary["legs_completed"] == full["legs_completed"]
    detail = node.api("GET", f"/settlements/{settlement['id']}", shop.operator)
    [repaired] = [leg for leg in detail["legs"] if leg["repaired_at"]]
    assert repaired["id"] == leg["id"]
    assert "marked paid" in repaired["repair_note"]
    assert "repaired" in (detail["settlement"]["notes"] or "")
    assert "1 transfer(s) repaired" in detail["wait_reason"]
    # Start again: nothing is repaired twice, no balance moves.
    before = {w: node.balance(wallet) for w, wallet in shop.payees.items()}
    node.kill()
    node.start()
    time.sleep(3)
    assert {w: node.balance(wallet) for w, wallet in shop.payees.items()} == before
    assert shop.check() == summary
