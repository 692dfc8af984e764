"""The LP dashboard at two years of history: the requests its page makes,
timed with 20 000 payouts to one LP.

One LP (a real login) holds 4 positions at 4 machines of one operator; 20 000
completed DCA payouts to them are spread over two years (about one every 53
minutes), with 400 deposits; as much again belongs to 20 other LPs of the same
machines, so every query must pick the LP's rows out of 40 000. The rows are
written straight into the extension's tables (setup, not measured). Each
request is a GET through the ASGI client as the LP (Bearer token), so the
figure includes LNbits' authentication and the JSON encoding.

Run alone: ``.venv/bin/python -m bench --only lp_dashboard [--backend sqlite]``.
"""

from __future__ import annotations

import os
import random
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from . import env
from .env import Lnbits
from .setup import CURRENCY, add_machine

FULL_PAYOUTS, QUICK_PAYOUTS = 20_000, 2_000
FULL_REQUESTS, QUICK_REQUESTS = 60, 15
WARMUP = 3
BATCH = 2_000
API = "/satmachineadmin/api/v1/dca"
POSITIONS = 4
OTHER_LPS = 20
DASHBOARD_P95_MS = 500.0


async def _positions(operator_id: str, lp_id: str) -> tuple[list[Any], list[Any]]:
    from satmachineadmin import crud
    from satmachineadmin.models import DcaClient

    mine, theirs = [], []
    for i in range(POSITIONS):
        machine = await add_machine(operator_id, os.urandom(16).hex(), f"ATM {i}")
        for user_id, bucket in [(lp_id, mine)] + [
            (os.urandom(16).hex(), theirs) for _ in range(OTHER_LPS // POSITIONS)
        ]:
            bucket.append(
                await crud.create_client(
                    DcaClient(
                        id=crud.new_id(),
                        machine_id=machine.id,
                        operator_user_id=operator_id,
                        user_id=user_id,
                        wallet_id=os.urandom(16).hex(),
                    )
                )
            )
    return mine, theirs


def _leg_template(conn: Any) -> tuple[dict, str]:
    from lnbits.db import insert_query, model_to_dict
    from satmachineadmin import crud
    from satmachineadmin.models import DcaPayment

    leg = DcaPayment(
        id="x",
        idempotency_key="k",
        settlement_id=None,
        machine_id="m",
        operator_user_id="o",
        leg_type="dca",
        status="completed",
        amount_sats=25_903,
        fiat_amount_minor=20_000,
        currency=CURRENCY,
        price=Decimal("0.0077211400"),
        source_wallet_id=os.urandom(16).hex(),
        destination_wallet_id=os.urandom(16).hex(),
        memo="DCA 200.00 GTQ @ 772,114 GTQ/BTC",
        payment_request="lnbc" + "x" * 300,
        payment_hash="h",
        attempts=1,
    )
    return crud._params(conn, model_to_dict(leg)), insert_query(
        f"{crud.S}.payments", leg
    )


async def _insert_payouts(clients: list[Any], count: int, rng: random.Random) -> None:
    from satmachineadmin import crud
    from sqlalchemy import text

    epoch = datetime.now(timezone.utc) - timedelta(days=730)
    step = 730 * 86400 / count
    done = 0
    while done < count:
        size = min(BATCH, count - done)
        async with crud.transaction() as conn:
            template, sql = _leg_template(conn)
            rows = []
            for i in range(done, done + size):
                client = rng.choice(clients)
                stamp = crud._param(conn, epoch + timedelta(seconds=i * step))
                sats = rng.randint(5_000, 60_000)
                rows.append(
                    {
                        **template,
                        "id": os.urandom(16).hex(),
                        "idempotency_key": f"bench:{os.urandom(12).hex()}",
                        "machine_id": client.machine_id,
                        "operator_user_id": client.operator_user_id,
                        "client_id": client.id,
                        "destination_wallet_id": client.wallet_id,
                        "amount_sats": sats,
                        "fiat_amount_minor": sats * 772 // 1000,
                        "payment_hash": os.urandom(32).hex(),
                        "created_at": stamp,
                        "updated_at": stamp,
                        "completed_at": stamp,
                    }
                )
            await conn.conn.execute(text(conn.rewrite_query(sql)), rows)
        done += size


async def _insert_deposits(clients: list[Any], count: int) -> None:
    from satmachineadmin import crud
    from satmachineadmin.models import DcaDeposit

    async with crud.transaction() as conn:
        for i in range(count):
            client = clients[i % len(clients)]
            await crud._insert(
                conn,
                "deposits",
                DcaDeposit(
                    id=crud.new_id(),
                    client_id=client.id,
                    machine_id=client.machine_id,
                    operator_user_id=client.operator_user_id,
                    amount_minor=100_000,
                    currency=CURRENCY,
                    status="confirmed" if i % 10 else "pending",
                    creator_user_id=client.operator_user_id,
                ),
                commit=False,
            )
    async with crud.connection() as conn:
        if conn.type != "SQLITE":
            await crud._execute(conn, "ANALYZE")


def _requests(mine: list[Any]) -> dict[str, tuple[str, dict]]:
    one = mine[0].id
    requests: dict[str, tuple[str, dict]] = {
        "dashboard": ("/lp/dashboard", {}),
        "positions": ("/lp/positions", {}),
        "payments (page of 100)": ("/lp/payments", {"limit": 100}),
        "payments client_id (page of 100)": (
            "/lp/payments",
            {"client_id": one, "limit": 100},
        ),
        "deposits": ("/lp/deposits", {"limit": 100}),
    }
    for range_ in ("7d", "30d", "90d", "1y", "all"):
        requests[f"series {range_}"] = (
            "/lp/payments/series",
            {"client_id": one, "range": range_},
        )
    requests["series all positions all"] = ("/lp/payments/series", {"range": "all"})
    return requests


async def _time(
    lnbits: Lnbits, headers: dict, path: str, params: dict, count: int
) -> tuple[list[float], int]:
    seconds, size = [], 0
    for i in range(WARMUP + count):
        start = time.perf_counter()
        response = await lnbits.http.get(API + path, params=params, headers=headers)
        elapsed = time.perf_counter() - start
        response.raise_for_status()
        size = len(response.content)
        if i >= WARMUP:
            seconds.append(elapsed)
    return seconds, size


async def run(lnbits: Lnbits, *, quick: bool, profile_dir: Any = None) -> dict:
    rng = random.Random(14)
    lp = await env.register_user(lnbits.http, "lp")
    [operator] = await env.bare_users(1)
    mine, theirs = await _positions(operator.id, lp.id)
    payouts = QUICK_PAYOUTS if quick else FULL_PAYOUTS
    started = time.perf_counter()
    await _insert_payouts(mine, payouts, rng)
    await _insert_payouts(theirs, payouts, rng)
    await _insert_deposits(mine, 400)
    setup_s = time.perf_counter() - started
    env.log(f"lp_dashboard: {2 * payouts} payouts written in {setup_s:.0f} s")

    count = QUICK_REQUESTS if quick else FULL_REQUESTS
    figures: dict[str, Any] = {}
    everything: list[float] = []
    for name, (path, params) in _requests(mine).items():
        seconds, size = await _time(lnbits, lp.headers, path, params, count)
        everything.extend(seconds)
        figures[name] = {"http_ms": env.summary_ms(seconds), "bytes": size}
        env.log(f"lp_dashboard: {name}: {figures[name]['http_ms']}")
    # the CSV export streams all 20 000 rows: a few runs only
    csv_s, csv_bytes = await _time(lnbits, lp.headers, "/lp/export/payments.csv", {}, 3)
    figures["export payments.csv (all rows)"] = {
        "http_ms": env.summary_ms(csv_s),
        "bytes": csv_bytes,
    }
    return {
        "ok": True,
        "payouts_of_the_lp": payouts,
        "payouts_on_instance": 2 * payouts,
        "positions": POSITIONS,
        "setup_s": round(setup_s, 1),
        "requests_each": count,
        "dashboard_requests_ms": env.summary_ms(everything),
        "requests": figures,
    }
