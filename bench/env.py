"""A real LNbits in this process, for one benchmark phase on one backend.

Uses ``tests/harness.py`` (throwaway data folder, this checkout linked in as
the extension, FakeWallet, no network; a fresh PostgreSQL database when
``SATMACHINE_TEST_POSTGRES`` is set). ``configure()`` must run before anything
imports ``lnbits``: LNbits picks its database at first import.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import harness  # noqa: E402  (tests/harness.py)


def configure(backend: str, pg_url: str) -> dict[str, str]:
    if backend == "postgres":
        os.environ["SATMACHINE_TEST_POSTGRES"] = pg_url
    else:
        os.environ.pop("SATMACHINE_TEST_POSTGRES", None)
    return harness.configure()


def teardown() -> None:
    harness.teardown()


# --- statistics ----------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil
    return ordered[int(rank) - 1]


def summary_ms(seconds: Sequence[float]) -> dict[str, float | int]:
    """p50/p95/p99/max/mean of durations given in seconds, in milliseconds."""
    if not seconds:
        return {"n": 0}
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 50), 2),
        "p95": round(percentile(ms, 95), 2),
        "p99": round(percentile(ms, 99), 2),
        "max": round(max(ms), 2),
        "mean": round(statistics.fmean(ms), 2),
    }


# --- memory --------------------------------------------------------------------


def rss_mib() -> float:
    """Current resident set size of this process (Linux /proc)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def max_rss_mib() -> float:
    """Peak RSS of this process since it started (getrusage, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class MemorySampler:
    """Samples this process's RSS from a thread every ``interval`` seconds;
    ``peak`` is the highest seen since ``start`` (the event loop is never
    blocked by it: reading /proc releases the GIL quickly)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.start_mib = 0.0
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> MemorySampler:
        self.start_mib = self.peak = rss_mib()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_mib())

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, rss_mib())
        return {
            "rss_start_mib": round(self.start_mib, 1),
            "rss_peak_mib": round(self.peak, 1),
            "rss_end_mib": round(rss_mib(), 1),
            "process_max_rss_mib": round(max_rss_mib(), 1),
        }


# --- the app -----------------------------------------------------------------


@dataclass
class Wallet:
    id: str
    adminkey: str
    inkey: str


@dataclass
class Actor:
    id: str
    token: str = ""
    wallets: list[Wallet] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def wallet(self) -> Wallet:
        return self.wallets[0]


@dataclass
class Lnbits:
    app: Any
    http: Any  # httpx.AsyncClient bound to the app
    superuser: Actor


@asynccontextmanager
async def running_lnbits() -> AsyncIterator[Lnbits]:
    """create_app + its lifespan, an ASGI client, and the super user."""
    import httpx

    os.chdir(harness.lnbits_site_packages())
    from lnbits.app import create_app
    from lnbits.utils import exchange_rates

    # Offline there is no price, and LNbits would look for one (and log an
    # error) on every invoice and payment. A running instance has one cached.
    async def fixed_btc_price(currency: str) -> float:
        return 90_000.0

    exchange_rates.btc_price = fixed_btc_price  # type: ignore[assignment]

    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]

        async def forget_cookies(response: httpx.Response) -> None:
            client.cookies.clear()

        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://lnbits.bench",
            timeout=120,
            event_hooks={"response": [forget_cookies]},
        ) as client:
            superuser = await _first_install(client)
            yield Lnbits(app=app, http=client, superuser=superuser)


async def _load_actor(http: Any, token: str) -> Actor:
    response = await http.get(
        "/api/v1/auth", headers={"Authorization": f"Bearer {token}"}
    )
    response.raise_for_status()
    body = response.json()
    return Actor(
        id=body["id"],
        token=token,
        wallets=[Wallet(w["id"], w["adminkey"], w["inkey"]) for w in body["wallets"]],
    )


async def _first_install(http: Any) -> Actor:
    password = "bench-super-secret"  # noqa: S105
    response = await http.put(
        "/api/v1/auth/first_install",
        json={"username": "super", "password": password, "password_repeat": password},
    )
    response.raise_for_status()
    actor = await _load_actor(http, response.json()["access_token"])
    enabled = await http.put(
        f"/api/v1/extension/{harness.EXT_ID}/enable", headers=actor.headers
    )
    enabled.raise_for_status()
    return actor


async def register_user(http: Any, prefix: str, extra_wallets: int = 0) -> Actor:
    """A user with a login (bearer token), through the HTTP API."""
    username = f"{prefix}_{uuid.uuid4().hex[:8]}"
    password = "correct-horse-battery"  # noqa: S105
    response = await http.post(
        "/api/v1/auth/register",
        json={"username": username, "password": password, "password_repeat": password},
    )
    response.raise_for_status()
    actor = await _load_actor(http, response.json()["access_token"])
    for i in range(extra_wallets):
        created = await http.post(
            "/api/v1/wallet", json={"name": f"w{i}"}, headers=actor.headers
        )
        created.raise_for_status()
        w = created.json()
        actor.wallets.append(Wallet(w["id"], w["adminkey"], w["inkey"]))
    return actor


async def bare_users(count: int) -> list[Actor]:
    """``count`` users with one wallet each, straight through LNbits' crud (no
    password hashing, no HTTP): for LPs that never log in."""
    from lnbits.core.crud.users import create_account
    from lnbits.core.crud.wallets import create_wallet
    from lnbits.core.db import db

    actors = []
    async with db.connect() as conn:
        for _ in range(count):
            account = await create_account(conn=conn)
            wallet = await create_wallet(user_id=account.id, conn=conn)
            actors.append(
                Actor(
                    id=account.id,
                    wallets=[Wallet(wallet.id, wallet.adminkey, wallet.inkey)],
                )
            )
    return actors


async def delete_users(actors: Sequence[Actor]) -> None:
    """Remove users and their wallets from the instance (hard delete: on SQLite
    every balance lookup scans all wallets). Their payments stay."""
    from lnbits.core.crud.wallets import clear_wallet_id_cache
    from lnbits.core.db import db

    async with db.connect() as conn:
        for actor in actors:
            for wallet in actor.wallets:
                clear_wallet_id_cache(wallet.id)
                await conn.execute(
                    "DELETE FROM wallets WHERE id = :w", {"w": wallet.id}
                )
            await conn.execute("DELETE FROM accounts WHERE id = :u", {"u": actor.id})


CREDIT_CHUNK = 5_000_000  # LNbits refuses invoices over 10 000 000 sats


async def credit(wallet_id: str, sats: int) -> None:
    """Admin credits (real LNbits money; never a sale), in chunks LNbits
    accepts."""
    from lnbits.core.crud import get_wallet
    from lnbits.core.services import update_wallet_balance

    while sats > 0:
        wallet = await get_wallet(wallet_id)
        assert wallet is not None
        await update_wallet_balance(wallet, min(sats, CREDIT_CHUNK))
        sats -= CREDIT_CHUNK


async def transfer(
    source_wallet_id: str,
    destination_wallet_id: str,
    sats: int,
    memo: str,
    extra: dict | None = None,
) -> str:
    """One bare LNbits internal transfer: an invoice on the destination, paid
    from the source. Returns the payment hash."""
    from lnbits.core.services import create_invoice, pay_invoice

    invoice = await create_invoice(
        wallet_id=destination_wallet_id,
        amount=sats,
        memo=memo,
        extra=dict(extra or {}),
        internal=True,
    )
    await pay_invoice(
        wallet_id=source_wallet_id,
        payment_request=invoice.bolt11,
        extra=dict(extra or {}),
        description=memo,
    )
    return invoice.payment_hash


def log(message: str) -> None:
    """Progress on stderr (the parent shows it as it comes)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def dump_tasks_on_sigusr1() -> None:
    """``kill -USR1 PID`` prints every asyncio task's stack: finds a hang."""
    import asyncio
    import signal

    def dump() -> None:
        for task in asyncio.all_tasks():
            task.print_stack(file=sys.stderr)

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)
