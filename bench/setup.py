"""Machines, LPs, splits and the platform fee, set up through the extension's
crud (imported as LNbits loaded it: the top-level module ``satmachineadmin``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from decimal import Decimal

from bech32 import bech32_encode, convertbits

from .env import Actor

CURRENCY = "GTQ"
RATE = Decimal(772114)  # GTQ per BTC
FEE_PCT = Decimal("0.03")
PLATFORM_FEE_PCT = "0.30"


def make_npub() -> str:
    data = convertbits(os.urandom(32), 8, 5)
    assert data is not None
    return bech32_encode("npub", data)


async def add_machine(operator_id: str, wallet_id: str, name: str = "ATM"):
    from satmachineadmin import crud
    from satmachineadmin.models import Machine

    return await crud.create_machine(
        Machine(
            id=crud.new_id(),
            operator_user_id=operator_id,
            npub=make_npub(),
            wallet_id=wallet_id,
            name=name,
            currency=CURRENCY,
        )
    )


async def add_lps(machine, lps: Sequence[Actor], deposit: Decimal) -> list[str]:
    """One flow-mode position per LP at ``machine``, each with one confirmed
    deposit, written in one transaction (setup, not measured)."""
    from satmachineadmin import crud
    from satmachineadmin.calculations import to_minor_units
    from satmachineadmin.models import DcaClient, DcaDeposit

    ids = []
    async with crud.transaction() as conn:
        for lp in lps:
            client = DcaClient(
                id=crud.new_id(),
                machine_id=machine.id,
                operator_user_id=machine.operator_user_id,
                user_id=lp.id,
                wallet_id=lp.wallet.id,
            )
            await crud._insert(conn, "clients", client, commit=False)
            await crud._insert(
                conn,
                "deposits",
                DcaDeposit(
                    id=crud.new_id(),
                    client_id=client.id,
                    machine_id=machine.id,
                    operator_user_id=machine.operator_user_id,
                    amount_minor=to_minor_units(deposit, machine.currency),
                    currency=machine.currency,
                    status="confirmed",
                    creator_user_id=machine.operator_user_id,
                ),
                commit=False,
            )
            ids.append(client.id)
    return ids


async def set_splits(operator_id: str, wallet_pcts: Sequence[tuple[str, str]]):
    from satmachineadmin import crud
    from satmachineadmin.models import CommissionSplitLeg

    return await crud.replace_commission_splits(
        operator_id,
        None,
        [
            CommissionSplitLeg(wallet_id=w, pct=Decimal(p), label=f"leg{i}")
            for i, (w, p) in enumerate(wallet_pcts)
        ],
    )


async def set_platform_fee(pct: str, wallet_id: str | None):
    from satmachineadmin import crud

    return await crud.set_super_config(Decimal(pct), wallet_id)


async def landed_settlement(machine, sale, payment_hash: str):
    """A settlement as ``landing.land_payment`` records it for a bitSpire
    sale, written straight through crud (so no worker picks it up)."""
    from satmachineadmin import crud
    from satmachineadmin.calculations import (
        split_two_stage_commission,
        to_minor_units,
    )
    from satmachineadmin.models import DcaSettlement

    config = await crud.get_super_config()
    platform, operator = split_two_stage_commission(sale.fee_sats, config.super_fee_pct)
    settlement, created = await crud.create_settlement_idempotent(
        DcaSettlement(
            id=crud.new_id(),
            machine_id=machine.id,
            operator_user_id=machine.operator_user_id,
            payment_hash=payment_hash,
            txid=payment_hash[:12],
            gross_sats=sale.gross_sats,
            net_sats=sale.net_sats,
            commission_sats=sale.fee_sats,
            platform_fee_sats=platform,
            operator_fee_sats=operator,
            super_fee_pct=config.super_fee_pct,
            fee_pct=sale.fee_pct,
            exchange_rate=sale.exchange_rate,
            fiat_amount_minor=to_minor_units(sale.fiat_amount, sale.currency),
            currency=sale.currency,
        )
    )
    assert created
    return settlement
