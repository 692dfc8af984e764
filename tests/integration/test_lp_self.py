"""The LP's side over HTTP (issue 14): invites, the LP's own preferences and
who may change them, X-API-KEY access, the dashboard's numbers against the
ledger, the cumulative series and the CSV export."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from conftest import Actor
from test_api_support import (
    API,
    add_client,
    add_deposit,
    add_machine,
    call,
    field_error,
    insert_settlement,
    leg_row,
    settlement_row,
)


async def invite(http, op: Actor, machine_id: str, **body) -> dict:
    response = await call(
        http, op, "POST", "/invites", json={"machine_id": machine_id, **body}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def accept(http, who: Actor, code: str, wallet_id: str):
    return await call(
        http, who, "POST", f"/lp/invites/{code}/accept", json={"wallet_id": wallet_id}
    )


# --- invites ----------------------------------------------------------------


async def test_invite_by_code_is_accepted_once_into_the_lps_own_wallet(
    http, operator, make_user
):
    from satmachineadmin import crud, crud_lp

    machine = await add_machine(operator, name="Lobby invite ATM")
    lp = await make_user("lp", extra_wallets=1)
    created = await invite(http, operator, machine.id)
    assert set(created) >= {"id", "code", "url", "machine_id", "username", "expires_at"}
    assert len(created["code"]) >= 16
    assert created["url"].endswith(f"/satmachineadmin/?invite={created['code']}")
    assert created["machine_id"] == machine.id and created["username"] is None
    listed = (await call(http, operator, "GET", "/invites")).json()
    assert [i["id"] for i in listed] == [created["id"]]

    preview = await call(http, lp, "GET", f"/lp/invites/{created['code']}")
    assert preview.status_code == 200, preview.text
    assert preview.json()["machine_name"] == "Lobby invite ATM"
    assert preview.json()["operator_user_id"] == operator.id

    foreign = await accept(http, lp, created["code"], operator.wallet.id)
    field_error(foreign, "wallet_id")
    assert await crud.get_client_by_machine_user(machine.id, lp.id) is None

    accepted = await accept(http, lp, created["code"], lp.wallets[1].id)
    assert accepted.status_code == 201, accepted.text
    position = accepted.json()
    assert position["wallet_id"] == lp.wallets[1].id
    assert position["lp_managed"] is True
    client = await crud.get_client(position["client_id"])
    assert client is not None and client.user_id == lp.id
    assert client.operator_user_id == operator.id and client.machine_id == machine.id

    other = await make_user("lp2")
    again = await accept(http, other, created["code"], other.wallet.id)
    assert again.status_code == 409, again.text
    assert (await accept(http, lp, created["code"], lp.wallet.id)).status_code == 409
    assert (await call(http, operator, "GET", "/invites")).json() == []
    used = await crud_lp.get_invite(created["id"])
    assert used is not None and used.accepted_by == lp.id


async def test_invite_bound_to_a_username_is_only_for_that_user(
    http, operator, make_user
):
    machine = await add_machine(operator)
    lp, stranger = await make_user("lp"), await make_user("lp")
    created = await invite(http, operator, machine.id, username=lp.username)
    assert created["username"] == lp.username
    for path in (f"/lp/invites/{created['code']}",):
        assert (await call(http, stranger, "GET", path)).status_code == 404
    assert (
        await accept(http, stranger, created["code"], stranger.wallet.id)
    ).status_code == 404
    assert (await accept(http, lp, created["code"], lp.wallet.id)).status_code == 201


async def test_invite_refusals(http, operator, other_operator, make_user):
    from satmachineadmin import crud, crud_lp

    machine = await add_machine(operator)
    theirs = await add_machine(other_operator)
    response = await call(
        http, operator, "POST", "/invites", json={"machine_id": theirs.id}
    )
    assert response.status_code == 404
    unknown = await call(
        http, operator, "POST", "/invites",
        json={"machine_id": machine.id, "username": f"nobody_{uuid.uuid4().hex[:6]}"},
    )  # fmt: skip
    field_error(unknown, "username")
    assert (await call(http, operator, "GET", "/invites")).json() == []

    # another operator can neither see nor withdraw an invite
    created = await invite(http, operator, machine.id)
    assert (await call(http, other_operator, "GET", "/invites")).json() == []
    path = f"/invites/{created['id']}"
    assert (await call(http, other_operator, "DELETE", path)).status_code == 404
    assert await crud_lp.get_invite(created["id"]) is not None

    # expired: 410, and nothing is created
    async with crud.connection() as c:
        await crud._execute(
            c,
            "UPDATE satmachineadmin.invites SET expires_at = :t WHERE id = :id",
            {
                "t": datetime.now(timezone.utc) - timedelta(seconds=1),
                "id": created["id"],
            },
        )
    lp = await make_user("lp")
    assert (
        await call(http, lp, "GET", f"/lp/invites/{created['code']}")
    ).status_code == 410
    assert (await accept(http, lp, created["code"], lp.wallet.id)).status_code == 410
    assert await crud.get_client_by_machine_user(machine.id, lp.id) is None

    withdrawn = await invite(http, operator, machine.id)
    assert (
        await call(http, operator, "DELETE", f"/invites/{withdrawn['id']}")
    ).status_code == 204
    assert (await accept(http, lp, withdrawn["code"], lp.wallet.id)).status_code == 404
    assert (await accept(http, lp, "not-a-code", lp.wallet.id)).status_code == 404
    assert (
        await call(http, None, "GET", f"/lp/invites/{withdrawn['code']}")
    ).status_code == 401


# --- the LP's preferences ---------------------------------------------------


async def test_lp_sets_preferences_and_the_operator_can_no_longer_change_them(
    http, operator, make_user
):
    from satmachineadmin import crud, crud_lp

    machine = await add_machine(operator)
    lp = await make_user("lp", extra_wallets=1)
    client = await add_client(machine, lp)
    # before the LP takes over, the operator manages the position
    r = await call(
        http, operator, "PUT", f"/clients/{client.id}", json={"dca_mode": "fixed"}
    )
    assert r.status_code == 200, r.text
    prefs = (
        await call(http, operator, "GET", f"/clients/{client.id}/preferences")
    ).json()
    assert prefs["lp_managed"] is False

    body = {
        "wallet_id": lp.wallets[1].id,
        "dca_mode": "fixed",
        "fixed_mode_daily_limit": "1500.50",
        "autoforward_enabled": True,
        "autoforward_address": "Satoshi@Example.com".lower(),
        "autoforward_threshold_sats": 5000,
    }
    r = await call(http, lp, "PUT", f"/lp/positions/{client.id}", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["lp_managed"] is True and got["wallet_id"] == lp.wallets[1].id
    assert Decimal(str(got["fixed_mode_daily_limit"])) == Decimal("1500.50")
    assert Decimal(str(got["max_fixed_mode_daily_limit"])) == Decimal(2000)
    assert got["autoforward_address"] == "satoshi@example.com"
    stored = await crud.get_client(client.id)
    assert stored is not None and stored.fixed_mode_daily_limit_minor == 150050
    assert (await crud_lp.get_preferences(client.id)) is not None
    seen = (
        await call(http, operator, "GET", f"/clients/{client.id}/preferences")
    ).json()
    assert seen["autoforward_threshold_sats"] == 5000 and seen["lp_managed"] is True

    for field, value in (
        ("wallet_id", lp.wallet.id),
        ("dca_mode", "flow"),
        ("fixed_mode_daily_limit", "10"),
    ):
        r = await call(
            http, operator, "PUT", f"/clients/{client.id}", json={field: value}
        )
        assert r.status_code == 409, r.text
        assert field in r.json()["detail"]
    after = await crud.get_client(client.id)
    assert after is not None and after.wallet_id == lp.wallets[1].id
    assert after.dca_mode == "fixed" and after.fixed_mode_daily_limit_minor == 150050

    # the operator's own fields, and the LP's values resent unchanged, still work
    r = await call(
        http, operator, "PUT", f"/clients/{client.id}",
        json={"status": "inactive", "username": "Ana", "wallet_id": lp.wallets[1].id},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "inactive" and r.json()["username"] == "Ana"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"autoforward_address": "not an address"}, "autoforward_address"),
        ({"autoforward_address": "user@localhost"}, "autoforward_address"),
        ({"autoforward_address": "lnurlw://example.com/w"}, "autoforward_address"),
        ({"autoforward_address": "https://example.com/pay"}, "autoforward_address"),
        ({"autoforward_address": "lnurl1qqqqqq"}, "autoforward_address"),
        ({"autoforward_threshold_sats": 999}, "autoforward_threshold_sats"),
        ({"autoforward_threshold_sats": -5}, "autoforward_threshold_sats"),
        ({"autoforward_threshold_sats": 10**30}, "autoforward_threshold_sats"),
        ({"autoforward_threshold_sats": "many"}, "autoforward_threshold_sats"),
        ({"autoforward_enabled": True}, "autoforward_address"),
        (
            {"autoforward_enabled": True, "autoforward_address": "a@example.com"},
            "autoforward_threshold_sats",
        ),
        ({"fixed_mode_daily_limit": "2000.01"}, "fixed_mode_daily_limit"),
        ({"fixed_mode_daily_limit": "1.001"}, "fixed_mode_daily_limit"),
        ({"dca_mode": "weekly"}, "dca_mode"),
    ],
)
async def test_bad_preferences_are_refused_naming_the_field(
    http, operator, lp, body, field
):
    from satmachineadmin import crud, crud_lp

    machine = await add_machine(operator)
    client = await add_client(machine, lp)
    r = await call(http, lp, "PUT", f"/lp/positions/{client.id}", json=body)
    field_error(r, field)
    assert await crud_lp.get_preferences(client.id) is None
    assert await crud.get_client(client.id) == client


async def test_valid_addresses_are_accepted(http, operator, lp):
    from lnurl import encode

    machine = await add_machine(operator)
    client = await add_client(machine, lp)
    for address in (
        "alice@example.com",
        encode("https://example.com/lnurlp/abc").bech32,
        "lnurlp://example.com/lnurlp/abc",
        "lightning:bob@pay.example.org",
    ):
        r = await call(
            http, lp, "PUT", f"/lp/positions/{client.id}",
            json={"autoforward_address": address, "autoforward_threshold_sats": 1000},
        )  # fmt: skip
        assert r.status_code == 200, (address, r.text)


async def test_an_lp_never_reads_or_changes_another_lps_position(
    http, operator, make_user
):
    from satmachineadmin import crud, crud_lp

    machine = await add_machine(operator)
    alice, bob = await make_user("lp"), await make_user("lp")
    mine = await add_client(machine, alice)
    for who in (bob, operator):
        path = f"/lp/positions/{mine.id}"
        assert (await call(http, who, "GET", path)).status_code == 404
        r = await call(http, who, "PUT", path, json={"wallet_id": who.wallet.id})
        assert r.status_code == 404
        r = await call(
            http, who, "PUT", path, json={"autoforward_threshold_sats": 2000}
        )
        assert r.status_code == 404
        series = await call(
            http, who, "GET", f"/lp/payments/series?client_id={mine.id}"
        )
        assert series.status_code == 404
        rows = (
            await call(http, who, "GET", f"/lp/payments?client_id={mine.id}")
        ).json()
        assert rows == []
    assert await crud.get_client(mine.id) == mine
    assert await crud_lp.get_preferences(mine.id) is None
    # and alice cannot move her payouts into bob's wallet
    r = await call(
        http,
        alice,
        "PUT",
        f"/lp/positions/{mine.id}",
        json={"wallet_id": bob.wallet.id},
    )
    field_error(r, "wallet_id")


# --- X-API-KEY --------------------------------------------------------------


async def test_lp_reads_answer_the_wallets_invoice_key(http, operator, make_user):
    machine = await add_machine(operator)
    lp = await make_user("lp", extra_wallets=1)
    client = await add_client(machine, lp)
    await add_deposit(client, machine, "50.00", status="confirmed")
    key = {"X-API-KEY": lp.wallets[1].inkey}  # any wallet of the LP
    for path in ("/lp/positions", "/lp/payments", "/lp/deposits", "/lp/dashboard",
                 "/lp/payments/series?range=all", "/lp/export/payments.csv",
                 f"/lp/positions/{client.id}"):  # fmt: skip
        r = await http.get(API + path, headers=key)
        assert r.status_code == 200, (path, r.text)
    positions = (await http.get(API + "/lp/positions", headers=key)).json()
    assert [p["client_id"] for p in positions] == [client.id]
    deposits = (await http.get(API + "/lp/deposits", headers=key)).json()
    assert Decimal(str(deposits[0]["amount"])) == Decimal("50.00")

    wrong = await http.get(API + "/lp/positions", headers={"X-API-KEY": "f" * 32})
    assert wrong.status_code == 401
    # another user's key shows that user's positions, not this LP's
    theirs = await http.get(
        API + "/lp/positions", headers={"X-API-KEY": operator.wallet.inkey}
    )
    assert theirs.status_code == 200 and theirs.json() == []
    # writes need the admin key
    body = {"autoforward_threshold_sats": 2000}
    r = await http.put(API + f"/lp/positions/{client.id}", json=body, headers=key)
    assert r.status_code == 403
    admin = {"X-API-KEY": lp.wallets[1].adminkey}
    r = await http.put(API + f"/lp/positions/{client.id}", json=body, headers=admin)
    assert r.status_code == 200, r.text
    other_admin = {"X-API-KEY": operator.wallet.adminkey}
    r = await http.put(
        API + f"/lp/positions/{client.id}", json=body, headers=other_admin
    )
    assert r.status_code == 404


# --- dashboard, series, export ----------------------------------------------


async def _ledger(machine, client, legs: list[tuple[int, int, datetime]], **kw):
    """Completed DCA legs (sats, fiat minor units, when) of one position."""
    settlement = settlement_row(machine, status="processed", error=None)
    rows = [
        leg_row(
            settlement,
            leg_type="dca",
            status="completed",
            client_id=client.id,
            amount_sats=sats,
            fiat_amount_minor=fiat,
            currency=machine.currency,
            price=Decimal(fiat) / 100 / sats,
            source_wallet_id=machine.wallet_id,
            destination_wallet_id=client.wallet_id,
            error=None,
            created_at=when,
            completed_at=when,
            **kw,
        )
        for sats, fiat, when in legs
    ]
    await insert_settlement(settlement, rows)
    return rows


async def test_dashboard_numbers_match_the_ledger(
    http, operator, make_user, monkeypatch
):
    from lnbits.utils import exchange_rates
    from satmachineadmin import lp_self

    machine = await add_machine(operator, name="Dashboard ATM")
    lp = await make_user("lp")
    client = await add_client(machine, lp)
    await add_deposit(client, machine, "1000.00", status="confirmed")
    await add_deposit(client, machine, "250.00", status="pending")
    now = datetime.now(timezone.utc)
    # 200 GTQ for 25 000 sats, then 300 GTQ for 37 500 sats: 800 000 GTQ/BTC
    await _ledger(
        machine,
        client,
        [(25_000, 20_000, now - timedelta(days=3)),
         (37_500, 30_000, now - timedelta(hours=1))],
    )  # fmt: skip

    async def price(currency: str) -> float:
        assert currency == "GTQ"
        return 1_000_000.0

    monkeypatch.setattr(exchange_rates, "btc_price", price)
    lp_self._prices.clear()
    r = await call(http, lp, "GET", "/lp/dashboard")
    assert r.status_code == 200, r.text
    body = r.json()
    [p] = body["positions"]
    assert p["client_id"] == client.id and p["machine_name"] == "Dashboard ATM"
    assert p["sats_stacked"] == 62_500
    assert Decimal(str(p["total_deposited"])) == Decimal("1000.00")
    assert Decimal(str(p["pending_deposits"])) == Decimal("250.00")
    assert Decimal(str(p["balance_left"])) == Decimal("500.00")
    assert Decimal(str(p["fiat_spent"])) == Decimal("500.00")
    assert p["purchases_count"] == 2
    assert p["last_purchase"]["amount_sats"] == 37_500
    assert Decimal(str(p["average_price"])) == Decimal("800000.00")
    assert Decimal(str(p["current_price"])) == Decimal(1_000_000)
    assert Decimal(str(p["current_value"])) == Decimal("625.00")
    assert Decimal(str(p["gain"])) == Decimal("125.00")
    assert Decimal(str(p["gain_pct"])) == Decimal("25.00")
    assert p["autoforward"]["enabled"] is False and p["autoforward"]["history"] == []
    [gtq] = body["totals"]["by_currency"]
    assert gtq["currency"] == "GTQ" and gtq["sats_stacked"] == 62_500
    assert Decimal(str(gtq["current_value"])) == Decimal("625.00")
    assert body["totals"]["sats_stacked"] == 62_500

    # no rate: the value is unknown, not an error
    async def no_price(currency: str) -> float:
        raise RuntimeError("no provider")

    monkeypatch.setattr(exchange_rates, "btc_price", no_price)
    lp_self._prices.clear()
    r = await call(http, lp, "GET", "/lp/dashboard")
    assert r.status_code == 200, r.text
    [p] = r.json()["positions"]
    assert p["current_value"] is None and p["gain"] is None
    assert Decimal(str(p["average_price"])) == Decimal("800000.00")
    lp_self._prices.clear()


async def test_series_is_cumulative_per_day_with_ranges(http, operator, make_user):
    machine = await add_machine(operator)
    lp = await make_user("lp")
    client = await add_client(machine, lp)
    now = datetime.now(timezone.utc)
    await _ledger(machine, client, [
        (1_000, 100, now - timedelta(days=40)),
        (2_000, 200, now - timedelta(days=2)),
        (3_000, 300, now - timedelta(days=2, minutes=1)),
        (4_000, 400, now),
    ])  # fmt: skip
    r = await call(
        http, lp, "GET", f"/lp/payments/series?client_id={client.id}&range=all"
    )
    assert r.status_code == 200, r.text
    points = r.json()["points"]
    assert [p["cumulative_sats"] for p in points] == [1_000, 6_000, 10_000]
    assert [p["purchases"] for p in points] == [1, 2, 1]
    assert Decimal(str(points[-1]["cumulative_fiat"])) == Decimal("10.00")
    assert points[-1]["date"] == now.date().isoformat()
    week = (
        await call(
            http, lp, "GET", f"/lp/payments/series?client_id={client.id}&range=7d"
        )
    ).json()
    assert week["start_sats"] == 1_000
    assert week["until"] == datetime.now(timezone.utc).date().isoformat()
    assert [p["cumulative_sats"] for p in week["points"]] == [6_000, 10_000]
    bad = await call(http, lp, "GET", "/lp/payments/series?range=2w")
    assert bad.status_code == 422
    for query, field in (
        ("since=9999-12-31T23:59:59%2B14:00", "since"),
        ("until=0001-01-01T00:00:00", "until"),
        ("leg_type=super_fee", "leg_type"),
    ):
        field_error(await call(http, lp, "GET", f"/lp/payments?{query}"), field)
    recent = await call(
        http, lp, "GET", "/lp/payments",
        params={"since": (now - timedelta(days=3)).isoformat()},
    )  # fmt: skip
    assert [p["amount_sats"] for p in recent.json()] == [4_000, 2_000, 3_000]


async def test_lp_csv_export_neutralises_cells_and_hides_operator_wallets(
    http, operator, make_user
):
    machine = await add_machine(operator)
    lp = await make_user("lp")
    client = await add_client(machine, lp)
    await _ledger(machine, client, [(5_000, 500, datetime.now(timezone.utc))],
                  memo="=HYPERLINK(\"http://evil\")")  # fmt: skip
    r = await call(http, lp, "GET", "/lp/export/payments.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 1 and rows[0]["amount_sats"] == "5000"
    assert rows[0]["memo"].startswith("'=")
    assert machine.wallet_id not in r.text and "source_wallet_id" not in r.text
    other = await make_user("lp")
    assert (
        len(
            (
                await call(http, other, "GET", "/lp/export/payments.csv")
            ).text.splitlines()
        )
        == 1
    )


async def test_lp_csv_export_takes_the_same_since_and_until_as_the_list(
    http, operator, make_user
):
    machine = await add_machine(operator)
    lp = await make_user("lp")
    client = await add_client(machine, lp)
    now = datetime.now(timezone.utc)
    await _ledger(machine, client, [
        (1_000, 100, now - timedelta(days=10)),
        (2_000, 200, now - timedelta(days=5)),
        (3_000, 300, now - timedelta(days=1)),
    ])  # fmt: skip
    for params in (
        {"since": (now - timedelta(days=6)).isoformat()},
        {"until": (now - timedelta(days=5)).isoformat()},  # exclusive
        {
            "since": (now - timedelta(days=5)).isoformat(),  # inclusive
            "until": (now - timedelta(days=2)).isoformat(),
        },
        {},
    ):
        listed = await call(http, lp, "GET", "/lp/payments", params=params)
        assert listed.status_code == 200, listed.text
        exported = await call(http, lp, "GET", "/lp/export/payments.csv", params=params)
        assert exported.status_code == 200, exported.text
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert [int(r["amount_sats"]) for r in rows] == [
            p["amount_sats"] for p in listed.json()
        ], params
    csv_sats = {
        key: [
            int(r["amount_sats"])
            for r in csv.DictReader(
                io.StringIO(
                    (
                        await call(
                            http, lp, "GET", "/lp/export/payments.csv",
                            params={key: (now - timedelta(days=5)).isoformat()},
                        )
                    ).text
                )
            )
        ]
        for key in ("since", "until")
    }  # fmt: skip
    assert csv_sats == {"since": [3_000, 2_000], "until": [1_000]}
    for query, field in (
        ("since=9999-12-31T23:59:59%2B14:00", "since"),
        ("until=0001-01-01T00:00:00", "until"),
        ("since=yesterday", "since"),
    ):
        field_error(
            await call(http, lp, "GET", f"/lp/export/payments.csv?{query}"), field
        )


async def test_fixed_schedule_sets_the_maximum_and_the_next_buy(
    http, operator, make_user
):
    """With the fixed-schedule feature's table (issue 11), its maximum bounds
    the LP's daily limit and the dashboard shows the next slot's buy."""
    from satmachineadmin import crud

    machine = await add_machine(operator)
    lp = await make_user("lp")
    client = await add_client(machine, lp)
    await add_deposit(client, machine, "300.00", status="confirmed")
    async with crud.connection() as c:
        await crud._execute(
            c,
            """CREATE TABLE IF NOT EXISTS satmachineadmin.fixed_schedules (
                id TEXT PRIMARY KEY, operator_user_id TEXT NOT NULL,
                machine_id TEXT, times TEXT NOT NULL DEFAULT '[]',
                timezone TEXT NOT NULL,
                max_daily_limit TEXT NOT NULL DEFAULT '2000')""",
        )
        await crud._execute(
            c,
            """INSERT INTO satmachineadmin.fixed_schedules
               (id, operator_user_id, machine_id, times, timezone, max_daily_limit)
               VALUES (:id, :op, NULL, :times, 'America/Guatemala', '1000')""",
            {
                "id": f"{operator.id}:*",
                "op": operator.id,
                "times": '["09:00", "15:00"]',
            },
        )
    try:
        path = f"/lp/positions/{client.id}"
        r = await call(
            http, lp, "PUT", path, json={"fixed_mode_daily_limit": "1000.01"}
        )
        field_error(r, "fixed_mode_daily_limit")
        r = await call(
            http, lp, "PUT", path,
            json={"dca_mode": "fixed", "fixed_mode_daily_limit": "900"},
        )  # fmt: skip
        assert r.status_code == 200, r.text
        assert Decimal(str(r.json()["max_fixed_mode_daily_limit"])) == Decimal(1000)
        [p] = (await call(http, lp, "GET", "/lp/dashboard")).json()["positions"]
        buy = p["next_fixed_buy"]
        assert Decimal(str(buy["fiat_amount"])) == Decimal("300.00")  # balance left
        assert buy["local_time"][11:16] in ("09:00", "15:00")
        assert buy["local_time"].endswith("-06:00")
        r = await call(http, lp, "PUT", path, json={"fixed_mode_daily_limit": "400"})
        [p] = (await call(http, lp, "GET", "/lp/dashboard")).json()["positions"]
        assert Decimal(str(p["next_fixed_buy"]["fiat_amount"])) == Decimal("200.00")
    finally:
        async with crud.connection() as c:
            await crud._execute(
                c,
                """DELETE FROM satmachineadmin.fixed_schedules
                   WHERE operator_user_id = :op""",
                {"op": operator.id},
            )


async def test_deleting_a_position_or_a_machine_leaves_no_orphan_rows(
    http, operator, make_user
):
    """An LP's preferences and the invite it came through go with its
    position; a machine's invites and positions' preferences go with it."""
    from satmachineadmin import crud, crud_lp

    async def rows(table: str, column: str, value: str) -> int:
        async with crud.connection() as c:
            [row] = await crud._scalar_rows(
                c, f"SELECT COUNT(*) AS n FROM {crud.S}.{table} WHERE {column} = :v",  # noqa: S608 - fixed names
                {"v": value},
            )  # fmt: skip
        return int(row["n"])

    machine = await add_machine(operator, name="Short-lived ATM")
    positions = []
    for name in ("lp_a", "lp_b"):
        lp = await make_user(name)
        created = await invite(http, operator, machine.id)
        accepted = await accept(http, lp, created["code"], lp.wallet.id)
        assert accepted.status_code == 201, accepted.text
        client_id = accepted.json()["client_id"]
        saved = await call(
            http, lp, "PUT", f"/lp/positions/{client_id}",
            json={"autoforward_threshold_sats": 5000},
        )  # fmt: skip
        assert saved.status_code == 200, saved.text
        assert await crud_lp.get_preferences(client_id) is not None
        positions.append(client_id)
    pending = await invite(http, operator, machine.id)

    first, second = positions
    deleted = await call(http, operator, "DELETE", f"/clients/{first}")
    assert deleted.status_code == 204, deleted.text
    assert await rows("lp_preferences", "client_id", first) == 0
    assert await rows("invites", "client_id", first) == 0
    assert await rows("lp_preferences", "client_id", second) == 1

    deleted = await call(http, operator, "DELETE", f"/machines/{machine.id}")
    assert deleted.status_code == 204, deleted.text
    assert await rows("lp_preferences", "client_id", second) == 0
    assert await rows("invites", "machine_id", machine.id) == 0
    assert await rows("clients", "machine_id", machine.id) == 0
    assert await crud_lp.get_invite(pending["id"]) is None
