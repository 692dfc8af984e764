"""The reconciliation report, over HTTP, against a real LNbits: sales paid
through invoices, the real pipeline, wallet balances read from LNbits."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from conftest import credit, wallet_balance
from scenario import (
    add_lp,
    add_machine,
    dca_sale,
    ledger,
    make_sale,
    set_platform_fee,
    set_splits,
    wait_for_settlement,
)

API = "/satmachineadmin/api/v1/dca"


@pytest.fixture
async def customer(make_user):
    user = await make_user("customer")
    await credit(user.wallet.id, 5_000_000)
    return user


@pytest.fixture
async def fee_wallet(superuser):
    await set_platform_fee("0.30", superuser.wallet.id)
    yield superuser.wallet
    await set_platform_fee("0", None)


async def report(http, actor, **params):
    response = await http.get(
        f"{API}/reconciliation", params=params, headers=actor.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def machine_report(http, actor, machine_id, **params):
    body = await report(http, actor, machine_id=machine_id, **params)
    assert [m["machine_id"] for m in body["machines"]] == [machine_id]
    return body["machines"][0]


async def two_sales_with_a_top_up(http, operator, make_user, customer):
    """A machine with an LP (1 000 GTQ), a 50/50 operator split, a 10 000 sat
    top-up, a full sale and a sale the LP balance only partly covers."""
    machine_wallet = operator.wallets[1]
    machine = await add_machine(operator, machine_wallet)
    await set_splits(
        operator, [(operator.wallets[0].id, "0.5"), (operator.wallets[2].id, "0.5")]
    )
    lp = await make_user("lp")
    await add_lp(machine, lp, Decimal(1000))
    await credit(machine_wallet.id, 10_000)  # a top-up: not a sale
    settlements = []
    for fiat in ("600", "600"):  # the second finds only 400 GTQ left
        payment_hash = await make_sale(
            http, machine_wallet, customer.wallet, dca_sale(machine, fiat=fiat)
        )
        settlements.append(await wait_for_settlement(payment_hash))
    return machine, lp, settlements


async def test_reconciliation_adds_up_against_lnbits_balances(
    http, operator, make_user, customer, fee_wallet
):
    fee_before = await wallet_balance(fee_wallet.id)
    split_before = [await wallet_balance(operator.wallets[i].id) for i in (0, 2)]
    machine, lp, settlements = await two_sales_with_a_top_up(
        http, operator, make_user, customer
    )
    assert [s.status for s in settlements] == ["processed", "processed"]
    legs = [leg for s in settlements for leg in await ledger(s.id)]

    r = await machine_report(http, operator, machine.id)

    gross = sum(s.gross_sats for s in settlements)
    assert r["sales_count"] == 2
    assert r["sales_gross_sats"] == gross
    assert r["sales_by_source"] == [
        {"source": "bitspire", "count": 2, "gross_sats": gross}
    ]
    assert r["settlements_by_status"] == {"processed": 2}
    # Commission and payouts, each as LNbits credited them.
    assert r["platform_fee"]["sats"] == await wallet_balance(fee_wallet.id) - fee_before
    assert r["platform_fee"]["sats"] == sum(s.platform_fee_sats for s in settlements)
    split_after = [await wallet_balance(operator.wallets[i].id) for i in (0, 2)]
    assert r["operator_split"]["sats"] == sum(split_after) - sum(split_before)
    assert r["operator_split"]["count"] == 4
    assert r["lp_flow"]["sats"] == await wallet_balance(lp.wallet.id)
    assert Decimal(str(r["lp_flow"]["fiat"])) == Decimal("1000.00")
    assert r["lp_fixed"]["count"] == r["lp_settlement"]["count"] == 0
    # The second sale's uncovered principal stays, with its reason.
    held = {(h["leg_type"], h["reason"]): h["sats"] for h in r["held"]}
    skipped = [leg for leg in legs if leg.status == "skipped"]
    assert skipped and held == {
        (leg.leg_type, leg.reason): leg.amount_sats for leg in skipped
    }
    assert r["held_sats"] == sum(leg.amount_sats for leg in skipped)
    assert r["unbalanced_settlements"] == []
    # The machine wallet: LNbits' balance is what the ledger says.
    w = r["wallet"]
    balance = await wallet_balance(machine.wallet_id)
    assert w["lnbits_balance_sats"] == balance
    assert w["sales_in_sats"] == gross
    assert w["other_incoming_msat"] == 10_000_000
    assert w["legs_out_sats"] == sum(
        leg.amount_sats for leg in legs if leg.status == "completed"
    )
    assert w["expected_balance_sats"] == balance == 10_000 + r["held_sats"]
    assert (w["difference_msat"], w["balanced"], w["differences"]) == (0, True, [])
    assert r["ok"] is True
    body = await report(http, operator)
    assert body["totals"]["ok"] is True
    assert body["totals"]["sales_gross_sats"] == gross


async def test_period_filters_sales_but_the_wallet_is_checked_to_now(
    http, operator, make_user, customer
):
    machine, _, _ = await two_sales_with_a_top_up(http, operator, make_user, customer)
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat()
    r = await machine_report(http, operator, machine.id, since=tomorrow)
    assert (r["sales_count"], r["lp_flow"]["count"], r["held"]) == (0, 0, [])
    assert r["wallet"]["balanced"] is True
    assert r["wallet"]["lnbits_balance_sats"] == await wallet_balance(machine.wallet_id)

    today = datetime.now(timezone.utc).date().isoformat()
    r = await machine_report(http, operator, machine.id, since=today, until=today)
    assert r["sales_count"] == 2
    body = await report(http, operator, machine_id=machine.id, until=today)
    assert body["until"].startswith(tomorrow)  # a date as `until` is the whole day


async def past_a_whole_second() -> datetime:
    """A moment after everything so far and before anything from now on,
    even where a database keeps whole seconds: the next whole second, once
    the clock has passed it."""
    now = datetime.now(timezone.utc)
    moment = now.replace(microsecond=0) + timedelta(seconds=1)
    await asyncio.sleep((moment - now).total_seconds() + 0.01)
    return moment


async def test_a_closed_period_still_balances_after_later_sales_and_top_ups(
    http, operator, make_user, customer
):
    """An operator closing November in December: the wallet block is as of
    the period's end, from LNbits' payments up to then, not today's balance."""
    machine, _, settlements = await two_sales_with_a_top_up(
        http, operator, make_user, customer
    )
    balance_then = await wallet_balance(machine.wallet_id)
    close = await past_a_whole_second()
    await credit(machine.wallet_id, 7_000)  # a later top-up
    later = await make_sale(
        http, operator.wallets[1], customer.wallet,
        dca_sale(machine, fiat="100"),
    )  # fmt: skip
    await wait_for_settlement(later)
    assert await wallet_balance(machine.wallet_id) != balance_then

    until = close.isoformat().replace("+00:00", "Z")
    body = await report(http, operator, machine_id=machine.id, until=until)
    assert body["as_of"] == body["until"] and body["until"].startswith(until[:19])
    r = body["machines"][0]
    w = r["wallet"]
    assert w["as_of"] == body["as_of"]
    assert r["sales_count"] == 2
    assert w["lnbits_balance_sats"] == balance_then
    assert w["sales_in_sats"] == sum(s.gross_sats for s in settlements)
    assert w["other_incoming_msat"] == 10_000_000
    assert (w["difference_msat"], w["balanced"], w["differences"]) == (0, True, [])
    assert r["ok"] is True

    now = await machine_report(http, operator, machine.id)
    assert now["sales_count"] == 3
    assert now["wallet"]["lnbits_balance_sats"] == await wallet_balance(
        machine.wallet_id
    )
    assert now["wallet"]["other_incoming_msat"] == 17_000_000
    assert now["wallet"]["balanced"] is True, now["wallet"]

    response = await http.get(
        f"{API}/export/reconciliation.csv",
        params={"machine_id": machine.id, "until": until},
        headers=operator.headers,
    )
    rows = list(csv.reader(io.StringIO(response.text)))
    as_of = {(row[3], row[4]): row[10] for row in rows if row[4] == "as_of"}
    assert as_of[("period", "as_of")].startswith(until[:19])
    assert as_of[("wallet", "as_of")].startswith(until[:19])
    balances = [row for row in rows if row[4] == "lnbits_balance"]
    assert [row[7] for row in balances] == [str(balance_then)]


async def test_a_wallet_with_more_payments_than_lnbits_returns_a_call_balances(
    http, operator, make_user, customer
):
    """LNbits' get_payments returns at most 1 000 rows a call: the check reads
    the wallet's whole history (found by ``make simulate`` at 1 000 sales)."""
    machine, _, _ = await two_sales_with_a_top_up(http, operator, make_user, customer)
    from lnbits.core.crud import create_payment
    from lnbits.core.db import db as core_db
    from lnbits.core.models import CreatePayment, PaymentState
    from lnbits.utils.crypto import random_secret_and_hash

    # Small top-ups: real rows in LNbits' payments table, written by LNbits'
    # own create_payment in one connection, as its admin credit writes them
    # (without an invoice listener round per row, which only costs time).
    async with core_db.connect() as conn:
        for _ in range(1_001):
            _, payment_hash = random_secret_and_hash()
            await create_payment(
                checking_id=f"internal_{payment_hash}",
                data=CreatePayment(
                    wallet_id=machine.wallet_id,
                    bolt11=f"lnbcrt10n1test{payment_hash[:20]}",
                    payment_hash=payment_hash,
                    amount_msat=1_000,
                    memo="Admin credit",
                ),
                status=PaymentState.SUCCESS,
                conn=conn,
            )
    r = await machine_report(http, operator, machine.id)
    assert r["wallet"]["lnbits_balance_sats"] == await wallet_balance(machine.wallet_id)
    assert r["wallet"]["balanced"] is True, r["wallet"]
    assert r["sales_count"] == 2


async def test_a_payment_out_of_the_machine_wallet_that_is_no_leg_is_flagged(
    http, operator, make_user, customer
):
    machine, _, _ = await two_sales_with_a_top_up(http, operator, make_user, customer)
    stranger = await make_user("stranger")
    invoice = await http.post(
        "/api/v1/payments",
        json={"out": False, "amount": 1234, "memo": "cash"},
        headers={"X-Api-Key": stranger.wallet.inkey},
    )
    paid = await http.post(
        "/api/v1/payments",
        json={"out": True, "bolt11": invoice.json()["bolt11"]},
        headers={"X-Api-Key": operator.wallets[1].adminkey},
    )
    assert paid.status_code in (200, 201), paid.text

    r = await machine_report(http, operator, machine.id)
    w = r["wallet"]
    assert w["balanced"] is False and r["ok"] is False
    assert w["difference_msat"] == -1_234_000
    assert [
        (d["kind"], d["balance_effect_msat"], d["payment_hash"])
        for d in w["differences"]
    ] == [("payment_not_a_leg", -1_234_000, invoice.json()["payment_hash"])]
    assert w["lnbits_balance_sats"] == await wallet_balance(machine.wallet_id)


async def test_a_leg_lnbits_paid_but_did_not_credit_and_a_completed_leg_without_payment(
    http, operator, make_user, customer
):
    """The state a SIGKILL between LNbits' two commits leaves (the payer
    debited, the destination's invoice not marked paid), and a leg the
    ledger says completed that LNbits never paid."""
    from lnbits.core.crud import get_standalone_payment, update_payment
    from lnbits.core.models import PaymentState
    from satmachineadmin import crud

    machine, lp, settlements = await two_sales_with_a_top_up(
        http, operator, make_user, customer
    )
    legs = [leg for s in settlements for leg in await ledger(s.id)]
    dca = next(
        leg for leg in legs if leg.leg_type == "dca" and leg.status == "completed"
    )
    invoice = await get_standalone_payment(
        dca.payment_hash, incoming=True, wallet_id=lp.wallet.id
    )
    assert invoice is not None
    invoice.status = PaymentState.PENDING
    await update_payment(invoice)
    skipped = next(leg for leg in legs if leg.status == "skipped")
    skipped.status = "completed"
    await crud.update_leg(skipped)

    r = await machine_report(http, operator, machine.id)
    found = {d["kind"]: d for d in r["wallet"]["differences"]}
    assert set(found) == {"destination_not_credited", "completed_leg_without_payment"}
    assert found["destination_not_credited"]["leg_id"] == dca.id
    assert found["destination_not_credited"]["balance_effect_msat"] == 0
    assert "pending" in found["destination_not_credited"]["explanation"]
    assert found["completed_leg_without_payment"]["leg_id"] == skipped.id
    assert (
        found["completed_leg_without_payment"]["balance_effect_msat"]
        == skipped.amount_sats * 1000
    )
    assert r["wallet"]["difference_msat"] == skipped.amount_sats * 1000
    assert r["ok"] is False

    csv_response = await http.get(
        f"{API}/export/reconciliation.csv",
        params={"machine_id": machine.id},
        headers=operator.headers,
    )
    rows = list(csv.reader(io.StringIO(csv_response.text)))
    kinds = {row[4] for row in rows if row[3] == "wallet_difference"}
    assert kinds == {"destination_not_credited", "completed_leg_without_payment"}
    result = next(row for row in rows if row[3] == "totals" and row[4] == "result")
    assert result[5] == "DIFFERENT"


async def test_refund_hold_of_a_partial_dispense_is_reported(http, operator, customer):
    machine_wallet = operator.wallets[1]
    machine = await add_machine(operator, machine_wallet)
    sale = dca_sale(machine)
    extra = sale.extra("bad-sum")
    extra["fee_sats"] += 1  # does not add up: lands errored, nothing paid
    payment_hash = await make_sale(
        http, machine_wallet, customer.wallet, gross_sats=sale.gross_sats, extra=extra
    )
    settlement = await wait_for_settlement(payment_hash)
    assert settlement.status == "errored"
    response = await http.post(
        f"{API}/settlements/{settlement.id}/partial-dispense",
        json={"dispensed_fraction": "0.5"},
        headers=operator.headers,
    )
    assert response.status_code == 200, response.text
    legs = await ledger(settlement.id)
    refund = [leg for leg in legs if leg.leg_type == "refund"]
    assert len(refund) == 1 and refund[0].status == "skipped"

    r = await machine_report(http, operator, machine.id)
    assert r["refund_held_sats"] == refund[0].amount_sats > 0
    assert r["held_sats"] == sum(
        leg.amount_sats for leg in legs if leg.status == "skipped"
    )
    assert r["settlements_by_status"] == {"partial": 1}
    assert r["wallet"]["balanced"] is True
    assert r["wallet"]["lnbits_balance_sats"] == await wallet_balance(machine_wallet.id)


async def test_other_operators_machine_is_404_and_listing_is_scoped(
    http, operator, other_operator
):
    mine = await add_machine(operator, operator.wallets[1])
    theirs = await add_machine(other_operator, other_operator.wallets[1])
    for path in ("/reconciliation", "/export/reconciliation.csv"):
        response = await http.get(
            f"{API}{path}", params={"machine_id": theirs.id}, headers=operator.headers
        )
        assert response.status_code == 404, response.text
    body = await report(http, operator)
    assert [m["machine_id"] for m in body["machines"]] == [mine.id]
    assert (await http.get(f"{API}/reconciliation")).status_code == 401


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01"}, "until"),
        ({"since": "2026-12-02", "until": "2026-12-01"}, "until"),
        ({"since": "2026-12-01T10:00:00Z", "until": "2026-12-01T09:00:00Z"}, "until"),
    ],
)
async def test_bad_dates_are_422_naming_the_field(http, operator, params, field):
    for path in ("/reconciliation", "/export/reconciliation.csv"):
        response = await http.get(
            f"{API}{path}", params=params, headers=operator.headers
        )
        assert response.status_code == 422, response.text
        assert response.json()["detail"].startswith(f"{field}:")


async def test_csv_neutralises_formula_cells(http, operator):
    from satmachineadmin import crud

    machine = await add_machine(operator, operator.wallets[1])
    machine.name = "=HYPERLINK(1)"
    await crud.update_machine(machine)
    response = await http.get(
        f"{API}/export/reconciliation.csv",
        params={"machine_id": machine.id},
        headers=operator.headers,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0][:4] == ["machine_id", "machine_name", "currency", "section"]
    machine_rows = [row for row in rows if row[0] == machine.id]
    assert machine_rows and all(row[1] == "'=HYPERLINK(1)" for row in machine_rows)
    assert not any(
        cell.startswith(("=", "+", "-", "@"))
        for row in rows
        for cell in row
        if cell and not cell.lstrip("-").isdigit()
    )


# --- the pure part: every difference is explained ------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

LEG_STATUSES = ("completed", "pending", "failed", "skipped", "voided")


@st.composite
def wallet_history(draw):
    """A machine wallet's ledger and LNbits payments that disagree at random."""
    from satmachineadmin.models import DcaPayment, Machine
    from satmachineadmin.reconciliation import LnbitsEntry, MachineInputs, SettlementRow

    machine = Machine(
        id="m", operator_user_id="op", npub="npub1x", wallet_id="w", name="M",
        currency="GTQ",
    )  # fmt: skip
    settlements, legs, payments = [], [], []
    for i in range(draw(st.integers(0, 6))):
        gross = draw(st.integers(1, 10_000))
        source = draw(st.sampled_from(("bitspire", "bitspire", "manual")))
        settlements.append(
            SettlementRow(
                id=f"s{i}", machine_id="m", operator_user_id="op",
                payment_hash=f"h{i}", gross_sats=gross, net_sats=gross,
                commission_sats=0, platform_fee_sats=0, operator_fee_sats=0,
                super_fee_pct=Decimal(0), currency="GTQ", source=source,
            )
        )  # fmt: skip
        if source == "bitspire" and draw(st.booleans()):  # LNbits got the sale
            paid = gross * 1000 + draw(st.sampled_from((0, 0, 0, 1000, -500)))
            payments.append(LnbitsEntry(f"h{i}", paid, 0, "success", "bitspire"))
    for j in range(draw(st.integers(0, 8))):
        amount = draw(st.integers(1, 5_000))
        status = draw(st.sampled_from(LEG_STATUSES))
        legs.append(
            DcaPayment(
                id=f"l{j}", idempotency_key=f"k{j}", machine_id="m",
                operator_user_id="op", leg_type="dca", status=status,
                amount_sats=amount, source_wallet_id="w",
                destination_wallet_id="d", payment_hash=f"p{j}",
            )
        )  # fmt: skip
        if draw(st.booleans()):  # LNbits paid it (maybe not as recorded)
            sent = amount * 1000 + draw(st.sampled_from((0, 0, 2000)))
            fee = draw(st.sampled_from((0, 0, 10)))
            payments.append(LnbitsEntry(f"p{j}", -sent, -fee, "success"))
    for k in range(draw(st.integers(0, 3))):  # top-ups and payments that are no leg
        amount = draw(st.integers(1, 5_000)) * 1000
        sign = draw(st.sampled_from((1, -1)))
        payments.append(LnbitsEntry(f"x{k}", sign * amount, 0, "success"))
    balance = sum(p.amount_msat - abs(p.fee_msat) for p in payments)
    status = {
        p.payment_hash: draw(st.sampled_from(("success", "pending"))) for p in payments
    }
    return MachineInputs(machine, settlements, legs, payments, balance, status)


@settings(max_examples=300, deadline=None)
@given(inputs=wallet_history())
def test_the_differences_explain_the_whole_difference(app, inputs):
    """(``app``: the extension is importable once LNbits has loaded it.)"""
    from satmachineadmin.reconciliation import reconcile_wallet

    w = reconcile_wallet(inputs)
    assert w.difference_msat == w.lnbits_balance_msat - w.expected_balance_msat
    assert sum(d.balance_effect_msat for d in w.differences) == w.difference_msat
    assert all(d.kind != "unexplained" for d in w.differences)
    assert w.balanced == (not w.differences)
    if w.balanced:
        assert w.lnbits_balance_msat == w.expected_balance_msat
