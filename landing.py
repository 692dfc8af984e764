"""Landing a sale: recording it once as a settlement.

Idempotent: a sale's key is UNIQUE in the ledger, so the same payment
delivered twice (listener and recovery, two deliveries) lands once.
"""

from __future__ import annotations

from lnbits.core.crud import get_standalone_payment, get_wallet
from lnbits.core.models import Payment
from loguru import logger

from . import crud
from .bitspire import Sale, is_bitspire, is_sale, parse_sale
from .calculations import split_two_stage_commission, to_minor_units
from .models import DcaSettlement, Machine
from .planner import INVALID_SALE, skipped


async def land_payment(payment: Payment) -> DcaSettlement | None:
    """Record a paid invoice as a settlement if it is a sale into an active
    machine's wallet. Idempotent: the same payment lands once."""
    if payment.amount <= 0 or not payment.success:
        return None
    machine = await crud.get_machine_by_wallet(payment.wallet_id)
    if machine is None or not machine.is_active:
        return None
    extra = payment.extra or {}
    fallback = machine.fallback_commission_pct is not None
    if not is_sale(
        amount_msat=payment.amount, memo=payment.memo, extra=extra, fallback=fallback
    ):
        return None
    if not is_bitspire(extra) and await _is_operator_top_up(payment, machine):
        return None
    sale = parse_sale(
        amount_msat=payment.amount,
        extra=extra,
        machine_npub=machine.npub,
        machine_currency=machine.currency,
        fallback_commission_pct=machine.fallback_commission_pct,
    )
    settlement, created = await crud.create_settlement_idempotent(
        await _settlement_for(sale, machine, payment)
    )
    if sale.error:
        # Every delivery makes sure of it: a crash right after landing must
        # not leave the gross unaccounted for.
        leg = skipped(settlement, machine, "dca", settlement.gross_sats, INVALID_SALE)
        if await crud.insert_leg(leg):
            logger.warning(
                f"satmachineadmin: sale {payment.payment_hash} on machine "
                f"{machine.name} landed errored: {sale.error}"
            )
    elif created and sale.used_fallback_split:
        logger.warning(
            f"satmachineadmin: sale {payment.payment_hash} carries no bitSpire "
            "data; commission back-derived from the machine's fallback rate"
        )
    return settlement


async def _is_operator_top_up(payment: Payment, machine: Machine) -> bool:
    """A transfer from one of the operator's own LNbits wallets is a top-up."""
    outgoing = await get_standalone_payment(f"internal_{payment.payment_hash}")
    if outgoing is None or outgoing.amount >= 0:
        return False
    wallet = await get_wallet(outgoing.wallet_id)
    return wallet is not None and wallet.user == machine.operator_user_id


async def _settlement_for(
    sale: Sale, machine: Machine, payment: Payment
) -> DcaSettlement:
    config = await crud.get_super_config()
    platform, operator = split_two_stage_commission(
        sale.commission_sats, config.super_fee_pct
    )
    return DcaSettlement(
        id=crud.new_id(),
        machine_id=machine.id,
        operator_user_id=machine.operator_user_id,
        payment_hash=payment.payment_hash,
        txid=sale.txid,
        gross_sats=sale.gross_sats,
        net_sats=sale.net_sats,
        commission_sats=sale.commission_sats,
        platform_fee_sats=platform,
        operator_fee_sats=operator,
        super_fee_pct=config.super_fee_pct,
        fee_pct=sale.fee_pct,
        exchange_rate=sale.exchange_rate,
        fiat_amount_minor=(
            None
            if sale.fiat_amount is None
            else to_minor_units(sale.fiat_amount, sale.currency)
        ),
        currency=sale.currency,
        used_fallback_split=sale.used_fallback_split,
        bills=sale.bills,
        cassettes=sale.cassettes,
        status="errored" if sale.error else "pending",
        error=f"{INVALID_SALE}: {sale.error}" if sale.error else None,
        paid_at=payment.time,
    )
