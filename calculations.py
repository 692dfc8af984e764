"""Pure money maths for satmachineadmin: values in, values out.

Sats are ``int``; fiat amounts, rates and percentages are ``Decimal``. No float is
used anywhere: intermediate steps are exact rationals (``fractions.Fraction``), and
each public result is rounded once, by the rule its docstring states. Every split
returns parts that add up exactly to the amount split (see DOMAIN.md).
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction

SATS_PER_BTC = 100_000_000

# Digits of precision for the few results returned as a Decimal quotient.
_PRECISION = 60

# Active ISO 4217 codes (currencies and funds codes) grouped by minor-unit
# exponent. Units of account without minor units (XAU, XDR, XTS, XXX...) are
# left out on purpose: they are not cash an ATM dispenses.
_MINOR_UNIT_GROUPS: dict[int, str] = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    2: (
        "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV "
        "BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE "
        "CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD "
        "HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD "
        "LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN "
        "NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG "
        "SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD "
        "TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG"
    ),
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
}

ISO_4217_MINOR_UNITS: dict[str, int] = {
    code: exponent
    for exponent, codes in _MINOR_UNIT_GROUPS.items()
    for code in codes.split()
}


def is_currency_code(code: str) -> bool:
    """True if ``code`` is an active ISO 4217 code in canonical upper case."""
    return code in ISO_4217_MINOR_UNITS


def minor_units(currency: str) -> int:
    """Minor-unit exponent of ``currency`` (case-insensitive); unknown codes -> 2."""
    return ISO_4217_MINOR_UNITS.get(currency.strip().upper(), 2)


def quantize_fiat(amount: Decimal, currency: str) -> Decimal:
    """``amount`` rounded half to even to the minor unit of ``currency``."""
    return _fiat(_exact(amount, "amount"), currency)


def to_minor_units(amount: Decimal, currency: str) -> int:
    """``amount`` as an integer count of minor units, rounded half to even."""
    return round(_exact(amount, "amount") * _units_per_major(currency))


def from_minor_units(minor: int, currency: str) -> Decimal:
    """Exact Decimal for ``minor`` minor units: 180000 GTQ -> Decimal("1800.00")."""
    if not isinstance(minor, int) or isinstance(minor, bool):
        raise TypeError(f"minor must be an int, got {type(minor).__name__}")
    return Decimal(f"{minor}E-{minor_units(currency)}")


def back_derive_commission(
    gross_sats: int, commission_pct: Decimal, discount_pct: int = 0
) -> tuple[int, int]:
    """Split ``gross_sats`` as Lamassu prices; returns ``(net_sats, commission_sats)``.

    Effective rate ``e = c * (100 - discount) / 100``; ``net = floor(gross / (1 + e))``
    and ``commission = gross - net``. ``commission_pct`` is a fraction (0.05 = 5 %),
    ``discount_pct`` a whole percent off the commission, 0 to 100.
    """
    _check_sats(gross_sats, "gross_sats")
    rate = _exact(commission_pct, "commission_pct")
    if rate < 0:
        raise ValueError("commission_pct must not be negative")
    if not isinstance(discount_pct, int) or not 0 <= discount_pct <= 100:
        raise ValueError("discount_pct must be an int from 0 to 100")
    effective = rate * (100 - discount_pct) / 100
    net = math.floor(gross_sats / (1 + effective))
    return net, gross_sats - net


def split_two_stage_commission(
    commission_sats: int, super_fee_pct: Decimal
) -> tuple[int, int]:
    """Stage 1: returns ``(platform_fee_sats, operator_fee_sats)``.

    The platform takes ``commission * super_fee_pct`` rounded half to even; the
    operator gets the rest, so the two always add up to ``commission_sats``.
    """
    _check_sats(commission_sats, "commission_sats")
    pct = _exact(super_fee_pct, "super_fee_pct")
    if not 0 <= pct <= 1:
        raise ValueError("super_fee_pct must be between 0 and 1")
    platform = round(commission_sats * pct)
    return platform, commission_sats - platform


def allocate_operator_split_legs(
    operator_fee_sats: int, leg_pcts: Sequence[Decimal]
) -> list[int]:
    """Stage 2: split ``operator_fee_sats`` over legs whose ``leg_pcts`` sum to 1.

    Every leg but the last gets ``floor(total * pct)``; the last gets what is left,
    so the result adds up to ``operator_fee_sats``. No legs -> ``[]``.
    """
    _check_sats(operator_fee_sats, "operator_fee_sats")
    pcts = [_exact(pct, "leg pct") for pct in leg_pcts]
    if not pcts:
        return []
    if any(not 0 <= pct <= 1 for pct in pcts):
        raise ValueError("every leg pct must be between 0 and 1")
    if sum(pcts) != 1:
        raise ValueError("leg pcts must sum to exactly 1")
    legs = [math.floor(operator_fee_sats * pct) for pct in pcts[:-1]]
    legs.append(operator_fee_sats - sum(legs))
    return legs


def fiat_for_net(
    net_sats: int, exchange_rate: Decimal | None, fiat_amount: Decimal | None
) -> Decimal | None:
    """Fiat value F of the principal, or None when it cannot be known.

    ``fiat_amount`` when it is given and positive, else ``net * rate / 1e8`` when the
    rate (fiat per BTC) is given and positive and ``net_sats > 0``, else None.
    The result is not rounded.
    """
    _check_sats(net_sats, "net_sats")
    if fiat_amount is not None and _exact(fiat_amount, "fiat_amount") > 0:
        return fiat_amount
    if exchange_rate is None or _exact(exchange_rate, "exchange_rate") <= 0:
        return None
    if net_sats == 0:
        return None
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return net_sats * exchange_rate / SATS_PER_BTC


def price_per_sat(fiat_amount: Decimal, net_sats: int) -> Decimal:
    """Price ``p = F / net`` in fiat per sat, to 60 significant digits."""
    _check_sats(net_sats, "net_sats")
    if net_sats == 0 or _exact(fiat_amount, "fiat_amount") <= 0:
        raise ValueError("fiat_amount and net_sats must be positive")
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return fiat_amount / net_sats


@dataclass(frozen=True)
class DcaLeg:
    """One LP's share of a settlement's principal."""

    key: str  # the LP's id, as given
    sats: int
    fiat: Decimal  # what the LP is charged, in the currency's minor unit


@dataclass(frozen=True)
class DcaAllocation:
    """How a settlement's principal is shared among the LPs."""

    legs: tuple[DcaLeg, ...]  # only LPs with sats > 0, in input order
    leftover_sats: int  # stays in the machine wallet
    sync_mismatch: bool  # eligible LPs exist but hold less than F


def allocate_dca(
    net_sats: int, fiat_amount: Decimal, balances: Mapping[str, Decimal], currency: str
) -> DcaAllocation:
    """Share ``net_sats`` (worth ``fiat_amount`` F) among LPs by remaining balance.

    Only balances > 0 take part; R is their sum and ``p = F / net``.
    R >= F: ``net_sats`` is split in proportion to balance by the largest-remainder
    method (ties: larger balance, then smaller key, so input order never matters);
    nothing is left over. R < F (sync mismatch): each LP gets ``floor(balance / p)``
    and the rest is left over. Each leg is charged ``sats * p`` rounded half to even
    to the minor unit, capped at the LP's balance (rounded down to the minor unit).
    No eligible LP or ``net_sats == 0``: no legs, everything left over;
    ``sync_mismatch`` is True only when eligible LPs exist and R < F.
    """
    _check_sats(net_sats, "net_sats")
    fiat = _exact(fiat_amount, "fiat_amount")
    if fiat <= 0:
        raise ValueError("fiat_amount must be positive")
    eligible: dict[str, Fraction] = {}
    for key, balance in balances.items():
        exact = _exact(balance, f"balance of {key}")
        if exact < 0:
            raise ValueError(f"balance of {key} must not be negative")
        if exact > 0:
            eligible[key] = exact
    if not eligible:
        return DcaAllocation(legs=(), leftover_sats=net_sats, sync_mismatch=False)
    mismatch = sum(eligible.values()) < fiat
    if net_sats == 0:
        return DcaAllocation(legs=(), leftover_sats=0, sync_mismatch=mismatch)

    if mismatch:
        shares = {key: math.floor(b * net_sats / fiat) for key, b in eligible.items()}
    else:
        shares = _largest_remainder(net_sats, eligible)
    price = fiat / net_sats
    legs = tuple(
        DcaLeg(key=key, sats=sats, fiat=_charge(sats, price, eligible[key], currency))
        for key, sats in shares.items()
        if sats > 0
    )
    return DcaAllocation(
        legs=legs,
        leftover_sats=net_sats - sum(shares.values()),
        sync_mismatch=mismatch,
    )


@dataclass(frozen=True)
class ScaledSettlement:
    """A settlement's amounts after a partial dispense."""

    gross_sats: int
    net_sats: int
    commission_sats: int
    fiat_amount: Decimal | None


def scale_for_partial_dispense(
    gross_sats: int,
    net_sats: int,
    commission_sats: int,
    fiat_amount: Decimal | None,
    currency: str,
    *,
    fraction: Decimal | None = None,
    dispensed_sats: int | None = None,
) -> ScaledSettlement:
    """Scale a settlement to what the ATM actually dispensed.

    Give exactly one of ``fraction`` (0 to 1) or ``dispensed_sats`` (the new gross,
    0 to gross). ``new_gross = round(gross * fraction)`` or ``dispensed_sats``;
    ``new_commission = round(commission * new_gross / gross)`` (half to even, 0 when
    gross is 0); ``new_net = new_gross - new_commission``. Fiat is scaled by
    ``new_gross / gross`` (by ``fraction``, or kept, when gross is 0) and quantized;
    None stays None. The input parts must add up: ``net + commission == gross``.
    """
    _check_sats(gross_sats, "gross_sats")
    _check_sats(net_sats, "net_sats")
    _check_sats(commission_sats, "commission_sats")
    if net_sats + commission_sats != gross_sats:
        raise ValueError("net_sats + commission_sats must equal gross_sats")
    if fraction is not None and dispensed_sats is None:
        ratio = _exact(fraction, "fraction")
        if not 0 <= ratio <= 1:
            raise ValueError("fraction must be between 0 and 1")
        new_gross = round(gross_sats * ratio)
    elif dispensed_sats is not None and fraction is None:
        _check_sats(dispensed_sats, "dispensed_sats")
        if dispensed_sats > gross_sats:
            raise ValueError("dispensed_sats must not exceed gross_sats")
        new_gross = dispensed_sats
        ratio = Fraction(1)  # kept only when gross is 0: "0 of 0" says nothing
    else:
        raise ValueError("give exactly one of fraction or dispensed_sats")
    if gross_sats > 0:
        ratio = Fraction(new_gross, gross_sats)

    new_commission = round(commission_sats * ratio)  # commission is 0 if gross is
    new_fiat = None
    if fiat_amount is not None:
        old_fiat = _exact(fiat_amount, "fiat_amount")
        if old_fiat < 0:
            raise ValueError("fiat_amount must not be negative")
        new_fiat = _fiat(old_fiat * ratio, currency)
    return ScaledSettlement(
        gross_sats=new_gross,
        net_sats=new_gross - new_commission,
        commission_sats=new_commission,
        fiat_amount=new_fiat,
    )


def _check_sats(value: int, name: str) -> None:
    """Raise unless ``value`` is a non-negative int (bool is refused)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must not be negative")


def _exact(value: Decimal | int, name: str) -> Fraction:
    """The exact rational value of a finite Decimal or int; floats are refused."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"{name} must be a Decimal, got {type(value).__name__}")
    if isinstance(value, Decimal) and not value.is_finite():
        raise ValueError(f"{name} must be finite, got {value}")
    return Fraction(value)


def _units_per_major(currency: str) -> int:
    """Minor units in one major unit of ``currency`` (100 for GTQ)."""
    units: int = 10 ** minor_units(currency)
    return units


def _fiat(amount: Fraction, currency: str) -> Decimal:
    """``amount`` rounded half to even to the minor unit, as an exact Decimal."""
    return from_minor_units(round(amount * _units_per_major(currency)), currency)


def _charge(sats: int, price: Fraction, balance: Fraction, currency: str) -> Decimal:
    """Fiat charged for ``sats`` at ``price``, never above the LP's ``balance``."""
    ceiling = math.floor(balance * _units_per_major(currency))
    return min(_fiat(sats * price, currency), from_minor_units(ceiling, currency))


def _largest_remainder(total: int, weights: Mapping[str, Fraction]) -> dict[str, int]:
    """Split ``total`` in proportion to positive ``weights``; parts sum to ``total``.

    Each key gets the floor of its exact share; the sats still missing go one each
    to the largest remainders, ties to the larger weight, then the smaller key.
    """
    whole = sum(weights.values())
    shares = {key: total * weight / whole for key, weight in weights.items()}
    parts = {key: math.floor(share) for key, share in shares.items()}
    missing = total - sum(parts.values())
    ranked = sorted(
        weights, key=lambda key: (-(shares[key] - parts[key]), -weights[key], key)
    )
    for key in ranked[:missing]:
        parts[key] += 1
    return parts
