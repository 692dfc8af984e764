"""Building blocks for pipeline tests: machines, LPs, deposits and sales set up
through the extension's own crud, sales paid through real LNbits invoices."""

from __future__ import annotations

import os
import sys
from decimal import Decimal
from pathlib import Path

from bech32 import bech32_encode, convertbits

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # for bench.simulator

from bench.simulator import Sale, sell


def make_npub() -> str:
    data = convertbits(os.urandom(32), 8, 5)
    assert data is not None
    return bech32_encode("npub", data)


async def add_machine(
    operator, wallet, *, currency: str = "GTQ", fallback_pct: Decimal | None = None
):
    from satmachineadmin import crud
    from satmachineadmin.models import Machine

    return await crud.create_machine(
        Machine(
            id=crud.new_id(),
            operator_user_id=operator.id,
            npub=make_npub(),
            wallet_id=wallet.id,
            name=f"ATM {wallet.id[:4]}",
            currency=currency,
            fallback_commission_pct=fallback_pct,
        )
    )


async def add_lp(machine, lp, deposit: Decimal | None, wallet=None):
    """Register an LP at a machine, with one confirmed deposit."""
    from satmachineadmin import crud
    from satmachineadmin.calculations import to_minor_units
    from satmachineadmin.models import DcaClient, DcaDeposit

    client = await crud.create_client(
        DcaClient(
            id=crud.new_id(),
            machine_id=machine.id,
            operator_user_id=machine.operator_user_id,
            user_id=lp.id,
            wallet_id=(wallet or lp.wallet).id,
            username=lp.username,
        )
    )
    if deposit:
        await crud.create_deposit(
            DcaDeposit(
                id=crud.new_id(),
                client_id=client.id,
                machine_id=machine.id,
                operator_user_id=machine.operator_user_id,
                amount_minor=to_minor_units(deposit, machine.currency),
                currency=machine.currency,
                status="confirmed",
                creator_user_id=machine.operator_user_id,
            )
        )
    return client


async def set_splits(operator, legs: list[tuple[str, str]], machine_id=None):
    from satmachineadmin import crud
    from satmachineadmin.models import CommissionSplitLeg

    return await crud.replace_commission_splits(
        operator.id,
        machine_id,
        [
            CommissionSplitLeg(wallet_id=w, pct=Decimal(p), label=f"leg{i}")
            for i, (w, p) in enumerate(legs)
        ],
    )


async def set_platform_fee(pct: str, wallet_id: str | None):
    from satmachineadmin import crud

    return await crud.set_super_config(Decimal(pct), wallet_id)


def dca_sale(machine, fiat="2000", rate="772114", fee_pct="0.03") -> Sale:
    return Sale(
        Decimal(fiat), Decimal(rate), Decimal(fee_pct), machine.currency, machine.npub
    )


async def make_sale(http, machine_wallet, customer_wallet, sale=None, **kwargs) -> str:
    return await sell(
        http,
        machine_inkey=machine_wallet.inkey,
        customer_adminkey=customer_wallet.adminkey,
        sale=sale,
        **kwargs,
    )


FINAL = {"processed", "errored", "partial", "refunded"}


async def wait_for_settlement(payment_hash: str, statuses=FINAL, timeout: float = 120):
    """The settlement of a payment, once the pipeline has brought it to one of
    ``statuses``."""
    from satmachineadmin import crud
    from waits import until

    return await until(
        lambda: crud.get_settlement_by_payment_hash(payment_hash),
        lambda s: s is not None and s.status in statuses,
        what=f"the settlement of {payment_hash} in {sorted(statuses)}",
        timeout=timeout,
    )


async def ledger(settlement_id: str):
    """A settlement's legs that count (not voided)."""
    from satmachineadmin import crud

    return [leg for leg in await crud.get_legs(settlement_id) if leg.status != "voided"]


async def assert_ledger_adds_up(settlement) -> None:
    legs = await ledger(settlement.id)
    assert sum(leg.amount_sats for leg in legs) == settlement.gross_sats, legs
    for leg in legs:
        if leg.status == "skipped":
            assert leg.reason, leg
