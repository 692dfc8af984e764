"""Fixed-mode slots survive a real crash: LNbits runs as a subprocess with the
scheduler on the real clock and a local price endpoint as its rate provider;
it is SIGKILLed in the middle of a slot's payouts and again between two slots
(down while the second slot's time passes). Every LP buys exactly once per
slot, and the machine wallet pays exactly what the LPs received."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bech32 import bech32_encode, convertbits

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from fixed_support import PriceServer
from lnbits_process import LnbitsProcess

N_LPS = 30
PER_SLOT_SATS = 100_000  # 100 GTQ (200 a day, two slots) at 100 000 GTQ/BTC
FUNDS = 10_000_000


def _npub() -> str:
    data = convertbits(os.urandom(32), 8, 5)
    assert data is not None
    return bech32_encode("npub", data)


def _wait_until(moment: datetime) -> None:
    delay = (moment - datetime.now(timezone.utc)).total_seconds()
    if delay > 0:
        time.sleep(delay)


def _setup(node: LnbitsProcess):
    node.superuser()
    operator = node.register("operator", extra_wallets=1)
    machine_wallet = operator.wallets[1]
    node.credit(machine_wallet.id, FUNDS)
    machine = node.api(
        "POST",
        "/machines",
        operator,
        json={
            "npub": _npub(),
            "wallet_id": machine_wallet.id,
            "name": "ATM",
            "currency": "GTQ",
        },
        expect=201,
    )
    lps = []
    for i in range(N_LPS):
        lp = node.register(f"lp{i}")
        client = node.api(
            "POST",
            "/clients",
            operator,
            json={
                "machine_id": machine["id"],
                "user_id": lp.id,
                "wallet_id": lp.wallet.id,
                "dca_mode": "fixed",
                "fixed_mode_daily_limit": "200",
            },
            expect=201,
        )
        deposit = node.api(
            "POST",
            "/deposits",
            operator,
            json={"client_id": client["id"], "amount": "1000"},
            expect=201,
        )
        node.api(
            "PUT",
            f"/deposits/{deposit['id']}/status",
            operator,
            json={"status": "confirmed"},
        )
        lps.append((lp, client))
    return operator, machine, machine_wallet, lps


def _slot_legs(node, operator, slot_prefix: str) -> list[dict]:
    legs = node.api(
        "GET", "/payments", operator, params={"leg_type": "dca", "limit": 1000}
    )
    return [leg for leg in legs if (leg.get("slot") or "").startswith(slot_prefix)]


def _wait_for_slot(node, operator, machine_id, slot_time, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = node.api("GET", f"/machines/{machine_id}/fixed-slots", operator)
        if any(r["slot_time"] == slot_time and r["status"] == "done" for r in runs):
            return
        time.sleep(0.5)
    raise AssertionError(f"slot {slot_time} not done; log:\n{node.log_tail()}")


def test_slots_survive_sigkill_during_and_between_slots():
    prices = PriceServer()
    provider = [
        {
            "name": "local-test",
            "api_url": f"http://127.0.0.1:{prices.port}/btc/{{TO}}",
            "path": "$.price",
        }
    ]
    try:
        with LnbitsProcess(
            env={"LNBITS_EXCHANGE_RATE_PROVIDERS": json.dumps(provider)},
            log_name="fixed",
        ) as node:
            node.start()
            operator, machine, machine_wallet, lps = _setup(node)
            now = datetime.now(timezone.utc)
            # The next whole minute at least 15 s away (the scheduler looks
            # every second in these processes: lnbits_process.py).
            first = (now + timedelta(seconds=75)).replace(second=0, microsecond=0)
            second = first + timedelta(minutes=1)
            hhmm = [first.strftime("%H:%M"), second.strftime("%H:%M")]
            node.api(
                "PUT",
                "/fixed-schedule",
                operator,
                json={
                    "machine_id": machine["id"],
                    "times": hhmm,
                    "timezone": "UTC",
                },
            )

            # 1. SIGKILL while the first slot is paying out.
            _wait_until(first)
            deadline = time.monotonic() + 60
            caught = None
            while time.monotonic() < deadline:
                held = node.balance(machine_wallet)
                if held < FUNDS:
                    node.kill()
                    caught = held
                    break
                time.sleep(0.01)
            assert caught is not None, "the first slot never started"
            paid_before_kill = FUNDS - caught
            assert 0 < paid_before_kill < N_LPS * PER_SLOT_SATS, paid_before_kill

            node.start()
            _wait_for_slot(node, operator, machine["id"], hhmm[0])
            legs = _slot_legs(node, operator, f"{first.date().isoformat()}T{hhmm[0]}")
            assert len(legs) == N_LPS
            assert all(leg["status"] == "completed" for leg in legs), legs
            assert sorted(leg["client_id"] for leg in legs) == sorted(
                c["id"] for _, c in lps
            )
            for lp, _ in lps:
                assert node.balance(lp.wallet) == PER_SLOT_SATS
            assert node.balance(machine_wallet) == FUNDS - N_LPS * PER_SLOT_SATS

            # 2. SIGKILL between the slots; LNbits stays down over the second
            # one's time, which then runs when it is back (the same day).
            node.kill()
            _wait_until(second + timedelta(seconds=2))
            node.start()
            _wait_for_slot(node, operator, machine["id"], hhmm[1])
            for lp, client in lps:
                assert node.balance(lp.wallet) == 2 * PER_SLOT_SATS
                left = node.api("GET", f"/clients/{client['id']}/balance", operator)
                assert float(left["remaining_balance"]) == 800
            assert node.balance(machine_wallet) == FUNDS - 2 * N_LPS * PER_SLOT_SATS
            legs = node.api(
                "GET", "/payments", operator, params={"leg_type": "dca", "limit": 1000}
            )
            assert len([leg for leg in legs if leg["status"] == "completed"]) == (
                2 * N_LPS
            )
    finally:
        prices.close()
