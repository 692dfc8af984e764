"""Deposits and commission split rules through the API: happy paths and
error cases."""

from __future__ import annotations

from decimal import Decimal

import pytest
from test_api_support import (
    call,
    field_error,
    locs,
    new_client,
    new_deposit,
    new_machine,
)

# --- deposits --------------------------------------------------------------------


async def test_deposit_lifecycle(http, operator, lp):
    machine = await new_machine(http, operator)
    client = await new_client(http, operator, machine, lp)
    deposit = await new_deposit(http, operator, client, "1500.5")
    assert deposit["status"] == "pending"
    assert deposit["currency"] == "GTQ"
    assert deposit["amount_minor"] == 150050
    assert Decimal(str(deposit["amount"])) == Decimal("1500.50")
    assert deposit["creator_user_id"] == operator.id
    assert deposit["confirmed_at"] is None

    path = f"/deposits/{deposit['id']}"
    edited = await call(
        http, operator, "PUT", path, json={"amount": "1400", "notes": "n"}
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["amount_minor"] == 140000
    assert edited.json()["notes"] == "n"

    listed = await call(
        http, operator, "GET", "/deposits", params={"client_id": client["id"]}
    )
    assert [d["id"] for d in listed.json()] == [deposit["id"]]

    confirmed = await call(
        http, operator, "PUT", path + "/status", json={"status": "confirmed"}
    )
    assert confirmed.status_code == 200
    assert confirmed.json()["status"] == "confirmed"
    assert confirmed.json()["confirmed_at"] is not None

    # confirmed deposits are immutable
    for method, suffix, body in (
        ("PUT", "", {"amount": "1"}),
        ("PUT", "/status", {"status": "rejected"}),
        ("PUT", "/status", {"status": "confirmed"}),
        ("DELETE", "", None),
    ):
        response = await call(http, operator, method, path + suffix, json=body)
        assert response.status_code == 409, (method, suffix, response.text)
    after = await call(http, operator, "GET", path)
    assert after.json() == confirmed.json()


async def test_rejected_deposit_is_final_and_pending_one_can_be_deleted(
    http, operator, lp
):
    machine = await new_machine(http, operator)
    client = await new_client(http, operator, machine, lp)
    rejected = await new_deposit(http, operator, client)
    path = f"/deposits/{rejected['id']}"
    response = await call(
        http, operator, "PUT", path + "/status", json={"status": "rejected"}
    )
    assert response.json()["status"] == "rejected"
    assert response.json()["confirmed_at"] is None
    assert (
        await call(http, operator, "PUT", path, json={"amount": "2"})
    ).status_code == 409
    assert (await call(http, operator, "DELETE", path)).status_code == 409

    pending = await new_deposit(http, operator, client)
    assert (
        await call(http, operator, "DELETE", f"/deposits/{pending['id']}")
    ).status_code == 204
    assert (
        await call(http, operator, "GET", f"/deposits/{pending['id']}")
    ).status_code == 404


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"amount": "-10"}, "amount"),
        ({"amount": "0"}, "amount"),
        ({"amount": "abc"}, "amount"),
        ({"amount": "1e12"}, "amount"),
        ({"amount": "10.001"}, "amount"),
        ({"amount": "10.005"}, "amount"),
        ({"amount": "Infinity"}, "amount"),
        ({"currency": "USD"}, "currency"),
        ({"currency": "ZZZ"}, "currency"),
        ({"notes": "x" * 2001}, "notes"),
    ],
)
async def test_deposit_input_errors_name_the_field(http, operator, lp, fields, field):
    machine = await new_machine(http, operator)
    client = await new_client(http, operator, machine, lp)
    body = {"client_id": client["id"], "amount": "10", **fields}
    response = await call(http, operator, "POST", "/deposits", json=body)
    field_error(response, field)
    if field == "currency" and fields["currency"] == "USD":
        assert "GTQ" in response.json()["detail"]
    assert (await call(http, operator, "GET", "/deposits")).json() == []


async def test_deposit_precision_follows_the_machines_currency(http, operator, lp):
    jpy = await new_machine(http, operator, currency="JPY")
    client = await new_client(http, operator, jpy, lp)
    body = {"client_id": client["id"], "amount": "100.5"}
    field_error(await call(http, operator, "POST", "/deposits", json=body), "amount")
    ok = await call(
        http, operator, "POST", "/deposits",
        json={"client_id": client["id"], "amount": "100", "currency": "jpy"},
    )  # fmt: skip
    assert ok.status_code == 201
    assert ok.json()["amount_minor"] == 100
    response = await call(
        http, operator, "PUT", f"/deposits/{ok.json()['id']}", json={"amount": "1.5"}
    )
    field_error(response, "amount")


async def test_deposit_status_must_be_confirmed_or_rejected(http, operator, lp):
    machine = await new_machine(http, operator)
    client = await new_client(http, operator, machine, lp)
    deposit = await new_deposit(http, operator, client)
    for status in ("pending", "CONFIRMED", "", None):
        response = await call(
            http, operator, "PUT", f"/deposits/{deposit['id']}/status",
            json={"status": status},
        )  # fmt: skip
        assert locs(response) == [["body", "status"]]
    got = await call(http, operator, "GET", f"/deposits/{deposit['id']}")
    assert got.json()["status"] == "pending"


async def test_deposit_for_unknown_or_foreign_client_is_404(
    http, operator, other_operator, lp
):
    foreign_machine = await new_machine(http, other_operator)
    foreign = await new_client(http, other_operator, foreign_machine, lp)
    for client_id in ("unknown", foreign["id"]):
        body = {"client_id": client_id, "amount": "10"}
        response = await call(http, operator, "POST", "/deposits", json=body)
        assert response.status_code == 404
    for method, suffix, body in (
        ("GET", "", None),
        ("PUT", "", {"amount": "1"}),
        ("PUT", "/status", {"status": "confirmed"}),
        ("DELETE", "", None),
    ):
        response = await call(
            http, operator, method, f"/deposits/nope{suffix}", json=body
        )
        assert response.status_code == 404


# --- commission splits ---------------------------------------------------------


async def test_commission_split_rules_default_override_and_effective(http, operator):
    machine = await new_machine(http, operator)
    w = [wallet.id for wallet in operator.wallets]
    path = "/commission-splits"
    assert (await call(http, operator, "GET", path)).json() == []

    default = {"legs": [
        {"wallet_id": w[0], "pct": "0.5", "label": "me"},
        {"wallet_id": w[2], "pct": "0.3", "label": "partner"},
        {"wallet_id": w[3], "pct": "0.2", "label": "reserve"},
    ]}  # fmt: skip
    response = await call(http, operator, "PUT", path, json=default)
    assert response.status_code == 200, response.text
    assert [(r["wallet_id"], r["label"], r["position"]) for r in response.json()] == [
        (w[0], "me", 0), (w[2], "partner", 1), (w[3], "reserve", 2),
    ]  # fmt: skip
    assert all(r["machine_id"] is None for r in response.json())

    by_machine = {"machine_id": machine["id"]}
    assert (await call(http, operator, "GET", path, params=by_machine)).json() == []
    effective = {**by_machine, "effective": "true"}
    rules = (await call(http, operator, "GET", path, params=effective)).json()
    assert [r["label"] for r in rules] == ["me", "partner", "reserve"]

    override = {**by_machine, "legs": [{"wallet_id": w[2], "pct": "1", "label": "all"}]}
    response = await call(http, operator, "PUT", path, json=override)
    assert response.status_code == 200
    assert response.json()[0]["machine_id"] == machine["id"]
    rules = (await call(http, operator, "GET", path, params=effective)).json()
    assert [r["label"] for r in rules] == ["all"]
    assert len((await call(http, operator, "GET", path)).json()) == 3  # default kept

    response = await call(http, operator, "DELETE", path, params=by_machine)
    assert response.status_code == 204
    rules = (await call(http, operator, "GET", path, params=effective)).json()
    assert [r["label"] for r in rules] == ["me", "partner", "reserve"]
    assert (await call(http, operator, "DELETE", path)).status_code == 204
    assert (await call(http, operator, "GET", path, params=effective)).json() == []


@pytest.mark.parametrize(
    ("legs", "field"),
    [
        ([("w0", "0.5"), ("w1", "0.4")], "legs"),
        ([("w0", "0.5"), ("w1", "0.6")], "legs"),
        ([("w0", "0.3333333333333"), ("w1", "0.6666666666667")], "pct"),
        ([("w0", "1"), ("w1", "0")], "pct"),
        ([("w0", "1.5"), ("w1", "-0.5")], "pct"),
        ([("w0", "0.5"), ("w0", "0.5")], "legs"),
        ([], "legs"),
        ([("missing", "1")], "legs.0.wallet_id"),
        ([("w0", "0.5"), ("missing", "0.5")], "legs.1.wallet_id"),
    ],
)
async def test_commission_split_errors_name_the_field(http, operator, legs, field):
    wallets = {"w0": operator.wallets[0].id, "w1": operator.wallets[1].id,
               "missing": "no-such-wallet"}  # fmt: skip
    body = {
        "legs": [
            {"wallet_id": wallets[w], "pct": pct, "label": f"l{i}"}
            for i, (w, pct) in enumerate(legs)
        ]
    }
    response = await call(http, operator, "PUT", "/commission-splits", json=body)
    field_error(response, field)
    assert (await call(http, operator, "GET", "/commission-splits")).json() == []


async def test_commission_split_pct_not_summing_to_one_says_so(http, operator):
    body = {"legs": [{"wallet_id": operator.wallet.id, "pct": "0.9"}]}
    response = await call(http, operator, "PUT", "/commission-splits", json=body)
    assert locs(response) == [["body", "legs"]]
    assert "sum to exactly 1" in response.json()["detail"][0]["msg"]


async def test_commission_split_legs_may_pay_any_existing_wallet(
    http, operator, other_operator
):
    body = {"legs": [{"wallet_id": other_operator.wallet.id, "pct": "1"}]}
    response = await call(http, operator, "PUT", "/commission-splits", json=body)
    assert response.status_code == 200


async def test_commission_splits_of_a_foreign_machine_are_404(
    http, operator, other_operator
):
    foreign = await new_machine(http, other_operator)
    params = {"machine_id": foreign["id"]}
    legs = [{"wallet_id": operator.wallet.id, "pct": "1"}]
    assert (
        await call(http, operator, "GET", "/commission-splits", params=params)
    ).status_code == 404
    response = await call(
        http, operator, "PUT", "/commission-splits",
        json={"machine_id": foreign["id"], "legs": legs},
    )  # fmt: skip
    assert response.status_code == 404
    response = await call(http, operator, "DELETE", "/commission-splits", params=params)
    assert response.status_code == 404
    response = await call(
        http, operator, "GET", "/commission-splits",
        params={"machine_id": "unknown", "effective": "true"},
    )  # fmt: skip
    assert response.status_code == 404
