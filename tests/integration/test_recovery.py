"""Never pay twice, never lose a sale: crashes at every step of distribution,
sales made while the extension was stopped, failed legs and their retry,
partial dispense. The extension is stopped and started as LNbits would."""

from __future__ import annotations

import asyncio
from datetime import timedelta
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


@pytest.fixture
async def customer(make_user):
    user = await make_user("customer")
    await credit(user.wallet.id, 5_000_000)
    return user


@pytest.fixture
async def extension():
    """Stop and start the extension's tasks, as an LNbits restart would."""
    import satmachineadmin

    class Control:
        stop = staticmethod(satmachineadmin.satmachineadmin_stop)
        start = staticmethod(satmachineadmin.satmachineadmin_start)

    yield Control
    if not satmachineadmin.scheduled_tasks:
        satmachineadmin.satmachineadmin_start()


@pytest.fixture
async def shop(operator, make_user, superuser):
    """A machine with a 30 % platform fee, one split leg and two LPs."""
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


# What each payee gets from one 2 000 GTQ sale (see the domain example).
EXPECTED = [2_331, 5_440, 233_126, 25_903]


async def received(payees, before):
    return [await wallet_balance(w.id) - b for w, b in zip(payees, before, strict=True)]


async def drain(http, machine_wallet, customer, keep: int) -> None:
    """Move sats out of the machine wallet so that `keep` remain."""
    amount = await wallet_balance(machine_wallet.id) - keep
    invoice = await create_sale_invoice(http, customer.wallet.inkey, amount, None)
    await pay(http, machine_wallet.adminkey, invoice["bolt11"])
    assert await wallet_balance(machine_wallet.id) == keep


# Every checkpoint of distribution; per-leg steps at the first and third leg.
CRASHES = [
    ("planned", 1),
    *(
        (step, n)
        for step in ("invoice_created", "invoice_attached", "paid")
        for n in (1, 3)
    ),
    ("before_finish", 1),
]


@pytest.mark.parametrize(("step", "occurrence"), CRASHES)
async def test_crash_at_any_step_then_restart_pays_every_leg_exactly_once(
    http, shop, customer, extension, monkeypatch, step, occurrence
):
    from satmachineadmin import distribution, payer

    payees = shop["payees"]
    before = [await wallet_balance(w.id) for w in payees]
    crashed = []

    def crash(name: str) -> None:
        if name == step:
            crashed.append(name)
            if len(crashed) == occurrence:
                raise payer.SimulatedCrash(name)

    monkeypatch.setattr(payer, "checkpoint", crash)
    monkeypatch.setattr(distribution, "LEASE", timedelta(milliseconds=300))
    payment_hash = await make_sale(
        http, shop["machine_wallet"], customer.wallet, dca_sale(shop["machine"])
    )
    # The worker died mid-settlement: the settlement is left processing.
    settlement = await wait_for_settlement(payment_hash, statuses={"processing"})
    for _ in range(200):  # up to 10 s, however loaded the machine
        if len(crashed) >= occurrence:
            break
        await wait_for_settlement(payment_hash, statuses={"processing"}, timeout=1)
        await asyncio.sleep(0.05)
    assert len(crashed) == occurrence

    extension.stop()  # LNbits goes down ...
    monkeypatch.setattr(payer, "checkpoint", lambda name: None)
    await asyncio.sleep(0.4)  # ... long enough for the dead worker's lease
    extension.start()  # ... and comes back: recovery resumes the settlement

    settlement = await wait_for_settlement(payment_hash)
    assert settlement.status == "processed"
    assert await received(payees, before) == EXPECTED
    assert await wallet_balance(shop["machine_wallet"].id) == 0
    legs = await ledger(settlement.id)
    assert all(leg.status == "completed" for leg in legs)
    await assert_ledger_adds_up(settlement)


async def test_sales_made_while_the_extension_was_stopped_land_on_start(
    http, shop, customer, extension
):
    from satmachineadmin import crud

    payees = shop["payees"]
    before = [await wallet_balance(w.id) for w in payees]
    extension.stop()
    hashes = [
        await make_sale(
            http, shop["machine_wallet"], customer.wallet, dca_sale(shop["machine"])
        )
        for _ in range(3)
    ]
    import asyncio

    await asyncio.sleep(0.3)
    for payment_hash in hashes:  # nobody was listening
        assert await crud.get_settlement_by_payment_hash(payment_hash) is None

    extension.start()
    for payment_hash in hashes:
        settlement = await wait_for_settlement(payment_hash)
        assert settlement.status == "processed"
        await assert_ledger_adds_up(settlement)
    got = await received(payees, before)
    assert got[:2] == [3 * EXPECTED[0], 3 * EXPECTED[1]]
    # Three sales of 2 000 GTQ each share the LPs' 10 000 GTQ nine to one.
    assert sum(got[2:]) == 3 * (EXPECTED[2] + EXPECTED[3])


async def test_failed_legs_leave_it_errored_and_a_retry_pays_only_what_is_missing(
    http, shop, customer, extension
):
    from satmachineadmin import actions
    from satmachineadmin.errors import Conflict

    payees = shop["payees"]
    before = [await wallet_balance(w.id) for w in payees]
    machine_wallet = shop["machine_wallet"]
    extension.stop()
    payment_hash = await make_sale(
        http, machine_wallet, customer.wallet, dca_sale(shop["machine"])
    )
    # Leave enough for the fee legs and LP B, not for LP A's 233 126 sats.
    await drain(http, machine_wallet, customer, keep=40_000)
    extension.start()

    settlement = await wait_for_settlement(payment_hash)
    assert settlement.status == "errored"
    assert "233126 sats failed" in settlement.error
    assert await received(payees, before) == [2_331, 5_440, 0, 25_903]
    failed = [leg for leg in await ledger(settlement.id) if leg.status == "failed"]
    assert [(leg.amount_sats, bool(leg.error)) for leg in failed] == [(233_126, True)]
    await assert_ledger_adds_up(settlement)

    with pytest.raises(Conflict):  # no partial dispense once a leg was paid
        await actions.apply_partial_dispense(
            settlement.id,
            dispensed_fraction=Decimal("0.5"),
            dispensed_sats=None,
            notes="",
            author_user_id="op",
        )

    await credit(machine_wallet.id, 300_000)  # the operator tops the wallet up
    settlement = await actions.retry_settlement(settlement.id)
    assert settlement.status == "processed"
    assert await received(payees, before) == EXPECTED
    await assert_ledger_adds_up(settlement)
    with pytest.raises(Conflict):  # nothing left to retry
        await actions.retry_settlement(settlement.id)


@pytest.mark.parametrize(
    ("fraction", "status"), [(Decimal("0.5"), "partial"), (Decimal(0), "refunded")]
)
async def test_partial_dispense_before_any_leg_completed_rescales_and_pays(
    http, shop, customer, extension, operator, fraction, status
):
    from satmachineadmin import actions

    payees = shop["payees"]
    before = [await wallet_balance(w.id) for w in payees]
    machine_wallet = shop["machine_wallet"]
    extension.stop()
    sale = dca_sale(shop["machine"])
    payment_hash = await make_sale(http, machine_wallet, customer.wallet, sale)
    await drain(http, machine_wallet, customer, keep=0)  # every leg will fail
    extension.start()
    settlement = await wait_for_settlement(payment_hash)
    assert settlement.status == "errored"
    assert await received(payees, before) == [0, 0, 0, 0]

    await credit(machine_wallet.id, sale.gross_sats)
    settlement = await actions.apply_partial_dispense(
        settlement.id,
        dispensed_fraction=fraction,
        dispensed_sats=None,
        notes="cassette 2 jammed",
        author_user_id=operator.id,
    )

    assert settlement.status == status
    assert settlement.gross_sats == sale.gross_sats  # what was paid never changes
    assert settlement.net_sats + settlement.commission_sats == round(
        sale.gross_sats * fraction
    )
    assert "partial dispense" in settlement.notes
    assert "cassette 2 jammed" in settlement.notes
    assert operator.id in settlement.notes
    got = await received(payees, before)
    assert sum(got) == settlement.net_sats + settlement.commission_sats
    assert await wallet_balance(machine_wallet.id) == sale.gross_sats - sum(got)
    legs = await ledger(settlement.id)
    refund = [leg for leg in legs if leg.leg_type == "refund"]
    assert [leg.amount_sats for leg in refund] == [
        sale.gross_sats - settlement.net_sats - settlement.commission_sats
    ]
    await assert_ledger_adds_up(settlement)


async def test_a_settlement_waits_in_the_processing_queue_at_most_once(extension):
    from satmachineadmin import tasks

    extension.stop()  # no worker takes from the queue meanwhile
    before = tasks._processing.qsize()
    for _ in range(3):  # e.g. landed, then found again by two recovery runs
        tasks.queue_for_processing("settlement-x")
    assert tasks._processing.qsize() == before + 1
    while not tasks._processing.empty():
        tasks._queued.discard(tasks._processing.get_nowait())
