"""upgrade_v1's pure parts (issue 19): how v1's values are read and what they
become. No database: ``plan`` is values in, rows out. (Here rather than in
tests/unit because the module is part of the package LNbits loads.)"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest


@pytest.fixture
def up(app):
    from satmachineadmin import upgrade_v1

    return upgrade_v1


NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def data(up, **kw):
    return up.V1Data(schema="satoshimachine", **kw)


def client(up, cid: str, user: str, **kw):
    values = {
        "id": cid,
        "user_id": user,
        "wallet_id": f"w-{user}",
        "username": None,
        "dca_mode": "flow",
        "fixed_mode_daily_limit": None,
        "status": "active",
        "created_at": NOW,
        "updated_at": NOW,
    }
    values.update(kw)
    return up.V1Client(**values)


def deposit(up, did: str, cid: str, amount: int, status: str = "confirmed", **kw):
    values = {
        "id": did,
        "client_id": cid,
        "amount": amount,
        "currency": "GTQ",
        "status": status,
        "notes": None,
        "created_at": NOW,
        "confirmed_at": NOW,
    }
    values.update(kw)
    return up.V1Deposit(**values)


def test_values_are_read_exactly_or_the_row_is_named(up) -> None:
    row = {"id": "d1", "amount": "1500", "when": 1_700_000_000}
    assert up._int(row, "amount", "dca_deposits") == 1500
    assert up._time(row, "when", "dca_deposits") == datetime.fromtimestamp(
        1_700_000_000, timezone.utc
    )
    assert up._time({"id": "x", "t": "2025-07-01 10:00:00"}, "t", "t") == datetime(
        2025, 7, 1, 10, tzinfo=timezone.utc
    )
    with pytest.raises(up.V1RowError, match=r"dca_deposits row d1: amount 12\.5"):
        up._int({"id": "d1", "amount": 12.5}, "amount", "dca_deposits")
    with pytest.raises(up.V1RowError, match="row p1: created_at 'yesterday'"):
        up._time({"id": "p1", "created_at": "yesterday"}, "created_at", "dca_payments")


def test_without_a_configuration_positions_go_to_a_manual_machine(
    up,
) -> None:
    v1 = data(
        up, clients=[client(up, "c1", "u1")], deposits=[deposit(up, "d1", "c1", 700)]
    )
    carry = up.plan(v1, super_user="su", now=NOW, fallback_wallet_id="w-su")
    assert carry.machine.source == "manual" and carry.machine.wallet_id == "w-su"
    assert carry.source is None
    assert [d.amount_minor for d in carry.deposits] == [70_000]
    with pytest.raises(up.V1RowError, match="no source wallet"):
        up.plan(v1, super_user="su", now=NOW)


def config(up, **kw):
    values = {
        "id": "cfg",
        "host": "10.0.0.5",
        "port": 5432,
        "database_name": "lamassu",
        "username": "ro",
        "password": "pw",
        "source_wallet_id": "w-src",
        "commission_wallet_id": None,
        "is_active": True,
        "use_ssh_tunnel": False,
        "ssh_host": None,
        "ssh_port": None,
        "ssh_username": None,
        "has_ssh_password": False,
        "has_ssh_private_key": False,
        "last_poll_time": None,
        "last_successful_poll": None,
        "created_at": NOW,
    }
    values.update(kw)
    return up.V1Config(**values)


def test_a_second_client_of_one_user_is_merged_and_orphans_are_left_out_with_why(
    up,
) -> None:
    v1 = data(
        up,
        configs=[config(up)],
        clients=[client(up, "c1", "u1"), client(up, "c2", "u1", created_at=None)],
        deposits=[
            deposit(up, "d1", "c1", 100),
            deposit(up, "d2", "c2", 50),
            deposit(up, "d3", "ghost", 10),
        ],
    )
    carry = up.plan(v1, super_user="su", now=NOW, seal=lambda v: f"sealed({v})")
    assert [c.id for c in carry.clients] == ["c1"]
    assert {d.id: d.client_id for d in carry.deposits} == {"d1": "c1", "d2": "c1"}
    assert carry.carried()["balances"] == {"c1": "150.00"}
    assert {(x["table"], x["id"]) for x in carry.left_out} == {
        ("dca_clients", "c2"),
        ("dca_deposits", "d3"),
    }
    assert carry.source.password == "sealed(pw)"
    assert carry.source.device_id == ""  # no cash-out recorded: the report says so
    assert any("device id" in step for step in carry.after_upgrade)


def test_a_deposit_in_another_currency_or_negative_stops_the_carry(up) -> None:
    base = {"configs": [config(up)], "clients": [client(up, "c1", "u1")]}
    for bad, why in (
        (deposit(up, "d9", "c1", -5), "amount -5 is negative"),
        (deposit(up, "d9", "c1", 5, currency="USD"), "currency USD differs"),
    ):
        with pytest.raises(up.V1RowError, match=f"dca_deposits row d9: {why}"):
            up.plan(
                data(up, **base, deposits=[deposit(up, "d1", "c1", 1), bad]),
                super_user="su",
                now=NOW,
            )
