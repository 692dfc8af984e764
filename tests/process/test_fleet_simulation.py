"""The CI-sized fleet simulation (``bench/simulate.py``): a few hundred sales
at three bitSpire machines, a Lamassu machine (a local PostgreSQL database
shaped like lamassu-server's) and a manual one, fixed-mode slots and a
failing autoforward, against a real LNbits process SIGKILLed twice, and the
books checked to the sat against LNbits' own balances and payments.

SQLite by default; PostgreSQL under ``make test-pg``. ``SATMACHINE_SIM_SALES``
changes the number of sales."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.simulate import Params, simulate  # noqa: E402


def test_a_month_of_a_fleet_reconciles_to_the_sat(tmp_path: Path) -> None:
    postgres = os.environ.get("SATMACHINE_TEST_POSTGRES")
    sales = int(os.environ.get("SATMACHINE_SIM_SALES", "200"))
    params = Params(
        sales=sales,
        machines=3,
        kills=2,
        db="postgres" if postgres else "sqlite",
        pg_url=postgres or Params.pg_url,
        seed=7,
        lps_per_machine=2,
        fixed_slots=12,  # a slot every two hours: each one run through the month
        report=tmp_path / "simulation.md",
    )
    result = simulate(params)

    assert result.books.differences == [], "\n".join(result.books.differences[:30])
    assert result.kills == 2
    checks = result.books.checks
    counts = result.counts
    # --sales counts every source's: bitSpire, Lamassu (a local PostgreSQL
    # database shaped like lamassu-server's) and manual.
    assert checks["sale landed once"] == sales
    assert checks["legs add up to the gross"] == sales
    assert counts["sales_lamassu"] > 0 and counts["sales_manual"] > 0
    # Fee and split wallets, every LP (the autoforwarding one less what it
    # forwarded) and the forward's payee.
    assert checks["payee wallet = its completed legs (less what it forwarded)"] >= (
        1 + 3 + 5 * 2 + 2 + 1
    )
    # Three bitSpire machines, a Lamassu and a manual one: two flow-mode LPs
    # each, and two fixed-mode LPs.
    assert checks["LP remaining = deposits - charged, never negative"] == 5 * 2 + 2
    assert checks["machine wallet = gross in + top-ups - completed legs"] == 5
    # The month really had what it is meant to exercise.
    assert counts["sales_fallback"] > 0 and counts["sales_invalid"] > 0
    assert counts["refunds"] + counts["partial_dispenses"] == counts["sales_invalid"]
    assert counts["dry_wallet_settlements"] == 2
    assert counts["deposits_rejected"] > 0
    assert counts["awaiting_funds_seen"] > 0  # Lamassu and manual wallets ran dry
    # Fixed mode: every slot of the day run (some twice), each LP buying once
    # a slot; the funding wallet ran short and was topped up.
    assert checks["no fixed-mode slot paid twice"] == 1
    assert counts["fixed_slots_run"] == 12 and counts["fixed_buys"] > 12
    assert counts["fixed_funding_top_ups"] > 0
    # Autoforward: the endpoint refused a few times, the sats went on later.
    assert counts["lnurl_refusals"] >= 3 and counts["forwards_completed"] > 0
    assert "RECONCILED" in (tmp_path / "simulation.md").read_text()
