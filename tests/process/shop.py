"""An operator's shop on a real LNbits process, driven only over HTTP: a
machine, LPs, a commission split, bitSpire sales; and the checks that must
hold after any number of SIGKILLs (used by the tests and by ``soak.py``).

A sale is what bitSpire does (``tests/integration/scenario.py``): an invoice
on the machine wallet carrying bitSpire's ``extra``, paid from a customer
wallet.
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # for bench.simulator

from bech32 import bech32_encode, convertbits
from lnbits_process import Actor, LnbitsProcess, Wallet

from bench.simulator import Sale

FINAL = {"processed", "errored", "partial", "refunded"}


def npub() -> str:
    data = convertbits(uuid.uuid4().bytes * 2, 8, 5)
    assert data is not None
    return bech32_encode("npub", data)


@dataclass
class Shop:
    node: LnbitsProcess
    operator: Actor
    machine_id: str
    machine_wallet: Wallet
    machine_npub: str
    customer: Actor
    payees: dict[str, Wallet] = field(default_factory=dict)  # wallet id -> wallet
    sales: list[str] = field(default_factory=list)  # payment hashes
    gross: int = 0

    # --- setup -----------------------------------------------------------

    @classmethod
    def open(cls, node: LnbitsProcess, lps: int = 12, seed: int = 0) -> Shop:
        """A machine (GTQ) with a 30 % platform fee, a 50/30/20 split and
        ``lps`` LPs with confirmed deposits of different sizes."""
        rng = random.Random(seed)
        su = node.superuser()
        node.api(
            "PUT",
            "/super-config",
            su,
            json={"super_fee_pct": "0.3", "super_fee_wallet_id": su.wallet.id},
        )
        operator = node.register("operator", extra_wallets=4)
        machine_wallet = operator.wallets[1]
        machine_npub = npub()
        machine = node.api(
            "POST",
            "/machines",
            operator,
            json={
                "npub": machine_npub,
                "wallet_id": machine_wallet.id,
                "name": "ATM 1",
                "currency": "GTQ",
            },
            expect=201,
        )
        splits = operator.wallets[2:5]
        node.api(
            "PUT",
            "/commission-splits",
            operator,
            json={
                "legs": [
                    {"wallet_id": w.id, "pct": pct, "label": f"split {i}"}
                    for i, (w, pct) in enumerate(
                        zip(splits, ("0.5", "0.3", "0.2"), strict=True)
                    )
                ]
            },
        )
        customer = node.register("customer")
        node.credit(customer.wallet.id, 10_000_000)
        shop = cls(
            node, operator, machine["id"], machine_wallet, machine_npub, customer
        )
        shop.payees = {w.id: w for w in [su.wallet, *splits]}
        for i in range(lps):
            lp = node.register(f"lp{i}")
            client = node.api(
                "POST",
                "/clients",
                operator,
                json={
                    "machine_id": machine["id"],
                    "user_id": lp.id,
                    "wallet_id": lp.wallet.id,
                    "username": lp.username,
                },
                expect=201,
            )
            deposit = node.api(
                "POST",
                "/deposits",
                operator,
                json={
                    "client_id": client["id"],
                    "amount": str(rng.randint(50, 400) * 100),
                },
                expect=201,
            )
            node.api(
                "PUT",
                f"/deposits/{deposit['id']}/status",
                operator,
                json={"status": "confirmed"},
            )
            shop.payees[lp.wallet.id] = lp.wallet
        return shop

    # --- sales -----------------------------------------------------------

    def sell(self, rng: random.Random) -> str:
        """One bitSpire cash-out of 100 to 900 GTQ, paid by the customer."""
        sale = Sale(
            Decimal(rng.randint(1, 9) * 100),
            Decimal("772114"),
            Decimal("0.03"),
            "GTQ",
            self.machine_npub,
        )
        invoice = self.node.create_invoice(
            self.machine_wallet,
            sale.gross_sats,
            "bitSpire cash-out",
            sale.extra(uuid.uuid4().hex[:12]),
        )
        self.node.pay_invoice(self.customer.wallet, invoice["bolt11"])
        self.sales.append(invoice["payment_hash"])
        self.gross += sale.gross_sats
        return str(invoice["payment_hash"])

    # --- reading ---------------------------------------------------------

    def settlements(self) -> list[dict]:
        rows: list[dict] = []
        while True:
            page = self.node.api(
                "GET",
                "/settlements",
                self.operator,
                params={"limit": 1000, "offset": len(rows)},
            )
            rows += page
            if len(page) < 1000:
                return rows

    def legs(self) -> list[dict]:
        rows: list[dict] = []
        while True:
            page = self.node.api(
                "GET",
                "/payments",
                self.operator,
                params={"limit": 1000, "offset": len(rows)},
            )
            rows += page
            if len(page) < 1000:
                return rows

    def wait_until_final(self, timeout: float = 150) -> float:
        """Seconds until every sale's settlement is final."""
        began = time.monotonic()
        while True:
            rows = self.settlements()
            if len(rows) >= len(self.sales) and all(r["status"] in FINAL for r in rows):
                return time.monotonic() - began
            if time.monotonic() - began > timeout:
                stuck = [
                    (r["id"], r["status"], r.get("error"))
                    for r in rows
                    if r["status"] not in FINAL
                ]
                raise AssertionError(
                    f"{len(rows)}/{len(self.sales)} landed; not final: {stuck}"
                )
            time.sleep(0.5)

    def retry_errored(self) -> int:
        errored = [r for r in self.settlements() if r["status"] == "errored"]
        for row in errored:
            self.node.api("POST", f"/settlements/{row['id']}/retry", self.operator)
        return len(errored)

    # --- the invariants ------------------------------------------------------

    def check(self) -> dict:
        """What must hold after any number of kills, read over HTTP and from
        LNbits' own balances. Returns a summary."""
        rows = self.settlements()
        hashes = Counter(r["payment_hash"] for r in rows)
        assert sorted(hashes) == sorted(self.sales), "every paid sale landed"
        assert max(hashes.values()) == 1, "landed exactly once"
        bad = [(r["id"], r["status"], r.get("error")) for r in rows]
        bad = [b for b in bad if b[1] != "processed"]
        assert not bad, f"every settlement processed: {bad}"

        legs = self.legs()
        completed = [leg for leg in legs if leg["status"] == "completed"]
        assert all(leg["status"] in ("completed", "skipped") for leg in legs), Counter(
            leg["status"] for leg in legs
        )
        by_wallet: Counter[str] = Counter()
        for leg in completed:
            by_wallet[leg["destination_wallet_id"]] += leg["amount_sats"]
        for wallet_id, wallet in self.payees.items():
            assert self.node.balance(wallet) == by_wallet[wallet_id], (
                f"payee {wallet_id} holds exactly its completed legs"
            )
        assert set(by_wallet) <= set(self.payees), "no leg to an unknown wallet"
        paid_out = sum(leg["amount_sats"] for leg in completed)
        assert self.node.balance(self.machine_wallet) == self.gross - paid_out, (
            "the machine wallet holds the gross less the completed legs"
        )
        outgoing = [
            p
            for p in self.node.payments(self.machine_wallet)
            if p["amount"] < 0 and p["status"] == "success"
        ]
        transfers = [leg for leg in completed if leg["amount_sats"] > 0]
        assert len(outgoing) == len(transfers), "one LNbits payment per completed leg"
        assert {p["payment_hash"] for p in outgoing} == {
            leg["payment_hash"] for leg in transfers
        }
        for leg in legs:
            assert sum(1 for r in rows if r["id"] == leg["settlement_id"]) == 1
        per_settlement: Counter[str] = Counter()
        for leg in legs:
            if leg["status"] in ("completed", "skipped"):
                per_settlement[leg["settlement_id"]] += leg["amount_sats"]
        for r in rows:
            assert per_settlement[r["id"]] == r["gross_sats"], "legs add up"
        return {
            "sales": len(rows),
            "legs_completed": len(completed),
            "repaired": sum(1 for leg in legs if leg.get("repaired_at")),
            "invoices_replaced": sum(
                leg.get("invoice_replacements", 0) for leg in legs
            ),
        }
