"""Planning a settlement's legs: a pure function.

``plan_legs`` takes a settlement and everything it depends on (the machine,
the platform config, the operator's split rules, the machine's flow-mode LPs
and their balances) and returns the round's legs. No database, no network:
the orchestrator (``distribution.py``) loads the inputs, records the legs and
hands them to the payer.

Sats that are not paid out stay in the machine wallet as ``skipped`` legs
with a reason, so the legs always add up to the gross.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from uuid import uuid4

from .calculations import (
    SATS_PER_BTC,
    allocate_dca,
    allocate_operator_split_legs,
    fiat_for_net,
    minor_units,
    price_per_sat,
    to_minor_units,
)
from .models import (
    ClientBalance,
    CommissionSplit,
    DcaClient,
    DcaPayment,
    DcaSettlement,
    LegType,
    Machine,
    SuperConfig,
)

# Reasons a leg's sats stay in the machine wallet.
NO_FEE_WALLET = "no platform fee wallet is set"
NO_SPLIT_RULES = "the operator has no commission split rules"
NO_PRICE = "the sale has no exchange rate or fiat amount"
NO_ELIGIBLE_LP = "no active flow-mode LP with a balance at this machine"
LP_BALANCE_EXHAUSTED = "LP balances cover less than the cash dispensed"
INVALID_SALE = "the sale's data is invalid"
NOT_DISPENSED = "not dispensed: held in the machine wallet for a refund"
SAME_WALLET = "the destination is the machine wallet itself"


def plan_legs(
    settlement: DcaSettlement,
    machine: Machine,
    *,
    config: SuperConfig,
    rules: Sequence[CommissionSplit],
    clients: Sequence[DcaClient],
    balances: Mapping[str, ClientBalance],
) -> list[DcaPayment]:
    """The legs of a settlement's current round, adding up to its gross."""
    legs: list[DcaPayment] = []
    undispensed = (
        settlement.gross_sats - settlement.net_sats - settlement.commission_sats
    )
    if undispensed > 0:
        legs.append(skipped(settlement, machine, "refund", undispensed, NOT_DISPENSED))
    legs += _platform_legs(settlement, machine, config)
    legs += _operator_legs(settlement, machine, rules)
    legs += _dca_legs(settlement, machine, clients, balances)
    return legs


def _platform_legs(
    settlement: DcaSettlement, machine: Machine, config: SuperConfig
) -> list[DcaPayment]:
    sats = settlement.platform_fee_sats
    if sats <= 0:
        return []
    if not config.super_fee_wallet_id:
        return [skipped(settlement, machine, "super_fee", sats, NO_FEE_WALLET)]
    return [
        leg(
            settlement,
            machine,
            "super_fee",
            sats,
            config.super_fee_wallet_id,
            memo=f"Platform fee, ATM {machine.name} sale",
        )
    ]


def _operator_legs(
    settlement: DcaSettlement, machine: Machine, rules: Sequence[CommissionSplit]
) -> list[DcaPayment]:
    total = settlement.operator_fee_sats
    if total == 0:
        return []
    if not rules:
        return [skipped(settlement, machine, "operator_split", total, NO_SPLIT_RULES)]
    amounts = allocate_operator_split_legs(total, [rule.pct for rule in rules])
    return [
        leg(
            settlement,
            machine,
            "operator_split",
            sats,
            rule.wallet_id,
            label=rule.label,
            memo=f"Commission {rule.label or 'split'}, ATM {machine.name} sale",
        )
        for rule, sats in zip(rules, amounts, strict=True)
        if sats > 0
    ]


def _dca_legs(
    settlement: DcaSettlement,
    machine: Machine,
    clients: Sequence[DcaClient],
    balances: Mapping[str, ClientBalance],
) -> list[DcaPayment]:
    net = settlement.net_sats
    if net == 0:
        return []
    fiat = fiat_for_net(net, settlement.exchange_rate, settlement.fiat_amount)
    if fiat is None:
        return [skipped(settlement, machine, "dca", net, NO_PRICE)]
    by_id = {c.id: c for c in clients}
    remaining = {
        cid: balances[cid].remaining_balance for cid in by_id if cid in balances
    }
    allocation = allocate_dca(net, fiat, remaining, settlement.currency)
    price = price_per_sat(fiat, net)
    per_btc = (price * SATS_PER_BTC).quantize(Decimal("0.0001"), ROUND_HALF_EVEN)
    legs = [
        leg(
            settlement,
            machine,
            "dca",
            share.sats,
            by_id[share.key].wallet_id,
            client=by_id[share.key],
            fiat=share.fiat,
            price=per_btc,
            memo=dca_memo(share.fiat, per_btc, settlement.currency),
        )
        for share in allocation.legs
    ]
    if allocation.leftover_sats:
        anyone = any(balance > 0 for balance in remaining.values())
        reason = LP_BALANCE_EXHAUSTED if anyone else NO_ELIGIBLE_LP
        legs.append(
            skipped(settlement, machine, "dca", allocation.leftover_sats, reason)
        )
    return legs


def dca_memo(fiat: Decimal, per_btc: Decimal, currency: str) -> str:
    """``DCA 1,800.00 GTQ @ 772,114 GTQ/BTC``"""
    amount = format(fiat, f",.{minor_units(currency)}f")
    price = format(per_btc.quantize(Decimal(1), ROUND_HALF_EVEN), ",")
    return f"DCA {amount} {currency} @ {price} {currency}/BTC"


def leg(
    settlement: DcaSettlement,
    machine: Machine,
    leg_type: LegType,
    sats: int,
    destination_wallet_id: str,
    *,
    client: DcaClient | None = None,
    fiat: Decimal | None = None,
    price: Decimal | None = None,
    label: str = "",
    memo: str = "",
) -> DcaPayment:
    """A leg to pay from the machine wallet to ``destination_wallet_id``."""
    if destination_wallet_id == machine.wallet_id:
        return skipped(settlement, machine, leg_type, sats, SAME_WALLET)
    destination = client.id if client else destination_wallet_id
    return DcaPayment(
        id=uuid4().hex,
        idempotency_key=leg_key(settlement, leg_type, destination),
        settlement_id=settlement.id,
        distribution_round=settlement.distribution_round,
        machine_id=machine.id,
        operator_user_id=machine.operator_user_id,
        client_id=client.id if client else None,
        leg_type=leg_type,
        amount_sats=sats,
        fiat_amount_minor=(
            None if fiat is None else to_minor_units(fiat, settlement.currency)
        ),
        currency=settlement.currency if fiat is not None else None,
        price=price,
        source_wallet_id=machine.wallet_id,
        destination_wallet_id=destination_wallet_id,
        label=label,
        memo=memo,
    )


def skipped(
    settlement: DcaSettlement,
    machine: Machine,
    leg_type: LegType,
    sats: int,
    reason: str,
) -> DcaPayment:
    """Sats that stay in the machine wallet, with the reason."""
    return DcaPayment(
        id=uuid4().hex,
        idempotency_key=leg_key(settlement, leg_type, "machine"),
        settlement_id=settlement.id,
        distribution_round=settlement.distribution_round,
        machine_id=machine.id,
        operator_user_id=machine.operator_user_id,
        leg_type=leg_type,
        status="skipped",
        amount_sats=sats,
        source_wallet_id=machine.wallet_id,
        reason=reason,
        memo=f"Stays in the machine wallet: {reason}",
    )


def leg_key(settlement: DcaSettlement, leg_type: str, destination: str) -> str:
    """(settlement, round, leg type, destination): UNIQUE in the ledger."""
    return f"{settlement.id}:{settlement.distribution_round}:{leg_type}:{destination}"
