"""Manual sales (POST /settlements/manual) and funding: a sale whose sats are
not in the machine wallet waits as awaiting_funds, nothing paid, and goes on
by itself after a top-up. Balances are read from LNbits."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from conftest import credit, wallet_balance
from scenario import FINAL, add_lp, assert_ledger_adds_up, set_splits
from waits import until

API = "/satmachineadmin/api/v1/dca"


async def create_machine(http, operator, wallet, source="manual"):
    response = await http.post(
        f"{API}/machines",
        json={
            "wallet_id": wallet.id,
            "name": "manual ATM",
            "currency": "GTQ",
            "source": source,
        },
        headers=operator.headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


def sale(machine_id, reference="ref-1", **overrides):
    body = {
        "machine_id": machine_id,
        "reference": reference,
        "fiat_amount": "2000",
        "exchange_rate": "772800",
        "commission_sats": 8001,
        "occurred_at": (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat(),
        "note": "cash counted at the shop",
    }
    body.update(overrides)
    return body


async def wait_status(settlement_id, statuses, timeout=120):
    from satmachineadmin import crud

    return await until(
        lambda: crud.get_settlement(settlement_id),
        lambda s: s is not None and s.status in statuses,
        what=f"settlement {settlement_id} in {sorted(statuses)}",
        timeout=timeout,
    )


class _M:
    def __init__(self, machine, operator):
        self.id = machine["id"]
        self.operator_user_id = operator.id
        self.currency = "GTQ"


@pytest.fixture
async def manual_shop(http, operator, make_user):
    machine_wallet = operator.wallets[1]
    machine = await create_machine(http, operator, machine_wallet)
    await set_splits(operator, [(operator.wallets[0].id, "1")])
    lp = await make_user("lp")
    await add_lp(_M(machine, operator), lp, Decimal(9000))
    return machine, machine_wallet, lp


async def test_manual_sale_pays_from_the_machine_wallet_once(
    http, operator, manual_shop
):
    machine, machine_wallet, lp = manual_shop
    await credit(machine_wallet.id, 300_000)
    before = [await wallet_balance(w.id) for w in (machine_wallet, lp.wallet)]

    response = await http.post(
        f"{API}/settlements/manual", json=sale(machine["id"]), headers=operator.headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["source"] == "manual" and body["source_txid"] == "ref-1"
    assert (body["gross_sats"], body["net_sats"], body["commission_sats"]) == (
        266_800,
        258_799,
        8_001,
    )
    assert (
        f"{operator.id}: manual sale ref-1: cash counted at the shop" in body["notes"]
    )
    settlement = await wait_status(body["id"], FINAL)
    assert settlement.status == "processed"
    await assert_ledger_adds_up(settlement)
    after = [await wallet_balance(w.id) for w in (machine_wallet, lp.wallet)]
    assert after[0] - before[0] == -266_800
    assert after[1] - before[1] == 258_799

    # The same reference again: 409, nothing changes.
    again = await http.post(
        f"{API}/settlements/manual",
        json=sale(machine["id"], fiat_amount="10"),
        headers=operator.headers,
    )
    assert again.status_code == 409, again.text
    assert "reference" in again.text
    listing = await http.get(
        f"{API}/machines/{machine['id']}/settlements", headers=operator.headers
    )
    assert [s["id"] for s in listing.json()] == [body["id"]]
    assert await wallet_balance(machine_wallet.id) == after[0]

    # With fee_pct instead of commission_sats.
    pct = await http.post(
        f"{API}/settlements/manual",
        json=sale(
            machine["id"],
            "ref-2",
            commission_sats=None,
            fee_pct="0.03",
            exchange_rate="772114",
        ),
        headers=operator.headers,
    )
    assert pct.status_code == 201, pct.text
    assert pct.json()["commission_sats"] == 7_771


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"commission_sats": 8001, "fee_pct": "0.03"}, "commission_sats"),
        ({"commission_sats": None}, "commission_sats"),
        ({"commission_sats": -1}, "commission_sats"),
        ({"fee_pct": "1.5", "commission_sats": None}, "fee_pct"),
        ({"fiat_amount": "-5"}, "fiat_amount"),
        ({"fiat_amount": "1.005"}, "fiat_amount"),
        ({"fiat_amount": "abc"}, "fiat_amount"),
        ({"exchange_rate": "0"}, "exchange_rate"),
        ({"reference": "   "}, "reference"),
        ({"reference": "x" * 101}, "reference"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"occurred_at": "2999-01-01T00:00:00Z"}, "occurred_at"),
        ({"note": "n" * 2001}, "note"),
        ({"fiat_amount": "0.00001", "exchange_rate": "999999999"}, "fiat_amount"),
    ],
)
async def test_manual_sale_bad_input_names_the_field_and_changes_nothing(
    http, operator, overrides, field
):
    machine = await create_machine(http, operator, operator.wallets[2])
    response = await http.post(
        f"{API}/settlements/manual",
        json=sale(machine["id"], **overrides),
        headers=operator.headers,
    )
    assert response.status_code == 422, response.text
    assert field in response.text
    listing = await http.get(
        f"{API}/machines/{machine['id']}/settlements", headers=operator.headers
    )
    assert listing.json() == []


async def test_manual_sale_on_another_operators_machine_is_404(
    http, operator, other_operator
):
    machine = await create_machine(http, operator, operator.wallets[2])
    response = await http.post(
        f"{API}/settlements/manual",
        json=sale(machine["id"]),
        headers=other_operator.headers,
    )
    assert response.status_code == 404


async def test_awaiting_funds_then_a_top_up_goes_on_by_itself(
    http, operator, manual_shop
):
    machine, machine_wallet, lp = manual_shop
    assert await wallet_balance(machine_wallet.id) == 0
    lp_before = await wallet_balance(lp.wallet.id)
    response = await http.post(
        f"{API}/settlements/manual", json=sale(machine["id"]), headers=operator.headers
    )
    assert response.status_code == 201, response.text
    settlement = await wait_status(response.json()["id"], {"awaiting_funds"})
    from satmachineadmin import crud

    legs = await crud.get_legs(settlement.id)
    assert legs and all(leg.status in ("pending", "skipped") for leg in legs)
    assert await wallet_balance(lp.wallet.id) == lp_before  # nothing paid

    funding = await http.get(f"{API}/funding", headers=operator.headers)
    row = next(r for r in funding.json() if r["machine_id"] == machine["id"])
    assert row == {
        "machine_id": machine["id"],
        "source": "manual",
        "owes_sats": 266_800,
        "holds_sats": 0,
        "awaiting_funds": 1,
        "lamassu_configured": False,
        "last_poll_at": None,
        "last_success_at": None,
        "last_error": None,
    }

    # A partial top-up is not enough: still waiting.
    await _top_up(http, operator, machine_wallet, 100_000)
    from satmachineadmin import loops, poller, tasks

    assert await poller.release_funded(tasks.queue_for_processing) == 0
    assert (await crud.get_settlement(settlement.id)).status == "awaiting_funds"

    # The operator tops the wallet up from its own wallet: never a sale. The
    # sources loop's funding pass (woken, not waited for) releases it.
    await _top_up(http, operator, machine_wallet, 200_000)
    loops.wake("funding")
    done = await wait_status(settlement.id, FINAL)
    assert done.status == "processed"
    assert await wallet_balance(lp.wallet.id) - lp_before == 258_799
    assert await wallet_balance(machine_wallet.id) == 300_000 - 266_800
    listing = await http.get(
        f"{API}/machines/{machine['id']}/settlements", headers=operator.headers
    )
    assert [s["id"] for s in listing.json()] == [settlement.id]  # top-ups: no sale
    funding = await http.get(f"{API}/funding", headers=operator.headers)
    row = next(r for r in funding.json() if r["machine_id"] == machine["id"])
    assert (row["owes_sats"], row["holds_sats"], row["awaiting_funds"]) == (
        0,
        33_200,
        0,
    )


async def _top_up(http, operator, machine_wallet, sats):
    await credit(operator.wallets[0].id, sats)
    invoice = await http.post(
        "/api/v1/payments",
        json={"out": False, "amount": sats, "memo": "top-up"},
        headers={"X-Api-Key": machine_wallet.inkey},
    )
    assert invoice.status_code == 201, invoice.text
    paid = await http.post(
        "/api/v1/payments",
        json={"out": True, "bolt11": invoice.json()["bolt11"]},
        headers={"X-Api-Key": operator.wallets[0].adminkey},
    )
    assert paid.status_code == 201, paid.text
