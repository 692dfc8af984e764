"""Payout recovery (issue 9), in-process: a retry replaces an invoice LNbits
failed and pays through the fresh one, a topped-up wallet pays on retry, and
start-up recovery scans from a checkpoint. (Real SIGKILLs: tests/process/.)"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from conftest import credit, wallet_balance
from scenario import (
    add_lp,
    add_machine,
    assert_ledger_adds_up,
    dca_sale,
    ledger,
    make_sale,
    set_platform_fee,
    set_splits,
    wait_for_settlement,
)

from bench.simulator import create_sale_invoice, pay

EXPECTED = [2_331, 5_440, 233_126, 25_903]  # one 2 000 GTQ sale, as test_recovery


@pytest.fixture
async def customer(make_user):
    user = await make_user("customer")
    await credit(user.wallet.id, 5_000_000)
    return user


@pytest.fixture
async def extension():
    import satmachineadmin

    yield satmachineadmin
    if not satmachineadmin.scheduled_tasks:
        satmachineadmin.satmachineadmin_start()


@pytest.fixture
async def shop(operator, make_user, superuser):
    await set_platform_fee("0.30", superuser.wallet.id)
    machine = await add_machine(operator, operator.wallets[1])
    await set_splits(operator, [(operator.wallets[2].id, "1")])
    lp_a, lp_b = await make_user("lp_a"), await make_user("lp_b")
    await add_lp(machine, lp_a, Decimal(9000))
    await add_lp(machine, lp_b, Decimal(1000))
    yield {
        "machine": machine,
        "machine_wallet": operator.wallets[1],
        "payees": [superuser.wallet, operator.wallets[2], lp_a.wallet, lp_b.wallet],
    }
    await set_platform_fee("0", None)


async def _errored_sale(http, shop, customer, extension):
    """A sale whose legs all failed: the machine wallet was emptied before
    the extension paid them (their invoices stay attached)."""
    machine_wallet = shop["machine_wallet"]
    extension.satmachineadmin_stop()
    sale = dca_sale(shop["machine"])
    payment_hash = await make_sale(http, machine_wallet, customer.wallet, sale)
    amount = await wallet_balance(machine_wallet.id)
    invoice = await create_sale_invoice(http, customer.wallet.inkey, amount, None)
    await pay(http, machine_wallet.adminkey, invoice["bolt11"])
    extension.satmachineadmin_start()
    settlement = await wait_for_settlement(payment_hash)
    assert settlement.status == "errored"
    return settlement, sale


async def _machine_payments(wallet_id: str):
    from lnbits.core.crud import get_payments

    return [
        p
        for p in await get_payments(wallet_id=wallet_id, outgoing=True, complete=True)
        if p.success and (p.extra or {}).get("satmachineadmin")
    ]


async def test_retry_replaces_invoices_lnbits_failed_and_pays_each_leg_once(
    http, shop, customer, extension, operator
):
    from lnbits.core.crud import get_standalone_payment, update_payment
    from lnbits.core.models import PaymentState
    from satmachineadmin import actions, crud_payouts

    payees = shop["payees"]
    before = [await wallet_balance(w.id) for w in payees]
    settlement, sale = await _errored_sale(http, shop, customer, extension)
    failed = [leg for leg in await ledger(settlement.id) if leg.status == "failed"]
    assert len(failed) == 4 and all(leg.payment_hash for leg in failed)
    # What LNbits' start-up check writes after a restart for an invoice its
    # funding source no longer knows: failed, for ever unpayable.
    for leg in failed:
        invoice = await get_standalone_payment(leg.payment_hash, incoming=True)
        assert invoice is not None and invoice.pending
        invoice.status = PaymentState.FAILED
        await update_payment(invoice)

    await credit(shop["machine_wallet"].id, sale.gross_sats)  # a top-up
    settlement = await actions.retry_settlement(settlement.id)
    assert settlement.status == "processed", settlement.error
    assert [
        await wallet_balance(w.id) - b for w, b in zip(payees, before, strict=True)
    ] == (EXPECTED)
    await assert_ledger_adds_up(settlement)
    legs = {leg.id: leg for leg in await ledger(settlement.id)}
    old = {leg.id: leg.payment_hash for leg in failed}
    for leg_id, old_hash in old.items():
        assert legs[leg_id].status == "completed"
        assert legs[leg_id].invoice_replacements == 1
        assert legs[leg_id].payment_hash != old_hash
    replaced = await crud_payouts.get_replaced_invoices(list(old))
    assert {(r.leg_id, r.payment_hash) for r in replaced} == set(old.items())
    assert all(r.status == "replaced" and r.reason for r in replaced)
    # One LNbits payment per completed leg, each through its current invoice.
    paid = await _machine_payments(shop["machine_wallet"].id)
    mine = [
        p for p in paid if p.payment_hash in {leg.payment_hash for leg in legs.values()}
    ]
    assert sorted(p.payment_hash for p in mine) == sorted(
        leg.payment_hash for leg in legs.values() if leg.amount_sats
    )
    assert not [p for p in paid if p.payment_hash in set(old.values())]

    detail = await http.get(
        f"/satmachineadmin/api/v1/dca/settlements/{settlement.id}",
        headers=operator.headers,
    )
    assert detail.status_code == 200, detail.text
    body = detail.json()
    assert "invoice replaced 4 time(s)" in body["wait_reason"]
    assert len(body["replaced_invoices"]) == 4


async def test_retry_after_a_top_up_pays_each_leg_once(http, shop, customer, extension):
    """The wallet could not cover the legs; once topped up, a retry pays them.
    Whether a leg keeps its invoice or gets a fresh one is LNbits' word (its
    own check of the pending invoice); either way no invoice is paid twice
    and none that was replaced is paid at all."""
    from satmachineadmin import actions, crud_payouts

    payees = shop["payees"]
    before = [await wallet_balance(w.id) for w in payees]
    settlement, sale = await _errored_sale(http, shop, customer, extension)
    first = {leg.id: leg.payment_hash for leg in await ledger(settlement.id)}
    await credit(shop["machine_wallet"].id, sale.gross_sats)
    settlement = await actions.retry_settlement(settlement.id)
    assert settlement.status == "processed"
    assert [
        await wallet_balance(w.id) - b for w, b in zip(payees, before, strict=True)
    ] == EXPECTED
    legs = await ledger(settlement.id)
    replaced = await crud_payouts.get_replaced_invoices(list(first))
    assert {r.payment_hash for r in replaced} == {
        first[leg.id] for leg in legs if leg.payment_hash != first[leg.id]
    }
    assert sum(leg.invoice_replacements for leg in legs) == len(replaced)
    paid = [p.payment_hash for p in await _machine_payments(shop["machine_wallet"].id)]
    current = {leg.payment_hash for leg in legs}
    assert sorted(h for h in paid if h in current) == sorted(current)
    assert not {r.payment_hash for r in replaced} & set(paid)


async def test_start_up_recovery_scans_from_a_checkpoint(
    http, shop, customer, extension
):
    from satmachineadmin import crud_payouts, tasks

    machine = shop["machine"]
    began = int(time.time())
    await tasks.reconcile(None)
    checkpoints = await crud_payouts.get_checkpoints()
    assert began <= checkpoints[machine.id] <= int(time.time())
    # A sale missed while the extension was stopped lands at the next start.
    extension.satmachineadmin_stop()
    payment_hash = await make_sale(
        http, shop["machine_wallet"], customer.wallet, dca_sale(machine)
    )
    assert await tasks.reconcile(None) == 1
    extension.satmachineadmin_start()
    settlement = await wait_for_settlement(payment_hash)
    assert settlement.status == "processed"
    assert (await crud_payouts.get_checkpoints())[machine.id] >= checkpoints[machine.id]


@pytest.mark.parametrize("per_pass", [1, 500])
async def test_one_recovery_pass_lands_the_missed_sales_of_every_machine(
    http, shop, customer, extension, operator, monkeypatch, per_pass
):
    """Start-up recovery reads the machine wallets together, each from its own
    start: a machine with a checkpoint and one never scanned (from its
    creation) both get their missed sale landed, once, however many wallets
    a pass reads."""
    from satmachineadmin import crud_payouts, tasks

    monkeypatch.setattr(tasks, "WALLETS_PER_PASS", per_pass)
    first = shop["machine"]
    await tasks.reconcile(None)  # the first machine now has a checkpoint
    extension.satmachineadmin_stop()
    second = await add_machine(operator, operator.wallets[3])
    assert second.id not in await crud_payouts.get_checkpoints()
    hashes = [
        await make_sale(http, wallet, customer.wallet, dca_sale(machine))
        for machine, wallet in (
            (first, shop["machine_wallet"]),
            (second, operator.wallets[3]),
        )
    ]
    assert await tasks.reconcile(None) == 2
    assert await tasks.reconcile(None) == 0
    assert await tasks.reconcile(int(time.time()) - 3600) == 0
    checkpoints = await crud_payouts.get_checkpoints()
    assert {first.id, second.id} <= set(checkpoints)
    extension.satmachineadmin_start()
    settlements = [await wait_for_settlement(h) for h in hashes]
    assert settlements[0].status == "processed"
    for settlement in settlements:  # the second has no LP: its sats stay held
        await assert_ledger_adds_up(settlement)


async def test_a_paid_invoice_lnbits_rewrote_as_failed_is_swept_and_repaired(
    http, shop, customer, extension
):
    """LNbits' pending check writes an invoice failed from a copy it read
    before this extension paid it: the payer stays debited, the payee loses
    the credit. The sweep finds it (invoices of ours LNbits failed recently),
    finishes it forward once, and records the repair."""
    from datetime import timedelta

    from lnbits.core.crud import get_standalone_payment, update_payment
    from lnbits.core.models import PaymentState
    from satmachineadmin import payer
    from satmachineadmin.models import utc_now

    payees = shop["payees"]
    payment_hash = await make_sale(
        http, shop["machine_wallet"], customer.wallet, dca_sale(shop["machine"])
    )
    settlement = await wait_for_settlement(payment_hash)
    assert settlement.status == "processed"
    after = [await wallet_balance(w.id) for w in payees]
    leg = next(leg for leg in await ledger(settlement.id) if leg.leg_type == "dca")
    extension.satmachineadmin_stop()  # only this test's sweep runs
    invoice = await get_standalone_payment(leg.payment_hash, incoming=True)
    assert invoice is not None and invoice.success
    invoice.status = PaymentState.FAILED  # the stale write
    await update_payment(invoice)
    lp_wallet = next(w for w in payees if w.id == leg.destination_wallet_id)
    assert await wallet_balance(lp_wallet.id) == after[payees.index(lp_wallet)] - (
        leg.amount_sats
    )

    assert await payer.sweep_half_done(utc_now() - timedelta(minutes=1)) == 1
    assert [await wallet_balance(w.id) for w in payees] == after
    assert await payer.sweep_half_done(utc_now() - timedelta(minutes=1)) == 0
    [repaired] = [leg for leg in await ledger(settlement.id) if leg.repaired_at]
    assert repaired.id == leg.id and "marked paid" in repaired.repair_note
    extension.satmachineadmin_start()
