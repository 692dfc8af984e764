"""The settlement pipeline end to end, in a real LNbits: sales paid through
invoices, the real listener and workers, balances read from LNbits."""

from __future__ import annotations

import asyncio
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


async def balances(*wallets) -> list[int]:
    return [await wallet_balance(w.id) for w in wallets]


async def test_domain_example_two_lps_and_two_stage_split(
    http, operator, make_user, customer, fee_wallet
):
    """9 000 / 1 000 GTQ LPs, 30 % platform fee, operator split 50/30/20."""
    machine_wallet = operator.wallets[1]
    machine = await add_machine(operator, machine_wallet)
    split_wallets = [operator.wallets[0], operator.wallets[2], operator.wallets[3]]
    await set_splits(
        operator,
        [
            (split_wallets[0].id, "0.5"),
            (split_wallets[1].id, "0.3"),
            (split_wallets[2].id, "0.2"),
        ],
    )
    lp_a, lp_b = await make_user("lp_a"), await make_user("lp_b")
    await add_lp(machine, lp_a, Decimal(9000))
    await add_lp(machine, lp_b, Decimal(1000))
    before = await balances(fee_wallet, *split_wallets, lp_a.wallet, lp_b.wallet)

    sale = dca_sale(machine)  # 2 000 GTQ at 772 114 GTQ/BTC, 3 % commission
    assert (sale.net_sats, sale.fee_sats, sale.gross_sats) == (259_029, 7_771, 266_800)
    payment_hash = await make_sale(http, machine_wallet, customer.wallet, sale)
    settlement = await wait_for_settlement(payment_hash)

    assert settlement.status == "processed"
    assert settlement.platform_fee_sats == 2_331  # round(7 771 * 0.3)
    assert settlement.operator_fee_sats == 5_440
    after = await balances(fee_wallet, *split_wallets, lp_a.wallet, lp_b.wallet)
    received = [a - b for a, b in zip(after, before, strict=True)]
    assert received == [2_331, 2_720, 1_632, 1_088, 233_126, 25_903]
    assert await wallet_balance(machine_wallet.id) == 0  # nothing stayed

    legs = await ledger(settlement.id)
    dca = sorted(
        (leg for leg in legs if leg.leg_type == "dca"), key=lambda leg: -leg.amount_sats
    )
    assert [(leg.amount_sats, leg.fiat_amount) for leg in dca] == [
        (233_126, Decimal("1800.00")),
        (25_903, Decimal("200.00")),
    ]
    assert dca[0].memo == "DCA 1,800.00 GTQ @ 772,114 GTQ/BTC"
    assert all(leg.status == "completed" and leg.payment_hash for leg in legs)
    await assert_ledger_adds_up(settlement)

    from lnbits.core.crud import get_standalone_payment

    incoming = await get_standalone_payment(dca[0].payment_hash, incoming=True)
    assert incoming.tag == f"satmachine:{machine.npub}"
    assert incoming.memo == dca[0].memo


async def test_sync_mismatch_pays_what_balances_buy_and_keeps_the_rest(
    http, operator, make_user, customer
):
    machine_wallet = operator.wallets[1]
    machine = await add_machine(operator, machine_wallet)
    lp_a, lp_b = await make_user("lp_a"), await make_user("lp_b")
    client_a = await add_lp(machine, lp_a, Decimal(1500))
    await add_lp(machine, lp_b, Decimal(100))

    sale = dca_sale(machine, fee_pct="0")
    payment_hash = await make_sale(http, machine_wallet, customer.wallet, sale)
    settlement = await wait_for_settlement(payment_hash)

    assert settlement.status == "processed"
    assert await balances(lp_a.wallet, lp_b.wallet) == [194_271, 12_951]
    assert await wallet_balance(machine_wallet.id) == 51_807
    skipped = [leg for leg in await ledger(settlement.id) if leg.status == "skipped"]
    assert [(leg.leg_type, leg.amount_sats) for leg in skipped] == [("dca", 51_807)]
    assert "LP balances" in skipped[0].reason
    await assert_ledger_adds_up(settlement)

    from satmachineadmin import crud

    balance = (await crud.get_client_balances([client_a.id]))[client_a.id]
    assert balance.total_charged == Decimal("1499.99")
    assert balance.remaining_balance == Decimal("0.01")
    assert balance.total_sats == 194_271


async def test_fallback_machine_back_derives_and_keeps_the_principal(
    http, operator, customer, fee_wallet
):
    machine_wallet = operator.wallets[1]
    await add_machine(operator, machine_wallet, fallback_pct=Decimal("0.05"))
    await set_splits(operator, [(operator.wallets[2].id, "1")])

    payment_hash = await make_sale(
        http, machine_wallet, customer.wallet, gross_sats=266_800, extra=None
    )
    settlement = await wait_for_settlement(payment_hash)

    assert settlement.used_fallback_split
    assert (settlement.net_sats, settlement.commission_sats) == (254_095, 12_705)
    assert settlement.status == "processed"
    skipped = [leg for leg in await ledger(settlement.id) if leg.status == "skipped"]
    assert [(leg.leg_type, leg.amount_sats) for leg in skipped] == [("dca", 254_095)]
    assert await wallet_balance(machine_wallet.id) == 254_095  # no price: no DCA
    await assert_ledger_adds_up(settlement)


async def test_payments_that_are_not_sales_are_ignored(http, operator, customer):
    await credit(operator.wallets[0].id, 10_000)
    from satmachineadmin import crud

    plain = await add_machine(operator, operator.wallets[1])
    fallback = await add_machine(
        operator, operator.wallets[2], fallback_pct=Decimal("0.05")
    )
    hashes = [
        # no bitSpire data at a machine that did not opt in to the fallback
        await make_sale(http, operator.wallets[1], customer.wallet, gross_sats=1000),
        # another extension's payment (tagged) into a fallback machine
        await make_sale(
            http,
            operator.wallets[2],
            customer.wallet,
            gross_sats=1000,
            extra={"tag": "lnurlp"},
        ),
        # the operator topping up a fallback machine from their own wallet
        await make_sale(http, operator.wallets[2], operator.wallets[0], gross_sats=700),
        # a sale-shaped payment into a wallet that is no machine's
        await make_sale(
            http, operator.wallets[3], customer.wallet, sale=dca_sale(plain)
        ),
    ]
    await credit(fallback.wallet_id, 5_000)  # the super user's admin credit
    await asyncio.sleep(0.5)
    for payment_hash in hashes:
        assert await crud.get_settlement_by_payment_hash(payment_hash) is None
    assert await crud.list_settlements(operator.id) == []


@pytest.mark.parametrize(
    ("extra_change", "reason"),
    [
        ({"net_sats": 1}, "net_sats + fee_sats"),
        ({"machine_npub": "npub1other"}, "machine_npub"),
        ({"currency": "USD"}, "currency"),
        ({"fee_sats": "a lot"}, "fee_sats"),
    ],
)
async def test_sale_whose_data_does_not_add_up_lands_errored_and_pays_nothing(
    http, operator, make_user, customer, extra_change, reason
):
    machine_wallet = operator.wallets[1]
    machine = await add_machine(operator, machine_wallet)
    lp = await make_user("lp")
    await add_lp(machine, lp, Decimal(9000))
    sale = dca_sale(machine)
    extra = {**sale.extra("tx1"), **extra_change}

    payment_hash = await make_sale(
        http, machine_wallet, customer.wallet, gross_sats=sale.gross_sats, extra=extra
    )
    settlement = await wait_for_settlement(payment_hash)

    assert settlement.status == "errored"
    assert reason in settlement.error
    assert await wallet_balance(lp.wallet.id) == 0
    assert await wallet_balance(machine_wallet.id) == sale.gross_sats
    await assert_ledger_adds_up(settlement)


async def test_same_payment_delivered_fifty_times_lands_and_pays_once(
    http, operator, make_user, customer
):
    from lnbits.core.crud import get_standalone_payment
    from satmachineadmin import crud, distribution, landing, tasks

    machine_wallet = operator.wallets[1]
    machine = await add_machine(operator, machine_wallet)
    await set_splits(operator, [(operator.wallets[2].id, "1")])
    lp = await make_user("lp")
    await add_lp(machine, lp, Decimal(9000))

    payment_hash = await make_sale(
        http, machine_wallet, customer.wallet, dca_sale(machine)
    )
    payment = await get_standalone_payment(payment_hash, incoming=True)
    # Fifty more deliveries, all at once: through the listener and directly.
    await asyncio.gather(
        *(tasks.on_invoice_paid(payment) for _ in range(25)),
        *(landing.land_payment(payment) for _ in range(25)),
    )
    settlement = await wait_for_settlement(payment_hash)
    await asyncio.gather(
        *(distribution.process_settlement(settlement.id) for _ in range(10))
    )
    await asyncio.sleep(0.5)  # let queued deliveries drain

    settlements = await crud.list_settlements(operator.id)
    assert [s.payment_hash for s in settlements] == [payment_hash]
    legs = await ledger(settlement.id)
    assert len(legs) == 2 and {leg.leg_type for leg in legs} == {
        "dca",
        "operator_split",
    }
    sale = dca_sale(machine)
    assert await wallet_balance(lp.wallet.id) == sale.net_sats
    assert await wallet_balance(operator.wallets[2].id) == sale.fee_sats
    assert await wallet_balance(machine_wallet.id) == 0


async def test_notes_are_appended_with_utc_time_and_author(http, operator, customer):
    from satmachineadmin import actions
    from satmachineadmin.errors import Invalid

    machine_wallet = operator.wallets[1]
    machine = await add_machine(operator, machine_wallet)
    payment_hash = await make_sale(
        http, machine_wallet, customer.wallet, dca_sale(machine)
    )
    settlement = await wait_for_settlement(payment_hash)

    await actions.append_settlement_note(
        settlement.id, "cash drawer short", operator.id
    )
    updated = await actions.append_settlement_note(
        settlement.id, "refunded <50> GTQ by hand", "someone-else"
    )
    lines = updated.notes.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(f"Z] {operator.id}: cash drawer short")
    assert lines[1].endswith("Z] someone-else: refunded <50> GTQ by hand")
    with pytest.raises(Invalid):
        await actions.append_settlement_note(settlement.id, "x" * 2001, operator.id)
    with pytest.raises(Invalid):
        await actions.append_settlement_note(settlement.id, "   ", operator.id)
