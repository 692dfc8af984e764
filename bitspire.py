"""Reading an ATM sale from a paid invoice.

A bitSpire ATM describes its sale in ``Payment.extra`` (the happy path).
Older firmware sends nothing; a machine may opt in to back-deriving the split
from its ``fallback_commission_pct`` (Lamassu pricing). Everything else that
arrives in a machine wallet (top-ups, admin credits, this extension's own
transfers) is not a sale.

No database, no network: values in, values out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from .calculations import back_derive_commission, is_currency_code

# Marks the transfers this extension makes, in ``extra``.
EXTRA_KEY = "satmachineadmin"
TAG_PREFIX = "satmachine:"
ADMIN_CREDIT_MEMO = "Admin credit"  # what LNbits writes for a super-user top-up


@dataclass(frozen=True)
class Sale:
    """What a paid invoice says about a sale. ``error`` set means the numbers
    cannot be trusted: the sale lands errored and pays nothing."""

    gross_sats: int
    net_sats: int
    commission_sats: int
    currency: str
    fee_pct: Decimal | None = None
    exchange_rate: Decimal | None = None
    fiat_amount: Decimal | None = None
    txid: str | None = None
    bills: str | None = None
    cassettes: str | None = None
    used_fallback_split: bool = False
    error: str | None = None


def tag_for(npub: str) -> str:
    return f"{TAG_PREFIX}{npub}"


def is_own_transfer(extra: dict[str, Any]) -> bool:
    tag = str(extra.get("tag") or "")
    return EXTRA_KEY in extra or tag.startswith(TAG_PREFIX)


def is_bitspire(extra: dict[str, Any]) -> bool:
    return extra.get("source") == "bitspire"


def is_sale(
    *, amount_msat: int, memo: str | None, extra: dict[str, Any], fallback: bool
) -> bool:
    """Whether a successful incoming payment into a machine wallet is a sale."""
    if amount_msat <= 0 or is_own_transfer(extra):
        return False
    if is_bitspire(extra):
        return True
    if not fallback:  # without bitSpire data only opted-in machines sell
        return False
    # Fallback machines: anything untagged, except a super user's credit.
    return not extra.get("tag") and memo != ADMIN_CREDIT_MEMO


def parse_sale(
    *,
    amount_msat: int,
    extra: dict[str, Any],
    machine_npub: str,
    machine_currency: str,
    fallback_commission_pct: Decimal | None,
) -> Sale:
    gross = amount_msat // 1000
    if is_bitspire(extra):
        return _parse_bitspire(gross, extra, machine_npub, machine_currency)
    if fallback_commission_pct is None:
        raise ValueError("not a sale: no bitSpire data and no fallback rate")
    net, commission = back_derive_commission(gross, fallback_commission_pct)
    return Sale(
        gross_sats=gross,
        net_sats=net,
        commission_sats=commission,
        currency=machine_currency,
        fee_pct=fallback_commission_pct,
        used_fallback_split=True,
    )


def _parse_bitspire(
    gross: int, extra: dict[str, Any], machine_npub: str, machine_currency: str
) -> Sale:
    problems: list[str] = []

    def sats(key: str) -> int | None:
        value = _to_int(extra.get(key))
        if value is None or value < 0:
            problems.append(f"{key} must be a whole, non-negative number of sats")
        return value

    def decimal(key: str) -> Decimal | None:
        if extra.get(key) is None:
            return None
        value = _to_decimal(extra.get(key))
        if value is None or value < 0:
            problems.append(f"{key} must be a non-negative number")
            return None
        return value

    net, fee = sats("net_sats"), sats("fee_sats")
    if net is not None and fee is not None and net + fee != gross:
        problems.append(
            f"net_sats + fee_sats = {net + fee} but the payment is {gross} sats"
        )
    npub = extra.get("machine_npub")
    if npub is not None and str(npub).lower() != machine_npub:
        problems.append(f"machine_npub {npub} is not the machine this wallet serves")
    currency = str(extra.get("currency") or machine_currency).upper()
    if not is_currency_code(currency) or currency != machine_currency:
        problems.append(f"currency {currency} is not the machine's {machine_currency}")
    rate, fiat, fee_pct = (
        decimal("exchange_rate"),
        decimal("fiat_amount"),
        decimal("fee_pct"),
    )

    # Until the numbers are trusted nothing is decided: the whole payment is
    # principal held for the operator.
    held = Sale(
        gross_sats=gross,
        net_sats=gross,
        commission_sats=0,
        currency=machine_currency,
        txid=_text(extra.get("txid")),
        bills=_json(extra.get("bills")),
        cassettes=_json(extra.get("cassettes")),
    )
    if problems or net is None or fee is None:
        return replace(held, error="; ".join(problems))
    return replace(
        held,
        net_sats=net,
        commission_sats=fee,
        fee_pct=fee_pct,
        exchange_rate=rate,
        fiat_amount=fiat,
    )


def _to_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        # str() first: a JSON float such as 0.03 becomes Decimal("0.03").
        result = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() and abs(result) < Decimal(10) ** 15 else None


def _to_int(value: Any) -> int | None:
    number = _to_decimal(value)
    if number is None or number != number.to_integral_value():
        return None
    return int(number)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)[:200]


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)[:10_000]
