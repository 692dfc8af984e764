"""``make demo``: a local LNbits (as ``make run``) that comes alive.

On a fresh data folder (``.run/demo``, wiped at each start unless ``--keep``)
it sets up, through the public API:

* the super user ``admin`` with a 20 % platform fee paid to its wallet;
* a demo operator with two machines (GTQ), a 50/30/20 commission split
  over three of its wallets;
* three LPs, each with a confirmed deposit at a machine;
* a customer wallet credited by the super user (the ATM's customers);
* a local price feed that LNbits reads as its exchange-rate provider
  (``demo_side.py``), so fixed-mode slots buy and LPs see value and gain;
* a fixed-mode LP (``demo_lp4``) on a half-hourly schedule, whose first slot
  runs at once;
* a manual-source machine with sales entered by hand;
* a Lamassu machine reading a demo Lamassu database, when a local
  PostgreSQL answers (``SATMACHINE_DEMO_POSTGRES``, by default
  ``postgres://postgres@127.0.0.1:5432``; a line says why not otherwise);
* ``demo_lp1`` autoforwarding its sats to another demo wallet (``Savings``)
  through the feed's LNURL-pay endpoint;

then runs a built-in ATM simulator: a sale every ``--interval`` seconds,
alternating machines (a Lightning invoice on the machine wallet carrying
bitSpire's ``extra``, paid from the customer wallet, as ``bench/simulator.py``
does), and signed telemetry beacons (kind 30078) from each machine over
``POST /telemetry``. It prints the logins and runs until Ctrl-C.

    .venv/bin/python scripts/demo.py [--data DIR] [--port N] [--interval S]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing as mp
import os
import random
import secrets
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import run_lnbits as rl  # noqa: E402
from demo_side import DemoSide  # noqa: E402

EXT = "/satmachineadmin/api/v1/dca"
DEMO_DATA = rl.RUN_DIR / "demo"
CURRENCY = "GTQ"
RATE = Decimal(772114)  # GTQ per BTC
USD_RATE = Decimal(99600)  # USD per BTC (about 7.75 GTQ a dollar)
FEE_PCT = Decimal("0.05")
TOP_UP_SATS = 10_000_000  # LNbits caps one credit at 10 M sats
TOP_UP_EVERY = 40  # sales (at most 1 000 GTQ, about 137 000 sats each)
TIMEZONE = "America/Guatemala"
EVERY_HALF_HOUR = [f"{h:02d}:{m:02d}" for h in range(24) for m in (0, 30)]
FIXED_DAILY_LIMIT = "480"  # GTQ: 10 GTQ at each of 48 slots
AUTOFORWARD_THRESHOLD = 20_000  # sats
DEMO_POSTGRES = "postgres://postgres@127.0.0.1:5432"
LAMASSU_DEVICE = "dev-a"
# One demo Lamassu database per demo folder (use_lamassu_names), so two demos
# side by side, or two test runs, never drop each other's.
LAMASSU = {"db": "satmachine_demo_lamassu", "reader": "satmachine_demo_lamassu_ro"}


def use_lamassu_names(data: Path) -> None:
    tag = hashlib.sha256(str(data).encode()).hexdigest()[:8]
    LAMASSU["db"] = f"satmachine_demo_lamassu_{tag}"
    LAMASSU["reader"] = f"satmachine_demo_lamassu_{tag}_ro"


class DemoError(RuntimeError):
    pass


@dataclass
class Account:
    username: str
    password: str
    token: str = ""
    user_id: str = ""
    wallets: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class DemoMachine:
    id: str
    name: str
    secret: bytes
    npub: str
    wallet: dict[str, Any]
    cassettes: list[dict[str, int]]


def call(
    base: str, method: str, path: str, body: Any = None, token: str = "", **kw: Any
) -> Any:
    status, _, payload = rl.request(method, base + path, body, token or None, **kw)
    if status >= 400:
        raise DemoError(f"{method} {path}: {status} {rl.detail(payload)}")
    return payload


def register(base: str, username: str, password: str) -> Account:
    account = Account(username, password)
    payload = call(
        base,
        "POST",
        "/api/v1/auth/register",
        {"username": username, "password": password, "password_repeat": password},
    )
    account.token = payload["access_token"]
    me = call(base, "GET", "/api/v1/auth", token=account.token)
    account.user_id = me["id"]
    account.wallets = me["wallets"]
    return account


def login(base: str, username: str, password: str) -> Account:
    payload = call(
        base, "POST", "/api/v1/auth", {"username": username, "password": password}
    )
    account = Account(username, password, token=payload["access_token"])
    me = call(base, "GET", "/api/v1/auth", token=account.token)
    account.user_id, account.wallets = me["id"], me["wallets"]
    return account


def new_wallet(base: str, account: Account, name: str) -> dict[str, Any]:
    wallet = call(base, "POST", "/api/v1/wallet", {"name": name}, account.token)
    account.wallets.append(wallet)
    return wallet


def keypair() -> tuple[bytes, str]:
    from bech32 import bech32_encode, convertbits
    from coincurve import PublicKeyXOnly

    secret = secrets.token_bytes(32)
    pub = PublicKeyXOnly.from_secret(secret).format()
    return secret, bech32_encode("npub", convertbits(pub, 8, 5) or [])


def sign_event(secret: bytes, kind: int, content: str) -> dict[str, Any]:
    """A NIP-01 event signed by BIP-340 (as the machine's firmware signs)."""
    import hashlib

    from coincurve import PrivateKey, PublicKeyXOnly

    event: dict[str, Any] = {
        "pubkey": PublicKeyXOnly.from_secret(secret).format().hex(),
        "created_at": int(time.time()),
        "kind": kind,
        "tags": [["d", "bitspire-telemetry"]],
        "content": content,
    }
    serialized = json.dumps(
        [0, event["pubkey"], event["created_at"], kind, event["tags"], content],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    event["id"] = hashlib.sha256(serialized.encode()).hexdigest()
    event["sig"] = PrivateKey(secret).sign_schnorr(bytes.fromhex(event["id"])).hex()
    return event


def configure_lnbits(base: str, admin: Account, side: DemoSide) -> None:
    """LNbits' exchange rate from the demo feed (and LNURL on 127.0.0.1 for
    the autoforward), at every start: the feed's port changes."""
    call(
        base,
        "PATCH",
        "/admin/api/v1/settings",
        {
            "lnbits_exchange_rate_providers": [side.provider()],
            "lnbits_price_aggregator_enabled": False,
            "lnbits_exchange_rate_cache_seconds": 30,
            "lnbits_lnurl_allow_private_ips": True,
        },
        admin.token,
    )


def credit(base: str, admin: Account, wallet_id: str, sats: int) -> None:
    """An admin credit: the customers' money, or an operator's top-up."""
    call(
        base,
        "PUT",
        "/users/api/v1/balance",
        {"id": wallet_id, "amount": sats},
        admin.token,
    )


def position(
    base: str,
    operator: Account,
    lp: Account,
    machine_id: str,
    amount: str,
    **extra: Any,
) -> dict[str, Any]:
    """An LP at a machine with a confirmed deposit of ``amount``."""
    client = call(
        base,
        "POST",
        f"{EXT}/clients",
        {
            "machine_id": machine_id,
            "user_id": lp.user_id,
            "wallet_id": lp.wallets[0]["id"],
            "username": lp.username,
            **extra,
        },
        operator.token,
    )
    deposit = call(
        base,
        "POST",
        f"{EXT}/deposits",
        {"client_id": client["id"], "amount": amount, "currency": CURRENCY},
        operator.token,
    )
    call(
        base,
        "PUT",
        f"{EXT}/deposits/{deposit['id']}/status",
        {"status": "confirmed"},
        operator.token,
    )
    return client


def seed(base: str, admin: Account, password: str, side: DemoSide) -> dict[str, Any]:
    """The demo operator, machines, split, LPs and deposits, over HTTP."""
    call(base, "PUT", "/api/v1/extension/satmachineadmin/enable", token=admin.token)
    call(
        base,
        "PUT",
        f"{EXT}/super-config",
        {"super_fee_pct": "0.2", "super_fee_wallet_id": admin.wallets[0]["id"]},
        admin.token,
    )
    operator = register(base, "demo_operator", password)
    machines: list[DemoMachine] = []
    for i, name in enumerate(("Zona 1 kiosk", "Antigua plaza")):
        wallet = new_wallet(base, operator, f"ATM {name}")
        secret, npub = keypair()
        created = call(
            base,
            "POST",
            f"{EXT}/machines",
            {
                "npub": npub,
                "wallet_id": wallet["id"],
                "name": name,
                "currency": CURRENCY,
                "fallback_commission_pct": "0.05",
            },
            operator.token,
        )
        cassettes = [
            {"position": p, "denomination": d, "count": 400 - 80 * i}
            for p, d in ((1, 50), (2, 100), (3, 200))
        ]
        machines.append(
            DemoMachine(created["id"], name, secret, npub, wallet, cassettes)
        )
    legs = []
    for label, pct in (
        ("Operator profit", "0.5"),
        ("Technician", "0.3"),
        ("Reserve", "0.2"),
    ):
        wallet = new_wallet(base, operator, label)
        legs.append({"wallet_id": wallet["id"], "pct": pct, "label": label})
    call(base, "PUT", f"{EXT}/commission-splits", {"legs": legs}, operator.token)

    lps = []
    clients = []
    for i, amount in enumerate(("15000", "9000", "6000")):
        lp = register(base, f"demo_lp{i + 1}", password)
        machine = machines[0] if i < 2 else machines[1]
        clients.append(position(base, operator, lp, machine.id, amount))
        lps.append(lp)

    # demo_lp1 forwards its sats to its Savings wallet once 20 000 gather.
    savings = new_wallet(base, lps[0], "Savings")
    side.payees["demo_lp1"] = savings["inkey"]
    call(
        base,
        "PUT",
        f"{EXT}/lp/positions/{clients[0]['id']}",
        {
            "autoforward_enabled": True,
            "autoforward_address": side.lnurl("demo_lp1"),
            "autoforward_threshold_sats": AUTOFORWARD_THRESHOLD,
        },
        lps[0].token,
    )

    # A fixed-mode LP: buys 10 GTQ at every half hour at LNbits' rate (the
    # feed), paid from the machine wallet the operator tops up.
    call(
        base,
        "PUT",
        f"{EXT}/fixed-schedule",
        {"times": EVERY_HALF_HOUR, "timezone": TIMEZONE, "max_daily_limit": "2000"},
        operator.token,
    )
    fixed_lp = register(base, "demo_lp4", password)
    position(
        base,
        operator,
        fixed_lp,
        machines[0].id,
        "5000",
        dca_mode="fixed",
        fixed_mode_daily_limit=FIXED_DAILY_LIMIT,
    )
    lps.append(fixed_lp)
    credit(base, admin, machines[0].wallet["id"], 500_000)  # a top-up
    call(base, "POST", f"{EXT}/machines/{machines[0].id}/fixed-slots/run", {},
         operator.token)  # fmt: skip

    manual = manual_machine(base, admin, operator, lps[2])
    lamassu = lamassu_machine(base, admin, operator, lps[1])

    customer = register(base, "demo_customer", password)
    return {
        "operator": operator,
        "machines": machines,
        "lps": lps,
        "customer": customer,
        "payees": dict(side.payees),
        "manual": manual,
        "lamassu": lamassu,
    }


def manual_machine(base: str, admin: Account, operator: Account, lp: Account) -> str:
    """A machine whose sales the operator enters by hand (settled outside
    Lightning): paid from its wallet, which the operator tops up."""
    wallet = new_wallet(base, operator, "ATM Mercado")
    machine = call(
        base,
        "POST",
        f"{EXT}/machines",
        {
            "wallet_id": wallet["id"],
            "name": "Mercado (manual)",
            "currency": CURRENCY,
            "source": "manual",
        },
        operator.token,
    )
    credit(base, admin, wallet["id"], 1_000_000)
    position(base, operator, lp, machine["id"], "4000")
    now = datetime.now(timezone.utc)
    for hours, fiat in ((5, "300"), (3, "500"), (1, "200")):
        call(
            base,
            "POST",
            f"{EXT}/settlements/manual",
            {
                "machine_id": machine["id"],
                "reference": f"MAN-{hours:04d}",
                "fiat_amount": fiat,
                "exchange_rate": str(RATE),
                "fee_pct": str(FEE_PCT),
                "occurred_at": (now - timedelta(hours=hours)).isoformat(),
                "note": "entered by hand (demo)",
            },
            operator.token,
        )
    return str(machine["id"])


def lamassu_machine(base: str, admin: Account, operator: Account, lp: Account) -> str:
    """A Lamassu machine reading a demo Lamassu database on the local
    PostgreSQL, when one answers; the reason in words when none does."""
    server = os.environ.get("SATMACHINE_DEMO_POSTGRES", DEMO_POSTGRES)
    try:
        reader_password = asyncio.run(create_lamassu_db(server))
    except Exception as error:  # no server, no rights: say why, go on
        return f"not shown: no PostgreSQL answers at {server} ({error})"[:300]
    wallet = new_wallet(base, operator, "ATM Xela")
    machine = call(
        base,
        "POST",
        f"{EXT}/machines",
        {
            "wallet_id": wallet["id"],
            "name": "Xela (Lamassu)",
            "currency": CURRENCY,
            "source": "lamassu",
        },
        operator.token,
    )
    credit(base, admin, wallet["id"], 1_000_000)
    position(base, operator, lp, machine["id"], "3000")
    host, port = _host_port(server)
    call(
        base,
        "PUT",
        f"{EXT}/machines/{machine['id']}/lamassu",
        {
            "host": host,
            "port": port,
            "database": LAMASSU["db"],
            "user": LAMASSU["reader"],
            "password": reader_password,
            "sslmode": "disable",
            "device_id": LAMASSU_DEVICE,
            "poll_seconds": 10,
        },
        operator.token,
    )
    # Its three cash-outs happened before it was connected: a source never
    # lands its past by itself, so the demo imports that hour on purpose, as
    # an operator would after looking at the preview.
    since = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    call(base, "POST", f"{EXT}/machines/{machine['id']}/lamassu/import",
         {"since": since, "confirm": True}, operator.token)  # fmt: skip
    return f"Xela (Lamassu), reading {LAMASSU['db']} on {host}:{port}"


def _host_port(server: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(server)
    return parts.hostname or "127.0.0.1", parts.port or 5432


async def create_lamassu_db(server: str) -> str:
    """A fresh demo Lamassu database (dropped and made again), with the
    tables a Lamassu server has, a read-only role and three cash-outs."""
    import asyncpg

    sys.path.insert(0, str(REPO / "tests" / "integration"))
    from lamassu_db import SCHEMA

    password = secrets.token_hex(12)
    admin = await asyncio.wait_for(asyncpg.connect(f"{server}/postgres"), 5)
    try:
        db, reader = LAMASSU["db"], LAMASSU["reader"]
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{db}"')
        await admin.execute(
            f"DO $$ BEGIN CREATE ROLE {reader} LOGIN; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        await admin.execute(f"ALTER ROLE {reader} LOGIN PASSWORD '{password}'")
    finally:
        await admin.close()
    conn = await asyncpg.connect(f"{server}/{LAMASSU['db']}")
    try:
        await conn.execute(SCHEMA)
        await conn.execute(f"GRANT USAGE ON SCHEMA public TO {LAMASSU['reader']}")
        await conn.execute(
            f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {LAMASSU['reader']}"
        )
        await conn.execute(
            "INSERT INTO devices (device_id, name) VALUES ($1, 'Xela')",
            LAMASSU_DEVICE,
        )
        for minutes, fiat in ((50, 400), (30, 250), (10, 600)):
            await add_lamassu_cash_out(conn, fiat, minutes)
    finally:
        await conn.close()
    return password


async def add_lamassu_cash_out(conn: Any, fiat: int, minutes_ago: int = 0) -> None:
    """A successful, dispensed cash-out as a Lamassu server records it."""
    import uuid

    atoms = int(Decimal(fiat) * (1 + FEE_PCT) / RATE * Decimal(100_000_000))
    when = datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)
    await conn.execute(
        """INSERT INTO cash_out_txs (id, device_id, crypto_atoms, crypto_code,
           fiat, fiat_code, status, dispense, dispense_confirmed, created,
           confirmed_at, commission_percentage, raw_ticker_price)
           VALUES ($1, $2, $3, 'LN', $4, $5, 'confirmed', true, true, $6, $6,
                   $7, $8)""",
        uuid.uuid4(),
        LAMASSU_DEVICE,
        Decimal(atoms),
        Decimal(fiat),
        CURRENCY,
        when,
        FEE_PCT,
        RATE,
    )


# --- the ATM simulator --------------------------------------------------------


def beacon(machine: DemoMachine) -> dict[str, Any]:
    content = {
        "firmware_version": "bitspire-demo 1.0",
        "currency": CURRENCY,
        "cassettes": machine.cassettes,
        "cash_level": str(
            sum(c["denomination"] * c["count"] for c in machine.cassettes)
        ),
        "uptime_s": int(time.monotonic()),
    }
    return sign_event(machine.secret, 30078, json.dumps(content))


async def simulate(
    base: str, world: dict[str, Any], interval: float, stop: asyncio.Event
) -> None:
    import httpx

    from bench.simulator import Sale, sell

    machines: list[DemoMachine] = world["machines"]
    customer: Account = world["customer"]
    rng = random.Random()  # noqa: S311 - demo amounts, not secrets
    sales = 0
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        while not stop.is_set():
            if sales % TOP_UP_EVERY == 0:  # the customers' money: an admin credit
                await asyncio.to_thread(
                    credit,
                    base,
                    world["admin"],
                    customer.wallets[0]["id"],
                    TOP_UP_SATS,
                )
            machine = machines[sales % len(machines)]
            fiat = Decimal(rng.choice((100, 200, 300, 500, 700, 1000)))
            sale = Sale(fiat, RATE, FEE_PCT, CURRENCY, machine.npub)
            try:
                await sell(
                    client,
                    machine_inkey=machine.wallet["inkey"],
                    customer_adminkey=customer.wallets[0]["adminkey"],
                    sale=sale,
                )
                sales += 1
                remaining = int(fiat)
                for cassette in sorted(
                    machine.cassettes, key=lambda c: -c["denomination"]
                ):
                    bills = min(
                        cassette["count"], remaining // cassette["denomination"]
                    )
                    cassette["count"] -= bills
                    remaining -= bills * cassette["denomination"]
                print(
                    f"  sale {sales}: {machine.name} sold {fiat} {CURRENCY} "
                    f"({sale.gross_sats} sats)",
                    flush=True,
                )
                for m in machines:
                    await client.post(f"{EXT}/telemetry", json=beacon(m))
            except (httpx.HTTPError, DemoError) as error:
                print(f"  simulator: {error}", flush=True)
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except asyncio.TimeoutError:
                pass


def banner(
    base: str,
    admin_password: str,
    password: str,
    data: Path,
    world: dict[str, Any],
    side: DemoSide,
) -> None:
    rule = "=" * 72
    lines = [
        "satmachineadmin demo: a fleet selling live",
        "",
        f"  Console:     {base}/satmachineadmin/",
        f"  Super user:  admin / {admin_password}",
        f"  Operator:    demo_operator / {password}",
        f"  LPs:         demo_lp1, demo_lp2, demo_lp3 / {password}",
        f"  Fixed mode:  demo_lp4 / {password} (10 {CURRENCY} every half hour)",
        "  Autoforward: demo_lp1 -> its Savings wallet, from "
        f"{AUTOFORWARD_THRESHOLD} sats",
        f"  Price feed:  http://127.0.0.1:{side.port}/price/BTC/{CURRENCY} "
        "(LNbits' exchange rate)",
        "  Manual:      Mercado (manual), three sales entered by hand",
        f"  Lamassu:     {world.get('lamassu') or 'not set up (--keep)'}",
        f"  Data:        {rl.display(data)} (SQLite, FakeWallet)",
        "",
        "  The simulator sells every few seconds. Press Ctrl-C to stop.",
    ]
    print("\n".join(["", rule, *lines, rule, ""]), flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEMO_DATA)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--interval", type=float, default=4.0)
    parser.add_argument(
        "--keep", action="store_true", help="reuse the data folder (no new seed)"
    )
    return parser.parse_args(argv)


def _sell_until_stopped(
    base: str,
    world: dict[str, Any],
    interval: float,
    process: Any,
    stop_signals: list[int],
) -> int:
    """Sell until LNbits stops; 0 when a signal stopped both, else 1."""

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(simulate(base, world, interval, stop))
        try:
            while process.is_alive():
                await asyncio.sleep(0.5)
        finally:
            stop.set()
            task.cancel()

    asyncio.run(run())
    if not stop_signals:
        print("ERROR: LNbits stopped by itself", file=sys.stderr, flush=True)
        return 1
    print("\nStopping the demo...", flush=True)
    return 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    data = args.data.expanduser().resolve()
    use_lamassu_names(data)
    port = rl.resolve_port(args.port)
    fresh = not (args.keep and data.exists())
    if fresh and data.exists() and any(data.iterdir()):
        if not (data / "demo-logins.json").exists():
            sys.exit(f"{data} is not a demo folder (no demo-logins.json): not wiped")
        shutil.rmtree(data)
    rl.prepare_folders(data)
    rl.configure_environment(data, port)
    password = os.environ.get("SATMACHINE_DEMO_PASSWORD") or secrets.token_urlsafe(9)
    os.chdir(rl.lnbits_site_packages())
    from lnbits.settings import settings

    Path(settings.lnbits_data_folder, "logs").mkdir(parents=True, exist_ok=True)
    Path(settings.lnbits_extensions_path, "extensions").mkdir(
        parents=True, exist_ok=True
    )
    settings.wasm_extensions_dir.mkdir(parents=True, exist_ok=True)
    config = rl.server_config(
        settings.host, settings.port, settings.forwarded_allow_ips
    )
    base = f"http://127.0.0.1:{settings.port}"
    pw_file = rl.password_file(data)

    # A stop may land while the simulator's task runs: asyncio keeps the
    # exception in that task, and the loop below only sees LNbits (which got
    # the same signal) gone. The flag says it was a stop, not a crash.
    stop_signals: list[int] = []

    def on_stop(signum: int, frame: FrameType | None) -> None:
        stop_signals.append(signum)
        rl._raise_stop(signum, frame)

    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    # LNbits prices every payment in its wallets' currency (USD unless set):
    # the feed serves that too, so LNbits logs no error per payment.
    side = DemoSide(base, {CURRENCY: RATE, "USD": USD_RATE}).start()
    process = mp.Process(target=rl.serve, args=(config,), name="lnbits")
    process.start()
    try:
        if rl.wait_until_up(base, process):
            login_info = rl.later_start(base, pw_file)
        else:
            login_info = rl.first_install(base, pw_file)
        admin_password = login_info.password or "(unknown)"
        admin = login(base, rl.ADMIN_USERNAME, admin_password)
        configure_lnbits(base, admin, side)
        logins = data / "demo-logins.json"
        if fresh or not logins.exists():
            world = seed(base, admin, password, side)
            logins.write_text(json.dumps(_saved(world, password)))
            logins.chmod(0o600)
        else:
            world = _restore(base, json.loads(logins.read_text()))
            password = world["password"]
            side.payees.update(world["payees"])
        world["admin"] = admin
        banner(base, admin_password, password, data, world, side)
        print("DEMO READY", flush=True)

        return _sell_until_stopped(base, world, args.interval, process, stop_signals)
    except (KeyboardInterrupt, rl.StopRequestedError):
        print("\nStopping the demo...", flush=True)
        return 0
    except (RuntimeError, DemoError) as error:
        print(f"ERROR: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        rl.stop_child(process)
        side.stop()
        print("LNbits stopped.", flush=True)


def _saved(world: dict[str, Any], password: str) -> dict[str, Any]:
    return {
        "password": password,
        "customer": world["customer"].username,
        "payees": world["payees"],
        "machines": [
            {
                "id": m.id,
                "name": m.name,
                "secret": m.secret.hex(),
                "npub": m.npub,
                "wallet": m.wallet,
                "cassettes": m.cassettes,
            }
            for m in world["machines"]
        ],
    }


def _restore(base: str, saved: dict[str, Any]) -> dict[str, Any]:
    customer = login(base, saved["customer"], saved["password"])
    machines = [
        DemoMachine(
            m["id"],
            m["name"],
            bytes.fromhex(m["secret"]),
            m["npub"],
            m["wallet"],
            m["cassettes"],
        )
        for m in saved["machines"]
    ]
    return {
        "machines": machines,
        "customer": customer,
        "password": saved["password"],
        "payees": saved.get("payees", {}),
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
