"""The manual source: a sale an operator records by hand, settled outside
Lightning (the seed spec's "manual transaction entry"). Keyed on (machine,
the operator's reference); paid from the machine wallet like a Lamassu sale.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal

from . import crud
from .actions import note_entry
from .bitspire import Sale
from .errors import Conflict, Invalid
from .landing import land_sale
from .models import DcaSettlement, Machine, ManualSaleData, SaleSource

SOURCE: SaleSource = "manual"
SATS_PER_BTC = 100_000_000
MAX_SATS = 21_000_000 * SATS_PER_BTC


def manual_sale(
    *,
    fiat_amount: Decimal,
    exchange_rate: Decimal,
    commission_sats: int | None,
    fee_pct: Decimal | None,
    currency: str,
    reference: str,
) -> Sale:
    """Pure. Principal ``net = floor(fiat * 1e8 / exchange_rate)``; the
    commission is given in sats, or as a fraction of the principal
    (``round(net * fee_pct)``, half to even, as bitSpire prices)."""
    net = math.floor(fiat_amount * SATS_PER_BTC / exchange_rate)
    if commission_sats is None:
        assert fee_pct is not None  # noqa: S101 - the model asks for one of them
        commission = int((net * fee_pct).to_integral_value(ROUND_HALF_EVEN))
    else:
        commission = commission_sats
    return Sale(
        gross_sats=net + commission,
        net_sats=net,
        commission_sats=commission,
        currency=currency,
        fee_pct=fee_pct,
        exchange_rate=exchange_rate,
        fiat_amount=fiat_amount,
        txid=reference,
    )


async def land_manual_sale(
    machine: Machine, data: ManualSaleData, author_user_id: str
) -> DcaSettlement:
    """Land it once; a reference already used at this machine is a Conflict
    and changes nothing."""
    sale = manual_sale(
        fiat_amount=data.fiat_amount,
        exchange_rate=data.exchange_rate,
        commission_sats=data.commission_sats,
        fee_pct=data.fee_pct,
        currency=machine.currency,
        reference=data.reference,
    )
    if sale.net_sats <= 0:
        raise Invalid("fiat_amount", "buys less than one sat at this exchange_rate")
    if sale.net_sats > MAX_SATS:
        raise Invalid("fiat_amount", "buys more than all bitcoin at this exchange_rate")
    settlement, created = await land_sale(
        sale,
        machine,
        source=SOURCE,
        source_txid=data.reference,
        paid_at=data.occurred_at,
    )
    if not created:
        raise Conflict(
            f"reference: a manual sale '{data.reference}' is already recorded "
            "at this machine"
        )
    text = f"manual sale {data.reference}"
    if data.note and data.note.strip():
        text += f": {data.note.strip()}"
    await crud.append_settlement_note(settlement.id, note_entry(author_user_id, text))
    return await crud.get_settlement(settlement.id) or settlement
