"""Plays a bitSpire ATM against LNbits: each sale is an invoice on the
machine wallet carrying bitSpire's ``extra``, paid from a customer wallet.

In-process (tests, benchmarks) pass an ``httpx.AsyncClient`` bound to the
app; against a running LNbits use the command line:

    .venv/bin/python -m bench.simulator --url http://127.0.0.1:5000 \\
        --machine-inkey INKEY --customer-adminkey ADMINKEY --npub npub1... \\
        --count 10 --per-second 2 --fiat 2000 --exchange-rate 772114 \\
        --fee-pct 0.03 --currency GTQ
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

import httpx

SATS_PER_BTC = 100_000_000


@dataclass(frozen=True)
class Sale:
    """One cash-out, priced as bitSpire prices it."""

    fiat_amount: Decimal
    exchange_rate: Decimal  # fiat per BTC
    fee_pct: Decimal
    currency: str
    machine_npub: str

    @property
    def net_sats(self) -> int:
        net = self.fiat_amount * SATS_PER_BTC / self.exchange_rate
        return int(net.to_integral_value(ROUND_HALF_EVEN))

    @property
    def fee_sats(self) -> int:
        return int((self.net_sats * self.fee_pct).to_integral_value(ROUND_HALF_EVEN))

    @property
    def gross_sats(self) -> int:
        return self.net_sats + self.fee_sats

    def extra(self, txid: str) -> dict:
        return {
            "source": "bitspire",
            "net_sats": self.net_sats,
            "fee_sats": self.fee_sats,
            "fee_pct": str(self.fee_pct),
            "exchange_rate": str(self.exchange_rate),
            "fiat_amount": str(self.fiat_amount),
            "currency": self.currency,
            "txid": txid,
            "machine_npub": self.machine_npub,
            "bills": [{"denomination": 100, "count": 1}],
            "cassettes": [],
        }


async def create_sale_invoice(
    client: httpx.AsyncClient,
    machine_inkey: str,
    amount_sats: int,
    extra: dict | None,
    memo: str = "bitSpire cash-out",
) -> dict:
    response = await client.post(
        "/api/v1/payments",
        json={"out": False, "amount": amount_sats, "memo": memo, "extra": extra},
        headers={"X-Api-Key": machine_inkey},
    )
    response.raise_for_status()
    return response.json()


async def pay(client: httpx.AsyncClient, customer_adminkey: str, bolt11: str) -> dict:
    response = await client.post(
        "/api/v1/payments",
        json={"out": True, "bolt11": bolt11},
        headers={"X-Api-Key": customer_adminkey},
    )
    response.raise_for_status()
    return response.json()


async def sell(
    client: httpx.AsyncClient,
    *,
    machine_inkey: str,
    customer_adminkey: str,
    sale: Sale | None = None,
    gross_sats: int | None = None,
    extra: dict | None = None,
) -> str:
    """Make one sale; returns its payment hash. Give a ``Sale`` (bitSpire
    data), or ``gross_sats`` with any ``extra`` (old firmware, odd payloads)."""
    if sale is not None:
        gross_sats, extra = sale.gross_sats, sale.extra(uuid.uuid4().hex[:12])
    assert gross_sats is not None
    invoice = await create_sale_invoice(client, machine_inkey, gross_sats, extra)
    await pay(client, customer_adminkey, invoice["bolt11"])
    return invoice["payment_hash"]


async def run(
    client: httpx.AsyncClient,
    *,
    machine_inkey: str,
    customer_adminkey: str,
    sale: Sale,
    count: int,
    per_second: float | None = None,
) -> list[tuple[str, float]]:
    """``count`` sales, paced at ``per_second`` (None: as fast as possible).
    Returns each sale's payment hash and the time it was paid."""
    paid: list[tuple[str, float]] = []
    interval = 1 / per_second if per_second else 0.0
    started = time.monotonic()
    for i in range(count):
        if interval:
            await asyncio.sleep(max(0.0, started + i * interval - time.monotonic()))
        payment_hash = await sell(
            client,
            machine_inkey=machine_inkey,
            customer_adminkey=customer_adminkey,
            sale=sale,
        )
        paid.append((payment_hash, time.monotonic()))
    return paid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:5000")
    parser.add_argument("--machine-inkey", required=True)
    parser.add_argument("--customer-adminkey", required=True)
    parser.add_argument("--npub", required=True)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--per-second", type=float, default=None)
    parser.add_argument("--fiat", type=Decimal, default=Decimal(2000))
    parser.add_argument("--exchange-rate", type=Decimal, default=Decimal(772114))
    parser.add_argument("--fee-pct", type=Decimal, default=Decimal("0.03"))
    parser.add_argument("--currency", default="GTQ")
    args = parser.parse_args()
    sale = Sale(args.fiat, args.exchange_rate, args.fee_pct, args.currency, args.npub)

    async def go() -> None:
        async with httpx.AsyncClient(base_url=args.url, timeout=30) as client:
            paid = await run(
                client,
                machine_inkey=args.machine_inkey,
                customer_adminkey=args.customer_adminkey,
                sale=sale,
                count=args.count,
                per_second=args.per_second,
            )
        for payment_hash, _ in paid:
            print(f"sold {sale.gross_sats} sats: {payment_hash}")

    asyncio.run(go())


if __name__ == "__main__":
    main()
