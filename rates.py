"""LNbits' own exchange rate for a currency, with how old it is.

LNbits caches a price for ``lnbits_exchange_rate_cache_seconds`` under
``btc-price-<currency>``; a price older than ``MAX_RATE_AGE_SECONDS`` (an
instance whose cache is configured longer) is refused as too old. The float
LNbits returns becomes an exact Decimal from its shortest repr, once.
"""

from __future__ import annotations

from decimal import Decimal
from time import time

from lnbits.settings import settings
from lnbits.utils.cache import cache
from lnbits.utils.exchange_rates import get_fiat_rate_and_price_satoshis
from loguru import logger

MAX_RATE_AGE_SECONDS = 300


class NoRate(Exception):  # noqa: N818 - reads as the reason
    """LNbits has no usable rate for the currency (the message says why)."""


async def lnbits_price(currency: str) -> Decimal:
    """Fiat per 1 BTC, from LNbits' rate providers (or its cache)."""
    try:
        _, price = await get_fiat_rate_and_price_satoshis(currency)
    except Exception as exc:  # providers are remote: anything can go wrong
        logger.warning(f"satmachineadmin: no {currency} rate: {exc}")
        raise NoRate(f"LNbits has no exchange rate for {currency}: {exc}") from exc
    if not price or price <= 0:
        raise NoRate(f"LNbits has no exchange rate for {currency}")
    cached = cache.value(f"btc-price-{currency}")
    if cached is not None:
        fetched_at = cached.expiry - settings.lnbits_exchange_rate_cache_seconds
        age = time() - fetched_at
        if age > MAX_RATE_AGE_SECONDS:
            raise NoRate(
                f"LNbits' {currency} rate is {int(age)} s old "
                f"(more than {MAX_RATE_AGE_SECONDS} s)"
            )
    # LNbits hands the price over as a binary float: its shortest decimal
    # text is the value it meant (str of a float is its repr).
    value = Decimal(str(price))
    if not value.is_finite() or value <= 0:
        raise NoRate(f"LNbits has no exchange rate for {currency}")
    return value
