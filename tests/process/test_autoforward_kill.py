"""A forward is never sent twice across a real process death.

LNbits runs as a subprocess (``lnbits_process``). An LP's position receives
real DCA sats from a bitSpire sale; the LP turns autoforward on to an
LNURL-pay endpoint served by this test on 127.0.0.1 (invoices made on a payee
wallet of the same LNbits, so LNbits pays them internally). The moment the
endpoint hands out an invoice, a timer SIGKILLs LNbits after a seeded random
delay: before the forward is recorded, between recording and paying, during
or after the payment. LNbits is started again on the same data, and the
checks are LNbits' own: the LP's wallet paid out exactly its DCA sats, once;
the payee received them once; the ledger's completed forwards say the same.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from bech32 import bech32_encode, convertbits
from lnbits_process import LnbitsProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench.simulator

import httpx
from lnurl_server import LnurlServer, ThreadedLnurlServer

from bench.simulator import Sale

SEED = int(os.environ.get("SATMACHINE_KILL_SEED", "1414"))
# Three seeded moments, of which the earliest and the latest run: with the
# default seed two of the three fall 2 ms apart, in the same window.
_MOMENTS = sorted(round(random.Random(SEED + i).uniform(0, 0.25), 3) for i in range(3))
DELAYS = [_MOMENTS[0], _MOMENTS[-1]]
ENV = {
    "SATMACHINEADMIN_AUTOFORWARD_INTERVAL": "0.5",
    "SATMACHINEADMIN_AUTOFORWARD_BACKOFF": "1",
    "LNBITS_LNURL_ALLOW_PRIVATE_IPS": "true",  # the endpoint is on 127.0.0.1
}


def _npub() -> str:
    data = convertbits(os.urandom(32), 8, 5)
    assert data is not None
    return bech32_encode("npub", data)


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _dca_position(node: LnbitsProcess):
    """An LP with real DCA sats from one sale; returns (lp, client id, sats)."""
    operator = node.register("operator", extra_wallets=1)
    lp, customer = node.register("lp"), node.register("customer")
    node.credit(customer.wallet.id, 1_000_000)
    machine_wallet = operator.wallets[1]
    machine = node.api(
        "POST", "/machines", operator, expect=201,
        json={"npub": _npub(), "wallet_id": machine_wallet.id, "name": "Kill ATM",
              "currency": "GTQ"},
    )  # fmt: skip
    client = node.api(
        "POST", "/clients", operator, expect=201,
        json={"machine_id": machine["id"], "user_id": lp.id,
              "wallet_id": lp.wallet.id},
    )  # fmt: skip
    deposit = node.api(
        "POST", "/deposits", operator, expect=201,
        json={"client_id": client["id"], "amount": "5000"},
    )  # fmt: skip
    node.api(
        "PUT", f"/deposits/{deposit['id']}/status", operator,
        json={"status": "confirmed"},
    )  # fmt: skip
    sale = Sale(Decimal(2000), Decimal(772114), Decimal("0.03"), "GTQ", machine["npub"])
    invoice = node.create_invoice(
        machine_wallet, sale.gross_sats, "bitSpire cash-out",
        sale.extra(uuid.uuid4().hex[:12]),
    )  # fmt: skip
    node.pay_invoice(customer.wallet, invoice["bolt11"])

    def processed():
        rows = node.api("GET", "/settlements", operator)
        return rows and rows[0]["status"] == "processed"

    _wait(processed, 60, "the sale to be paid out")
    received = node.balance(lp.wallet)
    assert received == sale.net_sats
    return lp, client["id"], received


@pytest.mark.parametrize("delay", DELAYS)
def test_a_forward_is_never_sent_twice_across_sigkill(delay: float):
    with LnbitsProcess(env=ENV, log_name="autoforward-kill") as node:
        node.start()
        node.superuser()
        lp, client_id, received = _dca_position(node)
        payee = node.register("payee")

        async def make_invoice(inkey: str, sats: int, memo: str) -> str:
            async with httpx.AsyncClient(base_url=node.url, timeout=30) as http:
                r = await http.post(
                    "/api/v1/payments",
                    json={"out": False, "amount": sats, "memo": memo},
                    headers={"X-API-KEY": inkey},
                )
                r.raise_for_status()
                return r.json()["bolt11"]

        killed = threading.Event()

        def kill_soon(bolt11: str) -> None:
            if killed.is_set() or getattr(kill_soon, "armed", False):
                return
            kill_soon.armed = True  # type: ignore[attr-defined]

            def kill() -> None:
                node.kill()
                killed.set()

            threading.Timer(delay, kill).start()

        server = LnurlServer(make_invoice, on_invoice=kill_soon)
        server.payees["payee"] = payee.wallet.inkey
        with ThreadedLnurlServer(server):
            node.api(
                "PUT", f"/lp/positions/{client_id}", lp,
                json={"autoforward_enabled": True,
                      "autoforward_address": server.lnurlp("payee"),
                      "autoforward_threshold_sats": 1000},
            )  # fmt: skip
            assert killed.wait(60), "no forward was attempted"
            node.start()

            def settled():
                legs = node.api(
                    "GET", "/lp/payments", lp, params={"leg_type": "autoforward"}
                )
                done = [leg for leg in legs if leg["status"] == "completed"]
                pending = [leg for leg in legs if leg["status"] == "pending"]
                return legs if done and not pending else None

            legs = _wait(settled, 90, "the forward to complete after the restart")
            time.sleep(2)  # a few more passes: nothing more may be sent
            legs = node.api(
                "GET", "/lp/payments", lp, params={"leg_type": "autoforward"}
            )

        completed = [leg for leg in legs if leg["status"] == "completed"]
        print(  # what the kill interrupted (shown with -s)
            f"\nkill {delay} s after the invoice: forwards "
            f"{[leg['status'] for leg in reversed(legs)]}, "
            f"LNURL invoices asked {len(server.requests)}"
        )
        assert sum(leg["amount_sats"] for leg in completed) == received, legs
        assert all(leg["status"] in ("completed", "failed") for leg in legs), legs
        assert node.balance(lp.wallet) == 0
        assert node.balance(payee.wallet) == received
        paid_out = [
            p for p in node.payments(lp.wallet)
            if p["amount"] < 0 and p["status"] == "success"
        ]  # fmt: skip
        assert len(paid_out) == len(completed) == 1, paid_out
        assert node.kills == 1 and node.starts == 2
