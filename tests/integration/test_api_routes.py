"""Each operator route's happy path and its error cases: machines and LP
positions. Deposits and commission splits are in test_api_deposits.py, the
platform fee and input handling shared by every route in test_api_input.py,
settlements, legs, exports and the LP's view in test_api_settlements.py."""

from __future__ import annotations

from decimal import Decimal

import pytest
from test_api_support import (
    call,
    field_error,
    insert_settlement,
    leg_row,
    locs,
    make_npub,
    new_client,
    new_deposit,
    new_machine,
    settlement_row,
)

# --- machines ------------------------------------------------------------------


async def test_operator_registers_lists_updates_and_deletes_a_machine(http, operator):
    npub = make_npub()
    machine = await new_machine(
        http,
        operator,
        npub=npub.upper(),
        currency="gtq",
        fallback_commission_pct="0.05",
    )
    assert machine["npub"] == npub
    assert machine["currency"] == "GTQ"
    assert machine["operator_user_id"] == operator.id
    assert Decimal(str(machine["fallback_commission_pct"])) == Decimal("0.05")
    assert machine["is_active"] is True

    listed = (await call(http, operator, "GET", "/machines")).json()
    assert [m["id"] for m in listed] == [machine["id"]]
    got = await call(http, operator, "GET", f"/machines/{machine['id']}")
    assert got.status_code == 200
    assert got.json() == machine

    updated = await call(
        http, operator, "PUT", f"/machines/{machine['id']}",
        json={"name": "Mall ATM", "is_active": False, "clear_fallback": True},
    )  # fmt: skip
    assert updated.status_code == 200, updated.text
    assert updated.json()["name"] == "Mall ATM"
    assert updated.json()["is_active"] is False
    assert updated.json()["fallback_commission_pct"] is None

    deleted = await call(http, operator, "DELETE", f"/machines/{machine['id']}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    gone = await call(http, operator, "GET", f"/machines/{machine['id']}")
    assert gone.status_code == 404


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"npub": "npub1notakey"}, "npub"),
        ({"npub": "nsec1" + "q" * 58}, "npub"),
        ({"npub": ""}, "npub"),
        ({"currency": "XYZ"}, "currency"),
        ({"currency": "dollars"}, "currency"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"fallback_commission_pct": "1.5"}, "fallback_commission_pct"),
        ({"fallback_commission_pct": "-0.01"}, "fallback_commission_pct"),
        ({"fallback_commission_pct": "0.0000000000001"}, "fallback_commission_pct"),
        ({"fallback_commission_pct": "NaN"}, "fallback_commission_pct"),
        ({"wallet_id": ""}, "wallet_id"),
        ({"wallet_id": "no-such-wallet"}, "wallet_id"),
    ],
)
async def test_machine_input_errors_name_the_field(http, operator, fields, field):
    body = {
        "npub": make_npub(),
        "wallet_id": operator.wallets[1].id,
        "name": "ATM",
        "currency": "GTQ",
        **fields,
    }
    response = await call(http, operator, "POST", "/machines", json=body)
    field_error(response, field)
    assert (await call(http, operator, "GET", "/machines")).json() == []


async def test_machine_wallet_must_be_the_operators_own(http, operator, other_operator):
    body = {
        "npub": make_npub(),
        "wallet_id": other_operator.wallet.id,
        "name": "ATM",
        "currency": "GTQ",
    }
    response = await call(http, operator, "POST", "/machines", json=body)
    field_error(response, "wallet_id")
    assert other_operator.wallet.id not in response.text


async def test_machine_wallet_and_npub_are_bound_once(http, operator):
    machine = await new_machine(http, operator, wallet=1)
    again = {
        "npub": make_npub(),
        "wallet_id": operator.wallets[1].id,
        "name": "Second",
        "currency": "GTQ",
    }
    response = await call(http, operator, "POST", "/machines", json=again)
    assert response.status_code == 409
    assert "wallet" in response.json()["detail"]

    same_npub = {**again, "npub": machine["npub"], "wallet_id": operator.wallets[2].id}
    response = await call(http, operator, "POST", "/machines", json=same_npub)
    assert response.status_code == 409
    assert "npub" in response.json()["detail"]
    assert len((await call(http, operator, "GET", "/machines")).json()) == 1


async def test_machine_with_settlements_cannot_be_deleted_but_can_be_deactivated(
    http, operator
):
    machine = await new_machine(http, operator)
    from satmachineadmin import crud

    row = await crud.get_machine(machine["id"])
    await insert_settlement(settlement_row(row, status="processed", error=None))
    response = await call(http, operator, "DELETE", f"/machines/{machine['id']}")
    assert response.status_code == 409
    assert "deactivate" in response.json()["detail"]
    response = await call(
        http, operator, "PUT", f"/machines/{machine['id']}", json={"is_active": False}
    )
    assert response.status_code == 200
    assert response.json()["is_active"] is False


async def test_machine_with_confirmed_deposits_cannot_be_deleted(http, operator, lp):
    machine = await new_machine(http, operator)
    client = await new_client(http, operator, machine, lp)
    deposit = await new_deposit(http, operator, client)
    await call(
        http, operator, "PUT", f"/deposits/{deposit['id']}/status",
        json={"status": "confirmed"},
    )  # fmt: skip
    response = await call(http, operator, "DELETE", f"/machines/{machine['id']}")
    assert response.status_code == 409
    assert (
        await call(http, operator, "GET", f"/clients/{client['id']}")
    ).status_code == 200


async def test_machine_update_validates_and_keeps_unset_fields(http, operator):
    machine = await new_machine(http, operator, fallback_commission_pct="0.05")
    path = f"/machines/{machine['id']}"
    response = await call(http, operator, "PUT", path, json={"name": ""})
    field_error(response, "name")
    response = await call(
        http, operator, "PUT", path, json={"fallback_commission_pct": "2"}
    )
    field_error(response, "fallback_commission_pct")
    response = await call(
        http, operator, "PUT", path, json={"fallback_commission_pct": "0.07"}
    )
    assert response.status_code == 200
    assert Decimal(str(response.json()["fallback_commission_pct"])) == Decimal("0.07")
    assert response.json()["name"] == machine["name"]


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("PUT", "", {"name": "x"}),
        ("DELETE", "", None),
        ("GET", "/settlements", None),
    ],
)
async def test_unknown_machine_is_404(http, operator, method, suffix, body):
    for machine_id in ("unknown", "0" * 32, "a" * 500, "%20", "..%2F..", "%00"):
        response = await call(
            http, operator, method, f"/machines/{machine_id}{suffix}", json=body
        )
        assert response.status_code == 404, (machine_id, response.text)


async def test_machine_settlements_are_filtered_by_status(http, operator):
    machine = await new_machine(http, operator)
    from satmachineadmin import crud

    row = await crud.get_machine(machine["id"])
    errored = settlement_row(row)
    processed = settlement_row(row, status="processed", error=None)
    await insert_settlement(errored)
    await insert_settlement(processed)
    path = f"/machines/{machine['id']}/settlements"
    both = (await call(http, operator, "GET", path)).json()
    assert {s["id"] for s in both} == {errored.id, processed.id}
    only = (
        await call(http, operator, "GET", path, params={"status": "processed"})
    ).json()
    assert [s["id"] for s in only] == [processed.id]
    bad = await call(http, operator, "GET", path, params={"status": "lost"})
    assert locs(bad) == [["query", "status"]]


# --- LP positions --------------------------------------------------------------


async def test_operator_registers_an_lp_and_manages_the_position(http, operator, lp):
    machine = await new_machine(http, operator)
    client = await new_client(
        http, operator, machine, lp,
        username="alice", dca_mode="fixed", fixed_mode_daily_limit="250.50",
    )  # fmt: skip
    assert client["user_id"] == lp.id
    assert client["machine_id"] == machine["id"]
    assert client["operator_user_id"] == operator.id
    assert client["dca_mode"] == "fixed"
    assert client["fixed_mode_daily_limit_minor"] == 25050
    assert client["status"] == "active"

    listed = await call(
        http, operator, "GET", "/clients", params={"machine_id": machine["id"]}
    )
    assert [c["id"] for c in listed.json()] == [client["id"]]
    got = await call(http, operator, "GET", f"/clients/{client['id']}")
    assert got.json() == client

    updated = await call(
        http, operator, "PUT", f"/clients/{client['id']}",
        json={"dca_mode": "flow", "status": "inactive", "username": "alice b",
              "fixed_mode_daily_limit": "10"},
    )  # fmt: skip
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert (body["dca_mode"], body["status"], body["username"]) == (
        "flow", "inactive", "alice b",
    )  # fmt: skip
    assert body["fixed_mode_daily_limit_minor"] == 1000

    deleted = await call(http, operator, "DELETE", f"/clients/{client['id']}")
    assert deleted.status_code == 204
    assert (
        await call(http, operator, "GET", f"/clients/{client['id']}")
    ).status_code == 404


async def test_lp_wallet_must_belong_to_the_lp(http, operator, lp, other_operator):
    machine = await new_machine(http, operator)
    body = {"machine_id": machine["id"], "user_id": lp.id}
    for wallet_id in (other_operator.wallet.id, operator.wallet.id, "nope"):
        response = await call(
            http, operator, "POST", "/clients", json={**body, "wallet_id": wallet_id}
        )
        field_error(response, "wallet_id")
    client = await new_client(http, operator, machine, lp)
    response = await call(
        http, operator, "PUT", f"/clients/{client['id']}",
        json={"wallet_id": operator.wallet.id},
    )  # fmt: skip
    field_error(response, "wallet_id")
    got = await call(http, operator, "GET", f"/clients/{client['id']}")
    assert got.json()["wallet_id"] == lp.wallet.id


async def test_one_position_per_lp_and_machine(http, operator, lp):
    machine = await new_machine(http, operator)
    await new_client(http, operator, machine, lp)
    body = {"machine_id": machine["id"], "user_id": lp.id, "wallet_id": lp.wallet.id}
    response = await call(http, operator, "POST", "/clients", json=body)
    assert response.status_code == 409
    assert "position" in response.json()["detail"]
    second = await new_machine(http, operator, wallet=2)
    await new_client(http, operator, second, lp)  # another machine: fine


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"dca_mode": "monthly"}, "dca_mode"),
        ({"fixed_mode_daily_limit": "-5"}, "fixed_mode_daily_limit"),
        ({"fixed_mode_daily_limit": "1.001"}, "fixed_mode_daily_limit"),
        ({"fixed_mode_daily_limit": "1.005"}, "fixed_mode_daily_limit"),
        ({"username": "u" * 101}, "username"),
        ({"user_id": ""}, "user_id"),
        ({"machine_id": None}, "machine_id"),
    ],
)
async def test_client_input_errors_name_the_field(http, operator, lp, fields, field):
    machine = await new_machine(http, operator)
    body = {
        "machine_id": machine["id"],
        "user_id": lp.id,
        "wallet_id": lp.wallet.id,
        **fields,
    }
    response = await call(http, operator, "POST", "/clients", json=body)
    field_error(response, field)
    assert (await call(http, operator, "GET", "/clients")).json() == []


async def test_client_at_unknown_or_foreign_machine_is_404(
    http, operator, other_operator, lp
):
    foreign = await new_machine(http, other_operator)
    for machine_id in ("unknown", foreign["id"]):
        body = {"machine_id": machine_id, "user_id": lp.id, "wallet_id": lp.wallet.id}
        response = await call(http, operator, "POST", "/clients", json=body)
        assert response.status_code == 404
        assert foreign["name"] not in response.text


async def test_client_with_history_cannot_be_deleted(http, operator, lp):
    machine = await new_machine(http, operator)
    client = await new_client(http, operator, machine, lp)
    pending = await new_deposit(http, operator, client)
    # pending deposits do not count as history: they go with the position
    confirmed = await new_deposit(http, operator, client, "5")
    await call(
        http, operator, "PUT", f"/deposits/{confirmed['id']}/status",
        json={"status": "confirmed"},
    )  # fmt: skip
    response = await call(http, operator, "DELETE", f"/clients/{client['id']}")
    assert response.status_code == 409
    assert (
        await call(http, operator, "GET", f"/deposits/{pending['id']}")
    ).status_code == 200

    other = await new_client(http, operator, await new_machine(http, operator, 2), lp)
    await new_deposit(http, operator, other)
    assert (
        await call(http, operator, "DELETE", f"/clients/{other['id']}")
    ).status_code == 204


async def test_client_balance_counts_confirmed_deposits_and_charged_legs(
    http, operator, lp
):
    machine = await new_machine(http, operator)
    client = await new_client(http, operator, machine, lp)
    for amount, status in (
        ("100.00", "confirmed"),
        ("50.00", None),
        ("7.25", "rejected"),
    ):
        deposit = await new_deposit(http, operator, client, amount)
        if status:
            await call(
                http, operator, "PUT", f"/deposits/{deposit['id']}/status",
                json={"status": status},
            )  # fmt: skip
    from satmachineadmin import crud

    row = await crud.get_machine(machine["id"])
    settlement = settlement_row(row, status="processed", error=None)
    await insert_settlement(
        settlement,
        [
            leg_row(
                settlement, leg_type="dca", status="completed", amount_sats=4000,
                fiat_amount_minor=3000, currency="GTQ", client_id=client["id"],
                source_wallet_id=row.wallet_id, destination_wallet_id=lp.wallet.id,
                error=None,
            )
        ],
    )  # fmt: skip
    response = await call(http, operator, "GET", f"/clients/{client['id']}/balance")
    assert response.status_code == 200
    balance = response.json()
    assert balance["currency"] == "GTQ"
    assert Decimal(str(balance["total_deposits"])) == Decimal("100.00")
    assert Decimal(str(balance["total_charged"])) == Decimal("30.00")
    assert Decimal(str(balance["remaining_balance"])) == Decimal("70.00")
    assert balance["total_sats"] == 4000
