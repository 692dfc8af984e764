"""The platform fee (super user only) and the input handling every route
shares: paging limits, malformed bodies, unstorable strings, bad tokens."""

from __future__ import annotations

from decimal import Decimal

import pytest
from test_api_support import (
    API,
    add_client,
    add_deposit,
    add_machine,
    call,
    field_error,
    locs,
    new_client,
    new_machine,
)

# --- platform fee ------------------------------------------------------------------


@pytest.fixture
async def restore_super_config():
    from satmachineadmin import crud

    before = await crud.get_super_config()
    yield
    await crud.set_super_config(before.super_fee_pct, before.super_fee_wallet_id)


async def test_super_user_sets_the_platform_fee_and_everyone_reads_it(
    http, superuser, operator, lp, restore_super_config
):
    body = {"super_fee_pct": "0.3", "super_fee_wallet_id": superuser.wallet.id}
    response = await call(http, superuser, "PUT", "/super-config", json=body)
    assert response.status_code == 200, response.text
    for reader in (operator, lp, superuser):
        config = (await call(http, reader, "GET", "/super-config")).json()
        assert Decimal(str(config["super_fee_pct"])) == Decimal("0.3")
        assert config["super_fee_wallet_id"] == superuser.wallet.id

    response = await call(
        http, superuser, "PUT", "/super-config", json={"super_fee_pct": "0"}
    )
    assert response.status_code == 200
    assert response.json()["super_fee_wallet_id"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"super_fee_pct": "1.01"}, "super_fee_pct"),
        ({"super_fee_pct": "-0.1"}, "super_fee_pct"),
        ({"super_fee_pct": "0.1234567890123"}, "super_fee_pct"),
        ({}, "super_fee_pct"),
        (
            {"super_fee_pct": "0.1", "super_fee_wallet_id": "no-such"},
            "super_fee_wallet_id",
        ),
    ],
)
async def test_platform_fee_errors_name_the_field(
    http, superuser, body, field, restore_super_config
):
    from satmachineadmin import crud

    before = await crud.get_super_config()
    response = await call(http, superuser, "PUT", "/super-config", json=body)
    field_error(response, field)
    assert await crud.get_super_config() == before


async def test_only_the_super_user_writes_the_platform_fee(http, operator, superuser):
    from satmachineadmin import crud

    before = await crud.get_super_config()
    body = {"super_fee_pct": "0.9", "super_fee_wallet_id": operator.wallet.id}
    response = await call(http, operator, "PUT", "/super-config", json=body)
    assert response.status_code == 403
    # even an invalid body is refused as forbidden, not validated
    response = await call(
        http, operator, "PUT", "/super-config", json={"super_fee_pct": 7}
    )
    assert response.status_code == 403
    assert await crud.get_super_config() == before


# --- input handling shared by every route -----------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/machines", "/clients", "/deposits", "/settlements", "/settlements/stuck",
     "/payments", "/lp/positions", "/lp/payments", "/lp/deposits"],
)  # fmt: skip
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "1001"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"offset": "99999999999999999999999"}, "offset"),
    ],
)
async def test_lists_refuse_bad_paging(http, superuser, path, params, field):
    response = await call(http, superuser, "GET", path, params=params)
    assert locs(response) == [["query", field]]


async def test_malformed_bodies_are_422_and_change_nothing(http, operator, lp):
    machine = await new_machine(http, operator)
    client = await new_client(http, operator, machine, lp)
    cid = client["id"]
    cases = [
        ("POST", "/machines", b"{not json"),
        ("POST", "/machines", b"[]"),
        ("POST", "/machines", b'"text"'),
        ("POST", "/machines", b""),
        ("POST", "/deposits", b'{"client_id": 5, "amount": {"x": 1}}'),
        ("POST", "/deposits", f'{{"client_id": "{cid}", "amount": true}}'.encode()),
        ("PUT", f"/machines/{machine['id']}", b'{"name": ["a"]}'),
        ("PUT", "/commission-splits", b'{"legs": "all"}'),
        ("PUT", "/commission-splits", b'{"legs": [{"wallet_id": null, "pct": 1}]}'),
    ]  # fmt: skip
    for method, path, raw in cases:
        response = await http.request(
            method, API + path, content=raw,
            headers={**operator.headers, "Content-Type": "application/json"},
        )  # fmt: skip
        assert response.status_code == 422, (path, raw, response.text)
    assert len((await call(http, operator, "GET", "/machines")).json()) == 1
    assert (await call(http, operator, "GET", "/deposits")).json() == []
    got = await call(http, operator, "GET", f"/machines/{machine['id']}")
    assert got.json() == machine


async def test_strings_no_database_can_store_are_refused(http, operator, lp):
    machine = await new_machine(http, operator)
    client = await new_client(http, operator, machine, lp)
    response = await call(
        http, operator, "POST", "/deposits",
        json={"client_id": client["id"], "amount": "10", "notes": "a\x00b"},
    )  # fmt: skip
    assert locs(response) == [["body", "notes"]]
    raw = b'{"name": "\\ud800"}'
    response = await http.request(
        "PUT", API + f"/machines/{machine['id']}", content=raw,
        headers={**operator.headers, "Content-Type": "application/json"},
    )  # fmt: skip
    assert locs(response) == [["body", "name"]]
    response = await call(
        http, operator, "GET", "/clients", params={"machine_id": "a\x00"}
    )
    assert locs(response) == [["query", "machine_id"]]
    response = await call(http, operator, "GET", "/machines/a%00b")
    assert response.status_code == 404
    assert (await call(http, operator, "GET", "/deposits")).json() == []
    assert (
        await call(http, operator, "GET", f"/machines/{machine['id']}")
    ).json() == machine


async def test_authentication_comes_before_input_checks(http, operator):
    """An anonymous caller learns nothing, not even that its input is bad."""
    response = await http.get(API + "/clients", params={"machine_id": "a\x00"})
    assert response.status_code == 401
    response = await http.get(API + "/machines/a%00b")
    assert response.status_code == 401
    response = await http.post(
        API + "/deposits", json={"client_id": "x", "amount": "-1", "notes": "\x00"}
    )
    assert response.status_code == 401
    response = await call(
        http, operator, "PUT", "/super-config", json={"super_fee_pct": "0.1\x00"}
    )
    assert response.status_code == 403


async def test_anonymous_and_bad_tokens_are_401(http):
    for headers in (
        {},
        {"Authorization": "Bearer nonsense"},
        {"Cookie": "cookie_access_token=x"},
    ):
        response = await http.get(API + "/machines", headers=headers)
        assert response.status_code == 401, headers
        response = await http.post(API + "/machines", headers=headers, json={})
        assert response.status_code == 401, headers


async def test_lists_are_scoped_to_the_caller(http, operator, other_operator, lp):
    mine = await new_machine(http, operator)
    theirs = await new_machine(http, other_operator)
    await new_client(http, operator, mine, lp)
    await new_client(http, other_operator, theirs, lp)
    for path in ("/machines", "/clients", "/deposits"):
        body = (await call(http, operator, "GET", path)).text
        assert theirs["id"] not in body
    # a filter naming another operator's machine simply matches nothing
    response = await call(
        http, operator, "GET", "/clients", params={"machine_id": theirs["id"]}
    )
    assert response.status_code == 200
    assert response.json() == []


async def test_rows_made_by_crud_read_back_through_the_api(http, operator, lp):
    """The API reads rows however they were written (here: by crud)."""
    machine = await add_machine(operator, currency="KWD")
    client = await add_client(machine, lp)
    deposit = await add_deposit(client, machine, "1.234", status="confirmed")
    got = (await call(http, operator, "GET", f"/deposits/{deposit.id}")).json()
    assert Decimal(str(got["amount"])) == Decimal("1.234")
    balance = (
        await call(http, operator, "GET", f"/clients/{client.id}/balance")
    ).json()
    assert Decimal(str(balance["remaining_balance"])) == Decimal("1.234")
