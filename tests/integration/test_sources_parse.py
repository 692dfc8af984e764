"""The pure parts of the Lamassu and manual sources: which rows are sales and
what a sale is worth (LAMASSU.md's rules and worked example). No database."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st


@pytest.fixture(scope="module", autouse=True)
async def _extension_loaded(app):
    """LNbits puts the extension on the import path when it starts."""
    global customer_rate, effective_commission, is_sale_row, parse_row
    global priced_crypto_atoms, window_start, manual_sale
    from satmachineadmin.lamassu import (
        customer_rate,
        effective_commission,
        is_sale_row,
        parse_row,
        priced_crypto_atoms,
        window_start,
    )
    from satmachineadmin.manual import manual_sale


def row(**overrides):
    base = {
        "id": "0f0e0d0c-0000-4000-8000-000000000001",
        "crypto_atoms": Decimal(266_800),
        "crypto_code": "LN",
        "fiat": Decimal("2000.00000"),
        "fiat_code": "GTQ",
        "status": "confirmed",
        "dispense": True,
        "dispense_confirmed": True,
        "error": None,
        "commission_percentage": Decimal("0.03000"),
        "discount": None,
        "raw_ticker_price": Decimal("772800.00000"),
        "fixed_fee": Decimal(0),
    }
    base.update(overrides)
    return base


def test_worked_example_from_lamassu_md():
    """2 000 GTQ at bid 772 800, 3 %: rate 749 616, 266 800 sats; net 258 799."""
    e = effective_commission(Decimal("0.03"), None)
    rate = customer_rate(Decimal(772_800), e)
    assert rate == Decimal("749616.00000")
    assert priced_crypto_atoms(Decimal(2000), Decimal(0), rate) == 266_800
    sale = parse_row(row(), "GTQ")
    assert sale.error is None
    assert (sale.gross_sats, sale.net_sats, sale.commission_sats) == (
        266_800,
        258_799,
        8_001,
    )
    assert sale.exchange_rate == Decimal("772800.00000")
    assert sale.fiat_amount == Decimal(2000)
    assert sale.fee_pct == Decimal("0.03")


def test_discount_and_fixed_fee_are_in_the_commission():
    e = effective_commission(Decimal("0.05"), 20)
    assert e == Decimal("0.04")
    atoms = priced_crypto_atoms(
        Decimal(500), Decimal(0), customer_rate(Decimal(772_800), e)
    )
    assert atoms == 67_300
    sale = parse_row(row(crypto_atoms=atoms, fiat=Decimal(500), discount=20), "GTQ")
    assert (sale.net_sats, sale.commission_sats) == (64_699, 2_601)

    rate = customer_rate(Decimal(772_800), Decimal("0.03"))
    atoms = priced_crypto_atoms(Decimal(1000), Decimal(10), rate)
    assert atoms == 134_700
    sale = parse_row(row(crypto_atoms=atoms, fiat=Decimal(1000)), "GTQ")
    assert (sale.net_sats, sale.commission_sats) == (129_399, 5_301)


def test_missing_ticker_price_derives_the_principal_from_the_commission():
    sale = parse_row(
        row(crypto_atoms=Decimal(40_000), fiat=Decimal(300), raw_ticker_price=None),
        "GTQ",
    )
    assert (sale.net_sats, sale.commission_sats) == (38_800, 1_200)
    assert sale.exchange_rate == Decimal("773195.87628")  # fiat / net, per BTC
    discounted = parse_row(
        row(
            crypto_atoms=Decimal(40_000),
            fiat=Decimal(300),
            raw_ticker_price=None,
            discount=50,
        ),
        "GTQ",
    )
    assert (discounted.net_sats, discounted.commission_sats) == (39_400, 600)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (
            {"raw_ticker_price": Decimal(700_000), "crypto_atoms": Decimal(200_000)},
            "more than",
        ),
        ({"fiat_code": "USD"}, "not the machine's GTQ"),
        ({"crypto_atoms": Decimal(0)}, "crypto_atoms"),
        ({"fiat": Decimal(0)}, "fiat"),
        ({"raw_ticker_price": Decimal(-1)}, "raw_ticker_price"),
        ({"discount": 150}, "discount"),
        ({"raw_ticker_price": None, "commission_percentage": None}, "no raw_ticker"),
    ],
)
def test_untrusted_numbers_land_errored_holding_the_gross(overrides, reason):
    sale = parse_row(row(**overrides), "GTQ")
    assert sale.error and reason in sale.error
    assert sale.commission_sats == 0 and sale.net_sats == sale.gross_sats


@pytest.mark.parametrize(
    ("overrides", "is_sale"),
    [
        ({}, True),
        ({"crypto_code": "BTC", "status": "instant"}, True),
        ({"status": "authorized"}, True),
        ({"crypto_code": "ETH"}, False),
        ({"dispense_confirmed": False}, False),
        ({"dispense_confirmed": None}, False),
        ({"dispense": False}, False),
        ({"error": "dispenseError"}, False),
        ({"status": "rejected"}, False),
        ({"status": "insufficientFunds"}, False),
        ({"status": "notSeen"}, False),
        ({"status": "published"}, False),
    ],
)
def test_only_successful_dispensed_cash_outs_are_sales(overrides, is_sale):
    assert is_sale_row(row(**overrides)) is is_sale


@given(
    fiat=st.integers(min_value=1, max_value=50_000),
    price=st.integers(min_value=10_000, max_value=2_000_000),
    pct=st.decimals(min_value=0, max_value="0.2", places=5),
    discount=st.one_of(st.none(), st.integers(min_value=0, max_value=100)),
    fee=st.integers(min_value=0, max_value=50),
)
def test_a_lamassu_priced_sale_always_adds_up(fiat, price, pct, discount, fee):
    e = effective_commission(pct, discount)
    rate = customer_rate(Decimal(price), e)
    atoms = priced_crypto_atoms(Decimal(fiat), Decimal(fee), rate)
    sale = parse_row(
        row(
            crypto_atoms=Decimal(atoms),
            fiat=Decimal(fiat),
            raw_ticker_price=Decimal(price),
            commission_percentage=pct,
            discount=discount,
        ),
        "GTQ",
    )
    assert sale.net_sats + sale.commission_sats == sale.gross_sats == atoms
    assert sale.commission_sats >= 0


def test_window_looks_a_day_back_from_the_newest_row():
    from datetime import datetime, timedelta, timezone

    newest = datetime(2026, 1, 2, 12, tzinfo=timezone.utc)
    assert window_start(newest) == newest - timedelta(hours=24)
    assert window_start(None).year == 1970


def test_manual_sale_numbers():
    sale = manual_sale(
        fiat_amount=Decimal(2000),
        exchange_rate=Decimal(772_114),
        commission_sats=None,
        fee_pct=Decimal("0.03"),
        currency="GTQ",
        reference="r-1",
    )
    # as bitSpire prices: net 259 029 (floor), fee round(net * 3 %) = 7 771
    assert (sale.net_sats, sale.commission_sats, sale.gross_sats) == (
        259_029,
        7_771,
        266_800,
    )
    given_sats = manual_sale(
        fiat_amount=Decimal(2000),
        exchange_rate=Decimal(772_800),
        commission_sats=8_001,
        fee_pct=None,
        currency="GTQ",
        reference="r-2",
    )
    assert (given_sats.net_sats, given_sats.gross_sats) == (258_799, 266_800)
