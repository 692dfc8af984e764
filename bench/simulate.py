"""A month of a fleet, time-compressed, against a real LNbits process: does
every sat add up at the end? (`make simulate`)

    .venv/bin/python -m bench.simulate --sales 10000 --machines 5 --kills 3 \\
        --db sqlite|postgres [--seed 13] [--report docs/simulation-sqlite.md]

LNbits runs as a subprocess (``tests/process/lnbits_process.py``: FakeWallet,
a fresh data folder or PostgreSQL database) and is driven over HTTP only, as
bitSpire machines, customers, the operator, LPs and the super user would. A
seeded plan (``random.Random(seed)``) lays out the month (``--sales`` counts
the sales of every source): sales at each bitSpire machine (bitSpire
payloads, old firmware without one, payloads that do not add up and are then
settled by a partial dispense or a full refund); a Lamassu machine whose sales
are rows in a local PostgreSQL database shaped like lamassu-server's (late
dispense confirmations, rows that are not sales); a manual machine; LPs
joining and topping up their deposits mid-month (some deposits rejected), LP
balances running out (sync mismatches: the rest stays in the machine wallet);
Lamassu and manual machine wallets running dry (sales wait for funds) and
topped up; a machine wallet too dry for an LP balance settlement and then
topped up; fixed-mode LPs buying at the slots of a schedule, from a funding
wallet that runs short; an LP autoforwarding to an LNURL-pay endpoint that
goes down now and then; and LNbits killed with SIGKILL and started again a
few times.

The month is replayed as fast as LNbits goes: LNbits' CPU is what bounds it
(every sale is two HTTP calls and about six internal transfers in the one
LNbits process), so the simulator keeps the payouts busy and stays at most
``--lag`` settlements ahead of them (``Fleet.throttle``), which keeps the
month's events in about their planned order. Only the few events that need
a still pipeline (an LP balance settlement that must find the wallet dry,
the last top-ups) wait for it to drain (barriers). The plan is the same for
a seed; how the payouts interleave with the events is not, and no invariant
depends on it. A kill lands wherever the payouts happen to be.

At the end it checks, against LNbits' own balances and payments (its
``/api/v1/wallet`` and ``/api/v1/payments``) and the extension's ledger and
reconciliation (``/satmachineadmin/api/v1/dca/...``), every invariant of
issue 13, writes a report (per machine, per LP, totals, where the time went)
and exits 1 on any difference.

Actors are pluggable (``ACTORS``): each lays out its events on the month's
timeline and may add invariants (``SimActor``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import resource
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import ROUND_CEILING, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from bech32 import bech32_encode, convertbits

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "process"))
sys.path.insert(0, str(REPO / "tests" / "integration"))  # lamassu_db, lnurl_server
sys.path.insert(0, str(REPO))

from lnbits_process import Actor, LnbitsProcess, Wallet  # noqa: E402
from lnurl_server import LnurlServer  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402

from bench.simulator import Sale  # noqa: E402

SATS_PER_BTC = 100_000_000
CURRENCY = "GTQ"
BASE_RATE = Decimal(772_114)  # GTQ per BTC
CENT = Decimal("0.01")
FIAT_NOTES = (100, 200, 300, 500, 700, 1000, 1500, 2000)
FINAL = ("processed", "partial", "refunded", "errored")
LIFECYCLE = ("awaiting_funds", "pending", "processing")  # statuses not final
PAGE = 1000
MAX_CREDIT_SATS = 10_000_000  # the most LNbits credits at once (its max invoice)
CUSTOMER_CREDIT = MAX_CREDIT_SATS
THROTTLE_EVERY = 5  # sales between two looks at how far the payouts are
PACE_EVERY = 250  # sales between two pace lines in the log and report


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def make_npub(rng: random.Random) -> str:
    data = convertbits(bytes(rng.getrandbits(8) for _ in range(32)), 8, 5)
    assert data is not None
    return bech32_encode("npub", data)


# --- the fleet's state, as the simulator knows it ------------------------------


@dataclass
class SimMachine:
    index: int
    name: str
    wallet: Wallet
    npub: str
    fallback_pct: Decimal | None = None
    id: str = ""
    planned_fiat: Decimal = Decimal(0)
    source: str = "bitspire"  # lamassu and manual sales are paid elsewhere


@dataclass
class SimLp:
    actor: Actor
    machine: SimMachine
    client_id: str = ""
    confirmed_minor: int = 0
    mode: str = "flow"  # flow: paid from sales; fixed: buys at slots


@dataclass
class SimSale:
    machine: SimMachine
    payment_hash: str
    gross_sats: int
    kind: str  # bitspire | fallback | invalid | manual | lamassu

    @property
    def lightning(self) -> bool:
        """Paid into the machine wallet (not a manual or Lamassu sale)."""
        return self.kind in ("bitspire", "fallback", "invalid")


@dataclass
class Params:
    sales: int = 10_000
    machines: int = 5
    kills: int = 3
    db: str = "sqlite"
    pg_url: str = "postgres://postgres@127.0.0.1:5432"
    seed: int = 13
    lps_per_machine: int = 3
    days: int = 30
    report: Path | None = None
    settle_timeout: float = 900.0
    lag: int = 20  # settlements the simulator may run ahead of the payouts
    sellers: int = 1  # threads making bitSpire sales at the same time
    fixed_slots: int = 48  # fixed-mode slots a day (at most 48)


@dataclass(order=True)
class Event:
    """Something that happens at simulated time ``t`` (days). A barrier
    event first waits until the pipeline has landed and paid every sale;
    any other event that is not a sale first lets the payouts catch up to
    within ``Params.lag`` settlements (``Fleet.throttle``)."""

    t: float
    seq: int
    name: str = field(compare=False)
    run: Callable[[Fleet], None] = field(compare=False)
    barrier: bool = field(default=False, compare=False)
    sale: bool = field(default=False, compare=False)  # a sale: no throttle
    # May run at the same time as the sales next to it (--sellers threads).
    parallel: bool = field(default=False, compare=False)


class SimActor(Protocol):
    """Lays out its events on the month's timeline. Optional hooks, looked
    up by name: ``prepare(params, node, stack) -> dict[str, str]`` before
    LNbits first starts (servers the actor runs, closed by ``stack``; the
    environment LNbits needs for them), ``finish(fleet)`` once the month's
    payouts are done (let what the actor started come to rest before the
    books are read) and ``check(books, fleet, ledger)`` (its invariants)."""

    name: str

    def setup(self, fleet: Fleet) -> None: ...

    def events(self, fleet: Fleet) -> Iterable[Event]: ...


class Fleet:
    """The simulated world: LNbits, its users and wallets, and what the
    simulator itself did (sales paid, top-ups, deposits), kept to check the
    books against."""

    def __init__(self, params: Params, node: LnbitsProcess) -> None:
        self.params = params
        self.node = node
        self.rng = random.Random(params.seed)
        self.seq = 0
        self.superuser = node.superuser()
        self.fee_wallet = node.create_wallet(self.superuser, "platform fees")
        self.operator = node.register("operator", extra_wallets=params.machines + 3)
        self.split_wallets = self.operator.wallets[
            params.machines : params.machines + 3
        ]
        self.customers = [node.register("customer") for _ in range(3)]
        self.customer_budget = {c.wallet.id: 0 for c in self.customers}
        self.machines: list[SimMachine] = []
        self.lps: list[SimLp] = []
        self.sales: list[SimSale] = []
        self.unlanded: set[str] = set()  # sales not yet seen landed
        self.top_ups: Counter[str] = Counter()  # wallet id -> sats credited
        self.kills: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.peak_lnbits_kib = 0
        self.notes: list[str] = []
        self.timings: defaultdict[str, float] = defaultdict(float)  # wall s
        self.cpu_timings: defaultdict[str, float] = defaultdict(float)  # LNbits CPU
        self.lnbits_cpu_before_kills = 0.0
        self.pace: list[dict[str, Any]] = []  # sales/s, CPU a sale, by stretch
        self.lock = threading.Lock()  # what sales in threads share
        self.planned_elsewhere = 0  # sales planned by Lamassu and manual actors
        # Wallets beyond machines, LPs and the split: id -> (wallet, label).
        self.extra_wallets: dict[str, tuple[Wallet, str]] = {}
        self.forwards_to: dict[str, str] = {}  # LP client id -> payee wallet id
        self._paths: set[str] | None = None

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def add_machine(self, name: str, source: str) -> SimMachine:
        """A machine of a source that does not sell into its wallet (Lamassu,
        manual): its own wallet, created over the API, added to the fleet."""
        wallet = self.node.create_wallet(self.operator, name)
        body = {
            "wallet_id": wallet.id,
            "name": name,
            "currency": CURRENCY,
            "source": source,
        }
        machine_id = self.api("POST", "/machines", json=body, expect=201)["id"]
        machine = SimMachine(
            index=len(self.machines), name=name, wallet=wallet, npub="",
            id=machine_id, source=source,
        )  # fmt: skip
        self.machines.append(machine)
        return machine

    def api(self, method: str, path: str, **kw: Any) -> Any:
        return self.node.api(method, path, self.operator, **kw)

    def credit(self, wallet_id: str, sats: int) -> None:
        """An admin credit, in pieces LNbits accepts (it refuses an invoice
        above its maximum, 10 000 000 sats by default)."""
        while sats > 0:
            piece = min(sats, MAX_CREDIT_SATS)
            self.node.credit(wallet_id, piece)
            self.top_ups[wallet_id] += piece
            sats -= piece

    def lnbits_cpu_s(self) -> float:
        """CPU seconds the running LNbits process has used so far."""
        process = self.node.process
        if process is None:
            return 0.0
        try:
            with open(f"/proc/{process.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @contextlib.contextmanager
    def timed(self, section: str) -> Iterator[None]:
        """Adds the wall time and LNbits' CPU time of a section."""
        wall, cpu = time.monotonic(), self.lnbits_cpu_s()
        try:
            yield
        finally:
            self.timings[section] += time.monotonic() - wall
            self.cpu_timings[section] += max(0.0, self.lnbits_cpu_s() - cpu)

    def total_cpu_s(self) -> float:
        """LNbits' CPU seconds over every start so far."""
        return self.lnbits_cpu_before_kills + self.lnbits_cpu_s()

    def pace_mark(self, day: float, mark: list) -> None:
        """Logs (and keeps for the report) the pace since the last mark:
        sales a second, and LNbits' CPU per sale (does it grow?)."""
        sales, wall, cpu = len(self.sales), time.monotonic(), self.total_cpu_s()
        n = sales - mark[0]
        row = {
            "sales": sales,
            "day": f"{day:.1f}",
            "sales_per_s": f"{n / max(wall - mark[1], 1e-9):.2f}",
            "lnbits_cpu_ms_per_sale": f"{1000 * (cpu - mark[2]) / max(n, 1):.0f}",
        }
        self.pace.append(row)
        log(
            f"day {day:5.2f}: {sales} sales; last {n}: {row['sales_per_s']} "
            f"sales/s, LNbits CPU {row['lnbits_cpu_ms_per_sale']} ms a sale"
        )
        mark[:] = [sales, wall, cpu]

    def sample_memory(self) -> None:
        process = self.node.process
        if process is None:
            return
        try:
            with open(f"/proc/{process.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        kib = int(line.split()[1])
                        self.peak_lnbits_kib = max(self.peak_lnbits_kib, kib)
        except OSError:
            pass

    def rate_on(self, day: float) -> Decimal:
        """The month's BTC price: a slow swing of +-4 %, whole GTQ."""
        swing = Decimal(str(round(math.sin(day / 4.7) * 0.04, 6)))
        return (BASE_RATE * (1 + swing)).quantize(Decimal(1))

    # --- the pipeline settling ------------------------------------------------

    def supports(self, path: str) -> bool:
        """Whether this build of the extension has a route (an actor for a
        feature not merged yet stays out)."""
        if self._paths is None:
            spec = self.node.request("GET", "/openapi.json").json()
            self._paths = set(spec.get("paths", {}))
        return f"/satmachineadmin/api/v1/dca{path}" in self._paths

    def settled(self, waiting: tuple[str, ...] = ("pending", "processing")) -> bool:
        """Every sale landed, and none in a ``waiting`` status. The statuses
        are looked at in the order a settlement goes through them (awaiting
        funds, pending, processing), so one that moves on between two looks
        is still seen; the caller looks twice (a held settlement can go from
        processing back to awaiting funds)."""
        for status in LIFECYCLE:
            if status in waiting and self.api(
                "GET", "/settlements", params={"status": status, "limit": 1}
            ):
                return False
        return self.landed()

    def landed(self) -> bool:
        """Whether every sale made so far has landed. The listing is newest
        first and the sales not seen yet are the newest: read only as many
        rows as there are of those (and more pages only if one is missing)."""
        offset = 0
        while self.unlanded:
            limit = min(PAGE, 2 * len(self.unlanded) + 50)
            rows = self.api(
                "GET", "/settlements", params={"limit": limit, "offset": offset}
            )
            self.unlanded -= {row["payment_hash"] for row in rows}
            if len(rows) < limit:
                break
            offset += limit
        return not self.unlanded

    def backlog(self, at_most: int) -> int:
        """Settlements landed and not paid out yet (pending or processing),
        counted up to ``at_most``: two small listings."""
        n = 0
        for status in ("pending", "processing"):
            n += len(
                self.api(
                    "GET", "/settlements", params={"status": status, "limit": at_most}
                )
            )
        return n

    def throttle(self) -> None:
        """Let LNbits' payouts keep up: the simulator runs at most
        ``params.lag`` settlements ahead of them, so the month's events come
        in about the order planned while LNbits never waits for the
        simulator (a barrier would drain the pipeline and leave it idle)."""
        lag = self.params.lag
        while (n := self.backlog(2 * lag)) > lag:
            # about the time LNbits takes to pay out half of the excess
            time.sleep(min(5.0, 0.2 * (n - lag // 2)))

    def wait_settled(
        self, waiting: tuple[str, ...] = ("pending", "processing")
    ) -> float:
        """A barrier: every sale landed and paid out (or in a final state)."""
        began = time.monotonic()
        deadline = began + self.params.settle_timeout
        # Lamassu sales land when their source is polled: the operator's
        # "poll now" instead of the sources loop's next turn (up to 15 s).
        for machine_id in {
            h.split(":")[1] for h in self.unlanded if h[:8] == "lamassu:"
        }:
            self.api("POST", f"/machines/{machine_id}/lamassu/poll")
        clear = 0  # looks in a row that found everything settled
        while clear < 2:
            if self.settled(waiting):
                clear += 1
                time.sleep(0.1)
                continue
            clear = 0
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the pipeline did not settle within "
                    f"{self.params.settle_timeout:.0f} s ({len(self.unlanded)} "
                    "sales not landed, or settlements still pending/processing)"
                )
            time.sleep(0.25)
        return time.monotonic() - began

    # --- lookups ----------------------------------------------------------------

    def all_rows(self, path: str, params: dict[str, Any] | None = None) -> list[dict]:
        rows: list[dict] = []
        while True:
            page = self.api(
                "GET",
                path,
                params={**(params or {}), "limit": PAGE, "offset": len(rows)},
            )
            rows += page
            if len(page) < PAGE:
                return rows

    def lnbits_payments(self, wallet: Wallet) -> list[dict]:
        """Every payment of the wallet, as LNbits lists them: page by page,
        since LNbits returns at most 1 000 a call whatever the limit asked."""
        found: dict[str, dict] = {}
        offset = 0
        while True:
            page = self.node.request(
                "GET", "/api/v1/payments", key=wallet.inkey,
                params={"limit": PAGE, "offset": offset},
            ).json()  # fmt: skip
            for payment in page:
                found.setdefault(payment["checking_id"], payment)
            if len(page) < PAGE:
                return list(found.values())
            offset += PAGE


# --- actors -------------------------------------------------------------------


class FleetSetup:
    """Machines (one on old firmware: a fallback commission rate), the
    platform fee, the operator's commission split (one machine overrides it)
    and customers with money."""

    name = "setup"

    def setup(self, fleet: Fleet) -> None:
        fleet.node.api(
            "PUT",
            "/super-config",
            fleet.superuser,
            json={"super_fee_pct": "0.30", "super_fee_wallet_id": fleet.fee_wallet.id},
        )
        for i in range(fleet.params.machines):
            machine = SimMachine(
                index=i,
                name=f"ATM {i + 1}",
                wallet=fleet.operator.wallets[i],
                npub=make_npub(fleet.rng),
                fallback_pct=Decimal("0.05") if i == 1 else None,
            )
            body = {
                "npub": machine.npub,
                "wallet_id": machine.wallet.id,
                "name": machine.name,
                "currency": CURRENCY,
            }
            if machine.fallback_pct is not None:
                body["fallback_commission_pct"] = str(machine.fallback_pct)
            machine.id = fleet.api("POST", "/machines", json=body, expect=201)["id"]
            fleet.machines.append(machine)
        a, b, c = fleet.split_wallets
        fleet.api(
            "PUT",
            "/commission-splits",
            json={
                "legs": [
                    {"wallet_id": a.id, "pct": "0.6", "label": "ops"},
                    {"wallet_id": b.id, "pct": "0.4", "label": "partner"},
                ]
            },
        )
        fleet.api(
            "PUT",
            "/commission-splits",
            json={
                "machine_id": fleet.machines[-1].id,
                "legs": [{"wallet_id": c.id, "pct": "1", "label": "site host"}],
            },
        )

    def events(self, fleet: Fleet) -> Iterable[Event]:
        return ()


@dataclass
class PlannedSale:
    day: float
    machine: SimMachine
    fiat: Decimal
    rate: Decimal
    fee_pct: Decimal
    kind: str
    dispensed: Decimal | None = None  # for an invalid payload: what is settled
    payment_hash: str | None = None  # once sold
    txid: str = ""  # the ATM's own transaction id


class BitspireSales:
    """Customers cash out at the machines: a bitSpire payload (most), no
    payload at the old-firmware machine, or a payload that does not add up
    (lands errored), which the operator settles later by a partial dispense
    (some dispensed nothing: a refund)."""

    name = "bitspire sales"

    def __init__(self) -> None:
        self.plan: list[PlannedSale] = []

    def setup(self, fleet: Fleet) -> None:
        rng = fleet.rng
        machines = [m for m in fleet.machines if m.source == "bitspire"]
        weights = [1.0 + 0.4 * i for i in range(len(machines))]
        # --sales counts every source's: the rest of them are bitSpire's.
        for _ in range(max(0, fleet.params.sales - fleet.planned_elsewhere)):
            day = rng.uniform(0, fleet.params.days)
            machine = rng.choices(machines, weights)[0]
            fiat = Decimal(rng.choice(FIAT_NOTES))
            fee_pct = Decimal(rng.choice(("0.03", "0.05", "0.08")))
            roll = rng.random()
            kind, dispensed = "bitspire", None
            if machine.fallback_pct is not None and roll < 0.15:
                kind = "fallback"
            elif roll > 0.98:
                kind = "invalid"
                dispensed = Decimal(rng.choice(("0", "0.25", "0.5", "0.8")))
            sale = PlannedSale(day, machine, fiat, fleet.rate_on(day), fee_pct, kind)
            sale.dispensed = dispensed
            sale.txid = uuid.UUID(int=rng.getrandbits(128)).hex[:12]
            self.plan.append(sale)
            if kind == "bitspire":
                machine.planned_fiat += fiat

    @staticmethod
    def _sale(p: PlannedSale) -> Sale:
        return Sale(p.fiat, p.rate, p.fee_pct, CURRENCY, p.machine.npub)

    def events(self, fleet: Fleet) -> Iterable[Event]:
        for p in self.plan:
            yield Event(
                p.day, fleet.next_seq(), f"sale {p.kind}", self._sell(p),
                sale=True, parallel=True,
            )  # fmt: skip
            if p.kind == "invalid":
                later = min(p.day + 0.2, fleet.params.days)
                yield Event(
                    later, fleet.next_seq(), "partial dispense", self._dispense(p)
                )

    def _sell(self, p: PlannedSale) -> Callable[[Fleet], None]:
        def run(fleet: Fleet) -> None:
            sale = self._sale(p)
            gross = sale.gross_sats
            if p.kind == "fallback":
                extra: dict[str, Any] | None = None
                memo = "cash-out"
            else:
                extra = sale.extra(p.txid)
                memo = "bitSpire cash-out"
                if p.kind == "invalid":
                    extra["fee_sats"] += 1  # does not add up to the gross
            invoice = fleet.node.create_invoice(p.machine.wallet, gross, memo, extra)
            customer = fleet.customers[p.machine.index % len(fleet.customers)]
            with fleet.lock:  # sales may run in several threads (--sellers)
                while fleet.customer_budget[customer.wallet.id] < gross:
                    # LNbits credits at most 10 000 000 sats at a time.
                    fleet.node.credit(customer.wallet.id, CUSTOMER_CREDIT)
                    fleet.customer_budget[customer.wallet.id] += CUSTOMER_CREDIT
                fleet.customer_budget[customer.wallet.id] -= gross
            fleet.node.pay_invoice(customer.wallet, invoice["bolt11"])
            payment_hash = invoice["payment_hash"]
            with fleet.lock:
                fleet.sales.append(SimSale(p.machine, payment_hash, gross, p.kind))
                fleet.unlanded.add(payment_hash)
                fleet.counts[f"sales_{p.kind}"] += 1
            p.payment_hash = payment_hash

        return run

    def _dispense(self, p: PlannedSale) -> Callable[[Fleet], None]:
        def run(fleet: Fleet) -> None:
            payment_hash = p.payment_hash
            if payment_hash is None:
                return
            # Only this sale has to have landed (errored): no barrier.
            deadline = time.monotonic() + fleet.params.settle_timeout
            while True:
                errored = fleet.all_rows(
                    "/settlements", {"status": "errored", "machine_id": p.machine.id}
                )
                match = [s for s in errored if s["payment_hash"] == payment_hash]
                if match or time.monotonic() > deadline:
                    break
                time.sleep(0.25)
            if not match:
                fleet.notes.append(f"invalid sale {payment_hash} was not errored")
                return
            fleet.api(
                "POST",
                f"/settlements/{match[0]['id']}/partial-dispense",
                json={
                    "dispensed_fraction": str(p.dispensed),
                    "notes": "simulated: cassette jam",
                },
            )
            fleet.counts["refunds" if p.dispensed == 0 else "partial_dispenses"] += 1

        return run


@dataclass
class LamassuRow:
    """One row the simulated lamassu-server writes into ``cash_out_txs``."""

    day: float
    kind: str  # ln | btc | fixed_fee | no_price | late, or a row never a sale
    fiat: Decimal
    bid: Decimal  # raw_ticker_price: fiat per BTC
    commission: Decimal
    discount: int | None = None
    fixed_fee: Decimal = Decimal(0)
    tx_id: str = ""

    @property
    def sale(self) -> bool:
        return self.kind in LAMASSU_SALES

    @property
    def crypto_atoms(self) -> int:
        """What Lamassu charges (LAMASSU.md): ``(fiat + fixed_fee) / rate``
        at ``rate = bid * (1 - e)``, truncated to whole 100-sat steps."""
        e = self.commission * (100 - (self.discount or 0)) / 100
        rate = (self.bid * (1 - e)).quantize(Decimal("0.00001"))
        atoms = int((self.fiat + self.fixed_fee) * SATS_PER_BTC / rate)
        return atoms - atoms % 100


LAMASSU_SALES = ("ln", "btc", "fixed_fee", "no_price", "late")
# Rows a poller must never land: failed, refused, another coin.
LAMASSU_NOT_SALES = ("errored", "rejected", "insufficient", "eth", "unconfirmed")


class LamassuSales:
    """A Lamassu machine: its sales are rows written into a local PostgreSQL
    database shaped like lamassu-server's (``tests/integration/lamassu_db.py``:
    the tables a source reads, a role that may only SELECT), which the
    extension polls (its sources loop every 10 s, and the operator's "poll
    now" at each top-up). Lightning and on-chain zero-conf sales, discounts,
    a fixed fee, rows without a bid, rows whose dispense is confirmed a while
    after they were written (the same id, ``tx_version`` + 1), and rows that
    are not sales (errored, rejected, insufficient funds, another coin, never
    confirmed) that must never land. The customer paid Lamassu's wallet, so
    the legs are paid from the machine wallet, which the operator tops up
    weekly with a little less than the week's sales need: sales wait for
    funds (``awaiting_funds``) until the next top-up. Needs the PostgreSQL
    server of ``--pg-url``; without one the actor stays out (noted)."""

    name = "lamassu sales"
    SHARE = 8  # one sale in this many is a Lamassu sale
    DEVICE = "dev-a"

    def __init__(self) -> None:
        self.server: str | None = None
        self.database = ""
        self.reader = ""
        self.password = ""
        self.loop: asyncio.AbstractEventLoop | None = None
        self.conn: Any = None
        self.machine: SimMachine | None = None
        self.rows: list[LamassuRow] = []
        self.month_start = datetime.now(timezone.utc)

    # --- the Lamassu database ---------------------------------------------------

    def _run(self, coro: Any) -> Any:
        assert self.loop is not None
        return self.loop.run_until_complete(coro)

    def prepare(
        self, params: Params, node: LnbitsProcess, stack: contextlib.ExitStack
    ) -> dict[str, str]:
        import asyncpg  # an LNbits dependency
        from lamassu_db import SCHEMA

        server = params.pg_url.rstrip("/")
        tag = uuid.uuid4().hex[:10]
        self.database, self.reader = f"lamassu_sim_{tag}", f"lamassu_sim_ro_{tag}"
        self.password = "pw-" + uuid.uuid4().hex
        self.loop = asyncio.new_event_loop()
        stack.callback(self.loop.close)
        try:
            admin = self._run(asyncpg.connect(f"{server}/postgres", timeout=5))
        except Exception as exc:
            log(f"lamassu sales: no PostgreSQL at {server} ({exc!r}); left out")
            return {}
        try:
            self._run(admin.execute(f'CREATE DATABASE "{self.database}"'))
            self._run(
                admin.execute(
                    f"CREATE ROLE {self.reader} LOGIN PASSWORD '{self.password}'"
                )
            )
        finally:
            self._run(admin.close())
        self.server = server
        stack.callback(self._drop)
        self.conn = self._run(asyncpg.connect(f"{server}/{self.database}"))
        db, role = self.database, self.reader
        for sql in (
            SCHEMA,
            f"REVOKE ALL ON DATABASE {db} FROM PUBLIC",
            f"GRANT CONNECT ON DATABASE {db} TO {role}",
            f"GRANT USAGE ON SCHEMA public TO {role}",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
        ):
            self._run(self.conn.execute(sql))
        self._run(
            self.conn.execute(
                "INSERT INTO devices (device_id, name) VALUES ($1, 'Antigua'), "
                "('dev-b', 'Xela')",
                self.DEVICE,
            )
        )
        return {}

    def _drop(self) -> None:
        import asyncpg

        async def drop() -> None:
            if self.conn is not None:
                await self.conn.close()
            admin = await asyncpg.connect(f"{self.server}/postgres")
            try:
                await admin.execute(
                    f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'
                )
                await admin.execute(f"DROP ROLE IF EXISTS {self.reader}")
            finally:
                await admin.close()

        with contextlib.suppress(Exception):
            self._run(drop())

    # --- the machine and its month ------------------------------------------------

    def setup(self, fleet: Fleet) -> None:
        if self.server is None:
            fleet.notes.append("lamassu sales: no PostgreSQL server, left out")
            return
        days = fleet.params.days
        self.month_start = datetime.now(timezone.utc) - timedelta(days=days + 1)
        machine = self.machine = fleet.add_machine("Lamassu ATM", "lamassu")
        machine_id = machine.id
        url = urlsplit(self.server or "")
        fleet.api(
            "PUT",
            f"/machines/{machine_id}/lamassu",
            json={
                "host": url.hostname or "127.0.0.1",
                "port": url.port or 5432,
                "database": self.database,
                "user": self.reader,
                "password": self.password,
                "sslmode": "disable",
                "device_id": self.DEVICE,
                "poll_seconds": 10,
            },
        )
        test = fleet.api("POST", f"/machines/{machine_id}/lamassu/test")
        if not test["ok"]:
            raise RuntimeError(f"the Lamassu source does not read: {test['error']}")
        rng = fleet.rng
        count = max(10, fleet.params.sales // self.SHARE)
        fleet.planned_elsewhere += count
        kinds = ("ln", "btc", "fixed_fee", "no_price", "late")
        for _ in range(count):
            day = rng.uniform(0, days - 0.5)
            row = LamassuRow(
                day=day,
                kind=rng.choices(kinds, (70, 10, 8, 4, 8))[0],
                fiat=Decimal(rng.choice(FIAT_NOTES)),
                bid=fleet.rate_on(day),
                commission=Decimal(rng.choice(("0.03", "0.05", "0.08"))),
            )
            if row.kind == "btc":
                row.discount = 20
            elif row.kind == "fixed_fee":
                row.fixed_fee = Decimal(10)
            self.rows.append(row)
            machine.planned_fiat += row.fiat
        for _ in range(max(5, count // 20)):
            day = rng.uniform(0, days - 0.5)
            self.rows.append(
                LamassuRow(
                    day=day,
                    kind=rng.choice(LAMASSU_NOT_SALES),
                    fiat=Decimal(rng.choice(FIAT_NOTES)),
                    bid=fleet.rate_on(day),
                    commission=Decimal("0.05"),
                )
            )
        self.rows.sort(key=lambda r: r.day)
        for row in self.rows:
            row.tx_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def events(self, fleet: Fleet) -> Iterable[Event]:
        if self.machine is None:
            return
        for row in self.rows:
            yield Event(
                row.day, fleet.next_seq(), "lamassu row", self._write(row),
                sale=row.sale,
            )  # fmt: skip
            if row.kind in ("late", "unconfirmed"):
                yield Event(
                    min(row.day + 0.05, fleet.params.days), fleet.next_seq(),
                    "lamassu dispense confirmed", self._confirm(row),
                    sale=row.kind == "late",
                )  # fmt: skip
        days = fleet.params.days
        for day in (0.0, *(d for d in (7, 14, 21) if d < days)):
            yield Event(
                day + 0.01, fleet.next_seq(), "lamassu top up", self._top_up(day)
            )
        # The last top-up covers everything: every sale landed and planned.
        yield Event(
            days, fleet.next_seq(), "lamassu top up", self._top_up(days),
            barrier=True,
        )  # fmt: skip

    def _write(self, row: LamassuRow) -> Callable[[Fleet], None]:
        def run(fleet: Fleet) -> None:
            atoms = row.crypto_atoms
            coin, status, dispense, confirmed = "LN", "confirmed", True, True
            error: str | None = None
            if row.kind == "btc":
                coin, status = "BTC", "instant"  # zero-conf: no confirmed_at
            elif row.kind == "late":
                status, confirmed = "authorized", False
            elif row.kind == "unconfirmed":
                confirmed = False  # dispense started, the notes never counted
            elif row.kind == "errored":
                error = "dispenseError"
            elif row.kind == "rejected":
                status, dispense, confirmed = "rejected", False, False
            elif row.kind == "insufficient":
                status, dispense, confirmed = "insufficientFunds", False, False
            elif row.kind == "eth":
                coin, atoms = "ETH", 10**18
            # Written now, as the machine would: a source lands only what was
            # made after it was connected (issue 18), and the month's events
            # come in day order, so the rows keep the month's order.
            created = datetime.now(timezone.utc)
            self._run(
                self.conn.execute(
                    """INSERT INTO cash_out_txs (id, device_id, crypto_atoms,
                       crypto_code, fiat, fiat_code, status, dispense,
                       dispense_confirmed, error, created, confirmed_at,
                       commission_percentage, discount, raw_ticker_price,
                       fixed_fee)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
                               $12, $13, $14, $15, $16)""",
                    uuid.UUID(row.tx_id),
                    self.DEVICE,
                    Decimal(atoms),
                    coin,
                    row.fiat,
                    CURRENCY,
                    status,
                    dispense,
                    confirmed,
                    error,
                    created,
                    created if status == "confirmed" else None,
                    row.commission,
                    row.discount,
                    None if row.kind == "no_price" else row.bid,
                    row.fixed_fee,
                )
            )
            fleet.counts[f"lamassu_rows_{row.kind}"] += 1
            if row.sale and row.kind != "late":
                self._landing(fleet, row)

        return run

    def _confirm(self, row: LamassuRow) -> Callable[[Fleet], None]:
        """A late row's notes are counted out: the row becomes a sale. A row
        never confirmed is touched too (``tx_version``), and stays no sale."""

        def run(fleet: Fleet) -> None:
            self._run(
                self.conn.execute(
                    """UPDATE cash_out_txs SET dispense_confirmed = $2,
                       tx_version = tx_version + 1 WHERE id = $1""",
                    uuid.UUID(row.tx_id),
                    row.kind == "late",
                )
            )
            if row.kind == "late":
                self._landing(fleet, row)

        return run

    def _landing(self, fleet: Fleet, row: LamassuRow) -> None:
        assert self.machine is not None
        payment_hash = f"lamassu:{self.machine.id}:{row.tx_id}"
        fleet.sales.append(
            SimSale(self.machine, payment_hash, row.crypto_atoms, "lamassu")
        )
        fleet.unlanded.add(payment_hash)
        fleet.counts["sales_lamassu"] += 1

    def _top_up(self, day: float) -> Callable[[Fleet], None]:
        """What the wallet owes now, and 90 % of what the coming week's
        sales will need (so the week's last sales wait for the next one)."""

        def run(fleet: Fleet) -> None:
            assert self.machine is not None
            machine = self.machine
            fleet.api("POST", f"/machines/{machine.id}/lamassu/poll")  # poll now
            funding = {f["machine_id"]: f for f in fleet.api("GET", "/funding")}
            f = funding[machine.id]
            fleet.counts["awaiting_funds_seen"] += f["awaiting_funds"]
            coming = sum(
                r.crypto_atoms for r in self.rows if r.sale and day <= r.day < day + 7
            )
            owes = max(0, f["owes_sats"] - f["holds_sats"])
            fleet.credit(machine.wallet.id, owes + coming * 9 // 10 + 10_000)
            fleet.counts["lamassu_top_ups"] += 1

        return run


class ManualSales:
    """A machine whose sales the operator records by hand (issue 10), paid
    from its wallet, which starts empty: the first sales wait for funds
    (``awaiting_funds``) until the operator tops the wallet up, and go on by
    themselves; it is topped up again now and then, and at the month's end."""

    name = "manual sales"

    def __init__(self) -> None:
        self.machine: SimMachine | None = None
        self.plan: list[PlannedSale] = []

    def setup(self, fleet: Fleet) -> None:
        if not fleet.supports("/settlements/manual"):
            fleet.notes.append("manual sales: not in this build (issue 10)")
            return
        machine = self.machine = fleet.add_machine("Manual ATM", "manual")
        rng = fleet.rng
        count = max(5, fleet.params.sales // 40)
        fleet.planned_elsewhere += count
        for _ in range(count):
            day = rng.uniform(0, fleet.params.days - 0.5)
            fiat = Decimal(rng.choice(FIAT_NOTES))
            fee_pct = Decimal(rng.choice(("0.03", "0.05")))
            sale = PlannedSale(
                day, machine, fiat, fleet.rate_on(day), fee_pct, "manual"
            )
            self.plan.append(sale)
            machine.planned_fiat += fiat

    def events(self, fleet: Fleet) -> Iterable[Event]:
        if self.machine is None:
            return
        for i, p in enumerate(self.plan):
            yield Event(
                p.day, fleet.next_seq(), "manual sale", self._record(p, i), sale=True
            )
        first = min(p.day for p in self.plan)
        for day in (first + 0.5, fleet.params.days / 2):
            yield Event(day, fleet.next_seq(), "top up", self._top_up)
        # The last top-up covers everything: every sale planned first.
        last = fleet.params.days
        yield Event(last, fleet.next_seq(), "top up", self._top_up, barrier=True)

    def _record(self, p: PlannedSale, i: int) -> Callable[[Fleet], None]:
        def run(fleet: Fleet) -> None:
            body = {
                "machine_id": p.machine.id,
                "reference": f"M-{i:05d}",
                "fiat_amount": str(p.fiat),
                "exchange_rate": str(p.rate),
                "fee_pct": str(p.fee_pct),
                "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "note": "simulated manual sale",
            }
            s = fleet.api("POST", "/settlements/manual", json=body, expect=201)
            fleet.sales.append(
                SimSale(p.machine, s["payment_hash"], s["gross_sats"], "manual")
            )
            fleet.counts["sales_manual"] += 1

        return run

    def _top_up(self, fleet: Fleet) -> None:
        assert self.machine is not None
        funding = {f["machine_id"]: f for f in fleet.api("GET", "/funding")}
        f = funding[self.machine.id]
        fleet.counts["awaiting_funds_seen"] += f["awaiting_funds"]
        need = max(0, f["owes_sats"] - f["holds_sats"]) + 50_000
        fleet.credit(self.machine.wallet.id, need)
        fleet.counts["manual_top_ups"] += 1


@dataclass
class FlakyLnurlServer(LnurlServer):
    """An LNURL-pay endpoint that goes down now and then: an outage refuses
    the next few invoice requests with an LNURL error, as a payee's server
    that is down would. An outage begins once the one before it is over and
    the endpoint has served an invoice since (in compressed time a second
    outage would otherwise come before the forwarder's backoff, which
    doubles with each failure in a row, let it try again)."""

    outages: list[int] = field(default_factory=list)  # refusals of each, queued
    down: int = 0  # refusals left in this outage
    refused: int = 0
    served_since: int = 1  # invoices served since the last outage began

    async def _callback(self, request: Request) -> JSONResponse:
        if self.down == 0 and self.outages and self.served_since > 0:
            self.down, self.served_since = self.outages.pop(0), 0
        if self.down > 0:
            self.down -= 1
            self.refused += 1
            self.requests.append(int(request.query_params["amount"]))
            return JSONResponse({"status": "ERROR", "reason": "temporarily down"})
        response = await super()._callback(request)
        self.served_since += 1
        return response


class LpActivity:
    """LPs: some at every machine from day 0, more joining mid-month; deposits
    confirmed (a few rejected), top-ups mid-month. Deposits cover about 85 %
    of the cash each machine will dispense, so balances run out now and then
    (sync mismatches) until the next top-up; the first machine's LPs deposit
    130 %, so its wallet holds little (see ``DryWalletSettlement``)."""

    name = "LPs"

    def setup(self, fleet: Fleet) -> None:
        self.joiners: list[tuple[float, SimLp]] = []
        for machine in fleet.machines:
            for j in range(fleet.params.lps_per_machine):
                actor = fleet.node.register(f"lp{machine.index}{j}")
                lp = SimLp(actor, machine)
                fleet.lps.append(lp)
                day = 0.0 if j < 2 else fleet.rng.uniform(5, 20)
                self.joiners.append((day, lp))

    def events(self, fleet: Fleet) -> Iterable[Event]:
        rng = fleet.rng
        days = fleet.params.days
        for day, lp in self.joiners:
            yield Event(day, fleet.next_seq(), "LP joins", self._join(lp))
            # The first machine's LPs deposit more than it will dispense.
            cover = Decimal("1.3") if lp.machine.index == 0 else Decimal("0.85")
            target = lp.machine.planned_fiat * cover
            per_lp = target / fleet.params.lps_per_machine
            parts = 3
            for k in range(parts):
                when = day + (days - day) * k / parts + rng.uniform(0, 1)
                amount = (per_lp / parts * Decimal(rng.uniform(0.7, 1.3))).quantize(
                    CENT
                )
                if amount <= 0:
                    continue
                reject = rng.random() < 0.1
                yield Event(
                    min(when, days), fleet.next_seq(), "deposit",
                    self._deposit(lp, amount, reject),
                )  # fmt: skip

    def _join(self, lp: SimLp) -> Callable[[Fleet], None]:
        def run(fleet: Fleet) -> None:
            body = {
                "machine_id": lp.machine.id,
                "user_id": lp.actor.id,
                "wallet_id": lp.actor.wallet.id,
                "username": lp.actor.username,
                "dca_mode": "flow",
            }
            lp.client_id = fleet.api("POST", "/clients", json=body, expect=201)["id"]
            fleet.counts["lps_joined"] += 1

        return run

    def _deposit(
        self, lp: SimLp, amount: Decimal, reject: bool
    ) -> Callable[[Fleet], None]:
        def run(fleet: Fleet) -> None:
            if not lp.client_id:
                return
            deposit = fleet.api(
                "POST",
                "/deposits",
                json={"client_id": lp.client_id, "amount": str(amount)},
                expect=201,
            )
            status = "rejected" if reject else "confirmed"
            fleet.api(
                "PUT", f"/deposits/{deposit['id']}/status", json={"status": status}
            )
            if not reject:
                lp.confirmed_minor += int(amount * 100)
            fleet.counts[f"deposits_{status}"] += 1

        return run


class PriceServer:
    """LNbits' only exchange-rate provider (``GET /btc/<CURRENCY>`` ->
    ``{"price": ...}``): the month's GTQ price at the simulated day, so a
    fixed-mode slot buys at LNbits' own rate as it would in production."""

    def __init__(self) -> None:
        self.gtq = int(BASE_RATE)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                currency = self.path.rstrip("/").rsplit("/", 1)[-1].upper()
                price = owner.gtq if currency == CURRENCY else owner.gtq // 8
                body = json.dumps({"price": price}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FixedModeLps:
    """Two fixed-mode LPs at one bitSpire machine: they buy a set fiat amount
    at each slot of a schedule of up to 48 slots a day (``--fixed-slots``;
    48: every half hour, UTC), paid from a funding wallet the operator tops
    up, at LNbits' exchange rate (a local price endpoint, ``PriceServer``).
    Slots are named by today's real date, so the month's slots are today's:
    the operator runs them one after another by hand through the month
    (``POST .../fixed-slots/run`` naming the slot), runs some a second time
    (nothing more may be bought), and LNbits' own scheduler runs the ones
    whose time of day passes during the run, racing the operator: each LP
    still buys once per slot. One LP's balance runs out (the slot skips it);
    the funding wallet runs short (the slot skips the buys it cannot cover),
    the operator tops it up and runs the slot again. At the end the schedule
    is removed so that nothing buys while the books are read."""

    name = "fixed mode"
    TIMES = tuple(f"{h:02d}:{m:02d}" for h in range(24) for m in (0, 30))  # 48
    LIMITS = (Decimal(480), Decimal(1200))  # daily (48 slots: 10 and 25 a slot)
    DEPOSITS = ((Decimal(300),), (Decimal(600), Decimal(500)))  # day 0, day 15

    def __init__(self) -> None:
        self.prices: PriceServer | None = None
        self.machine: SimMachine | None = None
        self.funding: Wallet | None = None
        self.lps: list[SimLp] = []
        self.times: tuple[str, ...] = self.TIMES

    def _schedule(self, slots: int) -> tuple[str, ...]:
        """``slots`` times of day, evenly spread over the 48 half hours."""
        slots = max(1, min(slots, len(self.TIMES)))
        return tuple(self.TIMES[i * len(self.TIMES) // slots] for i in range(slots))

    def prepare(
        self, params: Params, node: LnbitsProcess, stack: contextlib.ExitStack
    ) -> dict[str, str]:
        self.prices = PriceServer()
        stack.callback(self.prices.close)
        provider = {
            "name": "simulator",
            "api_url": f"http://127.0.0.1:{self.prices.port}/btc/{{TO}}",
            "path": "$.price",
        }
        return {"LNBITS_EXCHANGE_RATE_PROVIDERS": json.dumps([provider])}

    def setup(self, fleet: Fleet) -> None:
        if not fleet.supports("/machines/{machine_id}/fixed-slots/run"):
            fleet.notes.append("fixed mode: not in this build (issue 11)")
            return
        bitspire = [m for m in fleet.machines if m.source == "bitspire"]
        self.machine = bitspire[min(1, len(bitspire) - 1)]
        self.times = self._schedule(fleet.params.fixed_slots)
        self.funding = fleet.node.create_wallet(fleet.operator, "fixed-mode funds")
        fleet.extra_wallets[self.funding.id] = (self.funding, "fixed-mode funding")
        for i in range(len(self.LIMITS)):
            actor = fleet.node.register(f"fixed{i}")
            lp = SimLp(actor, self.machine, mode="fixed")
            self.lps.append(lp)
            fleet.lps.append(lp)

    def events(self, fleet: Fleet) -> Iterable[Event]:
        if self.machine is None:
            return
        days = fleet.params.days
        yield Event(0.0, fleet.next_seq(), "fixed: schedule, LPs join", self._join)
        yield Event(days / 2, fleet.next_seq(), "deposit", self._deposits(1))
        rng = fleet.rng
        for k, hhmm in enumerate(self.times):
            day = (k + 0.5) * days / len(self.times)
            yield Event(day, fleet.next_seq(), "fixed slot", self._slot(day, hhmm))
            if rng.random() < 0.15:  # the operator presses "run" again
                again = min(day + 0.3, days)
                yield Event(
                    again, fleet.next_seq(), "fixed slot", self._slot(again, hhmm)
                )

    def _join(self, fleet: Fleet) -> None:
        assert self.machine is not None and self.funding is not None
        fleet.api(
            "PUT",
            "/fixed-schedule",
            json={
                "machine_id": self.machine.id,
                "times": list(self.times),
                "timezone": "UTC",
                "funding_wallet_id": self.funding.id,
            },
        )
        fleet.credit(self.funding.id, 60_000)  # about a third of the month
        for lp, limit in zip(self.lps, self.LIMITS, strict=True):
            body = {
                "machine_id": self.machine.id,
                "user_id": lp.actor.id,
                "wallet_id": lp.actor.wallet.id,
                "username": lp.actor.username,
                "dca_mode": "fixed",
                "fixed_mode_daily_limit": str(limit),
            }
            lp.client_id = fleet.api("POST", "/clients", json=body, expect=201)["id"]
            fleet.counts["lps_joined"] += 1
        self._deposits(0)(fleet)

    def _deposits(self, part: int) -> Callable[[Fleet], None]:
        def run(fleet: Fleet) -> None:
            for lp, amounts in zip(self.lps, self.DEPOSITS, strict=True):
                if part >= len(amounts):
                    continue
                deposit = fleet.api(
                    "POST", "/deposits", expect=201,
                    json={"client_id": lp.client_id, "amount": str(amounts[part])},
                )  # fmt: skip
                fleet.api(
                    "PUT", f"/deposits/{deposit['id']}/status",
                    json={"status": "confirmed"},
                )  # fmt: skip
                lp.confirmed_minor += int(amounts[part] * 100)
                fleet.counts["deposits_confirmed"] += 1

        return run

    def _slot(self, day: float, hhmm: str) -> Callable[[Fleet], None]:
        def run(fleet: Fleet) -> None:
            assert self.machine is not None and self.funding is not None
            assert self.prices is not None
            self.prices.gtq = int(fleet.rate_on(day))
            path = f"/machines/{self.machine.id}/fixed-slots/run"
            result = fleet.api("POST", path, json={"slot": hhmm})
            fleet.counts["fixed_slot_runs"] += 1
            short = [
                leg for leg in result["legs"]
                if leg["status"] == "skipped"
                and (leg["reason"] or "").startswith("wallet short")
            ]  # fmt: skip
            if short:
                fleet.credit(self.funding.id, 100_000)
                fleet.counts["fixed_funding_top_ups"] += 1
                fleet.api("POST", path, json={"slot": hhmm})

        return run

    def finish(self, fleet: Fleet) -> None:
        """No slot may run while the books are read: the schedule goes, and
        whatever a scheduler pass had begun is let finish."""
        if self.machine is None:
            return
        fleet.node.request(
            "DELETE",
            "/satmachineadmin/api/v1/dca/fixed-schedule",
            actor=fleet.operator,
            params={"machine_id": self.machine.id},
            expect=(200, 204),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pending = fleet.api(
                "GET", "/payments", params={"leg_type": "dca", "status": "pending"}
            )
            if not [leg for leg in pending if leg.get("slot")]:
                break
            time.sleep(0.5)
        time.sleep(1.0)  # a scheduler pass that read the schedule before

    def check(self, books: Books, fleet: Fleet, ledger: Ledger) -> None:
        if self.machine is None or self.funding is None:
            return
        slot_legs = [
            leg for leg in ledger.completed if leg["leg_type"] == "dca" and leg["slot"]
        ]
        fleet.counts["fixed_buys"] = len(slot_legs)
        twice = [
            key for key, n in Counter(
                (leg["client_id"], leg["slot"]) for leg in slot_legs
            ).items() if n > 1
        ]  # fmt: skip
        books.check("no fixed-mode slot paid twice", not twice, f"{twice[:5]}")
        ours = {lp.client_id for lp in self.lps}
        books.check(
            "fixed-mode buys: fixed LPs, from the funding wallet",
            all(
                leg["client_id"] in ours
                and leg["source_wallet_id"] == self.funding.id
                and leg["settlement_id"] is None
                for leg in slot_legs
            ),
            "a slot buy of another LP or from another wallet",
        )
        runs = fleet.all_rows(f"/machines/{self.machine.id}/fixed-slots")
        by_slot: dict[str, list[dict]] = defaultdict(list)
        for leg in slot_legs:
            by_slot[leg["slot"]].append(leg)
        for run in runs:
            legs = by_slot.get(run["slot"], [])
            books.check(
                "fixed slot run = its completed buys",
                run["sats"] == sum(leg["amount_sats"] for leg in legs)
                and run["lps_bought"] == len(legs),
                f"slot {run['slot']}: run says {run['lps_bought']} LPs, "
                f"{run['sats']} sats; ledger {len(legs)} legs, "
                f"{sum(leg['amount_sats'] for leg in legs)} sats",
            )
        books.check(
            "every slot buy belongs to a slot run",
            set(by_slot) <= {run["slot"] for run in runs},
            f"{sorted(set(by_slot) - {run['slot'] for run in runs})[:5]}",
        )
        fleet.counts["fixed_slots_run"] = len(runs)
        _check_source_wallet(
            books, fleet, ledger, self.funding, "fixed-mode funding wallet", 0
        )


class AutoforwardLps:
    """One flow-mode LP forwards its DCA sats to an LNURL-pay endpoint the
    simulator serves on 127.0.0.1 (``tests/integration/lnurl_server.py``:
    each invoice is made on a payee wallet of this LNbits, which LNbits then
    pays internally) once they reach 50 000 sats. Twice a month the endpoint
    goes down for a while (it refuses the next few invoice requests; the
    second time often enough for the operator and the LP to be told), and
    comes back: the sats wait in the LP's wallet and are forwarded later,
    once each. LNbits runs with a 1 s autoforward loop and 1 s backoff."""

    name = "autoforward"
    THRESHOLD = 50_000
    OUTAGES = ((0.3, 4), (0.65, 3))  # (fraction of the month, refusals)

    def __init__(self) -> None:
        self.server: Any = None
        self.lp: SimLp | None = None
        self.payee: Actor | None = None
        self.node_url = ""

    def prepare(
        self, params: Params, node: LnbitsProcess, stack: contextlib.ExitStack
    ) -> dict[str, str]:
        import httpx
        from lnurl_server import ThreadedLnurlServer

        url = node.url

        async def make_invoice(inkey: str, sats: int, memo: str) -> str:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                r = await http.post(
                    "/api/v1/payments",
                    json={"out": False, "amount": sats, "memo": memo},
                    headers={"X-API-KEY": inkey},
                )
                r.raise_for_status()
                return str(r.json()["bolt11"])

        self.server = stack.enter_context(
            ThreadedLnurlServer(FlakyLnurlServer(make_invoice))
        )
        return {
            "LNBITS_LNURL_ALLOW_PRIVATE_IPS": "true",  # the endpoint: 127.0.0.1
            "SATMACHINEADMIN_AUTOFORWARD_INTERVAL": "1",
            "SATMACHINEADMIN_AUTOFORWARD_BACKOFF": "1",
        }

    def setup(self, fleet: Fleet) -> None:
        if not fleet.supports("/lp/positions/{client_id}"):
            fleet.notes.append("autoforward: not in this build (issue 14a)")
            return
        flow = [lp for lp in fleet.lps if lp.mode == "flow"]
        self.lp = flow[0]  # joins on day 0
        self.payee = fleet.node.register("cold")
        self.server.payees["cold"] = self.payee.wallet.inkey
        fleet.extra_wallets[self.payee.wallet.id] = (
            self.payee.wallet, f"forward payee of {self.lp.actor.username}",
        )  # fmt: skip

    def events(self, fleet: Fleet) -> Iterable[Event]:
        if self.lp is None:
            return
        days = fleet.params.days
        yield Event(0.5, fleet.next_seq(), "autoforward on", self._turn_on)
        for at, refusals in self.OUTAGES:
            yield Event(
                days * at, fleet.next_seq(), "LNURL endpoint down",
                self._outage(refusals),
            )  # fmt: skip

    def _turn_on(self, fleet: Fleet) -> None:
        assert self.lp is not None and self.payee is not None
        fleet.node.api(
            "PUT", f"/lp/positions/{self.lp.client_id}", self.lp.actor,
            json={"autoforward_enabled": True,
                  "autoforward_address": self.server.lnurlp("cold"),
                  "autoforward_threshold_sats": self.THRESHOLD},
        )  # fmt: skip
        fleet.forwards_to[self.lp.client_id] = self.payee.wallet.id

    def _outage(self, refusals: int) -> Callable[[Fleet], None]:
        def run(fleet: Fleet) -> None:
            self.server.outages.append(refusals)
            fleet.counts["lnurl_outages"] += 1

        return run

    def finish(self, fleet: Fleet) -> None:
        """The LP receives nothing more: wait until what it holds is below
        the threshold (forwarded) and no forward is in flight, so nothing
        moves while the books are read (at most a minute: the sats would
        then just wait in its wallet, which the checks allow)."""
        if self.lp is None:
            return
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            legs = fleet.node.api(
                "GET", "/lp/payments", self.lp.actor,
                params={"leg_type": "autoforward", "limit": 1000},
            )  # fmt: skip
            pending = [leg for leg in legs if leg["status"] == "pending"]
            if (
                not pending
                and fleet.node.balance(self.lp.actor.wallet) < self.THRESHOLD
            ):
                break
            time.sleep(0.5)
        else:
            pos = fleet.node.api(
                "GET", f"/lp/positions/{self.lp.client_id}", self.lp.actor
            )
            state = {k: v for k, v in pos.items() if k.startswith("autoforward")}
            fleet.notes.append(
                f"autoforward: still forwarding after the month: {state}"
            )
        fleet.counts["lnurl_refusals"] = self.server.refused
        fleet.counts["lnurl_invoices"] = len(self.server.requests) - self.server.refused

    def check(self, books: Books, fleet: Fleet, ledger: Ledger) -> None:
        if self.lp is None or self.payee is None:
            return
        client_id = self.lp.client_id
        forwards = [
            leg
            for leg in ledger.legs
            if leg["leg_type"] == "autoforward" and leg["client_id"] == client_id
        ]
        done = [leg for leg in forwards if leg["status"] == "completed"]
        fleet.counts["forwards_completed"] = len(done)
        fleet.counts["forwards_failed"] = sum(
            leg["status"] == "failed" for leg in forwards
        )
        books.check(
            "forwards: none left in flight",
            all(leg["status"] in ("completed", "failed") for leg in forwards),
            f"{[leg['status'] for leg in forwards]}",
        )
        keys = Counter(leg["payment_hash"] for leg in done)
        books.check(
            "no forward paid twice",
            all(n == 1 for n in keys.values()),
            f"{[h for h, n in keys.items() if n > 1][:5]}",
        )


class DryWalletSettlement:
    """Twice a month the operator pays an LP part of its balance in sats from
    the machine wallet, asking for more than the wallet holds: refused (409,
    nothing charged), the operator tops the wallet up, and it goes through."""

    name = "dry machine wallet"

    def setup(self, fleet: Fleet) -> None:
        pass

    def events(self, fleet: Fleet) -> Iterable[Event]:
        for day in (fleet.params.days * 0.4, fleet.params.days * 0.8):
            yield Event(day, fleet.next_seq(), "settle LP", self._settle(day), True)

    def _settle(self, day: float) -> Callable[[Fleet], None]:
        def run(fleet: Fleet) -> None:
            rate = fleet.rate_on(day)
            held_at = {m.id: fleet.node.balance(m.wallet) for m in fleet.machines}
            # A bitSpire machine: a top-up of a Lamassu or manual one would
            # first release the sales waiting for funds.
            lps = sorted(
                (
                    lp
                    for lp in fleet.lps
                    if lp.machine.source == "bitspire" and lp.mode == "flow"
                ),
                key=lambda lp: held_at[lp.machine.id],
            )
            for lp in lps:
                if not lp.client_id:
                    continue
                balance = fleet.api("GET", f"/clients/{lp.client_id}/balance")
                remaining = Decimal(str(balance["remaining_balance"]))
                held = held_at[lp.machine.id]
                extra = 20_000
                fiat = (Decimal(held + extra) * rate / SATS_PER_BTC).quantize(
                    CENT, ROUND_CEILING
                )
                if fiat > remaining or fiat <= 0:
                    continue
                body = {
                    "funding_wallet_id": lp.machine.wallet.id,
                    "exchange_rate": str(rate),
                    "amount_fiat": str(fiat),
                    "notes": "simulated settlement",
                }
                path = f"/clients/{lp.client_id}/settle"
                fleet.api("POST", path, json=body, expect=409)  # the wallet is dry
                fleet.credit(lp.machine.wallet.id, extra + 5_000)  # a top-up
                fleet.api("POST", path, json=body)
                fleet.counts["dry_wallet_settlements"] += 1
                return
            fleet.notes.append(f"day {day:.1f}: no LP balance large enough to settle")

        return run


class Kills:
    """LNbits is SIGKILLed right after a sale, wherever the pipeline is, and
    started again on the same data."""

    name = "kills"

    def setup(self, fleet: Fleet) -> None:
        pass

    def events(self, fleet: Fleet) -> Iterable[Event]:
        n = fleet.params.kills
        for k in range(n):
            day = fleet.params.days * (k + 1) / (n + 1) + fleet.rng.uniform(-0.5, 0.5)
            yield Event(day, fleet.next_seq(), "SIGKILL", self._kill)

    @staticmethod
    def _kill(fleet: Fleet) -> None:
        fleet.sample_memory()
        in_flight = len(fleet.unlanded)
        backlog = fleet.backlog(1000)  # settlements being paid out
        fleet.lnbits_cpu_before_kills += fleet.lnbits_cpu_s()
        fleet.node.kill()
        restart = fleet.node.start()
        # How long until what the kill cut off is landed and paid again.
        resumed = fleet.wait_settled()
        fleet.kills.append(
            {"after_sales": len(fleet.sales), "unlanded": in_flight,
             "paying_out": backlog,
             "restart_s": round(restart, 1), "resumed_s": round(resumed, 1)}
        )  # fmt: skip
        log(
            f"SIGKILL after {len(fleet.sales)} sales; up again in {restart:.1f} s, "
            f"everything paid {resumed:.1f} s later"
        )


# Setups run in this order; the events of all of them then run in time order.
ACTORS: list[Callable[[], SimActor]] = [
    FleetSetup,
    LamassuSales,  # machines selling elsewhere first: bitSpire takes the rest
    ManualSales,
    BitspireSales,
    LpActivity,
    FixedModeLps,
    AutoforwardLps,
    DryWalletSettlement,
    Kills,
]


# --- the month ------------------------------------------------------------------


class Replay:
    """Runs the month's events in time order. bitSpire sales are made in
    batches of ``THROTTLE_EVERY``, in ``--sellers`` threads; before each
    batch and each other event the payouts catch up to within ``--lag``
    (``Fleet.throttle``), and a barrier event waits for them to drain."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.pool = ThreadPoolExecutor(fleet.params.sellers)
        self.batch: list[Event] = []
        self.sales_since = 0  # sales (not in a batch) since the last throttle
        self.mark = [0, time.monotonic(), fleet.total_cpu_s()]  # sales, wall, CPU

    def run(self, events: list[Event]) -> None:
        try:
            for i, event in enumerate(events):
                if event.parallel:
                    self.batch.append(event)
                    if len(self.batch) >= THROTTLE_EVERY:
                        self.flush()
                else:
                    self.flush()
                    self.one(event)
                if i % 500 == 0:
                    self.fleet.sample_memory()
                if len(self.fleet.sales) >= self.mark[0] + PACE_EVERY:
                    self.fleet.pace_mark(event.t, self.mark)
                    with self.fleet.timed("ANALYZE (autovacuum's part)"):
                        self.fleet.node.analyze()
            self.flush()
        finally:
            self.pool.shutdown()

    def _run(self, event: Event) -> None:
        with self.fleet.timed(f"event: {event.name}"):
            event.run(self.fleet)

    def flush(self) -> None:
        fleet = self.fleet
        if not self.batch:
            return
        with fleet.timed("throttle"):
            fleet.throttle()
        if fleet.params.sellers > 1 and len(self.batch) > 1:
            with fleet.timed("sales in threads"):
                list(self.pool.map(self._run, self.batch))
        else:
            for event in self.batch:
                self._run(event)
        self.batch.clear()

    def one(self, event: Event) -> None:
        fleet = self.fleet
        if event.barrier:
            with fleet.timed("barrier waits"):
                fleet.wait_settled()
            fleet.counts["barriers"] += 1
        elif not event.sale or self.sales_since >= THROTTLE_EVERY:
            with fleet.timed("throttle"):
                fleet.throttle()
            self.sales_since = 0
        self.sales_since += event.sale
        self._run(event)


def run_month(fleet: Fleet, actors: list[SimActor]) -> None:
    for actor in actors:
        with fleet.timed(f"setup: {actor.name}"):
            actor.setup(fleet)
    events = sorted(e for actor in actors for e in actor.events(fleet))
    log(f"{len(events)} events planned over {fleet.params.days} days")
    Replay(fleet).run(events)
    with fleet.timed("final wait"):
        fleet.wait_settled(("pending", "processing", "awaiting_funds"))
    retry_errored(fleet)
    for actor in actors:
        finish = getattr(actor, "finish", None)
        if finish is not None:
            with fleet.timed(f"finish: {actor.name}"):
                finish(fleet)
    with fleet.timed("final wait"):  # nothing moves while the books are read
        fleet.wait_settled(LIFECYCLE)


def retry_errored(fleet: Fleet) -> None:
    """The operator retries what errored (once): a kill can leave a leg
    failed; a sale whose data is invalid is settled by partial dispense."""
    errored = fleet.all_rows("/settlements", {"status": "errored"})
    for s in errored:
        if (s.get("error") or "").startswith("the sale's data is invalid"):
            continue
        fleet.api("POST", f"/settlements/{s['id']}/retry", expect=(200, 409))
        fleet.counts["operator_retries"] += 1
    if errored:
        fleet.wait_settled()


# --- the books --------------------------------------------------------------------


@dataclass
class Books:
    """What the end of the month looks like, and every difference found."""

    differences: list[str] = field(default_factory=list)
    checks: Counter[str] = field(default_factory=Counter)
    machines: list[dict[str, Any]] = field(default_factory=list)
    lps: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str, ok: bool, difference: str) -> None:
        self.checks[name] += 1
        if not ok:
            self.differences.append(f"{name}: {difference}")


@dataclass
class Ledger:
    """What the books are checked on: the extension's settlements and legs,
    and LNbits' own payments of every wallet involved."""

    settlements: list[dict]
    legs: list[dict]
    completed: list[dict]
    payments: dict[str, list[dict]]  # wallet id -> LNbits' payments


def close_books(fleet: Fleet, actors: list[SimActor]) -> Books:
    books = Books()
    settlements = fleet.all_rows("/settlements")
    legs = fleet.all_rows("/payments")
    legs_of: dict[str, list[dict]] = defaultdict(list)
    for leg in legs:
        if leg["settlement_id"]:
            legs_of[leg["settlement_id"]].append(leg)
    completed = [leg for leg in legs if leg["status"] == "completed"]
    wallets = {w.id: w for w in fleet.operator.wallets}
    wallets[fleet.fee_wallet.id] = fleet.fee_wallet
    wallets.update({m.wallet.id: m.wallet for m in fleet.machines})
    for lp in fleet.lps:
        wallets[lp.actor.wallet.id] = lp.actor.wallet
    wallets.update({wid: w for wid, (w, _) in fleet.extra_wallets.items()})
    payments = {wid: fleet.lnbits_payments(w) for wid, w in wallets.items()}
    ledger = Ledger(settlements, legs, completed, payments)

    _check_landing(books, fleet, settlements)
    _check_settlements(books, settlements, legs_of)
    _check_no_double_payment(books, completed, payments)
    _check_machine_wallets(books, fleet, settlements, completed, payments)
    _check_payee_wallets(books, fleet, completed, payments)
    _check_lps(books, fleet, completed)
    for actor in actors:
        check = getattr(actor, "check", None)
        if check is not None:
            check(books, fleet, ledger)
    _check_reconciliation(books, fleet)
    books.totals = {
        "sales": len(fleet.sales),
        "settlements": len(settlements),
        "legs": len(legs),
        "completed_legs": len(completed),
        "gross_sats": sum(s["gross_sats"] for s in settlements),
        "by_status": dict(Counter(s["status"] for s in settlements)),
        "legs_by_type": {
            t: sum(leg["amount_sats"] for leg in completed if leg["leg_type"] == t)
            for t in sorted({leg["leg_type"] for leg in completed})
        },
        "held_sats": sum(
            leg["amount_sats"]
            for leg in legs
            if leg["status"] in ("skipped", "failed", "pending")
        ),
        "top_up_sats": sum(fleet.top_ups.values()),
    }
    return books


def _check_landing(books: Books, fleet: Fleet, settlements: list[dict]) -> None:
    """Every sale landed once, at its machine, for its amount."""
    by_hash: dict[str, list[dict]] = defaultdict(list)
    for s in settlements:
        by_hash[s["payment_hash"]].append(s)
    for sale in fleet.sales:
        found = by_hash.get(sale.payment_hash, [])
        books.check(
            "sale landed once",
            len(found) == 1
            and found[0]["machine_id"] == sale.machine.id
            and found[0]["gross_sats"] == sale.gross_sats,
            f"sale {sale.payment_hash} ({sale.gross_sats} sats at "
            f"{sale.machine.name}) landed as {found}",
        )
    made = {sale.payment_hash for sale in fleet.sales}
    extra = [s["id"] for s in settlements if s["payment_hash"] not in made]
    books.check("no settlement without a sale", not extra, f"{extra}")


def _check_settlements(
    books: Books, settlements: list[dict], legs_of: dict[str, list[dict]]
) -> None:
    """Non-voided legs add up to the gross; every settlement finished."""
    for s in settlements:
        live = [leg for leg in legs_of.get(s["id"], []) if leg["status"] != "voided"]
        total = sum(leg["amount_sats"] for leg in live)
        books.check(
            "legs add up to the gross",
            total == s["gross_sats"],
            f"settlement {s['id']}: legs {total} != gross {s['gross_sats']}",
        )
        books.check(
            "settlement finished (never stops for good)",
            s["status"] in ("processed", "partial", "refunded"),
            f"settlement {s['id']} is {s['status']}: {s.get('error')}",
        )
        books.check(
            "held sats have a reason",
            all(leg["reason"] for leg in live if leg["status"] == "skipped"),
            f"settlement {s['id']} holds sats without a reason",
        )


def _successful(payments: list[dict], incoming: bool) -> list[dict]:
    return [
        p
        for p in payments
        if (p["amount"] > 0) == incoming
        and (p["status"] == "success" or (not incoming and p["status"] == "pending"))
    ]


def _check_no_double_payment(
    books: Books, completed: list[dict], payments: dict[str, list[dict]]
) -> None:
    keys = Counter(
        (leg["settlement_id"], leg["distribution_round"], leg["leg_type"],
         leg["destination_wallet_id"], leg["client_id"])
        for leg in completed if leg["settlement_id"]
    )  # fmt: skip
    twice = [k for k, n in keys.items() if n > 1]
    books.check("no leg paid twice (ledger)", not twice, f"{twice[:5]}")
    hashes = Counter(leg["payment_hash"] for leg in completed)
    books.check(
        "each leg has its own invoice",
        all(n == 1 for n in hashes.values()) and None not in hashes,
        f"{[h for h, n in hashes.items() if n > 1][:5]}",
    )
    out = Counter(
        p["payment_hash"] for ps in payments.values() for p in _successful(ps, False)
    )
    paid_twice = [h for h, n in out.items() if n > 1]
    books.check("no invoice paid twice (LNbits)", not paid_twice, f"{paid_twice[:5]}")


def _check_machine_wallets(
    books: Books,
    fleet: Fleet,
    settlements: list[dict],
    completed: list[dict],
    payments: dict[str, list[dict]],
) -> None:
    """Each machine wallet holds gross in + top-ups - completed legs, and its
    LNbits payments are exactly those."""
    for m in fleet.machines:
        balance = fleet.node.balance(m.wallet)
        gross_in = sum(
            s.gross_sats for s in fleet.sales if s.machine is m and s.lightning
        )
        top_ups = fleet.top_ups[m.wallet.id]
        out = [leg for leg in completed if leg["source_wallet_id"] == m.wallet.id]
        legs_out = sum(leg["amount_sats"] for leg in out)
        expected = gross_in + top_ups - legs_out
        books.check(
            "machine wallet = gross in + top-ups - completed legs",
            balance == expected,
            f"{m.name}: LNbits {balance} != {gross_in} + {top_ups} - {legs_out} "
            f"= {expected}",
        )
        lnbits_in = _successful(payments[m.wallet.id], True)
        books.check(
            "machine wallet: LNbits incoming = sales + top-ups",
            sum(p["amount"] for p in lnbits_in) == (gross_in + top_ups) * 1000,
            f"{m.name}: LNbits received {sum(p['amount'] for p in lnbits_in)} msat",
        )
        lnbits_out = {
            p["payment_hash"]: -p["amount"]
            for p in _successful(payments[m.wallet.id], False)
        }
        ledger_out = {leg["payment_hash"]: leg["amount_sats"] * 1000 for leg in out}
        books.check(
            "machine wallet: LNbits payments out = completed legs",
            lnbits_out == ledger_out,
            f"{m.name}: {len(set(lnbits_out) ^ set(ledger_out))} payments differ",
        )
        mine = [s for s in settlements if s["machine_id"] == m.id]
        fiat = sum(Decimal(str(s["fiat_amount"] or 0)) for s in mine)
        by_type: Counter[str] = Counter()
        for leg in out:
            by_type[leg["leg_type"]] += leg["amount_sats"]
        books.machines.append(
            {
                "machine": m.name,
                "sales": len(mine),
                "gross_sats": gross_in,
                "fiat": f"{fiat:.2f}",
                "platform_fee": by_type["super_fee"],
                "operator_split": by_type["operator_split"],
                "lp_flow": by_type["dca"],
                "lp_settlement": by_type["settlement"],
                "top_ups": top_ups,
                "lnbits_balance": balance,
                "expected_balance": expected,
                "difference": balance - expected,
            }
        )


def _check_payee_wallets(
    books: Books,
    fleet: Fleet,
    completed: list[dict],
    payments: dict[str, list[dict]],
) -> None:
    """Every payee wallet holds exactly what its completed legs sent, each
    leg credited once, less what it forwarded (an LP with autoforward: each
    completed forward paid once from it); a forward's payee holds exactly
    the forwards it was sent."""
    payees = {fleet.fee_wallet.id: "platform fee wallet"}
    payees.update(
        {w.id: f"split wallet {i + 1}" for i, w in enumerate(fleet.split_wallets)}
    )
    payees.update({lp.actor.wallet.id: f"LP {lp.actor.username}" for lp in fleet.lps})
    payees.update(
        {wid: label for wid, (_, label) in fleet.extra_wallets.items()
         if wid in fleet.forwards_to.values()}
    )  # fmt: skip
    forwards = [leg for leg in completed if leg["leg_type"] == "autoforward"]
    for wallet_id, label in payees.items():
        credited = {
            leg["payment_hash"]: leg["amount_sats"] * 1000
            for leg in completed
            if leg["destination_wallet_id"] == wallet_id
        }
        credited.update(
            {leg["payment_hash"]: leg["amount_sats"] * 1000 for leg in forwards
             if fleet.forwards_to.get(leg["client_id"]) == wallet_id}
        )  # fmt: skip
        debited = {
            leg["payment_hash"]: leg["amount_sats"] * 1000
            for leg in forwards
            if leg["source_wallet_id"] == wallet_id
        }
        incoming = {
            p["payment_hash"]: p["amount"]
            for p in _successful(payments[wallet_id], True)
        }
        outgoing = {
            p["payment_hash"]: -p["amount"]
            for p in _successful(payments[wallet_id], False)
        }
        fees = sum(abs(p["fee"]) for p in _successful(payments[wallet_id], False))
        balance = sum(
            p["amount"] - abs(p["fee"])
            for p in payments[wallet_id]
            if p["status"] == "success"
            or (p["amount"] < 0 and p["status"] == "pending")
        )
        expected = sum(credited.values()) - sum(debited.values()) - fees
        books.check(
            "payee wallet = its completed legs (less what it forwarded)",
            incoming == credited and outgoing == debited and balance == expected,
            f"{label}: LNbits {balance // 1000} sats from {len(incoming)} payments "
            f"in and {len(outgoing)} out, ledger {expected // 1000} sats from "
            f"{len(credited)} legs in and {len(debited)} forwards out",
        )


def _check_source_wallet(
    books: Books,
    fleet: Fleet,
    ledger: Ledger,
    wallet: Wallet,
    label: str,
    gross_in: int,
) -> None:
    """A wallet that pays legs (a funding wallet): it holds exactly what came
    in (sales, top-ups) less its completed legs, and LNbits paid exactly
    those legs from it."""
    balance = fleet.node.balance(wallet)
    top_ups = fleet.top_ups[wallet.id]
    out = [leg for leg in ledger.completed if leg["source_wallet_id"] == wallet.id]
    legs_out = sum(leg["amount_sats"] for leg in out)
    expected = gross_in + top_ups - legs_out
    books.check(
        "paying wallet = money in - completed legs",
        balance == expected,
        f"{label}: LNbits {balance} != {gross_in} + {top_ups} - {legs_out}",
    )
    lnbits_out = {
        p["payment_hash"]: -p["amount"]
        for p in _successful(ledger.payments[wallet.id], False)
    }
    ledger_out = {leg["payment_hash"]: leg["amount_sats"] * 1000 for leg in out}
    books.check(
        "paying wallet: LNbits payments out = completed legs",
        lnbits_out == ledger_out,
        f"{label}: {len(set(lnbits_out) ^ set(ledger_out))} payments differ",
    )


def _check_lps(books: Books, fleet: Fleet, completed: list[dict]) -> None:
    """Remaining = confirmed deposits - fiat charged, to the cent, >= 0; the
    LP's wallet holds what its purchases brought, less what it forwarded."""
    for lp in fleet.lps:
        if not lp.client_id:
            continue
        b = fleet.api("GET", f"/clients/{lp.client_id}/balance")
        mine = [leg for leg in completed if leg["client_id"] == lp.client_id]
        charged_minor = sum(
            round(Decimal(str(leg["fiat_amount"])) * 100)
            for leg in mine
            if leg["fiat_amount"] is not None and leg["leg_type"] != "autoforward"
        )
        deposits = round(Decimal(str(b["total_deposits"])) * 100)
        remaining = round(Decimal(str(b["remaining_balance"])) * 100)
        sats = sum(
            leg["amount_sats"] for leg in mine if leg["leg_type"] != "autoforward"
        )
        forwarded = sum(
            leg["amount_sats"] for leg in mine if leg["leg_type"] == "autoforward"
        )
        wallet = fleet.node.balance(lp.actor.wallet)
        books.check(
            "LP deposits = confirmed deposits",
            deposits == lp.confirmed_minor,
            f"{lp.actor.username}: {deposits} != {lp.confirmed_minor} (minor units)",
        )
        books.check(
            "LP remaining = deposits - charged, never negative",
            remaining == deposits - charged_minor and remaining >= 0,
            f"{lp.actor.username}: remaining {remaining} != {deposits} - "
            f"{charged_minor}",
        )
        books.check(
            "LP wallet = sats of its completed legs - forwarded",
            wallet == sats - forwarded,
            f"{lp.actor.username}: wallet {wallet} != {sats} - {forwarded}",
        )
        books.lps.append(
            {
                "lp": lp.actor.username,
                "machine": lp.machine.name,
                "mode": lp.mode,
                "deposits": f"{Decimal(deposits) / 100:.2f}",
                "charged": f"{Decimal(charged_minor) / 100:.2f}",
                "remaining": f"{Decimal(remaining) / 100:.2f}",
                "sats_received": sats,
                "forwarded": forwarded,
                "wallet_balance": wallet,
            }
        )


RECONCILED_FIELDS = ("sales_count", "sales_gross_sats", "wallet")


def _check_reconciliation(books: Books, fleet: Fleet) -> None:
    """The operator's reconciliation says the same, and finds nothing."""
    report = fleet.api("GET", "/reconciliation")
    books.check(
        "reconciliation: no difference",
        report["totals"]["ok"] is True,
        f"{report['totals']}",
    )
    by_id = {m["machine_id"]: m for m in report["machines"]}
    for m in fleet.machines:
        r = by_id.get(m.id)
        sales = [s for s in fleet.sales if s.machine is m]
        books.check(
            "reconciliation: sales and balance match",
            r is not None
            and r["sales_count"] == len(sales)
            and r["sales_gross_sats"] == sum(s.gross_sats for s in sales)
            and r["wallet"]["lnbits_balance_sats"] == fleet.node.balance(m.wallet)
            and r["wallet"]["balanced"],
            f"{m.name}: {r and {k: r[k] for k in RECONCILED_FIELDS}}",
        )
    csv_text = fleet.node.request(
        "GET",
        "/satmachineadmin/api/v1/dca/export/reconciliation.csv",
        actor=fleet.operator,
    ).text
    books.check(
        "reconciliation CSV says ok",
        ",totals,result,ok," in csv_text,
        "the CSV's result row is not ok",
    )


# --- the report --------------------------------------------------------------------


def _table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["(none)"]
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in rows]
    return lines


def write_report(
    path: Path, fleet: Fleet, books: Books, wall_s: float, peak: dict[str, float]
) -> None:
    p = fleet.params
    outcome = (
        "RECONCILED: zero differences"
        if not books.differences
        else (f"DIFFERENCES: {len(books.differences)}")
    )
    lines = [
        f"# Fleet simulation ({p.db}, {p.sales} sales, {p.machines} machines)",
        "",
        f"Generated by `make simulate` (`python -m bench.simulate`) on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        f"**{outcome}**",
        "",
        f"- seed {p.seed}, {p.days} simulated days, {p.lps_per_machine} LPs per "
        f"machine, {len(fleet.kills)} SIGKILLs",
        f"- {len(fleet.sales)} sales in {wall_s:.0f} s: "
        f"{len(fleet.sales) / wall_s:.2f} sales/s; LNbits used "
        f"{fleet.timings.get('(LNbits CPU)', 0.0):.0f} s of CPU",
        f"- wall time {wall_s:.0f} s; peak memory: LNbits process "
        f"{peak['lnbits_mib']:.0f} MiB, simulator {peak['simulator_mib']:.0f} MiB",
        f"- events: {dict(sorted(fleet.counts.items()))}",
        f"- kills: {fleet.kills}",
        "",
        "## Invariants (checks run / differences)",
        "",
    ]
    failed = Counter(d.split(":", 1)[0] for d in books.differences)
    lines += _table(
        [{"invariant": k, "checks": n, "differences": failed[k]}
         for k, n in books.checks.items()]
    )  # fmt: skip
    lines += ["", "## Where the time went", ""]
    lines += _table(
        [{"section": k, "wall_s": f"{v:.1f}",
          "lnbits_cpu_s": f"{fleet.cpu_timings.get(k, 0.0):.1f}"}
         for k, v in sorted(fleet.timings.items(), key=lambda kv: -kv[1])]
    )  # fmt: skip
    lines += ["", "## Pace through the month", "", *_table(fleet.pace)]
    lines += ["", "## Machines", "", *_table(books.machines)]
    lines += ["", "## LPs", "", *_table(books.lps)]
    lines += ["", "## Totals", ""]
    lines += [f"- {k}: {v}" for k, v in books.totals.items()]
    if books.differences:
        lines += ["", "## Differences", ""]
        lines += [f"- {d}" for d in books.differences[:200]]
    if fleet.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in fleet.notes]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


@dataclass
class Result:
    books: Books
    wall_s: float
    peak_lnbits_mib: float
    kills: int
    counts: Counter[str]
    report: Path | None


def simulate(params: Params) -> Result:
    began = time.monotonic()
    postgres = params.pg_url if params.db == "postgres" else None
    env_pg = os.environ.pop("SATMACHINE_TEST_POSTGRES", None)
    try:
        node = LnbitsProcess(postgres=postgres, log_name="simulate")
    finally:
        if env_pg is not None:
            os.environ["SATMACHINE_TEST_POSTGRES"] = env_pg
    actors = [make() for make in ACTORS]
    with node, contextlib.ExitStack() as stack:
        for actor in actors:
            prepare = getattr(actor, "prepare", None)
            if prepare is not None:
                node.extra_env.update(prepare(params, node, stack))
        node.start()
        fleet = Fleet(params, node)
        fleet.timings["start"] += time.monotonic() - began
        if postgres:
            fleet.notes.append(
                f"PostgreSQL's planner statistics of the LNbits database are "
                f"refreshed (ANALYZE) every {PACE_EVERY} sales, as autovacuum "
                "does in production: this machine's server runs with autovacuum "
                "off, and on never-analyzed tables LNbits' balance queries "
                "took a plan 2.5 times slower (108 ms against 42 ms for the operator's "
                "wallets, at 2 800 sales of a first 10 000-sale run)"
            )
        try:
            run_month(fleet, actors)
            with fleet.timed("closing the books"):
                books = close_books(fleet, actors)
        except Exception:
            log(f"LNbits log tail:\n{node.log_tail()}")
            raise
        fleet.sample_memory()
        fleet.timings["(LNbits CPU)"] = fleet.total_cpu_s()
    wall = time.monotonic() - began
    peak = {
        "lnbits_mib": fleet.peak_lnbits_kib / 1024,
        "simulator_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    for section, seconds in sorted(fleet.timings.items(), key=lambda kv: -kv[1]):
        cpu = fleet.cpu_timings.get(section, 0.0)
        log(f"time: {seconds:8.1f} s wall {cpu:8.1f} s LNbits CPU  {section}")
    log(f"counts: {dict(fleet.counts)}")
    if params.report is not None:
        write_report(params.report, fleet, books, wall, peak)
    return Result(
        books, wall, peak["lnbits_mib"], len(fleet.kills), fleet.counts, params.report
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sales", type=int, default=10_000)
    parser.add_argument("--machines", type=int, default=5)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--pg-url", default=os.environ.get("PG_URL", Params.pg_url))
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--lps-per-machine", type=int, default=3)
    parser.add_argument("--report", type=Path, default=None)
    parser.add_argument(
        "--lag",
        type=int,
        default=Params.lag,
        help="settlements the simulator may run ahead of LNbits' payouts",
    )
    parser.add_argument(
        "--sellers",
        type=int,
        default=Params.sellers,
        help="threads making bitSpire sales at the same time",
    )
    parser.add_argument(
        "--fixed-slots",
        type=int,
        default=Params.fixed_slots,
        help="fixed-mode slots a day (1 to 48), each run through the month",
    )
    args = parser.parse_args(argv)
    report = args.report or REPO / "docs" / f"simulation-{args.db}.md"
    params = Params(
        sales=args.sales, machines=args.machines, kills=args.kills, db=args.db,
        pg_url=args.pg_url, seed=args.seed, lps_per_machine=args.lps_per_machine,
        report=report, lag=args.lag, sellers=args.sellers,
        fixed_slots=args.fixed_slots,
    )  # fmt: skip
    result = simulate(params)
    for difference in result.books.differences[:50]:
        log(f"DIFFERENCE {difference}")
    log(
        f"{'reconciled' if not result.books.differences else 'DIFFERENT'}: "
        f"{sum(result.books.checks.values())} checks, "
        f"{len(result.books.differences)} differences, {result.wall_s:.0f} s, "
        f"LNbits peak {result.peak_lnbits_mib:.0f} MiB; report {report}"
    )
    return 1 if result.books.differences else 0


if __name__ == "__main__":
    sys.exit(main())
