"""Landing a sale: recording it once as a settlement.

Every source (``bitspire.py``, ``lamassu.py``, ``manual.py``) turns what it
reads into a ``Sale``; ``land_sale`` is the one step that records it.
Idempotent: a sale's key is UNIQUE in the ledger (``payment_hash``, and
(machine, source, source_txid)), so the same sale seen twice (listener and
recovery, two polls, two deliveries) lands once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from lnbits.core.crud import get_standalone_payment, get_wallet
from lnbits.core.models import Payment
from loguru import logger

from . import crud, crud_sources
from .bitspire import Sale, is_bitspire, is_sale, parse_sale
from .calculations import split_two_stage_commission, to_minor_units
from .models import DcaPayment, DcaSettlement, Machine, SaleSource, SuperConfig
from .planner import INVALID_SALE, skipped


async def land_payment(payment: Payment) -> DcaSettlement | None:
    """Record a paid invoice as a settlement if it is a sale into an active
    machine's wallet. Idempotent: the same payment lands once."""
    if payment.amount <= 0 or not payment.success:
        return None
    machine = await crud.get_machine_by_wallet(payment.wallet_id)
    if machine is None or not machine.is_active:
        return None
    if machine.source != "bitspire":
        return None  # a Lamassu/manual wallet is funded, it never sells
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
    settlement, created = await land_sale(
        sale,
        machine,
        source="bitspire",
        source_txid=payment.payment_hash,
        paid_at=payment.time,
    )
    if created and sale.used_fallback_split:
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


def sale_key(source: SaleSource, machine_id: str, source_txid: str) -> str:
    """The ledger's unique key (``payment_hash``) for a sale: the Lightning
    payment hash for bitSpire; ``<source>:<machine>:<txid>`` otherwise."""
    if source == "bitspire":
        return source_txid
    return f"{source}:{machine_id}:{source_txid}"


async def land_sale(
    sale: Sale,
    machine: Machine,
    *,
    source: SaleSource,
    source_txid: str,
    paid_at: datetime | None,
    config: SuperConfig | None = None,
) -> tuple[DcaSettlement, bool]:
    """Record a sale once under its unique key. Returns (settlement, created).
    An errored sale also gets its held leg (every time: a crash right after
    landing must not leave the gross unaccounted for)."""
    settlement, created = await crud.create_settlement_idempotent(
        settlement_for(
            sale,
            machine,
            config or await crud.get_super_config(),
            source=source,
            source_txid=source_txid,
            paid_at=paid_at,
        )
    )
    if sale.error:
        if await crud.insert_leg(invalid_sale_leg(settlement, machine)):
            logger.warning(
                f"satmachineadmin: {source} sale {source_txid} on machine "
                f"{machine.name} landed errored: {sale.error}"
            )
    return settlement, created


async def land_sales(
    sales: Sequence[tuple[Sale, str, datetime | None]],
    machine: Machine,
    *,
    source: SaleSource,
) -> list[DcaSettlement]:
    """Land a batch of (sale, source_txid, when) of one machine; returns the
    settlements this call created. The ones already landed are left out
    first; the rest go in one transaction, and if another poll landed one of
    them meanwhile (a UNIQUE conflict), one by one through ``land_sale``."""
    if not sales:
        return []
    times = [when for _, _, when in sales if when is not None]
    if len(times) == len(sales):
        known = await crud_sources.known_source_txids_since(
            machine.id, source, min(times) - timedelta(seconds=1)
        )
    else:
        known = set()  # nothing left out first: the UNIQUE index decides
    known = {sale_key(source, machine.id, txid) for txid in known}
    config = await crud.get_super_config()
    fresh: dict[str, tuple[Sale, DcaSettlement]] = {}
    for sale, txid, when in sales:
        if sale_key(source, machine.id, txid) not in known and txid not in fresh:
            row = settlement_for(
                sale, machine, config, source=source, source_txid=txid, paid_at=when
            )
            fresh[txid] = (sale, row)
    rows = [row for _, row in fresh.values()]
    legs = [
        invalid_sale_leg(row, machine) for sale, row in fresh.values() if sale.error
    ]
    if await crud_sources.insert_settlements(rows, legs):
        for sale, row in fresh.values():
            if sale.error:
                logger.warning(
                    f"satmachineadmin: {source} sale {row.source_txid} on machine "
                    f"{machine.name} landed errored: {sale.error}"
                )
        return rows
    landed = []
    for sale, row in fresh.values():
        settlement, created = await land_sale(
            sale,
            machine,
            source=source,
            source_txid=row.source_txid or "",
            paid_at=row.paid_at,
            config=config,
        )
        if created:
            landed.append(settlement)
    return landed


def invalid_sale_leg(settlement: DcaSettlement, machine: Machine) -> DcaPayment:
    return skipped(settlement, machine, "dca", settlement.gross_sats, INVALID_SALE)


def settlement_for(
    sale: Sale,
    machine: Machine,
    config: SuperConfig,
    *,
    source: SaleSource,
    source_txid: str,
    paid_at: datetime | None,
) -> DcaSettlement:
    """The settlement row a sale lands as (pure)."""
    platform, operator = split_two_stage_commission(
        sale.commission_sats, config.super_fee_pct
    )
    return DcaSettlement(
        id=crud.new_id(),
        machine_id=machine.id,
        operator_user_id=machine.operator_user_id,
        payment_hash=sale_key(source, machine.id, source_txid),
        source=source,
        source_txid=source_txid,
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
        paid_at=paid_at,
    )
