"""Settlements, payment legs, the operator's actions on settlements, LP
balance settlement, CSV exports and the LP's own view, through the API."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from conftest import credit, wallet_balance
from test_api_support import (
    add_client,
    add_deposit,
    add_machine,
    call,
    field_error,
    insert_settlement,
    leg_row,
    new_client,
    new_deposit,
    new_machine,
    settlement_row,
)


def old(minutes: int) -> datetime:
    return datetime.now(timezone.utc) - timedelta(minutes=minutes)


async def errored_sale(machine, destination_wallet_id: str, sats: int = 100):
    """An errored settlement whose one operator leg failed; the rest of the
    gross is recorded as staying in the machine wallet."""
    settlement = settlement_row(machine)
    legs = [
        leg_row(
            settlement, amount_sats=sats, source_wallet_id=machine.wallet_id,
            destination_wallet_id=destination_wallet_id,
        ),
        leg_row(
            settlement, leg_type="dca", status="skipped",
            amount_sats=settlement.gross_sats - sats,
            source_wallet_id=machine.wallet_id, reason="no LP", error=None,
        ),
    ]  # fmt: skip
    await insert_settlement(settlement, legs)
    return settlement, legs


# --- reading settlements ------------------------------------------------------------


async def test_settlements_list_filters_and_detail_with_legs(http, operator):
    first = await add_machine(operator)
    second = await add_machine(operator)
    errored, legs = await errored_sale(first, operator.wallet.id)
    processed = settlement_row(first, status="processed", error=None)
    elsewhere = settlement_row(second, status="processed", error=None)
    for row in (processed, elsewhere):
        await insert_settlement(row)

    async def ids(**params) -> set[str]:
        response = await call(http, operator, "GET", "/settlements", params=params)
        assert response.status_code == 200, response.text
        return {s["id"] for s in response.json()}

    assert await ids() == {errored.id, processed.id, elsewhere.id}
    assert await ids(status="processed") == {processed.id, elsewhere.id}
    assert await ids(machine_id=first.id) == {errored.id, processed.id}
    assert await ids(machine_id=first.id, status="errored") == {errored.id}
    assert await ids(status="refunded") == set()

    response = await call(http, operator, "GET", f"/settlements/{errored.id}")
    assert response.status_code == 200
    body = response.json()
    assert body["settlement"]["id"] == errored.id
    assert body["settlement"]["payment_hash"] == errored.payment_hash
    assert Decimal(str(body["settlement"]["fiat_amount"])) == Decimal("6.95")
    assert {leg["id"] for leg in body["legs"]} == {leg.id for leg in legs}
    assert sum(leg["amount_sats"] for leg in body["legs"]) == errored.gross_sats

    assert (
        await call(http, operator, "GET", "/settlements/unknown")
    ).status_code == 404
    bad = await call(http, operator, "GET", "/settlements", params={"status": "done"})
    field_error(bad, "status")


async def test_stuck_settlements_are_errored_or_idle_for_five_minutes(http, operator):
    machine = await add_machine(operator)
    far = datetime.now(timezone.utc) + timedelta(hours=1)  # no worker resumes these
    errored = settlement_row(machine)
    idle = settlement_row(
        machine, status="processing", error=None, updated_at=old(6), claimed_until=far
    )
    busy = settlement_row(
        machine, status="processing", error=None, updated_at=old(1), claimed_until=far
    )
    done = settlement_row(machine, status="processed", error=None, updated_at=old(60))
    for row in (errored, idle, busy, done):
        await insert_settlement(row)
    response = await call(http, operator, "GET", "/settlements/stuck")
    assert response.status_code == 200
    assert {s["id"] for s in response.json()} == {errored.id, idle.id}


# --- operator actions on a settlement ----------------------------------------------


async def test_retry_pays_the_failed_leg_once(http, operator):
    machine = await add_machine(operator)
    await credit(machine.wallet_id, 1_000)
    destination = operator.wallets[2].id
    settlement, legs = await errored_sale(machine, destination, sats=100)
    before = await wallet_balance(destination)

    response = await call(http, operator, "POST", f"/settlements/{settlement.id}/retry")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "processed"
    assert await wallet_balance(destination) == before + 100
    detail = (await call(http, operator, "GET", f"/settlements/{settlement.id}")).json()
    statuses = {leg["id"]: leg["status"] for leg in detail["legs"]}
    assert statuses == {legs[0].id: "completed", legs[1].id: "skipped"}

    again = await call(http, operator, "POST", f"/settlements/{settlement.id}/retry")
    assert again.status_code == 409
    assert await wallet_balance(destination) == before + 100


async def test_partial_dispense_rescales_and_redistributes(http, operator):
    machine = await add_machine(operator)
    await credit(machine.wallet_id, 1_000)
    settlement, _ = await errored_sale(machine, operator.wallets[2].id)
    response = await call(
        http, operator, "POST", f"/settlements/{settlement.id}/partial-dispense",
        json={"dispensed_fraction": "0.5", "notes": "cassette jammed"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] in ("partial", "errored")
    assert body["net_sats"] == 450
    assert body["commission_sats"] == 50
    assert Decimal(str(body["dispensed_fraction"])) == Decimal("0.5")
    assert "partial dispense" in body["notes"]
    assert "cassette jammed" in body["notes"]
    assert operator.id in body["notes"]
    detail = (await call(http, operator, "GET", f"/settlements/{settlement.id}")).json()
    old_round = [leg for leg in detail["legs"] if leg["distribution_round"] == 0]
    assert {leg["status"] for leg in old_round} == {"voided"}

    again = await call(
        http, operator, "POST", f"/settlements/{settlement.id}/partial-dispense",
        json={"dispensed_fraction": "0.25"},
    )  # fmt: skip
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "__root__"),
        ({"dispensed_fraction": "0.5", "dispensed_sats": 10}, "__root__"),
        ({"dispensed_fraction": "1.5"}, "dispensed_fraction"),
        ({"dispensed_fraction": "-0.5"}, "dispensed_fraction"),
        ({"dispensed_fraction": "0.1234567890123"}, "dispensed_fraction"),
        ({"dispensed_sats": -1}, "dispensed_sats"),
        ({"dispensed_sats": 1001}, "dispensed_sats"),
        ({"dispensed_sats": 10**30}, "dispensed_sats"),
        ({"dispensed_sats": 10, "notes": "x" * 2001}, "notes"),
    ],
)
async def test_partial_dispense_errors_name_the_field(http, operator, body, field):
    from satmachineadmin import crud

    machine = await add_machine(operator)
    settlement, _ = await errored_sale(machine, operator.wallets[2].id)
    before = await crud.get_settlement(settlement.id)
    response = await call(
        http, operator, "POST", f"/settlements/{settlement.id}/partial-dispense",
        json=body,
    )  # fmt: skip
    field_error(response, field)
    assert await crud.get_settlement(settlement.id) == before


async def test_partial_dispense_is_refused_once_a_leg_was_paid(http, operator):
    from satmachineadmin import crud

    machine = await add_machine(operator)
    settlement = settlement_row(machine, status="processed", error=None)
    await insert_settlement(
        settlement,
        [leg_row(settlement, status="completed", source_wallet_id=machine.wallet_id,
                 destination_wallet_id=operator.wallet.id, error=None)],
    )  # fmt: skip
    before = await crud.get_settlement(settlement.id)
    response = await call(
        http, operator, "POST", f"/settlements/{settlement.id}/partial-dispense",
        json={"dispensed_sats": 500},
    )  # fmt: skip
    assert response.status_code == 409
    assert "cannot be taken back" in response.json()["detail"]
    assert await crud.get_settlement(settlement.id) == before


async def test_notes_are_appended_with_time_and_author(http, operator):
    machine = await add_machine(operator)
    settlement, _ = await errored_sale(machine, operator.wallet.id)
    path = f"/settlements/{settlement.id}/notes"
    first = await call(
        http, operator, "POST", path, json={"note": "  drawer short 20 "}
    )
    assert first.status_code == 200, first.text
    second = await call(http, operator, "POST", path, json={"note": "<b>found</b> it"})
    notes = second.json()["notes"]
    lines = notes.splitlines()
    assert len(lines) == 2
    stamp = r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\] "
    assert re.fullmatch(stamp + re.escape(f"{operator.id}: drawer short 20"), lines[0])
    assert re.fullmatch(stamp + re.escape(f"{operator.id}: <b>found</b> it"), lines[1])
    assert second.json()["status"] == "errored"  # a note changes nothing else

    for note, field in (("   ", "note"), ("x" * 2001, "note"), (None, "note")):
        response = await call(http, operator, "POST", path, json={"note": note})
        field_error(response, field)
    assert (await call(http, operator, "GET", f"/settlements/{settlement.id}")).json()[
        "settlement"
    ]["notes"] == notes


@pytest.mark.parametrize("action", ["retry", "partial-dispense", "notes"])
async def test_actions_on_unknown_or_foreign_settlements_are_404(
    http, operator, other_operator, action
):
    machine = await add_machine(other_operator)
    foreign, _ = await errored_sale(machine, other_operator.wallet.id)
    body = {"partial-dispense": {"dispensed_fraction": "0.5"}, "notes": {"note": "hi"}}
    for settlement_id in ("unknown", foreign.id):
        response = await call(
            http, operator, "POST", f"/settlements/{settlement_id}/{action}",
            json=body.get(action),
        )  # fmt: skip
        assert response.status_code == 404
        assert foreign.payment_hash not in response.text


# --- payment legs -----------------------------------------------------------------


async def test_payment_legs_filters(http, operator, lp):
    machine = await add_machine(operator)
    client = await add_client(machine, lp)
    settlement, legs = await errored_sale(machine, operator.wallet.id)
    other, other_legs = await errored_sale(machine, operator.wallet.id)
    dca = leg_row(
        other, leg_type="dca", status="completed", client_id=client.id,
        amount_sats=7, fiat_amount_minor=5, currency="GTQ",
        source_wallet_id=machine.wallet_id, destination_wallet_id=lp.wallet.id,
        error=None,
    )  # fmt: skip
    from satmachineadmin import crud

    async with crud.transaction() as conn:
        await crud.insert_legs([dca], conn)

    async def ids(**params) -> set[str]:
        response = await call(http, operator, "GET", "/payments", params=params)
        assert response.status_code == 200, response.text
        return {p["id"] for p in response.json()}

    every = {leg.id for leg in legs + other_legs} | {dca.id}
    assert await ids() == every
    assert await ids(settlement_id=settlement.id) == {leg.id for leg in legs}
    assert await ids(leg_type="dca") == {legs[1].id, other_legs[1].id, dca.id}
    assert await ids(leg_type="dca", status="completed") == {dca.id}
    assert await ids(client_id=client.id) == {dca.id}
    assert await ids(status="failed", settlement_id=other.id) == {other_legs[0].id}
    assert await ids(leg_type="refund") == set()
    for params, field in (
        ({"leg_type": "tip"}, "leg_type"),
        ({"status": "paid"}, "status"),
    ):
        field_error(
            await call(http, operator, "GET", "/payments", params=params), field
        )


# --- CSV exports -------------------------------------------------------------------

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_settlements_export_is_accounting_csv(http, operator, other_operator):
    machine = await add_machine(operator)
    second = await add_machine(operator)
    settlement, _ = await errored_sale(machine, operator.wallet.id)
    await call(
        http, operator, "POST", f"/settlements/{settlement.id}/notes",
        json={"note": '=HYPERLINK("http://x"), "quoted", and a comma'},
    )  # fmt: skip
    processed = settlement_row(second, status="processed", error=None)
    await insert_settlement(processed)
    foreign, _ = await errored_sale(
        await add_machine(other_operator), operator.wallet.id
    )

    response = await call(http, operator, "GET", "/export/settlements.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = read_csv(response.text)
    assert {row["id"] for row in rows} == {settlement.id, processed.id}
    row = next(r for r in rows if r["id"] == settlement.id)
    assert row["gross_sats"] == "1000"
    assert row["net_sats"] == "900"
    assert row["fiat_amount"] == "6.95"
    assert row["exchange_rate"] == "772114"
    assert row["currency"] == "GTQ"
    assert row["status"] == "errored"
    assert row["used_fallback_split"] == "false"
    assert ISO_UTC.fullmatch(row["created_at"])
    assert row["processed_at"] == ""
    assert "quoted" in row["notes"]
    assert foreign.id not in response.text

    filtered = await call(
        http, operator, "GET", "/export/settlements.csv",
        params={"machine_id": second.id, "status": "processed"},
    )  # fmt: skip
    assert [r["id"] for r in read_csv(filtered.text)] == [processed.id]
    empty = await call(
        http, operator, "GET", "/export/settlements.csv", params={"status": "refunded"}
    )
    assert empty.text.strip().split(",")[0] == "id"
    assert read_csv(empty.text) == []


async def test_payments_export_is_accounting_csv(http, operator, lp):
    machine = await add_machine(operator)
    client = await add_client(machine, lp)
    settlement, legs = await errored_sale(machine, operator.wallet.id)
    dca = leg_row(
        settlement, leg_type="dca", status="completed", client_id=client.id,
        amount_sats=1295, fiat_amount_minor=1000, currency="GTQ",
        price=Decimal("772114.0000"), source_wallet_id=machine.wallet_id,
        destination_wallet_id=lp.wallet.id, error=None, label="=cmd|'/c calc'!A1",
        completed_at=datetime.now(timezone.utc),
    )  # fmt: skip
    from satmachineadmin import crud

    async with crud.transaction() as conn:
        await crud.insert_legs([dca], conn)
    response = await call(http, operator, "GET", "/export/payments.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = {row["id"]: row for row in read_csv(response.text)}
    assert set(rows) == {dca.id, *(leg.id for leg in legs)}
    row = rows[dca.id]
    assert row["amount_sats"] == "1295"
    assert row["fiat_amount"] == "10.00"
    assert row["price"] == "772114.0000"
    assert row["client_id"] == client.id
    assert ISO_UTC.fullmatch(row["completed_at"])
    assert row["label"].startswith("'=")  # not run as a spreadsheet formula
    filtered = await call(
        http, operator, "GET", "/export/payments.csv",
        params={"leg_type": "dca", "status": "completed"},
    )  # fmt: skip
    assert [r["id"] for r in read_csv(filtered.text)] == [dca.id]
    field_error(
        await call(
            http, operator, "GET", "/export/payments.csv", params={"leg_type": "x"}
        ),
        "leg_type",
    )


# --- settling an LP's balance -------------------------------------------------------


async def funded_position(http, operator, lp, amount: str = "10.00"):
    machine = await new_machine(http, operator)
    client = await new_client(http, operator, machine, lp)
    deposit = await new_deposit(http, operator, client, amount)
    response = await call(
        http, operator, "PUT", f"/deposits/{deposit['id']}/status",
        json={"status": "confirmed"},
    )  # fmt: skip
    assert response.status_code == 200
    await credit(operator.wallets[2].id, 100_000)
    return machine, client


async def test_operator_settles_an_lps_remaining_balance_in_sats(http, operator, lp):
    _, client = await funded_position(http, operator, lp)
    funding = operator.wallets[2].id
    lp_before, funding_before = (
        await wallet_balance(lp.wallet.id),
        await wallet_balance(funding),
    )
    response = await call(
        http, operator, "POST", f"/clients/{client['id']}/settle",
        json={"funding_wallet_id": funding, "exchange_rate": "772114",
              "notes": "cash-out at the office"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    leg = response.json()
    sats = int(Decimal("10.00") * 100_000_000 / Decimal("772114"))
    assert leg["leg_type"] == "settlement"
    assert leg["status"] == "completed"
    assert leg["amount_sats"] == sats == 1295
    assert Decimal(str(leg["fiat_amount"])) == Decimal("10.00")
    assert leg["client_id"] == client["id"]
    assert await wallet_balance(lp.wallet.id) == lp_before + sats
    assert await wallet_balance(funding) == funding_before - sats

    balance = (
        await call(http, operator, "GET", f"/clients/{client['id']}/balance")
    ).json()
    assert Decimal(str(balance["remaining_balance"])) == 0
    assert balance["total_sats"] == sats
    again = await call(
        http, operator, "POST", f"/clients/{client['id']}/settle",
        json={"funding_wallet_id": funding, "exchange_rate": "772114"},
    )  # fmt: skip
    assert again.status_code == 409
    assert await wallet_balance(lp.wallet.id) == lp_before + sats

    payouts = (await call(http, lp, "GET", "/lp/payments")).json()
    assert [p["id"] for p in payouts] == [leg["id"]]
    assert "source_wallet_id" not in payouts[0]
    position = (await call(http, lp, "GET", "/lp/positions")).json()[0]
    assert position["sats_received"] == sats
    assert Decimal(str(position["average_price"])) == Decimal("772200.77")


async def test_partial_settlement_of_a_given_amount(http, operator, lp):
    _, client = await funded_position(http, operator, lp, "100.00")
    response = await call(
        http, operator, "POST", f"/clients/{client['id']}/settle",
        json={"funding_wallet_id": operator.wallets[2].id, "exchange_rate": "800000",
              "amount_fiat": "40"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["amount_sats"] == 5000
    balance = (
        await call(http, operator, "GET", f"/clients/{client['id']}/balance")
    ).json()
    assert Decimal(str(balance["remaining_balance"])) == Decimal("60.00")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"funding_wallet_id": "lp"}, "funding_wallet_id"),
        ({"funding_wallet_id": "nope"}, "funding_wallet_id"),
        ({"exchange_rate": "0"}, "exchange_rate"),
        ({"exchange_rate": "-772114"}, "exchange_rate"),
        ({"exchange_rate": "1e20"}, "exchange_rate"),
        ({"exchange_rate": "NaN"}, "exchange_rate"),
        ({"amount_fiat": "10.01"}, "amount_fiat"),
        ({"amount_fiat": "1.001"}, "amount_fiat"),
        ({"amount_fiat": "-1"}, "amount_fiat"),
        ({"amount_fiat": "0.000001"}, "amount_fiat"),
        ({"notes": "n" * 2001}, "notes"),
    ],
)
async def test_settle_errors_name_the_field_and_pay_nothing(
    http, operator, lp, fields, field
):
    _, client = await funded_position(http, operator, lp)
    if fields.get("funding_wallet_id") == "lp":
        fields = {**fields, "funding_wallet_id": lp.wallet.id}
    before = await wallet_balance(lp.wallet.id)
    body = {
        "funding_wallet_id": operator.wallets[2].id,
        "exchange_rate": "772114",
        **fields,
    }
    response = await call(
        http, operator, "POST", f"/clients/{client['id']}/settle", json=body
    )
    field_error(response, field)
    assert await wallet_balance(lp.wallet.id) == before
    assert (await call(http, operator, "GET", "/payments")).json() == []


async def test_settle_from_an_empty_wallet_fails_and_charges_nothing(
    http, operator, lp
):
    _, client = await funded_position(http, operator, lp)
    response = await call(
        http, operator, "POST", f"/clients/{client['id']}/settle",
        json={"funding_wallet_id": operator.wallets[3].id, "exchange_rate": "772114"},
    )  # fmt: skip
    assert response.status_code == 409, response.text
    balance = (
        await call(http, operator, "GET", f"/clients/{client['id']}/balance")
    ).json()
    assert Decimal(str(balance["remaining_balance"])) == Decimal("10.00")


# --- the LP's own view ----------------------------------------------------------------


async def test_lp_sees_its_positions_at_every_operator(
    http, operator, other_operator, lp
):
    mine = await add_machine(operator, name="Lobby ATM")
    theirs = await add_machine(other_operator, currency="USD", name="Mall ATM")
    at_mine = await add_client(mine, lp)
    at_theirs = await add_client(theirs, lp)
    await add_deposit(at_mine, mine, "100.00", status="confirmed")
    await add_deposit(at_mine, mine, "5.00")  # pending: no balance yet
    await add_deposit(at_theirs, theirs, "20.00", status="confirmed")
    settlement = settlement_row(mine, status="processed", error=None)
    await insert_settlement(
        settlement,
        [
            leg_row(settlement, leg_type="dca", status="completed",
                    client_id=at_mine.id, amount_sats=3000, fiat_amount_minor=2400,
                    currency="GTQ",
                    source_wallet_id=mine.wallet_id, destination_wallet_id=lp.wallet.id,
                    error=None),
            leg_row(settlement, leg_type="dca", status="pending", client_id=at_mine.id,
                    amount_sats=1000, fiat_amount_minor=800, currency="GTQ",
                    source_wallet_id=mine.wallet_id, destination_wallet_id=lp.wallet.id,
                    error=None, idempotency_key="in-flight-" + settlement.id),
        ],
    )  # fmt: skip

    response = await call(http, lp, "GET", "/lp/positions")
    assert response.status_code == 200
    positions = {p["client_id"]: p for p in response.json()}
    assert set(positions) == {at_mine.id, at_theirs.id}
    p = positions[at_mine.id]
    assert (p["machine_name"], p["operator_user_id"], p["currency"]) == (
        "Lobby ATM", operator.id, "GTQ",
    )  # fmt: skip
    assert Decimal(str(p["total_deposits"])) == Decimal("100")
    assert Decimal(str(p["total_charged"])) == Decimal("32")  # in flight counts
    assert Decimal(str(p["remaining_balance"])) == Decimal("68")
    assert p["sats_received"] == 3000
    # 24.00 GTQ for 3000 sats (the in-flight leg is not yet received)
    assert Decimal(str(p["average_price"])) == Decimal("800000.00")
    q = positions[at_theirs.id]
    assert (q["machine_name"], q["operator_user_id"]) == ("Mall ATM", other_operator.id)
    assert q["sats_received"] == 0
    assert q["average_price"] is None

    deposits = (await call(http, lp, "GET", "/lp/deposits")).json()
    assert len(deposits) == 3
    assert {d["client_id"] for d in deposits} == {at_mine.id, at_theirs.id}
    payouts = (await call(http, lp, "GET", "/lp/payments")).json()
    assert [p["amount_sats"] for p in payouts] == [3000]

    # the operators see nothing of each other through the LP
    assert (await call(http, operator, "GET", "/lp/positions")).json() == []
    assert theirs.id not in (await call(http, operator, "GET", "/clients")).text
