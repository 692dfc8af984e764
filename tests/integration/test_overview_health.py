"""The overview's numbers against the ledger, the health routes' shape and
scope, and the offline / low-cassette notifications."""

from __future__ import annotations

import time
from decimal import Decimal

from conftest import credit, wallet_balance
from scenario import (
    add_lp,
    add_machine,
    dca_sale,
    make_sale,
    set_platform_fee,
    set_splits,
    wait_for_settlement,
)
from test_lamassu import _closed_port, connect, create_machine, poll
from test_telemetry import keypair, post, sign

API = "/satmachineadmin/api/v1/dca"


async def test_overview_matches_the_ledger(http, operator, make_user, superuser):
    from satmachineadmin import crud

    customer = await make_user("customer")
    await credit(customer.wallet.id, 5_000_000)
    machine = await add_machine(operator, operator.wallets[1])
    lps = [await make_user("lp") for _ in range(2)]
    clients = [
        await add_lp(machine, lps[0], Decimal("3000")),
        await add_lp(machine, lps[1], Decimal("1000")),
    ]
    await set_splits(operator, [(operator.wallets[2].id, "1")])
    await set_platform_fee("0.3", superuser.wallet.id)
    hashes = [
        await make_sale(http, operator.wallets[1], customer.wallet, dca_sale(machine))
        for _ in range(2)
    ]
    hashes.append(
        await make_sale(
            http,
            operator.wallets[1],
            customer.wallet,
            gross_sats=1000,
            extra={"source": "bitspire", "net_sats": 900, "fee_sats": 50},
        )
    )  # numbers that do not add up: errored
    settlements = [await wait_for_settlement(h) for h in hashes]
    assert [s.status for s in settlements] == ["processed", "processed", "errored"]

    response = await http.get(f"{API}/overview?days=7", headers=operator.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    for window in ("today", "7d", "period"):
        sales = body["sales"][window]
        assert sales["count"] == 3
        assert sales["gross_sats"] == sum(s.gross_sats for s in settlements)
        assert sales["platform_fee_sats"] == sum(
            s.platform_fee_sats for s in settlements
        )
        assert sales["operator_fee_sats"] == sum(
            s.operator_fee_sats for s in settlements
        )
        fiat = sum((s.fiat_amount or Decimal(0)) for s in settlements)
        assert Decimal(sales["fiat"]["GTQ"]) == fiat
    # The ledger's platform legs are what the overview calls platform fees.
    legs = [leg for s in settlements for leg in await crud.get_legs(s.id)]
    paid_platform = sum(
        leg.amount_sats
        for leg in legs
        if leg.leg_type == "super_fee" and leg.status == "completed"
    )
    assert paid_platform == sum(s.platform_fee_sats for s in settlements[:2])

    balances = await crud.get_client_balances([c.id for c in clients])
    owed = sum(b.remaining_balance for b in balances.values())
    assert Decimal(body["lp_liabilities"]["GTQ"]) == owed
    assert owed < Decimal(1)  # both sales used (almost) all of it

    held = sum(leg.amount_sats for leg in legs if leg.status == "skipped")
    assert body["held_in_machine_wallets"]["sats"] == held
    by_reason = {
        r["reason"]: r["sats"] for r in body["held_in_machine_wallets"]["by_reason"]
    }
    assert sum(by_reason.values()) == held

    assert body["attention"]["errored"] == 1
    assert body["attention"]["needs_attention"] == 1

    series = body["series"]
    assert len(series["days"]) == 7
    [mine] = series["machines"]
    assert mine["machine_id"] == machine.id
    assert sum(mine["count"]) == 3 and mine["count"][-1] == 3
    assert sum(mine["gross_sats"]) == sum(s.gross_sats for s in settlements)
    assert body["platform"] is None  # operators see no platform totals

    platform = (await http.get(f"{API}/overview", headers=superuser.headers)).json()[
        "platform"
    ]
    assert platform["sales"]["today"]["count"] >= 3
    assert platform["operators"] >= 1 and platform["machines"] >= 1
    assert "series" not in platform  # counts and sums only

    bad = await http.get(f"{API}/overview?days=0", headers=operator.headers)
    assert bad.status_code == 422
    assert (await http.get(f"{API}/overview")).status_code == 401
    await set_platform_fee("0", None)  # as the other tests expect it


async def test_health_routes_shape_and_scope(
    http, operator, other_operator, make_user, superuser
):
    customer = await make_user("customer")
    await credit(customer.wallet.id, 1_000_000)
    secret, npub = keypair()
    created = await http.post(
        f"{API}/machines",
        json={
            "npub": npub,
            "wallet_id": operator.wallets[1].id,
            "name": "Health ATM",
            "currency": "GTQ",
        },
        headers=operator.headers,
    )
    machine_id = created.json()["id"]
    from satmachineadmin import crud

    machine = await crud.get_machine(machine_id)
    payment_hash = await make_sale(
        http, operator.wallets[1], customer.wallet, dca_sale(machine)
    )
    await wait_for_settlement(payment_hash)
    beacon = {"cassettes": [{"position": 1, "count": 5}], "errors": ["jam"]}
    assert (await post(http, sign(secret, beacon)))[0] == 200

    rows = (await http.get(f"{API}/health/machines", headers=operator.headers)).json()
    [row] = [r for r in rows if r["machine_id"] == machine_id]
    assert row["online"] is True and row["last_seen_at"]
    assert row["wallet_balance_sats"] == await wallet_balance(operator.wallets[1].id)
    assert row["last_sale_at"] is not None
    assert row["low_cassettes"] == [{"position": 1, "count": 5}]
    assert row["errors"] == ["jam"]
    assert row["source_status"] is None
    theirs = (
        await http.get(f"{API}/health/machines", headers=other_operator.headers)
    ).json()
    assert machine_id not in {r["machine_id"] for r in theirs}

    mine = (await http.get(f"{API}/health", headers=operator.headers)).json()
    assert mine["scope"] == "operator"
    assert mine["workers"]["workers_alive"] is True
    assert set(mine["workers"]["workers"]) == {
        "ext_satmachineadmin_landing",
        "ext_satmachineadmin_processing",
        "ext_satmachineadmin_recovery",
    }
    assert isinstance(mine["workers"]["processing_queue"], int)
    assert mine["workers"]["last_recovery_at"] > 0  # recovery ran at start-up
    for key in ("stuck", "awaiting_funds", "errored", "needs_attention"):
        assert isinstance(mine["settlements"][key], int)
    assert mine["machines"] == {"active": 1, "online": 1, "offline": 0}
    instance = (await http.get(f"{API}/health", headers=superuser.headers)).json()
    assert instance["scope"] == "instance"
    assert instance["machines"]["active"] >= 1
    assert (await http.get(f"{API}/health")).status_code == 401


async def test_offline_and_low_cassette_notify_once_and_clear(
    http, operator, monkeypatch
):
    from satmachineadmin import health, notifications

    calls: list[tuple[str, str, str]] = []

    async def started(op, key, title, body=""):
        calls.append(("started", op, key))

    async def cleared(op, key, body=""):
        calls.append(("cleared", op, key))

    monkeypatch.setattr(notifications, "problem_started", started)
    monkeypatch.setattr(notifications, "problem_cleared", cleared)
    secret, npub = keypair()
    created = await http.post(
        f"{API}/machines",
        json={
            "npub": npub,
            "wallet_id": operator.wallets[1].id,
            "name": "Quiet ATM",
            "currency": "GTQ",
        },
        headers=operator.headers,
    )
    machine_id = created.json()["id"]
    old = int(time.time()) - 20 * 60  # older than the 10-minute default
    low = {"cassettes": [{"position": 1, "count": 3}]}
    assert (await post(http, sign(secret, low, created_at=old)))[0] == 200

    await health.check_machines()
    await health.check_machines()  # still the same problems: nothing new
    mine = [c for c in calls if c[1] == operator.id]
    assert sorted(mine) == [
        ("started", operator.id, f"machine-low-cassette:{machine_id}"),
        ("started", operator.id, f"machine-offline:{machine_id}"),
    ]
    full = {"cassettes": [{"position": 1, "count": 500}]}
    assert (await post(http, sign(secret, full)))[0] == 200
    calls.clear()
    await health.check_machines()
    mine = [c for c in calls if c[1] == operator.id]
    assert sorted(mine) == [
        ("cleared", operator.id, f"machine-low-cassette:{machine_id}"),
        ("cleared", operator.id, f"machine-offline:{machine_id}"),
    ]


async def test_one_offline_threshold_behind_notifications_relays_and_health(
    http, operator
):
    from satmachineadmin import health

    secret, npub = keypair()
    created = await http.post(
        f"{API}/machines",
        json={
            "npub": npub,
            "wallet_id": operator.wallets[1].id,
            "name": "Threshold ATM",
            "currency": "GTQ",
        },
        headers=operator.headers,
    )
    machine_id = created.json()["id"]
    old = int(time.time()) - 20 * 60  # 20 minutes ago
    assert (await post(http, sign(secret, {"x": 1}, created_at=old)))[0] == 200

    async def presence() -> tuple[bool, int, int]:
        rows = (
            await http.get(f"{API}/health/machines", headers=operator.headers)
        ).json()
        [row] = [r for r in rows if r["machine_id"] == machine_id]
        summary = (await http.get(f"{API}/health", headers=operator.headers)).json()
        return (
            row["online"],
            row["offline_after_seconds"],
            summary["machines"]["online"],
        )

    async def read(route: str) -> int:
        r = await http.get(f"{API}/{route}", headers=operator.headers)
        assert r.status_code == 200, r.text
        return r.json()["offline_after_minutes"]

    # the default (10 minutes), reported the same by both routes
    assert await read("notifications") == await read("relays") == 10
    assert await presence() == (False, 600, 0)

    # set through /notifications: /relays reads it, health uses it
    r = await http.put(
        f"{API}/notifications",
        json={"offline_after_minutes": 30},
        headers=operator.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["offline_after_minutes"] == 30
    assert await read("relays") == 30
    assert await presence() == (True, 1800, 1)
    from satmachineadmin import crud_telemetry

    mine = await crud_telemetry.get_settings(operator.id)
    assert health.is_online(
        await crud_telemetry.get_status(machine_id), mine, health.utc_now()
    )

    # set through /relays: /notifications reads it, health uses it
    r = await http.put(
        f"{API}/relays",
        json={"relays": [], "offline_after_minutes": 15},
        headers=operator.headers,
    )
    assert r.status_code == 200, r.text
    assert await read("notifications") == 15
    assert await presence() == (False, 900, 0)

    # a /notifications change that leaves the threshold out keeps it
    r = await http.put(
        f"{API}/notifications",
        json={"stuck_after_minutes": 45},
        headers=operator.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["offline_after_minutes"] == 15
    assert r.json()["stuck_after_minutes"] == 45
    assert await read("relays") == 15


async def test_health_reports_the_lamassu_poll_status_and_sources_in_error(
    http, operator, other_operator, quiet_tasks
):
    from satmachineadmin import crud_sources

    # Only the test polls: the sources loop would poll the new source at its
    # next tick and write its error again between two of the test's reads.
    quiet_tasks()

    lamassu = await create_machine(http, operator, operator.wallets[1])
    manual = await create_machine(http, operator, operator.wallets[2], "manual")
    _, npub = keypair()
    bitspire = await http.post(
        f"{API}/machines",
        json={
            "npub": npub,
            "name": "bitSpire ATM",
            "wallet_id": operator.wallets[3].id,
            "currency": "GTQ",
        },
        headers=operator.headers,
    )
    assert bitspire.status_code == 201, bitspire.text

    async def health_rows() -> dict[str, dict]:
        r = await http.get(f"{API}/health/machines", headers=operator.headers)
        assert r.status_code == 200, r.text
        return {row["machine_id"]: row["source_status"] for row in r.json()}

    async def summary() -> dict:
        r = await http.get(f"{API}/health", headers=operator.headers)
        assert r.status_code == 200, r.text
        return r.json()["sources"]

    # not connected yet: a Lamassu status with nothing in it
    rows = await health_rows()
    assert rows[manual["id"]] is None and rows[bitspire.json()["id"]] is None
    assert rows[lamassu["id"]] == {
        "kind": "lamassu",
        "configured": False,
        "last_poll_at": None,
        "last_success_at": None,
        "last_error": None,
        "last_error_at": None,
    }
    assert await summary() == {
        "lamassu": {"machines": 1, "configured": 0, "in_error": 0},
        "in_error": [],
    }

    # connected to a closed port: the poll fails and health says so
    password = "health-secret-pw"
    await connect(
        http,
        operator,
        lamassu["id"],
        {
            "host": "127.0.0.1",
            "port": _closed_port(),
            "database": "lamassu",
            "user": "reader",
            "password": password,
            "sslmode": "disable",
            "device_id": "dev-health",
            "poll_seconds": 3600,
        },
    )
    polled = await poll(http, operator, lamassu["id"])
    assert polled["error"]
    machines = await http.get(f"{API}/health/machines", headers=operator.headers)
    status = {r["machine_id"]: r["source_status"] for r in machines.json()}[
        lamassu["id"]
    ]
    assert status["kind"] == "lamassu" and status["configured"] is True
    assert "connection refused" in status["last_error"]
    assert status["last_poll_at"] and status["last_error_at"]
    assert status["last_success_at"] is None
    assert set(status) == {
        "kind", "configured", "last_poll_at", "last_success_at",
        "last_error", "last_error_at",
    }  # fmt: skip
    sources = await summary()
    assert sources["lamassu"] == {"machines": 1, "configured": 1, "in_error": 1}
    [err] = sources["in_error"]
    assert err["machine_id"] == lamassu["id"] and err["name"] == lamassu["name"]
    assert "connection refused" in err["last_error"]
    health_text = (
        machines.text + (await http.get(f"{API}/health", headers=operator.headers)).text
    )
    assert password not in health_text and "reader" not in health_text
    theirs = (await http.get(f"{API}/health", headers=other_operator.headers)).json()[
        "sources"
    ]
    assert theirs["in_error"] == [] and theirs["lamassu"]["machines"] == 0

    # a successful poll clears it
    await crud_sources.record_poll(lamassu["id"], error=None, landed=0, cursor=None)
    status = (await health_rows())[lamassu["id"]]
    assert status["last_error"] is None and status["last_success_at"] is not None
    assert (await summary())["lamassu"]["in_error"] == 0
