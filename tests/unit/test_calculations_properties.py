"""Property tests for calculations.py: every split adds up, none goes negative."""

from decimal import Decimal, localcontext
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from calculations import (
    allocate_dca,
    allocate_operator_split_legs,
    back_derive_commission,
    minor_units,
    scale_for_partial_dispense,
    split_two_stage_commission,
)

MAX_SATS = 21_000_000 * 100_000_000
CURRENCIES = st.sampled_from(["GTQ", "USD", "JPY", "KWD"])

sats = st.integers(min_value=0, max_value=MAX_SATS)
fractions = st.decimals(min_value=0, max_value=1, places=6)


@st.composite
def basis_point_pcts(draw: st.DrawFn) -> list[Decimal]:
    """1 to 10 leg pcts in basis points that sum to exactly 1."""
    cuts = draw(st.lists(st.integers(0, 10_000), min_size=0, max_size=9))
    bounds = [0, *sorted(cuts), 10_000]
    return [Decimal(hi - lo).scaleb(-4) for lo, hi in pairwise(bounds)]


balances_st = st.dictionaries(
    keys=st.text(alphabet="abcdefgh", min_size=1, max_size=3),
    values=st.decimals(min_value=Decimal("0.001"), max_value=100_000, places=3),
    min_size=1,  # no LP at all is a unit test
    max_size=8,
)
fiat_st = st.decimals(min_value=Decimal("0.01"), max_value=200_000, places=2)


@settings(max_examples=1000, deadline=None)
@given(commission=sats, pct=fractions)
def test_two_stage_parts_add_up(commission: int, pct: Decimal) -> None:
    platform, operator = split_two_stage_commission(commission, pct)
    assert platform + operator == commission
    assert platform >= 0
    assert operator >= 0
    assert abs(platform - commission * pct) <= Decimal("0.5")


@settings(max_examples=1000, deadline=None)
@given(total=sats, pcts=basis_point_pcts())
def test_operator_legs_add_up(total: int, pcts: list[Decimal]) -> None:
    legs = allocate_operator_split_legs(total, pcts)
    assert len(legs) == len(pcts)
    assert sum(legs) == total
    assert all(leg >= 0 for leg in legs)
    for leg, pct in zip(legs[:-1], pcts[:-1], strict=True):
        assert leg <= total * pct < leg + 1


@settings(max_examples=1000, deadline=None)
@given(commission=sats, super_pct=fractions, pcts=basis_point_pcts())
def test_every_commission_sat_is_accounted_for(
    commission: int, super_pct: Decimal, pcts: list[Decimal]
) -> None:
    platform, operator = split_two_stage_commission(commission, super_pct)
    assert platform + sum(allocate_operator_split_legs(operator, pcts)) == commission


@settings(max_examples=1000, deadline=None)
@given(
    net=st.integers(0, 10**9),
    fiat=fiat_st,
    balances=balances_st,
    empty_lp=st.booleans(),
    currency=CURRENCIES,
)
def test_dca_legs_add_up_and_respect_balances(
    net: int,
    fiat: Decimal,
    balances: dict[str, Decimal],
    empty_lp: bool,
    currency: str,
) -> None:
    if empty_lp:  # an LP whose balance is used up takes no part
        balances = {"empty": Decimal(0), **balances}
    result = allocate_dca(net, fiat, balances, currency)
    eligible = [key for key, balance in balances.items() if balance > 0]
    reserve = sum(balances[key] for key in eligible)

    assert sum(leg.sats for leg in result.legs) + result.leftover_sats == net
    assert result.leftover_sats >= 0
    keys = [leg.key for leg in result.legs]
    assert keys == [key for key in eligible if key in keys]  # input order, all > 0
    assert result.sync_mismatch == (bool(eligible) and reserve < fiat)
    for leg in result.legs:
        assert leg.sats > 0
        assert 0 <= leg.fiat <= balances[leg.key]
        assert leg.fiat.as_tuple().exponent == -minor_units(currency)

    with localcontext() as ctx:
        ctx.prec = 100
        if result.sync_mismatch:
            for leg in result.legs:  # sats <= balance / p, i.e. sats * F <= b * net
                assert leg.sats * fiat <= balances[leg.key] * net
        elif eligible:
            assert result.leftover_sats == 0
            for leg in result.legs:  # within one sat of the exact share
                share = net * balances[leg.key] / reserve
                assert abs(leg.sats - share) < 1


@settings(max_examples=1000, deadline=None)
@given(
    net=st.integers(0, 10**9),
    fiat=fiat_st,
    items=st.lists(
        st.tuples(
            st.text(alphabet="abcd", min_size=1, max_size=2),
            st.integers(0, 500).map(Decimal),
        ),
        unique_by=lambda item: item[0],
        max_size=8,
    ),
    data=st.data(),
)
def test_dca_does_not_depend_on_input_order(
    net: int,
    fiat: Decimal,
    items: list[tuple[str, Decimal]],
    data: st.DataObject,
) -> None:
    shuffled = data.draw(st.permutations(items))
    first = allocate_dca(net, fiat, dict(items), "GTQ")
    second = allocate_dca(net, fiat, dict(shuffled), "GTQ")
    assert {leg.key: leg for leg in first.legs} == {leg.key: leg for leg in second.legs}
    assert first.leftover_sats == second.leftover_sats
    assert first.sync_mismatch == second.sync_mismatch


@settings(max_examples=1000, deadline=None)
@given(
    gross=sats,
    pct=st.decimals(min_value=0, max_value=1, places=5),
    discount=st.integers(0, 100),
)
def test_back_derive_adds_up(gross: int, pct: Decimal, discount: int) -> None:
    net, commission = back_derive_commission(gross, pct, discount)
    assert net + commission == gross
    assert commission >= 0
    assert 0 <= net <= gross
    with localcontext() as ctx:
        ctx.prec = 100
        one_plus_e = 1 + pct * (100 - discount) / 100
        assert net * one_plus_e <= gross < (net + 1) * one_plus_e


@st.composite
def settlements(
    draw: st.DrawFn,
) -> tuple[int, int, int, Decimal | None, str]:
    """(gross, net, commission, fiat, currency) whose parts add up."""
    net = draw(st.integers(0, 10**12))
    commission = draw(st.integers(0, 10**10))
    currency = draw(CURRENCIES)
    places = minor_units(currency)
    fiat = draw(st.none() | st.decimals(min_value=0, max_value=10**7, places=places))
    return net + commission, net, commission, fiat, currency


@settings(max_examples=1000, deadline=None)
@given(original=settlements(), data=st.data())
def test_partial_dispense_adds_up_and_never_grows(
    original: tuple[int, int, int, Decimal | None, str], data: st.DataObject
) -> None:
    gross, net, commission, fiat, _ = original
    if data.draw(st.booleans()):
        result = scale_for_partial_dispense(
            *original, fraction=data.draw(fractions, label="fraction")
        )
    else:
        dispensed = data.draw(st.integers(0, gross), label="dispensed_sats")
        result = scale_for_partial_dispense(*original, dispensed_sats=dispensed)
        assert result.gross_sats == dispensed

    assert result.net_sats + result.commission_sats == result.gross_sats <= gross
    assert 0 <= result.net_sats <= net
    assert 0 <= result.commission_sats <= commission
    if fiat is None:
        assert result.fiat_amount is None
    else:
        assert result.fiat_amount is not None
        assert 0 <= result.fiat_amount <= fiat


@settings(max_examples=1000, deadline=None)
@given(original=settlements())
def test_partial_dispense_of_everything_is_identity(
    original: tuple[int, int, int, Decimal | None, str],
) -> None:
    gross, net, commission, fiat, _ = original
    result = scale_for_partial_dispense(*original, fraction=Decimal(1))
    assert (result.gross_sats, result.net_sats, result.commission_sats) == (
        gross,
        net,
        commission,
    )
    assert result.fiat_amount == fiat
