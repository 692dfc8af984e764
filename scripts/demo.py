"""``make demo``: a local LNbits (as ``make run``) that comes alive.

On a fresh data folder (``.run/demo``, wiped at each start unless ``--keep``)
it sets up, through the public API:

* the super user ``admin`` with a 20 % platform fee paid to its wallet;
* a demo operator with two machines (GTQ), a 50/30/20 commission split
  over three of its wallets;
* three LPs, each with a confirmed deposit at a machine;
* a customer wallet credited by the super user (the ATM's customers);

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
from decimal import Decimal
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import run_lnbits as rl  # noqa: E402

EXT = "/satmachineadmin/api/v1/dca"
DEMO_DATA = rl.RUN_DIR / "demo"
CURRENCY = "GTQ"
RATE = Decimal(772114)  # GTQ per BTC
FEE_PCT = Decimal("0.05")
TOP_UP_SATS = 10_000_000  # LNbits caps one credit at 10 M sats
TOP_UP_EVERY = 40  # sales (at most 1 000 GTQ, about 137 000 sats each)


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


def seed(base: str, admin: Account, password: str) -> dict[str, Any]:
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
    for i, amount in enumerate(("15000", "9000", "6000")):
        lp = register(base, f"demo_lp{i + 1}", password)
        machine = machines[0] if i < 2 else machines[1]
        client = call(
            base,
            "POST",
            f"{EXT}/clients",
            {
                "machine_id": machine.id,
                "user_id": lp.user_id,
                "wallet_id": lp.wallets[0]["id"],
                "username": lp.username,
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
        lps.append(lp)

    customer = register(base, "demo_customer", password)
    return {
        "operator": operator,
        "machines": machines,
        "lps": lps,
        "customer": customer,
    }


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
                    call,
                    base,
                    "PUT",
                    "/users/api/v1/balance",
                    {"id": customer.wallets[0]["id"], "amount": TOP_UP_SATS},
                    world["admin"].token,
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


def banner(base: str, admin_password: str, password: str, data: Path) -> None:
    rule = "=" * 72
    lines = [
        "satmachineadmin demo: a fleet selling live",
        "",
        f"  Console:     {base}/satmachineadmin/",
        f"  Super user:  admin / {admin_password}",
        f"  Operator:    demo_operator / {password}",
        f"  LPs:         demo_lp1, demo_lp2, demo_lp3 / {password}",
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


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    data = args.data.expanduser().resolve()
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

    signal.signal(signal.SIGINT, rl._raise_stop)
    signal.signal(signal.SIGTERM, rl._raise_stop)
    process = mp.Process(target=rl.serve, args=(config,), name="lnbits")
    process.start()
    try:
        if rl.wait_until_up(base, process):
            login_info = rl.later_start(base, pw_file)
        else:
            login_info = rl.first_install(base, pw_file)
        admin_password = login_info.password or "(unknown)"
        admin = login(base, rl.ADMIN_USERNAME, admin_password)
        logins = data / "demo-logins.json"
        if fresh or not logins.exists():
            world = seed(base, admin, password)
            logins.write_text(json.dumps(_saved(world, password)))
            logins.chmod(0o600)
        else:
            world = _restore(base, json.loads(logins.read_text()))
            password = world["password"]
        world["admin"] = admin
        banner(base, admin_password, password, data)
        print("DEMO READY", flush=True)

        async def run() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(simulate(base, world, args.interval, stop))
            try:
                while process.is_alive():
                    await asyncio.sleep(0.5)
            finally:
                stop.set()
                task.cancel()

        asyncio.run(run())
        return 1
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
        print("LNbits stopped.", flush=True)


def _saved(world: dict[str, Any], password: str) -> dict[str, Any]:
    return {
        "password": password,
        "customer": world["customer"].username,
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
    return {"machines": machines, "customer": customer, "password": saved["password"]}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
